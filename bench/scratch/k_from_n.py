"""K chosen from N on real fingerprints (issue 10's first stage): FlowHash at K = 10 / 11 / 12 (buckets of
~100 / 50 / 25 vectors at N = 101k, like IVF lists) against the K = 16 default and IndexIVFFlat, one
process, same data, same queries. Each K's quantizer is trained here on the database's training split
(``bench.datasets.load_vectors``: 100k database rows + their train-split positives; the queries are
separate renders under eval-split distortions), with its training time reported as build time.

Probing swept per K: centroid ranking with few proposals (``max_probes``) x ``nprobe``; flip-cost order
(``probe="flip"``, r~ = inf, the ``max_probes`` cheapest buckets, no centroid ranking). Also the batch
flow (numpy vs the numba kernel) on 1,000 rows, timed in this run.

    OMP_WAIT_POLICY=PASSIVE python -m bench.scratch.k_from_n --data bench/data/fingerprint_ann \\
        --json bench/out/k_from_n.json
"""
import argparse
import json
import os
import time

import faiss
import numpy as np

import faiss_flowhash as ffh
from bench import datasets


def best(fn, min_time=0.4, reps=5):
    b, t_all, i = float("inf"), time.perf_counter(), 0
    while i < 1 or (i < reps and time.perf_counter() - t_all < min_time):
        t = time.perf_counter()
        fn()
        b = min(b, time.perf_counter() - t)
        i += 1
    return b


def single_qps(fn, q, n=200):
    faiss.omp_set_num_threads(1)
    try:
        dt = best(lambda: [fn(q[i:i + 1]) for i in range(n)], min_time=0.3, reps=3)
    finally:
        faiss.omp_set_num_threads(2)
    return n / dt


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="bench/data/fingerprint_ann")
    ap.add_argument("--json", default="bench/out/k_from_n.json")
    ap.add_argument("--Ks", default="10,11,12,16")
    ap.add_argument("--props", default="32,64,128,256,1024")
    ap.add_argument("--nprobes", default="2,4,8,16,32,64")
    ap.add_argument("--flip", default="4,8,16,32,64,128,256")
    ap.add_argument("--nlists", default="1024,4096")
    a = ap.parse_args()
    faiss.omp_set_num_threads(2)
    d = lambda f: os.path.join(a.data, f)
    ds = datasets.load_vectors(d("vectors.npy"), d("queries.npy"), d("truth.npy"), positives=d("positives.npy"))
    x, q, truth = ds.x, ds.q, ds.truth
    n = len(x)
    fl = faiss.IndexFlatIP(x.shape[1])
    fl.add(x)
    _, gt = fl.search(q, 1)
    rows = []

    def rec(r):
        r["load"] = os.getloadavg()[0]
        rows.append(r)
        print(json.dumps(r), flush=True)
        json.dump(dict(rows=rows, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())), open(a.json, "w"), indent=1)

    for nl in (int(v) for v in a.nlists.split(",") if v):
        t = time.perf_counter()
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(x.shape[1]), x.shape[1], nl, faiss.METRIC_INNER_PRODUCT)
        ivf.train(x)
        ivf.add(x)
        build = time.perf_counter() - t
        for nprobe in (1, 2, 4, 8, 16, 32):
            ivf.nprobe = nprobe
            faiss.cvar.indexIVF_stats.reset()
            _, I = ivf.search(q, 1)
            nd = faiss.cvar.indexIVF_stats.ndis
            tb = best(lambda: ivf.search(q, 1))
            rec(dict(method=f"IVFFlat{nl}", setting=f"nprobe={nprobe}", r1=float(np.mean(I[:, 0] == gt[:, 0])),
                     hit1=float(np.mean(I[:, 0] == truth)), eval_pct=100.0 * nd / len(q) / n, qps=len(q) / tb,
                     qps1=single_qps(lambda qq: ivf.search(qq, 1), q), build_s=build))
        del ivf

    for K in (int(v) for v in a.Ks.split(",")):
        t = time.perf_counter()
        idx = ffh.FlowHashIndex(x.shape[1], K=K, config=ffh.QuantizerConfig(seed=0, verbose=False))
        idx.verbose = False
        rep = idx.train(ds.x_train, x_pos=ds.x_pos)
        train_s = time.perf_counter() - t
        t = time.perf_counter()
        idx.add(x)
        add_s = time.perf_counter() - t
        sizes = np.asarray(idx.bucket_sizes())
        info = dict(K=K, train_s=train_s, add_s=add_s, flow=bool(idx.quantizer.flow_active),
                    lists=int(idx._map.n_lists), buckets=int((sizes > 0).sum()), mean_bucket=float(sizes[sizes > 0].mean()),
                    max_bucket=int(sizes.max()), cap=idx.cap(), bytes_per_vec=idx.memory_bytes() / n)
        print("built", json.dumps(info), flush=True)
        idx.search(q[:300], 1)  # loads numba (fused planner)

        def run(label, sp):
            _, I = idx.search(q, 1, params=sp)
            st = idx.last_search_stats
            tb = best(lambda: idx.search(q, 1, params=sp))
            rec(dict(method=f"FlowHash K{K}", setting=label, r1=float(np.mean(I[:, 0] == gt[:, 0])),
                     hit1=float(np.mean(I[:, 0] == truth)), eval_pct=st.eval_percent, lists=st.lists_scanned,
                     qps=len(q) / tb, qps1=single_qps(lambda qq: idx.search(qq, 1, params=sp), q),
                     build_s=train_s + add_s, **{f"b_{k}": v for k, v in info.items()}))

        for m in (int(v) for v in a.props.split(",")):
            if m > (1 << K):
                continue
            for nprobe in (int(v) for v in a.nprobes.split(",")):
                run(f"centroid b{K} props{m} nprobe{nprobe}",
                    ffh.SearchParams(max_probe_bits=min(K, 20), max_probes=m, nprobe=nprobe))
        for m in (int(v) for v in a.flip.split(",") if v):
            run(f"flip props{m}", ffh.SearchParams(probe="flip", r_query=float("inf"), max_probe_bits=min(K, 20),
                                                   max_probes=m, budget=None))
        # batch flow: numpy vs numba kernel on 1,000 rows (only meaningful when the flow is kept)
        qz = idx.quantizer
        if qz.flow_active:
            from faiss_flowhash.index.quantizer import _flow_numpy
            y = qz.project(q[:1000])
            packed = qz._packed_flow()
            if packed is not None:
                t_np = best(lambda: _flow_numpy(qz._flow_weights(), y), min_time=1.0, reps=10)
                t_nb = best(lambda: packed[0].flow_forward(np.ascontiguousarray(y, np.float32), *packed[1]),
                            min_time=1.0, reps=10)
                rec(dict(method=f"flow K{K}", setting="1000 rows", numpy_ms=1e3 * t_np, numba_ms=1e3 * t_nb))
        del idx


if __name__ == "__main__":
    main()
