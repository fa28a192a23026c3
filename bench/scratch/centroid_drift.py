"""How far a list's bfloat16 running mean drifts from its exact mean when the list is fed one vector per
add call, with the index's refresh (recompute at every doubling of the count from 64 on) and without.

    python -m bench.scratch.centroid_drift
"""
import time

import numpy as np

import faiss_flowhash as ffh
import faiss_flowhash.index.flowhash_index as fhi


def run(refresh_min, n=2000, d=32, seed=0):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((2, d)) * 2
    data = lambda m: (c[rng.integers(0, 2, m)] + 0.3 * rng.standard_normal((m, d))).astype(np.float32)
    fhi._REFRESH_MIN = refresh_min
    idx = ffh.FlowHashIndex(d, K=2, bucket_cap=10**9, config=ffh.QuantizerConfig(steps=0, verbose=False))
    idx.verbose = False
    idx.train(data(2000))
    x = data(n)
    t = time.perf_counter()
    for i in range(len(x)):
        idx.add(x[i:i + 1])
    per_add = (time.perf_counter() - t) / len(x)
    errs = []
    for l in np.flatnonzero(idx._engine.list_sizes()):
        _, v = idx._engine.list_entries(int(l))
        exact = v.astype(np.float64).mean(0)
        errs.append(np.linalg.norm(idx._cent.means[l] - exact) / np.linalg.norm(exact))
    sizes = sorted(idx._engine.list_sizes()[idx._engine.list_sizes() > 0].tolist())
    return max(errs), sizes, per_add


def main():
    default = fhi._REFRESH_MIN
    for label, r in (("refresh at 64, 128, ...", default), ("no refresh", 10**12)):
        err, sizes, per_add = run(r)
        print(f"{label}: largest relative error of a list mean after 2,000 single adds {err:.4f} "
              f"(list sizes {sizes}; {1e3 * per_add:.2f} ms per add)")
    fhi._REFRESH_MIN = default


if __name__ == "__main__":
    main()
