"""The engine's numba scan (``jit=True``: batches grouped by list, single queries row by row) against
faiss's ``search_preassigned`` on the same assign matrices, real fingerprints, one process.

For each setting the plan is made once; then, interleaved, best of ``--reps``: the scan alone through
faiss and through the numba kernels (a batch of all queries, 1 and 2 threads, and ``--single`` queries
one at a time), and ``FlowHashIndex.search`` as a user calls it (which now scans with numba). Checks
that both scans return the same ids (up to exact ties) and the same R@1.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$PWD python -m bench.scratch.scan_jit --data bench/data/fingerprint_ann
"""
import argparse
import os
import time

import faiss
import numpy as np

import faiss_flowhash as ffh
from bench.scratch.fp_setup import best, build, load
from faiss_flowhash.index.params import DEFAULT



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="bench/data/fingerprint_ann")
    ap.add_argument("--K", default="16", help="code bits, or 'auto' (K from N)")
    ap.add_argument("--settings", default="1024:96,512:128,4096:48", help="max_probes:nprobe, comma separated")
    ap.add_argument("--k", default="1,10")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--single", type=int, default=300, help="queries timed one at a time")
    a = ap.parse_args()
    ds = load(a.data)
    K = None if a.K == "auto" else int(a.K)
    idx = build(ds, K)
    eng = idx._engine
    xq = np.ascontiguousarray(ds.q, np.float32)
    n = len(xq)
    flat = faiss.IndexFlatIP(ds.x.shape[1]) if eng.metric == faiss.METRIC_INNER_PRODUCT else faiss.IndexFlatL2(ds.x.shape[1])
    flat.add(ds.x)
    exact = flat.search(xq, 1)[1][:, 0]
    t0 = time.perf_counter()
    eng._addr = None
    eng._addresses()
    print(f"K={idx.K} N={idx.ntotal} lists={eng.nlist} mean list {idx.ntotal / max((eng.list_sizes() > 0).sum(), 1):.1f}; "
          f"address table of every list: {time.perf_counter() - t0:.3f} s; load {os.getloadavg()[0]:.1f}", flush=True)
    ns = min(a.single, n)
    for setting in a.settings.split(","):
        props, nprobe = (int(v) for v in setting.split(":"))
        p = ffh.SearchParams(max_probe_bits=idx.K, max_probes=props, nprobe=nprobe)
        pm = idx._merged_params(p, DEFAULT, DEFAULT, DEFAULT)
        A, _ = idx._plan(xq, pm)
        A = np.ascontiguousarray(A)
        for k in (int(v) for v in a.k.split(",")):
            eng.search(xq[:40], A[:40], k, jit=True)
            Df, If, sf = eng.search(xq, A, k)
            Dj, Ij, sj = eng.search(xq, A, k, jit=True)
            same = float(np.mean(If == Ij))
            ties = float(np.mean(np.isclose(Df, Dj, rtol=1e-5, atol=1e-5)))
            r1f, r1j = float(np.mean(If[:, 0] == exact)), float(np.mean(Ij[:, 0] == exact))
            row = {}
            for threads in (1, 2):
                faiss.omp_set_num_threads(threads)
                tf, tj = [], []
                for _ in range(a.reps):
                    tf.append(best(lambda: eng.search(xq, A, k), 1))
                    tj.append(best(lambda: eng.search(xq, A, k, jit=True), 1))
                row[threads] = (1e6 * min(tf) / n, 1e6 * min(tj) / n)
            faiss.omp_set_num_threads(1)
            sf1 = best(lambda: [eng.search(xq[i:i + 1], A[i:i + 1], k) for i in range(ns)], a.reps) / ns * 1e6
            sj1 = best(lambda: [eng.search(xq[i:i + 1], A[i:i + 1], k, jit=True) for i in range(ns)], a.reps) / ns * 1e6
            faiss.omp_set_num_threads(2)
            whole = best(lambda: idx.search(xq, k, params=p), a.reps) / n * 1e6
            whole1 = best(lambda: [idx.search(xq[i:i + 1], k, params=p) for i in range(ns)], a.reps) / ns * 1e6
            print(f"props {props} nprobe {nprobe} k {k}: scanned/q {sf / n:.0f} (jit {sj / n:.0f}); us/query, faiss / jit: "
                  f"batch 1 thread {row[1][0]:.1f} / {row[1][1]:.1f} ({row[1][0] / row[1][1]:.1f}x), "
                  f"2 threads {row[2][0]:.1f} / {row[2][1]:.1f} ({row[2][0] / row[2][1]:.1f}x), "
                  f"single {sf1:.1f} / {sj1:.1f} ({sf1 / sj1:.1f}x); FlowHashIndex.search batch {whole:.1f} "
                  f"({1e6 / whole:,.0f} q/s), single {whole1:.1f} ({1e6 / whole1:,.0f} q/s); same ids {same:.4f}, "
                  f"same scores {ties:.4f}; R@1 faiss {r1f:.4f} jit {r1j:.4f}; load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
