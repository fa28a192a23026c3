"""Issue-3 figures for FlowHashIndex at its defaults (K=16, 3,000 flow steps, r=1.0, r~=1.25) on the
ANN benchmark's 200k synthetic set: training time, bucket balance, recall@1 and % evaluated, QPS.

    python -m bench.flowhash_defaults [--n 200000] [--no-positives]
"""

import argparse
import json
import time

import faiss
import numpy as np

from bench.datasets import exact_top1, make_synthetic

import faiss_flowhash as ffh


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--n", type=int, default=200_000)
    p.add_argument("--nq", type=int, default=1000)
    p.add_argument("--no-positives", action="store_true")
    a = p.parse_args()
    faiss.omp_set_num_threads(2)
    ds = make_synthetic(a.n, a.nq, seed=0)
    top1 = exact_top1(ds)
    index = ffh.FlowHashIndex(ds.x.shape[1], K=16, config=ffh.QuantizerConfig(verbose=False))
    t0 = time.perf_counter()
    report = index.train(ds.x_train, None if a.no_positives else ds.x_pos)
    train_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    index.add(ds.x)
    add_s = time.perf_counter() - t0
    out = dict(n=a.n, train_vectors=len(ds.x_train), positives=not a.no_positives, train_s=round(train_s, 1),
               add_s=round(add_s, 1), steps=report.steps, nll=round(report.nll, 3),
               balance={k: round(v, 3) for k, v in index.balance().items()},
               entries_per_vector=round(index.table_entries / index.ntotal, 2),
               bytes_per_vector=round(index.memory_bytes() / index.ntotal))
    for label, kw in (("default r~=1.25", {}), ("budget 2000, r~=inf", dict(r_query=np.inf, budget=2000, max_probes=512))):
        index.search(ds.q[:10], 1, **kw)  # warm up
        t0 = time.perf_counter()
        _, I = index.search(ds.q, 1, **kw)
        qps = len(ds.q) / (time.perf_counter() - t0)
        s = index.last_search_stats
        out[label] = dict(recall_at_1=round(float((I[:, 0] == top1).mean()), 3),
                          eval_percent=round(s.eval_percent, 3), probes=round(s.buckets_probed, 1), qps=round(qps))
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
