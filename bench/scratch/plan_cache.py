"""What the numba plan's time is made of, on real fingerprints (K = 16, 1 thread, best of ``--reps``):
the same query planned 2,000 times (its centroid rows and its flip branches stay hot) against the
2,000 different queries (cold), the cheapest flips alone both ways, and the queries planned in the
order of their bucket code (neighbouring queries share rows) against as given.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$PWD python -m bench.scratch.plan_cache --data bench/data/fingerprint_ann
"""
import argparse
import os

import faiss
import numpy as np

from bench.scratch.fp_setup import best, build, load, plan_inputs
from bench.scratch.plan_profile import flips_only
from faiss_flowhash.index import _jit
from faiss_flowhash.index.planner import _NO_SPACE


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="bench/data/fingerprint_ann")
    ap.add_argument("--settings", default="512:128,1024:96")
    ap.add_argument("--reps", type=int, default=7)
    a = ap.parse_args()
    faiss.omp_set_num_threads(1)
    ds = load(a.data)
    idx = build(ds, 16)
    xs, z, (dense, keys, offsets, lists), cent = plan_inputs(idx, ds)
    n = len(xs)
    qz = np.zeros((n, 1), np.float32)
    cred, cres = _NO_SPACE
    hot_z, hot_x = np.ascontiguousarray(np.repeat(z[:1], n, 0)), np.ascontiguousarray(np.repeat(xs[:1], n, 0))
    codes = ((z > 0).astype(np.uint64) << np.arange(z.shape[1], dtype=np.uint64)).sum(1)
    order = np.argsort(codes, kind="stable")
    by_code = np.ascontiguousarray(z[order]), np.ascontiguousarray(xs[order])
    us = lambda t: 1e6 * t / n
    print(f"K={idx.K} lists={len(lists)} centroid table {cent.nbytes / 1e6:.1f} MB; {len(np.unique(codes))} distinct "
          f"bucket codes among {n} queries; load {os.getloadavg()[0]:.1f}", flush=True)
    for setting in a.settings.split(","):
        keep, P = (int(v) for v in setting.split(":"))

        def plan(Z, X):
            out = np.full((n, P), -1, np.int64)
            _jit.plan_serial(Z, X, idx.K, keep, P, dense, keys, offsets, lists, cent, qz, cred, cres, 0, out)
            return out

        plan(z, xs), flips_only(z, idx.K, keep)
        cold, hot, srt = best(lambda: plan(z, xs), a.reps), best(lambda: plan(hot_z, hot_x), a.reps), best(lambda: plan(*by_code), a.reps)
        fc, fh = best(lambda: flips_only(z, idx.K, keep), a.reps), best(lambda: flips_only(hot_z, idx.K, keep), a.reps)
        same = np.array_equal(plan(*by_code), plan(z, xs)[order])
        print(f"props {keep} nprobe {P}: us/query plan cold {us(cold):.1f}, hot {us(hot):.1f}; flips alone cold "
              f"{us(fc):.1f}, hot {us(fh):.1f}; so ranking + selection cold {us(cold - fc):.1f}, hot {us(hot - fh):.1f}; "
              f"planned in code order {us(srt):.1f} (same plans {same}); load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
