"""Regression set for the shipped fingerprint model: hit rate per condition, and its fingerprint of a fixed wave.

16 generated tracks of 12 s (11 synthetic music, 4 espeak-ng speech, 1 chirp) are fingerprinted clean into a
FlowHashIndex with the model's own quantizer (default probing). Each track is also distorted as a whole
(noise 10 dB, noise 0 dB, reverb RT60 0.5 s: eval-split noises and rooms) and fingerprinted once; a snippet
of 1, 2 or 3 s is a slice of those rows (the real query path fingerprints the snippet on its own: only the
3 + 3 edge log-Mel frames differ). 120 snippets per condition vote for (track, start) with the paper's offset
consensus (every top-5 hit of window o votes for start = its frame - o); a hit is the right track and
start. Floors: the hit rate measured with the shipped model minus 5 points (0.05; at most 1.0 - 0.02).

The checksum: the model's fingerprint of a fixed generated wave, 24 values compared at 1e-3, keyed by model
id, so a front-end change the model id does not see (log-Mel htk -> slaney, n_fft, f_max, ...) fails.

After shipping a new model, measure and paste the printed FLOORS / CHECKSUMS lines over the ones below:

    python tests/test_model_regression.py
"""

import sys

import numpy as np
import pytest

from faiss_flowhash import FlowHashIndex
from faiss_flowhash.audio import Fingerprinter, add_noise, apply_rir, noise_bank, rir_bank, synth

SR = 16000
TRACK_S = 12.0
N_PER_CONDITION = 120
LENGTHS_S = (1.0, 2.0, 3.0)
TOP_K = 5  # hits per window that vote, as the database does
MARGIN = 0.05
CONDITIONS = ("clean", "noise10", "noise0", "reverb")

# measured with model 063ef8c90201e4ef (python tests/test_model_regression.py); floors = measured - MARGIN
# (measured: clean 1.000, noise10 0.917, noise0 0.700, reverb 0.875)
FLOORS = {"clean": 0.930, "noise10": 0.867, "noise0": 0.650, "reverb": 0.825}
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


def hit_rates(fp: Fingerprinter, waves: list[np.ndarray]) -> dict[str, float]:
    """Hit rate per condition (see the module docstring)."""
    clean = [fp.fingerprint(x) for x in waves]
    n_windows = [len(e) for e in clean]
    first = np.concatenate([[0], np.cumsum(n_windows)[:-1]])
    index = FlowHashIndex(fp.dim, quantizer=fp.quantizer)
    index.add_with_ids(np.concatenate(clean), np.arange(sum(n_windows)))
    owner = np.repeat(np.arange(len(waves)), n_windows)
    rates = {}
    for c, condition in enumerate(CONDITIONS):
        emb = [fp.fingerprint(x) for x in distort(waves, condition)]
        D, I = index.search(np.concatenate(emb), TOP_K)  # every window of every distorted track, once
        tr = np.where(I >= 0, owner[np.maximum(I, 0)], -1)
        fr = np.where(I >= 0, I - first[np.maximum(tr, 0)], 0)
        hits = []
        for t, s, L in snippets(n_windows, seed=100 + c):
            rows = slice(first[t] + s, first[t] + s + L)
            hits.append(vote(tr[rows], fr[rows], D[rows]) == (t, s))
        rates[condition] = float(np.mean(hits))
    return rates


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
    return hit_rates(model, tracks(espeak))


@pytest.mark.parametrize("condition", CONDITIONS)
def test_hit_rate_floor(measured, condition):
    assert measured[condition] >= FLOORS[condition], measured


def test_harder_conditions_score_lower(measured):
    """The set is not saturated: each condition can still fall, and noise hurts in order."""
    assert measured["clean"] >= measured["noise10"] >= measured["noise0"]
    assert measured["noise0"] < 0.9 and measured["reverb"] < 1.0


def test_fingerprint_checksum_of_a_fixed_wave(model):
    assert model.model_id in CHECKSUMS, (
        f"model {model.model_id} has no recorded checksum: a new model? measure it with "
        "`python tests/test_model_regression.py` and paste FLOORS and CHECKSUMS")
    np.testing.assert_allclose(checksum(model), np.asarray(CHECKSUMS[model.model_id]), atol=1e-3, rtol=0)


def main() -> int:
    import torch

    torch.set_num_threads(1)
    fp = Fingerprinter.load()
    rates = hit_rates(fp, tracks())
    floors = {c: round(max(0.0, min(rates[c], 1.0 - 0.02) - MARGIN), 3) for c in CONDITIONS}
    print(f"# measured with model {fp.model_id}: " + ", ".join(f"{c} {rates[c]:.3f}" for c in CONDITIONS))
    print("FLOORS = {" + ", ".join(f'"{c}": {floors[c]:.3f}' for c in CONDITIONS) + "}")
    values = np.round(checksum(fp), 4).tolist()
    print(f'CHECKSUMS = {{"{fp.model_id}": {values}}}')
    return 0


if __name__ == "__main__":
    sys.exit(main())
