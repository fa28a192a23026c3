"""Exact scoring of candidate sets: per query, score its candidate rows and keep the top k.

One function, three backends: ``faiss`` (faiss's multi-threaded ``knn_*_by_idx`` kernels on the CPU,
the default for float32 storage), ``numpy`` (batched BLAS; any storage dtype) and ``torch`` (any
device; the GPU path is the same code the CPU tests run). Candidates arrive flat, grouped by query; queries are
processed in chunks of similar candidate counts so the padded (chunk, C, d) gather stays small.
"""

import numpy as np
import faiss

__all__ = ["topk_candidates", "worst_value"]


def worst_value(metric: int) -> float:
    """Padding distance for missing results, as faiss: -FLT_MAX for inner product, +FLT_MAX for L2."""
    big = float(np.finfo(np.float32).max)
    return -big if metric == faiss.METRIC_INNER_PRODUCT else big


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


def _topk_faiss(q, xb, cand, valid, metric, k):
    """faiss's by-index kernels: padded candidates (n, C) with -1 skipped; results best first."""
    n, C = cand.shape
    cand = np.ascontiguousarray(np.where(valid, cand, -1), dtype=np.int64)
    q = np.ascontiguousarray(q, dtype=np.float32)
    D = np.empty((n, k), np.float32)
    I = np.empty((n, k), np.int64)
    fn = faiss.knn_inner_products_by_idx if metric == faiss.METRIC_INNER_PRODUCT else faiss.knn_L2sqr_by_idx
    fn(faiss.swig_ptr(q), faiss.swig_ptr(xb), faiss.swig_ptr(cand), q.shape[1], n, len(xb), C, k,
       faiss.swig_ptr(D), faiss.swig_ptr(I), C)
    return D, I


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
    backend: str = "numpy",
    chunk_elems: int = 1 << 17,
):
    """Top-k of each query's candidates by exact score.

    Args:
        q: queries (n, d) float32.
        xb: database vectors (N, d): numpy float32/float16 for ``numpy``, a torch tensor for ``torch``
            (its device is where the scoring runs).
        qidx, rows: the candidates, flat (m,): query index (ascending) and database row; no duplicates.
        k: results per query.
        metric: faiss.METRIC_INNER_PRODUCT or faiss.METRIC_L2 (squared distances, as faiss).
        norms: squared norms of xb (N,), required for L2 (same kind of array as xb).
        backend: "faiss", "numpy" or "torch" (see the module docstring).
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
    if backend == "torch":
        import torch

        device = xb.device
        q_t = torch.as_tensor(q, device=device)
    for chunk in _chunks(counts[has], chunk_elems):
        qs = has[chunk]
        C = int(counts[qs].max())
        slot = np.arange(C)[None, :]
        valid = slot < counts[qs][:, None]  # (n_c, C)
        cand = np.where(valid, rows[np.minimum(starts[qs][:, None] + slot, len(rows) - 1)], 0)
        if backend == "faiss":
            d_, r_ = _topk_faiss(q[qs], xb, cand, valid, metric, k)
            D[qs], R[qs] = d_, r_
            continue
        if backend == "torch":
            s, p = _score_topk_torch(q_t[torch.as_tensor(qs, device=device)], xb, norms, cand, valid, metric, k)
        else:
            s, p = _topk_numpy(_score_numpy(q[qs], xb, norms, cand, valid, metric), k)
        got = np.isfinite(s)
        r = np.where(got, np.take_along_axis(cand, p, axis=1), -1)
        if metric != faiss.METRIC_INNER_PRODUCT:
            s = -s + (q[qs] ** 2).sum(1, keepdims=True)
        kk = s.shape[1]
        D[qs, :kk] = np.where(got, s, worst_value(metric))
        R[qs, :kk] = r
    return D, R


def _score_topk_torch(q, xb, norms, cand, valid, metric, k):
    import torch

    device = xb.device
    cand_t = torch.as_tensor(cand, device=device)
    valid_t = torch.as_tensor(valid, device=device)
    vecs = xb[cand_t].float()  # (n, C, d)
    dots = torch.bmm(vecs, q[:, :, None]).squeeze(-1)  # (n, C)
    score = dots if metric == faiss.METRIC_INNER_PRODUCT else -(norms[cand_t] - 2 * dots)
    score = score.masked_fill(~valid_t, float("-inf"))
    s, p = torch.topk(score, min(k, score.shape[1]), dim=1)
    return s.cpu().numpy().astype(np.float32), p.cpu().numpy()
