"""FlowHash probing: by radius (paper: every flip of the bits with |z_k| < r~) against by flip cost
under a candidate budget (the cheapest flips over the 12 least certain bits, r~ = inf), on the ANN
benchmark's synthetic data, for a trained and an untrained (preconditioner only) quantizer.

    python -m bench.probe_order [--n 200000] [--json out.json]
"""

import argparse
import json
import platform
import time
from pathlib import Path

import faiss
import numpy as np

from bench.datasets import exact_top1, make_synthetic

import faiss_flowhash as ffh

VARIANTS = {
    # name: (QuantizerConfig fields, train with positives)
    "PCA + quantile map, flow untrained": (dict(steps=0, projection="pca"), False),
    "triplet projection + flow 1000 steps (NLL+BCE)": (dict(steps=1000), True),
}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--nq", type=int, default=1000)
    p.add_argument("--json", default=None)
    a = p.parse_args()
    faiss.omp_set_num_threads(1)
    ds = make_synthetic(a.n, a.nq, seed=0)
    top1 = exact_top1(ds)
    rows = []
    for name, (cfg, pos) in VARIANTS.items():
        for r in (0.0, 0.5, 1.0):
            index = ffh.FlowHashIndex(ds.x.shape[1], K=16, assign="radius", r=r, max_probe_bits=12,
                                      config=ffh.QuantizerConfig(verbose=False, **cfg))
            t0 = time.perf_counter()
            index.train(ds.x_train, ds.x_pos if pos else None)
            train_s = time.perf_counter() - t0
            index.add(ds.x)
            settings = [("radius", dict(r_query=rq)) for rq in (1.0, 1.25, 1.5, 2.0)]
            settings += [("budget", dict(r_query=np.inf, budget=b)) for b in (300, 1000, 2000, 4000, 8000)]
            for mode, kw in settings:
                t0 = time.perf_counter()
                _, I = index.search(ds.q, 1, **kw)
                qps = len(ds.q) / (time.perf_counter() - t0)
                s = index.last_search_stats
                row = dict(quantizer=name, r=r, mode=mode, **{k: (None if v == np.inf else v) for k, v in kw.items()},
                           recall_at_1=float((I[:, 0] == top1).mean()), eval_percent=s.eval_percent,
                           probes=s.buckets_probed, qps=qps, train_s=train_s, bytes_per_vec=index.memory_bytes() / index.ntotal)
                rows.append(row)
                print(f"{name[:40]:40s} r={r:<4} {mode:6s} {str(kw.get('r_query') if mode == 'radius' else kw['budget']):>6s}"
                      f"  R@1 {row['recall_at_1']:.3f}  eval {row['eval_percent']:.3f}%  probes {row['probes']:7.1f}"
                      f"  QPS {qps:6.0f}", flush=True)
    if a.json:
        Path(a.json).write_text(json.dumps(dict(rows=rows, n=a.n, nq=a.nq, machine=platform.processor() or platform.machine(),
                                                date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())), indent=1))


if __name__ == "__main__":
    main()
