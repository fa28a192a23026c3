"""What one probed list costs faiss's scan, by list size and memory footprint (search_preassigned, one
thread, k = 1, random lists, best of 5 over 2,000 queries). Shows why FlowHash's many small lists scan
slower per vector than IVF's few large ones: a list is a separate allocation, and once the data is
out of cache each one costs a few memory latencies before its first vector.

    OMP_WAIT_POLICY=PASSIVE python -m bench.scratch.list_cost
"""
import os
import time

import faiss
import numpy as np

CASES = (  # N, d, nlist, lists probed per query
    (16_000, 8, 16_000, 96), (16_000, 128, 16_000, 96), (100_000, 128, 100_000, 96),
    (100_000, 128, 16_000, 96), (100_000, 128, 16_000, 1), (100_000, 128, 1_000, 8), (100_000, 128, 4_000, 8),
)


def cost(N, d, nlist, P, nq=2000, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, d)).astype(np.float32)
    q = rng.standard_normal((nq, d)).astype(np.float32)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, nlist)
    ivf.is_trained = True
    ids = np.arange(N, dtype=np.int64)
    lists = rng.integers(0, nlist, N).astype(np.int64)
    ivf.add_core(N, faiss.swig_ptr(x), faiss.swig_ptr(ids), faiss.swig_ptr(lists))
    A = rng.integers(0, nlist, (nq, P)).astype(np.int64)
    D, I = np.empty((nq, 1), np.float32), np.empty((nq, 1), np.int64)
    C = np.zeros((nq, P), np.float32)
    params = faiss.SearchParametersIVF(nprobe=P)
    best = float("inf")
    for _ in range(5):
        t = time.perf_counter()
        ivf.search_preassigned_c(nq, faiss.swig_ptr(q), 1, faiss.swig_ptr(A), faiss.swig_ptr(C), faiss.swig_ptr(D),
                                 faiss.swig_ptr(I), False, params, None)
        best = min(best, time.perf_counter() - t)
    return 1e6 * best / nq, P * N / nlist


def main():
    faiss.omp_set_num_threads(1)
    print(f"faiss {faiss.__version__}, 1 thread, load {os.getloadavg()[0]:.1f}")
    print("| N | d | lists | mean list | lists probed | vectors scanned | us/query | ns/vector | us/list |")
    print("|---|---|---|---|---|---|---|---|---|")
    for N, d, nlist, P in CASES:
        us, vec = cost(N, d, nlist, P)
        print(f"| {N:,} | {d} | {nlist:,} | {N / nlist:.1f} | {P} | {vec:.0f} | {us:.1f} | {1e3 * us / vec:.0f} | {us / P:.2f} |",
              flush=True)
    print(f"load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
