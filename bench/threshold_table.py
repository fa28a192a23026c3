"""Tables of the "no match" threshold from the rows of bench.threshold_seeds / bench.threshold_real.

    python -m bench.threshold_table bench/results/threshold_synthetic_rows.json [--thresholds 0.3 0.35 ...]

Per seed and pooled over seeds: false matches (negatives at or above the threshold, count and rate),
"no match" on unseen audio, hit rate (right track, offset within 50 ms, confidence >= threshold) per
positive kind and overall.
"""

import argparse
import json
import sys

import numpy as np


SHARED = 0.8  # a negative whose source audio correlates this much with the answered reference audio IS it


def table(rows_by_seed: dict, thresholds) -> list[str]:
    """Rows are (kind, right, confidence[, track, offset, correlation]) (bench.threshold_seeds: 3 fields,
    bench.threshold_real: 6; there "shared" negatives, whose audio is the answered reference's, are
    counted apart and left out of the false-match rate)."""
    out = ["| seed | threshold | negatives | false matches | no-match | (answers on shared audio) | hit clean | hit noise10 | "
           "hit reverb+noise5 | hit all |", "|---|---|---|---|---|---|---|---|---|---|"]
    pooled = [r for rows in rows_by_seed.values() for r in rows]
    for seed, rows in [*rows_by_seed.items(), ("all", pooled)]:
        neg = [r for r in rows if r[0].startswith("ood")]
        shared = np.array([len(r) > 5 and r[5] is not None and r[5] >= SHARED for r in neg])
        conf = np.array([r[2] for r in neg])
        true_neg = conf[~shared]
        for th in thresholds:
            fm, sh = int((true_neg >= th).sum()), int((conf[shared] >= th).sum())
            hit = {kind: np.mean([r[1] and r[2] >= th for r in rows if r[0] == kind])
                   for kind in ("clean", "noise10", "reverb+noise5")}
            allh = np.mean([r[1] and r[2] >= th for r in rows if not r[0].startswith("ood")])
            out.append(f"| {seed} | {th:.2f} | {len(true_neg)} | {fm} ({100 * fm / len(true_neg):.2f} %) | "
                       f"{100 * (1 - fm / len(true_neg)):.2f} % | {sh} of {int(shared.sum())} | {100 * hit['clean']:.1f} | "
                       f"{100 * hit['noise10']:.1f} | {100 * hit['reverb+noise5']:.1f} | {100 * allh:.1f} |")
    return out


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.threshold_table")
    p.add_argument("rows")
    p.add_argument("--thresholds", type=float, nargs="+", default=[0.0, 0.30, 0.35, 0.40, 0.45, 0.50])
    p.add_argument("--score", choices=("default", "hits"), default="default",
                   help="default: the rows' confidence (identify's default); hits: the hits-only confidence of "
                        "the same answers (7th field of bench.threshold_real rows, where recorded)")
    args = p.parse_args(argv)
    data = json.load(open(args.rows))
    seeds = {s: (v["rows"] if isinstance(v, dict) else v) for s, v in data["seeds"].items()}
    if args.score == "hits":
        if any(len(r) < 7 for rows in seeds.values() for r in rows):
            raise SystemExit(f"{args.rows}: rows without a hits-only confidence (7th field); rerun bench.threshold_real")
        seeds = {s: [(r[0], r[1], r[6], *r[3:6]) for r in rows] for s, rows in seeds.items()}
    print(f"model {data['model_id']}, {data.get('queries')} snippets per seed")
    print("\n".join(table(seeds, args.thresholds)))
    pooled = [r for rows in seeds.values() for r in rows]
    neg = sorted(((r[2], r[5] if len(r) > 5 else None) for r in pooled if r[0].startswith("ood")),
                 key=lambda t: -t[0])
    print("largest negative confidences (confidence, correlation with the answered audio):",
          [(round(c, 3), None if x is None else round(x, 2)) for c, x in neg[:12]])
    return 0


if __name__ == "__main__":
    sys.exit(main())
