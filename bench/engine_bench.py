"""FlowHash's scan engine against faiss.IndexIVFFlat, and multi-assignment at equal eval %.

Part "engine" (issue 10 part 2): same data, one process, an equal number of vectors scanned per
query (FlowHash ``budget`` = IVF ``max_codes`` = B, both exact), batch and single-query QPS of
  * IVFFlat: coarse quantizer + list scans (nlist=1024, nprobe=128 capped by max_codes);
  * FlowHash engine only: the probed lists' scan from a precomputed assign matrix, by faiss
    (``engine_*``) and by the numba scan (``jit_*``);
  * FlowHash end to end (``fh_*``, the numba scan): encode + probe order + bucket map + scan, with the
    encode time reported apart;
  * FlowHash end to end with the default centroid probing (1,024 flips of 12 bits, every proposed
    list ranked, the budget stops the scan), planned by the fused numba planner and by the reference
    numpy planner (``centroid_fused_*`` / ``centroid_ref_*``, plan time apart);
and memory per vector (formula and resident-set growth while building).
Part "assign": R@1 vs exact at equal eval % for no copies, a SOAR-style spill of the least certain
fraction to the cheapest flip's bucket, and the paper's radius copies (r = 1.0).

    OMP_WAIT_POLICY=PASSIVE python -m bench.engine_bench --part engine --n 200000,1000000
    OMP_WAIT_POLICY=PASSIVE python -m bench.engine_bench --part assign --n 200000
    OMP_WAIT_POLICY=PASSIVE python -m bench.engine_bench --part lists --n 200000
Part "lists": the engine on IVFFlat's own lists and probe order (equal results, pure engine cost) and
on finer partitions (8192, 65536 lists): what a visited list costs; faiss's scan (``engine_*``) and the
numba scan (``jit_*``: batches grouped by list) on the same lists.
"""

import argparse
import json
import os
import platform
import time

import faiss
import numpy as np

import faiss_flowhash as ffh
from bench.datasets import exact_top1, make_synthetic
from faiss_flowhash.index.codes import probe_codes
from faiss_flowhash.index.engine import IVFEngine


def rss() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def best_time(fn, min_time: float = 0.3, reps: int = 5) -> float:
    """Best wall time of fn() over repeats (at least reps runs or min_time seconds)."""
    best, t_all, i = float("inf"), time.perf_counter(), 0
    while i < reps or time.perf_counter() - t_all < min_time:
        t0 = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t0)
        i += 1
    return best


def train_quantizer(ds, K: int, steps: int):
    q = ffh.FlowQuantizer(ds.x.shape[1], K, config=ffh.QuantizerConfig(steps=steps, verbose=False))
    t0 = time.perf_counter()
    q.train(ds.x_train, ds.x_pos)
    return q, time.perf_counter() - t0


def engine_part(ds, q, budgets, nq_single: int) -> dict:
    n, d = ds.x.shape
    out = {"n": n, "d": d}
    r0 = rss()
    quant = faiss.IndexFlatIP(d)
    ivf = faiss.IndexIVFFlat(quant, d, 1024, faiss.METRIC_INNER_PRODUCT)
    t0 = time.perf_counter()
    ivf.train(ds.x_train[:50_000])
    ivf.add(ds.x)
    out["ivf_build_s"] = time.perf_counter() - t0
    out["ivf_rss_per_vec"] = (rss() - r0) / n
    out["ivf_bytes_per_vec"] = (ivf.ntotal * (4 * d + 8) + ivf.nlist * 160 + 4 * d * ivf.nlist) / n

    res = {}
    for mode in ("none", "spill"):
        r0 = rss()
        t0 = time.perf_counter()
        index = ffh.FlowHashIndex(d, quantizer=q, assign=mode, r_query=float("inf"), max_probe_bits=10)
        index.add(ds.x)
        res[mode] = dict(add_s=time.perf_counter() - t0, rss_per_vec=(rss() - r0) / n,
                         bytes_per_vec=index.memory_bytes() / n, entries_per_vec=index.table_entries / n,
                         n_lists=len(index._map))
        if mode == "none":  # the default is timed; spill is built for its memory only
            fh = index
        else:
            del index
    out["flowhash_build"] = res
    index = fh
    xq = ds.q
    single = xq[:nq_single]
    rows = []
    for B in budgets:
        row = {"budget": B}
        params = faiss.SearchParametersIVF(nprobe=128, max_codes=B)
        faiss.cvar.indexIVF_stats.reset()
        ivf.search(xq, 1, params=params)
        row["ivf_scanned"] = faiss.cvar.indexIVF_stats.ndis / len(xq)
        row["ivf_qps_batch"] = len(xq) / best_time(lambda: ivf.search(xq, 1, params=params))
        row["ivf_qps_single"] = len(single) / best_time(lambda: [ivf.search(single[i:i + 1], 1, params=params)
                                                                 for i in range(len(single))], reps=2)
        sp = ffh.SearchParams(budget=B, planner="fused")  # "fused": numba loaded, so the numba scan
        index.search(xq, 1, params=sp)
        row["fh_scanned"] = index.last_search_stats.candidates
        sizes = index._engine.list_sizes()
        row["fh_mean_bucket"] = float(sizes[sizes > 0].mean())
        row["fh_qps_batch"] = len(xq) / best_time(lambda: index.search(xq, 1, params=sp))
        row["fh_qps_single"] = len(single) / best_time(lambda: [index.search(single[i:i + 1], 1, params=sp)
                                                                for i in range(len(single))], reps=2)
        # pieces: encode, probe order + map, scan
        z = index._encode_queries(xq)
        qi, codes, _ = probe_codes(z, radius=float("inf"), max_bits=10)
        A = index._map.probe_matrix(qi, codes, len(xq))
        eng = index._engine
        row["engine_qps_batch"] = len(xq) / best_time(lambda: eng.search(xq, A, 1, B))
        row["jit_qps_batch"] = len(xq) / best_time(lambda: eng.search(xq, A, 1, B, jit=True))
        row["jit_qps_single"] = len(single) / best_time(lambda: [eng.search(single[i:i + 1], A[i:i + 1], 1, B, jit=True)
                                                                 for i in range(len(single))], reps=2)
        row["probe_ms_batch_per_q"] = 1e3 * best_time(lambda: index._map.probe_matrix(*probe_codes(
            z, radius=float("inf"), max_bits=10)[:2], len(xq)), reps=2) / len(xq)
        row["engine_qps_single"] = len(single) / best_time(lambda: [eng.search(single[i:i + 1], A[i:i + 1], 1, B)
                                                                    for i in range(len(single))], reps=2)
        row["encode_ms_single"] = 1e3 * best_time(lambda: [index._encode_queries(single[i:i + 1])
                                                           for i in range(len(single))], reps=2) / len(single)
        row["encode_ms_batch_per_q"] = 1e3 * best_time(lambda: index._encode_queries(xq)) / len(xq)
        row["probe_ms_single"] = 1e3 * best_time(lambda: [index._map.probe_matrix(*probe_codes(
            z[i:i + 1], radius=float("inf"), max_bits=10)[:2], 1) for i in range(len(single))], reps=2) / len(single)
        # the default probing (hash proposes 1,024 flips of 12 bits, centroids rank) at the same budget,
        # planned by the fused (numba) planner and by the reference (numpy) planner: same lists
        for tag, pl in (("fused", "fused"), ("ref", "reference")):
            spc = ffh.SearchParams(budget=B, nprobe=None, max_probe_bits=12, max_probes=1024, planner=pl)
            pc = spc.over(index.params)
            index.search(xq, 1, params=spc)
            row[f"centroid_{tag}_scanned"] = index.last_search_stats.candidates
            row[f"centroid_{tag}_qps_batch"] = len(xq) / best_time(lambda: index.search(xq, 1, params=spc))
            row[f"centroid_{tag}_qps_single"] = len(single) / best_time(
                lambda: [index.search(single[i:i + 1], 1, params=spc) for i in range(len(single))], reps=2)
            row[f"centroid_{tag}_plan_ms_batch_per_q"] = 1e3 * best_time(lambda: index._plan(xq, pc), reps=2) / len(xq)
            row[f"centroid_{tag}_plan_ms_single"] = 1e3 * best_time(
                lambda: [index._plan(single[i:i + 1], pc) for i in range(len(single))], reps=2) / len(single)
        rows.append(row)
        print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    out["rows"] = rows
    return out


def assign_part(ds, q, fractions) -> dict:
    n, d = ds.x.shape
    top1 = exact_top1(ds)
    modes = [("none", dict(assign="none")), ("spill 0.1", dict(assign="spill", spill=0.1)),
             ("spill 0.2", dict(assign="spill", spill=0.2)), ("spill 0.5", dict(assign="spill", spill=0.5)),
             ("radius r=1.0, <=2 bits", dict(assign="radius", r=1.0, max_assign_bits=2)),
             ("radius r=1.0, <=3 bits", dict(assign="radius", r=1.0, max_assign_bits=3))]
    out = {"n": n, "d": d, "ivf_bytes_per_vec": 4 * d + 8, "modes": []}
    for name, kw in modes:
        index = ffh.FlowHashIndex(d, quantizer=q, r_query=float("inf"), max_probe_bits=12, **kw)
        index.add(ds.x)
        m = {"mode": name, "entries_per_vec": index.table_entries / n, "bytes_per_vec": index.memory_bytes() / n,
             "points": []}
        for f in fractions:
            B = max(1, int(f * n))
            _, I = index.search(ds.q, 1, params=ffh.SearchParams(budget=B))
            m["points"].append({"eval_percent": index.last_search_stats.eval_percent,
                                "recall_at_1": float((I[:, 0] == top1).mean())})
        print(json.dumps(m), flush=True)
        out["modes"].append(m)
        del index
    return out


def lists_part(ds, budgets, nq_single: int) -> dict:
    """The engine on IVFFlat's own lists (same vectors in the same lists, probe order from IVF's coarse
    quantizer) vs IVFFlat itself, then on finer random partitions: the cost of a visited list."""
    n, d = ds.x.shape
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, 1024, faiss.METRIC_INNER_PRODUCT)
    ivf.train(ds.x_train[:50_000])
    ivf.add(ds.x)
    xq, single = ds.q, ds.q[:nq_single]
    nprobe = 128
    _, A = ivf.quantizer.search(xq, nprobe)
    _, lists = ivf.quantizer.search(ds.x, 1)
    rng = np.random.default_rng(0)
    out = {"n": n, "d": d, "rows": []}
    setups = [("IVF's 1024 lists", lists[:, 0], A)]
    for nl in (8192, 65536):
        rl = rng.integers(0, nl, n)
        setups.append((f"{nl} random lists", rl, np.stack([rng.permutation(nl)[:1024] for _ in range(len(xq))])))
    for name, lst, assign in setups:
        eng = IVFEngine(d)
        eng.reserve(int(assign.max()) + 1)
        eng.add(ds.x, np.arange(n, dtype=np.int64), lst)
        for B in budgets:
            params = faiss.SearchParametersIVF(nprobe=nprobe, max_codes=B)
            row = {"lists": name, "budget": B, "mean_list": n / len(np.unique(lst)),
                   "engine_qps_batch": len(xq) / best_time(lambda: eng.search(xq, assign, 1, B)),
                   "engine_qps_single": len(single) / best_time(lambda: [eng.search(single[i:i + 1], assign[i:i + 1], 1, B)
                                                                         for i in range(len(single))], reps=2)}
            eng.search(xq[:40], assign[:40], 1, B, jit=True)  # the numba scan (compiled / loaded once)
            row["jit_qps_batch"] = len(xq) / best_time(lambda: eng.search(xq, assign, 1, B, jit=True))
            row["jit_qps_single"] = len(single) / best_time(lambda: [eng.search(single[i:i + 1], assign[i:i + 1], 1, B, jit=True)
                                                                      for i in range(len(single))], reps=2)
            row["jit_same_results_as_engine"] = float((eng.search(xq, assign, 1, B, jit=True)[1] == eng.search(xq, assign, 1, B)[1]).mean())
            if name.startswith("IVF"):
                Di, Ii = ivf.search(xq, 1, params=params)
                De, Ie, _ = eng.search(xq, assign, 1, B)
                row["same_results_as_ivf"] = float((Ii == Ie).mean())
                row["ivf_qps_batch"] = len(xq) / best_time(lambda: ivf.search(xq, 1, params=params))
                row["ivf_qps_single"] = len(single) / best_time(lambda: [ivf.search(single[i:i + 1], 1, params=params)
                                                                         for i in range(len(single))], reps=2)
                row["ivf_coarse_qps_batch"] = len(xq) / best_time(lambda: ivf.quantizer.search(xq, nprobe))
            out["rows"].append(row)
            print(json.dumps({k: round(v, 3) if isinstance(v, float) else v for k, v in row.items()}), flush=True)
    return out


def main(argv=None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--part", choices=("engine", "assign", "lists"), default="engine")
    p.add_argument("--n", default="200000", help="database sizes, comma separated")
    p.add_argument("--nq", type=int, default=1000)
    p.add_argument("--nq-single", type=int, default=200)
    p.add_argument("--K", type=int, default=16)
    p.add_argument("--steps", type=int, default=500, help="flow steps of the quantizer (speed does not depend on it)")
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    a = p.parse_args(argv)
    faiss.omp_set_num_threads(a.threads)
    import torch

    torch.set_num_threads(a.threads)
    meta = dict(date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), machine=platform.processor() or platform.machine(),
                cpus=os.cpu_count(), threads=a.threads, load_start=os.getloadavg()[0], faiss=faiss.__version__, K=a.K)
    results = []
    for n in [int(v) for v in a.n.split(",")]:
        ds = make_synthetic(n, a.nq, seed=0)
        if a.part == "lists":
            results.append(lists_part(ds, [int(f * n) for f in (0.001, 0.005, 0.02)], a.nq_single))
            continue
        q, train_s = train_quantizer(ds, a.K, a.steps)
        print(f"n={n}: quantizer trained in {train_s:.1f} s", flush=True)
        if a.part == "engine":
            r = engine_part(ds, q, [int(f * n) for f in (0.001, 0.005, 0.02)], a.nq_single)
        else:
            r = assign_part(ds, q, (0.0005, 0.001, 0.002, 0.005, 0.01, 0.02, 0.05))
        r["train_s"] = train_s
        results.append(r)
    meta["load_end"] = os.getloadavg()[0]
    out = dict(meta=meta, part=a.part, results=results)
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)
    print(json.dumps(meta))


if __name__ == "__main__":
    main()
