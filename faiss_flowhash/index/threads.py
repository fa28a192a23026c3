"""Row blocks on threads: the one pool the GIL-releasing numba kernels (:mod:`.planner`, the engine's
scan) run on, as many threads as faiss's OpenMP uses (``faiss.omp_set_num_threads`` sets both)."""

import os
from concurrent.futures import ThreadPoolExecutor

import faiss
import numpy as np

__all__ = ["PARALLEL_MIN", "n_threads", "blocks", "run"]

PARALLEL_MIN = 16  # rows per thread at least: smaller batches run on the calling thread

_POOL = None


def _pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(max_workers=os.cpu_count() or 2, thread_name_prefix="flowhash")
    return _POOL


def n_threads(n: int, min_rows: int = PARALLEL_MIN) -> int:
    """Threads for n rows: faiss's OpenMP thread count, at most one per ``min_rows`` rows, at least 1."""
    return max(1, int(min(faiss.omp_get_max_threads(), n // max(int(min_rows), 1))))


def blocks(n: int, parts: int) -> list:
    """``parts`` contiguous slices covering 0 .. n - 1, of near-equal length."""
    if parts <= 1:
        return [slice(0, int(n))]
    edges = np.linspace(0, n, int(parts) + 1).astype(int)
    return [slice(int(edges[i]), int(edges[i + 1])) for i in range(len(edges) - 1)]


def run(fn, items: list) -> list:
    """fn over items: on the pool when there are several, else on the calling thread."""
    if len(items) <= 1:
        return [fn(it) for it in items]
    return list(_pool().map(fn, items))
