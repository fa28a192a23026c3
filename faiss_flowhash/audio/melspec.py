"""Log-Mel front end and 1 s windowing (paper A.3: 64 mel bins x 100 frames per 1 s window).

Framing choice: ``torch.stft`` with ``center=False`` after padding ``n_fft - hop_length``
samples in total (split evenly between both ends, reflect mode). The frame count is then
exactly ``T // hop_length``: a 1 s window at 16 kHz with ``hop_length=160`` gives 100 frames,
frame ``i`` covering the 10 ms hop ``[i*hop, (i+1)*hop)`` at its centre. No cropping.

Mel scale: HTK (``2595 log10(1 + f/700)``) by default, Slaney optional; triangular filters
without area normalisation unless ``norm="slaney"``. Output is the natural log of mel power
clamped below at ``amin``.

Two implementations of the same arithmetic: :func:`log_mel` on torch tensors (training, GPUs) and
:func:`log_mel_numpy` on numpy arrays (CPU inference without importing torch); they agree to float32
rounding (``tests/test_encoder_numpy.py``). torch is imported at first use of the torch functions, and
``LogMel`` (an ``nn.Module``) is defined at first access.
"""

from __future__ import annotations

import functools
import math
import sys

import numpy as np

__all__ = [
    "hz_to_mel",
    "mel_to_hz",
    "mel_filterbank",
    "log_mel",
    "log_mel_numpy",
    "LogMel",
    "frame_windows",
    "window_starts",
    "num_windows",
]


# ----------------------------------------------------------------------------- mel scale

def hz_to_mel(f, *, mel_scale: str = "htk"):
    """Frequency in Hz (float or ndarray) to mels on the ``"htk"`` or ``"slaney"`` scale."""
    f = np.asarray(f, dtype=np.float64)
    if mel_scale == "htk":
        return 2595.0 * np.log10(1.0 + f / 700.0)
    if mel_scale == "slaney":
        f_sp, min_log_hz = 200.0 / 3, 1000.0
        min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
        lin = f / f_sp
        return np.where(f >= min_log_hz, min_log_mel + np.log(np.maximum(f, 1e-10) / min_log_hz) / logstep, lin)
    raise ValueError(f"mel_scale: expected 'htk' or 'slaney', got {mel_scale!r}")


def mel_to_hz(m, *, mel_scale: str = "htk"):
    """Inverse of :func:`hz_to_mel`."""
    m = np.asarray(m, dtype=np.float64)
    if mel_scale == "htk":
        return 700.0 * (10.0 ** (m / 2595.0) - 1.0)
    if mel_scale == "slaney":
        f_sp, min_log_hz = 200.0 / 3, 1000.0
        min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
        return np.where(m >= min_log_mel, min_log_hz * np.exp(logstep * (m - min_log_mel)), f_sp * m)
    raise ValueError(f"mel_scale: expected 'htk' or 'slaney', got {mel_scale!r}")


@functools.lru_cache(maxsize=32)
def _filterbank_np(n_fft, n_mels, sample_rate, f_min, f_max, mel_scale, norm) -> np.ndarray:
    n_freqs = n_fft // 2 + 1
    freqs = np.linspace(0.0, sample_rate / 2, n_freqs)  # (n_freqs,) Hz of each STFT bin
    m_pts = np.linspace(hz_to_mel(f_min, mel_scale=mel_scale), hz_to_mel(f_max, mel_scale=mel_scale), n_mels + 2)
    f_pts = mel_to_hz(m_pts, mel_scale=mel_scale)  # (n_mels + 2,) edges and centres
    f_diff = np.diff(f_pts)  # (n_mels + 1,)
    slopes = f_pts[None, :] - freqs[:, None]  # (n_freqs, n_mels + 2)
    down = -slopes[:, :-2] / f_diff[:-1]
    up = slopes[:, 2:] / f_diff[1:]
    fb = np.maximum(0.0, np.minimum(down, up))  # (n_freqs, n_mels)
    if norm == "slaney":
        fb *= (2.0 / (f_pts[2 : n_mels + 2] - f_pts[:n_mels]))[None, :]
    fb.setflags(write=False)
    return fb


def mel_filterbank(
    *,
    n_fft: int,
    n_mels: int = 64,
    sample_rate: int = 16000,
    f_min: float = 0.0,
    f_max: float | None = None,
    mel_scale: str = "htk",
    norm: str | None = None,
    as_numpy: bool = False,
):
    """Triangular mel filterbank, float32 tensor of shape ``(n_fft // 2 + 1, n_mels)``
    (a read-only float32 numpy array with ``as_numpy=True``).

    ``f_min``/``f_max`` in Hz (``f_max=None`` means ``sample_rate / 2``). ``mel_scale`` is
    ``"htk"`` (default) or ``"slaney"``; ``norm="slaney"`` divides each triangle by its
    width in Hz (constant area), ``None`` keeps unit peaks. Cached per argument set.
    """
    for name, v in (("n_fft", n_fft), ("n_mels", n_mels), ("sample_rate", sample_rate)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v <= 0:
            raise ValueError(f"{name}: expected a positive int, got {v!r}")
    f_max = sample_rate / 2 if f_max is None else float(f_max)
    if not 0.0 <= f_min < f_max <= sample_rate / 2:
        raise ValueError(f"f_min, f_max: expected 0 <= f_min < f_max <= {sample_rate / 2}, got {f_min}, {f_max}")
    if mel_scale not in ("htk", "slaney"):
        raise ValueError(f"mel_scale: expected 'htk' or 'slaney', got {mel_scale!r}")
    if norm not in (None, "slaney"):
        raise ValueError(f"norm: expected None or 'slaney', got {norm!r}")
    fb = _filterbank_np(int(n_fft), int(n_mels), int(sample_rate), float(f_min), f_max, mel_scale, norm)
    if as_numpy:
        return _filterbank_f32(int(n_fft), int(n_mels), int(sample_rate), float(f_min), f_max, mel_scale, norm)
    import torch

    return torch.from_numpy(fb.astype(np.float32))


@functools.lru_cache(maxsize=32)
def _filterbank_f32(*key) -> np.ndarray:
    fb = np.ascontiguousarray(_filterbank_np(*key), dtype=np.float32)
    fb.setflags(write=False)
    return fb


@functools.lru_cache(maxsize=8)
def _hann_numpy(win_length: int, n_fft: int) -> np.ndarray:
    """Periodic Hann window (torch.hann_window(periodic=True)), zero-padded to n_fft at its centre as torch.stft does."""
    n = np.arange(win_length, dtype=np.float64)
    w = (0.5 - 0.5 * np.cos(2.0 * np.pi * n / win_length)).astype(np.float32)
    left = (n_fft - win_length) // 2
    out = np.zeros(n_fft, np.float32)
    out[left : left + win_length] = w
    out.setflags(write=False)
    return out


@functools.lru_cache(maxsize=32)
def _cached_tensors(n_fft, win_length, n_mels, sample_rate, f_min, f_max, mel_scale, norm, device, dtype):
    import torch

    fb = mel_filterbank(
        n_fft=n_fft, n_mels=n_mels, sample_rate=sample_rate, f_min=f_min, f_max=f_max, mel_scale=mel_scale, norm=norm
    ).to(device=device, dtype=dtype)
    window = torch.hann_window(win_length, periodic=True, dtype=dtype, device=device)
    return fb, window


# ----------------------------------------------------------------------------- log-Mel

def log_mel(
    wave: torch.Tensor,
    *,
    sample_rate: int = 16000,
    n_fft: int = 1024,
    win_length: int | None = None,
    hop_length: int = 160,
    n_mels: int = 64,
    f_min: float = 0.0,
    f_max: float | None = None,
    mel_scale: str = "htk",
    norm: str | None = None,
    pad_mode: str = "reflect",
    amin: float = 1e-10,
):
    """Log-Mel spectrogram of ``wave`` ``(..., T)`` -> ``(..., n_mels, T // hop_length)``.

    Hann window of ``win_length`` samples (default ``n_fft``), power spectrum, mel
    projection, ``log(max(mel, amin))`` (natural log). ``T`` must exceed
    ``(n_fft - hop_length) // 2`` for ``pad_mode="reflect"`` (use ``"constant"`` for
    shorter inputs). Runs on ``wave``'s device and floating dtype (float32 if integer).
    Defaults map a 1 s window at 16 kHz to ``(64, 100)``.
    """
    import torch

    if not isinstance(wave, torch.Tensor):
        raise TypeError(f"wave: expected a torch.Tensor of shape (..., T), got {type(wave).__name__}")
    win_length, left, right = _check_framing(wave.shape, n_fft, win_length, hop_length, pad_mode)
    T = wave.shape[-1]
    if not wave.is_floating_point():
        wave = wave.float()
    lead = wave.shape[:-1]
    x = wave.reshape(-1, 1, T)  # (B, 1, T)
    x = torch.nn.functional.pad(x, (left, right), mode=pad_mode).squeeze(1)  # (B, T + pad)
    fb, window = _cached_tensors(
        n_fft, win_length, n_mels, sample_rate, float(f_min), f_max, mel_scale, norm, x.device, x.dtype
    )
    spec = torch.stft(
        x, n_fft=n_fft, hop_length=hop_length, win_length=win_length, window=window,
        center=False, return_complex=True,
    )  # (B, n_freqs, frames)
    power = spec.real.square() + spec.imag.square()
    mel = torch.matmul(fb.transpose(0, 1), power)  # (B, n_mels, frames)
    out = torch.log(torch.clamp(mel, min=amin))
    return out.reshape(lead + out.shape[-2:])


def _check_framing(shape, n_fft, win_length, hop_length, pad_mode) -> tuple[int, int, int]:
    """Checked framing of a wave of ``shape`` (..., T): (win_length, left pad, right pad)."""
    if len(shape) == 0:
        raise ValueError("wave: expected shape (..., T), got a scalar")
    win_length = n_fft if win_length is None else win_length
    if not 0 < win_length <= n_fft:
        raise ValueError(f"win_length: expected 0 < win_length <= n_fft={n_fft}, got {win_length}")
    if not 0 < hop_length <= n_fft:
        raise ValueError(f"hop_length: expected 0 < hop_length <= n_fft={n_fft}, got {hop_length}")
    if pad_mode not in ("reflect", "constant", "replicate"):
        raise ValueError(f"pad_mode: expected 'reflect', 'constant' or 'replicate', got {pad_mode!r}")
    T = shape[-1]
    pad = n_fft - hop_length
    left, right = pad // 2, pad - pad // 2
    if T < hop_length:
        raise ValueError(f"wave: expected at least hop_length={hop_length} samples, got T={T}")
    if pad_mode == "reflect" and T <= right:
        raise ValueError(f"wave: pad_mode='reflect' needs T > {right} samples, got T={T}; use pad_mode='constant'")
    return win_length, left, right


_NP_PAD = {"reflect": "reflect", "constant": "constant", "replicate": "edge"}


def log_mel_numpy(
    wave: np.ndarray,
    *,
    sample_rate: int = 16000,
    n_fft: int = 1024,
    win_length: int | None = None,
    hop_length: int = 160,
    n_mels: int = 64,
    f_min: float = 0.0,
    f_max: float | None = None,
    mel_scale: str = "htk",
    norm: str | None = None,
    pad_mode: str = "reflect",
    amin: float = 1e-10,
) -> np.ndarray:
    """:func:`log_mel` on a numpy array ``(..., T)`` -> float32 ``(..., n_mels, T // hop_length)``, no torch.

    Same framing, window, mel filters and clamp as :func:`log_mel`; the FFT is numpy's (float32), so the
    two agree to float32 rounding, not bit for bit."""
    if not isinstance(wave, np.ndarray):
        raise TypeError(f"wave: expected a np.ndarray of shape (..., T), got {type(wave).__name__}")
    win_length, left, right = _check_framing(wave.shape, n_fft, win_length, hop_length, pad_mode)
    T = wave.shape[-1]
    lead = wave.shape[:-1]
    x = np.asarray(wave, dtype=np.float32).reshape(-1, T)  # (B, T)
    x = np.pad(x, ((0, 0), (left, right)), mode=_NP_PAD[pad_mode])  # (B, T + pad)
    fb = mel_filterbank(n_fft=n_fft, n_mels=n_mels, sample_rate=sample_rate, f_min=f_min, f_max=f_max,
                        mel_scale=mel_scale, norm=norm, as_numpy=True)  # (n_freqs, n_mels)
    frames = np.lib.stride_tricks.sliding_window_view(x, n_fft, axis=-1)[:, ::hop_length]  # (B, frames, n_fft)
    window = _hann_numpy(win_length, n_fft)
    out = np.empty((x.shape[0], n_mels, frames.shape[1]), np.float32)
    for b in range(x.shape[0]):
        for lo in range(0, frames.shape[1], _FFT_BLOCK):  # blocks of frames: the FFT's buffers stay in cache
            spec = np.fft.rfft(frames[b, lo : lo + _FFT_BLOCK] * window, axis=-1)  # (f, n_freqs) complex64
            power = np.square(spec.real) + np.square(spec.imag)
            out[b, :, lo : lo + _FFT_BLOCK] = (power @ fb).T  # (n_mels, f)
    np.log(np.maximum(out, np.float32(amin)), out=out)
    return out.reshape(lead + out.shape[-2:])


_FFT_BLOCK = 256  # frames per FFT block in log_mel_numpy


def _log_mel_module():
    from torch import nn

    class LogMel(nn.Module):
        """Module form of :func:`log_mel`; holds the settings, no parameters.

        ``forward(wave (..., T)) -> (..., n_mels, T // hop_length)``.
        """

        def __init__(
            self,
            *,
            sample_rate: int = 16000,
            n_fft: int = 1024,
            win_length: int | None = None,
            hop_length: int = 160,
            n_mels: int = 64,
            f_min: float = 0.0,
            f_max: float | None = None,
            mel_scale: str = "htk",
            norm: str | None = None,
            pad_mode: str = "reflect",
            amin: float = 1e-10,
        ):
            super().__init__()
            self.kwargs = dict(
                sample_rate=sample_rate, n_fft=n_fft, win_length=win_length, hop_length=hop_length, n_mels=n_mels,
                f_min=f_min, f_max=f_max, mel_scale=mel_scale, norm=norm, pad_mode=pad_mode, amin=amin,
            )
            mel_filterbank(n_fft=n_fft, n_mels=n_mels, sample_rate=sample_rate, f_min=f_min, f_max=f_max,
                           mel_scale=mel_scale, norm=norm)  # validate now, not at first forward

        def forward(self, wave):
            return log_mel(wave, **self.kwargs)

        def extra_repr(self) -> str:
            return ", ".join(f"{k}={v}" for k, v in self.kwargs.items())

    return LogMel


# ----------------------------------------------------------------------------- windows

def _window_hop(sample_rate, window_s, hop_s) -> tuple[int, int]:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate: expected a positive int (Hz), got {sample_rate!r}")
    win, hop = int(round(window_s * sample_rate)), int(round(hop_s * sample_rate))
    if win <= 0 or hop <= 0:
        raise ValueError(f"window_s, hop_s: expected > 0 samples each, got {win} and {hop} samples")
    return win, hop


def num_windows(n_samples: int, *, sample_rate: int = 16000, window_s: float = 1.0, hop_s: float = 0.1) -> int:
    """Number of full windows: 0 if ``n_samples < window``, else ``1 + (n_samples - window) // hop``."""
    win, hop = _window_hop(sample_rate, window_s, hop_s)
    return 0 if n_samples < win else 1 + (n_samples - win) // hop


def frame_windows(wave, *, sample_rate: int = 16000, window_s: float = 1.0, hop_s: float = 0.1):
    """Cut ``wave`` ``(..., T)`` into full windows ``(..., n, window_samples)``.

    ``n = 0`` if ``T < window`` else ``1 + (T - window) // hop``; a trailing part shorter
    than a window is dropped. Accepts a torch tensor (returns a strided view on the same
    device) or a numpy array (returns a read-only view); copy before writing.
    """
    win, hop = _window_hop(sample_rate, window_s, hop_s)
    torch = sys.modules.get("torch")
    if torch is not None and isinstance(wave, torch.Tensor):
        if wave.ndim == 0:
            raise ValueError("wave: expected shape (..., T), got a scalar")
        if wave.shape[-1] < win:
            return wave.new_zeros(wave.shape[:-1] + (0, win))
        return wave.unfold(-1, win, hop)
    if isinstance(wave, np.ndarray):
        if wave.ndim == 0:
            raise ValueError("wave: expected shape (..., T), got a scalar")
        if wave.shape[-1] < win:
            return np.zeros(wave.shape[:-1] + (0, win), dtype=wave.dtype)
        return np.lib.stride_tricks.sliding_window_view(wave, win, axis=-1)[..., ::hop, :]
    raise TypeError(f"wave: expected a torch.Tensor or np.ndarray, got {type(wave).__name__}")


def window_starts(n_samples: int, *, sample_rate: int = 16000, window_s: float = 1.0, hop_s: float = 0.1) -> np.ndarray:
    """Start time in seconds (float64, shape ``(n,)``) of each window of :func:`frame_windows`."""
    win, hop = _window_hop(sample_rate, window_s, hop_s)
    n = num_windows(n_samples, sample_rate=sample_rate, window_s=window_s, hop_s=hop_s)
    return np.arange(n, dtype=np.float64) * hop / sample_rate


def __getattr__(name):
    if name == "LogMel":  # an nn.Module: defined (and torch imported) at first access
        cls = _log_mel_module()
        cls.__module__, cls.__qualname__ = __name__, "LogMel"
        globals()["LogMel"] = cls
        return cls
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
