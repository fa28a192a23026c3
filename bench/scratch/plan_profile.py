"""Where the fused planner's time goes on real fingerprints, and bfloat16 centroid rows against the
float32 rows of the kernel before them (loaded from git at ``--baseline-rev``), in one process.

Stages, one thread, best of ``--reps`` over the 2,000 queries: the cheapest flips alone, + the bucket
lookups, the whole plan (+ ranking every proposed list's centroid, selection); the encode; IVF4096's
coarse search (a flat 4096 x d GEMM) for scale. Then the whole plan with bfloat16 rows (this tree) and
float32 rows (the baseline kernel, fed exact float32 means recomputed from the lists), their R@1 against
exact search through the same engine, and how often the two name the same list set.

    OMP_WAIT_POLICY=PASSIVE python -m bench.scratch.plan_profile --data bench/data/fingerprint_ann
"""
import argparse
import importlib.util
import os
import subprocess
import sys
import tempfile

import faiss
import numpy as np
from numba import njit

import faiss_flowhash as ffh
from bench import datasets
from bench.scratch.fp_setup import best
from faiss_flowhash.index import _jit, planner


@njit(nogil=True)
def flips_only(Z, b, m):
    tot = 0
    for i in range(Z.shape[0]):
        f, _ = _jit.cheapest_flips(Z[i], b, m)
        tot += f.shape[0]
    return tot


@njit(nogil=True)
def flips_lookup(Z, b, m, dense, offsets):
    tot = 0
    for i in range(Z.shape[0]):
        base = np.uint64(0)
        for k in range(Z.shape[1]):
            if Z[i, k] > 0:
                base |= np.uint64(1) << np.uint64(k)
        f, _ = _jit.cheapest_flips(Z[i], b, m)
        for e in range(f.shape[0]):
            g = dense[np.int64(base ^ f[e])]
            if g >= 0:
                tot += offsets[g + 1] - offsets[g]
    return tot



def baseline_kernels(rev):
    """The _jit module of commit ``rev`` (float32 centroid rows), imported from a temporary file."""
    src = subprocess.run(["git", "show", f"{rev}:faiss_flowhash/index/_jit.py"], check=True, capture_output=True,
                         text=True).stdout
    path = os.path.join(tempfile.mkdtemp(), "_jit_baseline.py")
    with open(path, "w") as f:
        f.write(src)
    spec = importlib.util.spec_from_file_location("_jit_baseline", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["_jit_baseline"] = mod
    spec.loader.exec_module(mod)
    return mod


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="bench/data/fingerprint_ann")
    ap.add_argument("--props", default="512,1024")
    ap.add_argument("--nprobes", default="64,96,256")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--baseline-rev", default="c173e3b", help="commit whose kernel ranks float32 rows")
    a = ap.parse_args()
    faiss.omp_set_num_threads(1)
    d = lambda f: os.path.join(a.data, f)
    ds = datasets.load_vectors(d("vectors.npy"), d("queries.npy"), d("truth.npy"), positives=d("positives.npy"))
    idx = ffh.FlowHashIndex(ds.x.shape[1], config=ffh.QuantizerConfig(seed=0, verbose=False))
    idx.verbose = False
    idx.train(ds.x_train, x_pos=ds.x_pos)
    idx.add(ds.x)
    xs = idx._scaled(ds.q)
    n = len(xs)
    z = np.ascontiguousarray(idx.quantizer.latent(idx.quantizer.project(xs)), np.float32)
    tables = idx._map.tables()
    dense, keys, offsets, lists = tables
    rows = idx._cent.layout(lists)
    exact32 = np.zeros((len(lists), ds.x.shape[1]), np.float32)  # exact float32 means, in the same layout
    for t, l in enumerate(lists.tolist()):
        _, v = idx._engine.list_entries(int(l))
        if len(v):
            exact32[t] = v.mean(0)
    flat = faiss.IndexFlatL2(ds.x.shape[1])
    flat.add(ds.x)
    exact = flat.search(xs, 1)[1][:, 0]
    old = baseline_kernels(a.baseline_rev)
    print(f"K={idx.K} lists={idx._map.n_lists} N={idx.ntotal} centroid bytes/vector: bf16 "
          f"{rows.nbytes / idx.ntotal:.1f}, float32 {exact32.nbytes / idx.ntotal:.1f}; load {os.getloadavg()[0]:.1f}",
          flush=True)
    enc = best(lambda: idx.quantizer.latent(idx.quantizer.project(xs)), a.reps)
    qz = np.zeros((n, 1), np.float32)
    cred, cres = planner._NO_SPACE
    for m in [int(v) for v in a.props.split(",")]:
        b = idx.K
        flips_only(z[:2], b, m), flips_lookup(z[:2], b, m, dense, offsets)
        t1 = best(lambda: flips_only(z, b, m), a.reps)
        t2 = best(lambda: flips_lookup(z, b, m, dense, offsets), a.reps)
        ranked = flips_lookup(z, b, m, dense, offsets) / n
        for nprobe in [int(v) for v in a.nprobes.split(",")]:
            P = nprobe

            def plan(kern, cent):
                out = np.full((n, P), -1, np.int64)
                kern.plan_serial(z, xs, b, m, P, dense, keys, offsets, lists, cent, qz, cred, cres, 0, out)
                return out

            plan(_jit, rows[:]), plan(old, exact32)
            t_bf, t_32 = [], []
            for _ in range(a.reps):  # interleaved, so load changes hit both
                t_bf.append(best(lambda: plan(_jit, rows), 1))
                t_32.append(best(lambda: plan(old, exact32), 1))
            A_bf, A_32 = plan(_jit, rows), plan(old, exact32)
            same = float(np.mean([set(u[u >= 0]) == set(v[v >= 0]) for u, v in zip(A_bf, A_32)]))
            r1 = {}
            for name, A in (("bf16", A_bf), ("f32", A_32)):
                _, I, _ = idx._engine.search(xs, A, 1, max_codes=0)
                r1[name] = float(np.mean(I[:, 0] == exact))
            print(f"props {m} nprobe {nprobe}: us/query (1 thread) flips {1e6 * t1 / n:.1f}, +lookups {1e6 * t2 / n:.1f}, "
                  f"whole plan bf16 {1e6 * min(t_bf) / n:.1f} / float32 {1e6 * min(t_32) / n:.1f} "
                  f"(lists ranked per query {ranked:.0f}); same list sets {same:.3f}; R@1 bf16 {r1['bf16']:.4f} "
                  f"float32 {r1['f32']:.4f}; encode {1e6 * enc / n:.1f}; load {os.getloadavg()[0]:.1f}", flush=True)
    cq = faiss.IndexFlatL2(ds.x.shape[1])
    cq.add(np.random.default_rng(0).standard_normal((4096, ds.x.shape[1])).astype(np.float32))
    t = best(lambda: cq.search(xs, 8), a.reps)
    print(f"IVF4096 coarse (flat L2 4096 x d, k=8): {1e6 * t / n:.1f} us/query; load {os.getloadavg()[0]:.1f}")


if __name__ == "__main__":
    main()
