"""OpenBLAS's spinning threads against the numba planner, on real fingerprints, 2,000 queries, 2 threads.

``FlowHashIndex._plan`` encodes the queries (projection, flow) and then plans them in numba on faiss's
thread count. One (2,000 x 128) @ (128 x 16) projection call is large enough to start OpenBLAS's
threads, which then busy-wait for more work and take a core from the planner that runs right after.
Timed here, interleaved, best of ``--reps``: the plan with the projection in 64-row blocks (the code)
and in one call (the code before session 5); and the encode and the numba plan alone.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$PWD python -m bench.scratch.blas_spin --data bench/data/fingerprint_ann
"""
import argparse
import os

import faiss
import numpy as np

import faiss_flowhash as ffh
from bench.scratch.fp_setup import best, build, load
from faiss_flowhash.index import quantizer as quantizer_mod
from faiss_flowhash.index.params import DEFAULT
from faiss_flowhash.index.planner import fused_plan



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="bench/data/fingerprint_ann")
    ap.add_argument("--reps", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    ds = load(a.data)
    idx = build(ds, 16)
    faiss.omp_set_num_threads(a.threads)
    xq = np.ascontiguousarray(ds.q, np.float32)
    n = len(xq)
    pm = idx._merged_params(ffh.SearchParams(max_probe_bits=16, max_probes=1024, nprobe=96), DEFAULT, DEFAULT, DEFAULT)
    quant = idx.quantizer
    blocked = quant.project
    mean, w, _ = quant._linear()

    def one_call(x):
        return (x - mean) @ w

    xs = idx._scaled(xq)
    z = quant.latent(quant.project(xs))
    tables = idx._map.tables()
    grouped = idx._cent.layout(tables[3])
    plan_only = lambda: fused_plan(z, xs, tables=tables, centroids=grouped, max_group=idx._map.max_group, shortlist=None,
                                   space=None, grouped=grouped, probe_bits=16, keep=1024, nprobe=96)
    idx._plan(xq, pm)
    tb, to, te, tp = [], [], [], []
    for _ in range(a.reps):
        quant.project = blocked
        tb.append(best(lambda: idx._plan(xq, pm), 1))
        quant.project = one_call
        to.append(best(lambda: idx._plan(xq, pm), 1))
        quant.project = blocked
        te.append(best(lambda: quant.latent(quant.project(idx._scaled(xq))), 1))
        tp.append(best(plan_only, 1))
    quant.project = blocked
    us = lambda t: 1e6 * min(t) / n
    print(f"{n} queries, {a.threads} threads, FLOW_BLOCK_ROWS {quantizer_mod.FLOW_BLOCK_ROWS}: us/query, best of {a.reps}: "
          f"encode + plan with the projection in blocks {us(tb):.1f}, in one call {us(to):.1f}; encode alone {us(te):.1f}, "
          f"numba plan alone {us(tp):.1f}; load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
