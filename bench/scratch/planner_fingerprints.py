"""Real fingerprints (the Table 1 corpus, N = 101k, shipped model b29303c01d7572b7, its own quantizer):
FlowHash R@1 vs exact / hit@1 vs truth / eval % / batch QPS for proposal sets (max_probe_bits x max_probes)
with the fused planner, and IndexIVFFlat in the same process (lead's broadcast 01:43).

    OMP_WAIT_POLICY=PASSIVE python -m bench.scratch.planner_fingerprints --data /tmp/fpann
"""
import argparse, json, os, time
import faiss, numpy as np
import faiss_flowhash as ffh


def best(fn, reps=3, min_time=0.5):
    b, t_all, i = float("inf"), time.perf_counter(), 0
    while i < 1 or (i < reps and time.perf_counter() - t_all < min_time):
        t = time.perf_counter(); fn(); b = min(b, time.perf_counter() - t); i += 1
    return b


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="/tmp/fpann")
    ap.add_argument("--json", default="bench/out/planner_fingerprints.json")
    a = ap.parse_args()
    from faiss_flowhash.audio import Fingerprinter
    x = np.load(os.path.join(a.data, "vectors.npy")).astype(np.float32)
    q = np.load(os.path.join(a.data, "queries.npy")).astype(np.float32)
    truth = np.load(os.path.join(a.data, "truth.npy"))
    faiss.omp_set_num_threads(2)
    fl = faiss.IndexFlatIP(x.shape[1]); fl.add(x); _, gt = fl.search(q, 1)
    fp = Fingerprinter.load(None)
    idx = ffh.FlowHashIndex(x.shape[1], quantizer=fp.quantizer)
    idx.verbose = False
    t = time.perf_counter(); idx.add(x); add_s = time.perf_counter() - t
    print("built", add_s, "flow active", fp.quantizer.flow_active, "K", idx.K, flush=True)
    rows = []
    idx.search(q[:32], 1)
    for bits, probes in ((12, 1024), (16, 1024), (16, 4096), (16, 8192)):
        for nprobe in (16, 64, 128, 256, 512):
            sp = ffh.SearchParams(max_probe_bits=bits, max_probes=probes, nprobe=nprobe)
            _, I = idx.search(q, 1, params=sp)
            ev = idx.last_search_stats.eval_percent
            tb = best(lambda: idx.search(q, 1, params=sp))
            r = dict(method=f"FlowHash shipped b{bits}x{probes}", nprobe=nprobe, r1=float(np.mean(I[:, 0] == gt[:, 0])),
                     hit1=float(np.mean(I[:, 0] == truth)), eval_pct=ev, qps_batch=len(q) / tb)
            rows.append(r); print(json.dumps(r), flush=True)
    for nl in (1024,):
        ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(x.shape[1]), x.shape[1], nl, faiss.METRIC_INNER_PRODUCT)
        ivf.train(x); ivf.add(x)
        for nprobe in (4, 8, 16, 32, 64):
            ivf.nprobe = nprobe
            st = faiss.IndexIVFStats()
            faiss.cvar.indexIVF_stats.reset(); _, I = ivf.search(q, 1); nd = faiss.cvar.indexIVF_stats.ndis
            tb = best(lambda: ivf.search(q, 1))
            r = dict(method=f"IVFFlat{nl}", nprobe=nprobe, r1=float(np.mean(I[:, 0] == gt[:, 0])),
                     hit1=float(np.mean(I[:, 0] == truth)), eval_pct=100.0 * nd / len(q) / len(x), qps_batch=len(q) / tb)
            rows.append(r); print(json.dumps(r), flush=True)
    json.dump(dict(rows=rows, load=os.getloadavg(), date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())),
              open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
