"""Regression set for the shipped fingerprint model: hit rate per condition, and its fingerprint of a fixed wave.

16 generated tracks of 12 s (11 synthetic music, 4 espeak-ng speech, 1 chirp) are fingerprinted clean into a
FlowHashIndex with the model's own quantizer (default probing). Each track is also distorted as a whole
(noise 10 dB, noise 0 dB, reverb RT60 0.5 s: eval-split noises and rooms) and fingerprinted once; a snippet
of 1, 2 or 3 s is a slice of those rows (the real query path fingerprints the snippet on its own: only the
3 + 3 edge log-Mel frames differ). 120 snippets per condition vote for (track, start) with the paper's offset
consensus (every top-5 hit of window o votes for start = its frame - o); a hit is the right track and
start. The model alone is also measured without the index: the share of distorted windows whose exact
top-1 is their clean window, and their mean cosine to it. Floors: the value measured with the shipped
model minus 5 points (cosine: 0.03), from at most 0.98.

The checksum: the model's fingerprint of a fixed generated wave, 24 values compared at 1e-3, keyed by model
id, so a front-end change the model id does not see (log-Mel htk -> slaney, n_fft, f_max, ...) fails.

After shipping a new model, measure and paste the printed FLOORS / CHECKSUMS lines over the ones below:

    python tests/test_model_regression.py
"""

import os
import sys

import faiss
import numpy as np
import pytest

if __name__ == "__main__":  # run as a script: measure the package next to tests/, not an installed one
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from faiss_flowhash import FlowHashIndex
from faiss_flowhash.audio import Fingerprinter, add_noise, apply_rir, noise_bank, rir_bank, synth

SR = 16000
TRACK_S = 12.0
N_PER_CONDITION = 120
LENGTHS_S = (1.0, 2.0, 3.0)
TOP_K = 5  # hits per window that vote, as the database does
MARGINS = {"snippet": 0.05, "window": 0.05, "cosine": 0.03}  # floor = measured - margin
CONDITIONS = ("clean", "noise10", "noise0", "reverb")

# Measured with model 063ef8c90201e4ef (python tests/test_model_regression.py); floor = measured - MARGINS.
# The snippet floors are from before the index engine's default became assign="spill" (5a99e63: 0.800,
# 0.542, 0.792 for noise10 / noise0 / reverb, from 0.917, 0.700, 0.875): a real loss of hits, kept red on
# purpose until the database probes as before or the drop is accepted (then re-measure).
FLOORS = {"snippet/clean": 0.930, "snippet/noise10": 0.867, "snippet/noise0": 0.650, "snippet/reverb": 0.825,
          "window/noise10": 0.930, "window/noise0": 0.899, "window/reverb": 0.889,
          "cosine/noise10": 0.878, "cosine/noise0": 0.780, "cosine/reverb": 0.894}
# model id -> fingerprint of checksum_wave(): rows (0, 5, 10), dims 0..7
CHECKSUMS = {"063ef8c90201e4ef": [[0.0546, -0.0424, 0.135, -0.0779, -0.0971, 0.0113, 0.1001, 0.0707],
                                 [-0.0582, 0.1649, 0.1225, 0.0481, 0.0821, 0.032, 0.025, 0.0375],
                                 [-0.0199, 0.0043, 0.029, 0.0701, -0.0386, -0.055, -0.1193, -0.1109]]}

_WORDS = "river mountain signal window quiet orange table seven green paper morning station silver garden".split()
_VOICES = ("en", "de", "fr+m3", "es+f3")


def tracks(synth_mod=synth) -> list[np.ndarray]:
    """The 16 reference tracks (float32 (12 s * 16 kHz,) each)."""
    n = int(TRACK_S * SR)
    rng = np.random.default_rng(13)
    out = [synth_mod.synthetic_music(TRACK_S, seed=7000 + i) for i in range(11)]
    for i, voice in enumerate(_VOICES):
        x = synth_mod.speech(" ".join(rng.choice(_WORDS, 40)), voice=voice, speed_wpm=140 + 15 * i)
        out.append(np.tile(x, int(np.ceil(n / len(x))))[:n])
    out.append(synth_mod.chirp(200.0, 5000.0, TRACK_S, method="log"))
    return [np.clip(np.asarray(x, np.float32), -1, 1) for x in out]


def distort(waves: list[np.ndarray], condition: str) -> list[np.ndarray]:
    """Each whole track under ``condition`` (eval-split noises and rooms, seeded)."""
    if condition == "clean":
        return waves
    if condition == "reverb":
        rooms = rir_bank(31, len(waves), split="eval", rt60_range=(0.5, 0.5), method="synthetic")
        return [apply_rir(x, h) for x, h in zip(waves, rooms)]
    snr = {"noise10": 10.0, "noise0": 0.0}[condition]
    noises = noise_bank(37, len(waves), split="eval", duration_s=TRACK_S)
    return [add_noise(x, n[: len(x)], snr) for x, n in zip(waves, noises)]


def snippets(n_windows: list[int], seed: int) -> list[tuple[int, int, int]]:
    """(track, first window, windows) of N_PER_CONDITION snippets, lengths cycling through LENGTHS_S."""
    rng = np.random.default_rng(seed)
    out = []
    for q in range(N_PER_CONDITION):
        L = 1 + int(round((LENGTHS_S[q % len(LENGTHS_S)] - 1.0) / 0.1))
        t = int(rng.integers(len(n_windows)))
        out.append((t, int(rng.integers(0, n_windows[t] - L + 1)), L))
    return out


def vote(tracks_: np.ndarray, frames: np.ndarray, scores: np.ndarray) -> tuple[int, int]:
    """Offset consensus over a snippet's hits (L, k): the (track, start) most hits agree on (ties: summed score)."""
    o = np.arange(len(tracks_))[:, None]
    ok = tracks_ >= 0
    keys = np.stack([tracks_[ok], (frames - o)[ok]], 1)
    if not len(keys):
        return -1, 0
    uniq, inv, counts = np.unique(keys, axis=0, return_inverse=True, return_counts=True)
    total = np.bincount(inv.reshape(-1), weights=scores[ok], minlength=len(uniq))
    best = np.lexsort((-total, -counts))[0]
    return int(uniq[best, 0]), int(uniq[best, 1])


def measure(fp: Fingerprinter, waves: list[np.ndarray]) -> dict[str, float]:
    """Per condition: "snippet/<c>" the snippet hit rate through FlowHashIndex with the model's quantizer at
    the default settings (as FingerprintDB builds it); for the distorted ones also the model alone,
    "window/<c>" the share of windows whose exact top-1 (faiss.IndexFlatIP) is their clean window and
    "cosine/<c>" the mean cosine between a distorted window and its clean one."""
    clean = [fp.fingerprint(x) for x in waves]
    n_windows = [len(e) for e in clean]
    first = np.concatenate([[0], np.cumsum(n_windows)[:-1]])
    ref = np.concatenate(clean)
    index, exact = FlowHashIndex(fp.dim, quantizer=fp.quantizer), faiss.IndexFlatIP(fp.dim)
    index.add_with_ids(ref, np.arange(len(ref)))
    exact.add(ref)
    owner = np.repeat(np.arange(len(waves)), n_windows)
    out = {}
    for c, condition in enumerate(CONDITIONS):
        emb = np.concatenate([fp.fingerprint(x) for x in distort(waves, condition)])  # row i: window i distorted
        D, I = index.search(emb, TOP_K)  # every window of every distorted track, once
        tr = np.where(I >= 0, owner[np.maximum(I, 0)], -1)
        fr = np.where(I >= 0, I - first[np.maximum(tr, 0)], 0)
        hits = []
        for t, s, L in snippets(n_windows, seed=100 + c):
            rows = slice(first[t] + s, first[t] + s + L)
            hits.append(vote(tr[rows], fr[rows], D[rows]) == (t, s))
        out[f"snippet/{condition}"] = float(np.mean(hits))
        if condition != "clean":
            out[f"window/{condition}"] = float(np.mean(exact.search(emb, 1)[1][:, 0] == np.arange(len(ref))))
            out[f"cosine/{condition}"] = float(np.mean(np.sum(emb * ref, axis=1)))
    return out


def checksum_wave() -> np.ndarray:
    """A fixed 2 s wave: music with a chirp on top (float32 (32000,))."""
    return (0.7 * synth.synthetic_music(2.0, seed=424242) + 0.3 * synth.chirp(300.0, 3000.0, 2.0)).astype(np.float32)


def checksum(fp: Fingerprinter) -> np.ndarray:
    return fp.fingerprint(checksum_wave())[[0, 5, 10], :8].astype(np.float64)


@pytest.fixture(scope="module")
def model():
    return Fingerprinter.load()


@pytest.fixture(scope="module")
def measured(model, espeak):
    return measure(model, tracks(espeak))


@pytest.mark.parametrize("key", list(FLOORS))
def test_hit_rate_floor(measured, key):
    assert measured[key] >= FLOORS[key], measured


def test_harder_conditions_score_lower(measured):
    """The set is not saturated: each condition can still fall, and noise hurts in order."""
    for m in ("window", "cosine"):
        assert measured[f"{m}/noise10"] > measured[f"{m}/noise0"]
    assert measured["snippet/clean"] >= measured["snippet/noise10"] >= measured["snippet/noise0"]
    assert max(measured[f"snippet/{c}"] for c in CONDITIONS[1:]) < 1.0


def test_fingerprint_checksum_of_a_fixed_wave(model):
    assert model.model_id in CHECKSUMS, (
        f"model {model.model_id} has no recorded checksum: a new model? measure it with "
        "`python tests/test_model_regression.py` and paste FLOORS and CHECKSUMS")
    np.testing.assert_allclose(checksum(model), np.asarray(CHECKSUMS[model.model_id]), atol=1e-3, rtol=0)


def main() -> int:
    import torch

    torch.set_num_threads(1)
    fp = Fingerprinter.load()
    values = measure(fp, tracks())
    floors = {k: round(max(0.0, min(v, 1.0 - 0.02) - MARGINS[k.split("/")[0]]), 3) for k, v in values.items()}
    print(f"# measured with model {fp.model_id}: " + ", ".join(f"{k} {v:.3f}" for k, v in values.items()))
    print("FLOORS = {" + ",\n          ".join(f'"{k}": {v:.3f}' for k, v in floors.items()) + "}")
    values = np.round(checksum(fp), 4).tolist()
    print(f'CHECKSUMS = {{"{fp.model_id}": {values}}}')
    return 0


if __name__ == "__main__":
    sys.exit(main())
