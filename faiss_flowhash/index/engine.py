"""The scan engine: buckets as faiss inverted lists, probed lists scanned in faiss's C++.

Vectors live in a ``faiss.IndexIVFFlat`` (``IndexIVFScalarQuantizer`` QT_fp16 for float16 storage)
whose lists are buckets: each bucket's vectors are contiguous, and a query's probed lists are scanned
by ``search_preassigned`` with an (n, P) assign matrix of list ids in probe order (-1 padded), so the
scan is faiss's own (SIMD, multi-threaded over queries). ``max_codes`` is the candidate budget: faiss
scans exactly that many stored entries per query, the last list only in part. The engine knows lists,
not codes: the bucket map (:mod:`.bucket_map`) turns codes into list ids.

Copies: a vector may be added to several lists (spill / radius copies); the engine then searches
``k x copies`` and removes duplicate ids. The faiss direct map (id -> list, offset) is built only when
``reconstruct`` asks for it (a hashtable, ~50 bytes a vector) and dropped before ``remove_ids``; with
copies it points at one of them (all copies hold the same vector).
"""

import numpy as np
import faiss

__all__ = ["IVFEngine", "dedupe_topk", "worst_value", "LIST_OVERHEAD_BYTES"]

LIST_OVERHEAD_BYTES = 160  # an empty ArrayInvertedLists list, measured (faiss 1.15: two MaybeOwnedVectors)


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


class IVFEngine:
    """Inverted lists of vectors and ids, scanned by faiss.

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
        self._ivf = self._new_ivf(0)
        self._sizes = None  # cached list sizes (nlist,)
        self._gpu = None  # (resources, gpu index) when device != cpu, rebuilt after changes

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
        return int(self._ivf.nlist)

    @property
    def n_entries(self) -> int:
        """Stored entries, copies included."""
        return int(self._ivf.ntotal)

    def reserve(self, n_lists: int) -> None:
        """Make list ids 0 .. n_lists - 1 valid. Growing copies the stored lists once (C++ memcpy per
        list), so capacity grows geometrically (x1.5) and a sequence of adds costs amortised O(N)."""
        if n_lists <= self.nlist:
            return
        cap = max(int(n_lists), int(self.nlist * 1.5), 64)
        new = self._new_ivf(cap)
        old = self._ivf
        old.set_direct_map_type(faiss.DirectMap.NoMap)
        oil, nil = old.invlists, new.invlists
        old_sizes = self.list_sizes()
        for lst in np.flatnonzero(old_sizes).tolist():
            nil.add_entries(lst, int(old_sizes[lst]), oil.get_ids(lst), oil.get_codes(lst))
        new.ntotal = old.ntotal
        self._ivf = new
        self._gpu = None
        self._sizes = np.r_[old_sizes, np.zeros(cap - len(old_sizes), np.int64)]

    def _changed(self) -> None:
        self._sizes = None
        self._gpu = None

    # -- data -------------------------------------------------------------------------------------
    def add(self, x: np.ndarray, ids: np.ndarray, list_ids: np.ndarray, spill_list_ids: np.ndarray | None = None):
        """Store x (n, d) under ids (n,) int64 in lists list_ids (n,) int64 >= 0; spill_list_ids (n, s)
        int64 are extra lists (copies) per vector, -1 where none."""
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
        self.reserve(top + 1)
        ivf = self._ivf
        sizes = self.list_sizes()  # kept exact through adds (bincount), recounted only after removals
        ivf.add_core(len(x), faiss.swig_ptr(x), faiss.swig_ptr(ids), faiss.swig_ptr(list_ids))
        sizes += np.bincount(list_ids, minlength=len(sizes))
        if spill_list_ids is not None and spill_list_ids.size:
            for col in spill_list_ids.T:
                sel = np.flatnonzero(col >= 0)
                if len(sel):
                    xs, ids_s, ls = np.ascontiguousarray(x[sel]), np.ascontiguousarray(ids[sel]), np.ascontiguousarray(col[sel])
                    ivf.add_core(len(sel), faiss.swig_ptr(xs), faiss.swig_ptr(ids_s), faiss.swig_ptr(ls))
                    sizes += np.bincount(ls, minlength=len(sizes))
            copies = 1 + (spill_list_ids >= 0).sum(1).max()
            self.max_copies = max(self.max_copies, int(copies))
        self._gpu = None

    def remove_ids(self, ids: np.ndarray) -> int:
        """Remove every entry (copies too) of these ids; returns the entries removed."""
        ids = np.ascontiguousarray(ids, np.int64)
        if len(ids) == 0 or self.n_entries == 0:
            return 0
        self._ivf.set_direct_map_type(faiss.DirectMap.NoMap)  # the hashtable map removes by IDSelectorArray only
        sel = faiss.IDSelectorBatch(len(ids), faiss.swig_ptr(ids))
        removed = int(self._ivf.remove_ids(sel))
        self._changed()
        return removed

    def reconstruct(self, ids: np.ndarray) -> np.ndarray:
        """Stored vectors (m, d) float32 of ids (m,) that are present (float16 storage: decoded)."""
        ids = np.ascontiguousarray(ids, np.int64)
        if len(ids) == 0:
            return np.zeros((0, self.d), np.float32)
        if self._ivf.direct_map.type != faiss.DirectMap.Hashtable:
            self._ivf.set_direct_map_type(faiss.DirectMap.Hashtable)
        return self._ivf.reconstruct_batch(ids)

    def reset(self) -> None:
        self._ivf = self._new_ivf(0)
        self.max_copies = 1
        self._changed()

    def list_sizes(self) -> np.ndarray:
        """Entries per list (nlist,) int64 (cached until the next change)."""
        if self._sizes is None:
            il = self._ivf.invlists
            self._sizes = np.fromiter((il.list_size(i) for i in range(self.nlist)), np.int64, self.nlist)
        return self._sizes

    def nbytes(self) -> int:
        """Bytes of list payload (codes + ids) plus the measured per-list overhead (capacity slack of the
        std::vectors not included; bench/engine_bench.py reports resident memory)."""
        return self.n_entries * (int(self._ivf.code_size) + 8) + self.nlist * LIST_OVERHEAD_BYTES

    def list_entries(self, list_no: int):
        """Entries of one list: ids (m,) int64 and vectors (m, d) float32 (float16 storage decoded)."""
        il = self._ivf.invlists
        m = il.list_size(list_no)
        if m == 0:
            return np.zeros(0, np.int64), np.zeros((0, self.d), np.float32)
        ids = faiss.rev_swig_ptr(il.get_ids(list_no), m).copy()
        raw = faiss.rev_swig_ptr(il.get_codes(list_no), m * self._ivf.code_size).copy()
        x = raw.view(np.float32 if self.storage == "float32" else np.float16).reshape(m, self.d)
        return ids, x.astype(np.float32)

    def split_list(self, list_no: int, dest: np.ndarray) -> None:
        """Move the entries of ``list_no`` to lists ``dest`` (m,) int64, one per entry in list order
        (entries whose dest is list_no stay). The codes are moved as stored, without re-encoding."""
        il = self._ivf.invlists
        m = il.list_size(list_no)
        dest = np.asarray(dest, np.int64)
        if len(dest) != m:
            raise ValueError(f"dest: expected {m} list ids, got {len(dest)}")
        if m == 0:
            return
        self.reserve(int(dest.max()) + 1)
        il = self._ivf.invlists
        self._ivf.set_direct_map_type(faiss.DirectMap.NoMap)  # entries move: the id -> offset map is stale
        cs = self._ivf.code_size
        ids = faiss.rev_swig_ptr(il.get_ids(list_no), m).copy()
        codes = faiss.rev_swig_ptr(il.get_codes(list_no), m * cs).copy().reshape(m, cs)
        il.resize(list_no, 0)
        for lst in np.unique(dest):
            sel = dest == lst
            ci = np.ascontiguousarray(codes[sel])
            ii = np.ascontiguousarray(ids[sel])
            il.add_entries(int(lst), int(sel.sum()), faiss.swig_ptr(ii), faiss.swig_ptr(ci))
        self._changed()

    # -- search -----------------------------------------------------------------------------------
    def search(self, q: np.ndarray, assign: np.ndarray, k: int, max_codes: int = 0):
        """Scan the assigned lists of each query.

        Args:
            q: queries (n, d) float32.
            assign: (n, P) int64 list ids in probe order, -1 padded (each row's lists distinct).
            k: results per query (>= 1).
            max_codes: scan at most this many entries per query (0: all of the probed lists).

        Returns:
            D (n, k) float32, I (n, k) int64 ids (duplicates removed; -1 padded), and the number of
            entries scanned over all queries.
        """
        q = np.ascontiguousarray(q, np.float32)
        assign = np.ascontiguousarray(assign, np.int64)
        n, P = assign.shape
        kk = max(1, min(k * self.max_copies, max(self.n_entries, 1)))
        if n == 0 or self.n_entries == 0:
            D = np.full((n, k), worst_value(self.metric), np.float32)
            return D, np.full((n, k), -1, np.int64), 0
        if self.device != "cpu":
            D, I, scanned = self._search_gpu(q, assign, kk, max_codes)
        else:
            D = np.empty((n, kk), np.float32)
            I = np.empty((n, kk), np.int64)
            params = faiss.SearchParametersIVF(nprobe=P, max_codes=int(max_codes))
            coarse = np.zeros((n, P), np.float32)
            stats = faiss.IndexIVFStats()  # per call: faiss.cvar.indexIVF_stats is shared by concurrent searches
            self._ivf.search_preassigned_c(n, faiss.swig_ptr(q), kk, faiss.swig_ptr(assign), faiss.swig_ptr(coarse),
                                           faiss.swig_ptr(D), faiss.swig_ptr(I), False, params, stats)
            scanned = int(stats.ndis)
        if self.max_copies > 1:
            D, I = dedupe_topk(D, I, k, self.metric)
        elif kk != k:
            D, I = _pad(D, I, k, self.metric)
        return D, I, scanned

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
            self._gpu = (res, faiss.index_cpu_to_gpu(res, dev, self._ivf))
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
    def state(self) -> dict:
        """Arrays that rebuild the engine: the IVF in faiss's own format, and the copy count."""
        self._ivf.set_direct_map_type(faiss.DirectMap.NoMap)
        return {"ivf": faiss.serialize_index(self._ivf), "max_copies": np.array([self.max_copies], np.int64)}

    @classmethod
    def from_state(cls, state: dict, *, d: int, metric: int, storage: str) -> "IVFEngine":
        eng = cls(d, metric, storage)
        ivf = faiss.deserialize_index(np.asarray(state["ivf"], np.uint8))  # already downcast, owns itself
        want = faiss.IndexIVFFlat if storage == "float32" else faiss.IndexIVFScalarQuantizer
        if not isinstance(ivf, want) or ivf.d != d or ivf.metric_type != metric:
            raise ValueError(f"engine state: expected a {want.__name__} with d={d}, metric={metric}, "
                             f"got {type(ivf).__name__} with d={ivf.d}, metric={ivf.metric_type}")
        eng._ivf = ivf
        eng.max_copies = int(np.asarray(state["max_copies"]).reshape(-1)[0])
        return eng
