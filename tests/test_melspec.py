"""Log-Mel front end: shapes, tone placement, batching, windowing."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from faiss_flowhash.audio.melspec import (
    LogMel,
    frame_windows,
    hz_to_mel,
    log_mel,
    mel_filterbank,
    mel_to_hz,
    num_windows,
    window_starts,
)


def test_one_second_window_is_64_by_100():
    x = torch.randn(16000)
    assert log_mel(x).shape == (64, 100)
    assert LogMel()(torch.randn(2, 3, 16000)).shape == (2, 3, 64, 100)


@pytest.mark.parametrize("mel_scale", ["htk", "slaney"])
@pytest.mark.parametrize("m", [5, 20, 40, 60])
def test_tone_lands_in_its_mel_bin(mel_scale, m):
    sr, n_mels = 16000, 64
    edges = mel_to_hz(np.linspace(hz_to_mel(0.0, mel_scale=mel_scale), hz_to_mel(sr / 2, mel_scale=mel_scale),
                                  n_mels + 2), mel_scale=mel_scale)
    freq = edges[m + 1]  # centre of filter m
    t = torch.arange(sr, dtype=torch.float64) / sr
    x = torch.sin(2 * np.pi * freq * t).float()
    spec = log_mel(x, mel_scale=mel_scale)
    assert int(spec.mean(-1).argmax()) == m


def test_filterbank_shape_and_scales():
    fb = mel_filterbank(n_fft=512, n_mels=40, sample_rate=8000, f_max=4000.0)
    assert fb.shape == (257, 40) and fb.dtype == torch.float32
    assert (fb.sum(0) > 0).all()
    for scale in ("htk", "slaney"):
        f = np.array([0.0, 100.0, 1000.0, 5000.0])
        np.testing.assert_allclose(mel_to_hz(hz_to_mel(f, mel_scale=scale), mel_scale=scale), f, atol=1e-6)
    with pytest.raises(ValueError, match="f_max"):
        mel_filterbank(n_fft=512, f_max=9000.0)


def test_batch_equals_per_item():
    x = torch.randn(5, 16000)
    y = log_mel(x)
    for i in range(5):
        torch.testing.assert_close(y[i], log_mel(x[i]), atol=1e-4, rtol=1e-5)


def test_frames_formula_and_errors():
    for T in (160, 5000, 16000, 16159, 32000):
        assert log_mel(torch.randn(T), pad_mode="constant").shape[-1] == T // 160
    with pytest.raises(TypeError):
        log_mel(np.zeros(16000))
    with pytest.raises(ValueError, match="hop_length"):
        log_mel(torch.randn(100))


def test_follows_input_dtype_and_device():
    x = torch.randn(16000, dtype=torch.float64)
    y = log_mel(x)
    assert y.dtype == torch.float64 and y.device == x.device
    torch.testing.assert_close(y.float(), log_mel(x.float()), atol=1e-3, rtol=1e-4)


@given(T=st.integers(0, 50000), window_s=st.sampled_from([0.5, 1.0, 2.0]), hop_s=st.sampled_from([0.05, 0.1, 0.3]))
def test_window_count_formula(T, window_s, hop_s):
    sr = 16000
    win, hop = int(round(window_s * sr)), int(round(hop_s * sr))
    expected = 0 if T < win else 1 + (T - win) // hop
    x = np.arange(T, dtype=np.float32)
    w = frame_windows(x, window_s=window_s, hop_s=hop_s)
    assert w.shape == (expected, win)
    assert num_windows(T, window_s=window_s, hop_s=hop_s) == expected
    starts = window_starts(T, window_s=window_s, hop_s=hop_s)
    assert starts.shape == (expected,)
    if expected:
        # window i starts at sample i * hop, i.e. at starts[i] seconds
        np.testing.assert_array_equal(w[:, 0], np.round(starts * sr))
        np.testing.assert_array_equal(w[-1], x[(expected - 1) * hop:(expected - 1) * hop + win])


def test_frame_windows_torch_matches_numpy():
    x = np.random.default_rng(1).standard_normal(40000).astype(np.float32)
    wt = frame_windows(torch.from_numpy(x))
    assert isinstance(wt, torch.Tensor) and wt.shape == (16, 16000)
    np.testing.assert_array_equal(wt.numpy(), frame_windows(x))
    assert frame_windows(torch.zeros(3)).shape == (0, 16000)
    with pytest.raises(TypeError):
        frame_windows([0.0] * 20000)
