"""Audio of any length as a stream of chunks (16 kHz mono float32), never the whole recording in memory.

Sources: a file path (any format ``soundfile`` reads, decoded block by block, resampled with a streaming
``soxr`` resampler), or a binary stream such as ``sys.stdin.buffer`` (``"-"`` on the command line)
carrying either a WAV file (PCM 16/24/32-bit or float 32/64, any rate and channel count: the header
says) or raw audio: signed 16-bit little-endian mono at 16 kHz (what ``ffmpeg -f s16le -ac 1 -ar 16000 -``
writes).
"""

from __future__ import annotations

import os
import struct
from typing import BinaryIO, Iterator

import numpy as np

from .io import AudioDecodeError

__all__ = ["audio_chunks", "RAW_FORMAT"]

#: What a headerless stream is taken to be.
RAW_FORMAT = "signed 16-bit little-endian mono PCM at 16 kHz"

_WAV_FLOAT, _WAV_PCM, _WAV_EXTENSIBLE = 3, 1, 0xFFFE


def _resampled(blocks: Iterator[np.ndarray], rate: int, sample_rate: int) -> Iterator[np.ndarray]:
    """Mono float32 blocks at ``rate`` -> at ``sample_rate`` (one streaming resampler, no seams)."""
    if rate == sample_rate:
        yield from blocks
        return
    import soxr

    rs = soxr.ResampleStream(rate, sample_rate, 1, dtype="float32", quality="HQ")
    for b in blocks:
        y = rs.resample_chunk(b)
        if len(y):
            yield y
    y = rs.resample_chunk(np.zeros(0, np.float32), last=True)
    if len(y):
        yield y


def _file_blocks(path: str, block: int) -> tuple[int, Iterator[np.ndarray]]:
    import soundfile as sf

    try:
        f = sf.SoundFile(path)
    except (sf.LibsndfileError, RuntimeError, TypeError) as e:
        raise AudioDecodeError(path, f"cannot decode: {e}") from e

    def gen():
        with f:
            while True:
                data = f.read(block, dtype="float32", always_2d=True)  # (n, C)
                if len(data) == 0:
                    return
                yield data.mean(axis=1, dtype=np.float32) if data.shape[1] > 1 else data[:, 0].copy()

    return f.samplerate, gen()


def _read_exact(stream: BinaryIO, n: int) -> bytes:
    out = b""
    while len(out) < n:
        b = stream.read(n - len(out))
        if not b:
            break
        out += b
    return out


def _wav_header(stream: BinaryIO, name: str) -> tuple[int, int, np.dtype, float, int | None]:
    """After b"RIFF": (rate, channels, sample dtype, scale, data bytes or None), stream left at the samples."""
    head = _read_exact(stream, 8)
    if len(head) < 8 or head[4:8] != b"WAVE":
        raise AudioDecodeError(name, "starts with RIFF but is not a WAV stream")
    fmt = None
    while True:
        chunk = _read_exact(stream, 8)
        if len(chunk) < 8:
            raise AudioDecodeError(name, "WAV stream ends before its data chunk")
        cid, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if cid == b"fmt ":
            body = _read_exact(stream, size + (size & 1))
            tag, channels, rate = struct.unpack("<HHI", body[:8])
            bits = struct.unpack("<H", body[14:16])[0]
            if tag == _WAV_EXTENSIBLE and len(body) >= 26:
                tag = struct.unpack("<H", body[24:26])[0]
            fmt = (tag, channels, rate, bits)
        elif cid == b"data":
            if fmt is None:
                raise AudioDecodeError(name, "WAV data chunk before its fmt chunk")
            tag, channels, rate, bits = fmt
            kinds = {(_WAV_PCM, 16): ("<i2", 2.0**15), (_WAV_PCM, 32): ("<i4", 2.0**31), (_WAV_PCM, 24): ("i24", 2.0**23),
                     (_WAV_FLOAT, 32): ("<f4", 1.0), (_WAV_FLOAT, 64): ("<f8", 1.0)}
            if (tag, bits) not in kinds or channels < 1 or rate < 1:
                raise AudioDecodeError(name, f"WAV format tag {tag} with {bits}-bit samples is not supported "
                                             "(expected PCM 16/24/32-bit or float 32/64-bit)")
            dtype, scale = kinds[(tag, bits)]
            # streams piped from a program often carry a placeholder size (0 or 0xFFFFFFFF): read to the end
            return rate, channels, dtype, scale, None if size in (0, 0xFFFFFFFF) else size
        else:
            _read_exact(stream, size + (size & 1))


def _stream_blocks(stream: BinaryIO, name: str, block: int) -> tuple[int, Iterator[np.ndarray]]:
    first = _read_exact(stream, 4)
    if first == b"RIFF":
        rate, channels, dtype, scale, remaining = _wav_header(stream, name)
        pending = b""
    else:
        rate, channels, dtype, scale, remaining = 16000, 1, "<i2", 2.0**15, None
        pending = first
    width = 3 if dtype == "i24" else np.dtype(dtype).itemsize
    frame = width * channels

    def gen():
        nonlocal pending, remaining
        while True:
            want = block * frame
            if remaining is not None:
                want = min(want, remaining)
            data = pending + (_read_exact(stream, want - len(pending)) if want > len(pending) else b"")
            pending = b""
            if remaining is not None:
                remaining -= len(data)
            usable = len(data) - len(data) % frame
            if usable == 0:
                return
            raw = data[:usable]
            if dtype == "i24":
                b = np.frombuffer(raw, np.uint8).reshape(-1, 3).astype(np.int32)
                x = (b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)) << 8 >> 8
            else:
                x = np.frombuffer(raw, dtype)
            x = (x.astype(np.float32) / np.float32(scale)).reshape(-1, channels)
            yield x.mean(axis=1, dtype=np.float32) if channels > 1 else x[:, 0]
            if usable < len(data) or (remaining is not None and remaining <= 0):
                return

    return rate, gen()


def audio_chunks(source, *, sample_rate: int = 16000, chunk_s: float = 10.0) -> Iterator[np.ndarray]:
    """Mono float32 chunks (about ``chunk_s`` seconds each, at ``sample_rate`` Hz) of ``source``.

    Args:
        source: a path (str / PathLike; "-" is not special here) or a binary stream with ``read(n)``
            (WAV or raw, see the module docstring).
        chunk_s: seconds read per step (10): memory stays at a few chunks whatever the length.

    Raises:
        FileNotFoundError for a missing path; AudioDecodeError (a ValueError) when it does not decode.
    """
    if not chunk_s > 0:
        raise ValueError(f"chunk_s: expected > 0 seconds, got {chunk_s}")
    if isinstance(source, (str, os.PathLike)):
        path = os.fspath(source)
        if not os.path.exists(path):
            raise FileNotFoundError(f"{path}: no such file")
        if os.path.isdir(path):
            raise AudioDecodeError(path, "is a directory, not an audio file")
        rate, blocks = _file_blocks(path, 1 << 15)
    elif hasattr(source, "read"):
        name = getattr(source, "name", "<stream>")
        rate, blocks = _stream_blocks(source, str(name), 1 << 15)
    else:
        raise TypeError(f"source: expected a path or a binary stream, got {type(source).__name__}")
    target = max(1, int(round(chunk_s * sample_rate)))
    buf, n = [], 0
    for b in _resampled(blocks, rate, sample_rate):
        if not np.isfinite(b).all():
            raise AudioDecodeError(getattr(source, "name", str(source)), "contains NaN or inf samples")
        buf.append(b)
        n += len(b)
        if n >= target:
            yield np.concatenate(buf)
            buf, n = [], 0
    if n:
        yield np.concatenate(buf)
