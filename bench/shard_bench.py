"""Ray shard scaling: one FlowHashIndex against ShardedFlowHashIndex with 1, 2 and 4 shards on the same
vectors and the same trained quantizer: build (add) time, batch and single-query search time, memory
per shard, recall@1 against exact search and agreement with the single index's top-1 (identical
answers need ``probe="flip"``; the default centroid ranking picks ``nprobe`` lists per shard).

    python -m bench.shard_bench                              # N = 200k synthetic d = 128, K = 16
    python -m bench.shard_bench --n 500000 --shards 1 2 4 --json out.json

One process drives a local Ray (``--ray-cpus``, default all cores); shards reserve 1 / max(shards)
of those CPUs each so all of them run, and use one faiss / torch thread each. The single index runs
in this process with the same thread count as the Ray CPUs. On a 2-core machine 4 shards cannot run
in parallel: that row measures the fan-out overhead, not a speed-up.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import sys
import time

import faiss
import numpy as np
import torch

from bench.datasets import make_synthetic
from faiss_flowhash.distributed import ShardedFlowHashIndex
from faiss_flowhash.index import FlowHashIndex, QuantizerConfig


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def timed(fn, *a, **kw):
    t0 = time.perf_counter()
    out = fn(*a, **kw)
    return out, time.perf_counter() - t0


def measure(index, q: np.ndarray, k: int, n_single: int, batch_size: int) -> dict:
    index.search(q[:8], k)  # warm-up
    (D, I), batch_s = timed(lambda: _batched(index, q, k, batch_size))
    lat = []
    for i in range(n_single):
        _, s = timed(index.search, q[i : i + 1], k)
        lat.append(1000 * s)
    return {"D": D, "I": I, "batch_qps": len(q) / batch_s, "p50_ms": float(np.percentile(lat, 50)),
            "p99_ms": float(np.percentile(lat, 99)), "eval_percent": float(index.last_search_stats.eval_percent)}


def _batched(index, q, k, batch_size):
    outs = [index.search(q[i : i + batch_size], k) for i in range(0, len(q), batch_size)]
    return np.concatenate([o[0] for o in outs]), np.concatenate([o[1] for o in outs])


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--nq", type=int, default=2000)
    ap.add_argument("--K", type=int, default=16)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--shards", type=int, nargs="+", default=[1, 2, 4])
    ap.add_argument("--ray-cpus", type=int, default=os.cpu_count())
    ap.add_argument("--add-batch", type=int, default=50_000)
    ap.add_argument("--search-batch", type=int, default=1000)
    ap.add_argument("--single-queries", type=int, default=200)
    ap.add_argument("--train-steps", type=int, default=300)
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)

    out = {"command": "python -m bench.shard_bench " + " ".join(argv if argv is not None else sys.argv[1:]),
           "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), "cpus": os.cpu_count(),
           "load_before": _load(), "n": args.n, "K": args.K, "k": args.k}
    ds = make_synthetic(args.n, args.nq, n_train=min(args.n, 100_000), seed=0)
    torch.set_num_threads(args.ray_cpus)
    faiss.omp_set_num_threads(args.ray_cpus)
    # a short training: the quantizer's quality is not what this bench measures, the shards' overhead is
    trainer = FlowHashIndex(ds.x.shape[1], K=args.K, config=QuantizerConfig(steps=args.train_steps, verbose=False))
    _, out["train_s"] = timed(trainer.train, ds.x_train, ds.x_pos)
    single = FlowHashIndex(ds.x.shape[1], quantizer=trainer.quantizer)  # as the shards get it

    def build(index):
        for i in range(0, len(ds.x), args.add_batch):
            index.add(ds.x[i : i + args.add_batch])

    _, add_s = timed(build, single)
    exact = faiss.IndexFlatIP(ds.x.shape[1])
    exact.add(ds.x)
    truth = exact.search(ds.q, 1)[1][:, 0]
    m = measure(single, ds.q, args.k, args.single_queries, args.search_batch)
    ref = (m.pop("D"), m.pop("I"))
    rows = [{"index": "FlowHashIndex (one process)", "shards": 0, "add_s": add_s, **m,
             "memory_bytes": single.memory_bytes(), "same_top1": 1.0,
             "recall1": float(np.mean(ref[1][:, 0] == truth))}]
    import ray

    ray.init(num_cpus=args.ray_cpus, include_dashboard=False, log_to_driver=False,
             runtime_env={"env_vars": {"PYTHONPATH": os.environ.get("PYTHONPATH", ""), "OMP_NUM_THREADS": "1",
                                       "OMP_WAIT_POLICY": "PASSIVE"}})
    try:
        for s in args.shards:
            t0 = time.perf_counter()
            sharded = ShardedFlowHashIndex(ds.x.shape[1], s, quantizer=single.quantizer,
                                           cpus_per_shard=args.ray_cpus / max(args.shards)).start()
            start_s = time.perf_counter() - t0
            _, add_s = timed(build, sharded)
            m = measure(sharded, ds.q, args.k, args.single_queries, args.search_batch)
            D, I = m.pop("D"), m.pop("I")
            info = sharded.shard_info()
            rows.append({"index": f"ShardedFlowHashIndex ({s} Ray actor{'s' if s > 1 else ''})", "shards": s,
                         "start_s": start_s, "add_s": add_s, **m, "memory_bytes": sum(i["memory_bytes"] for i in info),
                         "shard_sizes": [i["ntotal"] for i in info],
                         "same_top1": float(np.mean(I[:, 0] == ref[1][:, 0])), "recall1": float(np.mean(I[:, 0] == truth))})
            sharded.close()
    finally:
        ray.shutdown()
    out["rows"] = rows
    out["load_after"] = _load()
    print(f"# shard bench: N={args.n} d={ds.x.shape[1]} K={args.K} k={args.k}, {len(ds.q)} queries, "
          f"ray cpus {args.ray_cpus}, load {out['load_before']} -> {out['load_after']}, train {out['train_s']:.0f} s")
    print("| index | actor start s | add s | batch QPS | 1-query p50 ms | p99 ms | eval % | R@1 vs exact | "
          "top-1 = single | MiB | shard sizes |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(f"| {r['index']} | {r.get('start_s', 0):.1f} | {r['add_s']:.1f} | {r['batch_qps']:.0f} | {r['p50_ms']:.2f} | "
              f"{r['p99_ms']:.2f} | {r['eval_percent']:.3f} | {r['recall1']:.3f} | {r['same_top1']:.3f} | "
              f"{r['memory_bytes'] / 2**20:.0f} | {r.get('shard_sizes', '')} |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
