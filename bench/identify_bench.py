"""Hits -> answer, before and after the one identification path (faiss_flowhash.db.identify).

Same corpus, same queries, same index hits (top-5 per segment, as the database searches) for every
row; only the step from hits to an answer differs:

- "eval before": what the evaluation did (vote_offsets' top candidate; no refinement, no confidence);
- "db before": what FingerprintDB did (vote, per-candidate confidence, parabola refinement fetched
  with one ``reconstruct`` per window);
- "identify": the one path now (vote, repeats as alternates, track-decision confidence, refinement
  from one batch of reference windows); the database, calibration and evaluation all call it.

Corpus: synthetic music tracks, half of them with a repeated section (A B A C: a chorus that comes
back), fingerprinted with the shipped model into a FlowHashIndex with its quantizer. Queries:
faiss_flowhash.eval.make_queries, 3 s, the paper's 15 conditions (noise 0-20 dB, reverb 0.2-0.8 s,
both). A hit: right track and start within 50 ms of the true start or of an exact repeat of it
(faiss_flowhash.eval.exact_repeats, waveform correlation >= 0.95); "@0.35": and confidence >= 0.35.

    OMP_WAIT_POLICY=PASSIVE python -m bench.identify_bench --tracks 12 --per-cell 20
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

from faiss_flowhash import eval as ev
from faiss_flowhash.db.consensus import match_confidence, refine_offset, vote_offsets
from faiss_flowhash.db.identify import ReferenceWindows, identify

SR, HOP, TH = 16000, 0.1, 0.35


def corpus(n_tracks: int, track_s: float, seed: int) -> list[np.ndarray]:
    from faiss_flowhash.audio import synth

    out = []
    for i in range(n_tracks):
        if i % 2:  # A B A C: the first quarter comes back after the second
            q = track_s / 4
            a, b, c = (synth.synthetic_music(q * m, seed=seed + 10 * i + j) for j, m in ((0, 1), (1, 1), (2, 2)))
            x = np.concatenate([a, b, a, c])
        else:
            x = synth.synthetic_music(track_s, seed=seed + 10 * i)
        out.append(np.clip(x, -1, 1).astype(np.float32))
    return out


def eval_before(tr, times, D, seg_t, **_):
    c = vote_offsets(tr, times, D, seg_t)
    return (c[0].track_id, max(0.0, c[0].offset_s), 1.0, []) if c else (-1, 0.0, 0.0, [])


def db_before(tr, times, D, seg_t, *, query, per_track, **_):
    c = vote_offsets(tr, times, D, seg_t)
    if not c:
        return -1, 0.0, 0.0, []
    conf = match_confidence(c[0], c[1] if len(c) > 1 else None)
    ref = per_track[c[0].track_id]
    lo = max(0, int(round(c[0].offset_s / HOP)) - 1)
    hi = min(len(ref), int(round(c[0].offset_s / HOP)) + len(query) + 1)
    rows = np.stack([ref[f] for f in range(lo, hi)]) if hi > lo else None  # one window at a time, as before
    off = refine_offset(query, rows, c[0].offset_s, hop_s=HOP, first_frame=lo) if rows is not None else c[0].offset_s
    return c[0].track_id, max(0.0, off), conf, []


def new_path(tr, times, D, seg_t, *, query, reference, **_):
    m = identify(tr, times, D, seg_t, query=query, reference=reference, hop_s=HOP)
    return (m[0].track_id, m[0].offset_s, m[0].confidence, [a.offset_s for a in m[0].alternates]) if m else (-1, 0.0, 0.0, [])


def main(argv=None) -> int:
    import torch

    from faiss_flowhash import FlowHashIndex
    from faiss_flowhash.audio import Fingerprinter

    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--tracks", type=int, default=12)
    p.add_argument("--track-s", type=float, default=40.0)
    p.add_argument("--per-cell", type=int, default=20, help="queries per condition (15 conditions)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", default=None)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    t0 = time.perf_counter()
    fp = Fingerprinter.load()
    waves = corpus(args.tracks, args.track_s, 70_000 + args.seed)
    per_track = [fp.fingerprint(w) for w in waves]
    index = FlowHashIndex(fp.dim, quantizer=fp.quantizer)
    counts = [len(e) for e in per_track]
    index.add_with_ids(np.concatenate(per_track), np.arange(sum(counts)))
    locate = ev.locate_from_counts(counts)
    reference = ReferenceWindows.from_tracks(per_track)
    queries = ev.make_queries([len(w) for w in waves], lengths_s=(3.0,), n_per_cell=args.per_cell, seed=args.seed)
    print(f"corpus in {time.perf_counter() - t0:.0f} s", flush=True)
    ways = {"eval before": eval_before, "db before": db_before, "identify": new_path}
    rows, ms = [], {k: 0.0 for k in ways}
    for i in range(len(queries)):
        t, s, L = int(queries.track[i]), int(queries.start[i]), int(queries.length[i])
        x = ev.render_query(waves[t], queries, i)
        e = fp.fingerprint(x)
        D, I = index.search(e, 5)
        tr, fr = locate(I)
        tr = np.where(I >= 0, tr, -1)
        times, seg_t = np.where(fr >= 0, fr, 0) * HOP, np.arange(len(e)) * HOP
        reps = ev.exact_repeats(waves[t], s, L)
        row = {"condition": queries.conditions[int(queries.cond[i])].label, "repeats": len(reps)}
        for name, f in ways.items():
            t1 = time.perf_counter()
            track, off, conf, alts = f(tr, times, D, seg_t, query=e, per_track=per_track, reference=reference)
            ms[name] += 1000 * (time.perf_counter() - t1)
            hit = bool(ev.is_hit(track, off, t, s / SR, repeats=reps))
            row[name] = {"hit": hit, "hit_strict": bool(ev.is_hit(track, off, t, s / SR)), "conf": conf,
                         "track_right": track == t,
                         "true_offered": track == t and any(abs(o - s / SR) <= 0.05 for o in [off, *alts])}
        rows.append(row)
    n = len(rows)
    groups = {"noise": lambda c: c.startswith("noise "), "reverb": lambda c: c.startswith("reverb"),
              "noise+reverb": lambda c: c.startswith("noise+reverb"), "all": lambda c: True}
    summary = {"n_queries": n, "with_exact_repeats": sum(r["repeats"] > 0 for r in rows), "ways": {}}
    for name in ways:
        s = {}
        for g, sel in groups.items():
            rr = [r[name] for r in rows if sel(r["condition"])]
            s[g] = {"hit": 100 * np.mean([r["hit"] for r in rr]),
                    "hit@0.35": 100 * np.mean([r["hit"] and r["conf"] >= TH for r in rr]),
                    "hit_strict": 100 * np.mean([r["hit_strict"] for r in rr]),
                    "track": 100 * np.mean([r["track_right"] for r in rr])}
        rep = [r[name] for r in rows if r["repeats"]]
        s["on_repeats"] = {"hit": 100 * np.mean([r["hit"] for r in rep]) if rep else None,
                           "hit_strict": 100 * np.mean([r["hit_strict"] for r in rep]) if rep else None,
                           "true_start_offered": 100 * np.mean([r["true_offered"] for r in rep]) if rep else None,
                           "hit@0.35": 100 * np.mean([r["hit"] and r["conf"] >= TH for r in rep]) if rep else None}
        s["ms_per_query"] = ms[name] / n
        summary["ways"][name] = s
    print(json.dumps(summary, indent=1, default=float))
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"args": vars(args), "summary": summary}, f, indent=1, default=float)
    print(f"total {time.perf_counter() - t0:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
