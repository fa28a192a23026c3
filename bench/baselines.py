"""Index wrappers with one interface for the ANN benchmark.

Every method follows the same small protocol::

    m.builds(ds)            # generator: prepares the index, yields one dict per build state
                            #   {"label", "params", "train_s", "add_s"}
    m.search_grid()         # list of dicts of search parameters to sweep
    D, I, st = m.search(q, k, **sp)
                            # D float32 (nq, k), I int64 (nq, k) (-1 padded),
                            # st = {"candidates": mean vectors scored exactly per query,
                            #       "touched": mean database items with any distance computed
                            #                  (exact or on a compressed code),
                            #       "probes": mean buckets / lists / graph hops per query}
    m.memory_bytes()        # bytes of the whole index (vectors + structure)

``touched / N`` is the paper's eval metric ("unique points evaluated"); it differs from
``candidates`` only for IndexLSH, which computes a Hamming distance to every code.
"""

from __future__ import annotations

import itertools
import time

import faiss
import numpy as np

__all__ = ["Exact", "FaissLSH", "MultiProbeLSH", "IVFFlat", "HNSWFlat", "FlowHash",
           "flowhash_available", "topk_from_pairs", "bucket_sizes_of_codes"]


def _f32(x):
    return np.ascontiguousarray(x, dtype=np.float32)


def _serialized_bytes(index) -> int:
    return int(faiss.serialize_index(index).size)


class Exact:
    """Brute force: faiss.IndexFlatIP (the ground truth)."""

    family = "Exact"

    def __init__(self, d: int):
        self.d = d
        self.index = None

    def builds(self, ds):
        t0 = time.perf_counter()
        self.index = faiss.IndexFlatIP(self.d)
        self.index.add(_f32(ds.x))
        yield dict(label="Flat", params={}, train_s=0.0, add_s=time.perf_counter() - t0)

    def search_grid(self):
        return [{}]

    def search(self, q, k):
        D, I = self.index.search(_f32(q), k)
        n = self.index.ntotal
        return D, I, dict(candidates=float(n), touched=float(n), probes=0.0)

    def memory_bytes(self):
        return _serialized_bytes(self.index)


class FaissLSH:
    """faiss.IndexLSH (random rotation + sign bits, Hamming scan of every code), optionally
    followed by exact re-ranking of the ``rerank`` best Hamming candidates."""

    family = "IndexLSH"

    def __init__(self, d: int, nbits: int, reranks=(0, 16, 64, 256, 1024)):
        self.d, self.nbits, self.reranks = d, nbits, reranks
        self.index = None
        self.x = None

    def builds(self, ds):
        self.index = faiss.IndexLSH(self.d, self.nbits)   # rotate_data=True
        t0 = time.perf_counter()
        self.index.train(_f32(ds.x_train))
        t1 = time.perf_counter()
        self.index.add(_f32(ds.x))
        self.x = ds.x
        yield dict(label=f"LSH{self.nbits}", params=dict(nbits=self.nbits),
                   train_s=t1 - t0, add_s=time.perf_counter() - t1)

    def search_grid(self):
        return [dict(rerank=r) for r in self.reranks]

    def search(self, q, k, rerank=0):
        q = _f32(q)
        n = self.index.ntotal
        if rerank == 0:
            D, I = self.index.search(q, k)    # D: Hamming distances (not comparable to IP)
            return D.astype(np.float32), I, dict(candidates=0.0, touched=float(n), probes=0.0)
        kk = max(rerank, k)
        _, C = self.index.search(q, kk)       # (nq, kk) Hamming candidates
        nq = q.shape[0]
        qi = np.repeat(np.arange(nq), kk)
        ids = C.reshape(-1)
        ok = ids >= 0
        qi, ids = qi[ok], ids[ok]
        s = np.einsum("ij,ij->i", self.x[ids], q[qi])
        D, I = topk_from_pairs(qi, ids, s, nq, k)
        return D, I, dict(candidates=float(ok.sum()) / nq, touched=float(n), probes=0.0)

    def memory_bytes(self):
        extra = self.x.nbytes if self.reranks and max(self.reranks) > 0 else 0
        return _serialized_bytes(self.index) + extra


def topk_from_pairs(qi, ids, s, nq, k):
    """Top-k per query from (query, id, score) triples, largest score first.

    qi: (m,) int64 sorted (non-decreasing); ids: (m,) int64; s: (m,) float.
    Returns D float32 (nq, k) (-FLT_MAX padded) and I int64 (nq, k) (-1 padded).
    """
    neg = -np.finfo(np.float32).max
    D = np.full((nq, k), neg, dtype=np.float32)
    I = np.full((nq, k), -1, dtype=np.int64)
    if qi.size == 0:
        return D, I
    cnt = np.bincount(qi, minlength=nq)
    start = np.cumsum(cnt) - cnt
    w = int(cnt.max())
    col = np.arange(qi.size) - start[qi]
    S = np.full((nq, max(w, k)), neg, dtype=np.float32)       # (nq, w) padded scores
    P = np.full((nq, max(w, k)), -1, dtype=np.int64)
    S[qi, col] = s
    P[qi, col] = ids
    if S.shape[1] > k:
        part = np.argpartition(-S, k - 1, axis=1)[:, :k]
    else:
        part = np.broadcast_to(np.arange(k), (nq, k))
    sv = np.take_along_axis(S, part, 1)
    o = np.argsort(-sv, axis=1, kind="stable")
    D[:] = np.take_along_axis(sv, o, 1)
    I[:] = np.take_along_axis(np.take_along_axis(P, part, 1), o, 1)
    I[D == neg] = -1
    return D, I


def bucket_sizes_of_codes(codes: np.ndarray) -> np.ndarray:
    """Sizes of the non-empty buckets of integer codes (n,)."""
    _, c = np.unique(codes, return_counts=True)
    return c


def _flip_sets(K: int, max_sets: int = 20000):
    """Flip sets over *cost ranks* (0 = cheapest bit), Hamming weight 0..R (largest R
    keeping <= max_sets sets), with their dominance counts.

    A set A dominates B when cost(A) <= cost(B) for every non-decreasing cost vector
    (A is B with elements removed or moved to cheaper ranks). A set dominated by >= T
    others can never be among the T cheapest probes, so a search with T probes only
    ranks the sets with fewer than T dominators. Returns bits (m, K) float32 and
    dominators (m,) int64.
    """
    rows = [()]
    for w in range(1, K + 1):
        combos = list(itertools.combinations(range(K), w))
        if len(rows) + len(combos) > max_sets:
            break
        rows += combos
    W = max(len(r) for r in rows)
    m = len(rows)
    bits = np.zeros((m, K), dtype=np.float32)
    pad = np.full((m, max(W, 1)), -1, dtype=np.int16)         # right-aligned, -1 padded
    for i, c in enumerate(rows):
        bits[i, list(c)] = 1
        if c:
            pad[i, W - len(c):] = c
    dom = np.zeros(m, dtype=np.int64)
    for i0 in range(0, m, 512):
        B = pad[i0:i0 + 512]                                   # (b, W)
        le = (pad[:, None, :] <= B[None, :, :]).all(-1)        # (m, b): A <= B
        dom[i0:i0 + 512] = le.sum(0) - 1
    return bits, dom


class MultiProbeLSH:
    """Bucketed multi-probe hashing with exact re-ranking (numpy hash tables).

    L tables of K-bit codes; codes are signs of projections: ``projection="random"``
    (random hyperplanes through the data mean: the paper's LSH baseline, FALCONN-style
    hyperplane LSH) or ``"pca"`` (sign of the top-K principal components, L=1: the
    unlearned version of FlowHash's projection). Probes per table are ordered by flip cost
    sum(|z_j|) over the flipped bits (Lv et al. 2007), enumerated up to Hamming radius R
    (R = 4 for K=16, 3 for K=24), pruned by dominance. Vectors are stored once; tables hold ids (CSR: ids sorted by code
    + dense offsets of size 2^K + 1). Candidates from all tables are de-duplicated, then
    scored exactly.
    """

    family = "MP-LSH"

    def __init__(self, d: int, K: int = 16, L: int = 1, projection: str = "random",
                 probes=(1, 4, 16, 64, 256, 1024), seed: int = 0):
        if projection not in ("random", "pca"):
            raise ValueError(f"projection: expected 'random' or 'pca', got {projection!r}")
        self.d, self.K, self.L, self.projection = d, K, L, projection
        self.probes_grid = probes
        self.seed = seed
        self.family = "PCA-sign" if projection == "pca" else "MP-LSH"
        self.set_bits, self.set_dom = _flip_sets(K)

    # -- build -------------------------------------------------------------------------
    def _project(self, x, l):
        return (x - self.mean) @ self.P[l]                    # (n, K)

    def _codes(self, z):
        return ((z > 0).astype(np.int64) << np.arange(self.K)).sum(1)

    def builds(self, ds):
        x = _f32(ds.x)
        t0 = time.perf_counter()
        rng = np.random.default_rng(self.seed)
        if self.projection == "pca":
            pca = faiss.PCAMatrix(self.d, self.K)
            pca.train(_f32(ds.x_train))
            A = faiss.vector_to_array(pca.A).reshape(self.K, self.d)
            self.mean = faiss.vector_to_array(pca.mean).astype(np.float32)
            self.P = _f32(A.T[None])                           # (1, d, K)
        else:
            self.mean = _f32(ds.x_train.mean(0))
            self.P = _f32(rng.standard_normal((self.L, self.d, self.K)))
        t1 = time.perf_counter()
        self.x = x
        self.n = x.shape[0]
        self.order, self.offsets = [], []
        for l in range(self.P.shape[0]):
            codes = np.empty(self.n, dtype=np.int64)
            for i0 in range(0, self.n, 1 << 17):
                codes[i0:i0 + (1 << 17)] = self._codes(self._project(x[i0:i0 + (1 << 17)], l))
            order = np.argsort(codes, kind="stable")
            self.order.append(order.astype(np.int32 if self.n < 2**31 else np.int64))
            self.offsets.append(np.searchsorted(codes[order], np.arange(2**self.K + 1))
                                .astype(np.int64))
        self.order_all = np.concatenate(self.order)            # (L * N,) ids by table, code
        del self.order
        t2 = time.perf_counter()
        label = (f"PCA-sign K{self.K}" if self.projection == "pca"
                 else f"MP-LSH K{self.K} L{self.L}")
        yield dict(label=label, params=dict(K=self.K, L=self.P.shape[0],
                                            projection=self.projection),
                   train_s=t1 - t0, add_s=t2 - t1)

    def bucket_sizes(self):
        """Sizes of the non-empty buckets of table 0."""
        s = np.diff(self.offsets[0])
        return s[s > 0]

    # -- search ------------------------------------------------------------------------
    def search_grid(self):
        return [dict(probes=p) for p in self.probes_grid if p <= self.set_dom.size]

    def _probe_codes(self, q, l, T):
        z = self._project(q, l)                                # (nq, K)
        base = self._codes(z)
        a = np.abs(z)
        rank = np.argsort(a, axis=1)                           # bit index of each cost rank
        keep = self.set_dom < T
        bits = self.set_bits[keep]                             # (m, K) over ranks
        T = min(T, bits.shape[0])
        cost = np.take_along_axis(a, rank, 1) @ bits.T         # (nq, m)
        if T < bits.shape[0]:
            part = np.argpartition(cost, T - 1, axis=1)[:, :T]
        else:
            part = np.broadcast_to(np.arange(T), (q.shape[0], T))
        c = np.take_along_axis(cost, part, 1)
        sel = np.take_along_axis(part, np.argsort(c, axis=1, kind="stable"), 1)   # (nq, T)
        # rank-space set -> bit mask of this query: sum over ranks of 1 << rank[q, r]
        val = (np.float64(1) * (1 << rank)) @ bits.T.astype(np.float64)           # (nq, m)
        masks = np.take_along_axis(val, sel, 1).astype(np.int64)
        return base[:, None] ^ masks                           # (nq, T), cheapest first

    def search(self, q, k, probes=16, chunk=8):
        q = _f32(q)
        nq = q.shape[0]
        nt = self.P.shape[0]
        D = np.empty((nq, k), dtype=np.float32)
        I = np.empty((nq, k), dtype=np.int64)
        ncand = 0
        for i0 in range(0, nq, chunk):
            qc = q[i0:i0 + chunk]
            c = qc.shape[0]
            starts, lens = [], []
            for l in range(nt):
                pc = self._probe_codes(qc, l, probes)          # (c, T)
                s = self.offsets[l][pc]
                starts.append(s + l * self.n)                  # position in order_all
                lens.append(self.offsets[l][pc + 1] - s)
            starts = np.concatenate(starts, 1).reshape(-1)     # (c * nt * T,) query-major
            lens = np.concatenate(lens, 1).reshape(-1)
            owner = np.repeat(np.arange(c), lens.size // c)
            tot = int(lens.sum())
            # expand the ranges into positions (repeat/arange trick)
            rep = np.repeat(np.arange(lens.size), lens)
            pos = starts[rep] + (np.arange(tot) - np.repeat(np.cumsum(lens) - lens, lens))
            key = owner[rep] * self.n + self.order_all[pos]
            # de-duplicate across tables and probes with a bitmap (sorted output)
            seen = np.zeros(c * self.n, dtype=bool)
            seen[key] = True
            key = np.flatnonzero(seen)
            qi, ids = key // self.n, key % self.n
            ncand += ids.size
            # einsum, not BLAS: threaded GEMV on small blocks stalls on a busy machine
            s = np.einsum("ij,ij->i", self.x[ids], qc[qi])
            D[i0:i0 + c], I[i0:i0 + c] = topk_from_pairs(qi, ids, s, c, k)
        cand = ncand / nq
        return D, I, dict(candidates=cand, touched=cand, probes=float(probes * nt))

    def memory_bytes(self):
        return int(self.x.nbytes + self.order_all.nbytes
                   + sum(o.nbytes for o in self.offsets) + self.P.nbytes)


class IVFFlat:
    """faiss.IndexIVFFlat, inner product. nlist <= 8192: flat coarse quantizer trained by
    faiss k-means; nlist > 8192: two-level k-means (faiss.contrib.clustering) and an
    HNSW32 coarse quantizer (standard practice for large nlist; flat k-means at 65536
    centroids costs O(N * nlist) per iteration, hours on 2 cores)."""

    family = "IVFFlat"

    def __init__(self, d: int, nlist: int, nprobes=(1, 2, 4, 8, 16, 32, 64, 128, 256)):
        self.d, self.nlist = d, nlist
        self.nprobes = [p for p in nprobes if p <= nlist]
        self.index = None

    def builds(self, ds):
        # k-means on the database itself (faiss subsamples to 256 points per centroid):
        # the 100k training sample gives < 39 points per centroid beyond nlist 2048
        xt = _f32(ds.x)
        t0 = time.perf_counter()
        if self.nlist <= 8192:
            quantizer = faiss.IndexFlatIP(self.d)
            index = faiss.IndexIVFFlat(quantizer, self.d, self.nlist, faiss.METRIC_INNER_PRODUCT)
            index.cp.max_points_per_centroid = 256
            index.train(xt)
        else:
            from faiss.contrib.clustering import two_level_clustering
            nc1 = int(round(np.sqrt(self.nlist)))
            cents, _ = two_level_clustering(xt, nc1, self.nlist, clustering_niter=10, min_points_per_centroid=1,
                                            spherical=True)
            quantizer = faiss.IndexHNSWFlat(self.d, 32, faiss.METRIC_INNER_PRODUCT)
            quantizer.hnsw.efSearch = 64
            quantizer.add(_f32(cents))
            index = faiss.IndexIVFFlat(quantizer, self.d, self.nlist, faiss.METRIC_INNER_PRODUCT)
            index.is_trained = True
        self.quantizer = quantizer          # keep the coarse quantizer alive
        t1 = time.perf_counter()
        index.add(_f32(ds.x))
        self.index = index
        yield dict(label=f"IVF{self.nlist}", params=dict(nlist=self.nlist),
                   train_s=t1 - t0, add_s=time.perf_counter() - t1)

    def list_sizes(self):
        il = self.index.invlists
        s = np.array([il.list_size(i) for i in range(self.nlist)])
        return s[s > 0]

    def search_grid(self):
        return [dict(nprobe=p) for p in self.nprobes]

    def search(self, q, k, nprobe=1):
        self.index.nprobe = nprobe
        st = faiss.cvar.indexIVF_stats
        st.reset()
        D, I = self.index.search(_f32(q), k)
        cand = st.ndis / q.shape[0]
        return D, I, dict(candidates=cand, touched=cand, probes=float(nprobe))

    def memory_bytes(self):
        # serialize_index on an HNSW-quantized IVF works; it includes the quantizer
        return _serialized_bytes(self.index)


class HNSWFlat:
    """faiss.IndexHNSWFlat (M=32, efConstruction=40), inner product; efSearch sweep.
    ``candidates`` = distance computations per query (faiss hnsw_stats.ndis)."""

    family = "HNSWFlat"

    def __init__(self, d: int, M: int = 32, ef_construction: int = 40,
                 efs=(16, 32, 64, 128, 256, 512)):
        self.d, self.M, self.efc, self.efs = d, M, ef_construction, efs
        self.index = None

    def builds(self, ds):
        t0 = time.perf_counter()
        index = faiss.IndexHNSWFlat(self.d, self.M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.efc
        index.add(_f32(ds.x))
        self.index = index
        yield dict(label=f"HNSW{self.M}", params=dict(M=self.M, efConstruction=self.efc),
                   train_s=0.0, add_s=time.perf_counter() - t0)

    def search_grid(self):
        return [dict(efSearch=e) for e in self.efs]

    def search(self, q, k, efSearch=16):
        self.index.hnsw.efSearch = max(efSearch, k)
        st = faiss.cvar.hnsw_stats
        st.reset()
        D, I = self.index.search(_f32(q), k)
        nq = q.shape[0]
        return D, I, dict(candidates=st.ndis / nq, touched=st.ndis / nq,
                          probes=st.nhops / nq)

    def memory_bytes(self):
        return _serialized_bytes(self.index)


def flowhash_available():
    """(True, None) if faiss_flowhash.FlowHashIndex imports, else (False, reason)."""
    try:
        import faiss_flowhash as ffh
        ffh.FlowHashIndex  # noqa: B018
        return True, None
    except Exception as e:  # ImportError, AttributeError, or a bug in the package
        return False, f"{type(e).__name__}: {e}"


class FlowHash:
    """faiss_flowhash.FlowHashIndex, trained once per K.

    mode="default": the index's defaults (centroid-ranked probing, bounded buckets, one copy per
    vector), swept over ``nprobes`` (lists scanned). mode="paper": the paper's radius copies (re-added
    for each r) and flip-cost probing by radius r~ (``r_queries``) under ``budgets``."""

    family = "FlowHash"

    def __init__(self, d: int, K: int | None = 16, rs=(0.5, 1.0), r_queries=(0.5, 1.0, 1.25, 1.5, 2.0),
                 budgets=(None,), config_kw=None, seed: int = 0, mode: str = "default",
                 nprobes=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024), planners=("fused",), proposals=(None,),
                 small_budgets=()):
        if mode not in ("default", "paper"):
            raise ValueError(f"mode: expected 'default' or 'paper', got {mode!r}")
        self.d, self.K, self.rs, self.mode, self.nprobes = d, K, rs, mode, nprobes
        self.family = "FlowHash" if mode == "default" else "FlowHash-paper"
        self.r_queries, self.budgets = r_queries, budgets
        # default mode: the planner ("fused" / "reference", same lists) and proposal sets
        # (max_probe_bits, max_probes) swept on the same build; None = the index's defaults
        self.planners, self.proposals = tuple(planners), tuple(proposals)
        self.small_budgets = tuple(small_budgets)  # default mode: cells scanning only this many vectors
        self.config_kw = dict(config_kw or {})
        self.config_kw.setdefault("seed", seed)
        self.index = None

    def builds(self, ds):
        import faiss_flowhash as ffh

        cfg = ffh.QuantizerConfig(**{"verbose": False, **self.config_kw})
        if self.mode == "default":
            index = ffh.FlowHashIndex(self.d, K=self.K, metric=faiss.METRIC_INNER_PRODUCT, config=cfg)
        else:
            index = ffh.FlowHashIndex(self.d, K=self.K, metric=faiss.METRIC_INNER_PRODUCT, assign="radius",
                                      r=self.rs[0], probe="flip", max_probes=None, max_probe_bits=10, config=cfg)
        t0 = time.perf_counter()
        index.train(_f32(ds.x_train), x_pos=None if ds.x_pos is None else _f32(ds.x_pos))
        train_s = time.perf_counter() - t0
        self.index = index
        for r in (self.rs if self.mode == "paper" else (None,)):
            index.reset()
            if r is not None:
                index.r = r
            t1 = time.perf_counter()
            index.add(_f32(ds.x))
            add_s = time.perf_counter() - t1
            # K=None: the index picks K from the training set (code_bits.auto_K); the label says which
            label = f"FlowHash K{index.K}{' auto' if self.K is None else ''}" + (f" paper r{r:g}" if r is not None else "")
            yield dict(label=label, params=dict(K=index.K, auto_K=self.K is None, r=r, mode=self.mode),
                       train_s=train_s, add_s=add_s, extra=self._diagnostics(ds))

    def _diagnostics(self, ds):
        """Balance of the primary codes, table entries per vector (multi-assignment), and
        the share of search time spent encoding queries (projection + flow)."""
        ix = self.index
        out = {}
        try:
            out["balance"] = {k: float(v) for k, v in ix.balance().items()}
        except Exception as e:  # diagnostics must not break the benchmark
            out["balance_error"] = f"{type(e).__name__}: {e}"
        out["entries_per_vec"] = float(getattr(ix, "table_entries", float("nan"))) / ix.ntotal
        q = _f32(ds.q)
        enc = ix.quantizer.encode
        enc(q[:8])
        t0 = time.perf_counter()
        enc(q)
        out["encode_us_batch"] = 1e6 * (time.perf_counter() - t0) / q.shape[0]
        ns = min(100, q.shape[0])
        t0 = time.perf_counter()
        for i in range(ns):
            enc(q[i:i + 1])
        out["encode_us_single"] = 1e6 * (time.perf_counter() - t0) / ns
        rep = getattr(ix.quantizer, "report", None)
        if rep is not None:
            out["train_report"] = dict(projection=getattr(rep, "projection", None),
                                       steps=getattr(rep, "steps", None), kept=getattr(rep, "kept", None),
                                       heldout_start=getattr(rep, "heldout_start", None),
                                       heldout_trained=getattr(rep, "heldout_trained", None),
                                       seconds=getattr(rep, "seconds", None),
                                       balance=getattr(rep, "balance", None))
        return out

    def bucket_sizes(self):
        return np.asarray(self.index.bucket_sizes())

    def search_grid(self):
        if self.mode == "default":
            grid = []
            for pl in self.planners:
                for prop in self.proposals:
                    if pl != "fused" and prop is not None:
                        continue  # the reference planner: the old defaults only (the "before" curve)
                    extra = {} if prop is None else dict(max_probe_bits=prop[0], max_probes=prop[1])
                    if pl != "fused":
                        extra["planner"] = pl
                    grid += [dict(nprobe=p, **extra) for p in self.nprobes]
            grid += [dict(nprobe=4, budget=b) for b in self.small_budgets]  # the nearest list's first b vectors
            return grid
        return [dict(r_query=rq, budget=b) for rq in self.r_queries for b in self.budgets]

    def variant_label(self, sp):
        """Suffix of a row's label that names its planner / proposal variant ("" for the defaults)."""
        out = ""
        if "max_probe_bits" in sp:
            out += f" b{sp['max_probe_bits']}x{sp['max_probes']}"
        if sp.get("planner", "fused") != "fused":
            out += f" ({sp['planner']} planner)"
        return out

    def search(self, q, k, r_query=None, budget=None, nprobe=None, planner=None, max_probe_bits=None,
               max_probes=None):
        import faiss_flowhash as ffh
        from faiss_flowhash.index.params import DEFAULT

        if self.mode == "default":
            p = ffh.SearchParams(nprobe=nprobe, planner=planner or DEFAULT, budget=DEFAULT if budget is None else budget,
                                 max_probe_bits=DEFAULT if max_probe_bits is None else max_probe_bits,
                                 max_probes=DEFAULT if max_probes is None else (None if max_probes == "all" else max_probes))
        else:
            p = ffh.SearchParams(r_query=r_query, budget=budget)
        D, I = self.index.search(_f32(q), k, params=p)
        st = self.index.last_search_stats
        cand = float(st.candidates)
        return D, I, dict(candidates=cand, touched=cand, probes=float(st.lists_scanned))

    def memory_bytes(self):
        return int(self.index.memory_bytes())
