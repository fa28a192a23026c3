"""Compare fingerprint models on held-out audio, in one process, on the same rendered queries.

Reference sets (none of them seen in training by the shipped models):
- ``real``: the tracks of a corpus built by bench/audio_corpus.py (default: hedgewars-data, GPL-2 game
  music, 26 tracks, 1.56 h), real recordings no model trained on;
- ``generated``: synthetic music of seeds 100003.., espeak-ng speech with texts of seed 1, and General
  MIDI songs of seeds 10000.. rendered with FluidR3_GM (the training set uses seeds 0..).

Queries: per condition (audio/distort.condition, eval split of the noise and room banks), random track
and start; each query's audio is rendered once and fingerprinted by every model. Metrics, exact inner-
product search (faiss.IndexFlatIP) over all reference windows (1 s every 100 ms):
- ``seg``: the query's first 1 s window's top-1 is the right track's window within 50 ms of its start;
- ``3s track`` / ``3s offset``: the 21 windows of the 3 s snippet vote with their top-1 for
  (track, start = reference time - window offset) in 100 ms bins (two neighbouring bins pooled); the
  winner is the right track / and its mean start is within 50 ms of the truth;
- ``+repeats``: ``3s offset``, or the right track at a start whose 3 s of audio correlate >= 0.95 with
  the true start's (an exact repeat: loops, refrains);
- ``2s``: the offset from the vote of the snippet's first 11 windows (its first 2 s; a 2 s query up to
  the edge frames of its last window and the codec's last frame); ``FH 1s / 2s``: the FlowHash vote of
  the first 1 / 11 windows;
- ``offset FH``: the 3 s offset (without repeats) from the same vote over the FlowHashIndex (the model's own flow quantizer, index defaults,
  r~ = 1.25) instead of exact search.

    python -m bench.model_eval --models faiss_flowhash/models/default.pt /work/model_runs/r1/final.pt \
        --corpus bench/data/corpus --n 100 --cache-dir /work/model_runs/eval_cache --json out.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import faiss
import torch

from faiss_flowhash import FlowHashIndex
from faiss_flowhash.audio import Fingerprinter, load_audio
from faiss_flowhash.audio import distort as D

SR, HOP = 16000, 0.1
CONDITIONS = [("clean", "clean", None), ("noise 0dB", "noise", 0.0), ("noise 10dB", "noise", 10.0),
              ("noise 20dB", "noise", 20.0), ("reverb", "reverb", None), ("noise+reverb 10dB", "noise+reverb", 10.0),
              ("bursty 10dB", "bursty", 10.0), ("phone", "phone", None), ("laptop+room 10dB", "laptop+room", 10.0),
              ("codec", "codec", None)]


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def reference_set(name, args):
    """(names, waves) of a held-out reference set."""
    if name == "real":
        man = json.load(open(os.path.join(args.corpus, "manifest.json")))
        files = [f for f in man["files"] if f["split"] == "test"] or man["files"]
        names = [f["file"] for f in files]
        return names, [load_audio(os.path.join(args.corpus, f), sample_rate=SR) for f in names]
    from faiss_flowhash.audio import synthetic_music
    from faiss_flowhash.audio.pairs import synthetic_sources

    names, waves = [], []
    for i in range(args.gen_music):
        names.append(f"synthetic_music(seed={100003 + i})")
        waves.append(synthetic_music(30.0, seed=100003 + i))
    for i, w in enumerate(synthetic_sources(n_speech=args.gen_speech, seed=1)):
        names.append(f"speech(seed=1, i={i})")
        waves.append(w)
    if args.midi_dir and os.path.isdir(args.midi_dir):
        for f in sorted(os.listdir(args.midi_dir))[: args.gen_midi]:
            names.append(f"midi:{f}")
            waves.append(load_audio(os.path.join(args.midi_dir, f), sample_rate=SR))
    return names, waves


def make_queries(waves, n, seed, length_s=3.0):
    """Per condition n (track, start sample, Distortion); tracks weighted by length."""
    L = int(length_s * SR)
    lens = np.array([len(w) for w in waves], float)
    ok = lens > L + SR
    p = np.where(ok, lens, 0) / np.where(ok, lens, 0).sum()
    out = []
    for c, (label, cond, snr) in enumerate(CONDITIONS):
        for i in range(n):
            rng = np.random.default_rng([seed, c, i])
            t = int(rng.choice(len(waves), p=p))
            start = int(rng.integers(int(0.5 * SR), len(waves[t]) - L))
            kw = {} if snr is None else {"snr_db": snr}
            out.append((label, t, start, D.condition(cond, rng, **kw)))
    return out


def vote(tops, ref_track, ref_time):
    """3 s snippet answer from per-window top-1 ids tops (W,): (track, start s) or (-1, nan)."""
    ok = tops >= 0
    if not ok.any():
        return -1, float("nan")
    j = np.flatnonzero(ok)
    tr = ref_track[tops[j]]
    st = ref_time[tops[j]] - HOP * j
    b = np.round(st / HOP).astype(np.int64)
    keys = tr * 10_000_000 + b
    uk, cnt = np.unique(keys, return_counts=True)
    score = {k: c for k, c in zip(uk, cnt)}
    pooled = {k: c + score.get(k - 1, 0) + score.get(k + 1, 0) for k, c in score.items()}  # +-1 bin
    best = max(pooled, key=lambda k: (pooled[k], score[k]))
    sel = np.abs(keys - best) <= 1
    return int(best // 10_000_000), float(np.median(st[sel]))


def _cached(cache_dir, key, fn):
    """fn() -> list of arrays, cached as an .npz under cache_dir by key (None: no cache)."""
    import hashlib

    if cache_dir is None:
        return fn(), False
    path = os.path.join(cache_dir, hashlib.sha256(key.encode()).hexdigest()[:16] + ".npz")
    if os.path.exists(path):
        z = np.load(path)
        return np.split(z["x"], np.cumsum(z["n"])[:-1]), True
    out = fn()
    os.makedirs(cache_dir, exist_ok=True)
    np.savez(path, x=np.concatenate(out), n=np.array([len(a) for a in out]))
    return out, False


def _repeat(wave, a, b, length, min_corr):
    """True when the audio at sample a and at sample b (length samples) correlate >= min_corr."""
    if min(a, b) < 0 or max(a, b) + length > len(wave):
        return False
    x, y = wave[a:a + length].astype(np.float64), wave[b:b + length].astype(np.float64)
    den = np.sqrt(np.dot(x, x) * np.dot(y, y))
    return bool(den > 0 and np.dot(x, y) / den >= min_corr)


def evaluate(fp, names, waves, queries, rendered, *, flowhash=True, cache_dir=None, repeat_corr=0.95):
    t0 = time.perf_counter()
    refs, cached = _cached(cache_dir, json.dumps(["ref", fp.model_id, names]), lambda: [fp.fingerprint(w) for w in waves])
    t_ref = float("nan") if cached else time.perf_counter() - t0
    x = np.concatenate(refs)
    ref_track = np.concatenate([np.full(len(r), t) for t, r in enumerate(refs)])
    ref_time = np.concatenate([np.arange(len(r)) * HOP for r in refs])
    flat = faiss.IndexFlatIP(x.shape[1])
    flat.add(x)
    index = None
    if flowhash and fp.quantizer is not None:
        index = FlowHashIndex(x.shape[1], quantizer=fp.quantizer)  # the index defaults (r~ = 1.25)
        index.verbose = False
        index.add(x)
    qkey = json.dumps(["q", fp.model_id, names, [(lab, t, s, d.to_dict()) for lab, t, s, d in queries]])
    qf, _ = _cached(cache_dir, qkey, lambda: [fp.fingerprint(a) for a in rendered])
    cnt = [len(q) for q in qf]
    Q = np.concatenate(qf)
    _, I = flat.search(Q, 1)
    I = np.split(I[:, 0], np.cumsum(cnt)[:-1])
    IF = None
    if index is not None:
        _, J = index.search(Q, 1)
        IF = np.split(J[:, 0], np.cumsum(cnt)[:-1])
    res = {}
    for qi, (label, t, start, d) in enumerate(queries):
        s_true = (start + round(d.offset_s * SR)) / SR
        r = res.setdefault(label, {"seg": [], "track": [], "offset": [], "offset_rep": [], "offset_fh": [],
                                   "fh_1s": [], "fh_2s": [], "ex_2s": []})
        top0 = I[qi][0]
        r["seg"].append(bool(ref_track[top0] == t and abs(ref_time[top0] - s_true) <= 0.05 + 1e-9))
        tr, st = vote(I[qi], ref_track, ref_time)
        r["track"].append(tr == t)
        r["offset"].append(bool(tr == t and abs(st - s_true) <= 0.05 + 1e-9))
        r["offset_rep"].append(bool(r["offset"][-1] or (tr == t and _repeat(
            waves[t], int(round(s_true * SR)), int(round(st * SR)), 3 * SR, repeat_corr))))
        if IF is not None:
            tr, st = vote(IF[qi], ref_track, ref_time)
            r["offset_fh"].append(bool(tr == t and abs(st - s_true) <= 0.05 + 1e-9))
            for W, key in ((1, "fh_1s"), (11, "fh_2s")):  # the first 1 s / 2 s of the snippet
                tr, st = vote(IF[qi][:W], ref_track, ref_time)
                r[key].append(bool(tr == t and abs(st - s_true) <= 0.05 + 1e-9))
        tr, st = vote(I[qi][:11], ref_track, ref_time)
        r["ex_2s"].append(bool(tr == t and abs(st - s_true) <= 0.05 + 1e-9))
    table = {lab: {k: (100.0 * float(np.mean(v)) if v else float("nan")) for k, v in r.items()} for lab, r in res.items()}
    audio_s = sum(len(w) for w in waves) / SR
    return {"table": table, "n_ref": int(len(x)), "ref_x_real_time": audio_s / t_ref, "audio_h": audio_s / 3600}


_COLS = (("seg", "seg 1s"), ("ex_2s", "2s"), ("track", "3s track"), ("offset", "3s"), ("offset_rep", "3s +rep"),
         ("fh_1s", "FH 1s"), ("fh_2s", "FH 2s"), ("offset_fh", "FH 3s"))


def md_table(results, models, set_name):
    """One row per (condition, model): exact-search columns, then FlowHash columns; a mean row per model."""
    labels = [c[0] for c in CONDITIONS]
    lines = [f"#### {set_name}", "", "| condition | model | " + " | ".join(c for _, c in _COLS) + " |",
             "|---|---|" + "---|" * len(_COLS)]
    for lab in labels + ["mean"]:
        for m in models:
            tb = results[m]["table"]
            v = {k: np.mean([tb[lb][k] for lb in labels]) for k, _ in _COLS} if lab == "mean" else tb[lab]
            lines.append(f"| {lab} | {m} | " + " | ".join(f"{v[k]:.1f}" for k, _ in _COLS) + " |")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--models", nargs="+", required=True, help="model files (first = the baseline)")
    p.add_argument("--sets", default="real,generated")
    p.add_argument("--corpus", default=os.path.join(HERE, "data", "corpus"))
    p.add_argument("--midi-dir", default="/work/model_runs/audio/midi_eval")
    p.add_argument("--gen-music", type=int, default=20)
    p.add_argument("--gen-speech", type=int, default=20)
    p.add_argument("--gen-midi", type=int, default=24)
    p.add_argument("--n", type=int, default=100, help="queries per condition and set")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--json", default=None)
    p.add_argument("--no-flowhash", action="store_true")
    p.add_argument("--cache-dir", default=None, help="cache reference and query fingerprints per model here")
    p.add_argument("--repeat-corr", type=float, default=0.95,
                   help="+repeats: a start that is off still counts when its 3 s of audio correlate this much with the truth")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    faiss.omp_set_num_threads(args.threads)
    fps = {}
    for path in args.models:
        fp = Fingerprinter.load(path)
        fps[f"{fp.model_id}"] = fp
    out = {"date": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
           "command": "python -m bench.model_eval " + " ".join(sys.argv[1:] if argv is None else argv),
           "load_start": os.getloadavg(), "models": {m: p for m, p in zip(fps, args.models)}, "sets": {}}
    for set_name in args.sets.split(","):
        names, waves = reference_set(set_name, args)
        queries = make_queries(waves, args.n, args.seed)
        t0 = time.perf_counter()
        rendered = [D.render(waves[t], d, start=s, length=3 * SR) for _, t, s, d in queries]
        log(f"{set_name}: {len(names)} tracks, {sum(map(len, waves)) / SR / 3600:.2f} h; {len(queries)} queries "
            f"rendered in {time.perf_counter() - t0:.0f} s")
        res = {}
        for m, fp in fps.items():
            res[m] = evaluate(fp, names, waves, queries, rendered, flowhash=not args.no_flowhash,
                              cache_dir=args.cache_dir, repeat_corr=args.repeat_corr)
            log(f"{set_name} {m}: " + json.dumps({k: v for k, v in res[m].items() if k != "table"}, default=float))
        out["sets"][set_name] = {"n_tracks": len(names), "n_per_condition": args.n, "results": res,
                                 "markdown": md_table(res, list(fps), f"{set_name} ({len(names)} tracks, "
                                                      f"{res[next(iter(res))]['audio_h']:.2f} h, {args.n} queries per condition)")}
        print(out["sets"][set_name]["markdown"] + "\n", flush=True)
    out["load_end"] = os.getloadavg()
    if args.json:
        json.dump(out, open(args.json, "w"), indent=1, default=float)
    return 0


if __name__ == "__main__":
    sys.exit(main())
