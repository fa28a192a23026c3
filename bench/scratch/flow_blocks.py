"""The batch numpy flow on 2,000 rows: one call (OpenBLAS goes multi-threaded on the 64x64 layers and,
on a loaded box, waits for descheduled threads) against row blocks of <= 64 (each matmul under
OpenBLAS's multi-threading threshold, M*N*K <= 262,144), against the numba kernel; one process.

    OMP_WAIT_POLICY=PASSIVE python -m bench.scratch.flow_blocks --data bench/data/fingerprint_ann
"""
import argparse
import json
import os
import time

import numpy as np

import faiss_flowhash as ffh
from bench import datasets
from faiss_flowhash.index import planner
from faiss_flowhash.index.quantizer import _flow_numpy


def best(fn, reps=15):
    """(best, median) wall time of reps calls: the median is what a loaded box gives typically."""
    ts = []
    for _ in range(reps):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return min(ts), float(np.median(ts))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="bench/data/fingerprint_ann")
    ap.add_argument("--rounds", type=int, default=3)
    a = ap.parse_args()
    d = lambda f: os.path.join(a.data, f)
    ds = datasets.load_vectors(d("vectors.npy"), d("queries.npy"), d("truth.npy"), positives=d("positives.npy"))
    qz = ffh.FlowQuantizer(ds.x.shape[1], 14, config=ffh.QuantizerConfig(seed=0, verbose=False))
    qz.train(ds.x_train[:30000], ds.x_pos[:30000])
    y = qz.project(ds.q)
    w = qz._flow_weights()
    kern = planner.jit_kernels()
    packed = qz._packed_flow()
    blocks = lambda B: np.concatenate([_flow_numpy(w, y[i:i + B]) for i in range(0, len(y), B)])
    ref = _flow_numpy(w, y)
    for B in (64, 256):
        print(f"block {B}: max |dz| vs one call {np.abs(blocks(B) - ref).max():.2e}")
    for r in range(a.rounds):
        row = dict(round=r, load=os.getloadavg()[0], rows=len(y), flow_active=qz.flow_active,
                   **{f"{name}_ms_best_median": [round(1e3 * v, 1) for v in best(fn)] for name, fn in (
                       ("one_call", lambda: _flow_numpy(w, y)), ("blocks64", lambda: blocks(64)),
                       ("blocks256", lambda: blocks(256)),
                       ("numba", lambda: kern.flow_forward(np.ascontiguousarray(y, np.float32), *packed[1])))})
        print(json.dumps(row), flush=True)


if __name__ == "__main__":
    main()
