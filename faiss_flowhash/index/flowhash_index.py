"""FlowHashIndex: a FAISS-style index over a learned K-bit hash (paper sections 3.3-3.4).

The quantizer maps a vector to K latents z; the sign bits are its bucket code. Each non-empty bucket
is one faiss inverted list (:mod:`.engine`), found through a compact code -> list map
(:mod:`.bucket_map`). A query probes its own bucket and those reached by flipping its least certain
bits (|z_k| < r~), cheapest first, until a candidate budget; the engine scans the probed lists
(numba, batches grouped by list, where numba plans; faiss's C++ otherwise).
Multi-assignment (a vector also stored in another bucket): ``"none"`` (default) stores each vector
once; ``"spill"`` copies the most uncertain fraction once, to the bucket of its cheapest bit flip;
``"radius"`` is the paper's r-ball copies. At equal % evaluated neither copy scheme bought recall
over "none" in bench/results/engine.md (cheapest-first probing already visits those buckets), and
they cost memory, hence the default. Duplicate hits are removed.
``last_search_stats`` holds the paper's efficiency metric (% of the database evaluated).
"""

import logging
import math
import numbers
import threading
import time
from dataclasses import dataclass

import faiss
import numpy as np

from .balance import code_balance
from .checks import as_ids, as_matrix, check_k, check_unique_ids
from .codes import code_dtype, expand_codes, pack_codes, probe_codes
from .engine import IVFEngine, worst_value
from .bucket_map import BucketMap
from .code_bits import auto_K
from .errors import NotTrainedError
from .growth import append_rows, fit_rows, held_bytes
from .params import DEFAULT, SearchParams
from .partition import ListCentroids, median_split, nearest_in_groups
from .planner import choose_planner, fused_plan, reference_plan
from .quantizer import FlowQuantizer, QuantizerConfig

__all__ = ["FlowHashIndex", "SearchStats", "ASSIGN_MODES"]

_METRICS = {faiss.METRIC_INNER_PRODUCT: "inner_product", faiss.METRIC_L2: "L2"}
ASSIGN_MODES = ("spill", "none", "radius")
_MAX_ID = np.iinfo(np.int64).max
_MAX_RESULT_ELEMS = 1 << 28  # (n, k) results past ntotal are padding: refuse to allocate more than this
_GROUP_CELLS = 1 << 22  # (row, list) cells of one nearest-sub-list pass in add (32 MiB of int64)
_REFRESH_MIN = 64  # a list's mean is recomputed from its vectors when its count crosses 64, 128, 256, ...
_QUERY_CHUNK = 1024  # queries planned at once (their proposals are (chunk, max_probes))

log = logging.getLogger("faiss_flowhash")


@dataclass
class SearchStats:
    """Statistics of the last search, means per query.

    Attributes:
        n_queries: queries searched.
        buckets_probed: codes looked up per query (non-empty or not).
        lists_scanned: inverted lists handed to the scan per query (a split bucket has several).
        candidates: stored entries scanned per query (a spilled vector's copy counts once more).
        eval_percent: 100 * candidates / ntotal, the paper's ``eval``.
    """

    n_queries: int = 0
    buckets_probed: float = 0.0
    lists_scanned: float = 0.0
    candidates: float = 0.0
    eval_percent: float = 0.0


class FlowHashIndex:
    """Learned hash index with the FAISS Index protocol.

    ``FlowHashIndex(K=16)`` then ``add(x)`` takes d from the first batch and, if untrained, trains the
    quantizer on that batch first (one log line). ``FlowHashIndex(d, K=16)`` + ``train(x)`` + ``add``
    is the FAISS path.

    Args:
        d: vector dimension (None: taken from the first ``train``/``add`` batch).
        K: code bits: 2^K buckets (paper: 16; 2..62). None (default): chosen when the quantizer is
            trained, from the training set's size n, ``round(log2(n / 8))`` clipped to [2, 16]
            (:func:`.code_bits.auto_K`: 14 at 100k vectors, 16 from ~500k on; buckets of ~8 vectors,
            measured on real fingerprints). Train on about as many vectors as the index will hold, or
            pass K.
        metric: ``faiss.METRIC_INNER_PRODUCT`` (default) or ``faiss.METRIC_L2``.
        assign: multi-assignment: "none" (default), "spill" or "radius" (paper: r-ball copies).
        spill: fraction of the vectors (the least certain: smallest min_k |z_k|) stored a second time,
            in the bucket of their cheapest bit flip (assign="spill"; 0.1 costs ~1.1x the memory).
        r: radius of the copies (assign="radius" only; default, and paper: 1.0): a vector is copied
            under every flip of its bits with |z_k| < r, at most max_assign_bits of them (2: <= 4 copies;
            the paper listed row numbers, these are whole vectors, 4d bytes each).
        r_query: probe radius at search time (paper: 1.25).
        max_probe_bits: at most this many flippable bits per query (<= 2^bits probes).
        budget: stop scanning a query after this many stored entries (None: probe all).
        max_probes: probe at most this many buckets per query, cheapest first (None: no cap). With
            ``r_query=float("inf")`` and a budget this probes by flip cost over the ``max_probe_bits``
            least certain bits (bench/RESULTS.md, "Probing by radius or by budget").
        storage: "float32" or "float16" for the stored vectors (scores are computed in float32).
        device: where the quantizer and the scans run ("cpu"; "cuda[:N]" needs faiss-gpu). See ``to``.
        config: :class:`QuantizerConfig` for training (ignored when ``quantizer`` is given).
        quantizer: a trained :class:`FlowQuantizer` to use as is (then ``train`` is not needed).
    """

    def __init__(
        self,
        d: int | None = None,
        K: int | None = None,
        metric: int = faiss.METRIC_INNER_PRODUCT,
        *,
        assign: str = "none",
        spill: float = 0.1,
        r: float | None = None,
        max_assign_bits: int = 2,
        r_query: float = 1.25,
        max_probe_bits: int = 12,
        budget: int | None = None,
        max_probes: int | None = 1024,
        probe: str = "centroid",
        nprobe: int | None = 64,
        bucket_cap: int | None = None,
        storage: str = "float32",
        device: str = "cpu",
        config: QuantizerConfig | None = None,
        quantizer: FlowQuantizer | None = None,
    ):
        if metric not in _METRICS:
            raise ValueError(f"metric: expected faiss.METRIC_INNER_PRODUCT or faiss.METRIC_L2, got {metric!r}")
        if storage not in ("float32", "float16"):
            raise ValueError(f"storage: expected 'float32' or 'float16', got {storage!r}")
        if assign not in ASSIGN_MODES:
            raise ValueError(f"assign: expected one of {ASSIGN_MODES}, got {assign!r}")
        if isinstance(spill, bool) or not isinstance(spill, numbers.Real) or not 0 <= spill <= 1:
            raise ValueError(f"spill: expected a fraction in [0, 1], got {spill!r}")
        if r is not None and assign != "radius":
            raise ValueError(f"r: the radius of assign='radius' copies; got r={r!r} with assign={assign!r} "
                             "(pass assign='radius' too, or drop r)")
        r = 1.0 if r is None else r
        if isinstance(r, bool) or not isinstance(r, numbers.Real) or math.isnan(r) or r < 0:
            raise ValueError(f"r: expected a number >= 0, got {r!r}")
        if not 0 <= max_assign_bits <= 20:
            raise ValueError(f"max_assign_bits: expected in [0, 20], got {max_assign_bits}")
        if d is not None and (isinstance(d, bool) or not isinstance(d, numbers.Integral) or d < 1):
            raise ValueError(f"d: expected None or an int >= 1, got {d!r}")
        if bucket_cap is not None and (isinstance(bucket_cap, bool) or not isinstance(bucket_cap, numbers.Integral)
                                       or bucket_cap < 1):
            raise ValueError(f"bucket_cap: expected None or an int >= 1, got {bucket_cap!r}")
        self.params = SearchParams(r_query=r_query, budget=budget, max_probes=max_probes,
                                   max_probe_bits=max_probe_bits, probe=probe, nprobe=nprobe, planner="auto",
                                   shortlist=None)
        self.bucket_cap = None if bucket_cap is None else int(bucket_cap)
        if K is not None and (isinstance(K, bool) or not isinstance(K, numbers.Integral) or not 2 <= K <= 62):
            raise ValueError(f"K: expected None or an int in [2, 62], got {K!r}")
        if quantizer is not None:
            if d is not None and quantizer.d != d:
                raise ValueError(f"quantizer: expected d={d}, got a quantizer with d={quantizer.d}")
            d, K = quantizer.d, quantizer.K
        self._config = config
        self.d, self.K, self.metric_type = (None if d is None else int(d)), (None if K is None else int(K)), metric
        self.quantizer = quantizer
        self.assign, self.spill, self.r, self.max_assign_bits = assign, float(spill), float(r), int(max_assign_bits)
        self.storage, self.device = storage, str(device)
        self.verbose = True
        self._stats_local = threading.local()
        self.last_search_stats = SearchStats()
        self._ref_norm = None  # typical database norm: queries are encoded at this scale (inner product)
        self._spill_t = None  # min |z| below which a vector spills (the ``spill`` quantile of the first add)
        if self.d is not None:
            self._setup()

    def _setup(self) -> None:
        """Create the quantizer (unless given, or K is still to be chosen) and the empty storage once d is known."""
        if self.quantizer is None and self.K is not None:
            self._new_quantizer()
        self._engine = IVFEngine(self.d, self.metric_type, self.storage)
        if self.device != "cpu":
            self._engine.to(self.device)
        self.reset()

    def _new_quantizer(self) -> None:
        # flip probing pays for every vector of a probed bucket: gate the flow on candidates scanned
        gate = "candidates" if self.params.probe == "flip" else "probes"
        self.quantizer = FlowQuantizer(self.d, self.K, config=self._config or QuantizerConfig(device=self.device,
                                                                                           gate=gate))

    @property
    def last_search_stats(self) -> SearchStats:
        """Statistics of the last search made by the calling thread (concurrent searches from several
        threads each see their own); a thread that never searched sees the index's latest."""
        return getattr(self._stats_local, "stats", None) or self._last_stats

    @last_search_stats.setter
    def last_search_stats(self, stats: SearchStats) -> None:
        self._stats_local.stats = stats
        self._last_stats = stats

    def __getstate__(self):  # a thread-local cannot be pickled: it is per process anyway
        state = self.__dict__.copy()
        state.pop("_stats_local", None)
        if "_ids_buf" in state:  # the views are pickled as arrays of their own: the room behind them is not
            state["_ids_buf"] = state["_codes_buf"] = None
        return state

    def __setstate__(self, state):
        self.__dict__.update(state)
        self._stats_local = threading.local()

    # -- search settings (thin aliases of ``params``) ----------------------------------------------
    r_query = property(lambda self: self.params.r_query)
    budget = property(lambda self: self.params.budget)
    max_probes = property(lambda self: self.params.max_probes)
    max_probe_bits = property(lambda self: self.params.max_probe_bits)
    probe = property(lambda self: self.params.probe)
    nprobe = property(lambda self: self.params.nprobe)

    # -- FAISS protocol ---------------------------------------------------------------------------
    @property
    def is_trained(self) -> bool:
        return self.quantizer is not None and self.quantizer.is_trained

    @property
    def ntotal(self) -> int:
        return self._n if self.d is not None else 0

    def train(self, x, x_pos=None):
        """Train the quantizer on x (n, d); x_pos (n, d) are optional positives (distorted views).

        On an index that holds vectors, the stored vectors are re-bucketed under the new quantizer
        (same ids, same order), so the index stays exact-consistent; this costs one pass over them.
        """
        x = self._as_batch(x)
        if x_pos is not None:
            x_pos = as_matrix(x_pos, self.d, name="x_pos")
            if len(x_pos) != len(x):
                raise ValueError(f"x_pos: expected shape {x.shape} (one positive per row of x), got {x_pos.shape}")
        if len(x) >= 2 and float(np.ptp(x, axis=0).max()) == 0.0:
            raise ValueError(f"x: all {len(x)} training rows are identical; the quantizer needs varied vectors")
        if len(x) < 2:
            raise ValueError(f"x: expected at least 2 training rows, got {len(x)}")
        stored = (self.reconstruct_n(), self._ids.copy()) if self._n else None
        if self.quantizer is None:  # K=None: the code length comes from the training set's size
            self.K = auto_K(len(x))
            log.info("FlowHashIndex: K=%d code bits for %d training vectors (K=None: round(log2(n / 8)), "
                     "clipped to [2, 16])", self.K, len(x))
            self._new_quantizer()
            self.reset()
        report = self.quantizer.train(x, x_pos)
        if report is not None and report.nll is not None and not np.isfinite(report.nll):
            self.quantizer.is_trained = False  # a NaN flow is no quantizer: the index stays untrained
            raise ValueError(f"training diverged (nll={report.nll}); the training vectors may be degenerate")
        self._ref_norm = float(np.median(np.linalg.norm(x, axis=1)))
        if stored is not None:
            self.reset()
            self._add(*stored)
        return report

    def add(self, x) -> None:
        """Add vectors x (n, d) with ids continuing after the largest id present (0.. on a new index).

        An untrained index first trains its quantizer on x (logged with n and seconds)."""
        x = self._as_batch(x)
        self._auto_train(x)
        self._add(x, self._new_ids(len(x)))

    def add_with_ids(self, x, ids, *, codes=None) -> None:
        """Add vectors x (n, d) under ids (n,) int64 in [0, 2^63), unique and not already in the index.

        ``codes``: (n,) the bucket codes of x under this index's quantizer (what :meth:`codes_of` returned
        when they were added, e.g. stored beside the vectors), used instead of encoding x; only with
        assign="none" (copies need the latents). None (default): x is encoded.

        Costs O(n) plus the lists it touches: ids above every id present are not looked up."""
        x = self._as_batch(x)
        ids = as_ids(ids, len(x))
        if len(x) == 0:
            return
        check_unique_ids(ids)
        if self._n and int(ids.min()) < self._next_id:  # every id present is below _next_id
            present = self._rows_of(ids) >= 0
            if present.any():
                raise ValueError(f"ids: id {int(ids[present][0])} is already in the index")
        if codes is not None:
            codes = np.asarray(codes)
            if codes.shape != (len(x),) or codes.dtype.kind not in "iu":
                raise ValueError(f"codes: expected ({len(x)},) integer bucket codes, got {codes.shape} {codes.dtype}")
            if self.assign != "none":
                raise ValueError(f"codes: only for assign='none' (copies need the latents), got assign={self.assign!r}")
            if self.K < 64 and codes.size and int(codes.max()) >> self.K:
                raise ValueError(f"codes: expected codes below 2^{self.K}, got {int(codes.max())}")
            self._require_trained("add codes")
            codes = codes.astype(np.uint64)
        self._auto_train(x)
        self._add(x, ids, codes)

    def codes_of(self, ids) -> np.ndarray:
        """The primary bucket codes (m,) uint64 of the vectors with ids ``ids`` (m,); KeyError when one
        is absent. The ids of the last add cost O(m) (no lookup)."""
        ids = as_ids(np.asarray(ids).reshape(-1), np.asarray(ids).size)
        m = len(ids)
        if 0 < m <= self._n and np.array_equal(self._ids[self._n - m:], ids):
            return self._codes[self._n - m:].astype(np.uint64)
        rows = self._rows_of(ids)
        if (rows < 0).any():
            raise KeyError(f"id {int(ids[np.argmax(rows < 0)])} is not in the index")
        return self._codes[rows].astype(np.uint64)

    def search(self, x, k: int, *, params: SearchParams | None = None, r_query=DEFAULT, budget=DEFAULT,
               max_probes=DEFAULT):
        """k nearest neighbours of each query.

        Args:
            x: queries (n, d).
            k: neighbours per query (>= 1; results past ntotal are padded).
            params: :class:`SearchParams` for this call (fields left DEFAULT: the index's settings).
            r_query, budget, max_probes: thin aliases of the same fields (None for budget/max_probes
                here means the index's setting, as before; ``params=SearchParams(budget=None)`` switches
                the budget off).

        Returns:
            D (n, k) float32 scores (inner product, or squared L2) and I (n, k) int64 ids, best first,
            -1 / the metric's worst value where fewer than k candidates were found.
        """
        if params is None and r_query is DEFAULT and (budget is DEFAULT or budget is None) and (
                max_probes is DEFAULT or max_probes is None):
            p = self.params  # the common call: no merging (a single query pays no dataclass work)
        else:
            if params is not None and not isinstance(params, SearchParams):
                raise TypeError(f"params: expected a faiss_flowhash SearchParams, got {type(params).__name__}")
            p = self._merged_params(params, r_query, budget, max_probes)
        k = check_k(k)
        self._require_trained("search")
        x = as_matrix(x, self.d, name="x")
        n = len(x)
        kk = min(k, max(self._n, 1))
        if n * k > _MAX_RESULT_ELEMS and k > kk:
            raise ValueError(f"k={k} with {n} queries asks for {n * k:,} results but the index holds "
                             f"{self._n} vectors: use k <= ntotal")
        if n == 0 or self._n == 0:
            self.last_search_stats = SearchStats(n_queries=n)
            return np.full((n, k), worst_value(self.metric_type), np.float32), np.full((n, k), -1, np.int64)
        D, I, scanned, probed, lists = [], [], 0, 0, 0
        jit = choose_planner(p.planner, n) == "fused"  # numba plans, and numba scans (same import rule)
        for i in range(0, n, _QUERY_CHUNK):  # the proposal matrices grow with 2^max_probe_bits per query
            A, m = self._plan(x[i: i + _QUERY_CHUNK], p)
            Di, Ii, si = self._engine.search(x[i: i + _QUERY_CHUNK], A, kk, max_codes=p.budget or 0, jit=jit)
            D.append(Di), I.append(Ii)
            scanned, probed, lists = scanned + si, probed + m, lists + int((A >= 0).sum())
        D, I = (D[0], I[0]) if len(D) == 1 else (np.concatenate(D), np.concatenate(I))
        if kk < k:
            D = np.pad(D, ((0, 0), (0, k - kk)), constant_values=worst_value(self.metric_type))
            I = np.pad(I, ((0, 0), (0, k - kk)), constant_values=-1)
        self.last_search_stats = SearchStats(
            n_queries=n, buckets_probed=probed / n, lists_scanned=lists / n, candidates=scanned / n,
            eval_percent=100.0 * scanned / n / self._n,
        )
        return D, I

    def _merged_params(self, params, r_query, budget, max_probes) -> SearchParams:
        """The aliases over ``params`` over the index's settings, remembered per distinct call (the merge
        builds three frozen dataclasses, ~40 us: a tenth of a single query)."""
        key = (params, r_query, budget, max_probes, self.params)
        try:
            cache = self.__dict__.setdefault("_merged", {})
            return cache[key]
        except KeyError:
            pass
        except TypeError:  # an unhashable alias (e.g. a list): merged, and refused there, uncached
            cache = None
        alias = SearchParams(r_query=DEFAULT if r_query is None else r_query,
                             budget=DEFAULT if budget is None else budget,
                             max_probes=DEFAULT if max_probes is None else max_probes)
        p = alias.over((params or SearchParams()).over(self.params))
        if cache is not None:
            if len(cache) >= 64:
                cache.clear()
            cache[key] = p
        return p

    def remove_ids(self, ids) -> int:
        """Remove the vectors with these ids; returns how many were removed (unknown ids are skipped)."""
        if isinstance(ids, (int, np.integer)) and not isinstance(ids, bool):
            ids = [ids]
        arr = np.asarray(ids)
        if arr.size == 0:
            return 0
        ids = as_ids(arr.reshape(-1), arr.size)
        if self.d is None:
            return 0
        rows = self._rows_of(np.unique(ids))
        rows = rows[rows >= 0]
        if len(rows) == 0:
            return 0
        before = self._engine.list_sizes().copy()
        self._engine.remove_ids(self._ids[rows])
        self._rebuild_centroids(np.flatnonzero(self._engine.list_sizes() != before))
        keep = np.ones(self._n, bool)
        keep[rows] = False
        self._ids, self._codes = self._ids[keep], self._codes[keep]
        self._ids_buf = self._codes_buf = None  # the old buffers would stay alive behind nothing
        self._n -= len(rows)
        self._id_order = None
        return int(len(rows))

    def reset(self) -> None:
        """Remove every vector (the quantizer stays trained)."""
        if self.d is None:
            return
        self._engine.reset()
        self._map = BucketMap(self.K)
        self._cent = ListCentroids(self.d)
        self._ids = np.zeros(0, np.int64)
        self._codes = np.zeros(0, code_dtype(self.K))  # K=None (not trained yet): uint64 until the first add
        self._ids_buf = self._codes_buf = None  # room behind _ids / _codes (see growth.append_rows)
        self._n = 0
        self._next_id = 0
        self._id_order = None

    def reconstruct(self, key: int) -> np.ndarray:
        """The stored vector with id ``key`` (d,) float32."""
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
            raise TypeError(f"key: expected an int id, got {type(key).__name__}")
        if not 0 <= int(key) <= _MAX_ID:
            raise KeyError(f"id {key} is not in the index (ids are in [0, 2**63))")
        key = int(key)
        if self.d is None or self._rows_of(np.array([key], np.int64))[0] < 0:
            raise KeyError(f"id {key} is not in the index")
        return self._engine.reconstruct(np.array([key], np.int64))[0]

    def reconstruct_batch(self, keys) -> np.ndarray:
        """The stored vectors with ids ``keys`` (m,) as (m, d) float32, in one call; KeyError when one is absent."""
        keys = np.asarray(keys, dtype=np.int64).reshape(-1)
        if len(keys) == 0:
            return np.zeros((0, self.d or 0), np.float32)
        missing = np.ones(len(keys), bool) if self.d is None else self._rows_of(keys) < 0
        if missing.any():
            raise KeyError(f"id {int(keys[np.argmax(missing)])} is not in the index")
        return self._engine.reconstruct(keys)

    def reconstruct_n(self, i0: int = 0, ni: int | None = None) -> np.ndarray:
        """Stored vectors in insertion order, rows i0 .. i0+ni (ni, d) float32."""
        ni = self.ntotal - i0 if ni is None else ni
        if i0 < 0 or ni < 0 or i0 + ni > self.ntotal:
            raise ValueError(f"rows {i0}..{i0 + ni}: expected within 0..{self.ntotal}")
        if ni == 0:
            return np.zeros((0, self.d or 0), np.float32)
        return self._engine.reconstruct(self._ids[i0 : i0 + ni])

    def to(self, device) -> "FlowHashIndex":
        """Move the quantizer (torch) and the scans (faiss-gpu when not "cpu") to ``device``."""
        device = str(device)
        if self.d is not None:
            self._engine.to(device)
        if self.quantizer is not None:
            self.quantizer.to(device)
        self.device = device
        return self

    # -- introspection ----------------------------------------------------------------------------
    @property
    def ids(self) -> np.ndarray:
        """Ids of the stored vectors in insertion order (ntotal,) int64 (a copy)."""
        return self._ids.copy() if self.d is not None else np.zeros(0, np.int64)

    def bucket_sizes(self) -> np.ndarray:
        """Vectors per non-empty bucket under the primary code (B,)."""
        return np.unique(self._codes, return_counts=True)[1]

    def balance(self) -> dict:
        """Balance of the primary codes (see :func:`faiss_flowhash.index.balance.bucket_balance`)."""
        return code_balance(self._codes, self.K)

    def memory_bytes(self) -> int:
        """Bytes held for vectors and ids in the lists (copies included), the per-list overhead, the
        insertion-order ids and codes (K-bit codes in 2, 4 or 8 bytes; the room of their growth buffers
        included) and, once an id lookup built it, their sort order, the bucket map (its dense code
        table included once built), and the list centroids (one bfloat16 copy of the means, kept in bucket-map order, + int64 counts and
        the id <-> row maps) plus their 8-bit codes when a shortlist was used."""
        if self.d is None:
            return 0
        order = 0 if getattr(self, "_id_order", None) is None else self._id_order.nbytes  # id lookups' sort
        return (self._engine.nbytes() + held_bytes(self._ids_buf, self._ids) + held_bytes(self._codes_buf, self._codes)
                + order + self._map.nbytes + self._cent.nbytes)

    @property
    def table_entries(self) -> int:
        """Stored entries: ntotal plus the copies of multi-assignment."""
        return self._engine.n_entries if self.d is not None else 0

    def __repr__(self) -> str:
        return (f"FlowHashIndex(d={self.d}, K={self.K}, metric={_METRICS[self.metric_type]}, ntotal={self.ntotal}, "
                f"is_trained={self.is_trained}, assign={self.assign!r}, r_query={self.r_query})")

    # -- public state (serialize.py writes it to bytes) --------------------------------------------
    def state(self, *, lists: bool = True) -> tuple[dict, dict]:
        """(header, arrays): a JSON-able header and numpy arrays that rebuild the index exactly.

        ``lists=False`` leaves the engine's inverted lists (the vectors) out: they go to a lists file of
        their own (``self._engine.write_lists``, see serialize.write_index's ``lists_path``)."""
        self._require_d("state")
        if self.quantizer is None:
            raise NotTrainedError("cannot write the state: K=None is chosen when the index is trained; "
                                  "train it first, or pass K")
        p = self.params.as_dict()
        header = {
            "d": self.d, "K": self.K, "metric": int(self.metric_type), "assign": self.assign, "spill": self.spill,
            "r": self.r, "max_assign_bits": self.max_assign_bits, "storage": self.storage, "params": p,
            "ntotal": self._n, "next_id": self._next_id, "ref_norm": self._ref_norm, "spill_t": self._spill_t,
            "bucket_cap": self.bucket_cap,
        }
        arrays = {"ids": self._ids, "codes": self._codes}
        arrays.update({f"map/{k}": v for k, v in self._map.state().items()})
        arrays.update({f"cent/{k}": v for k, v in self._cent.state().items()})
        arrays.update({f"engine/{k}": v for k, v in self._engine.state(lists=lists).items()})
        arrays.update({f"q/{k}": v for k, v in self.quantizer.state_dict().items()})
        return header, arrays

    @classmethod
    def from_state(cls, header: dict, arrays: dict, *, device: str = "cpu", lists=None) -> "FlowHashIndex":
        """Inverse of :meth:`state`. Raises ValueError on arrays that do not fit the header.

        ``lists``: the engine's lists file read (:class:`.lists_file.Lists`, memory-mapped or not) when
        the state was written with ``lists=False``."""
        quantizer = FlowQuantizer.from_state({k[2:]: v for k, v in arrays.items() if k.startswith("q/")})
        p = header["params"]
        index = cls(header["d"], header["K"], header["metric"], assign=header["assign"], spill=header["spill"],
                    r=header["r"] if header["assign"] == "radius" else None, max_assign_bits=header["max_assign_bits"], r_query=p["r_query"],
                    max_probe_bits=p["max_probe_bits"], budget=p["budget"], max_probes=p["max_probes"],
                    probe=p["probe"], nprobe=p["nprobe"], bucket_cap=header["bucket_cap"],
                    storage=header["storage"], quantizer=quantizer)
        index.params = SearchParams(**{**index.params.as_dict(),
                                       **{f: v for f, v in p.items() if f in SearchParams.__dataclass_fields__}})
        n = int(header["ntotal"])
        ids, codes = np.asarray(arrays["ids"], np.int64), np.asarray(arrays["codes"])
        if ids.shape != (n,) or codes.shape != (n,):
            raise ValueError(f"arrays do not match ntotal={n}: ids {ids.shape}, codes {codes.shape}")
        if codes.dtype.kind != "u" or (n and int(codes.max()) >> index.K):
            raise ValueError(f"codes: expected unsigned {index.K}-bit codes, got {codes.dtype} up to {codes.max() if n else 0}")
        codes = codes.astype(code_dtype(index.K))  # files before the narrow codes hold uint64
        index._engine = IVFEngine.from_state({k[7:]: v for k, v in arrays.items() if k.startswith("engine/")},
                                             d=index.d, metric=index.metric_type, storage=index.storage,
                                             lists=lists)
        index._map = BucketMap.from_state({k[4:]: v for k, v in arrays.items() if k.startswith("map/")}, index.K)
        if index._map.n_lists > index._engine.nlist:
            raise ValueError(f"bucket map refers to {index._map.n_lists} lists, the engine has {index._engine.nlist}")
        if index._engine.n_entries < n:
            raise ValueError(f"the engine holds {index._engine.n_entries} entries, fewer than ntotal={n}")
        index._cent = ListCentroids.from_state({k[5:]: v for k, v in arrays.items() if k.startswith("cent/")})
        if len(index._cent) < index._map.n_lists:
            raise ValueError(f"list centroids: {len(index._cent)} for {index._map.n_lists} lists")
        index._ids, index._codes, index._n = ids, codes, n
        index._next_id, index._ref_norm, index._spill_t = int(header["next_id"]), header["ref_norm"], header["spill_t"]
        return index.to(device) if device != "cpu" else index

    # -- internals --------------------------------------------------------------------------------
    def _require_d(self, what: str) -> None:
        if self.d is None:
            raise NotTrainedError(f"cannot {what}: the index has no dimension yet; add or train a batch first")

    def _require_trained(self, what: str) -> None:
        if not self.is_trained:
            raise NotTrainedError(f"cannot {what}: the index is not trained; call index.train(x) or index.add(x) first")

    def _as_batch(self, x) -> np.ndarray:
        """x as (n, d) float32; the first batch of an index built without d sets d."""
        if self.d is None:
            arr = np.asarray(x.detach().cpu().numpy() if hasattr(x, "detach") else x)
            if arr.ndim != 2 or arr.shape[1] < 1:
                raise ValueError(f"x: expected shape (n, d) with d >= 1, got {arr.shape}")
            x = as_matrix(arr, arr.shape[1], name="x")
            self.d = int(arr.shape[1])
            self._setup()
            return x
        return as_matrix(x, self.d, name="x")

    def _auto_train(self, x: np.ndarray) -> None:
        if self.is_trained or len(x) == 0:
            return
        t0 = time.perf_counter()
        self.train(x)
        log.warning("FlowHashIndex: not trained; trained the quantizer on the first added batch "
                    "(n=%d, K=%d, %.1f s)", len(x), self.K, time.perf_counter() - t0)

    def _new_ids(self, n: int) -> np.ndarray:
        """Ids for a plain add: continuing after the largest id, or (past 2^63 - 1) the smallest free ones."""
        if self._next_id + n - 1 <= _MAX_ID:
            return np.arange(self._next_id, self._next_id + n, dtype=np.int64)
        used = np.sort(self._ids)
        free, out, start = [], 0, 0
        for u in np.r_[used, _MAX_ID].tolist():  # gaps between used ids, smallest first
            take = min(n - out, u - start)
            if take > 0:
                free.append(np.arange(start, start + take, dtype=np.int64))
                out += take
            if out == n:
                break
            start = u + 1
        if out < n:
            raise ValueError(f"no {n} free ids left below 2**63")
        return np.concatenate(free)

    def _encode(self, x: np.ndarray) -> np.ndarray:
        return self.quantizer.encode(x)

    def _scaled(self, x: np.ndarray) -> np.ndarray:
        """Under inner product each query is scaled to the database's typical norm before it is encoded
        and compared with centroids: its ranking does not depend on its scale, its code would."""
        if self.metric_type == faiss.METRIC_INNER_PRODUCT and self._ref_norm:
            norm = np.linalg.norm(x, axis=1, keepdims=True)
            x = np.where(norm > 0, x * (self._ref_norm / np.maximum(norm, 1e-30)), x).astype(np.float32)
        return x

    def _encode_queries(self, x: np.ndarray) -> np.ndarray:
        return self._encode(self._scaled(x))

    def _add(self, x: np.ndarray, ids: np.ndarray, codes: np.ndarray | None = None) -> None:
        if len(x) == 0:
            return
        if self._ref_norm is None:
            self._ref_norm = float(np.median(np.linalg.norm(x, axis=1)))
        if codes is None:
            z = self._encode(x)
            codes = pack_codes(z)
        spill = None
        if self.assign == "spill" and self.spill > 0:
            a = np.abs(z)
            cheapest = a.argmin(1)
            margin = a[np.arange(len(z)), cheapest]
            if self._spill_t is None or (len(z) >= 1024 and self._n < 1024):
                self._spill_t = float(np.quantile(margin, self.spill)) if self.spill < 1 else math.inf
            sel = margin <= self._spill_t if self.spill < 1 else np.ones(len(z), bool)
            spill_codes = codes ^ np.left_shift(np.uint64(1), cheapest.astype(np.uint64))
            spill = np.where(sel, 0, -1)[:, None].astype(np.int64)
            if sel.any():
                spill[sel, 0] = self._lists_for(spill_codes[sel], x[sel])
        elif self.assign == "radius":
            rows, all_codes = expand_codes(z, radius=self.r, max_bits=self.max_assign_bits)
            # expand_codes lists each row's own code first, then its flips
            order = np.argsort(rows, kind="stable")
            rows, all_codes = rows[order], all_codes[order]
            counts = np.bincount(rows, minlength=len(z))
            pos = np.arange(len(rows)) - np.repeat(np.r_[0, np.cumsum(counts)[:-1]], counts)
            extra = pos > 0
            spill = np.full((len(z), max(int(counts.max()) - 1, 0)), -1, np.int64)
            if extra.any():
                spill[rows[extra], pos[extra] - 1] = self._lists_for(all_codes[extra], x[rows[extra]])
        lists = self._lists_for(codes, x)
        self._engine.add(x, ids, lists, spill)
        touched = np.unique(lists if spill is None else np.r_[lists, spill[spill >= 0]])
        before = self._cent.counts[touched].copy()
        self._cent.update(lists, x)
        if spill is not None:
            for col in spill.T:
                sel = col >= 0
                self._cent.update(col[sel], x[sel])
        self._ids_buf, self._ids = append_rows(self._ids_buf, self._ids, ids)
        if self._n == 0 and self._codes.dtype != code_dtype(self.K):  # K was chosen by the first train
            self._codes_buf, self._codes = None, np.zeros(0, code_dtype(self.K))
        self._codes_buf, self._codes = append_rows(self._codes_buf, self._codes, codes.astype(self._codes.dtype))
        self._n += len(x)
        self._next_id = max(self._next_id, int(ids.max()) + 1)
        self._id_order = None
        self._split_oversized()  # a split recomputes its lists' means, so the refresh comes after it
        self._refresh_centroids(touched, before)
        if 4 * len(x) >= self._n:  # a bulk add: give back the room it left (O(added rows) amortised)
            self._ids_buf, self._ids = fit_rows(self._ids_buf, self._ids)
            self._codes_buf, self._codes = fit_rows(self._codes_buf, self._codes)
            self._cent.fit()

    def _lists_for(self, codes: np.ndarray, x: np.ndarray) -> np.ndarray:
        """List of each vector: its bucket's list, or in a split bucket the sub-list of nearest centroid.
        Lists are compact at every K (one per non-empty bucket or sub-list)."""
        lists = self._map.add_lists(codes)
        self._cent.reserve(self._map.n_lists)
        starts, lengths = self._map.lookup(codes)
        multi = np.flatnonzero(lengths > 1)
        if len(multi):
            # rows by group size, in chunks of at most _GROUP_CELLS (row, list) cells: a chunk's (rows, G)
            # matrix pads only to its own largest group (one 3,492-list bucket must not pad every row)
            multi = multi[np.argsort(lengths[multi], kind="stable")]
            size = lengths[multi]
            cent = self._cent
            i = 0
            while i < len(multi):
                ks = np.arange(i + 1, min(len(multi), i + max(1, _GROUP_CELLS // int(size[i]))) + 1)
                j = i + max(1, int(((ks - i) * size[ks - 1] <= _GROUP_CELLS).sum()))  # a prefix: sizes ascend
                rows = multi[i:j]
                uniq, base, local = cent.gather(self._map.groups(codes[rows]))  # decodes these groups only
                lists[rows] = uniq[nearest_in_groups(x[rows], local, base)]
                i = j
        return lists

    def cap(self) -> int:
        """Largest list allowed before it is split: ``bucket_cap``, or 2 x the mean vectors per code
        (ntotal / 2^K), at least 8."""
        if self.bucket_cap is not None:
            return self.bucket_cap
        return max(8, int(math.ceil(2 * self._n / 2.0 ** self.K)))

    def _split_oversized(self) -> None:
        """Cut every list over :meth:`cap` into sub-lists by median cuts (:func:`.partition.median_split`)
        along the quantizer's principal coordinates; the sub-lists join their bucket's group."""
        cap = self.cap()
        over = np.flatnonzero(self._cent.counts > cap)
        if len(over) == 0:
            return
        entries = [self._engine.list_entries(int(l)) for l in over]
        xs = np.concatenate([e[1] for e in entries])
        cell = np.repeat(over, [len(e[0]) for e in entries])
        labels = median_split(self.quantizer.coords(xs), cell, cap)
        # per old list: its first label keeps the list id, every other label becomes a new list
        first = np.r_[0, np.cumsum([len(e[0]) for e in entries])[:-1]]
        uniq_lab, inv = np.unique(labels, return_inverse=True)
        lab_cell = np.zeros(len(uniq_lab), np.int64)
        lab_cell[inv] = cell
        keeps = labels[first]
        is_new = ~np.isin(uniq_lab, keeps)
        owner_code = self._owner_codes()[lab_cell[is_new]]
        order = np.argsort(owner_code, kind="stable")  # group the new lists by bucket code
        codes_u, counts = np.unique(owner_code[order], return_counts=True)
        new_ids = np.empty(int(is_new.sum()), np.int64)
        new_ids[order] = self._map.extend_groups(codes_u, counts)
        dest_of_label = np.empty(len(uniq_lab), np.int64)
        dest_of_label[np.flatnonzero(is_new)] = new_ids
        keep_idx = np.flatnonzero(~is_new)
        dest_of_label[keep_idx] = lab_cell[keep_idx]
        dest = dest_of_label[inv]
        self._engine.reserve(self._map.n_lists)
        self._cent.reserve(self._map.n_lists)
        for j, l in enumerate(over):
            self._engine.split_list(int(l), dest[first[j]: first[j] + len(entries[j][0])])
        self._cent.clear(over)
        self._cent.update(dest, xs)

    def _owner_codes(self) -> np.ndarray:
        """Bucket code of every list id (n_lists,) uint64."""
        owner = np.zeros(self._map.n_lists, np.uint64)
        owner[self._map.lists] = np.repeat(self._map.keys, np.diff(self._map.offsets))
        return owner

    def _refresh_centroids(self, lists: np.ndarray, before: np.ndarray) -> None:
        """Recompute from their vectors the means of ``lists`` whose count crossed a power of two >= 64 in
        this add (a list that got all its vectors in this add has an exact mean already). A bfloat16
        running mean stops moving once a vector's share (1 / count) of the change is below half a unit
        of its last place, which happens after ~150 small adds to one list: a list fed
        one vector at a time ended 1.5 % off its exact mean after ~500 adds, 0.7 % with this refresh
        (`python -m bench.scratch.centroid_drift`; test in tests/test_index_memory.py). So a list's mean
        is exact again each time its count doubles: every vector is read O(1) times more."""
        after = self._cent.counts[lists]
        lo = np.floor(np.log2(np.maximum(before, 1)))
        crossed = (before > 0) & (after >= _REFRESH_MIN) & (np.floor(np.log2(np.maximum(after, 1))) > lo)
        if crossed.any():
            self._rebuild_centroids(lists[crossed])

    def _rebuild_centroids(self, lists: np.ndarray) -> None:
        """Means of ``lists`` recomputed from their entries (after a removal; the other lists keep theirs,
        so a removal reads only the lists it changed)."""
        self._cent.reserve(self._map.n_lists)
        self._cent.clear(lists)
        for l in lists.tolist():
            _, xs = self._engine.list_entries(int(l))
            if len(xs):
                self._cent.update(np.full(len(xs), l, np.int64), xs)

    def _plan(self, x: np.ndarray, p: SearchParams):
        """Lists to scan for queries x (n, d): (assign (n, P) int64 -1 padded, lists proposed)."""
        xs = self._scaled(x)
        z = self.quantizer.latent(self.quantizer.project(xs))  # = encode(xs) without re-checking x
        n = len(x)
        if p.probe == "flip":
            if p.budget and self._n:
                return self._flip_prefix(z, p)
            qidx, codes, _ = probe_codes(z, radius=p.r_query, max_bits=p.max_probe_bits, max_probes=p.max_probes)
            A = self._map.probe_matrix(qidx, codes, n)
            return A, len(qidx)
        kw = dict(probe_bits=p.max_probe_bits, keep=p.max_probes, nprobe=p.nprobe)
        if choose_planner(p.planner, n) == "reference":
            return reference_plan(z, xs, bucket_map=self._map, centroids=None, rows=self._cent, **kw)
        tables = self._map.tables()
        grouped = self._cent.layout(tables[3])  # the one copy of the centroids, in the map's list order
        space = self._cent.sq8() if p.shortlist else None  # its rows in the same order
        return fused_plan(z, xs, tables=tables, centroids=grouped, max_group=self._map.max_group,
                          shortlist=p.shortlist, space=space, grouped=grouped, **kw)

    def _flip_prefix(self, z: np.ndarray, p: SearchParams):
        """Flip probing under a budget: (assign (n, P), probe codes looked up).

        Probes come cheapest first and faiss stops at the budget, so only a prefix of each query's probe
        order is needed: it is built for the first ``cap`` probes, and again with 4x the cap only for
        the queries whose prefix holds fewer than ``budget`` entries (until the whole order). The result
        equals building every probe (a prefix of the same stable sort)."""
        n = len(z)
        kw = dict(radius=p.r_query, max_bits=p.max_probe_bits)
        full = 1 << p.max_probe_bits if p.max_probes is None else min(p.max_probes, 1 << p.max_probe_bits)
        mean_bucket = self._engine.n_entries / max(len(self._map), 1)
        cap = int(min(full, max(32, 2 * p.budget / mean_bucket)))
        blocks, todo, n_probes = [], np.arange(n), 0
        while len(todo):
            qidx, codes, _ = probe_codes(z[todo], max_probes=cap, **kw)
            A = self._map.probe_matrix(qidx, codes, len(todo))
            got = np.bincount(qidx, minlength=len(todo))
            done = (got < cap) | (cap >= full) | (self._engine.scanned_per_query(A, p.budget) >= p.budget)
            blocks.append((todo[done], A[done]))
            n_probes += int(got[done].sum())
            todo, cap = todo[~done], min(full, 4 * cap)
        out = np.full((n, max(b.shape[1] for _, b in blocks)), -1, np.int64)
        for idx, b in blocks:
            out[idx, : b.shape[1]] = b
        return out, n_probes

    def _rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Row (insertion position) of each id, -1 where absent."""
        if self._n == 0:
            return np.full(len(ids), -1, np.int64)
        if self._id_order is None:
            self._id_order = np.argsort(self._ids, kind="stable")
        sorted_ids = self._ids[self._id_order]
        pos = np.minimum(np.searchsorted(sorted_ids, ids), self._n - 1)
        return np.where(sorted_ids[pos] == ids, self._id_order[pos], -1)
