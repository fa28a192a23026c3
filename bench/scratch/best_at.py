"""The fastest setting of each build at R@1 >= a floor, from a saved ann_bench / fingerprint_ann JSON,
and FlowHash's best QPS over IndexIVFFlat's best (batch and single query).

    python -m bench.scratch.best_at bench/out/fingerprint_ann_s5.json [--floor 0.95]
"""
import argparse
import json


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("json")
    ap.add_argument("--floor", type=float, default=0.95)
    a = ap.parse_args()
    rows = json.load(open(a.json))["rows"]
    best = {}
    for r in rows:
        if r["r1"] >= a.floor:
            b = r["label"]
            if b not in best or r["qps"] > best[b]["qps"]:
                best[b] = r
    print(f"fastest batch setting per build at R@1 >= {a.floor}:")
    for b, r in sorted(best.items(), key=lambda kv: -kv[1]["qps"]):
        print(f'  {b:44s} {json.dumps(r["search"]):58s} eval {r["eval_pct"]:6.3f} % R@1 {r["r1"]:.4f} '
              f'batch {r["qps"]:9,.0f} single {r["qps_single"]:8,.0f} q/s {r["bytes_per_vec"]:.0f} B/vec')
    ok = [r for r in rows if r["r1"] >= a.floor]
    for mode in ("qps", "qps_single"):
        ivf = max((r[mode] for r in ok if r["family"] == "IVFFlat"), default=0)
        fh = max((r[mode] for r in ok if r["family"] == "FlowHash"), default=0)
        print(f"{mode}: FlowHash best {fh:,.0f} / IndexIVFFlat best {ivf:,.0f} = {fh / ivf:.3f}x" if ivf else mode)


if __name__ == "__main__":
    main()
