"""FlowHashIndex: a FAISS-style index over a learned, balanced K-bit hash table (paper sections 3.3-3.4).

Vectors are stored once (float32 or float16). The bucket table maps each code to row numbers; a
vector is listed under every code its near-zero latent components allow (radius r). A query probes
its own bucket and those reached by flipping its near-zero components (radius r~), cheapest first,
optionally stopping once a candidate budget is reached; candidates are de-duplicated and scored
exactly. ``last_search_stats`` holds the paper's efficiency metric (% of the database evaluated).
"""

from dataclasses import dataclass

import faiss
import numpy as np

from .checks import as_ids, as_matrix, check_k
from .codes import expand_codes, pack_codes, probe_codes
from .errors import NotTrainedError
from .balance import code_balance
from .quantizer import FlowQuantizer, QuantizerConfig
from .scoring import topk_candidates, worst_value
from .table import BucketTable

__all__ = ["FlowHashIndex", "SearchStats"]

_METRICS = {faiss.METRIC_INNER_PRODUCT: "inner_product", faiss.METRIC_L2: "L2"}


@dataclass
class SearchStats:
    """Statistics of the last search, means per query.

    Attributes:
        n_queries: queries searched.
        buckets_probed: codes looked up per query (non-empty or not).
        candidates: unique vectors scored per query.
        eval_percent: 100 * candidates / ntotal, the paper's ``eval``.
    """

    n_queries: int = 0
    buckets_probed: float = 0.0
    candidates: float = 0.0
    eval_percent: float = 0.0


class FlowHashIndex:
    """Learned balanced-hash index with the FAISS Index protocol.

    Args:
        d: vector dimension.
        K: code bits: 2^K buckets (paper: 16; 2..62).
        metric: ``faiss.METRIC_INNER_PRODUCT`` (default) or ``faiss.METRIC_L2``.
        r: multi-assignment radius at add time (paper: 1.0).
        r_query: probe radius at search time (paper: 1.25).
        max_assign_bits: at most this many near-zero bits expand a stored vector (<= 2^bits entries).
        max_probe_bits: at most this many near-zero bits expand a query (<= 2^bits probes).
        budget: stop probing a query once this many candidates are reached (None: probe all).
        max_probes: probe at most this many buckets per query, cheapest first (None: no cap). With
            ``r_query=float("inf")`` and a budget this probes by flip cost over the
            ``max_probe_bits`` least certain bits instead of by radius: more recall per candidate
            scored on hard queries (bench/RESULTS.md, "Probing by radius or by budget").
        storage: "float32" or "float16" for the stored vectors (scores are computed in float32).
        device: torch device of the quantizer and, when ``backend="torch"``, of scoring.
        backend: "faiss" (CPU, float32 storage), "numpy" (CPU) or "torch" (any device) scoring;
            "auto" picks torch on a non-CPU device, else faiss for float32 and numpy for float16.
        config: :class:`QuantizerConfig` for training (ignored when ``quantizer`` is given).
        quantizer: a trained :class:`FlowQuantizer` to use as is (then ``train`` is not needed).
    """

    def __init__(
        self,
        d: int,
        K: int = 16,
        metric: int = faiss.METRIC_INNER_PRODUCT,
        *,
        r: float = 1.0,
        r_query: float = 1.25,
        max_assign_bits: int = 6,
        max_probe_bits: int = 10,
        budget: int | None = None,
        max_probes: int | None = None,
        storage: str = "float32",
        device: str = "cpu",
        backend: str = "auto",
        config: QuantizerConfig | None = None,
        quantizer: FlowQuantizer | None = None,
    ):
        if metric not in _METRICS:
            raise ValueError(f"metric: expected faiss.METRIC_INNER_PRODUCT or faiss.METRIC_L2, got {metric!r}")
        if storage not in ("float32", "float16"):
            raise ValueError(f"storage: expected 'float32' or 'float16', got {storage!r}")
        if backend not in ("auto", "faiss", "numpy", "torch"):
            raise ValueError(f"backend: expected 'auto', 'faiss', 'numpy' or 'torch', got {backend!r}")
        if backend == "faiss" and storage != "float32":
            raise ValueError(f"backend='faiss' scores float32 storage only, got storage={storage!r}")
        if r < 0 or r_query < 0:
            raise ValueError(f"r, r_query: expected >= 0, got {r}, {r_query}")
        for name, v in (("max_assign_bits", max_assign_bits), ("max_probe_bits", max_probe_bits)):
            if not 0 <= v <= 20:
                raise ValueError(f"{name}: expected in [0, 20], got {v}")
        self._check_budget(budget)
        self._check_budget(max_probes, "max_probes")
        if quantizer is not None:
            if quantizer.d != d:
                raise ValueError(f"quantizer: expected d={d}, got a quantizer with d={quantizer.d}")
            K = quantizer.K
        else:
            quantizer = FlowQuantizer(d, K, config=config or QuantizerConfig(device=device))
        self.quantizer = quantizer
        self.d, self.K, self.metric_type = int(d), int(K), metric
        self.r, self.r_query = float(r), float(r_query)
        self.max_assign_bits, self.max_probe_bits, self.budget = int(max_assign_bits), int(max_probe_bits), budget
        self.max_probes = max_probes
        self.storage, self.device = storage, str(device)
        if backend == "auto":
            backend = "torch" if self.device != "cpu" else ("faiss" if storage == "float32" else "numpy")
        self.backend = backend
        self.verbose = True
        self.last_search_stats = SearchStats()
        self.reset()

    # -- FAISS protocol ---------------------------------------------------------------------------
    @property
    def is_trained(self) -> bool:
        return self.quantizer.is_trained

    @property
    def ntotal(self) -> int:
        return self._n

    def train(self, x, x_pos=None):
        """Train the quantizer on x (n, d); x_pos (n, d) are optional positives (distorted views)."""
        x = as_matrix(x, self.d, name="x")
        self.quantizer.train(x, x_pos)
        return self.quantizer.report

    def add(self, x) -> None:
        """Add vectors x (n, d) with ids continuing after the largest id present (0.. on a new index)."""
        x = self._check_add(x)
        self._add(x, np.arange(self._next_id, self._next_id + len(x), dtype=np.int64))

    def add_with_ids(self, x, ids) -> None:
        """Add vectors x (n, d) under ids (n,) int64 >= 0, unique and not already in the index."""
        x = self._check_add(x)
        ids = as_ids(ids, len(x))
        uniq, counts = np.unique(ids, return_counts=True)
        if (counts > 1).any():
            raise ValueError(f"ids: duplicate id {int(uniq[counts > 1][0])} in the batch")
        present = self._rows_of(ids) >= 0
        if present.any():
            raise ValueError(f"ids: id {int(ids[present][0])} is already in the index")
        self._add(x, ids)

    def search(self, x, k: int, *, r_query: float | None = None, budget: int | None = None,
               max_probes: int | None = None, params=None):
        """k nearest neighbours of each query.

        Args:
            x: queries (n, d).
            k: neighbours per query (>= 1; results past ntotal are padded).
            r_query, budget, max_probes: override the index's settings for this call.
            params: accepted for FAISS signature compatibility; must be None.

        Returns:
            D (n, k) float32 scores (inner product, or squared L2) and I (n, k) int64 ids, best first,
            -1 / the metric's worst value where fewer than k candidates were found.
        """
        if params is not None:
            raise ValueError("params: FlowHashIndex takes r_query= and budget= instead of SearchParameters")
        k = check_k(k)
        x = as_matrix(x, self.d, name="x")
        r_query = self.r_query if r_query is None else float(r_query)
        if r_query < 0:
            raise ValueError(f"r_query: expected >= 0, got {r_query}")
        budget = self.budget if budget is None else budget
        self._check_budget(budget)
        max_probes = self.max_probes if max_probes is None else max_probes
        self._check_budget(max_probes, "max_probes")
        self._require_trained("search")
        n = len(x)
        D = np.full((n, k), worst_value(self.metric_type), np.float32)
        I = np.full((n, k), -1, np.int64)
        if n == 0 or self._n == 0:
            self.last_search_stats = SearchStats(n_queries=n)
            return D, I
        qidx, rows, n_probes = self._candidates(self.quantizer.encode(x), r_query, budget, max_probes)
        xb = self._scoring_store()
        D, R = topk_candidates(x, xb, qidx, rows, k, metric=self.metric_type,
                               norms=self._scoring_norms(), backend=self.backend)
        I = np.where(R >= 0, self._ids[np.maximum(R, 0)], -1)
        self.last_search_stats = SearchStats(
            n_queries=n, buckets_probed=n_probes / n, candidates=len(rows) / n,
            eval_percent=100.0 * len(rows) / n / self._n,
        )
        return D, I

    def remove_ids(self, ids) -> int:
        """Remove the vectors with these ids; returns how many were removed (unknown ids are skipped)."""
        if isinstance(ids, (int, np.integer)):
            ids = np.array([ids])
        ids = np.asarray(ids)
        ids = as_ids(ids.reshape(-1), ids.size)
        rows = self._rows_of(np.unique(ids))
        rows = rows[rows >= 0]
        if len(rows) == 0:
            return 0
        keep = np.ones(self._n, bool)
        keep[rows] = False
        self._table.remove_rows(keep)
        self._xb[: len(keep) - len(rows)] = self._xb[: self._n][keep]
        self._norms = self._norms[keep]
        self._ids = self._ids[keep]
        self._codes = self._codes[keep]
        self._n -= len(rows)
        self._invalidate()
        return int(len(rows))

    def reset(self) -> None:
        """Remove every vector (the quantizer stays trained)."""
        self._xb = np.zeros((0, self.d), self.storage)
        self._norms = np.zeros(0, np.float32)
        self._ids = np.zeros(0, np.int64)
        self._codes = np.zeros(0, np.uint64)
        self._n = 0
        self._next_id = 0
        self._table = BucketTable()
        self._invalidate()

    def reconstruct(self, key: int) -> np.ndarray:
        """The stored vector with id ``key`` (d,) float32."""
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
            raise TypeError(f"key: expected an int id, got {type(key).__name__}")
        row = self._rows_of(np.array([key], np.int64))[0]
        if row < 0:
            raise KeyError(f"id {key} is not in the index")
        return self._xb[row].astype(np.float32)

    def reconstruct_n(self, i0: int = 0, ni: int | None = None) -> np.ndarray:
        """Stored vectors in insertion order, rows i0 .. i0+ni (ni, d) float32."""
        ni = self._n - i0 if ni is None else ni
        if i0 < 0 or ni < 0 or i0 + ni > self._n:
            raise ValueError(f"rows {i0}..{i0 + ni}: expected within 0..{self._n}")
        return self._xb[i0 : i0 + ni].astype(np.float32)

    # -- introspection ----------------------------------------------------------------------------
    @property
    def ids(self) -> np.ndarray:
        """Ids of the stored vectors in insertion order (ntotal,) int64 (a copy)."""
        return self._ids.copy()

    def bucket_sizes(self) -> np.ndarray:
        """Vectors per non-empty bucket under the primary code (r = 0) (B,)."""
        return np.unique(self._codes, return_counts=True)[1]

    def balance(self) -> dict:
        """Balance of the primary codes (see :func:`faiss_flowhash.index.balance.bucket_balance`)."""
        return code_balance(self._codes, self.K)

    def memory_bytes(self) -> int:
        """Bytes held for vectors, ids, codes and the bucket table."""
        return (self._n * self.d * np.dtype(self.storage).itemsize + self._norms.nbytes + self._ids.nbytes
                + self._codes.nbytes + self._table.nbytes)

    @property
    def table_entries(self) -> int:
        """(code, row) entries in the table: ntotal x the mean number of buckets per vector."""
        return self._table.n_entries

    def __repr__(self) -> str:
        return (f"FlowHashIndex(d={self.d}, K={self.K}, metric={_METRICS[self.metric_type]}, ntotal={self._n}, "
                f"is_trained={self.is_trained}, r={self.r}, r_query={self.r_query})")

    # -- internals --------------------------------------------------------------------------------
    @staticmethod
    def _check_budget(budget, name: str = "budget") -> None:
        if budget is not None and (isinstance(budget, bool) or not isinstance(budget, (int, np.integer)) or budget < 1):
            raise ValueError(f"{name}: expected None or an int >= 1, got {budget!r}")

    def _require_trained(self, what: str) -> None:
        if not self.is_trained:
            raise NotTrainedError(f"cannot {what}: the index is not trained; call index.train(x) first")

    def _check_add(self, x) -> np.ndarray:
        x = as_matrix(x, self.d, name="x")
        self._require_trained("add")
        return x

    def _add(self, x: np.ndarray, ids: np.ndarray) -> None:
        if len(x) == 0:
            return
        z = self.quantizer.encode(x)
        rows0 = self._n
        need = rows0 + len(x)
        if need > len(self._xb):  # amortised growth: no O(N^2) copying over many small adds
            grown = np.zeros((max(need, 2 * len(self._xb), 1024), self.d), self.storage)
            grown[:rows0] = self._xb[:rows0]
            self._xb = grown
        self._xb[rows0:need] = x
        self._norms = np.concatenate([self._norms, (x.astype(np.float64) ** 2).sum(1).astype(np.float32)])
        self._ids = np.concatenate([self._ids, ids])
        self._codes = np.concatenate([self._codes, pack_codes(z)])
        rows, codes = expand_codes(z, radius=self.r, max_bits=self.max_assign_bits)
        self._table.add(codes, rows + rows0)
        self._n = need
        self._next_id = max(self._next_id, int(ids.max()) + 1)
        self._invalidate()

    def _invalidate(self) -> None:
        self._id_order = None
        self._torch_store = None

    def _rows_of(self, ids: np.ndarray) -> np.ndarray:
        """Row of each id, -1 where absent."""
        if self._n == 0:
            return np.full(len(ids), -1, np.int64)
        if self._id_order is None:
            self._id_order = np.argsort(self._ids, kind="stable")
        sorted_ids = self._ids[self._id_order]
        pos = np.minimum(np.searchsorted(sorted_ids, ids), self._n - 1)
        return np.where(sorted_ids[pos] == ids, self._id_order[pos], -1)

    def _candidates(self, z: np.ndarray, r_query: float, budget: int | None, max_probes: int | None):
        """Unique candidate rows per query: (qidx (m,) ascending, rows (m,), number of probes)."""
        qidx, codes, _ = probe_codes(z, radius=r_query, max_bits=self.max_probe_bits, max_probes=max_probes)
        return self._table.candidates(qidx, codes, budget=budget, n_rows=self._n)

    def _scoring_store(self):
        xb = self._xb[: self._n]
        if self.backend != "torch":
            return xb
        if self._torch_store is None:
            import torch

            self._torch_store = (torch.as_tensor(xb, device=self.device),
                                 torch.as_tensor(self._norms, device=self.device))
        return self._torch_store[0]

    def _scoring_norms(self):
        return self._torch_store[1] if self.backend == "torch" else self._norms
