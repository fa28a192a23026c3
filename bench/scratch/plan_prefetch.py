"""The numba plan with the next query's centroid rows prefetched while the current query is ranked
(an LLVM prefetch per cache line), against the index's kernel, on real fingerprints, K = 16, 1 thread.
Same plans, checked.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$PWD python -m bench.scratch.plan_prefetch --data bench/data/fingerprint_ann
"""
import argparse
import os

import faiss
import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

from bench.scratch.fp_setup import best, build, load, plan_inputs
from bench.scratch.plan_batch import _select
from faiss_flowhash.index import _jit
from faiss_flowhash.index.planner import _NO_SPACE


@intrinsic
def _prefetch(typingctx, addr):
    """llvm.prefetch(addr, read, locality 3, data cache)."""
    sig = types.void(types.int64)

    def codegen(context, builder, signature, args):
        i8p = ir.IntType(8).as_pointer()
        fnty = ir.FunctionType(ir.VoidType(), [i8p, ir.IntType(32), ir.IntType(32), ir.IntType(32)])
        fn = builder.module.declare_intrinsic("llvm.prefetch", [i8p], fnty)
        ptr = builder.inttoptr(args[0], i8p)
        builder.call(fn, [ptr, ir.Constant(ir.IntType(32), 0), ir.Constant(ir.IntType(32), 3),
                          ir.Constant(ir.IntType(32), 1)])
        return context.get_dummy_value()

    return sig, codegen


@njit(cache=True, nogil=True)
def _lookups(z, b, keep, dense, offsets, grp):
    K = z.shape[0]
    base = np.uint64(0)
    for k in range(K):
        if z[k] > 0:
            base |= np.uint64(1) << np.uint64(k)
    flips, _ = _jit.cheapest_flips(z, b, keep)
    m = flips.shape[0]
    total = 0
    for e in range(m):
        g = np.int64(dense[np.int64(base ^ flips[e])])
        grp[e] = g
        if g >= 0:
            total += offsets[g + 1] - offsets[g]
    return m, total


@njit(cache=True, nogil=True)
def plan_prefetch(Z, Q, b, keep, nprobe, dense, offsets, lists, cent, cent_addr, prefetch, out, select=True):
    n = Z.shape[0]
    m0 = min(keep, 1 << min(b, Z.shape[1]))
    row = cent.shape[1] * 2
    ga = np.empty(m0, np.int64)
    gb = np.empty(m0, np.int64)
    ma, ta = _lookups(Z[0], b, keep, dense, offsets, ga)
    for i in range(n):
        if i + 1 < n:
            mb, tb = _lookups(Z[i + 1], b, keep, dense, offsets, gb)
            if prefetch:
                for e in range(mb):
                    g = gb[e]
                    if g >= 0:
                        for t in range(offsets[g], offsets[g + 1]):
                            a = cent_addr + t * row
                            for off in range(0, row, 64):
                                _prefetch(a + off)
        dist = np.empty(ta, np.float32)
        lid = np.empty(ta, np.int64)
        cnt = 0
        for e in range(ma):
            g = ga[e]
            if g < 0:
                continue
            for t in range(offsets[g], offsets[g + 1]):
                dist[cnt] = _jit.bf16_l2(Q[i], cent[t])
                lid[cnt] = t
                cnt += 1
        if select:
            _select(dist, lid, cnt, nprobe, lists, out[i])
        ga, gb = gb, ga
        ma, ta = (mb, tb) if i + 1 < n else (ma, ta)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="bench/data/fingerprint_ann")
    ap.add_argument("--settings", default="512:128,1024:96,4096:48")
    ap.add_argument("--reps", type=int, default=7)
    a = ap.parse_args()
    faiss.omp_set_num_threads(1)
    ds = load(a.data)
    idx = build(ds, 16)
    xs, z, (dense, keys, offsets, lists), cent = plan_inputs(idx, ds)
    n = len(xs)
    qz = np.zeros((n, 1), np.float32)
    cred, cres = _NO_SPACE
    addr = cent.ctypes.data
    for setting in a.settings.split(","):
        keep, P = (int(v) for v in setting.split(":"))

        def index_plan():
            out = np.full((n, P), -1, np.int64)
            _jit.plan_serial(z, xs, idx.K, keep, P, dense, keys, offsets, lists, cent, qz, cred, cres, 0, out)
            return out

        def pf_plan(pf, select=True, Z=z, X=xs):
            out = np.full((n, P), -1, np.int64)
            plan_prefetch(Z, X, idx.K, keep, P, dense, offsets, lists, cent, addr, pf, out, select)
            return out

        same = np.array_equal(index_plan(), pf_plan(True)) and np.array_equal(index_plan(), pf_plan(False))
        t0, t1, t2 = [], [], []
        for _ in range(a.reps):
            t0.append(best(index_plan, 1))
            t1.append(best(lambda: pf_plan(False), 1))
            t2.append(best(lambda: pf_plan(True), 1))
        us = lambda t: 1e6 * min(t) / n
        hz, hx = np.ascontiguousarray(np.repeat(z[:1], n, 0)), np.ascontiguousarray(np.repeat(xs[:1], n, 0))
        pf_plan(False, False)
        ns_cold = best(lambda: pf_plan(False, False), a.reps)
        ns_hot = best(lambda: pf_plan(False, False, hz, hx), a.reps)
        s_hot = best(lambda: pf_plan(False, True, hz, hx), a.reps)
        print(f"props {keep} nprobe {P}: us/query, index kernel {us(t0):.1f}, two-phase without prefetch {us(t1):.1f}, "
              f"with the next query's rows prefetched {us(t2):.1f}; same plans {same}; without the selection (kth + sort): "
              f"cold {us([ns_cold]):.1f}, hot {us([ns_hot]):.1f} (with it, hot {us([s_hot]):.1f}); load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
