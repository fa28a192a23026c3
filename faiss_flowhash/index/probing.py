"""Probe planning: which inverted lists a query scans, in which order ("the hash proposes, centroids rank").

1. The hash proposes: a query's candidate buckets are its own code and every code reached by flipping
   any subset of its ``probe_bits`` least certain bits (smallest |z_k|): 2^probe_bits codes. This is the
   paper's multi-probe set (section 3.4) without the radius: the b cheapest bits are flipped whatever
   their |z|, so every query gets the same number of proposals.
2. Centroids rank: each proposed bucket expands into its lists (one, or the sub-lists of a split
   bucket), and the lists are ordered by the squared L2 distance from the query to each list's centroid
   (faiss's C++ ``knn_L2sqr_by_idx`` over the proposed ids). Only the ``nprobe`` closest are kept.

Flip cost alone ranks a bucket by how sure the query's bits are, not by where the data in the bucket
lies; bench/results/quantizer.md measures centroid ranking against flip-cost order on the same
candidates (recall@1 at 0.1 % evaluated: 0.49 -> 0.90 on the clustered bench set, N = 200k, K = 16).
All functions are pure (numpy and faiss kernels, no state). The index plans with the fused numba
planner (:mod:`.planner`), which computes the same lists in one pass per query; these functions are
its reference (``SearchParams(planner="reference")``) and the oracle of tests/test_planner.py.
"""

import faiss
import numpy as np

from .codes import pack_codes, subset_masks

__all__ = ["flip_candidates", "rank_lists"]


def flip_candidates(z: np.ndarray, probe_bits: int, keep: int | None = None, *,
                    ordered: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """Candidate codes of each query: flips of subsets of its ``probe_bits`` least certain bits.

    Args:
        z: query latents (n, K) float32.
        probe_bits: bits flipped in every combination (0 <= b <= K): 2^b subsets per query.
        keep: keep only this many cheapest subsets per query (None: all 2^b).
        ordered: sort the kept subsets by cost (False: any order, cheaper when the caller re-ranks).

    Returns:
        codes (n, P) uint64, the query's own code first; cost (n, P) float32, the flip cost
        (sum of |z_k| over the flipped bits) of each code; P = min(keep, 2^b). With ``keep`` the
        columns are ordered by cost.
    """
    n, K = z.shape
    b = int(min(probe_bits, K))
    base = pack_codes(z)
    a = np.abs(z)
    pos = np.argsort(a, axis=1, kind="stable")[:, :b]  # (n, b) least certain bits first
    masks = subset_masks(b).astype(np.float32)  # (2^b, b): subset s holds bit j iff (s >> j) & 1
    cost = np.take_along_axis(a, pos, axis=1) @ masks.T  # (n, 2^b) float32 (BLAS)
    subset = np.broadcast_to(np.arange(1 << b, dtype=np.int64), cost.shape)
    if keep is not None and keep < cost.shape[1]:
        part = np.argpartition(cost, keep - 1, axis=1)[:, :keep]
        order = part if not ordered else np.take_along_axis(
            part, np.argsort(np.take_along_axis(cost, part, axis=1), axis=1, kind="stable"), axis=1)
        cost, subset = np.take_along_axis(cost, order, axis=1), order
    flips = np.zeros(cost.shape, np.uint64)
    bitval = np.left_shift(np.uint64(1), pos.astype(np.uint64))  # (n, b)
    for j in range(b):  # flip mask of subset s = OR of the bits it holds
        flips |= ((subset >> j) & 1).astype(np.uint64) * bitval[:, j: j + 1]
    return base[:, None] ^ flips, cost.astype(np.float32)


def rank_lists(q: np.ndarray, centroids: np.ndarray, lists: np.ndarray, nprobe: int) -> np.ndarray:
    """The ``nprobe`` proposed lists nearest to each query, nearest first.

    Args:
        q: queries (n, d) float32 (for inner product, already scaled to the database's norm).
        centroids: (L, d) float32 list centroids (mean of the list's vectors).
        lists: (n, P) int64 proposed list ids per query, distinct within a row, -1 padded at the end.
        nprobe: lists to keep per query (>= 1).

    Returns:
        (n, min(nprobe, P)) int64 list ids, -1 padded where a query has fewer proposals.
    """
    n, P = lists.shape
    k = int(max(1, min(nprobe, P)))
    if n == 0 or P == 0:
        return np.full((n, k if P else 0), -1, np.int64)
    q = np.ascontiguousarray(q, np.float32)
    centroids = np.ascontiguousarray(centroids, np.float32)
    lists = np.ascontiguousarray(lists, np.int64)
    D = np.empty((n, k), np.float32)
    I = np.empty((n, k), np.int64)
    faiss.knn_L2sqr_by_idx(faiss.swig_ptr(q), faiss.swig_ptr(centroids), faiss.swig_ptr(lists), q.shape[1],
                           n, len(centroids), P, k, faiss.swig_ptr(D), faiss.swig_ptr(I), P)
    return I
