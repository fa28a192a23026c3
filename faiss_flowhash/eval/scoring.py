"""Scoring one query of the protocol: where database ids sit, the answer from the hits (the database's
identification path, or eq. 12-13 exactly), and the hit criterion (50 ms, exact repeats included)."""

from __future__ import annotations

from typing import Callable, Sequence

import numpy as np

from .conditions import TOLERANCE_S

__all__ = ["locate_from_counts", "consensus", "answer", "is_hit", "exact_repeats", "repeat_near"]


def locate_from_counts(counts: Sequence[int]) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """For a database whose ids run 0..N-1 track after track (``counts[t]`` windows of track t):
    a function ids (m,) -> (track (m,), window index in its track (m,)); -1, -1 for ids < 0 or >= N."""
    counts = np.asarray(counts, dtype=np.int64)
    ends = np.cumsum(counts)
    starts = ends - counts
    total = int(ends[-1]) if len(ends) else 0

    def locate(ids):
        ids = np.asarray(ids, dtype=np.int64)
        ok = (ids >= 0) & (ids < total)
        t = np.searchsorted(ends, np.where(ok, ids, 0), side="right")
        t = np.where(ok, t, -1)
        seg = np.where(ok, ids - starts[np.maximum(t, 0)], -1)
        return t, seg

    return locate


def consensus(tracks: np.ndarray, segs: np.ndarray, scores: np.ndarray) -> tuple[int, int, int]:
    """Offset consensus of eq. 12-13 over a query's per-segment hits, exactly as the paper writes it.

    tracks, segs, scores: (O, k) the track and window index of each segment's top-k hits (-1: none).
    Hit (o, j) votes for the query starting at window ``segs[o, j] - o`` of ``tracks[o, j]``; the
    start with the most votes wins (eq. 13; with k = 1 exactly the paper's rule), ties broken by the
    larger summed score, then the earlier segment. Returns (track, start window, votes); (-1, 0, 0)
    when no segment has a hit.
    """
    O = tracks.shape[0]
    o = np.broadcast_to(np.arange(O)[:, None], tracks.shape)
    ok = tracks >= 0
    if not ok.any():
        return -1, 0, 0
    t, st, sc = tracks[ok].astype(np.int64), (segs - o)[ok].astype(np.int64), scores[ok].astype(np.float64)
    keys, inv = np.unique(np.stack([t, st], 1), axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    votes = np.bincount(inv, minlength=len(keys))
    mass = np.bincount(inv, weights=sc, minlength=len(keys))
    best = np.lexsort((-mass, -votes))[0]
    return int(keys[best, 0]), int(keys[best, 1]), int(votes[best])


def answer(tracks, segs, scores, *, hop_s: float = 0.1, how: str = "db", tolerance_s: float = TOLERANCE_S,
           query=None, reference=None) -> dict:
    """The query's answer from its hits (O, k): {"track", "start_s", "votes", "confidence", "alternates"}.

    ``how="db"``: :func:`faiss_flowhash.db.identify.identify`, the database's path (vote, repeats,
    confidence, and offset refinement when ``query`` (O, d) and ``reference`` (a
    :class:`~faiss_flowhash.db.identify.ReferenceWindows`) are given). ``how="paper"``: :func:`consensus`
    (eq. 12-13 exactly, offsets on the hop grid, confidence 1 for any answer). track -1: no hit at all.
    """
    if how == "paper":
        t, start, votes = consensus(tracks, segs, scores)
        return {"track": t, "start_s": start * hop_s, "votes": votes, "confidence": float(t >= 0), "alternates": []}
    from ..db.identify import identify

    O = tracks.shape[0]
    found = identify(tracks, np.where(segs >= 0, segs, 0) * hop_s, scores, np.arange(O) * hop_s,
                     query=query if reference is not None else None, reference=reference, hop_s=hop_s,
                     tolerance_s=tolerance_s)
    if not found:
        return {"track": -1, "start_s": 0.0, "votes": 0, "confidence": 0.0, "alternates": []}
    m = found[0]
    return {"track": m.track_id, "start_s": m.offset_s, "votes": m.support, "confidence": m.confidence,
            "alternates": [a.offset_s for a in m.alternates]}


def is_hit(pred_track, pred_start_s, true_track, true_start_s, *, tolerance_s: float = TOLERANCE_S,
           repeats=()) -> np.ndarray:
    """Top-1 hit (section 4.2): right track and start within ``tolerance_s`` (50 ms) of the truth or of one
    of ``repeats`` (seconds: the exact repeats of the true segment in its track, :func:`exact_repeats`;
    scalar queries only)."""
    pred_track, true_track = np.asarray(pred_track), np.asarray(true_track)
    starts = np.asarray([true_start_s, *repeats], np.float64) if len(repeats) else np.asarray(true_start_s, np.float64)
    err = np.abs(np.asarray(pred_start_s, np.float64) - starts)
    if len(repeats):
        err = err.min()
    return (pred_track == true_track) & (err <= tolerance_s + 1e-9)


def _ncc_runs(w, seg, lo: int, hi: int, min_corr: float) -> list[int]:
    """Starts in [lo, hi] (samples) where ``seg`` recurs in ``w``: the maximum of each run of lags whose
    normalised cross-correlation with ``seg`` is >= ``min_corr``."""
    from scipy.signal import oaconvolve

    length = len(seg)
    seg_norm = np.linalg.norm(seg)
    if seg_norm == 0 or hi < lo:
        return []
    part = w[lo:hi + length]
    dots = oaconvolve(part, seg[::-1], mode="valid")  # (hi - lo + 1,)
    c2 = np.concatenate([[0.0], np.cumsum(part * part)])
    win_norm = np.sqrt(np.maximum(c2[length:] - c2[:-length], 0.0))
    ncc = dots / np.maximum(win_norm * seg_norm, 1e-12)
    above = ncc >= min_corr
    edges = np.flatnonzero(np.diff(np.r_[0, above.astype(np.int8), 0]))
    return [lo + a + int(np.argmax(ncc[a:b])) for a, b in zip(edges[::2], edges[1::2])]


def repeat_near(track_wave, start: int, length: int, at_s: float, *, min_corr: float = 0.95,
                sample_rate: int = 16000, tolerance_s: float = TOLERANCE_S, margin_s: float = 0.2) -> float | None:
    """The exact repeat of the segment ``[start, start + length)`` (samples) within ``tolerance_s`` of
    ``at_s`` (seconds: an answer), or None: :func:`exact_repeats` restricted to ``at_s`` +- (tolerance +
    ``margin_s``), so scoring one answer costs a correlation over ~0.5 s of lags, not the whole track.
    Same repeats as :func:`exact_repeats` unless a run of correlations >= ``min_corr`` is longer than the
    margin (then its maximum is taken inside the window)."""
    w = np.asarray(track_wave, dtype=np.float64)
    if w.ndim != 1 or not 0 <= start <= len(w) - length or length < 1:
        raise ValueError(f"start, length: expected a segment inside the track (T={len(w)}), got {start}, {length}")
    tol, at = int(round(tolerance_s * sample_rate)), int(round(at_s * sample_rate))
    pad = tol + int(round(margin_s * sample_rate))
    lo, hi = max(0, at - pad), min(len(w) - length, at + pad)
    for r in _ncc_runs(w, w[start:start + length], lo, hi, min_corr):
        if abs(r - start) > tol and abs(r - at) <= tol:
            return r / sample_rate
    return None


def exact_repeats(track_wave, start: int, length: int, *, min_corr: float = 0.95, sample_rate: int = 16000,
                  tolerance_s: float = TOLERANCE_S) -> list[float]:
    """Other starts (seconds) where the track repeats its segment ``[start, start + length)`` (samples):
    local maxima of the normalised cross-correlation >= ``min_corr`` more than ``tolerance_s`` away
    from ``start``. An answer landing on one of them is the same audio, so it counts as right."""
    w = np.asarray(track_wave, dtype=np.float64)
    if w.ndim != 1 or not 0 <= start <= len(w) - length or length < 1:
        raise ValueError(f"start, length: expected a segment inside the track (T={len(w)}), got {start}, {length}")
    tol = int(round(tolerance_s * sample_rate))
    runs = _ncc_runs(w, w[start:start + length], 0, len(w) - length, min_corr)
    return [r / sample_rate for r in runs if abs(r - start) > tol]
