"""Issue 12 part 1: a 10M-vector FlowHash index opened memory-mapped vs read into RAM.

    OMP_WAIT_POLICY=PASSIVE python -m bench.scale_mmap build --n 10000000 --out /work/data/scale10m
    python -m bench.scale_mmap convert --dir /work/data/scale10m      # once: + index.mm.flowhash / index.mm.lists
    OMP_WAIT_POLICY=PASSIVE python -m bench.scale_mmap measure --dir /work/data/scale10m --json bench/results/scale_mmap.json
    python -m bench.scale_mmap addcost --n 1000000 --batch 600     # a small add_with_ids onto a 1M index
    python -m bench.scale_mmap replay --n 1000000 --dir /tmp/replay  # segment replay: stored codes vs encoding

``build`` (once, ~10-15 min and ~10-15 GB at 10M): the scale bench's synthetic fingerprint-like vectors
(bench/scale_bench.generate, d = 128), FlowHash K16 float16 trained on 200k of them with positives, added
in 256k-row calls; written as ``index.flowhash`` (one file, vectors inline: the layout every version
reads) plus ``queries.npy``. ``measure`` converts that file once to the mmap layout (``index.mm.flowhash``
+ its lists file) and then, in one process, per layout: open time (page cache dropped first with
bench/evict_cache.py when it can, else said "warm"), RSS right after open, first-query latency, batch QPS
(all queries, 2 threads), single-query p50 / p99 (1 thread), RSS after those 1,000+ queries; results of
both layouts compared id for id.
"""
from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import gc
import json
import sys
import time

import numpy as np

__all__ = ["main"]


def _status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) / 1024
    return float("nan")


def load():
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def log(msg):
    print(f"[{time.strftime('%H:%M:%S', time.gmtime())} load {load()} rss {_status('VmRSS'):.0f}MB] {msg}", flush=True)


def build_main(argv):
    ap = argparse.ArgumentParser(prog="python -m bench.scale_mmap build")
    ap.add_argument("--n", type=int, default=10_000_000)
    ap.add_argument("--nq", type=int, default=1000)
    ap.add_argument("--K", type=int, default=16)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--add-chunk", type=int, default=1 << 18)
    ap.add_argument("--out", required=True)
    args = ap.parse_args(argv)
    import faiss
    import torch
    import faiss_flowhash as ffh
    from faiss_flowhash.index.serialize import write_index
    from bench.scale_bench import generate

    faiss.omp_set_num_threads(args.threads)
    torch.set_num_threads(args.threads)
    os.makedirs(args.out, exist_ok=True)
    t0 = time.perf_counter()
    data = generate(args.n, args.nq)
    log(f"generated {args.n:,} in {time.perf_counter() - t0:.0f} s")
    np.save(os.path.join(args.out, "queries.npy"), data["q"])
    cfg = ffh.QuantizerConfig(verbose=False, seed=0, threads=args.threads)
    index = ffh.FlowHashIndex(data["x"].shape[1], K=args.K, storage="float16", config=cfg)
    t0 = time.perf_counter()
    index.train(data["x_train"], x_pos=data["x_pos"])
    train_s = time.perf_counter() - t0
    log(f"trained in {train_s:.0f} s")
    x = data["x"]
    del data
    gc.collect()
    t0 = time.perf_counter()
    for i0 in range(0, len(x), args.add_chunk):
        index.add(np.ascontiguousarray(x[i0:i0 + args.add_chunk], np.float32))
        if (i0 // args.add_chunk) % 8 == 0:
            log(f"added {i0 + args.add_chunk:,}")
    add_s = time.perf_counter() - t0
    log(f"added in {add_s:.0f} s; writing")
    write_index(index, os.path.join(args.out, "index.flowhash"))
    with open(os.path.join(args.out, "build.json"), "w") as f:
        json.dump(dict(n=args.n, K=args.K, storage="float16", train_s=train_s, add_s=add_s,
                       date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), load=load(),
                       command="python -m bench.scale_mmap build " + " ".join(argv)), f, indent=1)
    log("done")
    return 0


def addcost_main(argv):
    """A small add_with_ids onto a big index: seconds per call (median of --reps), one process."""
    ap = argparse.ArgumentParser(prog="python -m bench.scale_mmap addcost")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--batch", type=int, default=600)
    ap.add_argument("--reps", type=int, default=20)
    ap.add_argument("--K", type=int, default=16)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import faiss
    import faiss_flowhash as ffh

    faiss.omp_set_num_threads(1)
    rng = np.random.default_rng(0)
    d = 128
    ix = ffh.FlowHashIndex(d, K=args.K, storage="float16",
                           config=ffh.QuantizerConfig(steps=0, verbose=False, seed=0, threads=1))
    ix.train(rng.standard_normal((20_000, d)).astype(np.float32))
    t0 = time.perf_counter()
    for i0 in range(0, args.n, 1 << 18):
        m = min(1 << 18, args.n - i0)
        ix.add_with_ids(rng.standard_normal((m, d)).astype(np.float32), np.arange(i0, i0 + m))
    log(f"base of {ix.ntotal:,} built in {time.perf_counter() - t0:.0f} s, {ix._engine.nlist:,} lists")
    times, next_id = [], args.n
    for r in range(args.reps):
        y = rng.standard_normal((args.batch, d)).astype(np.float32)
        t0 = time.perf_counter()
        ix.add_with_ids(y, np.arange(next_id, next_id + args.batch))
        times.append(time.perf_counter() - t0)
        next_id += args.batch
    enc = []
    for r in range(5):
        y = rng.standard_normal((args.batch, d)).astype(np.float32)
        t0 = time.perf_counter()
        ix.quantizer.encode(y)
        enc.append(time.perf_counter() - t0)
    out = dict(n=args.n, batch=args.batch, reps=args.reps, add_ms_median=1000 * float(np.median(times)),
               add_ms_min=1000 * float(np.min(times)), add_ms_max=1000 * float(np.max(times)),
               encode_ms_median=1000 * float(np.median(enc)), n_lists=int(ix._engine.nlist),
               date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), load=load(),
               code=ffh.__file__, command="python -m bench.scale_mmap addcost " + " ".join(argv))
    log(json.dumps(out))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


def convert_main(argv):
    """The one-file index rewritten as index.mm.flowhash + its lists file (read whole once)."""
    ap = argparse.ArgumentParser(prog="python -m bench.scale_mmap convert")
    ap.add_argument("--dir", required=True)
    args = ap.parse_args(argv)
    from faiss_flowhash.index.serialize import read_index, write_index

    t0 = time.perf_counter()
    index = read_index(os.path.join(args.dir, "index.flowhash"))
    log(f"read {index.ntotal:,} in {time.perf_counter() - t0:.1f} s")
    t0 = time.perf_counter()
    write_index(index, os.path.join(args.dir, "index.mm.flowhash"), lists_path=os.path.join(args.dir, "index.mm.lists"))
    log(f"wrote the mmap layout in {time.perf_counter() - t0:.1f} s")
    return 0


def cached_fraction(path):
    """Share of the file's pages in the page cache (mincore on a fresh read-only mapping)."""
    import ctypes
    import mmap

    size = os.path.getsize(path)
    if size == 0:
        return 0.0
    libc = ctypes.CDLL(None, use_errno=True)
    page = mmap.PAGESIZE
    with open(path, "rb") as f:
        mm = mmap.mmap(f.fileno(), size, prot=mmap.PROT_READ)
        try:
            arr = np.frombuffer(mm, np.uint8)
            n = (size + page - 1) // page
            vec = np.zeros(n, np.uint8)
            rc = libc.mincore(ctypes.c_void_p(arr.ctypes.data), ctypes.c_size_t(size), ctypes.c_void_p(vec.ctypes.data))
            del arr
            if rc != 0:
                return float("nan")
            resident = int((vec & 1).sum())
        finally:
            mm.close()
    return resident / n


def _mem():
    return {k: round(_status(k), 1) for k in ("VmRSS", "RssAnon", "RssFile")}


def measure_main(argv):
    ap = argparse.ArgumentParser(prog="python -m bench.scale_mmap measure")
    ap.add_argument("--dir", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--n-single", type=int, default=500, help="queries timed one per call (p50 / p99)")
    ap.add_argument("--order", default="mmap,ram", help="layouts in the order measured")
    ap.add_argument("--warm", action="store_true", help="keep the page cache (default: evict the files first)")
    ap.add_argument("--passes", type=int, default=3, help="batch passes after the first (median reported)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import faiss
    from faiss_flowhash.index.serialize import read_index
    from bench.evict_cache import evict

    q = np.load(os.path.join(args.dir, "queries.npy"))
    files = {"mmap": [os.path.join(args.dir, n) for n in ("index.mm.flowhash", "index.mm.lists")],
             "ram": [os.path.join(args.dir, "index.flowhash")]}
    out = dict(command="python -m bench.scale_mmap measure " + " ".join(argv), git=_git(),
               date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), load_start=load(), cpus=os.cpu_count(),
               nq=len(q), threads=args.threads, page_cache="warm" if args.warm else "evicted before each open",
               runs=[])
    results = {}
    for layout in args.order.split(","):
        gc.collect()
        if not args.warm:
            for p in files[layout]:
                evict(p)
        cached = {os.path.basename(p): round(cached_fraction(p), 4) for p in files[layout]}
        rec = dict(layout=layout, cached_before_open=cached, load_before=load(), mem_before=_mem())
        faiss.omp_set_num_threads(args.threads)
        t0 = time.perf_counter()
        index = read_index(files[layout][0], mmap=layout == "mmap")
        rec["open_s"] = time.perf_counter() - t0
        rec["mem_after_open"] = _mem()
        t0 = time.perf_counter()
        index.search(q[:1], 10)
        rec["first_query_ms"] = 1000 * (time.perf_counter() - t0)
        faiss.omp_set_num_threads(args.threads)
        t0 = time.perf_counter()
        D, I = index.search(q, 10)
        rec["batch_cold_qps"] = len(q) / (time.perf_counter() - t0)  # first pass: pages come in
        qps = []
        for _ in range(args.passes):
            t0 = time.perf_counter()
            D, I = index.search(q, 10)
            qps.append(len(q) / (time.perf_counter() - t0))
        rec["batch_qps_passes"], rec["batch_qps"] = qps, float(np.median(qps))
        rec["eval_percent"] = float(index.last_search_stats.eval_percent)
        faiss.omp_set_num_threads(1)
        lat = []
        for i in range(args.n_single):
            t0 = time.perf_counter()
            index.search(q[i % len(q): i % len(q) + 1], 10)
            lat.append(1000 * (time.perf_counter() - t0))
        rec["single_p50_ms"], rec["single_p99_ms"] = float(np.percentile(lat, 50)), float(np.percentile(lat, 99))
        rec["queries_run"] = 1 + (1 + args.passes) * len(q) + args.n_single
        rec["mem_after_queries"] = _mem()
        rec["mapped_bytes"] = int(index._engine.mapped_bytes())
        rec["load_after"] = load()
        results[layout] = (D, I)
        log(json.dumps(rec))
        out["runs"].append(rec)
        del index
        gc.collect()
    if len(results) == 2:
        (Da, Ia), (Db, Ib) = results.values()
        out["identical_results"] = bool(np.array_equal(Ia, Ib) and np.array_equal(Da, Db))
    out["load_end"] = load()
    log(f"identical results: {out.get('identical_results')}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


def _git():
    from bench.scale_bench import git_rev

    return git_rev()


def replay_main(argv):
    """IndexStore.load of a base + segments: replay from the stored codes vs by encoding (one process)."""
    ap = argparse.ArgumentParser(prog="python -m bench.scale_mmap replay")
    ap.add_argument("--n", type=int, default=1_000_000)
    ap.add_argument("--segments", type=int, default=5)
    ap.add_argument("--seg-rows", type=int, default=20_000)
    ap.add_argument("--dir", required=True, help="a scratch folder (emptied)")
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--quantizer-from", default=None,
                    help="take the trained quantizer of this index file (e.g. the 10M build's) instead of a steps=0 one")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    import shutil

    import faiss
    import faiss_flowhash as ffh
    from faiss_flowhash.db.index_store import IndexStore

    faiss.omp_set_num_threads(1)
    shutil.rmtree(args.dir, ignore_errors=True)
    os.makedirs(args.dir)
    rng = np.random.default_rng(0)
    d = 128
    if args.quantizer_from:
        from faiss_flowhash.index.serialize import read_index
        ix = ffh.FlowHashIndex(quantizer=read_index(args.quantizer_from, mmap=True).quantizer, storage="float16")
    else:
        ix = ffh.FlowHashIndex(d, K=16, storage="float16",
                               config=ffh.QuantizerConfig(steps=0, verbose=False, seed=0, threads=1))
        ix.train(rng.standard_normal((20_000, d)).astype(np.float32))
    for i0 in range(0, args.n, 1 << 18):
        m = min(1 << 18, args.n - i0)
        ix.add_with_ids(rng.standard_normal((m, d)).astype(np.float32), np.arange(i0, i0 + m))
    store = IndexStore(args.dir)
    store.write_base(ix)
    nxt = args.n
    for s in range(args.segments):
        y = rng.standard_normal((args.seg_rows, d)).astype(np.float32)
        ids = np.arange(nxt, nxt + args.seg_rows)
        nxt += args.seg_rows
        ix.add_with_ids(y, ids)
        store.append(y, ids, ix)
    del ix
    gc.collect()
    out = dict(n=args.n, segments=args.segments, seg_rows=args.seg_rows, load_start=load(),
               date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), git=_git(),
               command="python -m bench.scale_mmap replay " + " ".join(argv), runs=[])
    orig = ffh.FlowHashIndex.add_with_ids
    results = {}
    if args.profile:
        import cProfile
        import pstats
        pr = cProfile.Profile()
        pr.enable()
        IndexStore(args.dir, readonly=True).load()
        pr.disable()
        pstats.Stats(pr).sort_stats("cumulative").print_stats(25)
    for mode in ("codes", "encode", "codes", "encode"):
        if mode == "encode":
            ffh.FlowHashIndex.add_with_ids = lambda self, x, ids, codes=None: orig(self, x, ids)
        t0 = time.perf_counter()
        got = IndexStore(args.dir, readonly=True).load()
        sec = time.perf_counter() - t0
        ffh.FlowHashIndex.add_with_ids = orig
        q = rng.standard_normal((200, d)).astype(np.float32) if not results else q
        results[mode] = got.search(q, 10)
        results.setdefault("codes_of_" + mode, got._codes.copy())
        out["runs"].append(dict(mode=mode, load_s=sec, ntotal=int(got.ntotal), load=load()))
        log(f"{mode}: open + replay {sec:.2f} s ({got.ntotal:,} vectors)")
        del got
        gc.collect()
    out["identical_results"] = bool(all(np.array_equal(a, b) for a, b in zip(results["codes"], results["encode"])))
    # the segments hold float16 vectors: encoding them again can flip a bit the writer's float32 vector did not
    out["codes_differing"] = int((results["codes_of_codes"] != results["codes_of_encode"]).sum())
    log(f"identical results: {out['identical_results']}, codes differing: {out['codes_differing']}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    shutil.rmtree(args.dir, ignore_errors=True)
    return 0


def main(argv=None):
    argv = sys.argv[1:] if argv is None else argv
    if not argv or argv[0] not in ("build", "convert", "measure", "addcost", "replay"):
        print(__doc__)
        return 2
    if argv[0] == "build":
        return build_main(argv[1:])
    if argv[0] == "addcost":
        return addcost_main(argv[1:])
    if argv[0] == "replay":
        return replay_main(argv[1:])
    if argv[0] == "convert":
        return convert_main(argv[1:])
    return measure_main(argv[1:])


if __name__ == "__main__":
    sys.exit(main())
