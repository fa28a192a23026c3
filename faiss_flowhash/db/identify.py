"""Hits -> matches: the one identification path of the database, the calibration and the evaluation.

A snippet is cut into segments (1 s windows every hop); each segment's top-k hits are reference
windows (track, time in the track). :func:`identify` votes on (track, start) over every hit
(:mod:`faiss_flowhash.db.consensus`), keeps per track the best start and every other start that
scores almost as well (a repeated passage: a chorus, a loop), refines the offsets against the
track's stored windows, and rates the *track* decision (this track against the best other track):

1. vote: ``votes(t, c) = sum_o max { score(o, j) : track(o, j) = t, |start(o, j) - c| <= tol }`` on a
   grid of ``tol`` (50 ms) seconds, one vote per segment and cell;
2. peaks: per track, cells in order of votes; a cell is an occurrence when its votes reach
   ``repeat_ratio`` (0.9) x the track's best and it lies more than ``3 tol`` from every occurrence
   already taken (neighbouring cells are the same peak);
3. offsets: :func:`~faiss_flowhash.db.consensus.refine_offset` (sub-hop parabola) for every occurrence
   when the query's fingerprints and the reference windows are given;
4. confidence of the track decision. With the fingerprints and reference windows (the database's queries):
   :func:`~faiss_flowhash.db.consensus.verified_confidence` on every segment's similarity with the track's
   window at the best occurrence's refined alignment and its margin over the segment's best hit of another
   track (so equal repeats of the track do not lower it). Without them (hits only, or ``verify=False``):
   :func:`~faiss_flowhash.db.consensus.match_confidence` on the track's evidence, where a segment counts
   once if it agrees with *any* of the track's occurrences, against the best other track's evidence
   counted the same way. The two have their own thresholds (``DEFAULT_MIN_CONFIDENCE`` and
   ``HITS_MIN_CONFIDENCE``).

Reference windows come as one array: :class:`ReferenceWindows` (fingerprints of every track, rows in
time order) or any object with the same ``take(tracks, frames) -> (m, d)`` method; ``identify`` calls it
once with every window the refinement needs. Pure numpy; no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .consensus import (DEFAULT_SIM_CEIL, DEFAULT_SIM_FLOOR, Candidate, check_hits, impostor_scores,
                        match_confidence, refine_offset, verified_confidence, vote_cells)

__all__ = ["Occurrence", "TrackMatch", "ReferenceWindows", "identify", "DEFAULT_REPEAT_RATIO", "MAX_ALTERNATES"]

#: An occurrence of a track whose votes reach this share of the track's best is reported as an alternate.
DEFAULT_REPEAT_RATIO = 0.9
#: At most this many alternates per match.
MAX_ALTERNATES = 8


@dataclass(frozen=True)
class Occurrence:
    """A place in a track where the snippet fits: ``offset_s`` seconds, ``score`` (votes / segments)."""

    offset_s: float
    score: float


@dataclass(frozen=True)
class TrackMatch:
    """One track's answer.

    Attributes:
        track_id: the track (the caller's numbering).
        offset_s: start of the snippet in the track, seconds (>= 0), of the best occurrence.
        score: votes of the best occurrence / segments: mean agreeing similarity, 0 for disagreeing segments.
        confidence: in [0, 1], of the track decision (see module docstring).
        support: segments that agree with the best occurrence.
        alternates: the other occurrences (repeats) scoring >= repeat_ratio x the best, best first.
    """

    track_id: int
    offset_s: float
    score: float
    confidence: float
    support: int
    alternates: tuple = ()

    @property
    def occurrences(self) -> tuple:
        """Every place the snippet fits, best first (the best occurrence, then the alternates)."""
        return (Occurrence(self.offset_s, self.score),) + tuple(self.alternates)


class ReferenceWindows:
    """Stored fingerprints of reference tracks in one array: track ``t``'s windows are rows
    ``first_row[t] .. first_row[t] + n_windows[t] - 1`` of ``vectors``, frame after frame.

    Args:
        vectors: (N, d) float fingerprints.
        first_row, n_windows: (T,) int, indexed by track id (track ids are 0 .. T-1).
    """

    def __init__(self, vectors, first_row, n_windows):
        self.vectors = np.asarray(vectors)
        self.first_row = np.asarray(first_row, dtype=np.int64)
        self.n_windows = np.asarray(n_windows, dtype=np.int64)
        if self.vectors.ndim != 2:
            raise ValueError(f"vectors: expected shape (N, d), got {self.vectors.shape}")
        if self.first_row.shape != self.n_windows.shape or self.first_row.ndim != 1:
            raise ValueError(f"first_row, n_windows: expected equal shapes (T,), got {self.first_row.shape}, "
                             f"{self.n_windows.shape}")
        if len(self.first_row) and (self.first_row + self.n_windows).max() > len(self.vectors):
            raise ValueError(f"first_row + n_windows: expected rows within the {len(self.vectors)} vectors")

    @classmethod
    def from_tracks(cls, per_track) -> "ReferenceWindows":
        """From a list of (n_t, d) arrays, track t = item t (concatenated once)."""
        per_track = list(per_track)
        counts = np.array([len(x) for x in per_track], np.int64)
        first = np.cumsum(counts) - counts
        d = per_track[0].shape[1] if per_track else 0
        vectors = np.concatenate(per_track) if per_track else np.zeros((0, d), np.float32)
        return cls(vectors, first, counts)

    def take(self, tracks, frames) -> np.ndarray:
        """Windows (m, d) float32 of (track, frame) pairs (m,); NaN rows where the track has no such frame."""
        tracks, frames = np.asarray(tracks, np.int64), np.asarray(frames, np.int64)
        ok = (tracks >= 0) & (tracks < len(self.first_row))
        t = np.where(ok, tracks, 0)
        ok &= (frames >= 0) & (frames < self.n_windows[t])
        out = np.full((len(tracks), self.vectors.shape[1]), np.nan, np.float32)
        out[ok] = self.vectors[self.first_row[t[ok]] + frames[ok]]
        return out


def _peaks(offsets: np.ndarray, votes: np.ndarray, best: int, ratio: float, min_sep: float, limit: int) -> list[int]:
    """Indices of the occurrences among one track's cells (module docstring, step 2): ``best`` first."""
    strong = np.flatnonzero(votes >= ratio * votes[best])
    order = strong[np.lexsort((offsets[strong], -votes[strong]))]
    taken = [int(best)]
    for i in order:
        if len(taken) > limit:
            break
        if min(abs(offsets[i] - offsets[j]) for j in taken) > min_sep:
            taken.append(int(i))
    return taken


def identify(
    tracks,
    times,
    scores,
    segment_times,
    *,
    query=None,
    reference=None,
    hop_s: float = 0.1,
    top: int = 1,
    min_confidence: float = 0.0,
    tolerance_s: float = 0.05,
    repeat_ratio: float = DEFAULT_REPEAT_RATIO,
    sim_floor: float = DEFAULT_SIM_FLOOR,
    sim_ceil: float = DEFAULT_SIM_CEIL,
    margin_weight: float = 0.3,
    min_segments: int = 3,
    verify: bool = True,
) -> list[TrackMatch]:
    """Ranked matches of a snippet from its per-segment hits (see the module docstring).

    Args:
        tracks: (n_segments, k) int track id of each hit, -1 for padding (ignored).
        times: (n_segments, k) seconds into the track where each hit's window starts.
        scores: (n_segments, k) hit similarity (inner product; higher is better).
        segment_times: (n_segments,) seconds into the snippet where each segment starts.
        query: (n_segments, d) the snippet's fingerprints, segment i starting at i * hop_s; with
            ``reference``, offsets are refined (sub-hop). None: the vote's offsets.
        reference: :class:`ReferenceWindows` or any object with ``take(tracks (m,), frames (m,)) -> (m, d)``
            (NaN rows for frames a track lacks); called once.
        hop_s: frame hop of the reference windows, seconds (0.1).
        top: tracks returned at most (1). min_confidence: drop tracks below it (0: keep all).
        tolerance_s: vote tolerance and grid step (0.05 s). repeat_ratio: alternates' share of the best (0.9).
        sim_floor, sim_ceil, margin_weight, min_segments: evidence ramp and hits-only confidence (calibrated
            defaults); sim_floor is also the floor of the verified confidence's margin.
        verify: with ``query`` and ``reference``, rate the track decision by
            :func:`~faiss_flowhash.db.consensus.verified_confidence` (True, the default); False: the hits-only
            :func:`~faiss_flowhash.db.consensus.match_confidence` (what a query without them gets).

    Returns:
        :class:`TrackMatch` list, best track first (one per track), at most ``top``.
    """
    tracks, times, scores, segment_times = check_hits(tracks, times, scores, segment_times)
    if isinstance(top, bool) or not isinstance(top, (int, np.integer)) or top < 1:
        raise ValueError(f"top: expected an int >= 1, got {top!r}")
    if not 0 < repeat_ratio <= 1:
        raise ValueError(f"repeat_ratio: expected in (0, 1], got {repeat_ratio}")
    if (query is None) != (reference is None):
        raise ValueError("query, reference: expected both (offset refinement) or neither")
    cells = vote_cells(tracks, times, scores, segment_times, tolerance_s=tolerance_s, sim_floor=sim_floor,
                       sim_ceil=sim_ceil)
    if cells is None:
        return []
    n_seg = tracks.shape[0]
    # the track ranking: best cell's votes, then support, then the earlier start (deterministic); only the
    # tracks returned and the runner-up need their occurrences and union evidence
    rank = np.lexsort((cells.grid, -cells.support, -cells.votes))
    _, first = np.unique(cells.track[rank], return_index=True)
    best_cells = rank[np.sort(first)][: top + 1]
    per_track = []  # (track, [cell indices of the occurrences, best first], union evidence)
    for c in best_cells:
        idx = np.flatnonzero(cells.track == cells.track[c])
        best = int(np.searchsorted(idx, c))
        occ = idx[_peaks(cells.offset[idx], cells.votes[idx], best, repeat_ratio, 3 * tolerance_s, MAX_ALTERNATES)]
        per_track.append((int(cells.track[c]), occ, cells.union_evidence(occ, n_seg)))

    def candidate(p):
        c = p[1][0]
        return Candidate(track_id=p[0], offset_s=float(cells.offset[c]), score=float(cells.votes[c]),
                         support=int(cells.support[c]), n_segments=n_seg, evidence=float(p[2]))

    shown = per_track[:top]
    offsets = {int(c): float(cells.offset[c]) for p in shown for c in p[1]}
    aligned = {}
    if reference is not None and offsets:
        offsets, aligned = _refined(offsets, cells, query, reference, hop_s, best={int(p[1][0]) for p in shown})
    chosen = []
    for i, p in enumerate(shown):
        if verify and aligned:
            conf = verified_confidence(aligned[int(p[1][0])], impostor_scores(tracks, scores, p[0]), sim_floor=sim_floor)
        else:
            other = (per_track[1] if len(per_track) > 1 else None) if i == 0 else per_track[0]
            conf = match_confidence(candidate(p), None if other is None else candidate(other),
                                    margin_weight=margin_weight, min_segments=min_segments)
        if conf >= min_confidence:
            chosen.append((p, conf))
    out = []
    for (tid, occ, _), conf in chosen:
        occs = [Occurrence(max(0.0, offsets[int(c)]), float(cells.votes[c]) / n_seg) for c in occ]
        out.append(TrackMatch(track_id=tid, offset_s=occs[0].offset_s, score=occs[0].score, confidence=conf,
                              support=int(cells.support[occ[0]]), alternates=tuple(occs[1:])))
    return out


def _refined(offsets: dict, cells, query, reference, hop_s: float, best=()) -> tuple[dict, dict]:
    """({cell: refined offset}, {cell in ``best``: (n,) similarity of each query segment with the track's window
    at the refined alignment, NaN where there is none}): every window taken from ``reference`` in one call
    (the aligned windows lie within the parabola's, one frame either side of the vote's)."""
    query = np.asarray(query, dtype=np.float32)
    if query.ndim != 2:
        raise ValueError(f"query: expected shape (n_segments, d), got {query.shape}")
    n = len(query)
    keys = list(offsets)
    lo = {c: max(0, int(round(offsets[c] / hop_s)) - 1) for c in keys}
    t = np.concatenate([np.full(n + 2, cells.track[c]) for c in keys])
    f = np.concatenate([lo[c] + np.arange(n + 2) for c in keys])
    windows = np.asarray(reference.take(t, f), dtype=np.float32).reshape(len(keys), n + 2, -1)
    out, sims = {}, {}
    for c, ref in zip(keys, windows):
        valid = ~np.isnan(ref).any(axis=1)
        m = int(np.argmin(valid)) if not valid.all() else len(valid)  # frames past a track's end are NaN
        out[c] = refine_offset(query, ref[:m], offsets[c], hop_s=hop_s, first_frame=lo[c]) if m else offsets[c]
        if c in best:
            rows = int(round(out[c] / hop_s)) - lo[c] + np.arange(n)  # (n,) rows of ``ref`` at the alignment
            inside = (rows >= 0) & (rows < n + 2)
            s = np.full(n, np.nan)
            s[inside] = np.einsum("ij,ij->i", query[inside], ref[rows[inside]])
            sims[c] = s
    return out, sims
