"""Can a cheap coarse score cut FlowHash's proposals before the exact centroid ranking? (real fingerprints)

The database's index (shipped flow, K = 16, 16 flip bits x ``--props`` proposals) proposes thousands of
lists per query and ranks them all by the exact 128-d centroid distance. Here every proposed list is
first scored in the quantizer's K-dim projection (y = (x - mean) W, the list centroid projected: 4K bytes
per list instead of 4d), the ``S`` best by that score get the exact distance, the ``nprobe`` nearest are
scanned. Recall only (what the scan finds); the cost model is bytes read per query.

    OMP_WAIT_POLICY=PASSIVE python -m bench.scratch.coarse_score --data bench/data/fingerprint_ann
"""
import argparse
import json
import os
import time

import faiss
import numpy as np

from bench.scratch.shipped_fp import shipped_index
from faiss_flowhash.index.planner import fused_plan


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="bench/data/fingerprint_ann")
    ap.add_argument("--props", default="1024,2048,4096")
    ap.add_argument("--shorts", default="128,256,512,1024")
    ap.add_argument("--nprobes", default="64,128,256")
    ap.add_argument("--json", default="bench/out/coarse_score.json")
    a = ap.parse_args()
    faiss.omp_set_num_threads(2)
    s = shipped_index(a.data)
    ds, gt, idx, xs, z = s.ds, s.gt, s.index, s.xs, s.z
    x, q, qz = ds.x, ds.q, idx.quantizer
    cent = idx._cent.centroids()
    yc = qz.project(cent)  # the projection is affine: the projected mean = the mean of the projections
    yq = qz.project(xs)
    tables = idx._map.tables()
    rows = []
    for m in (int(v) for v in a.props.split(",")):
        A, _ = fused_plan(z, xs, probe_bits=16, keep=m, nprobe=None, tables=tables, centroids=cent,
                          max_group=idx._map.max_group)  # every proposed list, nearest centroid first
        valid = A >= 0
        n_prop = valid.sum(1)
        Ac = np.where(valid, A, 0)
        coarse = np.empty(A.shape, np.float32)
        for i in range(0, len(A), 100):  # (100, P, K) at a time: memory
            coarse[i:i + 100] = ((yq[i:i + 100, None, :] - yc[Ac[i:i + 100]]) ** 2).sum(-1)
        coarse[~valid] = np.inf
        rank_c = np.argsort(coarse, axis=1, kind="stable")
        for nprobe in (int(v) for v in a.nprobes.split(",")):
            def scan(assign):
                _, I, sc = idx._engine.search(q, assign, 1)
                return float(np.mean(I[:, 0] == gt[:, 0])), 100.0 * sc / len(q) / len(x)
            r1, ev = scan(np.ascontiguousarray(A[:, :nprobe]))
            r = dict(props=m, nprobe=nprobe, short=None, r1=r1, eval_pct=ev, proposed_lists=float(n_prop.mean()))
            rows.append(r)
            print(json.dumps(r), flush=True)
            for S in (int(v) for v in a.shorts.split(",")):
                if S < nprobe:
                    continue
                # the S best by the coarse score, in exact order (A's column = exact rank): keep nprobe
                pick = np.sort(rank_c[:, :S], axis=1)  # column indices into A = exact rank order
                sel = np.take_along_axis(A, pick, axis=1)[:, :nprobe]
                sel = np.where(np.take_along_axis(valid, pick, axis=1)[:, :nprobe], sel, -1)
                r1, ev = scan(np.ascontiguousarray(sel))
                r = dict(props=m, nprobe=nprobe, short=S, r1=r1, eval_pct=ev)
                rows.append(r)
                print(json.dumps(r), flush=True)
    json.dump(dict(rows=rows, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), load=os.getloadavg()),
              open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
