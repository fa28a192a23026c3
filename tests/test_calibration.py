""""No match" is calibrated: the default confidence threshold keeps false matches out and hits in.

A small calibration run through the real identification path: 15 generated tracks of 12 s (music,
espeak-ng speech, a chirp) saved as files and ingested into a FingerprintDB with the shipped model;
snippets of 1-5 s go through ``FingerprintDB.query`` as waves. Positives are cut from the ingested
tracks (clean, noise 10 dB, reverb + noise 5 dB: eval-split noises and rooms); negatives come from
audio never ingested (speech with other words and voices, music of other seeds; clean or noise 10 dB). A positive is a hit when
the best match is its track at an offset within 50 ms; a negative is a false match when anything matches.

Claims checked at ``DEFAULT_MIN_CONFIDENCE`` (the query's and the CLI's default): no-match on negatives
>= NO_MATCH_FLOOR (0.99: the product claims 0.97, this set measures 1.0) and hit rate >= FLOOR (the
measured value: the set is seeded, so the rate is exact). And the threshold is where it is for a reason: at
LOW false matches get in (no-match < 0.97; a default of 0.35 or less fails the first claim), and at HIGH
hits drop (a default of 0.99 fails the floor). With the verified confidence (database queries have the
reference windows) this synthetic set cannot tell a default of 0.5 from 0.95: its positives are easy and
their confidences saturate near 1. The default is chosen on real music (faiss_flowhash.db.consensus,
bench/results/nomatch.md); this test guards the claims and the extremes.

Measure (after a model or consensus change; paste FLOOR):  python tests/test_calibration.py
"""

import inspect
import os
import sys

import numpy as np
import pytest

if __name__ == "__main__":  # run as a script: measure the package next to tests/, not an installed one
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from faiss_flowhash.audio import add_noise, apply_rir, noise_bank, rir_bank, save_audio, synth
from faiss_flowhash.db import DEFAULT_MIN_CONFIDENCE, FingerprintDB

SR = 16000
TRACK_S = 12.0
N_POSITIVE, N_NEGATIVE = 120, 240
LOW, HIGH = 0.01, 0.99  # thresholds that must visibly let false matches in / lose hits

# Measured with model 063ef8c90201e4ef (python tests/test_calibration.py). At the default threshold:
# no-match 1.000 (240 of 240), hit 0.925 before the index engine's default became assign="spill" (5a99e63;
# 0.833 after it: kept red on purpose until the database probes as before or the drop is accepted).
# At 0.10: no-match 0.933 (0.963 after 5a99e63), at 0.05: 0.875 (0.883); hit at 0.60: 0.783 (0.617).
# Model b29303c01d7572b7 (2026-12-01, index defaults incl. spill): at the default 0.35 hit 0.967 (clean 1.0,
# noise10 1.0, reverb+noise5 0.9), no-match 1.000; largest negative confidence 0.236.
# 2026-12-02, the database's wider probing (db/index_settings.py: 16 bits x 4,096 proposals, nprobe 256):
# hit 0.975 / 0.967 / 0.958 / 0.917 / 0.883 / 0.850 at 0.35 / 0.5 / 0.6 / 0.7 / 0.75 / 0.8, no-match 1.000
# from 0.3 up (0.963 at 0.2): more segments find their window, so confidences are higher and a raise
# to 0.60 costs only 1.7 points here; HIGH moved to 0.75 (-9.2 points), and the floor sits one miss
# below the measured 117 / 120, so a default of 0.60 (115 / 120) still turns the suite red.
# 2026-12-02, the verified confidence (db.consensus.verified_confidence, default 0.70): hit 0.983 (118 of 120)
# from 0.0 to 0.95 (clean 1.0, noise10 1.0, reverb+noise5 0.95), 0.975 (117) at 0.99; no-match 0.892 / 0.967 /
# 0.971 / 0.979 / 0.983 / 0.996 at 0.01 / 0.05 / 0.10 / 0.20 / 0.35 / 0.50, 1.000 from 0.60 up (largest negative
# confidence 0.512). So FLOOR is the measured 118 / 120: one miss fewer is what a default of 0.99 gives.
FLOOR = 0.98  # hit rate at the default: measured 0.983 (118 of 120 positives)
NO_MATCH_FLOOR = 0.99  # the claim is >= 0.97; measured 1.000, and a default of 0.35 gives 0.983

_WORDS = ("river mountain signal window quiet orange table seven green paper morning station silver "
          "garden music yellow ocean winter finger candle market engine silent forest pocket number").split()
_OTHER_WORDS = ("bicycle thunder marble velvet harbour lantern puzzle cactus meadow rocket saddle tunnel "
                "walnut blanket compass dolphin feather glacier hammer island jacket kettle ladder needle").split()


def _speech(rng, words, voice, i):
    n = int(TRACK_S * SR)
    x = synth.speech(" ".join(rng.choice(words, 50)), voice=voice, speed_wpm=140 + 10 * (i % 5))
    return np.tile(x, int(np.ceil(n / len(x))))[:n]


def references(rng) -> list[np.ndarray]:
    """15 tracks: 10 music, 4 speech (voices en, de, fr, en-us), 1 chirp."""
    out = [synth.synthetic_music(TRACK_S, seed=3000 + i) for i in range(10)]
    out += [_speech(rng, _WORDS, v, i) for i, v in enumerate(("en", "de", "fr", "en-us"))]
    out.append(synth.chirp(150.0, 6000.0, TRACK_S, method="log"))
    return [np.clip(np.asarray(x, np.float32), -1, 1) for x in out]


def others(rng) -> list[np.ndarray]:
    """Audio never ingested: (music of other seeds (6), speech with other words and voices (6))."""
    music = [synth.synthetic_music(TRACK_S, seed=4000 + i) for i in range(6)]
    speech = [_speech(rng, _OTHER_WORDS, v, i) for i, v in enumerate(("es+f3", "it+m3", "nl+f2", "pt+m2", "en+f4", "fr+m1"))]
    return [np.clip(np.asarray(x, np.float32), -1, 1) for x in music], [np.clip(np.asarray(x, np.float32), -1, 1) for x in speech]


def queries(refs, negs, rng) -> list[tuple[str, int, float, np.ndarray]]:
    """(kind, true track or -1, start in s, wave) for N_POSITIVE positives and N_NEGATIVE negatives."""
    noises = noise_bank(21, 8, split="eval", duration_s=6.0)
    rooms = rir_bank(22, 6, split="eval", method="synthetic")
    out = []
    for q in range(N_POSITIVE + N_NEGATIVE):
        positive = q < N_POSITIVE
        # negatives: mostly speech, the hardest to tell apart (the same voice engine, other words and voices)
        kind = (("clean", "noise10", "reverb+noise5")[q % 3] if positive else
                ("speech", "speech+noise10", "music", "speech+noise10", "music+noise10", "speech")[q % 6])
        length = float(rng.uniform(1.0, 5.0))
        src = refs if positive else negs[0] if kind.startswith("music") else negs[1]
        t = int(rng.integers(len(src)))
        start = float(rng.uniform(0, TRACK_S - length))
        x = src[t][int(round(start * SR)): int(round((start + length) * SR))]
        noise = noises[int(rng.integers(len(noises)))][: len(x)]
        if kind.endswith("noise10"):
            x = add_noise(x, noise, 10.0, rng=rng)
        elif kind == "reverb+noise5":
            x = add_noise(apply_rir(x, rooms[int(rng.integers(len(rooms)))]), noise, 5.0, rng=rng)
        out.append((kind, t if positive else -1, start, np.asarray(x, np.float32)))
    return out


def run(db_dir: str, audio_dir: str) -> list[dict]:
    """Ingest the references, query every snippet (threshold 0; 1 in 6 also at the default): one row each."""
    rng = np.random.default_rng(2024)
    refs, negs = references(rng), others(rng)
    os.makedirs(audio_dir, exist_ok=True)
    paths = []
    for i, x in enumerate(refs):
        paths.append(os.path.join(audio_dir, f"ref{i:02d}.flac"))
        save_audio(paths[-1], x)
    rows = []
    with FingerprintDB(db_dir) as db:
        report = db.ingest([audio_dir])
        assert len(report.added) == len(refs) and report.ok
        for q, (kind, t, start, x) in enumerate(queries(refs, negs, rng)):
            best = db.query(x, min_confidence=0.0).best  # every candidate, with its confidence
            right = best is not None and t >= 0 and best.path == os.path.abspath(paths[t]) and abs(best.offset_s - start) <= 0.05
            conf = best.confidence if best is not None else 0.0
            if q % 6 == 0:  # the default query answers as "best, if its confidence reaches the default"
                default = db.query(x).best
                assert (default is not None) == (conf >= DEFAULT_MIN_CONFIDENCE)
                assert default is None or (default.track_id, default.offset_s) == (best.track_id, best.offset_s)
            rows.append({"kind": kind, "positive": t >= 0, "right": right, "confidence": conf})
    return rows


def rates(rows, threshold=DEFAULT_MIN_CONFIDENCE) -> dict:
    """Hit rate on positives and no-match rate on negatives at ``threshold`` (the default's by default)."""
    pos = [r["right"] and r["confidence"] >= threshold for r in rows if r["positive"]]
    neg = [r["confidence"] < threshold for r in rows if not r["positive"]]
    return {"hit": float(np.mean(pos)), "no_match": float(np.mean(neg))}


@pytest.fixture(scope="module")
def calibration(tmp_path_factory, espeak):
    root = tmp_path_factory.mktemp("calibration")
    return run(str(root / "db"), str(root / "audio"))


def test_default_threshold_is_the_documented_one_everywhere():
    from faiss_flowhash.cli import build_parser

    assert inspect.signature(FingerprintDB.query).parameters["min_confidence"].default == DEFAULT_MIN_CONFIDENCE
    args = build_parser().parse_args(["query", "db", "snippet.wav"])
    assert args.min_confidence == DEFAULT_MIN_CONFIDENCE


def test_default_threshold_says_no_match_to_audio_not_ingested(calibration):
    assert rates(calibration)["no_match"] >= max(0.97, NO_MATCH_FLOOR), rates(calibration)


def test_default_threshold_keeps_the_hits(calibration):
    assert rates(calibration)["hit"] >= FLOOR, rates(calibration)


def test_a_much_lower_threshold_lets_false_matches_in(calibration):
    """Without this the negatives would be too easy for the no-match claim to mean anything."""
    assert rates(calibration, LOW)["no_match"] < 0.97, rates(calibration, LOW)


def test_a_much_higher_threshold_loses_hits(calibration):
    """So the default cannot be raised to the top silently either."""
    assert rates(calibration, HIGH)["hit"] < rates(calibration)["hit"], (rates(calibration), rates(calibration, HIGH))


def main() -> int:
    import tempfile

    import torch

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as root:
        rows = run(os.path.join(root, "db"), os.path.join(root, "audio"))
    d = rates(rows)
    for th in sorted({0.0, 0.01, LOW, 0.10, 0.20, 0.35, 0.5, 0.6, DEFAULT_MIN_CONFIDENCE, HIGH, 0.8, 0.9, 0.95, 0.99}):
        print(f"threshold {th:.2f}: {rates(rows, th)}")
    print(f"default ({DEFAULT_MIN_CONFIDENCE}): {d}")
    for kind in ("clean", "noise10", "reverb+noise5"):
        print(kind, np.mean([r["right"] and r["confidence"] >= DEFAULT_MIN_CONFIDENCE for r in rows if r["kind"] == kind]))
    neg = sorted((r["confidence"] for r in rows if not r["positive"]), reverse=True)
    print("largest negative confidences", [round(c, 3) for c in neg[:8]])
    print(f"FLOOR <= {d['hit']:.3f}  # the measured hit rate at the default; no-match there: {d['no_match']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
