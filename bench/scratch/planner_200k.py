"""Before/after of the fused planner at N = 200k (the lead's /tmp/prof.py setting), one process:
FlowHashIndex(K=16) defaults with planner="fused" vs "reference", and IndexIVFFlat(1024) nprobe 4/8/16.
Batch on 2 threads, single queries on 1 thread (as bench.ann_bench), best of repeats; R@1 vs exact IP.

    OMP_WAIT_POLICY=PASSIVE python -m bench.scratch.planner_200k [--index /tmp/fh200k.idx]
"""
import argparse, json, os, time
import faiss, numpy as np
import faiss_flowhash as ffh
from bench.datasets import make_synthetic


def best(fn, reps=5, min_time=1.0):
    b, t_all, i = float("inf"), time.perf_counter(), 0
    while i < 2 or (i < reps and time.perf_counter() - t_all < min_time):
        t = time.perf_counter(); fn(); b = min(b, time.perf_counter() - t); i += 1
    return b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--index", default="/tmp/fh200k.idx")
    ap.add_argument("--json", default="bench/out/planner_200k.json")
    a = ap.parse_args()
    ds = make_synthetic(200000, 1000, seed=0)
    xb, xq = ds.x, ds.q
    fl = faiss.IndexFlatIP(xb.shape[1]); fl.add(xb); _, gt = fl.search(xq, 1)
    if os.path.exists(a.index):
        idx = ffh.read_index(a.index)
    else:
        idx = ffh.FlowHashIndex(K=16); idx.add(xb); ffh.write_index(idx, a.index)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(xb.shape[1]), xb.shape[1], 1024, faiss.METRIC_INNER_PRODUCT)
    ivf.train(xb[:100000]); ivf.add(xb)
    single = [xq[i:i + 1] for i in range(200)]
    rows = []
    load0 = os.getloadavg()
    cases = [("FlowHash reference planner", dict(planner="reference")), ("FlowHash fused planner", dict(planner="fused")),
             ("FlowHash fused, 14 bits x 4096", dict(planner="fused", max_probe_bits=14, max_probes=4096)),
             ("FlowHash fused, 16 bits x 4096", dict(planner="fused", max_probe_bits=16, max_probes=4096))]
    idx.search(xq[:32], 10); idx.search(xq[:1], 10)
    for name, kw in cases:
        for nprobe in (16, 64, 256):
            sp = ffh.SearchParams(nprobe=nprobe, **kw)
            pc = sp.over(idx.params)
            faiss.omp_set_num_threads(2)
            _, I = idx.search(xq, 10, params=sp)
            ev = idx.last_search_stats.eval_percent
            tb = best(lambda: idx.search(xq, 10, params=sp))
            tplan = best(lambda: idx._plan(xq, pc))
            faiss.omp_set_num_threads(1)
            ts = best(lambda: [idx.search(q, 10, params=sp) for q in single])
            tps = best(lambda: [idx._plan(q, pc) for q in single])
            r = dict(method=name, nprobe=nprobe, r1=float(np.mean(I[:, 0] == gt[:, 0])), eval_pct=ev,
                     qps_batch=len(xq) / tb, qps_single=len(single) / ts, plan_us_batch=1e6 * tplan / len(xq),
                     plan_us_single=1e6 * tps / len(single))
            rows.append(r); print(json.dumps(r), flush=True)
    for nprobe in (4, 8, 16):
        ivf.nprobe = nprobe
        faiss.omp_set_num_threads(2)
        _, I = ivf.search(xq, 10)
        tb = best(lambda: ivf.search(xq, 10))
        faiss.omp_set_num_threads(1)
        ts = best(lambda: [ivf.search(q, 10) for q in single])
        r = dict(method="IVFFlat1024", nprobe=nprobe, r1=float(np.mean(I[:, 0] == gt[:, 0])),
                 eval_pct=100.0 * sum(ivf.invlists.list_size(int(l)) for l in ivf.quantizer.search(xq, nprobe)[1].ravel()) / len(xq) / len(xb),
                 qps_batch=len(xq) / tb, qps_single=len(single) / ts)
        rows.append(r); print(json.dumps(r), flush=True)
    out = dict(rows=rows, load_start=load0, load_end=os.getloadavg(), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()))
    json.dump(out, open(a.json, "w"), indent=1)
    print("load", load0, os.getloadavg())


if __name__ == "__main__":
    main()
