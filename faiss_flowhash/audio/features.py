"""Encoder input features: the log-Mel frames (64 x 100) of each 1 s window, cut from the signal's log-Mel.

A window's 100 frames are the frames of the whole signal's log-Mel that fall in it, so a frame near a
window edge sees the real neighbouring audio (30 ms of context each side), not reflect padding, and
fingerprinting a track computes its spectrogram once instead of once per overlapping window (10x less
work at a 100 ms hop). Only the signal's two ends are reflect-padded. Training computes the same
features from windows cut with ``CONTEXT`` samples of context each side (``window_features``).
``signal_features`` runs on torch (any device), ``signal_features_numpy`` computes the same frames with
numpy (CPU inference without importing torch).
"""

from __future__ import annotations

import numpy as np

from .melspec import log_mel, log_mel_numpy

__all__ = ["FRONTEND", "CONTEXT", "WINDOW", "window_features", "pad_signal", "signal_features",
           "signal_features_numpy"]

# The log-Mel settings the encoders are trained with (melspec.log_mel's defaults); stored in model files.
# "context": samples of real audio each side of a window that its edge frames see.
FRONTEND = {"sample_rate": 16000, "n_mels": 64, "n_fft": 1024, "hop_length": 160, "window_s": 1.0, "context": 480}
WINDOW = 16000  # samples per window
_HOP = FRONTEND["hop_length"]
_FRAMES = WINDOW // _HOP  # 100 frames per window
_CTX_FRAMES = -(-(FRONTEND["n_fft"] - _HOP) // 2 // _HOP)  # 3: frames whose STFT reaches past the window edge
CONTEXT = _CTX_FRAMES * _HOP  # 480 samples of context each side
assert CONTEXT == FRONTEND["context"]


_MEL_KW = {"sample_rate": FRONTEND["sample_rate"], "n_mels": FRONTEND["n_mels"], "n_fft": FRONTEND["n_fft"],
           "hop_length": _HOP}


def _mel(x):
    return log_mel(x, **_MEL_KW)


def window_features(x):
    """Windows with context (B, CONTEXT + 16000 + CONTEXT) -> encoder input (B, 64, 100)."""
    if x.ndim != 2 or x.shape[1] != WINDOW + 2 * CONTEXT:
        raise ValueError(f"x: expected shape (B, {WINDOW + 2 * CONTEXT}), got {tuple(x.shape)}")
    return _mel(x)[..., _CTX_FRAMES : _CTX_FRAMES + _FRAMES]  # (B, 64, 100)


def pad_signal(wave: np.ndarray) -> np.ndarray:
    """wave (T,) -> (T + 2 * CONTEXT,) reflect-padded (zero-padded if T is too short to reflect)."""
    mode = "reflect" if len(wave) > CONTEXT else "constant"
    return np.pad(wave, CONTEXT, mode=mode)


def signal_features(padded: np.ndarray, first: int, n: int, hop: int, device="cpu"):
    """Encoder inputs (n, 64, 100) of windows first .. first+n-1 (every ``hop`` samples) of a signal.

    padded: the signal after ``pad_signal`` (T + 2 * CONTEXT,). When hop is a whole number of log-Mel
    frames (a multiple of 160 samples) the chunk's log-Mel is computed once and sliced; otherwise each
    window's context chunk is transformed on its own. Both give the same frames.
    """
    import torch

    span = WINDOW + 2 * CONTEXT
    chunk = padded[first * hop : first * hop + (n - 1) * hop + span]
    x = torch.from_numpy(np.array(chunk, dtype=np.float32)).to(device)
    if hop % _HOP:
        return window_features(x.unfold(0, span, hop))  # (n, 64, 100)
    mel = _mel(x)  # (64, frames)
    step = hop // _HOP
    mel = mel[:, _CTX_FRAMES : _CTX_FRAMES + (n - 1) * step + _FRAMES]
    return mel.unfold(1, _FRAMES, step).permute(1, 0, 2)  # (n, 64, 100)


def signal_features_numpy(padded: np.ndarray, first: int, n: int, hop: int) -> np.ndarray:
    """:func:`signal_features` in numpy: encoder inputs float32 (n, 64, 100), no torch."""
    span = WINDOW + 2 * CONTEXT
    chunk = np.asarray(padded[first * hop : first * hop + (n - 1) * hop + span], dtype=np.float32)
    if hop % _HOP:
        windows = np.lib.stride_tricks.sliding_window_view(chunk, span)[::hop]  # (n, span)
        return log_mel_numpy(windows, **_MEL_KW)[..., _CTX_FRAMES : _CTX_FRAMES + _FRAMES]  # (n, 64, 100)
    mel = log_mel_numpy(chunk, **_MEL_KW)  # (64, frames)
    step = hop // _HOP
    mel = mel[:, _CTX_FRAMES : _CTX_FRAMES + (n - 1) * step + _FRAMES]
    out = np.lib.stride_tricks.sliding_window_view(mel, _FRAMES, axis=1)[:, ::step]  # (64, n, 100)
    return np.ascontiguousarray(out.transpose(1, 0, 2))  # (n, 64, 100)
