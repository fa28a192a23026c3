"""Persistence at scale: the append-only segment store (faiss_flowhash.index.segments) at 1M..10M vectors
against the simplest alternative, one file rewritten whole at every commit (what the database does today).

    python -m bench.scale_bench segments                         # 10 commits of 1M vectors, d = 128, float16
    python -m bench.scale_bench segments --commits 2 --rows 500000 --dtype float32 --json out.json

Measured, one process: per commit seconds and bytes written; opening the store (manifest + memory
maps) and reading 1,000 random rows; a full scan; compaction after deleting 1 % (and the latency of
random reads by a reader thread while it runs); for the baseline, the bytes a rewrite-per-commit
writes in total and the time to load its one file. The vectors are random unit vectors (the bytes,
not their geometry, are measured). Reads after writing come from the page cache unless
``--drop-caches`` (root) drops it first: then "open" and "random rows" include the disk.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import shutil
import sys
import tempfile
import threading
import time

import numpy as np

from faiss_flowhash.index.segments import SegmentStore


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def _rss_mb() -> float:
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def _drop_caches(enabled: bool) -> None:
    if enabled:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")


def _chunk(rng, n, d, dtype):
    x = rng.standard_normal((n, d), dtype=np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--rows", type=int, default=1_000_000, help="vectors per commit")
    ap.add_argument("--commits", type=int, default=10)
    ap.add_argument("--d", type=int, default=128)
    ap.add_argument("--dtype", default="float16", choices=["float16", "float32"])
    ap.add_argument("--work", default=None, help="folder for the store (default: a temporary one, removed)")
    ap.add_argument("--drop-caches", action="store_true")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    work = args.work or tempfile.mkdtemp(prefix="flowhash-scale-")
    rng = np.random.default_rng(0)
    out = {"command": "python -m bench.scale_bench segments " + " ".join(argv if argv is not None else sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(), "load_before": _load(),
           "rows_per_commit": args.rows, "commits": args.commits, "d": args.d, "dtype": args.dtype}
    try:
        store = SegmentStore(os.path.join(work, "store"), args.d, dtype=args.dtype)
        commit_s = []
        for c in range(args.commits):
            x = _chunk(rng, args.rows, args.d, args.dtype)
            ids = np.arange(c * args.rows, (c + 1) * args.rows, dtype=np.int64)
            codes = rng.integers(0, 1 << 24, args.rows).astype(np.uint64)
            t0 = time.perf_counter()
            store.commit(x, ids, codes)
            commit_s.append(time.perf_counter() - t0)
        n = args.rows * args.commits
        bytes_per_row = args.d * np.dtype(args.dtype).itemsize + 16
        out["commit_s"] = commit_s
        out["appended_bytes_total"] = n * bytes_per_row
        # the baseline rewrites everything committed so far at every commit
        out["rewrite_bytes_total"] = sum((c + 1) * args.rows for c in range(args.commits)) * bytes_per_row
        out["disk_bytes"] = store.snapshot().disk_bytes()

        _drop_caches(args.drop_caches)
        rss0 = _rss_mb()
        t0 = time.perf_counter()
        reader = SegmentStore(os.path.join(work, "store"), readonly=True)
        snap = reader.snapshot()
        out["open_s"] = time.perf_counter() - t0
        out["open_rss_mb"] = _rss_mb() - rss0
        out["ntotal"] = snap.ntotal
        pick = np.sort(rng.choice(n, 1000, replace=False))
        t0 = time.perf_counter()
        for p in pick:
            seg = snap.segments[p // args.rows]
            _ = np.asarray(seg.vectors[p % args.rows], np.float32)
        out["random_1000_rows_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        total = 0.0
        for v, i, c in snap.chunks():
            total += float(v[:, 0].astype(np.float32).sum())
        out["scan_s"] = time.perf_counter() - t0
        out["scan_gb_per_s"] = out["disk_bytes"] / 1e9 / out["scan_s"]

        store.commit(delete=rng.choice(n, n // 100, replace=False))
        lat, stop = [], threading.Event()

        def read_while_compacting():
            r = np.random.default_rng(1)
            while not stop.is_set():
                t = time.perf_counter()
                s = reader.snapshot()
                seg = s.segments[int(r.integers(len(s.segments)))]
                _ = np.asarray(seg.vectors[int(r.integers(len(seg)))], np.float32)
                lat.append(1000 * (time.perf_counter() - t))
                time.sleep(0.005)

        before = []
        for _ in range(200):
            t = time.perf_counter()
            s = reader.snapshot()
            seg = s.segments[int(rng.integers(len(s.segments)))]
            _ = np.asarray(seg.vectors[int(rng.integers(len(seg)))], np.float32)
            before.append(1000 * (time.perf_counter() - t))
        th = threading.Thread(target=read_while_compacting)
        th.start()
        out["compact"] = store.compact()
        stop.set()
        th.join()
        out["read_ms_idle"] = {"p50": float(np.percentile(before, 50)), "p99": float(np.percentile(before, 99))}
        out["read_ms_during_compaction"] = {"n": len(lat), "p50": float(np.percentile(lat, 50)),
                                            "p99": float(np.percentile(lat, 99)), "max": float(np.max(lat))}
        out["disk_bytes_after_compaction"] = store.snapshot().disk_bytes()

        # baseline: one file holding everything, loaded whole (np.load without mmap)
        x_all = np.concatenate([np.asarray(s.vectors) for s in store.snapshot().segments])
        base = os.path.join(work, "one-file.npy")
        t0 = time.perf_counter()
        np.save(base, x_all)
        with open(base, "rb+") as f:
            os.fsync(f.fileno())
        out["one_file_write_s"] = time.perf_counter() - t0
        del x_all
        _drop_caches(args.drop_caches)
        t0 = time.perf_counter()
        y = np.load(base)
        out["one_file_load_s"] = time.perf_counter() - t0
        del y
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    out["load_after"] = _load()
    gb = lambda b: b / 1e9
    print(f"# segment store: {args.commits} commits x {args.rows:,} rows, d={args.d} {args.dtype}, "
          f"load {out['load_before']} -> {out['load_after']}")
    print(f"commit: median {np.median(commit_s):.2f} s ({gb(args.rows * bytes_per_row) / np.median(commit_s):.2f} GB/s), "
          f"{gb(out['appended_bytes_total']):.2f} GB written in all vs {gb(out['rewrite_bytes_total']):.2f} GB "
          f"for a rewrite per commit")
    print(f"open {n:,} vectors: {1000 * out['open_s']:.1f} ms, +{out['open_rss_mb']:.1f} MB RSS; 1,000 random rows "
          f"{1000 * out['random_1000_rows_s']:.1f} ms; full scan {out['scan_s']:.1f} s ({out['scan_gb_per_s']:.2f} GB/s)")
    c = out["compact"]
    print(f"compaction of {c['merged_segments']} segments ({c['rows']:,} rows kept, {c['dropped_rows']:,} dropped): "
          f"{c['seconds']:.1f} s; a reader's snapshot+row p50/p99 {out['read_ms_idle']['p50']:.2f}/"
          f"{out['read_ms_idle']['p99']:.2f} ms idle, {out['read_ms_during_compaction']['p50']:.2f}/"
          f"{out['read_ms_during_compaction']['p99']:.2f} ms during ({out['read_ms_during_compaction']['n']} reads)")
    print(f"one-file baseline: write {out['one_file_write_s']:.1f} s, load {out['one_file_load_s']:.1f} s "
          f"({gb(out['disk_bytes']):.2f} GB on disk)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
