"""False spans of ``query --all`` on real music (issue 11, part 3): the span tracker with the verified
confidence (segments' fingerprints + reference windows, threshold 0.70) against the hits-only tracker (0.35).

The files of a real-music corpus (``python -m bench.audio_corpus``; 16 kHz FLAC + manifest.json) are shuffled
(``--seed``); the first ``--refs`` (cut to ``--max-track-s``) are fingerprinted into the database's index
(:func:`~faiss_flowhash.db.index_settings.new_db_index`, top-5 hits per segment as the database searches), the
others are never indexed. Two long recordings, each fingerprinted ``chunk_s`` seconds at a time as
``FingerprintDB.scan`` does, feed both trackers from the same hits in one run:

- negative: the never-indexed tracks back to back (1 s of silence between): every span is a false span,
  unless its audio IS the answered reference (game-music packages reuse themes): the first 2 s of the span are
  correlated with the reference at the span's track start (+-0.1 s; >= 0.8: shared audio, counted apart);
- positive: a ``--excerpt-s`` excerpt of each reference (random start; clean, then with noise at 10 dB from the
  eval noise bank), 2 s of silence between: a span is found when its track is right and its start within 0.2 s.

    OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1 nice -n 10 python -m bench.spans_false \
        --corpus /work/data/corpus_thr/corpus --out bench/results/spans_false.json
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np

SR = 16000
KINDS = ("verified", "hits_only", "verified_keep_short", "hits_only_keep_short")


def _fingerprint_stream(fp, wave: np.ndarray, chunk_s: float):
    """(segment times (n,), fingerprints (n, d), levels (n,)) per chunk, windows hop-aligned across chunks."""
    hop, window = int(round(fp.hop_s * SR)), int(round(fp.window_s * SR))
    buf, pos, step = np.zeros(0, np.float32), 0, int(chunk_s * SR)
    for lo in range(0, len(wave), step):
        buf = np.concatenate([buf, wave[lo:lo + step]])
        n = fp.num_windows(len(buf))
        if n == 0:
            continue
        w = buf[: (n - 1) * hop + window]
        yield (pos + np.arange(n) * hop) / SR, fp.fingerprint(w), fp.window_levels(w)
        buf, pos = buf[n * hop:], pos + n * hop


def run_trackers(fp, index, windows, wave, *, chunk_s: float = 10.0) -> dict:
    """Spans of ``wave`` from both trackers, fed the same hits: {"verified": [...], "hits_only": [...]}, seconds."""
    from faiss_flowhash.db.ids import decode_ids
    from faiss_flowhash.db.index_settings import db_search_params
    from faiss_flowhash.db.spans import SpanTracker

    trackers = {"verified": SpanTracker(hop_s=fp.hop_s, window_s=fp.window_s, reference=windows),
                "hits_only": SpanTracker(hop_s=fp.hop_s, window_s=fp.window_s),
                "verified_keep_short": SpanTracker(hop_s=fp.hop_s, window_s=fp.window_s, reference=windows,
                                                   min_duration_s=0.0),
                "hits_only_keep_short": SpanTracker(hop_s=fp.hop_s, window_s=fp.window_s, min_duration_s=0.0)}
    out = {k: [] for k in trackers}
    held = 0
    for seg_t, emb, levels in _fingerprint_stream(fp, wave, chunk_s):
        D, I = index.search(emb, 5, params=db_search_params())
        tracks, frames = decode_ids(I)
        for k, tr in trackers.items():
            out[k] += tr.push(seg_t, tracks, frames * fp.hop_s, D, levels,
                              **({"fingerprints": emb} if tr.reference is not None else {}))
            held = max(held, tr.held_segments)
    for k, tr in trackers.items():
        out[k] += tr.finish()
    out["max_held_segments"] = held
    return out


def main(argv=None) -> int:
    from bench.threshold_real import _shared_audio
    from faiss_flowhash.audio import Fingerprinter, add_noise, noise_bank
    from faiss_flowhash.audio.io import load_audio
    from faiss_flowhash.db.identify import ReferenceWindows
    from faiss_flowhash.db.ids import encode_ids
    from faiss_flowhash.db.index_settings import new_db_index

    p = argparse.ArgumentParser(prog="python -m bench.spans_false")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--refs", type=int, default=30, help="reference tracks (the rest are never indexed)")
    p.add_argument("--max-track-s", type=float, default=120.0, help="cut longer tracks (time)")
    p.add_argument("--excerpt-s", type=float, default=20.0, help="excerpt of each reference in the positive recording")
    p.add_argument("--model", default=None)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    t0 = time.time()
    fp = Fingerprinter.load(args.model)
    files = json.loads((args.corpus / "manifest.json").read_text())["files"]
    cut = int(args.max_track_s * SR)
    rng = np.random.default_rng(args.seed)
    order = rng.permutation(len(files))
    waves = [load_audio(args.corpus / files[i]["file"], sample_rate=SR)[:cut] for i in order]
    refs, others = waves[: args.refs], waves[args.refs:]
    index = new_db_index(fp.dim, fp.quantizer)
    ref_emb = [fp.fingerprint(x) for x in refs]
    for t, e in enumerate(ref_emb):
        index.add_with_ids(e, encode_ids(t, len(e)))
    windows = ReferenceWindows.from_tracks(ref_emb)

    # negative: never-indexed tracks back to back
    gap = np.zeros(SR, np.float32)
    neg = np.concatenate([x for w in others for x in (w, gap)])
    neg_spans = run_trackers(fp, index, windows, neg)
    neg_hours = len(neg) / SR / 3600
    result = {"model_id": fp.model_id, "seed": args.seed, "refs": [files[i]["file"] for i in order[: args.refs]],
              "negative_hours": neg_hours, "reference_hours": sum(len(x) for x in refs) / SR / 3600, "negative": {}}
    for k in KINDS:
        rows = []
        for s in neg_spans[k]:
            a = int(round(s.start_s * SR))
            corr = _shared_audio(neg[a:a + 2 * SR], refs[s.track_id], s.track_start_s)
            rows.append({**s.to_dict(), "shared_audio_corr": round(corr, 3)})
        false = [r for r in rows if r["shared_audio_corr"] < 0.8]
        result["negative"][k] = {"spans": rows, "false_spans": len(false), "false_per_hour": len(false) / neg_hours,
                                 "false_seconds": sum(r["duration_s"] for r in false)}
    result["negative_max_held_segments"] = neg_spans["max_held_segments"]

    # positive: excerpts of the references, clean then noise 10 dB
    pos_parts, truth = [], []
    noise = noise_bank(args.seed + 20, len(refs), split="eval", duration_s=args.excerpt_s)
    t = 0.0
    for kind in ("clean", "noise10"):
        for i, w in enumerate(refs):
            start = float(rng.uniform(0, max(0.0, len(w) / SR - args.excerpt_s)))
            x = w[int(start * SR): int((start + args.excerpt_s) * SR)]
            if kind == "noise10":
                x = np.clip(add_noise(x, noise[i][: len(x)], 10.0), -1, 1).astype(np.float32)
            pos_parts += [np.zeros(2 * SR, np.float32), x]
            t += 2.0
            truth.append((kind, i, t, start))
            t += len(x) / SR
    pos = np.concatenate(pos_parts)
    pos_spans = run_trackers(fp, index, windows, pos)
    result["positive"] = {}
    for k in KINDS:
        spans = pos_spans[k]
        found = {}
        for kind, i, rec0, tr0 in truth:
            ok = [s for s in spans if s.track_id == i and abs(s.start_s - rec0) <= 0.2 and abs(s.track_start_s - tr0) <= 0.2]
            found.setdefault(kind, []).append(bool(ok))
        right = {(s.track_id, round(s.start_s, 1)) for s in spans
                 if any(s.track_id == i and abs(s.start_s - r0) <= 0.2 for _, i, r0, _ in truth)}
        result["positive"][k] = {kind: float(np.mean(v)) for kind, v in found.items()}
        result["positive"][k]["spans"] = len(spans)
        result["positive"][k]["other_spans"] = len(spans) - len(right)
    result["seconds"] = round(time.time() - t0, 1)
    summary = {k: {"false_per_hour": round(result["negative"][k]["false_per_hour"], 2),
                   "false_spans": result["negative"][k]["false_spans"],
                   "shared_audio_spans": len(result["negative"][k]["spans"]) - result["negative"][k]["false_spans"],
                   **{f"found_{kind}": round(v, 3) for kind, v in result["positive"][k].items() if kind in ("clean", "noise10")},
                   "positive_other_spans": result["positive"][k]["other_spans"]} for k in KINDS}
    print(json.dumps({"negative_hours": round(neg_hours, 3), "seconds": result["seconds"], **summary}), flush=True)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
