"""Audio file input/output: decode to 16 kHz mono float32, resample, save, hash.

Decoding goes through ``soundfile`` (libsndfile: wav, flac, ogg/vorbis, opus, mp3),
resampling through ``soxr``. Every decoded signal is a float32 array of shape ``(T,)``
with samples in roughly ``[-1, 1]``.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

__all__ = [
    "AudioDecodeError",
    "load_audio",
    "resample",
    "save_audio",
    "audio_duration",
    "content_hash",
]

_SAVE_SUBTYPES = {".wav": "FLOAT", ".flac": "PCM_24"}


class AudioDecodeError(ValueError):
    """A file exists but does not hold usable audio (undecodable, empty, NaN/inf)."""

    def __init__(self, path: str | os.PathLike, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


def _check_path(path: str | os.PathLike) -> Path:
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected str or os.PathLike, got {type(path).__name__}")
    p = Path(path)
    if not p.exists():
        raise FileNotFoundError(f"{p}: no such file")
    if not p.is_file():
        raise AudioDecodeError(p, "not a regular file")
    return p


def _check_rate(name: str, sr) -> int:
    if isinstance(sr, bool) or not isinstance(sr, (int, np.integer)):
        raise TypeError(f"{name}: expected a positive int (Hz), got {type(sr).__name__}")
    if sr <= 0:
        raise ValueError(f"{name}: expected a positive int (Hz), got {sr}")
    return int(sr)


def resample(x: np.ndarray, orig_sr: int, new_sr: int, *, quality: str = "HQ") -> np.ndarray:
    """Resample ``x`` of shape ``(..., T)`` from ``orig_sr`` to ``new_sr`` Hz with soxr.

    Returns float32 of shape ``(..., round(T * new_sr / orig_sr))``. ``quality`` is a soxr
    quality name ("QQ", "LQ", "MQ", "HQ", "VHQ"). Equal rates return a float32 copy.
    """
    orig_sr = _check_rate("orig_sr", orig_sr)
    new_sr = _check_rate("new_sr", new_sr)
    x = np.asarray(x)
    if x.ndim == 0:
        raise ValueError("x: expected shape (..., T), got a scalar")
    x = np.ascontiguousarray(x, dtype=np.float32)
    if orig_sr == new_sr:
        return x.copy()
    lead = x.shape[:-1]
    frames = x.reshape(-1, x.shape[-1]).T  # (T, C): soxr wants frames first
    if frames.shape[0] == 0:
        return np.zeros(lead + (0,), dtype=np.float32)
    y = soxr.resample(np.ascontiguousarray(frames), orig_sr, new_sr, quality=quality)
    y = np.asarray(y, dtype=np.float32).reshape(-1, frames.shape[1]).T
    return np.ascontiguousarray(y.reshape(lead + (y.shape[-1],)))


def load_audio(
    path: str | os.PathLike,
    *,
    sample_rate: int = 16000,
    offset_s: float = 0.0,
    duration_s: float | None = None,
) -> np.ndarray:
    """Decode ``path`` to mono float32 of shape ``(T,)`` at ``sample_rate`` Hz.

    Channels are averaged (downmix); ``offset_s``/``duration_s`` (seconds, in the file's
    time) select a part without decoding the rest where the format allows seeking.

    Raises ``FileNotFoundError`` for a missing path and :class:`AudioDecodeError` (a
    ``ValueError`` carrying ``.path`` and ``.reason``) when the file does not decode, holds
    no samples, or holds NaN/inf.
    """
    p = _check_path(path)
    sample_rate = _check_rate("sample_rate", sample_rate)
    if offset_s < 0:
        raise ValueError(f"offset_s: expected >= 0 seconds, got {offset_s}")
    if duration_s is not None and duration_s <= 0:
        raise ValueError(f"duration_s: expected > 0 seconds or None, got {duration_s}")
    try:
        with sf.SoundFile(str(p)) as f:
            native_sr = f.samplerate
            start = int(round(offset_s * native_sr))
            frames = -1 if duration_s is None else int(round(duration_s * native_sr))
            if start:
                if f.seekable():
                    f.seek(min(start, max(f.frames, 0)))
                else:
                    f.read(start, dtype="float32", always_2d=True)
            data = f.read(frames, dtype="float32", always_2d=True)  # (T, C)
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError, EOFError) as e:
        if isinstance(e, FileNotFoundError):
            raise
        raise AudioDecodeError(p, f"cannot decode: {e}") from e
    if data.shape[0] == 0 or data.shape[1] == 0:
        raise AudioDecodeError(p, "no audio samples")
    if not np.isfinite(data).all():
        raise AudioDecodeError(p, "contains NaN or inf samples")
    mono = data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0]
    return resample(mono, native_sr, sample_rate)


def save_audio(
    path: str | os.PathLike,
    x: np.ndarray,
    sample_rate: int = 16000,
    *,
    subtype: str | None = None,
) -> None:
    """Write ``x`` of shape ``(T,)`` (or ``(C, T)``) at ``sample_rate`` Hz to a .wav or .flac.

    Default subtypes: wav -> 32-bit float (exact round trip), flac -> 24-bit PCM. PCM
    subtypes need samples in ``[-1, 1]``; larger values raise ``ValueError`` (clip first).
    """
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(f"path: expected str or os.PathLike, got {type(path).__name__}")
    sample_rate = _check_rate("sample_rate", sample_rate)
    suffix = Path(path).suffix.lower()
    if suffix not in _SAVE_SUBTYPES:
        raise ValueError(f"path: expected a .wav or .flac suffix, got {suffix!r}")
    x = np.asarray(x)
    if x.ndim not in (1, 2) or x.shape[-1] == 0:
        raise ValueError(f"x: expected shape (T,) or (C, T) with T > 0, got {x.shape}")
    x = np.asarray(x, dtype=np.float32)
    if not np.isfinite(x).all():
        raise ValueError("x: expected finite samples, found NaN or inf")
    subtype = subtype or _SAVE_SUBTYPES[suffix]
    if subtype.startswith("PCM") and np.abs(x).max() > 1.0:
        raise ValueError(
            f"x: expected samples in [-1, 1] for subtype {subtype}, got max |x| = {np.abs(x).max():.4g}"
        )
    sf.write(str(path), x.T if x.ndim == 2 else x, sample_rate, subtype=subtype)


def audio_duration(path: str | os.PathLike) -> float:
    """Duration of ``path`` in seconds, read from the header (no full decode).

    Raises ``FileNotFoundError`` or :class:`AudioDecodeError` like :func:`load_audio`.
    """
    p = _check_path(path)
    try:
        info = sf.info(str(p))
    except (sf.LibsndfileError, RuntimeError, TypeError, OSError) as e:
        raise AudioDecodeError(p, f"cannot read header: {e}") from e
    return float(info.frames) / float(info.samplerate) if info.samplerate else 0.0


def content_hash(path: str | os.PathLike, *, chunk_size: int = 1 << 20) -> str:
    """Hex sha256 of the file's bytes, read in ``chunk_size``-byte chunks."""
    p = _check_path(path)
    h = hashlib.sha256()
    with open(p, "rb") as f:
        for chunk in iter(lambda: f.read(chunk_size), b""):
            h.update(chunk)
    return h.hexdigest()
