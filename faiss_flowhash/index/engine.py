"""The scan engine: buckets as faiss inverted lists, probed lists scanned in faiss's C++ or in numba.

Vectors live in a ``faiss.IndexIVFFlat`` (``IndexIVFScalarQuantizer`` QT_fp16 for float16 storage)
whose lists are buckets: each bucket's vectors are contiguous, and a query's probed lists are scanned
by ``search_preassigned`` with an (n, P) assign matrix of list ids in probe order (-1 padded), so the
scan is faiss's own (SIMD, multi-threaded over queries). ``max_codes`` is the candidate budget: faiss
scans exactly that many stored entries per query, the last list only in part. The engine knows lists,
not codes: the bucket map (:mod:`.bucket_map`) turns codes into list ids.

Storage: the lists live in *parts*, owned IVFs each holding a range of list ids (growing the number of
lists appends a part: no list is ever copied to grow), and, for an engine opened from a lists file
memory-mapped (:mod:`.lists_file`), in a read-only *base*. A base list is copied into its part the first
time an add, a removal or a split touches it (copy on write; its mapped pages are left alone), so a small
change costs what it touches. Several parts, or a base, are scanned as one faiss
``VStackInvertedLists`` (base lists first, then the parts; the search maps each list id to where it
lives), so the scan, its order and its budget are those of one ArrayInvertedLists.

The numba scan (``search(..., jit=True)``, :mod:`._scan_jit`) reads the same lists in place through a
table of their addresses: a batch's (query, list) pairs grouped by list, so each probed list is read
once per batch (FlowHash's lists are many and small: bench/results/engine.md, section 6). Every change
that can move a list (an add, a split, a copy on write, a removal) marks it in :meth:`_changed`, and
the next jit search looks only those up again.

Copies: a vector may be added to several lists (spill / radius copies); the engine then searches
``k x copies`` and removes duplicate ids. The faiss direct map (id -> list, offset) is built only when
``reconstruct`` asks for it (a hashtable, ~50 bytes a vector) and dropped before ``remove_ids``; with
copies it points at one of them (all copies hold the same vector).
"""

import io

import numpy as np
import faiss

from .lists_file import Lists, lists_header, write_lists
from .threads import blocks, n_threads, run

__all__ = ["IVFEngine", "dedupe_topk", "order_ties", "worst_value", "scan_kernels", "LIST_OVERHEAD_BYTES", "JIT_MAX_K",
           "GROUP_MIN_ROWS", "GROUP_ENTRIES"]

LIST_OVERHEAD_BYTES = 160  # an empty ArrayInvertedLists list, measured (faiss 1.15: two MaybeOwnedVectors)
JIT_MAX_K = 64  # the numba scan keeps k results in a sorted buffer (O(k) an insert): larger k go to faiss
GROUP_MIN_ROWS = 32  # batches of at least this many rows are scanned grouped by list
GROUP_ENTRIES = 1 << 22  # scored entries a grouped block holds (12 bytes each: 48 MiB)

_KERNELS = None


def scan_kernels():
    """The numba scan kernels (:mod:`._scan_jit`), imported on first use; None when numba is missing."""
    global _KERNELS
    if _KERNELS is None:
        try:
            from . import _scan_jit
        except ImportError:
            _KERNELS = False
        else:
            _KERNELS = _scan_jit
    return _KERNELS or None


def worst_value(metric: int) -> float:
    """Padding distance for missing results, as faiss: -FLT_MAX for inner product, +FLT_MAX for L2."""
    big = float(np.finfo(np.float32).max)
    return -big if metric == faiss.METRIC_INNER_PRODUCT else big


def _pad(D: np.ndarray, I: np.ndarray, k: int, metric: int):
    if D.shape[1] < k:
        D = np.pad(D, ((0, 0), (0, k - D.shape[1])), constant_values=worst_value(metric))
        I = np.pad(I, ((0, 0), (0, k - I.shape[1])), constant_values=-1)
    return np.ascontiguousarray(D[:, :k], np.float32), np.ascontiguousarray(I[:, :k], np.int64)


def dedupe_topk(D: np.ndarray, I: np.ndarray, k: int, metric: int):
    """Per row, keep the first (best) hit of each id, best first, then the first k.

    D, I (n, m) sorted best first, -1 ids at the end. Returns D, I (n, k), padded with the worst value / -1.
    Rows without a repeated id (all of them when k = 1) are sliced, not re-sorted.
    """
    n, m = I.shape
    if k == 1 or m == 1:
        return _pad(D[:, :1], I[:, :1], k, metric)
    s = np.sort(I, axis=1)
    has_dup = ((s[:, 1:] == s[:, :-1]) & (s[:, 1:] >= 0)).any(1)
    if not has_dup.any():
        return _pad(D, I, k, metric)
    D, I = D.copy(), I.copy()
    r = np.flatnonzero(has_dup)
    Ir, Dr = I[r], D[r]
    rows = np.arange(len(r))[:, None]
    order = np.argsort(Ir, axis=1, kind="stable")  # equal ids: the best-ranked first
    srt = Ir[rows, order]
    dup_sorted = np.zeros(srt.shape, bool)
    dup_sorted[:, 1:] = (srt[:, 1:] == srt[:, :-1]) & (srt[:, 1:] >= 0)
    dup = np.empty_like(dup_sorted)
    dup[rows, order] = dup_sorted
    keep = np.argsort(dup, axis=1, kind="stable")  # unique hits first, in rank order
    Dr, Ir, gone = Dr[rows, keep], Ir[rows, keep], dup[rows, keep]
    Dr[gone], Ir[gone] = worst_value(metric), -1
    D[r], I[r] = Dr, Ir
    return _pad(D, I, k, metric)


def order_ties(D: np.ndarray, I: np.ndarray, metric: int):
    """Hits of equal score in id order (rows sorted best first): which of two equal scores a scan ranks
    first depends on the scan (faiss's heap, the numba buffer), so equal vectors stored under several
    ids come back in one order whichever scan ran. Rows without a tie are left as they are."""
    if D.shape[1] < 2:
        return D, I
    r = np.flatnonzero(((D[:, 1:] == D[:, :-1]) & (I[:, 1:] >= 0)).any(1))
    if len(r) == 0:
        return D, I
    key = D[r] if metric != faiss.METRIC_INNER_PRODUCT else -D[r]
    o = np.lexsort((np.where(I[r] >= 0, I[r], np.iinfo(np.int64).max), key), axis=-1)
    D, I = D.copy(), I.copy()
    D[r], I[r] = np.take_along_axis(D[r], o, 1), np.take_along_axis(I[r], o, 1)
    return D, I


class IVFEngine:
    """Inverted lists of vectors and ids, scanned by faiss or by the numba kernels.

    Args:
        d: vector dimension.
        metric: ``faiss.METRIC_INNER_PRODUCT`` or ``faiss.METRIC_L2`` (D is then squared L2, as faiss).
        storage: "float32" (IndexIVFFlat) or "float16" (IndexIVFScalarQuantizer QT_fp16).
    """

    def __init__(self, d: int, metric: int = faiss.METRIC_INNER_PRODUCT, storage: str = "float32"):
        if storage not in ("float32", "float16"):
            raise ValueError(f"storage: expected 'float32' or 'float16', got {storage!r}")
        self.d, self.metric, self.storage = int(d), metric, storage
        self.max_copies = 1  # most lists one vector was added to
        self.device = "cpu"
        self._gpu = None  # (resources, gpu index) when device != cpu, rebuilt after changes
        self.reset()

    # -- construction -----------------------------------------------------------------------------
    def _new_ivf(self, nlist: int):
        quantizer = faiss.IndexFlat(self.d, self.metric)  # never used: lists come preassigned
        if self.storage == "float32":
            ivf = faiss.IndexIVFFlat(quantizer, self.d, nlist, self.metric)
        else:
            ivf = faiss.IndexIVFScalarQuantizer(quantizer, self.d, nlist, faiss.ScalarQuantizer.QT_fp16,
                                                self.metric, False)
        ivf.is_trained = True  # flat / fp16 codes need no training
        return ivf

    @property
    def nlist(self) -> int:
        """Lists allocated (some may still be empty)."""
        return int(self._starts[-1]) + int(self._parts[-1].nlist)

    @property
    def n_entries(self) -> int:
        """Stored entries, copies included."""
        return self._n

    @property
    def mapped(self) -> bool:
        """Whether some lists are still read from a memory-mapped lists file."""
        return self._base is not None and bool((~self._own[: self._base.nlist]).any())

    def reserve(self, n_lists: int) -> None:
        """Make list ids 0 .. n_lists - 1 valid: a new part for the new lists (x1.5 capacity, at least
        64), so growing copies nothing and costs O(new lists)."""
        if n_lists <= self.nlist:
            return
        start = self.nlist
        cap = max(int(n_lists), int(start * 1.5), 64)
        part = self._new_ivf(cap - start)
        if self._parts[-1].nlist == 0:
            self._parts[-1] = part
        else:
            for p in self._parts:  # several parts: the scan's own map replaces theirs
                p.set_direct_map_type(faiss.DirectMap.NoMap)
            self._parts.append(part)
            self._starts = np.r_[self._starts, start]
        self._sizes = np.r_[self._sizes, np.zeros(cap - start, np.int64)]
        if self._own is not None:
            self._own = np.r_[self._own, np.ones(cap - start, bool)]
        self._scan = self._gpu = None

    def _changed(self, lists: np.ndarray | None = None) -> None:
        """After lists changed: the GPU copy and the scan's id map are stale, and so are the scan
        table's addresses of ``lists`` (None: of every list)."""
        self._gpu = None
        if self._scan is not None:
            self._scan[0].set_direct_map_type(faiss.DirectMap.NoMap)
        if lists is None:
            self._addr = None
        elif self._addr is not None:
            self._dirty.append(np.asarray(lists, np.int64).reshape(-1))

    def _locate(self, lists: np.ndarray):
        """(part index, list id within that part) of each list id."""
        j = np.searchsorted(self._starts, lists, side="right") - 1
        return j, lists - self._starts[j]

    def _list_home(self, lists: np.ndarray):
        """(InvertedLists, local list id) per list: the base's for lists not yet copied, else the part's."""
        lists = np.asarray(lists, np.int64)
        j, loc = self._locate(lists)
        out = []
        for lst, jj, ll in zip(lists.tolist(), j.tolist(), loc.tolist()):
            if self._base is not None and lst < self._base.nlist and not self._own[lst]:
                out.append((self._base.il, lst))
            else:
                out.append((self._parts[jj].invlists, ll))
        return out

    def _scan_ivf(self):
        """The IVF faiss scans: the one part itself, or one over a VStackInvertedLists of base + parts."""
        return self._scan_refs()[0]

    def _scan_refs(self):
        """(scan IVF, what it points at): a caller that scans holds the tuple, so a concurrent rebuild
        cannot free what its scan reads."""
        if self._base is None and len(self._parts) == 1:
            return (self._parts[0],)
        scan = self._scan
        if scan is None:
            ils = ([self._base.il] if self._base is not None else []) + [p.invlists for p in self._parts]
            ptrs = faiss.InvertedListsPtrVector()
            for il in ils:
                ptrs.push_back(il)
            stack = faiss.VStackInvertedLists(ptrs.size(), ptrs.data())
            ivf = self._new_ivf(0)
            ivf.nlist = stack.nlist
            ivf.replace_invlists(stack, False)
            scan = self._scan = (ivf, stack, ptrs, ils)  # the IVF points at the others: keep them alive
        scan[0].ntotal = self._n
        return scan

    def _physical(self, assign: np.ndarray) -> np.ndarray:
        """List ids of the scan IVF: with a base, a list copied into the parts is base nlist further."""
        if self._base is None:
            return assign
        valid = assign >= 0
        a = np.where(valid, assign, 0)
        return np.where(valid, assign + self._base.nlist * self._own[a], -1)

    def _copy_on_write(self, lists: np.ndarray) -> None:
        """Copy the base lists among ``lists`` not copied yet into their part (their order kept)."""
        if self._base is None or len(lists) == 0:
            return
        lists = np.unique(np.asarray(lists, np.int64))
        lists = lists[lists < self._base.nlist]
        lists = lists[~self._own[lists]]
        if len(lists) == 0:
            return
        j, loc = self._locate(lists)
        il = self._base.il
        sizes = self._sizes[lists]
        for jj in np.unique(j).tolist():  # per part: one Python call per list, the copy itself in faiss
            sel = j == jj
            dst = self._parts[jj].invlists
            for lst, ll, n in zip(lists[sel].tolist(), loc[sel].tolist(), sizes[sel].tolist()):
                if n:
                    dst.add_entries(ll, n, il.get_ids(lst), il.get_codes(lst))
            self._parts[jj].ntotal = int(self._parts[jj].ntotal) + int(sizes[sel].sum())
        self._own[lists] = True
        self._changed(lists)

    # -- data -------------------------------------------------------------------------------------
    def _add_rows(self, x: np.ndarray, ids: np.ndarray, lists: np.ndarray) -> None:
        if len(self._parts) == 1:
            groups = [(0, x, ids, lists)]
        else:
            j, loc = self._locate(lists)
            groups = []
            for jj in np.unique(j).tolist():
                sel = np.flatnonzero(j == jj)  # rows in their order: a list's entries append in row order
                groups.append((jj, np.ascontiguousarray(x[sel]), np.ascontiguousarray(ids[sel]),
                               np.ascontiguousarray(loc[sel])))
        for jj, xs, ii, ll in groups:
            self._parts[jj].add_core(len(xs), faiss.swig_ptr(xs), faiss.swig_ptr(ii), faiss.swig_ptr(ll))
        self._sizes += np.bincount(lists, minlength=len(self._sizes))
        self._n += len(x)

    def add(self, x: np.ndarray, ids: np.ndarray, list_ids: np.ndarray, spill_list_ids: np.ndarray | None = None):
        """Store x (n, d) under ids (n,) int64 in lists list_ids (n,) int64 >= 0; spill_list_ids (n, s)
        int64 are extra lists (copies) per vector, -1 where none. Costs O(n) plus the lists it touches
        that are still in a mapped base (copied once)."""
        x = np.ascontiguousarray(x, np.float32)
        ids = np.ascontiguousarray(ids, np.int64)
        list_ids = np.ascontiguousarray(list_ids, np.int64)
        if len(x) == 0:
            return
        assert list_ids.min() >= 0, "every vector needs a primary list"
        top = int(list_ids.max())
        if spill_list_ids is not None and spill_list_ids.size:
            spill_list_ids = np.asarray(spill_list_ids, np.int64).reshape(len(x), -1)
            top = max(top, int(spill_list_ids.max()))
        else:
            spill_list_ids = None
        self.reserve(top + 1)
        if self._base is not None:
            touched = list_ids if spill_list_ids is None else np.r_[list_ids, spill_list_ids[spill_list_ids >= 0]]
            self._copy_on_write(touched)
        self._add_rows(x, ids, list_ids)
        if spill_list_ids is not None:
            for col in spill_list_ids.T:
                sel = np.flatnonzero(col >= 0)
                if len(sel):
                    self._add_rows(np.ascontiguousarray(x[sel]), np.ascontiguousarray(ids[sel]),
                                   np.ascontiguousarray(col[sel]))
            copies = 1 + (spill_list_ids >= 0).sum(1).max()
            self.max_copies = max(self.max_copies, int(copies))
        self._changed(list_ids if spill_list_ids is None else np.r_[list_ids, spill_list_ids[spill_list_ids >= 0]])

    def remove_ids(self, ids: np.ndarray) -> int:
        """Remove every entry (copies too) of these ids; returns the entries removed. A mapped base's
        lists that hold them are found by reading its ids, and copied before the removal."""
        ids = np.ascontiguousarray(ids, np.int64)
        if len(ids) == 0 or self._n == 0:
            return 0
        if self._base is not None:
            self._copy_on_write(self._base.lists_holding(ids, among=~self._own[: self._base.nlist]))
        sel = faiss.IDSelectorBatch(len(ids), faiss.swig_ptr(ids))
        removed = 0
        for p in self._parts:
            if p.nlist:
                p.set_direct_map_type(faiss.DirectMap.NoMap)  # the hashtable map removes by IDSelectorArray only
                removed += int(p.remove_ids(sel))
        self._n -= removed
        before = self._sizes.copy()
        self._recount()
        self._changed(np.flatnonzero(self._sizes != before))  # faiss compacts a list in place, if at all
        return removed

    def _recount(self) -> None:
        """List sizes of the parts' lists read back from faiss (after a removal)."""
        lists = np.arange(self.nlist) if self._own is None else np.flatnonzero(self._own)
        homes = self._list_home(lists)
        self._sizes[lists] = np.fromiter((il.list_size(l) for il, l in homes), np.int64, len(lists))

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors (m, d) float32 of ids (m,) that are present (float16 storage: decoded)."""
        ids = np.ascontiguousarray(ids, np.int64)
        if len(ids) == 0:
            return np.zeros((0, self.d), np.float32)
        ivf = self._scan_ivf()
        if ivf.direct_map.type != faiss.DirectMap.Hashtable:
            # over base + parts: a base list copied into a part is mapped too, then overwritten by its
            # copy (parts come later), so every present id maps to where it lives now
            ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        return ivf.reconstruct_batch(ids)

    def reset(self) -> None:
        self._base = None  # Lists of a mapped file (read-only) or None
        self._own = None  # with a base: (nlist,) bool, the list lives in the parts (new, or copied)
        self._parts = [self._new_ivf(0)]  # owned IVFs; part j holds lists _starts[j] ..
        self._starts = np.zeros(1, np.int64)
        self._sizes = np.zeros(0, np.int64)  # entries per list, exact through every change
        self._n = 0
        self._scan = None  # (IVF over a VStackInvertedLists, what it points at) when base / several parts
        self.max_copies = 1
        self._gpu = None
        self._addr = None  # the jit scan's (codes, ids) address of each list, built on first use
        self._dirty = []  # lists whose address may have changed since

    def list_sizes(self) -> np.ndarray:
        """Entries per list (nlist,) int64 (the engine's own array: do not modify)."""
        return self._sizes

    def nbytes(self) -> int:
        """Bytes of list payload (codes + ids) plus the measured per-list overhead (capacity slack of the
        std::vectors not included; bench/engine_bench.py reports resident memory), plus the numba scan's
        address table (16 bytes a list) once a jit search built it. A mapped base's lists
        count although they stay on disk until read (:meth:`mapped_bytes`)."""
        table = 0 if self._addr is None else sum(t.nbytes for t in self._addr)  # the numba scan's addresses
        return self.n_entries * (int(self._parts[0].code_size) + 8) + self.nlist * LIST_OVERHEAD_BYTES + table

    def mapped_bytes(self) -> int:
        """Bytes of list payload still served from the mapped lists file (0 without one)."""
        if self._base is None:
            return 0
        b = self._base
        return int(self._sizes[: b.nlist][~self._own[: b.nlist]].sum()) * (b.code_size + 8)

    def list_entries(self, list_no: int):
        """Entries of one list: ids (m,) int64 and vectors (m, d) float32 (float16 storage decoded)."""
        m = int(self._sizes[list_no])
        if m == 0:
            return np.zeros(0, np.int64), np.zeros((0, self.d), np.float32)
        (il, loc), = self._list_home([list_no])
        cs = int(self._parts[0].code_size)
        ids = faiss.rev_swig_ptr(il.get_ids(loc), m).copy()
        raw = faiss.rev_swig_ptr(il.get_codes(loc), m * cs).copy()
        x = raw.view(np.float32 if self.storage == "float32" else np.float16).reshape(m, self.d)
        return ids, x.astype(np.float32)

    def split_list(self, list_no: int, dest: np.ndarray) -> None:
        """Move the entries of ``list_no`` to lists ``dest`` (m,) int64, one per entry in list order
        (entries whose dest is list_no stay). The codes are moved as stored, without re-encoding."""
        m = int(self._sizes[list_no])
        dest = np.asarray(dest, np.int64)
        if len(dest) != m:
            raise ValueError(f"dest: expected {m} list ids, got {len(dest)}")
        if m == 0:
            return
        self.reserve(int(dest.max()) + 1)
        self._copy_on_write(np.r_[list_no, dest])
        for p in self._parts:  # entries move: the id -> offset maps are stale
            p.set_direct_map_type(faiss.DirectMap.NoMap)
        self._changed(np.r_[list_no, dest])
        cs = int(self._parts[0].code_size)
        (il, loc), = self._list_home([list_no])
        ids = faiss.rev_swig_ptr(il.get_ids(loc), m).copy()
        codes = faiss.rev_swig_ptr(il.get_codes(loc), m * cs).copy().reshape(m, cs)
        il.resize(loc, 0)
        self._sizes[list_no] = 0
        for lst in np.unique(dest).tolist():
            sel = dest == lst
            ci = np.ascontiguousarray(codes[sel])
            ii = np.ascontiguousarray(ids[sel])
            (il_d, loc_d), = self._list_home([lst])
            il_d.add_entries(int(loc_d), int(sel.sum()), faiss.swig_ptr(ii), faiss.swig_ptr(ci))
            self._sizes[lst] += int(sel.sum())

    # -- search -----------------------------------------------------------------------------------
    def search(self, q: np.ndarray, assign: np.ndarray, k: int, max_codes: int = 0, *, jit: bool = False):
        """Scan the assigned lists of each query.

        Args:
            q: queries (n, d) float32.
            assign: (n, P) int64 list ids in probe order, -1 padded (each row's lists distinct).
            k: results per query (>= 1).
            max_codes: scan at most this many entries per query (0: all of the probed lists).
            jit: scan with the numba kernels (:mod:`._scan_jit`: batches grouped by list, each probed
                list read once per batch) where they apply: CPU, float32 storage, k x copies <=
                :data:`JIT_MAX_K`, numba installed. Same results as faiss's scan up to float rounding
                (ties at the k-th place). False: faiss's ``search_preassigned``.

        Returns:
            D (n, k) float32, I (n, k) int64 ids (duplicates removed; -1 padded), and the number of
            entries scanned over all queries.
        """
        q = np.ascontiguousarray(q, np.float32)
        assign = np.ascontiguousarray(assign, np.int64)
        n, P = assign.shape
        if len(q) != n or q.ndim != 2 or q.shape[1] != self.d:
            raise ValueError(f"q: expected ({n}, {self.d}) for {n} rows of assign, got {q.shape}")
        kk = max(1, min(k * self.max_copies, max(self.n_entries, 1)))
        if n == 0 or self.n_entries == 0:
            D = np.full((n, k), worst_value(self.metric), np.float32)
            return D, np.full((n, k), -1, np.int64), 0
        kern = scan_kernels() if jit and self.device == "cpu" and self.storage == "float32" and kk <= JIT_MAX_K else None
        if self.device != "cpu":
            D, I, scanned = self._search_gpu(q, assign, kk, max_codes)
        elif kern is not None:
            D, I, scanned = self._search_jit(kern, q, assign, kk, max_codes)
        else:
            scan = self._scan_refs()
            ivf = scan[0]
            assign = np.ascontiguousarray(self._physical(assign), np.int64)
            D = np.empty((n, kk), np.float32)
            I = np.empty((n, kk), np.int64)
            params = faiss.SearchParametersIVF(nprobe=P, max_codes=int(max_codes))
            coarse = np.zeros((n, P), np.float32)
            stats = faiss.IndexIVFStats()  # per call: faiss.cvar.indexIVF_stats is shared by concurrent searches
            ivf.search_preassigned_c(n, faiss.swig_ptr(q), kk, faiss.swig_ptr(assign), faiss.swig_ptr(coarse),
                                     faiss.swig_ptr(D), faiss.swig_ptr(I), False, params, stats)
            scanned = int(stats.ndis)
            del scan
        if self.max_copies > 1:
            D, I = dedupe_topk(D, I, k, self.metric)
        elif kk != k:
            D, I = _pad(D, I, k, self.metric)
        return (*order_ties(D, I, self.metric), scanned)

    def _search_jit(self, kern, q, assign, k, max_codes):
        """The numba scan: rows in blocks of at most :data:`GROUP_ENTRIES` scored entries, each block
        grouped by list (:func:`._scan_jit.group_pairs`) when it has :data:`GROUP_MIN_ROWS` rows or
        more, else scanned row by row; blocks on threads."""
        caddr, iaddr = self._addresses()
        sizes = self._sizes
        n = len(q)
        if assign.size and int(assign.max()) >= len(sizes):  # the kernels do not bounds-check: faiss would raise
            raise ValueError(f"assign: expected list ids < nlist = {len(sizes)}, got {int(assign.max())}")
        ip = self.metric == faiss.METRIC_INNER_PRODUCT
        D = np.empty((n, k), np.float32)
        I = np.empty((n, k), np.int64)
        counts = kern.row_counts(assign, sizes, int(max_codes))
        ends = np.cumsum(counts)
        cuts = [0]
        while cuts[-1] < n:  # rows of at most GROUP_ENTRIES entries (a bigger row alone)
            base = ends[cuts[-1] - 1] if cuts[-1] else 0
            cuts.append(max(int(np.searchsorted(ends, base + GROUP_ENTRIES, side="right")), cuts[-1] + 1))
        for r0, r1 in zip(cuts[:-1], cuts[1:]):
            self._scan_block(kern, q[r0:r1], assign[r0:r1], max_codes, caddr, iaddr, ip, D[r0:r1], I[r0:r1])
        bad = I < 0
        D = -D if ip else D
        D[bad] = worst_value(self.metric)
        return D, I, int(counts.sum())

    def _scan_block(self, kern, q, assign, max_codes, caddr, iaddr, ip, D, I):
        """One block of rows: grouped by list with GROUP_MIN_ROWS rows or more, else row by row."""
        sizes = self._sizes
        n = len(q)
        if n < GROUP_MIN_ROWS:
            kern.scan_rows(q, assign, caddr, iaddr, sizes, int(max_codes), ip, D, I)
            return
        start, pq, pc, po, T = kern.group_pairs(assign, sizes, int(max_codes))
        dist = np.empty(int(T[-1]), np.float32)
        idout = np.empty(int(T[-1]), np.int64)
        parts = n_threads(n)
        L = len(sizes)
        edges = np.searchsorted(start, np.linspace(0, start[-1], parts + 1)).clip(0, L)  # equal pair counts
        edges[0], edges[-1] = 0, L
        run(lambda t: kern.scan_grouped(q, int(edges[t]), int(edges[t + 1]), start, pq, pc, po, caddr, iaddr,
                                        sizes, ip, dist, idout), list(range(parts)))
        run(lambda s: kern.select_topk(s.start, s.stop, T, dist, idout, D, I), blocks(n, parts))

    def _addresses(self):
        """(codes, ids) address of every list (nlist,) int64 for the numba scan (0 for an empty list):
        built once, then only the lists marked by :meth:`_changed` are looked up again (an add or a
        split moves the lists it touches; a removal compacts in place)."""
        L = self.nlist
        tab = self._addr
        if tab is None:
            todo = np.flatnonzero(self._sizes)
            tab = (np.zeros(L, np.int64), np.zeros(L, np.int64))
        else:
            if len(tab[0]) < L:
                tab = tuple(np.r_[t, np.zeros(L - len(t), np.int64)] for t in tab)
            todo = np.unique(np.concatenate(self._dirty)) if self._dirty else np.zeros(0, np.int64)
        self._dirty = []
        if len(todo):
            caddr, iaddr = tab
            for lst, (il, loc) in zip(todo.tolist(), self._list_home(todo)):
                if self._sizes[lst]:
                    caddr[lst], iaddr[lst] = int(il.get_codes(loc)), int(il.get_ids(loc))
                else:
                    caddr[lst] = iaddr[lst] = 0
        self._addr = tab
        return tab

    def scanned_per_query(self, assign: np.ndarray, max_codes: int = 0) -> np.ndarray:
        """Entries faiss scans for each row of assign (n,), from the list sizes (faiss's max_codes rule)."""
        sizes = np.where(assign >= 0, self.list_sizes()[np.maximum(assign, 0)], 0)
        total = sizes.sum(1)
        return np.minimum(total, max_codes) if max_codes else total

    # -- device -----------------------------------------------------------------------------------
    def to(self, device: str) -> "IVFEngine":
        """Scan on a faiss-gpu device ("cuda" / "cuda:N") or on the CPU; the CPU lists stay the master copy."""
        device = str(device)
        if device != "cpu" and not device.startswith("cuda"):
            raise ValueError(f"device: expected 'cpu' or 'cuda[:N]', got {device!r}")
        if device != "cpu" and not hasattr(faiss, "StandardGpuResources"):
            raise RuntimeError(f"device={device!r} needs faiss-gpu (this faiss {faiss.__version__} is CPU-only)")
        self.device = device
        self._gpu = None
        return self

    def _search_gpu(self, q, assign, k, max_codes):
        # faiss-gpu has no max_codes: keep a query's lists while the entries before them are under the budget
        if self._gpu is None:
            res = faiss.StandardGpuResources()
            dev = int(self.device.split(":")[1]) if ":" in self.device else 0
            self._gpu = (res, faiss.index_cpu_to_gpu(res, dev, self._materialized()))
        sizes = np.where(assign >= 0, self.list_sizes()[np.maximum(assign, 0)], 0)
        if max_codes:
            before = np.cumsum(sizes, axis=1) - sizes
            assign = np.where(before < max_codes, assign, -1)
            sizes = np.where(before < max_codes, sizes, 0)
        n, P = assign.shape
        D = np.empty((n, k), np.float32)
        I = np.empty((n, k), np.int64)
        coarse = np.zeros((n, P), np.float32)
        gpu = self._gpu[1]
        gpu.nprobe = P
        assign = np.ascontiguousarray(assign, np.int64)
        # faiss's Python layer renames the C++ method to *_c on every Index class, GPU ones included
        gpu.search_preassigned_c(n, faiss.swig_ptr(q), k, faiss.swig_ptr(assign), faiss.swig_ptr(coarse),
                                 faiss.swig_ptr(D), faiss.swig_ptr(I), False)
        return D, I, int(sizes.sum())

    # -- persistence ------------------------------------------------------------------------------
    def _materialized(self):
        """One owned IVF holding every list (the part itself when there is one and no base; else a copy)."""
        if self._base is None and len(self._parts) == 1:
            return self._parts[0]
        return faiss.deserialize_index(self._ivf_bytes())

    def _ivf_bytes(self) -> np.ndarray:
        """Every list as one IVF in faiss's serialized format (uint8): the one part's own bytes, or
        :meth:`write_lists` of base + parts (the same layout)."""
        if self._base is None and len(self._parts) == 1:
            ivf = self._parts[0]
            ivf.set_direct_map_type(faiss.DirectMap.NoMap)
            ivf.ntotal = self._n
            return faiss.serialize_index(ivf)
        buf = io.BytesIO()
        self.write_lists(buf)
        return np.frombuffer(buf.getvalue(), np.uint8)

    def _list_data(self, lists: np.ndarray):
        """``list_data`` for :func:`.lists_file.write_lists`: (codes, ids) views of one list."""
        homes = dict(zip(np.asarray(lists).tolist(), self._list_home(lists)))
        cs = int(self._parts[0].code_size)

        def data(lst):
            il, loc = homes[lst]
            n = int(self._sizes[lst])
            return faiss.rev_swig_ptr(il.get_codes(loc), n * cs), faiss.rev_swig_ptr(il.get_ids(loc), n)

        return data

    def lists_header(self) -> bytes:
        """The lists file's bytes before list 0 (:func:`.lists_file.lists_header`); its length is the
        ``data_offset`` :meth:`from_state` needs."""
        empty = self._new_ivf(self.nlist)
        empty.ntotal = self._n
        return lists_header(empty, self._sizes)

    def write_lists(self, f) -> int:
        """Write every list in faiss's IVF format to the binary file object f, one list at a time
        (:mod:`.lists_file`; ``faiss.read_index`` reads it). Returns the data offset."""
        nz = np.flatnonzero(self._sizes)
        return write_lists(f, self.lists_header(), self._sizes, int(self._parts[0].code_size), self._list_data(nz))

    def state(self, *, lists: bool = True) -> dict:
        """Arrays that rebuild the engine: the IVF in faiss's own format (``lists=False``: left out, for a
        lists file written by :meth:`write_lists`), the list sizes and the copy count."""
        out = {"max_copies": np.array([self.max_copies], np.int64), "sizes": self._sizes}
        if lists:
            out["ivf"] = self._ivf_bytes()
        return out

    @classmethod
    def from_state(cls, state: dict, *, d: int, metric: int, storage: str, lists: Lists | None = None) -> "IVFEngine":
        """Inverse of :meth:`state`; ``lists``: the lists file read (:class:`.lists_file.Lists`) when the
        state has no ``ivf``. Mapped lists become the read-only base, read ones the first part."""
        eng = cls(d, metric, storage)
        eng.max_copies = int(np.asarray(state["max_copies"]).reshape(-1)[0])
        if "ivf" in state:
            ivf = faiss.deserialize_index(np.asarray(state["ivf"], np.uint8))  # already downcast, owns itself
            want = faiss.IndexIVFFlat if storage == "float32" else faiss.IndexIVFScalarQuantizer
            if not isinstance(ivf, want) or ivf.d != d or ivf.metric_type != metric:
                raise ValueError(f"engine state: expected a {want.__name__} with d={d}, metric={metric}, "
                                 f"got {type(ivf).__name__} with d={ivf.d}, metric={ivf.metric_type}")
            il = ivf.invlists
            sizes = np.fromiter((il.list_size(i) for i in range(ivf.nlist)), np.int64, ivf.nlist)
            eng._parts = [ivf]
        else:
            if lists is None:
                raise ValueError("engine state: no 'ivf' and no lists file")
            sizes = np.asarray(lists.sizes, np.int64).copy()
            if lists.mapped:
                eng._base = lists
                eng._own = np.zeros(lists.nlist, bool)
                eng._parts = [eng._new_ivf(lists.nlist)]  # empty lists, filled by copy on write
            else:
                eng._parts = [lists.ivf]
        eng._sizes, eng._n = sizes, int(sizes.sum())
        return eng
