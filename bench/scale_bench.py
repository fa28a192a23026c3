"""Scale bench (issue 12 part 3): FlowHash (K = 16 / 20 / 24) against IndexIVFFlat and HNSW at 1M and 10M.

    OMP_WAIT_POLICY=PASSIVE python -m bench.scale_bench ann --n 1000000 --json bench/results/scale_1M.json
    OMP_WAIT_POLICY=PASSIVE python -m bench.scale_bench ann --n 10000000 --methods fh16,fh20,ivf \\
        --json bench/results/scale_10M.json
    python -m bench.scale_bench plot bench/results/scale_1M.json bench/results/scale_10M.json   # the cost-vs-N plot
    python -m bench.scale_bench commit --n 1000000 --json bench/results/scale_commit.json   # the db's index commits
    python -m bench.scale_bench segments ...      # the segment store alone (bench/scale_segments.py)

One process, one data set, the methods one after the other (each index is built, written, dropped,
opened again from its file and searched; only one index is in memory at a time). Per method:
train and add seconds, RSS growth over the build and the peak (``VmHWM`` reset before each build),
``memory_bytes``-like bytes, file size, open time (read the file back), and per search setting:
batch QPS (all queries in one call, ``--threads`` threads), single-query p50 / p99 (one query per
call, one thread), recall@1 against exact inner-product search (faiss IndexFlatIP over the whole
database, on every query) and the % of the database scanned.

Data: the synthetic fingerprint-like generator of bench/datasets.py (same parameters: Zipf genres,
tracks as smoothed random walks, anisotropic noise, distorted queries), generated in 1M-row chunks
(tracks never straddle a chunk) so 10M needs no second float32 copy; the database is held as float16
(2.56 GB at 10M) and converted to float32 per chunk for the indexes and for exact search. Every
method sees the same float16-rounded vectors. FlowHash stores float16 (``storage="float16"``);
IVFFlat and HNSWFlat store float32 (faiss's flat codes).
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import contextlib
import gc
import json
import shutil
import subprocess
import sys
import tempfile
import time

import numpy as np

import faiss

from bench import datasets as ds_mod

__all__ = ["main", "generate"]

CHUNK = 1 << 20


# -- data -------------------------------------------------------------------------------------------

def generate(n: int, nq: int, *, n_train: int = 200_000, seed: int = 0, p: ds_mod.SynthParams = ds_mod.SynthParams()):
    """Synthetic fingerprint-like data (bench/datasets.py's law) in chunks.

    Returns dict: x (n, d) float16, track (n,) int64, q (nq, d) float32, truth (nq,), x_train, x_pos
    (n_train, d) float32 (a sample of the database and its distorted copies)."""
    rng = np.random.default_rng(seed)
    d = p.d
    aniso = ds_mod._Aniso(d, p.spectrum_decay, rng)
    g_centre = ds_mod._normalize(rng.standard_normal((p.n_genres, d)).astype(np.float32))
    g_w = 1.0 / (1.0 + np.arange(p.n_genres)) ** p.zipf
    g_w /= g_w.sum()
    g_spread = rng.uniform(*p.genre_spread, size=p.n_genres).astype(np.float32)
    x = np.empty((n, d), np.float16)
    track = np.empty(n, np.int64)
    t_off = 0
    for i0 in range(0, n, CHUNK):
        m = min(CHUNK, n - i0)
        lens = ds_mod._segments(m, p, rng)
        nt = lens.size
        t_genre = rng.choice(p.n_genres, size=nt, p=g_w)
        t_centre = ds_mod._normalize(g_centre[t_genre] + g_spread[t_genre, None] * aniso(nt, rng))
        t_spread = rng.uniform(*p.track_spread, size=nt).astype(np.float32)
        t_win = rng.integers(p.window[0], p.window[1] + 1, size=nt)
        tr = np.repeat(np.arange(nt), lens)
        start = np.repeat(np.cumsum(lens) - lens, lens)
        pos = np.arange(m) - start
        cs = np.zeros((m + 1, d), np.float32)
        cs[1:] = aniso(m, rng)
        np.cumsum(cs, axis=0, out=cs)
        lo = np.maximum(pos - t_win[tr] + 1, 0) + start
        cnt = (np.arange(m) - lo + 1).astype(np.float32)
        w = (cs[np.arange(1, m + 1)] - cs[lo]) / np.sqrt(cnt)[:, None]
        del cs
        w += p.jitter * aniso(m, rng)
        xc = t_centre[tr] + t_spread[tr, None] * w
        del w
        x[i0:i0 + m] = ds_mod._normalize(xc)
        track[i0:i0 + m] = tr + t_off
        t_off += nt
    truth = rng.choice(n, size=nq, replace=False).astype(np.int64)
    q = ds_mod.distort(x, truth, track, p, rng, aniso)
    tr_rows = np.sort(rng.choice(n, size=min(n_train, n), replace=False))
    x_train = x[tr_rows].astype(np.float32)
    x_pos = ds_mod.distort(x, tr_rows, track, p, rng, aniso)
    return dict(x=x, track=track, q=q, truth=truth, x_train=x_train, x_pos=x_pos, n_tracks=int(t_off))


def f32_chunks(x, chunk=CHUNK):
    for i0 in range(0, len(x), chunk):
        yield i0, np.ascontiguousarray(x[i0:i0 + chunk], np.float32)


def exact_top1(x, q, threads):
    """Exact inner-product top-1 of each query over x (float16 held, float32 compared), chunk by chunk."""
    best_d = np.full(len(q), -np.inf, np.float32)
    best_i = np.full(len(q), -1, np.int64)
    for i0, xc in f32_chunks(x):
        D, I = faiss.knn(q, xc, 1, metric=faiss.METRIC_INNER_PRODUCT)
        better = D[:, 0] > best_d
        best_d[better], best_i[better] = D[better, 0], I[better, 0] + i0
    return best_i


# -- measurement helpers ----------------------------------------------------------------------------

def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_mb():
    return _status("VmRSS")


def reset_peak():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5\n")
    except OSError:
        pass


def peak_mb():
    return _status("VmHWM")


def load():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


@contextlib.contextmanager
def threads(n):
    import torch
    old_f, old_t = faiss.omp_get_max_threads(), torch.get_num_threads()
    faiss.omp_set_num_threads(n)
    torch.set_num_threads(n)
    try:
        yield
    finally:
        faiss.omp_set_num_threads(old_f)
        torch.set_num_threads(old_t)


def git_rev():
    try:
        rev = subprocess.check_output(["git", "rev-parse", "--short", "HEAD"], text=True).strip()
        dirty = subprocess.call(["git", "diff", "--quiet", "HEAD", "--", "faiss_flowhash"]) != 0
        return rev + ("+dirty" if dirty else "")
    except Exception:
        return "unknown"


def log(msg):
    print(f"[{time.strftime('%H:%M:%S', time.gmtime())} load {load()} rss {rss_mb():.0f}MB] {msg}", flush=True)


# -- methods: build -> write -> drop -> open -> search ----------------------------------------------

class FlowHashM:
    def __init__(self, K, storage, add_chunk=CHUNK):
        self.K, self.storage, self.label, self.add_chunk = K, storage, f"FlowHash K{K}", add_chunk
        self.grid = [dict(nprobe=v) for v in (16, 64, 256, 512, 1024)]

    def build(self, data, nthreads):
        import faiss_flowhash as ffh
        cfg = ffh.QuantizerConfig(verbose=False, seed=0, threads=nthreads)
        self.index = ffh.FlowHashIndex(data["x"].shape[1], K=self.K, storage=self.storage, config=cfg)
        t0 = time.perf_counter()
        self.index.train(data["x_train"], x_pos=data["x_pos"])
        t1 = time.perf_counter()
        for _, xc in f32_chunks(data["x"], self.add_chunk):
            self.index.add(xc)
        return t1 - t0, time.perf_counter() - t1

    def nbytes(self):
        ix = self.index
        # the list centroids' arrays; memory_bytes() leaves them out before main 05844c2, counts them after
        cent = sum(np.asarray(v).nbytes for v in ix._cent.state().values())
        return dict(memory_bytes=int(ix.memory_bytes()), centroid_bytes=int(cent),
                    n_lists=int((ix._engine.list_sizes() > 0).sum()))

    def write(self, path):
        from faiss_flowhash.index.serialize import write_index
        write_index(self.index, path)

    def open(self, path):
        from faiss_flowhash.index.serialize import read_index
        self.index = read_index(path)

    def search(self, q, k, nprobe):
        import faiss_flowhash as ffh
        D, I = self.index.search(q, k, params=ffh.SearchParams(nprobe=nprobe))
        return I, float(self.index.last_search_stats.eval_percent)


class IVFM:
    def __init__(self, nlist):
        self.nlist, self.label = nlist, f"IVF{nlist}"
        self.grid = [dict(nprobe=v) for v in (1, 4, 16, 64)]

    def build(self, data, nthreads):
        d = data["x"].shape[1]
        xt = data["x_train"]
        t0 = time.perf_counter()
        if self.nlist <= 8192:
            quantizer = faiss.IndexFlatIP(d)
            index = faiss.IndexIVFFlat(quantizer, d, self.nlist, faiss.METRIC_INNER_PRODUCT)
            index.train(xt)
        else:  # bench/baselines.py's way: two-level k-means, HNSW32 coarse quantizer
            from faiss.contrib.clustering import two_level_clustering
            cents, _ = two_level_clustering(xt, int(round(np.sqrt(self.nlist))), self.nlist, clustering_niter=10,
                                            min_points_per_centroid=1, spherical=True)
            quantizer = faiss.IndexHNSWFlat(d, 32, faiss.METRIC_INNER_PRODUCT)
            quantizer.hnsw.efSearch = 64
            quantizer.add(np.ascontiguousarray(cents, np.float32))
            index = faiss.IndexIVFFlat(quantizer, d, self.nlist, faiss.METRIC_INNER_PRODUCT)
            index.is_trained = True
        self.quantizer = quantizer  # keep the coarse quantizer alive
        t1 = time.perf_counter()
        for _, xc in f32_chunks(data["x"]):
            index.add(xc)
        self.index = index
        return t1 - t0, time.perf_counter() - t1

    def nbytes(self):
        n, d = self.index.ntotal, self.index.d
        return dict(memory_bytes=int(n * (4 * d + 8) + self.nlist * 4 * d))

    def write(self, path):
        faiss.write_index(self.index, path)

    def open(self, path):
        self.index = faiss.read_index(path)
        if isinstance(faiss.downcast_index(self.index.quantizer), faiss.IndexHNSWFlat):
            faiss.downcast_index(self.index.quantizer).hnsw.efSearch = 64

    def search(self, q, k, nprobe):
        ivf = faiss.extract_index_ivf(self.index)
        ivf.nprobe = nprobe
        st = faiss.cvar.indexIVF_stats
        st.reset()
        D, I = self.index.search(q, k)
        return I, 100.0 * st.ndis / len(q) / self.index.ntotal


class HNSWM:
    def __init__(self, M):
        self.M, self.label = M, f"HNSW{M}"
        self.grid = [dict(efSearch=v) for v in (16, 64, 256)]

    def build(self, data, nthreads):
        index = faiss.IndexHNSWFlat(data["x"].shape[1], self.M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = 40
        t0 = time.perf_counter()
        for _, xc in f32_chunks(data["x"]):
            index.add(xc)
        self.index = index
        return 0.0, time.perf_counter() - t0

    def nbytes(self):
        n, d = self.index.ntotal, self.index.d
        return dict(memory_bytes=int(n * (4 * d + 4 * 2 * self.M * 1.07 + 8)))  # level 0 links + upper levels (approx)

    def write(self, path):
        faiss.write_index(self.index, path)

    def open(self, path):
        self.index = faiss.read_index(path)

    def search(self, q, k, efSearch):
        self.index.hnsw.efSearch = max(efSearch, k)
        st = faiss.cvar.hnsw_stats
        st.reset()
        D, I = self.index.search(q, k)
        return I, 100.0 * st.ndis / len(q) / self.index.ntotal


def make_methods(names, n, storage, add_chunk=CHUNK):
    out = []
    for m in names:
        if m.startswith("fh"):
            out.append(FlowHashM(int(m[2:]), storage, add_chunk))
        elif m == "ivf":
            out.append(IVFM(1 << int(round(np.log2(4 * np.sqrt(n))))))
        elif m.startswith("ivf"):
            out.append(IVFM(int(m[3:])))
        elif m == "hnsw":
            out.append(HNSWM(32))
        else:
            raise ValueError(f"--methods: unknown method {m!r} (fh16, fh20, fh24, ivf, ivf<nlist>, hnsw)")
    return out


def measure(m, data, gt, args, work):
    rec = dict(method=m.label, load_before=load())
    gc.collect()
    rss0 = rss_mb()
    reset_peak()
    with threads(args.threads):
        rec["train_s"], rec["add_s"] = m.build(data, args.threads)
    rec["build_s"] = rec["train_s"] + rec["add_s"]
    rec["rss_delta_mb"] = rss_mb() - rss0
    rec["peak_over_start_mb"] = peak_mb() - rss0
    rec.update(m.nbytes())
    log(f"{m.label}: train {rec['train_s']:.1f} s, add {rec['add_s']:.1f} s, +{rec['rss_delta_mb']:.0f} MB")
    path = os.path.join(work, m.label.replace(" ", "_"))
    t0 = time.perf_counter()
    m.write(path)
    rec["write_s"] = time.perf_counter() - t0
    rec["disk_bytes"] = os.path.getsize(path)
    m.index = None
    gc.collect()
    rss1 = rss_mb()
    t0 = time.perf_counter()
    m.open(path)
    rec["open_s"] = time.perf_counter() - t0  # from the page cache (the file was just written)
    rec["open_rss_mb"] = rss_mb() - rss1
    os.unlink(path)
    log(f"{m.label}: file {rec['disk_bytes'] / 1e9:.2f} GB, write {rec['write_s']:.1f} s, open {rec['open_s']:.1f} s")
    q, k = data["q"], 10
    rows = []
    for sp in m.grid:
        with threads(args.threads):
            m.search(q[:16], k, **sp)  # warm
            t0 = time.perf_counter()
            I, ev = m.search(q, k, **sp)
            batch_s = time.perf_counter() - t0
        lat = []
        with threads(1):
            for i in range(args.n_single):
                t0 = time.perf_counter()
                m.search(q[i:i + 1], k, **sp)
                lat.append(1000 * (time.perf_counter() - t0))
        r = dict(params=sp, r1=float(np.mean(I[:, 0] == gt)), hit1=float(np.mean(I[:, 0] == data["truth"])),
                 eval_percent=ev, batch_qps=len(q) / batch_s, p50_ms=float(np.percentile(lat, 50)),
                 p99_ms=float(np.percentile(lat, 99)), load=load())
        rows.append(r)
        log(f"{m.label} {sp}: R@1 {r['r1']:.3f} eval {ev:.3f}% batch {r['batch_qps']:.0f} q/s "
            f"p50 {r['p50_ms']:.2f} p99 {r['p99_ms']:.2f} ms")
    rec["search"] = rows
    rec["load_after"] = load()
    m.index = None
    gc.collect()
    return rec


def ann_main(argv):
    ap = argparse.ArgumentParser(prog="python -m bench.scale_bench ann", description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--nq", type=int, default=1000, help="queries (batch QPS, recall@1 vs exact on all of them)")
    ap.add_argument("--n-single", type=int, default=200, help="queries timed one per call (p50 / p99)")
    ap.add_argument("--n-train", type=int, default=200_000, help="training sample (FlowHash and IVF)")
    ap.add_argument("--methods", default="fh16,fh20,fh24,ivf,hnsw")
    ap.add_argument("--storage", default="float16", choices=["float16", "float32"], help="FlowHash storage")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--fh-add-chunk", type=int, default=CHUNK,
                    help="rows per FlowHashIndex.add call (its add holds an (n, largest bucket group) matrix: "
                         "1M-row adds at 10M needed > 15 GB)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--work", default=None, help="folder for the index files (default: a temporary one)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    out = dict(command="python -m bench.scale_bench ann " + " ".join(argv), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
               git=git_rev(), cpus=os.cpu_count(), n=args.n, nq=args.nq, n_single=args.n_single, n_train=args.n_train,
               storage=args.storage, threads=args.threads, fh_add_chunk=args.fh_add_chunk, load_start=load(), methods=[])

    def dump():
        if args.json:
            with open(args.json, "w") as f:
                json.dump(out, f, indent=1)

    work = args.work or tempfile.mkdtemp(prefix="flowhash-scale-ann-", dir=os.environ.get("TMPDIR", "/tmp"))
    try:
        log(f"generating {args.n:,} vectors")
        t0 = time.perf_counter()
        with threads(args.threads):
            data = generate(args.n, args.nq, n_train=args.n_train, seed=args.seed)
        out["generate_s"], out["n_tracks"] = time.perf_counter() - t0, data["n_tracks"]
        log(f"generated in {out['generate_s']:.0f} s ({data['n_tracks']:,} tracks); exact search")
        t0 = time.perf_counter()
        with threads(args.threads):
            gt = exact_top1(data["x"], data["q"], args.threads)
        out["exact_s"] = time.perf_counter() - t0
        out["exact_hit1"] = float(np.mean(gt == data["truth"]))
        out["exact_batch_qps"] = args.nq / out["exact_s"]
        log(f"exact: {out['exact_s']:.1f} s, hit@1 {out['exact_hit1']:.3f}")
        dump()
        for m in make_methods(args.methods.split(","), args.n, args.storage, args.fh_add_chunk):
            try:
                out["methods"].append(measure(m, data, gt, args, work))
            except MemoryError as e:
                out["methods"].append(dict(method=m.label, error=f"MemoryError: {e}"))
                log(f"{m.label}: MemoryError")
            m.index = None
            gc.collect()
            dump()
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    out["load_end"] = load()
    dump()
    return 0


def _dir_bytes(path):
    return sum(os.path.getsize(os.path.join(r, f)) for r, _, fs in os.walk(path) for f in fs)


def commit_main(argv):
    """The database's index persistence at N vectors: a commit of a small batch (whole-file rewrite, as
    before the segments, vs one segment), opening (one file vs base + segments), a reader's refresh after a
    commit, and compaction. It drives :class:`faiss_flowhash.db.index_store.IndexStore`, which is what
    ``FingerprintDB`` calls for its index at each commit (the LMDB transaction is unchanged and not timed)."""
    import faiss_flowhash as ffh
    from faiss_flowhash.db.index_store import DEFAULT_COMPACT_RATIO, IndexStore
    from faiss_flowhash.index.serialize import read_index, write_index

    ap = argparse.ArgumentParser(prog="python -m bench.scale_bench commit")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--K", type=int, default=16)
    ap.add_argument("--batches", default="600,30000", help="small commit sizes (vectors)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    out = dict(command="python -m bench.scale_bench commit " + " ".join(argv), git=git_rev(),
               date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), n=args.n, K=args.K, load_start=load())
    batches = [int(b) for b in args.batches.split(",")]
    work = tempfile.mkdtemp(prefix="flowhash-scale-commit-", dir=os.environ.get("TMPDIR", "/tmp"))
    try:
        with threads(args.threads):
            extra = sum(batches) + int(args.n * DEFAULT_COMPACT_RATIO)
            data = generate(args.n + extra, 10, n_train=200_000)
            x = data["x"]
            index = ffh.FlowHashIndex(x.shape[1], K=args.K, config=ffh.QuantizerConfig(verbose=False, threads=args.threads))
            index.train(data["x_train"], x_pos=data["x_pos"])
            for i0, xc in f32_chunks(x[: args.n]):
                index.add_with_ids(xc, np.arange(i0, i0 + len(xc), dtype=np.int64))
            log(f"index of {index.ntotal:,} built")
            one = os.path.join(work, "one.flowhash")
            t0 = time.perf_counter()
            write_index(index, one)  # what every commit did before: the whole file
            out["rewrite_s"], out["rewrite_bytes"] = time.perf_counter() - t0, os.path.getsize(one)
            t0 = time.perf_counter()
            read_index(one)
            out["open_one_file_s"] = time.perf_counter() - t0
            os.unlink(one)
            db = os.path.join(work, "db")
            os.makedirs(db)
            st = IndexStore(db)
            t0 = time.perf_counter()
            st.write_base(index)
            out["base_write_s"] = time.perf_counter() - t0
            reader = IndexStore(db, readonly=True)
            t0 = time.perf_counter()
            rindex = reader.load()
            out["open_base_only_s"] = time.perf_counter() - t0
            pos, rows = args.n, []
            for b in batches:
                xb = np.ascontiguousarray(x[pos: pos + b], np.float32)
                ids = np.arange(pos, pos + b, dtype=np.int64)
                pos += b
                t0 = time.perf_counter()
                index.add_with_ids(xb, ids)
                add_s = time.perf_counter() - t0
                before = _dir_bytes(db)
                t0 = time.perf_counter()
                st.append(xb, ids, index)
                commit_s = time.perf_counter() - t0
                written = _dir_bytes(db) - before
                t0 = time.perf_counter()
                rindex = reader.refresh(rindex)
                refresh_s = time.perf_counter() - t0
                assert rindex.ntotal == index.ntotal
                t0 = time.perf_counter()
                IndexStore(db, readonly=True).load()
                open_s = time.perf_counter() - t0
                rows.append(dict(batch=b, add_s=add_s, segment_commit_s=commit_s, segment_bytes=written,
                                 rewrite_bytes_instead=out["rewrite_bytes"] + b * (x.shape[1] * 4 + 16),
                                 reader_refresh_s=refresh_s, open_s=open_s, load=load()))
                log(f"commit of {b}: add {add_s:.2f} s, segment {commit_s:.3f} s {written / 1e6:.1f} MB; "
                    f"reader refresh {refresh_s:.2f} s; open {open_s:.1f} s")
            out["commits"] = rows
            # the worst open before an automatic compaction: segments holding compact_ratio x the base
            b = int(args.n * DEFAULT_COMPACT_RATIO) - sum(batches)
            xb = np.ascontiguousarray(x[pos: pos + b], np.float32)
            ids = np.arange(pos, pos + b, dtype=np.int64)
            index.add_with_ids(xb, ids)
            st.append(xb, ids, index)
            t0 = time.perf_counter()
            IndexStore(db, readonly=True).load()
            out["open_at_compact_ratio_s"] = time.perf_counter() - t0
            out["delta_rows_at_compact_ratio"], out["compact_ratio"] = st.delta_rows(), DEFAULT_COMPACT_RATIO
            t0 = time.perf_counter()
            out["compact"] = st.compact(index)
            t0 = time.perf_counter()
            rindex = reader.refresh(rindex)
            out["reader_reload_after_compaction_s"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            IndexStore(db, readonly=True).load()
            out["open_after_compaction_s"] = time.perf_counter() - t0
            log(f"open at the compact ratio {out['open_at_compact_ratio_s']:.1f} s; compaction "
                f"{out['compact']['seconds']:.1f} s; open after {out['open_after_compaction_s']:.1f} s")
    finally:
        shutil.rmtree(work, ignore_errors=True)
    out["load_end"] = load()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    print(json.dumps(out, indent=1))
    return 0


def operating_point(rec, target):
    """The fastest search setting (batch QPS) of a method with R@1 >= target, else its most accurate one."""
    ok = [r for r in rec["search"] if r["r1"] >= target]
    return (max(ok, key=lambda r: r["batch_qps"]), True) if ok else (max(rec["search"], key=lambda r: r["r1"]), False)


def plot_main(argv):
    """Cost vs N per method from the ann JSONs: build s, memory, disk, open s, batch QPS and single-query
    p99 at the fastest setting with R@1 >= --target (hollow marker: the method never reached it; its most
    accurate setting is shown)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ap = argparse.ArgumentParser(prog="python -m bench.scale_bench plot")
    ap.add_argument("jsons", nargs="+")
    ap.add_argument("--target", type=float, default=0.9)
    ap.add_argument("--out", default="bench/plots/scale_cost_vs_n.png")
    args = ap.parse_args(argv)
    runs = [json.load(open(p)) for p in args.jsons]
    series = {}
    for run in runs:
        for rec in run["methods"]:
            if "search" not in rec:
                continue
            pt, reached = operating_point(rec, args.target)
            name = "IVFFlat (nlist 4 sqrt N)" if rec["method"].startswith("IVF") else rec["method"]
            series.setdefault(name, []).append(dict(
                n=run["n"], build=rec["build_s"], mem=(rec["memory_bytes"] + rec.get("centroid_bytes", 0)) / 1e9,
                disk=rec["disk_bytes"] / 1e9, open=rec["open_s"], qps=pt["batch_qps"], p99=pt["p99_ms"], r1=pt["r1"],
                reached=reached))
    panels = [("build", "build s (train + add)"), ("mem", "index RAM GB (memory_bytes + list centroids)"),
              ("disk", "file GB"), ("open", "open s (read the file)"),
              ("qps", f"batch QPS at R@1 >= {args.target}"), ("p99", f"1-query p99 ms at R@1 >= {args.target}")]
    fig, axes = plt.subplots(2, 3, figsize=(15, 8.5))
    for ax, (key, title) in zip(axes.ravel(), panels):
        for name, pts in sorted(series.items()):
            pts = sorted(pts, key=lambda p: p["n"])
            line, = ax.plot([p["n"] for p in pts], [p[key] for p in pts], "-", label=name)
            for p in pts:
                ax.plot(p["n"], p[key], "o", color=line.get_color(), mfc=line.get_color() if p["reached"] or key not in
                        ("qps", "p99") else "none")
                if key in ("qps", "p99"):
                    ax.annotate(f"{p['r1']:.2f}", (p["n"], p[key]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("N vectors")
        ax.grid(True, which="both", alpha=0.3)
    axes[0, 0].legend(fontsize=8)
    loads = ", ".join(f"{r['n'] / 1e6:g}M: load {r['load_start'].split()[0]} git {r['git']}" for r in runs)
    fig.suptitle(f"Scale: cost vs N, synthetic fingerprint-like d=128, 2 shared cores ({loads})\n"
                 "labels: R@1 of the point; hollow: the target was not reached (its most accurate setting)", fontsize=9)
    fig.tight_layout()
    os.makedirs(os.path.dirname(args.out) or ".", exist_ok=True)
    fig.savefig(args.out, dpi=110)
    print(args.out)
    return 0


def table_main(argv):
    """Markdown tables of ann JSONs: one build row per method, one row per search setting."""
    for path in argv:
        run = json.load(open(path))
        print(f"\n`{run['command']}` ({run['date']}, git {run['git']}, load {run['load_start']} -> "
              f"{run.get('load_end', '?')}; data {run['generate_s']:.0f} s, exact top-1 of {run['nq']} queries "
              f"{run['exact_s']:.0f} s, exact hit@1 {run['exact_hit1']:.3f})\n")
        print("| method | train s | add s | RAM delta GB | peak over start GB | memory_bytes GB | list centroids GB | lists "
              "| file GB | write s | open s |")
        print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
        for m in run["methods"]:
            if "search" not in m:
                print(f"| {m['method']} | {m.get('error', '')} |")
                continue
            print(f"| {m['method']} | {m['train_s']:.1f} | {m['add_s']:.1f} | {m['rss_delta_mb'] / 1e3:.2f} | "
                  f"{m['peak_over_start_mb'] / 1e3:.2f} | {m['memory_bytes'] / 1e9:.2f} | "
                  f"{m.get('centroid_bytes', 0) / 1e9:.2f} | {m.get('n_lists', '')} | {m['disk_bytes'] / 1e9:.2f} | "
                  f"{m['write_s']:.1f} | {m['open_s']:.2f} |")
        print("\n| method | setting | R@1 | hit@1 | eval % | batch QPS | 1-query p50 ms | p99 ms | load |")
        print("|---|---|---:|---:|---:|---:|---:|---:|---|")
        for m in run["methods"]:
            for r in m.get("search", []):
                sp = ", ".join(f"{k} {v}" for k, v in r["params"].items())
                print(f"| {m['method']} | {sp} | {r['r1']:.3f} | {r['hit1']:.3f} | {r['eval_percent']:.3f} | "
                      f"{r['batch_qps']:,.0f} | {r['p50_ms']:.2f} | {r['p99_ms']:.2f} | {r['load'].split()[0]} |")
    return 0


def main(argv=None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "table":
        return table_main(argv[1:])
    if argv and argv[0] == "plot":
        return plot_main(argv[1:])
    if argv and argv[0] == "commit":
        return commit_main(argv[1:])
    if argv and argv[0] == "segments":
        from bench.scale_segments import main as seg_main
        return seg_main(argv[1:])
    if argv and argv[0] == "ann":
        argv = argv[1:]
    return ann_main(argv)


if __name__ == "__main__":
    sys.exit(main())
