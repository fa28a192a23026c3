"""ShardedFlowHashIndex: one FlowHashIndex split over Ray actors by the prefix of the bucket code.

Every shard is a Ray actor holding a :class:`~faiss_flowhash.index.FlowHashIndex` with the same trained
quantizer and the same index-level calibration (the reference norm queries are scaled to, the spill
threshold). A vector goes to the shard that owns its primary K-bit code in code order (high bits
first): shard s owns the codes in ``[bounds[s-1], bounds[s])``, a contiguous range, i.e. whole
subtrees of the code prefix. The bounds are the S-quantiles of the first added batch's codes, so the
shards are equal even where the top bits are not balanced (measured: a 24/76 split of the top bit);
with perfectly balanced codes they are the plain prefix split (:func:`shard_of_codes`). Each shard's
inverted lists hold only its own buckets (1/S of them: the per-list cost of K = 24 is divided too);
all copies of a vector (spill / radius) stay in its shard.

A search goes to every shard at once (the query's probed buckets can carry any prefix); each shard
scans its part of the probed buckets and returns its top k, and the k best of the S lists are kept
(``faiss.merge_knn_results``). Under flip probing (``probe="flip"``) without a candidate budget the
probed buckets are scanned whole, so the shards' candidates together are the single index's and the
answer is exactly the single index's on the same data. Under centroid ranking (the default) each
shard ranks its own lists by its own centroids and scans ``nprobe`` of them: S x nprobe lists in
all, but a shard splits its buckets at its own size (``cap`` = 2 x its vectors / 2^K), so its lists are
smaller and the entries scanned are about the single index's: a different candidate set, not the
same answer (bench/results/scale.md measures recall and agreement). A budget (``max_codes``)
likewise applies per shard.

Ray: a local Ray is started (``ray.init(num_cpus=...)``) when none is running and no ``address`` is
given, else the given cluster (``address="ray://host:10001"`` or ``"auto"``) is joined; the cluster's
Python must import this version of faiss_flowhash (a local start puts this package's folder on the
workers' PYTHONPATH). ``close()`` ends the actors, and the local Ray when this object started it.
"""

import json
import math
import os
import tempfile

import numpy as np

from ..index import FlowHashIndex, SearchStats, deserialize_index, read_index, serialize_index, write_index
from ..index.checks import as_ids, as_matrix, check_k, check_unique_ids

__all__ = ["ShardedFlowHashIndex", "shard_of_codes", "code_bounds", "shard_of_range"]

MANIFEST = "sharded.json"
_FORMAT = "faiss-flowhash-sharded"
_MAX_ID = int(np.iinfo(np.int64).max)
# FlowHashIndex re-derives its spill threshold from a batch of >= this many vectors while it holds fewer
# (a single index calibrates on its first large batch); a shard must keep the whole index's threshold
_RECALIBRATE_BELOW = 1024


def shard_of_codes(codes: np.ndarray, K: int, n_shards: int) -> np.ndarray:
    """Shard (n,) int64 of each K-bit code (n,) uint64: the code's high p bits scaled to [0, n_shards)."""
    p = max(1, math.ceil(math.log2(n_shards))) if n_shards > 1 else 0
    if p > K:
        raise ValueError(f"n_shards: expected <= 2^K = {1 << K}, got {n_shards}")
    if p == 0:
        return np.zeros(len(codes), np.int64)
    prefix = (np.asarray(codes, np.uint64) >> np.uint64(K - p)).astype(np.int64)
    return (prefix * n_shards) >> p


def code_bounds(codes: np.ndarray, n_shards: int) -> np.ndarray:
    """S-1 ascending uint64 bounds splitting ``codes`` (n,) into ``n_shards`` ranges of equal counts."""
    c = np.sort(np.asarray(codes, np.uint64))
    if len(c) == 0:
        raise ValueError("codes: expected at least one code to place the shard bounds")
    return c[(len(c) * np.arange(1, n_shards)) // n_shards]


def shard_of_range(codes: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """Shard (n,) int64 of each code: the number of bounds <= code (shard s owns [bounds[s-1], bounds[s]))."""
    return np.searchsorted(np.asarray(bounds, np.uint64), np.asarray(codes, np.uint64), side="right").astype(np.int64)


class _ShardWorker:
    """The actor: one FlowHashIndex. Methods take and return numpy arrays (Ray's zero-copy path)."""

    def __init__(self, *, template: bytes | None = None, path: str | None = None, threads: int = 1):
        import faiss
        import torch

        faiss.omp_set_num_threads(threads)
        torch.set_num_threads(threads)
        self.index = read_index(path) if path is not None else deserialize_index(template)

    def calibrate(self, header_update: dict) -> None:
        """Adopt the whole index's calibration (reference norm, spill threshold) via the public state."""
        header, arrays = self.index.state()
        self.index = FlowHashIndex.from_state({**header, **header_update}, arrays)

    def add_with_ids(self, x: np.ndarray, ids: np.ndarray) -> int:
        lo = 0
        while lo < len(x) and self.index.ntotal < _RECALIBRATE_BELOW:  # pieces too small to re-calibrate
            hi = lo + min(_RECALIBRATE_BELOW - 1, len(x) - lo)
            self.index.add_with_ids(x[lo:hi], ids[lo:hi])
            lo = hi
        if lo < len(x):
            self.index.add_with_ids(x[lo:], ids[lo:])
        return self.index.ntotal

    def present(self, ids: np.ndarray) -> np.ndarray:
        return np.isin(ids, self.index.ids)

    def search(self, x: np.ndarray, k: int, kwargs: dict):
        D, I = self.index.search(x, k, **kwargs)
        s = self.index.last_search_stats  # one call at a time in an actor: no other search overwrote it
        return D, I, (s.buckets_probed, s.candidates, getattr(s, "lists_scanned", 0.0))

    def remove_ids(self, ids: np.ndarray) -> int:
        return self.index.remove_ids(ids)

    def reconstruct(self, key: int):
        try:
            return self.index.reconstruct(key)
        except KeyError:
            return None

    def reset(self) -> None:
        self.index.reset()

    def write(self, path: str) -> int:
        write_index(self.index, path)
        return os.path.getsize(path)

    def info(self) -> dict:
        return {"ntotal": self.index.ntotal, "memory_bytes": self.index.memory_bytes(),
                "buckets": int(len(self.index.bucket_sizes())), "pid": os.getpid()}


class ShardedFlowHashIndex:
    """A FlowHashIndex over ``n_shards`` Ray actors, with the FAISS protocol of the single index.

    Args:
        d: vector dimension.
        n_shards: actors (>= 1, <= 2^K).
        K, metric, **index_kwargs: as :class:`~faiss_flowhash.index.FlowHashIndex` (``quantizer=`` a
            trained quantizer to use as is; ``assign``, ``spill``, ``r_query``, ``budget``, ...).
        address: Ray cluster to join; None: the running Ray, else a local one started here.
        num_cpus: CPUs of a local Ray started here (None: Ray's default, all of them).
        cpus_per_shard: Ray CPUs each actor reserves (1.0; less lets more shards share a CPU).
        threads_per_shard: faiss / torch threads inside each actor (1).
        ray_init: more keyword arguments for ``ray.init`` (e.g. ``object_store_memory``).
    """

    def __init__(self, d: int, n_shards: int = 2, K: int = 16, metric=None, *, address: str | None = None,
                 num_cpus: int | None = None, cpus_per_shard: float = 1.0, threads_per_shard: int = 1,
                 ray_init: dict | None = None, _template: FlowHashIndex | None = None, **index_kwargs):
        if isinstance(n_shards, bool) or not isinstance(n_shards, int) or n_shards < 1:
            raise ValueError(f"n_shards: expected an int >= 1, got {n_shards!r}")
        if _template is None:
            kw = dict(index_kwargs)
            if metric is not None:
                kw["metric"] = metric
            _template = FlowHashIndex(d, K, **kw)
        self._template = _template  # never holds vectors: the quantizer, the settings, the calibration
        self.d, self.K, self.metric_type = _template.d, _template.K, _template.metric_type
        shard_of_codes(np.zeros(0, np.uint64), self.K, n_shards)  # n_shards <= 2^K
        self.n_shards = n_shards
        self.cpus_per_shard, self.threads_per_shard = float(cpus_per_shard), int(threads_per_shard)
        self._ray, self._started_ray = _connect(address, num_cpus, ray_init)
        self._shards: list = []
        self._counts = np.zeros(n_shards, np.int64)
        self._bounds = None  # (S-1,) uint64 code bounds, from the first batch
        self._next_id = 0
        self.last_search_stats = SearchStats()

    # -- Ray ----------------------------------------------------------------------------------------
    def _actor_class(self):
        return self._ray.remote(num_cpus=self.cpus_per_shard)(_ShardWorker)

    def _start_shards(self, paths: list[str] | None = None) -> None:
        cls = self._actor_class()
        if paths is None:
            template = self._ray.put(serialize_index(self._template))
            self._shards = [cls.remote(template=template, threads=self.threads_per_shard) for _ in range(self.n_shards)]
        else:
            self._shards = [cls.remote(path=p, threads=self.threads_per_shard) for p in paths]
        infos = self._ray.get([s.info.remote() for s in self._shards])
        self._counts = np.array([i["ntotal"] for i in infos], np.int64)

    def start(self) -> "ShardedFlowHashIndex":
        """Start the actors now (else the first ``add`` does): each is a process importing torch and faiss."""
        if not self._shards:
            self._start_shards()
        return self

    def close(self) -> None:
        """End the actors (and the local Ray if this object started it); idempotent."""
        for s in self._shards:
            self._ray.kill(s)
        self._shards = []
        if self._started_ray and self._ray.is_initialized():
            self._ray.shutdown()
        self._started_ray = False

    def __enter__(self) -> "ShardedFlowHashIndex":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    # -- FAISS protocol -----------------------------------------------------------------------------
    @property
    def is_trained(self) -> bool:
        return self._template.is_trained

    @property
    def ntotal(self) -> int:
        return int(self._counts.sum())

    @property
    def quantizer(self):
        return self._template.quantizer

    @property
    def bounds(self) -> np.ndarray | None:
        """Code bounds of the shards (S-1,) uint64 (None before the first add)."""
        return None if self._bounds is None else self._bounds.copy()

    def shard_sizes(self) -> np.ndarray:
        """Vectors per shard (n_shards,)."""
        return self._counts.copy()

    def train(self, x, x_pos=None):
        """Train the shared quantizer here (as FlowHashIndex.train); only before any vector is added."""
        if self.ntotal:
            raise ValueError(f"train: the sharded index holds {self.ntotal} vectors; train before adding "
                             "(or build a new index): re-bucketing across shards is not supported")
        report = self._template.train(x, x_pos)
        if self._shards:  # shards were started and emptied: give them the new quantizer
            self.close_shards()
        return report

    def close_shards(self) -> None:
        for s in self._shards:
            self._ray.kill(s)
        self._shards = []
        self._counts = np.zeros(self.n_shards, np.int64)

    def add(self, x) -> None:
        """Add vectors x (n, d) with ids continuing after the largest id added so far."""
        x = as_matrix(x, self.d, name="x")
        if self._next_id + len(x) - 1 > _MAX_ID:
            raise ValueError(f"no {len(x)} ids left below 2**63 after {self._next_id}: use add_with_ids")
        self._add(x, np.arange(self._next_id, self._next_id + len(x), dtype=np.int64))

    def add_with_ids(self, x, ids) -> None:
        """Add vectors x (n, d) under ids (n,) int64, unique and not already in any shard."""
        x = as_matrix(x, self.d, name="x")
        ids = as_ids(ids, len(x))
        if len(x) == 0:
            return
        check_unique_ids(ids)
        if self._shards and self.ntotal:
            present = np.logical_or.reduce(self._ray.get([s.present.remote(ids) for s in self._shards]))
            if present.any():
                raise ValueError(f"ids: id {int(ids[present][0])} is already in the index")
        self._add(x, ids)

    def _add(self, x: np.ndarray, ids: np.ndarray) -> None:
        if len(x) == 0:
            return
        if not self.is_trained:
            raise ValueError("the sharded index's quantizer is not trained: call train(x) first "
                             "(or pass quantizer= a trained FlowQuantizer)")
        self._calibrate(x)
        if not self._shards:
            self._start_shards()
        codes = self._template.quantizer.codes(x)
        if self._bounds is None:
            self._bounds = code_bounds(codes, self.n_shards)
        shard = shard_of_range(codes, self._bounds)
        futures = {}
        for s in range(self.n_shards):
            rows = np.flatnonzero(shard == s)
            if len(rows):  # the actors add in parallel
                futures[s] = self._shards[s].add_with_ids.remote(x[rows], ids[rows])
        for s, n in zip(futures, self._ray.get(list(futures.values()))):
            self._counts[s] = n
        self._next_id = max(self._next_id, int(ids.max()) + 1)

    def _calibrate(self, x: np.ndarray) -> None:
        """Index-level calibration as a single index derives it when this batch is added: the reference
        norm on the first batch, the spill threshold on the first batch and again on the first batch of
        >= 1024 while fewer are stored. The template adds the batch and forgets it; the shards adopt it."""
        t = self._template
        before = _calibration(t)
        spills = t.assign == "spill" and t.spill > 0
        if not (before["ref_norm"] is None or spills and (
                before["spill_t"] is None or len(x) >= _RECALIBRATE_BELOW > self.ntotal)):
            return
        t.add_with_ids(x, np.arange(len(x), dtype=np.int64))
        t.reset()  # keeps the calibration, drops the vectors
        after = _calibration(t)
        if after != before and self._shards:
            self._ray.get([s.calibrate.remote(after) for s in self._shards])

    def search(self, x, k: int, **kwargs):
        """k nearest neighbours from all shards: D (n, k) float32, I (n, k) int64 as FlowHashIndex.search
        (``params=`` / ``r_query=`` / ``budget=`` / ``max_probes=`` are passed to every shard)."""
        k = check_k(k)
        x = as_matrix(x, self.d, name="x")
        n = len(x)
        if not self.is_trained:
            raise ValueError("search: the sharded index's quantizer is not trained")
        if n == 0 or not self._shards:
            self.last_search_stats = SearchStats(n_queries=n)
            return self._template.search(x, k, **kwargs)  # empty: padded results of the right shape
        xr = self._ray.put(x)
        out = self._ray.get([s.search.remote(xr, k, kwargs) for s in self._shards])
        D = np.stack([o[0] for o in out])  # (S, n, k)
        I = np.stack([o[1] for o in out])
        import faiss

        D, I = faiss.merge_knn_results(np.ascontiguousarray(D), np.ascontiguousarray(I),
                                       keep_max=self.metric_type == faiss.METRIC_INNER_PRODUCT)
        cand = float(sum(o[2][1] for o in out))
        self.last_search_stats = SearchStats(n_queries=n, buckets_probed=float(out[0][2][0]), candidates=cand,
                                             lists_scanned=float(sum(o[2][2] for o in out)),
                                             eval_percent=100.0 * cand / max(self.ntotal, 1))
        return D, I

    def remove_ids(self, ids) -> int:
        """Remove these ids from whichever shards hold them; returns how many were removed."""
        if isinstance(ids, (int, np.integer)) and not isinstance(ids, bool):
            ids = [ids]
        arr = np.asarray(ids)
        if arr.size == 0 or not self._shards:
            return 0
        ids = as_ids(arr.reshape(-1), arr.size)
        removed = self._ray.get([s.remove_ids.remote(ids) for s in self._shards])
        self._counts -= np.asarray(removed, np.int64)
        return int(sum(removed))

    def reset(self) -> None:
        """Remove every vector (the quantizer stays trained)."""
        if self._shards:
            self._ray.get([s.reset.remote() for s in self._shards])
        self._counts[:] = 0
        self._next_id = 0

    def reconstruct(self, key: int) -> np.ndarray:
        """The stored vector with id ``key`` (d,) float32 (asked of every shard)."""
        if isinstance(key, bool) or not isinstance(key, (int, np.integer)):
            raise TypeError(f"key: expected an int id, got {type(key).__name__}")
        for v in self._ray.get([s.reconstruct.remote(int(key)) for s in self._shards]):
            if v is not None:
                return v
        raise KeyError(f"id {key} is not in the index")

    def shard_info(self) -> list[dict]:
        """Per shard: ntotal, memory_bytes, buckets (non-empty), pid of the actor's process."""
        return self._ray.get([s.info.remote() for s in self._shards]) if self._shards else []

    def memory_bytes(self) -> int:
        return int(sum(i["memory_bytes"] for i in self.shard_info()))

    def __repr__(self) -> str:
        return (f"ShardedFlowHashIndex(d={self.d}, K={self.K}, n_shards={self.n_shards}, ntotal={self.ntotal}, "
                f"sizes={self._counts.tolist()})")

    # -- persistence (one file per shard) -----------------------------------------------------------
    def write(self, folder) -> None:
        """Write each shard to ``folder/shard-XXX.flowhash`` (by its actor: on a cluster the folder must be
        shared or node-local as the actors run), then the template and ``sharded.json`` (last, atomically:
        a folder whose manifest exists is complete)."""
        folder = os.path.abspath(os.fspath(folder))
        os.makedirs(folder, exist_ok=True)
        names = [f"shard-{i:03d}.flowhash" for i in range(self.n_shards)]
        if self._shards:
            self._ray.get([s.write.remote(os.path.join(folder, nm)) for s, nm in zip(self._shards, names)])
        write_index(self._template, os.path.join(folder, "template.flowhash"))
        manifest = {"format": _FORMAT, "version": 1, "n_shards": self.n_shards, "d": self.d, "K": self.K,
                    "shards": names if self._shards else [], "next_id": self._next_id,
                    "sizes": self._counts.tolist(),
                    "bounds": None if self._bounds is None else [int(b) for b in self._bounds]}
        fd, tmp = tempfile.mkstemp(prefix=".sharded-", dir=folder)
        with os.fdopen(fd, "w") as f:
            json.dump(manifest, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(folder, MANIFEST))

    @classmethod
    def read(cls, folder, *, address: str | None = None, num_cpus: int | None = None, cpus_per_shard: float = 1.0,
             threads_per_shard: int = 1, ray_init: dict | None = None) -> "ShardedFlowHashIndex":
        """Open a folder written by :meth:`write`: each actor reads its own shard file."""
        folder = os.path.abspath(os.fspath(folder))
        path = os.path.join(folder, MANIFEST)
        if not os.path.isfile(path):
            raise FileNotFoundError(f"{path}: no sharded FlowHash index here")
        with open(path) as f:
            m = json.load(f)
        if m.get("format") != _FORMAT or m.get("version") != 1:
            raise ValueError(f"{path}: expected a {_FORMAT!r} version 1 manifest, got {m.get('format')!r} {m.get('version')!r}")
        template = read_index(os.path.join(folder, "template.flowhash"))
        out = cls(m["d"], m["n_shards"], address=address, num_cpus=num_cpus, cpus_per_shard=cpus_per_shard,
                  threads_per_shard=threads_per_shard, ray_init=ray_init, _template=template)
        if m["shards"]:
            out._start_shards([os.path.join(folder, nm) for nm in m["shards"]])
        out._next_id = int(m["next_id"])
        out._bounds = None if m.get("bounds") is None else np.array(m["bounds"], np.uint64)
        return out


def _calibration(index: FlowHashIndex) -> dict:
    header, _ = index.state()
    return {"ref_norm": header["ref_norm"], "spill_t": header["spill_t"]}


def _connect(address, num_cpus, ray_init):
    """(ray module, whether a local Ray was started here)."""
    try:
        import ray
    except ImportError as e:
        raise ImportError("ShardedFlowHashIndex needs Ray: pip install 'faiss-flowhash[ray]'") from e
    if ray.is_initialized():
        return ray, False
    kw = dict(ray_init or {})
    kw.setdefault("include_dashboard", False)
    kw.setdefault("log_to_driver", False)
    if address is None:
        pkg_parent = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = kw.setdefault("runtime_env", {}).setdefault("env_vars", {})
        env.setdefault("PYTHONPATH", os.pathsep.join(p for p in (pkg_parent, os.environ.get("PYTHONPATH")) if p))
        env.setdefault("OMP_NUM_THREADS", "1")
        ray.init(num_cpus=num_cpus, **kw)
    else:
        ray.init(address=address, **kw)
    return ray, True
