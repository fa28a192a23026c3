"""Augmentations: exact SNR, offsets, reverb, the seeded Augmenter."""

import dataclasses

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from faiss_flowhash.audio.augment import (
    AugmentConfig,
    Augmenter,
    add_noise,
    apply_rir,
    prepare_rir,
    split_bank,
    time_offset,
)


def _snr_db(clean, mixed):
    clean = clean.astype(np.float64)
    noise = mixed.astype(np.float64) - clean
    return 10 * np.log10(np.mean(clean**2, -1) / np.mean(noise**2, -1))


def _decaying_rir(rng, rt60=0.4, sr=16000):
    t = np.arange(int(rt60 * sr)) / sr
    h = rng.standard_normal(t.size) * np.exp(-6.9078 * t / rt60)
    h[0] = 5.0
    return h


@given(snr=st.floats(-10, 40), noise_len=st.integers(100, 40000), seed=st.integers(0, 2**16))
def test_add_noise_hits_snr(snr, noise_len, seed):
    rng = np.random.default_rng(seed)
    clean = rng.standard_normal(16000).astype(np.float32) * rng.uniform(0.01, 1)
    noise = rng.standard_normal(noise_len).astype(np.float32) * rng.uniform(0.01, 10)
    mixed = add_noise(clean, noise, snr, rng=rng)
    assert mixed.shape == clean.shape and mixed.dtype == np.float32
    assert abs(_snr_db(clean, mixed) - snr) < 0.1


def test_add_noise_batched_snr_and_short_noise_tiles(rng):
    clean = rng.standard_normal((4, 3000))
    noise = np.sin(np.arange(700) / 5.0)
    snr = np.array([0.0, 5.0, 10.0, 20.0])
    mixed = add_noise(clean, noise, snr)
    np.testing.assert_allclose(_snr_db(clean, mixed), snr, atol=1e-3)
    added = mixed[0].astype(np.float64) - clean[0]
    np.testing.assert_allclose(added[:700], added[700:1400], atol=1e-5)  # tiled, period 700


def test_add_noise_errors(rng):
    with pytest.raises(ValueError, match="non-zero"):
        add_noise(rng.standard_normal(100), np.zeros(100), 10.0)
    with pytest.raises(ValueError, match="noise"):
        add_noise(rng.standard_normal((2, 100)), np.ones((3, 100)), 10.0)
    with pytest.raises(ValueError, match="snr_db"):
        add_noise(rng.standard_normal((2, 100)), np.ones(100), [1.0, 2.0, 3.0])
    assert not np.any(add_noise(np.zeros(100), rng.standard_normal(100), 0.0))  # silence stays silent


@given(offset_ms=st.integers(-60, 60))
def test_time_offset_shifts_samples(offset_ms):
    x = np.arange(1, 2001, dtype=np.float32)
    y = time_offset(x, offset_ms / 1000, sample_rate=16000)
    s = offset_ms * 16
    assert y.shape == x.shape
    if s >= 0:
        np.testing.assert_array_equal(y[s:], x[: len(x) - s])
        assert not y[:s].any()
    else:
        np.testing.assert_array_equal(y[: len(x) + s], x[-s:])
        assert not y[len(x) + s:].any()


def test_apply_rir_keeps_length_and_aligns(rng):
    x = np.zeros(4000)
    x[1000] = 1.0
    h = np.concatenate([np.zeros(37), _decaying_rir(rng)])
    y = apply_rir(x, h)
    assert y.shape == x.shape
    assert np.argmax(np.abs(y)) == 1000  # direct path aligned: no delay
    hp = prepare_rir(h)
    np.testing.assert_allclose(np.sum(hp**2), 1.0)
    np.testing.assert_allclose(y[1000:], hp[:3000], atol=1e-6)
    assert prepare_rir(h, normalize="direct")[0] == pytest.approx(1.0)
    z = apply_rir(rng.standard_normal((3, 16000)), h)  # energy norm keeps the power of white noise
    assert np.mean(z**2) == pytest.approx(1.0, rel=0.15)


def test_config_validation():
    with pytest.raises(ValueError, match="p_noise"):
        AugmentConfig(p_noise=1.5)
    with pytest.raises(ValueError, match="<= 1"):
        AugmentConfig(p_noise=0.5, p_reverb=0.5, p_noise_reverb=0.5)
    with pytest.raises(ValueError, match="snr_db_range"):
        AugmentConfig(snr_db_range=(20.0, 0.0))
    with pytest.raises(dataclasses.FrozenInstanceError):
        AugmentConfig().p_noise = 0.0
    with pytest.raises(ValueError, match="noises"):
        Augmenter([], [np.ones(10)])
    Augmenter([], [], config=AugmentConfig(p_noise=0, p_reverb=0, p_noise_reverb=0))


def _bank(rng):
    noises = [rng.standard_normal(int(n)).astype(np.float32) for n in rng.integers(3000, 40000, 6)]
    rirs = [_decaying_rir(rng, rt60) for rt60 in (0.2, 0.5, 0.8)]
    return noises, rirs


def test_augmenter_seeded_and_batched(rng):
    noises, rirs = _bank(rng)
    x = rng.standard_normal((32, 16000)).astype(np.float32)
    a, info = Augmenter(noises, rirs, seed=3)(x, return_info=True)
    b = Augmenter(noises, rirs, seed=3)(x)
    c = Augmenter(noises, rirs, seed=4)(x)
    assert a.shape == x.shape and a.dtype == np.float32
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert set(info["kind"]) <= {1, 2, 3} and len(set(info["kind"])) == 3
    assert np.all(np.abs(info["offset_samples"]) <= 800)
    noisy = np.isfinite(info["snr_db"])
    assert np.all((info["snr_db"][noisy] >= 0) & (info["snr_db"][noisy] <= 20))
    assert np.all((info["kind"] == 2) == ~noisy)


def test_augmenter_noise_only_hits_snr(rng):
    noises, _ = _bank(rng)
    cfg = AugmentConfig(p_noise=1.0, p_reverb=0.0, p_noise_reverb=0.0, p_offset=0.0, snr_db_range=(5.0, 15.0))
    x = rng.standard_normal((16, 8000)).astype(np.float32)
    y, info = Augmenter(noises, [], config=cfg, seed=0)(x, return_info=True)
    np.testing.assert_allclose(_snr_db(x, y), info["snr_db"], atol=0.05)


def test_augmenter_single_window_and_torch(rng):
    noises, rirs = _bank(rng)
    x = rng.standard_normal(16000).astype(np.float32)
    assert Augmenter(noises, rirs)(x).shape == (16000,)
    yt = Augmenter(noises, rirs, seed=1)(torch.from_numpy(x))
    assert isinstance(yt, torch.Tensor) and yt.shape == (16000,)
    np.testing.assert_array_equal(yt.numpy(), Augmenter(noises, rirs, seed=1)(x))
    with pytest.raises(ValueError, match="shape"):
        Augmenter(noises, rirs)(np.zeros((2, 2, 100)))


def test_split_bank_disjoint():
    train, ev = split_bank(list(range(10)), eval_fraction=0.3, seed=1)
    assert len(ev) == 3 and not set(train) & set(ev) and sorted(train + ev) == list(range(10))
    assert split_bank(list(range(10)), eval_fraction=0.3, seed=1) == (train, ev)


def test_augmenter_is_fast_enough_for_training(rng):
    import time

    noises, rirs = _bank(rng)
    aug = Augmenter(noises, rirs, seed=0)
    x = rng.standard_normal((128, 16000)).astype(np.float32)
    aug(x)  # warm the RIR spectrum cache
    t = time.perf_counter()
    aug(x)
    assert len(aug._rir_fft) == 1  # RIR spectra computed once per window length and reused (no wall-clock assert)
