"""Fingerprint ids: ``id = track_id * 2**FRAME_BITS + frame`` (pure arithmetic, no per-fingerprint object).

Frame ``f`` of a track is the window starting at ``f * hop_s`` seconds, so the id alone says which
track and where. With ``FRAME_BITS = 24`` a track holds up to 16.7 M windows (19 days at a 100 ms hop)
and track ids go up to 2**39 - 1 while ids stay non-negative int64.
"""

import numpy as np

__all__ = ["FRAME_BITS", "MAX_FRAMES", "MAX_TRACK_ID", "encode_ids", "decode_ids", "track_id_range"]

FRAME_BITS = 24
MAX_FRAMES = 1 << FRAME_BITS
MAX_TRACK_ID = (1 << (63 - FRAME_BITS)) - 1


def _check_track(track_id) -> int:
    if isinstance(track_id, bool) or not isinstance(track_id, (int, np.integer)):
        raise TypeError(f"track_id: expected an int, got {type(track_id).__name__}")
    if not 0 <= track_id <= MAX_TRACK_ID:
        raise ValueError(f"track_id: expected in [0, {MAX_TRACK_ID}], got {track_id}")
    return int(track_id)


def encode_ids(track_id: int, n_frames: int) -> np.ndarray:
    """Ids of frames 0 .. n_frames-1 of ``track_id``: int64 (n_frames,), contiguous."""
    track_id = _check_track(track_id)
    if isinstance(n_frames, bool) or not isinstance(n_frames, (int, np.integer)) or not 0 <= n_frames <= MAX_FRAMES:
        raise ValueError(f"n_frames: expected an int in [0, {MAX_FRAMES}], got {n_frames!r}")
    return (np.int64(track_id) << FRAME_BITS) + np.arange(n_frames, dtype=np.int64)


def decode_ids(ids) -> tuple[np.ndarray, np.ndarray]:
    """(track ids, frames) of ``ids`` (any shape, int64); ``-1`` (FAISS padding) decodes to (-1, -1)."""
    ids = np.asarray(ids, dtype=np.int64)
    valid = ids >= 0
    track = np.where(valid, ids >> FRAME_BITS, -1)
    frame = np.where(valid, ids & (MAX_FRAMES - 1), -1)
    return track, frame


def track_id_range(track_id: int, n_frames: int) -> tuple[int, int]:
    """Half-open id range ``[first, last + 1)`` of a track's ``n_frames`` fingerprints."""
    first = _check_track(track_id) << FRAME_BITS
    return first, first + int(n_frames)
