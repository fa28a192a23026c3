"""Which flip cost orders FlowHash's proposals best? (real fingerprints, the database's index)

The proposals are the ``keep`` cheapest flips of the query's least certain bits, cost = sum over the
flipped bits of |z_k|. With cost = sum |z_k|^p (p = 2: the squared distance from the query to the
flipped half-spaces, summed as a squared distance is) the same budget of proposals may hold the
neighbour more often. Recall only (the scan and the centroid ranking are unchanged):
``fused_plan`` on sign(z) |z|^p.

    OMP_WAIT_POLICY=PASSIVE python -m bench.scratch.flip_power --data bench/data/fingerprint_ann
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
    ap.add_argument("--powers", default="1,1.5,2,3")
    ap.add_argument("--props", default="256,512,1024,2048,4096")
    ap.add_argument("--nprobes", default="64,128,256")
    ap.add_argument("--json", default="bench/out/flip_power.json")
    a = ap.parse_args()
    faiss.omp_set_num_threads(2)
    s = shipped_index(a.data)
    ds, gt, idx, xs, z = s.ds, s.gt, s.index, s.xs, s.z
    x, q = ds.x, ds.q
    cent = idx._cent.centroids()
    tables = idx._map.tables()
    rows = []
    for p in (float(v) for v in a.powers.split(",")):
        zp = (np.sign(z) * np.abs(z) ** p).astype(np.float32)
        for m in (int(v) for v in a.props.split(",")):
            for nprobe in (int(v) for v in a.nprobes.split(",")):
                A, _ = fused_plan(zp, xs, probe_bits=16, keep=m, nprobe=nprobe, tables=tables, centroids=cent,
                                  max_group=idx._map.max_group)
                _, I, sc = idx._engine.search(q, A, 1)
                r = dict(power=p, props=m, nprobe=nprobe, r1=float(np.mean(I[:, 0] == gt[:, 0])),
                         hit1=float(np.mean(I[:, 0] == ds.truth)), eval_pct=100.0 * sc / len(q) / len(x))
                rows.append(r)
                print(json.dumps(r), flush=True)
    json.dump(dict(rows=rows, date=time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()), load=os.getloadavg()),
              open(a.json, "w"), indent=1)


if __name__ == "__main__":
    main()
