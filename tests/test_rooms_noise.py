"""Simulated rooms, generated noises and synthetic test signals."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from faiss_flowhash.audio import noise as noise_mod
from faiss_flowhash.audio.noise import NOISE_KINDS, babble, coloured_noise, noise_bank, speech_shaped_noise
from faiss_flowhash.audio.rooms import measure_rt60, rir_bank, simulate_rir
from faiss_flowhash.audio.synth import (
    EspeakUnavailableError,
    chirp,
    espeak_available,
    speech,
    synthetic_music,
    tone,
)

needs_espeak = pytest.mark.skipif(not espeak_available(), reason="espeak-ng not installed")


# ----------------------------------------------------------------------------- rooms

@pytest.mark.parametrize("method", ["pra", "synthetic"])
@pytest.mark.parametrize("rt60", [0.2, 0.5, 0.8])
def test_rir_rt60_roughly_as_requested(method, rt60):
    if method == "pra":
        pytest.importorskip("pyroomacoustics")
    for seed in range(3):
        h = simulate_rir(rt60, rng=np.random.default_rng(seed), method=method)
        assert h.dtype == np.float32 and h.ndim == 1 and np.max(np.abs(h)) == pytest.approx(1.0)
        assert measure_rt60(h) == pytest.approx(rt60, rel=0.25)


def test_measure_rt60_on_ideal_decay(rng):
    sr, rt60 = 16000, 0.6
    t = np.arange(int(sr * rt60 * 1.5)) / sr
    h = rng.standard_normal(t.size) * 10 ** (-3 * t / rt60)
    assert measure_rt60(h, sr) == pytest.approx(rt60, rel=0.05)
    assert measure_rt60(h, sr, decay_db=30) == pytest.approx(rt60, rel=0.05)
    with pytest.raises(ValueError, match="decay"):
        measure_rt60(np.ones(100))


def test_rir_bank_deterministic_and_split_disjoint():
    tr, params = rir_bank(7, 4, split="train", return_params=True)
    ev = rir_bank(7, 4, split="eval")
    again = rir_bank(7, 4, split="train")
    assert len(tr) == len(ev) == 4 and all(0.2 <= p["rt60_s"] <= 0.8 for p in params)
    for a, b in zip(tr, again):
        np.testing.assert_array_equal(a, b)
    for a in tr:
        assert not any(a.shape == b.shape and np.array_equal(a, b) for b in ev)
    with pytest.raises(ValueError, match="split"):
        rir_bank(0, 1, split="test")


def test_simulate_rir_errors():
    with pytest.raises(ValueError, match="rt60_s"):
        simulate_rir(0.0)
    with pytest.raises(ValueError, match="room_dim"):
        simulate_rir(0.5, room_dim=[1.0, 2.0])
    with pytest.raises(ValueError, match="method"):
        simulate_rir(0.5, method="ray")


# ----------------------------------------------------------------------------- noise

@pytest.mark.parametrize("exponent", [0.0, 1.0, 2.0])
def test_coloured_noise_slope(exponent):
    x = coloured_noise(2**15, exponent=exponent, rng=np.random.default_rng(1))
    assert x.dtype == np.float32 and np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-4)
    f = np.fft.rfftfreq(x.size)
    p = np.abs(np.fft.rfft(x)) ** 2
    sel = (f > 0.002) & (f < 0.45)
    slope = np.polyfit(np.log(f[sel]), np.log(p[sel]), 1)[0]
    assert slope == pytest.approx(-exponent, abs=0.15)


@given(n=st.integers(1, 3000), kind=st.sampled_from([k for k in NOISE_KINDS if k != "babble"]))
def test_noise_kinds_unit_rms_finite(n, kind):
    x = noise_bank(0, 1, kinds=(kind,), duration_s=n / 16000)[0]
    assert x.shape == (n,) and x.dtype == np.float32 and np.isfinite(x).all()
    assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)


def test_noise_bank_deterministic_and_split_disjoint():
    kinds = ("white", "pink", "hum_clatter", "traffic")
    tr = noise_bank(3, 4, split="train", duration_s=0.5, kinds=kinds)
    ev = noise_bank(3, 4, split="eval", duration_s=0.5, kinds=kinds)
    again = noise_bank(3, 4, split="train", duration_s=0.5, kinds=kinds)
    for a, b in zip(tr, again):
        np.testing.assert_array_equal(a, b)
    for a in tr:
        assert not any(np.array_equal(a, b) for b in ev)
    with pytest.raises(ValueError, match="kinds"):
        noise_bank(0, 1, kinds=("rain",))


@needs_espeak
def test_babble_with_espeak():
    x = babble(16000, n_talkers=3, rng=np.random.default_rng(0))
    assert x.shape == (16000,) and np.isfinite(x).all()
    assert np.sqrt(np.mean(x.astype(np.float64) ** 2)) == pytest.approx(1.0, rel=1e-3)
    np.testing.assert_array_equal(x, babble(16000, n_talkers=3, rng=np.random.default_rng(0)))


def test_babble_falls_back_without_espeak(monkeypatch):
    monkeypatch.setattr(noise_mod, "espeak_available", lambda: False)
    with pytest.warns(RuntimeWarning, match="espeak-ng"):
        x = babble(8000, rng=np.random.default_rng(0))
    np.testing.assert_array_equal(x, speech_shaped_noise(8000, rng=np.random.default_rng(0)))
    with pytest.raises(EspeakUnavailableError):
        babble(8000, require_espeak=True)


# ----------------------------------------------------------------------------- synth

def _peak_hz(x, sr=16000):
    return np.argmax(np.abs(np.fft.rfft(x * np.hanning(x.size)))) * sr / x.size


def test_tone_and_chirp():
    x = tone(1234.0, 0.5)
    assert x.shape == (8000,) and x.dtype == np.float32 and _peak_hz(x) == pytest.approx(1234, abs=3)
    c = chirp(200.0, 4000.0, 1.0)
    assert _peak_hz(c[:1600]) < 800 and _peak_hz(c[-1600:]) > 3000
    cl = chirp(200.0, 4000.0, 1.0, method="log")
    assert _peak_hz(cl[7200:8800]) == pytest.approx(200 * 20**0.5, rel=0.1)  # geometric midpoint
    with pytest.raises(ValueError, match="freq_hz"):
        tone(9000.0, 1.0)


def test_synthetic_music_seeded_and_distinct():
    a = synthetic_music(3.0, seed=1)
    assert a.shape == (48000,) and a.dtype == np.float32 and np.max(np.abs(a)) == pytest.approx(0.9)
    np.testing.assert_array_equal(a, synthetic_music(3.0, seed=1))
    b = synthetic_music(3.0, seed=2)
    corr = np.corrcoef(a, b)[0, 1]
    assert abs(corr) < 0.2


@needs_espeak
def test_speech():
    x = speech("hello world", voice="en+f3", sample_rate=16000)
    assert x.dtype == np.float32 and 0.3 * 16000 < x.size < 3 * 16000 and np.abs(x).max() > 0.01
    with pytest.raises(ValueError, match="voice"):
        speech("hello", voice="zz-nonexistent")
