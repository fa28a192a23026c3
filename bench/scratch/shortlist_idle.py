"""The 8-bit centroid shortlist (``SearchParams(shortlist=S)``), re-measured on a quiet box as
bench/results/planner.md asked: whole ``FlowHashIndex.search`` of the 2,000 fingerprint queries, 2
threads, best of 5, without and with S = 2 / 4 x nprobe, K = 16.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$PWD python -m bench.scratch.shortlist_idle --data bench/data/fingerprint_ann
"""
import argparse
import os

import faiss
import numpy as np

import faiss_flowhash as ffh
from bench.scratch.fp_setup import best, build, load


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="bench/data/fingerprint_ann")
    ap.add_argument("--reps", type=int, default=5)
    a = ap.parse_args()
    ds = load(a.data)
    idx = build(ds, 16)
    xq = np.ascontiguousarray(ds.q, np.float32)
    n = len(xq)
    flat = faiss.IndexFlatIP(xq.shape[1])
    flat.add(ds.x)
    exact = flat.search(xq, 1)[1][:, 0]
    faiss.omp_set_num_threads(2)
    for props, nprobe in ((1024, 96), (2048, 64), (4096, 48)):
        for sl in (None, 2 * nprobe, 4 * nprobe):
            p = ffh.SearchParams(max_probe_bits=16, max_probes=props, nprobe=nprobe, shortlist=sl)
            I = idx.search(xq, 1, params=p)[1]
            t = 1e6 * best(lambda: idx.search(xq, 1, params=p), a.reps) / n
            print(f"props {props} nprobe {nprobe} shortlist {sl}: {t:.1f} us/query ({1e6 / t:,.0f} q/s), "
                  f"R@1 {np.mean(I[:, 0] == exact):.4f}; load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
