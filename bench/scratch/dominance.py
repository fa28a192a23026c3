"""Issue 10's dominance floor on a saved ann_bench / fingerprint_ann JSON: at every setting of IndexLSH,
MP-LSH and sign-of-PCA, the best R@1 of a FlowHash build (any of its search settings) at no more % evaluated.

    python -m bench.scratch.dominance bench/out/fingerprint_ann_kfromn.json
"""
import json
import sys
from collections import defaultdict


def build_of(label):
    return label.split(" b1")[0].split(" b2")[0]  # the proposal-set suffix " b16x512" is a search setting


def main(path):
    rows = json.load(open(path))["rows"]
    fh = defaultdict(list)
    for r in rows:
        if r["family"] == "FlowHash":
            fh[build_of(r["label"])].append(r)
    base = [r for r in rows if r["family"] in ("IndexLSH", "MP-LSH", "PCA-sign")]
    out = {}
    for b, frows in fh.items():
        lost = []
        for r in base:
            ok = [f["r1"] for f in frows if f["eval_pct"] <= r["eval_pct"] + 1e-9]
            best = max(ok) if ok else None
            if best is None or best < r["r1"]:
                lost.append((r["label"], r["search"], round(r["r1"], 4), round(r["eval_pct"], 3),
                             None if best is None else round(best, 4)))
        out[b] = lost
        print(f"{b}: loses {len(lost)} of {len(base)} baseline settings")
        for l in lost:
            print("   ", l)
    return out


if __name__ == "__main__":
    main(sys.argv[1])
