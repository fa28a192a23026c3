"""K=None (chosen from the training set) against K=16 on the ANN benchmark's synthetic set, index defaults
otherwise, one process: does the rule hold off fingerprints, and when the database is larger than the
training sample (N = 200k, 100k training vectors: the rule sees 100k and picks K = 14)?

    OMP_WAIT_POLICY=PASSIVE python -m bench.scratch.k_from_n_synth --n 200000
"""
import argparse
import json
import os
import time

import faiss
import numpy as np

import faiss_flowhash as ffh
from bench.datasets import exact_top1, make_synthetic
from bench.scratch.k_from_n import best


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200_000)
    ap.add_argument("--nq", type=int, default=1000)
    ap.add_argument("--n-train", type=int, default=None, help="default: min(N, 100k), as bench.ann_bench")
    ap.add_argument("--json", default="bench/out/k_from_n_synth.json")
    a = ap.parse_args()
    faiss.omp_set_num_threads(2)
    ds = make_synthetic(a.n, a.nq, n_train=a.n_train, seed=0)
    top1 = exact_top1(ds)
    rows = []
    for K in (None, 16):
        idx = ffh.FlowHashIndex(ds.x.shape[1], K=K, config=ffh.QuantizerConfig(seed=0, verbose=False))
        idx.verbose = False
        t = time.perf_counter()
        idx.train(ds.x_train, ds.x_pos)
        train_s = time.perf_counter() - t
        idx.add(ds.x)
        idx.search(ds.q[:300], 1)
        for props in (1024, 4096):
            for nprobe in (16, 32, 64, 128, 256, 512):
                sp = ffh.SearchParams(nprobe=nprobe, max_probes=props, max_probe_bits=16 if props > 1024 else 12)
                _, I = idx.search(ds.q, 1, params=sp)
                ev = idx.last_search_stats.eval_percent
                tb = best(lambda: idx.search(ds.q, 1, params=sp))
                r = dict(K=idx.K, auto=K is None, n_train=len(ds.x_train), train_s=train_s, props=props, nprobe=nprobe,
                         r1=float(np.mean(I[:, 0] == top1)), eval_pct=ev, qps=len(ds.q) / tb,
                         bytes_per_vec=idx.memory_bytes() / len(ds.x), load=os.getloadavg()[0])
                rows.append(r)
                print(json.dumps(r), flush=True)
    json.dump(dict(rows=rows, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())), open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
