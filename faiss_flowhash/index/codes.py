"""K-bit sign codes: packing, multi-assignment (radius r, paper 3.3) and probe sets (radius r~, 3.4).

A component z_k with |z_k| < r is ambiguous: the vector is stored under both of its bit values. The
query probes its own code and every code reached by flipping ambiguous bits (|z_k| < r~), visited in
order of flip cost = sum of |z_k| over the flipped bits (cheapest, most likely buckets first). The
number of ambiguous bits is capped, so one vector can never expand into 2^K buckets.
All functions are pure numpy.
"""

import functools

import numpy as np

__all__ = ["pack_codes", "code_dtype", "subset_masks", "expand_codes", "probe_codes"]

MAX_K = 62


def code_dtype(K: int | None) -> np.dtype:
    """The narrowest unsigned integer dtype that holds a K-bit code: uint16 up to K = 16, uint32 up to
    32, else uint64 (also for K=None, not chosen yet). The index stores one code per vector in it (2 B a
    vector at K <= 16 instead of 8); every function here computes in uint64."""
    if K is None or K > 32:
        return np.dtype(np.uint64)
    return np.dtype(np.uint16 if K <= 16 else np.uint32)


def pack_codes(z: np.ndarray) -> np.ndarray:
    """Sign code of each row of z (n, K): bit k is 1 where z_k > 0. Returns uint64 (n,)."""
    K = z.shape[1]
    if K > MAX_K:
        raise ValueError(f"K: expected <= {MAX_K}, got {K}")
    weights = np.left_shift(np.uint64(1), np.arange(K, dtype=np.uint64))
    return ((z > 0).astype(np.uint64) * weights).sum(1, dtype=np.uint64)


def subset_masks(b: int) -> np.ndarray:
    """All 2^b subsets of b items as a bool matrix (2^b, b), row i = binary digits of i (read-only)."""
    return _subset_masks(int(b))[0]


@functools.lru_cache(maxsize=32)
def _subset_masks(b: int):
    """The subsets as bool, float64 (b, 2^b) and uint64 (b, 2^b) matrices, cached (read-only)."""
    m = ((np.arange(1 << b)[:, None] >> np.arange(b)) & 1).astype(bool)
    out = (m, m.T.astype(np.float64), m.T.astype(np.uint64))
    for a in out:
        a.flags.writeable = False
    return out


def _ambiguous(z: np.ndarray, radius: float, max_bits: int):
    """Per row: the bit positions sorted by |z| (n, K), and how many are ambiguous (n,) (capped)."""
    a = np.abs(z)
    order = np.argsort(a, axis=1, kind="stable")
    count = np.minimum((a < radius).sum(1), max_bits)
    return a, order, count


def expand_codes(z: np.ndarray, *, radius: float, max_bits: int):
    """Every code a vector is stored under (multi-assignment).

    Args:
        z: latents (n, K).
        radius: r; components with |z_k| < r get both bit values.
        max_bits: at most this many ambiguous bits (the smallest |z_k|) per vector: <= 2^max_bits codes.

    Returns:
        rows (m,) int64 row of z each code belongs to, codes (m,) uint64.
    """
    base = pack_codes(z)
    _, order, count = _ambiguous(z, radius, max_bits)
    rows_out, codes_out = [], []
    for b in np.unique(count):
        sel = np.flatnonzero(count == b)
        if b == 0:
            rows_out.append(sel)
            codes_out.append(base[sel])
            continue
        bitval = np.left_shift(np.uint64(1), order[sel, :b].astype(np.uint64))  # (n_b, b)
        flips = subset_masks(int(b)).astype(np.uint64) @ bitval.T  # (2^b, n_b): XOR of disjoint bits = sum
        rows_out.append(np.repeat(sel, 1 << int(b)))
        codes_out.append((base[sel][None, :] ^ flips).T.reshape(-1))
    if not rows_out:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64)
    return np.concatenate(rows_out).astype(np.int64), np.concatenate(codes_out)


def probe_codes(z: np.ndarray, *, radius: float, max_bits: int, max_probes: int | None = None):
    """The buckets each query probes, in order of flip cost.

    Args:
        z: query latents (n, K).
        radius: r~; components with |z_k| < r~ may be flipped.
        max_bits: at most this many flippable bits per query (<= 2^max_bits probes).
        max_probes: keep at most this many probes per query (None: all).

    Returns:
        qidx (m,) int64 query of each probe (grouped by query, ascending), codes (m,) uint64,
        cost (m,) float32 flip cost (0 for the query's own code), ascending within each query.
    """
    n = z.shape[0]
    base = pack_codes(z)
    a, order, count = _ambiguous(z, radius, max_bits)
    q_out, c_out, cost_out = [], [], []
    for b in np.unique(count):
        b = int(b)
        sel = np.flatnonzero(count == b)
        _, masks_f, masks_u = _subset_masks(b)  # (b, 2^b)
        pos = order[sel, :b]  # (n_b, b) ambiguous bit positions, cheapest first
        cost = np.take_along_axis(a[sel], pos, axis=1) @ masks_f  # (n_b, 2^b)
        flips = np.left_shift(np.uint64(1), pos.astype(np.uint64)) @ masks_u  # (n_b, 2^b)
        rank = np.argsort(cost, axis=1, kind="stable")
        if max_probes is not None and max_probes < rank.shape[1]:
            rank = rank[:, :max_probes]
        cost = np.take_along_axis(cost, rank, axis=1)
        codes = base[sel][:, None] ^ np.take_along_axis(flips, rank, axis=1)
        q_out.append(np.repeat(sel, rank.shape[1]))
        c_out.append(codes.reshape(-1))
        cost_out.append(cost.reshape(-1))
    if n == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.uint64), np.zeros(0, np.float32)
    qidx = np.concatenate(q_out).astype(np.int64)
    codes = np.concatenate(c_out)
    cost = np.concatenate(cost_out).astype(np.float32)
    if len(q_out) == 1:  # one ambiguity count for all queries: already in query order
        return qidx, codes, cost
    regroup = np.argsort(qidx, kind="stable")  # groups were by ambiguity count; restore query order
    return qidx[regroup], codes[regroup], cost[regroup]
