"""The centroid probe planner, fused: flips -> bucket lookup -> lists -> centroid ranking in one pass.

What it computes is :mod:`.probing`'s "the hash proposes, centroids rank" (the reference, kept as the
oracle: :func:`reference_plan`): for each query the ``keep`` cheapest flips of its ``probe_bits``
least certain bits are looked up in the bucket map, every list of the found buckets is ranked by the
squared L2 distance from the query to its centroid, and the ``nprobe`` nearest are kept, nearest first.

:func:`fused_plan` does it per query in one numba kernel (:mod:`._jit`), without the reference's
(n, 2^b) cost matrix, (n, P) proposal matrices and their sorts: the cheapest flips come best first
by merging sorted subset lists bit by bit (:func:`._jit.cheapest_flips`, O(b x keep)),
each code is looked up in the dense code table (or a binary search of the sorted codes above
K = 20), and centroid distances are computed as the lists are found. A batch is cut into row blocks
planned on threads (the kernel releases the GIL), as many as faiss's OpenMP threads.

The two agree on the list sets, up to ties (a flip cost or a centroid distance equal, in float, at the
``keep``-th / ``nprobe``-th place: the two sum in a different order): tests/test_planner.py checks it
on random data. numba is imported on the first fused plan (not at package import); the first call in
a fresh environment compiles (seconds, then cached on disk: bench/results/planner.md).
"""

import numpy as np

from .bfloat16 import to_bf16
from .params import PLANNERS
from .probing import flip_candidates, rank_lists
from .threads import PARALLEL_MIN, blocks, n_threads, run as run_blocks

__all__ = ["fused_plan", "reference_plan", "jit_kernels", "loaded_kernels", "choose_planner", "AUTO_FUSED_MIN_ROWS",
           "PARALLEL_MIN", "PLANNERS"]

_KERNELS = None
_MAX_OUT = 1 << 20  # above this many output entries (nprobe=None) the lists are counted before planning
_NO_SPACE = (np.zeros((1, 1), np.uint8), np.zeros(1, np.float32))  # placeholders without a shortlist


def jit_kernels():
    """The compiled kernels module (:mod:`._jit`), imported on first use; None when numba is missing."""
    global _KERNELS
    if _KERNELS is None:
        try:
            from . import _jit
        except ImportError:  # numba not installed: callers fall back to the reference planner
            _KERNELS = False
        else:
            _KERNELS = _jit
    return _KERNELS or None


#: planner="auto" plans calls of at least this many queries with numba (importing it: 3-7 s in a new
#: process, a one-time compile of ~30 s in a fresh environment), smaller calls with the reference planner
#: unless numba is already loaded; a short CLI query (a 3 s snippet is ~21 rows) never pays the import.
AUTO_FUSED_MIN_ROWS = 256


def loaded_kernels():
    """The kernels module if it was already imported in this process (no import here), else None."""
    return _KERNELS or None


def choose_planner(planner: str, n_rows: int) -> str:
    """"fused" or "reference" for a call of ``n_rows`` queries (``planner`` in :data:`PLANNERS`)."""
    if planner == "reference":
        return "reference"
    if planner == "auto" and n_rows < AUTO_FUSED_MIN_ROWS and loaded_kernels() is None:
        return "reference"
    return "fused" if jit_kernels() is not None else "reference"


def _n_proposals(probe_bits: int, keep: int | None, K: int) -> int:
    full = 1 << int(min(probe_bits, K))
    return full if keep is None else int(min(keep, full))


def fused_plan(z: np.ndarray, q: np.ndarray, *, probe_bits: int, keep: int | None, nprobe: int | None,
               tables: tuple, centroids: np.ndarray, max_group: int, shortlist: int | None = None,
               space: tuple | None = None, grouped: np.ndarray | None = None) -> tuple[np.ndarray, int]:
    """Lists to scan for each query, planned in one numba pass.

    Args:
        z: query latents (n, K) float32.
        q: queries (n, d) float32 (inner product: already scaled to the database's norm).
        probe_bits: flip every subset of this many least certain bits (<= K).
        keep: propose only the ``keep`` cheapest flips (None: all 2^probe_bits).
        nprobe: keep this many lists, nearest centroid first (None: every proposed list).
        tables: the bucket map's ``(dense, keys, offsets, lists)`` (:meth:`.BucketMap.tables`).
        centroids: (L, d) list centroids by list id, float32 (rounded to bfloat16 here) or bfloat16
            bits (uint16); read only when ``grouped`` is None.
        max_group: the most lists one code maps to.
        shortlist: rank the proposed lists by an estimate from 8-bit centroid codes first and compute
            the exact distance for this many only (None: exact for every proposed list).
        space: ``(vmin, scale, codes)`` (:meth:`.ListCentroids.sq8`), needed with ``shortlist``; the
            codes' rows in the order of ``grouped`` (by list id when ``grouped`` is None).
        grouped: (L, d) uint16 bfloat16 bits of the centroids in the order of ``tables``' lists
            (:meth:`.ListCentroids.layout`, the index's one copy); None: gathered here from ``centroids``.

    Returns:
        (assign (n, P) int64 list ids nearest first, -1 padded, P >= 1; codes looked up).
    """
    n, K = z.shape
    m = _n_proposals(probe_bits, keep, K)
    dense, keys, offsets, lists = tables
    room = max(min(m * max(int(max_group), 1), len(lists)), 1)  # a row's lists are distinct
    P = room if nprobe is None else int(min(nprobe, room))
    if n == 0:
        return np.full((0, P), -1, np.int64), 0
    kern = jit_kernels()
    if kern is None:
        raise ImportError("the fused planner needs numba (pip install numba); planner='reference' does not")
    fn = kern.plan_serial
    q = np.ascontiguousarray(q, np.float32)
    if shortlist:
        vmin, scale, cred = space
        if grouped is None:
            cred = np.ascontiguousarray(cred[lists])
        qr = np.ascontiguousarray((q - vmin) / scale, np.float32)
        cres = np.ascontiguousarray(scale * scale, np.float32)
        short = int(max(shortlist, P))
    else:
        qr, (cred, cres), short = np.zeros((n, 1), np.float32), _NO_SPACE, 0
    z = np.ascontiguousarray(z, np.float32)
    if grouped is None:
        c = np.asarray(centroids)
        grouped = np.ascontiguousarray(c[lists] if c.dtype == np.uint16 else to_bf16(np.asarray(c, np.float32)[lists]))
    elif grouped.dtype != np.uint16:
        raise TypeError(f"grouped: expected bfloat16 bits (uint16), got {grouped.dtype}")
    b = int(min(probe_bits, K))
    run = lambda s: fn(z[s], q[s], b, m, P, dense, keys, offsets, lists, grouped, qr[s], cred, cres, short, out[s])
    if n * P > _MAX_OUT:  # nprobe=None: every proposed list; count them first (lookups only)
        P = max(int(min(kern.count_lists(z, b, m, dense, keys, offsets).max(), P)), 1)
    out = np.full((n, P), -1, np.int64)
    # the kernel releases the GIL: row blocks on threads, as many as faiss's scan uses
    got = np.concatenate(run_blocks(run, blocks(n, n_threads(n))))
    width = max(int(got.max()), 1)
    return (out[:, :width] if width < out.shape[1] else out), n * m


def reference_plan(z: np.ndarray, q: np.ndarray, *, probe_bits: int, keep: int | None, nprobe: int | None,
                   bucket_map, centroids: np.ndarray, rows=None) -> tuple[np.ndarray, int]:
    """The same plan in numpy + faiss kernels (:func:`.probing.flip_candidates`,
    :meth:`.BucketMap.probe_matrix`, :func:`.probing.rank_lists`): the oracle of :func:`fused_plan`.

    ``centroids`` (L, d) float32 are by list id; or pass ``rows`` (a :class:`.ListCentroids`) and
    ``centroids=None``: only the proposed lists' centroids are decoded (:meth:`.ListCentroids.gather`)."""
    n = len(z)
    codes, _ = flip_candidates(z, probe_bits, keep, ordered=False)
    A = bucket_map.probe_matrix(np.repeat(np.arange(n), codes.shape[1]), codes.reshape(-1), n)
    if rows is None:
        return rank_lists(q, centroids, A, nprobe or A.shape[1]), codes.size
    uniq, base, local = rows.gather(A)
    if len(uniq) == 0:  # nothing proposed: every entry is -1 and never read, but the kernel needs a row
        base = np.zeros((1, q.shape[1]), np.float32)
    ranked = rank_lists(q, base, local, nprobe or A.shape[1])
    return np.where(ranked >= 0, uniq[np.maximum(ranked, 0)], -1), codes.size
