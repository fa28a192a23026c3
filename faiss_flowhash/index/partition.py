"""Bounded buckets: oversized buckets are split into sub-lists, and every list keeps its centroid.

On clustered data a sign code puts whole dense regions into one bucket (sign-of-PCA at N = 200k,
K = 16: the largest bucket holds 150x the mean). A bucket whose list grows past ``cap`` vectors is
split by recursive median cuts (:func:`median_split`) into sub-lists of at most ``cap`` vectors; the sub-lists join the bucket's
group in the bucket map, new vectors of the bucket go to the nearest sub-list centroid, and the probe
planner ranks sub-lists like any other list. So the largest list stays bounded (predictable tail
latency and GPU batches) and a dense region is scanned in pieces, nearest first.

Pure functions plus :class:`ListCentroids`, a running mean per list.
"""

import faiss
import numpy as np

from .bfloat16 import from_bf16, to_bf16
from .growth import append_rows, fit_rows, held_bytes

__all__ = ["ListCentroids", "median_split", "nearest_in_groups"]


class ListCentroids:
    """Mean of the vectors in each list, kept once: rows (L, d) of bfloat16 bit patterns (uint16,
    :mod:`.bfloat16`) in a *layout* order, and counts (L,) int64 by list id.

    The planner reads the centroids of a probed code's lists as one contiguous block, so the rows are
    kept in the order of the bucket map's ``lists`` array (CSR order: each code's lists together) once
    :meth:`layout` has been given it; ``row_of`` maps a list id to its row, ``id_of`` a row to its list
    id (identity until the first layout; new lists get rows at the end). One copy: an earlier version
    kept the means by id *and* a copy in map order, 4 d bytes per list each (84 B per vector at 8
    vectors per list, d = 128); the rows are bfloat16 since, 2 d bytes per list (43 B per vector there).

    The centroids only rank lists, and bfloat16 ranks as float32 does (same R@1 on real fingerprints;
    bench/results/fingerprints.md). Updates are running means: a batch's per-list sums are taken in
    float64 and merged with ``mean * count`` before the mean is rounded to bfloat16 (relative error
    <= 2^-8 per coordinate). Fed one vector at a time, such a mean stops moving after ~150 updates, so
    the index recomputes a list's mean from its vectors when its count doubles, and at a split or a
    removal (:meth:`FlowHashIndex._refresh_centroids`). Bytes: 2 d per list (the
    figure :meth:`FlowHashIndex.memory_bytes` counts), plus 8 for the count and 16 for the two maps.
    8-bit codes of the rows (:meth:`sq8`, d bytes per list) are derived, cached until they change, and
    counted once built.
    """

    def __init__(self, d: int):
        self.d = int(d)
        self.rows = np.zeros((0, self.d), np.uint16)  # bfloat16 bits
        self.counts = np.zeros(0, np.int64)
        self.row_of = np.zeros(0, np.int64)  # list id -> row
        self.id_of = np.zeros(0, np.int64)  # row -> list id
        self._space = None
        self._layout = None  # the lists array the rows are laid out for
        self._rows_buf = self._counts_buf = self._row_of_buf = self._id_of_buf = None  # room (append_rows)

    def __getstate__(self):  # the views pickle as arrays of their own; the room behind them does not
        state = self.__dict__.copy()
        state["_rows_buf"] = state["_counts_buf"] = state["_row_of_buf"] = state["_id_of_buf"] = None
        return state

    def __len__(self) -> int:
        return len(self.counts)

    def reserve(self, n_lists: int) -> None:
        """Make lists 0 .. n_lists - 1 valid (new ones empty, in new rows at the end). The arrays are
        prefix views of buffers with room (x1.5), so adding a few lists at a time copies each row O(1)
        times."""
        old = len(self.counts)
        grow = int(n_lists) - old
        if grow <= 0:
            return
        new = np.arange(old, old + grow, dtype=np.int64)
        self._rows_buf, self.rows = append_rows(self._rows_buf, self.rows, np.zeros((grow, self.d), np.uint16),
                                                min_rows=64)
        self._counts_buf, self.counts = append_rows(self._counts_buf, self.counts, np.zeros(grow, np.int64),
                                                    min_rows=64)
        self._row_of_buf, self.row_of = append_rows(self._row_of_buf, self.row_of, new, min_rows=64)
        self._id_of_buf, self.id_of = append_rows(self._id_of_buf, self.id_of, new, min_rows=64)
        self._space = self._layout = None

    def update(self, list_ids: np.ndarray, x: np.ndarray, sign: int = 1) -> None:
        """Add (sign=1) or take away (sign=-1) vectors x (n, d) of lists list_ids (n,). Taking away scales
        the stored mean's rounding error by count before / count after; the index recomputes a changed
        list's mean from its vectors instead (:meth:`FlowHashIndex._rebuild_centroids`)."""
        if len(list_ids) == 0:
            return
        self.reserve(int(list_ids.max()) + 1)
        uniq, inv = np.unique(list_ids, return_inverse=True)
        inv = inv.reshape(-1)
        order = np.argsort(inv, kind="stable")  # each list's rows in row order: the sums np.add.at would give
        n_new = np.bincount(inv, minlength=len(uniq)).astype(np.int64)
        sums = np.add.reduceat(x[order].astype(np.float64), np.r_[0, np.cumsum(n_new)[:-1]], axis=0)
        old = self.counts[uniq]
        count = old + sign * n_new
        r = self.row_of[uniq]
        total = from_bf16(self.rows[r]).astype(np.float64) * old[:, None] + sign * sums
        self.rows[r] = to_bf16(np.where(count[:, None] > 0, total / np.maximum(count, 1)[:, None], 0.0))
        self.counts[uniq] = count
        self._space = None

    def clear(self, list_ids: np.ndarray) -> None:
        self.rows[self.row_of[list_ids]] = 0
        self.counts[list_ids] = 0
        self._space = None

    @property
    def means(self) -> np.ndarray:
        """(L, d) float32 means by list id (0 for empty lists), decoded from the bfloat16 rows (a copy)."""
        return from_bf16(self._bits_by_id())

    def _bits_by_id(self) -> np.ndarray:
        """The rows by list id: the rows themselves while the layout is the identity, else a gathered copy."""
        return self.rows if self._identity() else self.rows[self.row_of]

    def centroids(self) -> np.ndarray:
        """Same as :attr:`means`."""
        return self.means

    def gather(self, list_ids: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """The centroids of the lists named in ``list_ids`` (any shape, -1 padded), decoded once each:
        (uniq (u,) list ids, base (u, d) float32 centroids, local: ``list_ids``' shape, the row of base of
        each entry, -1 kept). So a ranking over a few lists never decodes the whole table."""
        list_ids = np.asarray(list_ids, np.int64)
        valid = list_ids >= 0
        named = list_ids[valid]
        L = len(self.counts)
        local = np.full(list_ids.shape, -1, np.int64)
        if L <= 8 * len(named):  # many entries for the table's size: mark and count, O(entries + lists), no sort
            seen = np.zeros(L, bool)
            seen[named] = True
            uniq = np.flatnonzero(seen)
            pos = np.empty(L, np.int64)
            pos[uniq] = np.arange(len(uniq))
            local[valid] = pos[named]
        else:
            uniq, inv = np.unique(named, return_inverse=True)
            local[valid] = inv.reshape(-1)
        return uniq, from_bf16(self.rows[self.row_of[uniq]]), local

    def of(self, list_ids: np.ndarray) -> np.ndarray:
        """Rows of ``list_ids`` (any shape, -1 kept as -1)."""
        list_ids = np.asarray(list_ids, np.int64)
        return np.where(list_ids >= 0, self.row_of[np.maximum(list_ids, 0)], -1)

    def layout(self, lists: np.ndarray) -> np.ndarray:
        """The rows (bfloat16 bits) in the order of a bucket map's ``lists`` array (row t = centroid of
        list lists[t]): the rows are permuted into that order (once per change of ``lists``) and returned,
        no copy kept. ``lists`` must name every list once (the bucket map's do); otherwise a gathered copy."""
        if self._layout is lists:
            return self.rows
        lists = np.asarray(lists, np.int64)
        L = len(self.counts)
        if len(lists) != L or (L and (lists.min() < 0 or lists.max() >= L
                                      or np.bincount(lists, minlength=L).max() != 1)):
            return np.ascontiguousarray(self.rows[self.of(lists)])
        self.rows[:] = self.rows[self.row_of[lists]]  # fancy indexing gathers a copy first
        self.id_of[:] = lists
        self.row_of[lists] = np.arange(L, dtype=np.int64)
        self._layout = lists
        self._space = None
        return self.rows

    def _identity(self) -> bool:
        return bool(np.array_equal(self.id_of, np.arange(len(self.id_of))))

    def sq8(self):
        """8-bit codes of the rows (in row order) for the planner's first-stage ranking, cached until
        the rows change: (vmin (d,), scale (d,), codes (L, d) uint8), c ~ vmin + scale * code per dimension."""
        if self._space is None:
            C = from_bf16(self.rows)
            lo = C.min(0) if len(C) else np.zeros(self.d, np.float32)
            hi = C.max(0) if len(C) else np.ones(self.d, np.float32)
            scale = np.maximum((hi - lo) / 255.0, 1e-30).astype(np.float32)
            codes = np.clip(np.rint((C - lo) / scale), 0, 255).astype(np.uint8)
            self._space = (lo.astype(np.float32), scale, np.ascontiguousarray(codes))
        return self._space

    def fit(self) -> None:
        """Give back the room behind the arrays when it is over a quarter of them (after a bulk add)."""
        self._rows_buf, self.rows = fit_rows(self._rows_buf, self.rows)
        self._counts_buf, self.counts = fit_rows(self._counts_buf, self.counts)
        self._row_of_buf, self.row_of = fit_rows(self._row_of_buf, self.row_of)
        self._id_of_buf, self.id_of = fit_rows(self._id_of_buf, self.id_of)  # same order: the layout holds

    @property
    def nbytes(self) -> int:
        """Bytes held for the rows, counts and the two maps (their room included), plus the 8-bit codes
        when built."""
        extra = 0 if self._space is None else sum(a.nbytes for a in self._space)
        return (held_bytes(self._rows_buf, self.rows) + held_bytes(self._counts_buf, self.counts)
                + held_bytes(self._row_of_buf, self.row_of) + held_bytes(self._id_of_buf, self.id_of) + extra)

    def state(self) -> dict:
        """The means by list id as stored (bfloat16 bits, ``means_bf16``) and the counts: a round trip
        gives back the same bits, so the same plans."""
        return {"means_bf16": self._bits_by_id(), "counts": self.counts}

    @classmethod
    def from_state(cls, state: dict) -> "ListCentroids":
        """Inverse of :meth:`state`; also reads the float32 ``means`` and float64 ``sums`` of earlier files."""
        counts = np.asarray(state["counts"], np.int64)
        if "means_bf16" in state:
            bits = np.asarray(state["means_bf16"])
            if bits.dtype != np.uint16 or bits.ndim != 2 or len(bits) != len(counts):
                raise ValueError(f"list centroids: expected means_bf16 (L, d) uint16 and counts (L,), got "
                                 f"{bits.shape} {bits.dtype}, {counts.shape}")
            return cls._of_rows(np.array(bits, np.uint16, order="C"), counts)
        if "means" in state:
            means = np.asarray(state["means"], np.float32)
        else:
            sums = np.asarray(state["sums"], np.float64)
            if sums.ndim != 2 or len(sums) != len(counts):
                raise ValueError(f"list centroids: expected sums (L, d) and counts (L,), got {sums.shape}, {counts.shape}")
            means = (sums / np.maximum(counts, 1)[:, None]).astype(np.float32)
        if means.ndim != 2 or len(means) != len(counts):
            raise ValueError(f"list centroids: expected means (L, d) and counts (L,), got {means.shape}, {counts.shape}")
        return cls._of_rows(to_bf16(means), counts)

    @classmethod
    def _of_rows(cls, rows: np.ndarray, counts: np.ndarray) -> "ListCentroids":
        """Centroids with these bfloat16 rows by list id (the identity layout) and counts."""
        c = cls(rows.shape[1])
        c.rows, c.counts = rows, counts.copy()
        c.row_of = np.arange(len(counts), dtype=np.int64)
        c.id_of = c.row_of.copy()
        return c


def median_split(y: np.ndarray, cells: np.ndarray, cap: int) -> np.ndarray:
    """Split every cell larger than ``cap`` by recursive median cuts (a k-d tree inside the cell).

    Each round cuts every oversized cell in two halves at its median along the coordinate of y with
    the largest variance inside that cell; all cells are cut at once (vectorised), so a cell of m rows
    needs ceil(log2(m / cap)) rounds.

    Args:
        y: (n, e) coordinates to cut along (e.g. the top principal components of the data).
        cells: (n,) int64 starting cell of each row (e.g. its bucket's list).
        cap: largest cell size allowed (>= 1).

    Returns:
        (n,) int64 labels: rows in different starting cells never share a label; no label has more
        than ``cap`` rows; labels are 0 .. g-1 in order of first appearance by cell.
    """
    if cap < 1:
        raise ValueError(f"cap: expected >= 1, got {cap}")
    n = len(cells)
    _, lab = np.unique(cells, return_inverse=True)
    lab = lab.astype(np.int64)
    y = np.asarray(y, np.float64)
    while n:
        sizes = np.bincount(lab)
        big = sizes > cap
        if not big.any():
            break
        rows = np.flatnonzero(big[lab])
        c = lab[rows]
        m = sizes[c]
        yr = y[rows]
        var = np.stack([np.bincount(c, yr[:, j] ** 2, len(sizes)) - np.bincount(c, yr[:, j], len(sizes)) ** 2
                        / np.maximum(sizes, 1) for j in range(y.shape[1])], axis=1)
        dim = np.argmax(var, axis=1)  # (cells,) the widest coordinate of each cell
        v = y[rows, dim[c]]
        order = np.lexsort((np.arange(len(rows)), v, c))  # by cell, then value (ties by position)
        first = np.searchsorted(c[order], c[order])  # start of each row's cell in the sorted order
        rank = np.arange(len(rows)) - first
        upper = np.zeros(len(rows), bool)
        upper[order] = rank >= (m[order] // 2)
        new = lab.max() + 1 + np.cumsum(big) - 1  # a fresh label per oversized cell
        lab[rows[upper]] = new[c[upper]]
        _, lab = np.unique(lab, return_inverse=True)
        lab = lab.astype(np.int64)
    return lab


def nearest_in_groups(x: np.ndarray, groups: np.ndarray, centroids: np.ndarray) -> np.ndarray:
    """For each row of x (n, d), the entry of its group (n, G) int64 (-1 padded at the end; rows of
    ``centroids`` (L, d) float32) whose centroid is nearest (squared L2). Rows whose group has one entry
    get it without a distance. Returns (n,) int64."""
    out = groups[:, 0].copy()
    multi = np.flatnonzero(groups[:, 1] >= 0) if groups.shape[1] > 1 else np.zeros(0, np.int64)
    if len(multi):
        xs = np.ascontiguousarray(x[multi], np.float32)
        g = np.ascontiguousarray(groups[multi], np.int64)
        D = np.empty((len(multi), 1), np.float32)
        I = np.empty((len(multi), 1), np.int64)
        c = np.ascontiguousarray(centroids, np.float32)
        faiss.knn_L2sqr_by_idx(faiss.swig_ptr(xs), faiss.swig_ptr(c), faiss.swig_ptr(g), x.shape[1], len(multi),
                               len(c), g.shape[1], 1, faiss.swig_ptr(D), faiss.swig_ptr(I), g.shape[1])
        out[multi] = I[:, 0]
    return out
