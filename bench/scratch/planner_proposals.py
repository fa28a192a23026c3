"""Proposal-set sweep at 200k (planner helper, 2026-12-02): R@1 vs eval % and planning CPU time for
(max_probe_bits, max_probes) with the fused planner, on the cached default index of /tmp/prof.py's data."""
import json, os, sys, time
import faiss, numpy as np
import faiss_flowhash as ffh
from bench.datasets import make_synthetic

path = sys.argv[1] if len(sys.argv) > 1 else "/tmp/fh200k.idx"
ds = make_synthetic(200000, 1000, seed=0)
idx = ffh.read_index(path) if os.path.exists(path) else None
if idx is None:
    idx = ffh.FlowHashIndex(K=16); idx.add(ds.x); ffh.write_index(idx, path)
fl = faiss.IndexFlatIP(ds.x.shape[1]); fl.add(ds.x); _, gt = fl.search(ds.q, 1)
faiss.omp_set_num_threads(2)
idx.search(ds.q[:32], 1)
out = []
for bits, probes in ((12, 1024), (12, 4096), (14, 4096), (16, 4096), (16, 8192)):
    for nprobe in (16, 64, 128, 256, 512, 1024):
        sp = ffh.SearchParams(max_probe_bits=bits, max_probes=probes, nprobe=nprobe)
        t = time.process_time(); _, I = idx.search(ds.q, 10, params=sp); cpu = time.process_time() - t
        st = idx.last_search_stats
        pc = sp.over(idx.params)
        t = time.process_time(); idx._plan(ds.q, pc); plan = time.process_time() - t
        r = dict(bits=bits, probes=probes, nprobe=nprobe, r1=float(np.mean(I[:, 0] == gt[:, 0])),
                 eval_pct=st.eval_percent, lists=st.lists_scanned, search_cpu_ms=cpu * 1e3, plan_cpu_ms=plan * 1e3)
        out.append(r); print(json.dumps(r), flush=True)
json.dump(out, open("bench/out/planner_proposals_200k.json", "w"), indent=1)
