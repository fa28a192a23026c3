"""Verification statistics for the "no match" decision (issue 11), per snippet of the real-music
calibration protocol (:mod:`bench.threshold_real`): a study, it changes no default.

Same hits as bench.threshold_real (per seed: 30 corpus tracks indexed, the others never). Each snippet is
answered by :func:`faiss_flowhash.db.identify.identify` (top 2, so the runner-up track's offset is known),
and for the winner's (track, refined offset) the query's segments are compared with the reference windows
at that alignment (``reference.take``) and at shifted alignments of the same track, and with the
runner-up's. Rows: kind, right, the current confidence, n_seg, support, the aligned similarities per
segment, the mean aligned similarity at each shift, the runner-up's aligned mean, the top-1 and top-k hit
scores' means. Offline analysis: :mod:`bench.nomatch_fit`.

    OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1 nice -n 10 python -m bench.nomatch_features \
        --corpus /work/data/corpus_thr/corpus --seeds 0 1 2 --queries 1000 --out bench/results/nomatch_features.json
"""

import argparse
import gzip
import json
import sys
import time
from pathlib import Path

import numpy as np

#: shifts (frames of 100 ms) of the winner's alignment that sample the query's background in the same track
SHIFTS = (-40, -30, -20, -15, -10, -5, 5, 10, 15, 20, 30, 40)


def aligned(query, reference, track: int, offset_s: float, hop_s: float, shifts=(0,)) -> np.ndarray:
    """(len(shifts), n) similarity of query segment i with window round(offset / hop) + shift + i of
    ``track``; NaN where the track has no such window."""
    q = np.asarray(query, np.float32)
    n = len(q)
    b = int(round(offset_s / hop_s))
    f = np.concatenate([b + s + np.arange(n) for s in shifts])
    w = np.asarray(reference.take(np.full(len(f), track), f), np.float32).reshape(len(shifts), n, -1)
    return np.einsum("snd,nd->sn", w, q)


def features(h, hop_s: float) -> dict:
    from faiss_flowhash.db.identify import identify

    found = identify(h["tracks"], h["times"], h["scores"], h["segment_times"], query=h["query"],
                     reference=h["references"], hop_s=hop_s, top=2)
    n = len(h["query"])
    sc = np.asarray(h["scores"], np.float64)
    row = {"kind": h["kind"], "n_seg": n, "top1": float(sc[:, 0].mean()), "topk": float(sc[:, -1].mean()),
           "s1": [round(float(x), 4) for x in sc[:, 0]]}
    if not found:
        return {**row, "right": False, "conf": 0.0}
    m = found[0]
    row.update(right=bool(m.track_id == h["track"] and abs(m.offset_s - h["offset_s"]) <= 0.05),
               conf=float(m.confidence), support=int(m.support), score=float(m.score))
    # per segment: the best hit away from the winner's alignment (another track, or the same track more than
    # `radius` from the aligned window): an impostor score; the k-th hit's score where all k hits are there
    tr, tm = np.asarray(h["tracks"]), np.asarray(h["times"], np.float64)
    at = m.offset_s + np.asarray(h["segment_times"], np.float64)[:, None]
    for radius in (0.3, 1.0):
        away = (tr != m.track_id) | (np.abs(tm - at) > radius)
        imp = np.where(away.any(1), np.where(away, sc, -np.inf).max(1), sc[:, -1])
        row[f"imp{radius:g}"] = [round(float(x), 4) for x in imp]
    other = tr != m.track_id  # the best hit of another track: a per-segment ratio test of the track decision
    row["imp_track"] = [round(float(x), 4) for x in np.where(other.any(1), np.where(other, sc, -np.inf).max(1), sc[:, -1])]
    row["hit_same"] = (~other).astype(int).tolist()
    row["hit_dt"] = np.round(np.abs(tm - at), 2).tolist()
    row["hit_sc"] = np.round(sc, 4).tolist()
    S = aligned(h["query"], h["references"], m.track_id, m.offset_s, hop_s, (0,) + SHIFTS)
    row["a"] = [None if not np.isfinite(x) else round(float(x), 4) for x in S[0]]
    with np.errstate(all="ignore"):
        row["shift_mean"] = [None if not np.isfinite(x) else round(float(x), 4)
                             for x in np.where(np.isfinite(S[1:]).mean(1) >= 0.5, np.nanmean(S[1:], 1), np.nan)]
    if len(found) > 1:
        r = found[1]
        R = aligned(h["query"], h["references"], r.track_id, r.offset_s, hop_s)[0]
        row["runner_mean"] = float(np.nanmean(R)) if np.isfinite(R).any() else None
    return row


def main(argv=None) -> int:
    from faiss_flowhash.audio import Fingerprinter
    from faiss_flowhash.audio.io import load_audio

    from .threshold_real import real_hits

    p = argparse.ArgumentParser(prog="python -m bench.nomatch_features")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--refs", type=int, default=30)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    fp = Fingerprinter.load()
    files = json.loads((args.corpus / "manifest.json").read_text())["files"]
    waves = [load_audio(args.corpus / f["file"], sample_rate=16000)[: 240 * 16000] for f in files]
    out = {"model_id": fp.model_id, "queries": args.queries, "shifts": list(SHIFTS), "seeds": {}}
    for seed in args.seeds:
        t0 = time.time()
        hits = real_hits(fp, waves, seed=seed, n_refs=args.refs, n_queries=args.queries)[0]
        out["seeds"][str(seed)] = [features(h, fp.hop_s) for h in hits]
        print(json.dumps({"seed": seed, "seconds": round(time.time() - t0, 1)}), flush=True)
        with (gzip.open if str(args.out).endswith(".gz") else open)(args.out, "wt") as f:  # .json.gz: gzipped
            json.dump(out, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
