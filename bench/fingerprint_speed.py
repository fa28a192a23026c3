"""Fingerprinter benchmark: speed (x real time), training steps/s, and segment hit rate under distortion.

    python -m bench.fingerprint_speed                  # shipped model, table on stdout
    python -m bench.fingerprint_speed --json           # one JSON object instead
    python -m bench.fingerprint_speed --model m.pt --queries 500 --corpus bench/data/corpus

Hit rate: reference audio the model never saw (synthetic music and espeak-ng speech from seeds the
training did not use, plus the corpus's test split when --corpus is given) is fingerprinted every
100 ms. Each query is a random 1 s clip (any sample offset) of a reference, distorted with an
*eval-split* noise at the given SNR (and an eval-split room for the reverb row), fingerprinted on its
own, and searched exactly (inner product over all reference fingerprints). A segment hit: the top-1
row is from the right track and its window starts within 50 ms of the query (the nearest window);
"+-1" allows the neighbouring window (within 150 ms); "track" only asks for the right track.
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning: on a busy machine, spinning 2-thread torch runs the
# encoder ~20x slower than 1 thread (measured here); passive waiting makes 2 threads ~2x faster than 1.
# It must be set before torch loads OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import json
import platform
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parent.parent

from faiss_flowhash.audio.augment import add_noise, apply_rir
from faiss_flowhash.audio.fingerprinter import Fingerprinter
from faiss_flowhash.audio.noise import noise_bank
from faiss_flowhash.audio.rooms import rir_bank
from faiss_flowhash.audio.pairs import default_augment, synthetic_sources
from faiss_flowhash.audio.train import TrainConfig, pretrain

SR = 16000
EVAL_SEED = 1  # synthetic_sources(seed=1): music seeds 100003+i and speech texts the training (seed 0) never drew


def speed(fp: Fingerprinter, *, seconds: float, threads: int) -> dict:
    """x real time of Fingerprinter.fingerprint on ``seconds`` of music with ``threads`` torch threads."""
    torch.set_num_threads(threads)
    wave = synthetic_sources(n_music=1, seconds=seconds, seed=99)[0]
    fp.fingerprint(wave[: 5 * SR])  # warm-up
    best = float("inf")
    for _ in range(3):
        t = time.perf_counter()
        n = len(fp.fingerprint(wave))
        best = min(best, time.perf_counter() - t)
    return {"threads": threads, "audio_s": seconds, "wall_s": round(best, 4), "x_real_time": round(seconds / best, 1),
            "windows_per_s": round(n / best, 1)}


def train_speed(fp: Fingerprinter, *, steps: int) -> dict:
    """Pre-training steps/s (1 thread, as the shipped model was trained) with the model's own settings."""
    torch.set_num_threads(1)
    saved = fp.meta.get("train_config", {})
    cfg = TrainConfig(encoder=fp.encoder.config, batch_pairs=saved.get("batch_pairs", 64), steps=steps + 2,
                      K=saved.get("K", 16), seed=5)
    sources = synthetic_sources(n_music=6, n_speech=6, seed=5)
    augment = default_augment(seed=5, n_noises=8, n_rirs=8)
    pretrain(sources, cfg, augment=augment, progress=False, max_steps=2)  # warm-up, not timed
    t = time.perf_counter()
    pretrain(sources, cfg, augment=augment, progress=False, max_steps=steps)
    wall = time.perf_counter() - t
    return {"threads": 1, "batch_pairs": cfg.batch_pairs, "steps": steps, "steps_per_s": round(steps / wall, 3)}


def references(n_music: int, n_speech: int, corpus: str | None, max_tracks: int = 10**9) -> tuple[list[np.ndarray], list[str]]:
    tracks = synthetic_sources(n_music=n_music, n_speech=n_speech, seconds=30.0, seed=EVAL_SEED)
    names = [f"synth-music-{i}" for i in range(n_music)] + [f"speech-{i}" for i in range(n_speech)]
    if corpus:
        from faiss_flowhash.audio.io import load_audio

        manifest = json.loads((Path(corpus) / "manifest.json").read_text())  # bench/audio_corpus.py's format
        for e in manifest["files"]:
            if e["split"] == "test" and len(tracks) < max_tracks:
                tracks.append(load_audio(Path(corpus) / e["file"]))
                names.append(e["file"])
    return tracks, names


def hit_rates(fp: Fingerprinter, tracks, *, queries: int, seed: int = 0) -> dict:
    torch.set_num_threads(2)
    db = [fp.fingerprint(t) for t in tracks]
    owner = np.concatenate([np.full(len(e), i) for i, e in enumerate(db)])
    index = np.concatenate([np.arange(len(e)) for e in db])
    db = np.concatenate(db)  # (N, d)
    noises = noise_bank(seed=0, n_clips=12, split="eval")
    rirs = rir_bank(seed=0, n=12, split="eval")
    rng = np.random.default_rng(seed)
    plan = []
    for _ in range(queries):
        ti = int(rng.integers(len(tracks)))
        start = int(rng.integers(0, len(tracks[ti]) - SR + 1))
        plan.append((ti, start, int(rng.integers(len(noises))), int(rng.integers(len(rirs)))))
    conditions = [("clean", None, False), ("noise 20 dB", 20.0, False), ("noise 10 dB", 10.0, False),
                  ("noise 0 dB", 0.0, False), ("reverb + 10 dB", 10.0, True)]
    out = {}
    for name, snr, reverb in conditions:
        clips = np.stack([tracks[ti][s : s + SR] for ti, s, _, _ in plan])  # (Q, 16000)
        if reverb:
            clips = np.stack([apply_rir(c, rirs[r]) for c, (_, _, _, r) in zip(clips, plan)])
        if snr is not None:
            clips = np.stack([add_noise(c, noises[k], snr, rng=rng) for c, (_, _, k, _) in zip(clips, plan)])
        q = np.concatenate([fp.fingerprint(c) for c in clips])  # (Q, d)
        top = np.argmax(q @ db.T, axis=1)
        truth_track = np.array([p[0] for p in plan])
        truth_t = np.array([p[1] for p in plan]) / SR
        same = owner[top] == truth_track
        dt = np.abs(index[top] * fp.hop_s - truth_t)
        out[name] = {"segment": float(np.mean(same & (dt <= 0.05 + 1e-9))),
                     "segment_pm1": float(np.mean(same & (dt <= 0.15 + 1e-9))),
                     "track": float(np.mean(same))}
    return {"queries": queries, "db_fingerprints": int(len(db)), "tracks": len(tracks),
            "audio_h": round(sum(len(t) for t in tracks) / SR / 3600, 3), "conditions": out}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default=None, help="model file (default: the shipped default model)")
    ap.add_argument("--seconds", type=float, default=120.0, help="audio length for the speed test (120)")
    ap.add_argument("--train-steps", type=int, default=10, help="timed pre-training steps (10; 0 skips)")
    ap.add_argument("--music", type=int, default=20, help="held-back synthetic music tracks, 30 s each (20)")
    ap.add_argument("--speech", type=int, default=20, help="held-back espeak-ng clips (20)")
    ap.add_argument("--corpus", default=None, help="corpus folder with manifest.json: its test split joins the references")
    ap.add_argument("--queries", type=int, default=400, help="queries per condition (400)")
    ap.add_argument("--json", action="store_true", help="print one JSON object instead of the table")
    ap.add_argument("--out", default=None, help="also write the JSON object to this file")
    args = ap.parse_args(argv)

    fp = Fingerprinter.load(args.model)
    result = {
        "model": str(args.model or "default"), "model_id": fp.model_id, "encoder": fp.encoder.config.to_dict(),
        "machine": f"{platform.machine()} {platform.processor() or ''} torch {torch.__version__}".strip(),
        "date_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "load_average_1min": round(os.getloadavg()[0], 2),
        "speed": [speed(fp, seconds=args.seconds, threads=t) for t in (1, 2)],
    }
    if args.train_steps:
        result["train"] = train_speed(fp, steps=args.train_steps)
    tracks, _ = references(args.music, args.speech, args.corpus)
    result["hit_rate"] = hit_rates(fp, tracks, queries=args.queries)
    result["references"] = {"synthetic_music": args.music, "speech": args.speech, "corpus_test_split": args.corpus}
    if args.out:
        Path(args.out).write_text(json.dumps(result, indent=1))
    if args.json:
        print(json.dumps(result, indent=1))
        return 0
    print(f"model {result['model']} ({fp.model_id}), {result['machine']}, {result['date_utc']}, "
          f"OMP_WAIT_POLICY={result['omp_wait_policy']}, load average {result['load_average_1min']}")
    for s in result["speed"]:
        print(f"fingerprinting, {s['threads']} thread(s): {s['x_real_time']:.0f}x real time ({s['windows_per_s']:.0f} windows/s)")
    if "train" in result:
        t = result["train"]
        print(f"pre-training: {t['steps_per_s']:.2f} steps/s (M={t['batch_pairs']} pairs, 1 thread)")
    h = result["hit_rate"]
    print(f"\nhit rate, {h['queries']} queries of 1 s per row, {h['tracks']} held-back tracks "
          f"({h['audio_h']} h, {h['db_fingerprints']} fingerprints), exact search:")
    print(f"{'condition':<16}{'segment':>10}{'+-1 seg':>10}{'track':>10}")
    for name, r in h["conditions"].items():
        print(f"{name:<16}{r['segment']:>10.3f}{r['segment_pm1']:>10.3f}{r['track']:>10.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
