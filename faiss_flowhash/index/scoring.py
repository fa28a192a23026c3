"""Reference scorer (the engine's test oracle): per query, score its candidate rows exactly in numpy.

The index scans with faiss (:mod:`.engine`); this plain-numpy path states what that scan must return.
Candidates arrive flat, grouped by query; queries are processed in chunks of similar candidate
counts so the padded (chunk, C, d) gather stays small.
"""

import numpy as np
import faiss

from .engine import worst_value

__all__ = ["topk_candidates", "worst_value"]


def _chunks(counts: np.ndarray, budget: int):
    """Split queries (ordered by candidate count) into chunks of at most ~budget padded candidates."""
    order = np.argsort(counts, kind="stable")
    start = 0
    while start < len(order):
        stop = start + 1
        # grow while (chunk size) x (largest count in the chunk) stays within budget
        while stop < len(order) and (stop + 1 - start) * max(int(counts[order[stop]]), 1) <= budget:
            stop += 1
        yield order[start:stop]
        start = stop


def _score_numpy(q, xb, norms, cand, valid, metric):
    vecs = xb[np.where(valid, cand, 0)]  # (n, C, d)
    if vecs.dtype != np.float32:
        vecs = vecs.astype(np.float32)
    dots = np.matmul(vecs, q[:, :, None])[..., 0]  # (n, C)
    if metric == faiss.METRIC_INNER_PRODUCT:
        score = dots
    else:
        score = -(norms[np.where(valid, cand, 0)] - 2 * dots)  # larger is better; |q|^2 added at the end
    return np.where(valid, score, -np.inf)


def _topk_numpy(score, k):
    n, C = score.shape
    kk = min(k, C)
    part = np.argpartition(-score, kk - 1, axis=1)[:, :kk] if kk < C else np.tile(np.arange(C), (n, 1))
    s = np.take_along_axis(score, part, axis=1)
    o = np.argsort(-s, axis=1, kind="stable")
    return np.take_along_axis(s, o, axis=1), np.take_along_axis(part, o, axis=1)


def topk_candidates(
    q: np.ndarray,
    xb,
    qidx: np.ndarray,
    rows: np.ndarray,
    k: int,
    *,
    metric: int = faiss.METRIC_INNER_PRODUCT,
    norms=None,
    chunk_elems: int = 1 << 17,
):
    """Top-k of each query's candidates by exact score.

    Args:
        q: queries (n, d) float32.
        xb: database vectors (N, d) float32 or float16.
        qidx, rows: the candidates, flat (m,): query index (ascending) and database row; no duplicates.
        k: results per query.
        metric: faiss.METRIC_INNER_PRODUCT or faiss.METRIC_L2 (squared distances, as faiss).
        norms: squared norms of xb (N,), required for L2.
        chunk_elems: padded candidates per chunk (bounds memory at chunk_elems * d values).

    Returns:
        D (n, k) float32 and R (n, k) int64 database rows, -1 and the worst value where a query has
        fewer than k candidates.
    """
    n = q.shape[0]
    D = np.full((n, k), worst_value(metric), np.float32)
    R = np.full((n, k), -1, np.int64)
    counts = np.bincount(qidx, minlength=n)
    starts = np.r_[0, np.cumsum(counts)[:-1]]
    has = np.flatnonzero(counts)
    if len(has) == 0:
        return D, R
    for chunk in _chunks(counts[has], chunk_elems):
        qs = has[chunk]
        C = int(counts[qs].max())
        slot = np.arange(C)[None, :]
        valid = slot < counts[qs][:, None]  # (n_c, C)
        cand = np.where(valid, rows[np.minimum(starts[qs][:, None] + slot, len(rows) - 1)], 0)
        s, p = _topk_numpy(_score_numpy(q[qs], xb, norms, cand, valid, metric), k)
        got = np.isfinite(s)
        r = np.where(got, np.take_along_axis(cand, p, axis=1), -1)
        if metric != faiss.METRIC_INNER_PRODUCT:
            s = -s + (q[qs] ** 2).sum(1, keepdims=True)
        kk = s.shape[1]
        D[qs, :kk] = np.where(got, s, worst_value(metric))
        R[qs, :kk] = r
    return D, R
