"""Bucket balance: the paper's density rho = -log2(|bucket| / N) (section 4.6), and what a perfect hash
would give at the same N and K (Poisson occupancy), so small-N numbers are read against the right bar."""

import math

import numpy as np

__all__ = ["bucket_balance", "code_balance", "poisson_within_share"]


def poisson_within_share(n: int, K: int) -> float:
    """Share of 2^K buckets with density within K +- 1 under a perfectly uniform hash of n vectors."""
    lam = n / 2.0**K
    lo, hi = math.ceil(lam / 2), math.floor(lam * 2)
    if hi < max(lo, 1):
        return 0.0
    lo = max(lo, 1)
    # P(lo <= X <= hi) for X ~ Poisson(lam), summed in log space
    ks = np.arange(lo, hi + 1)
    logp = ks * math.log(lam) - lam - np.array([math.lgamma(k + 1) for k in ks])
    return float(np.exp(logp).sum())


def bucket_balance(sizes: np.ndarray, n: int, K: int) -> dict:
    """Balance figures of a hash table.

    Args:
        sizes: vectors per non-empty bucket (B,).
        n: vectors hashed (one code each).
        K: code bits (2^K buckets).

    Returns:
        dict with ``buckets_used``, ``empty_share`` (of 2^K), ``within_k1_share`` (share of all 2^K
        buckets whose density is within K +- 1), ``within_k1_share_ideal`` (the same for a perfect
        hash of n vectors), ``max_over_mean`` (largest bucket over n / 2^K).
    """
    total = 2.0**K
    sizes = np.asarray(sizes, np.float64)
    if n == 0 or len(sizes) == 0:
        return {"buckets_used": 0, "empty_share": 1.0, "within_k1_share": 0.0,
                "within_k1_share_ideal": 0.0, "max_over_mean": 0.0}
    rho = -np.log2(sizes / n)
    return {
        "buckets_used": int(len(sizes)),
        "empty_share": float(1 - len(sizes) / total),
        "within_k1_share": float((np.abs(rho - K) <= 1).sum() / total),
        "within_k1_share_ideal": poisson_within_share(n, K),
        "max_over_mean": float(sizes.max() / (n / total)),
    }


def code_balance(codes: np.ndarray, K: int) -> dict:
    """:func:`bucket_balance` of one K-bit code per vector, codes (n,)."""
    return bucket_balance(np.unique(codes, return_counts=True)[1], len(codes), K)
