"""Offset consensus over per-segment search hits (paper eq. 12-13, generalised) and match confidence.

A query snippet is cut into segments (1 s windows every hop); segment ``o`` starts at
``segment_times[o]`` seconds into the snippet. Each segment's top-k hits are reference windows
(track, time in the track). A hit proposes that the snippet starts at
``reference_start = hit_time - segment_time`` in that track. Eq. 12-13 count, for each shift m, how
many segments agree with the sequence ``i_o + o - m``; here the same vote is taken over every hit
(not only the top one), per track, with a tolerance (50 ms) instead of exact equality, and weighted by
the hit scores:

    votes(t, c) = sum_o max { score(o, j) : track(o, j) = t, |start(o, j) - c| <= tolerance }

for candidate starts ``c`` on a grid of ``tolerance`` seconds. A segment votes at most once per
candidate. The winning (t, c) gives the track; the offset is the score-weighted mean of the agreeing
starts (sub-hop accuracy when the snippet starts between two reference windows).

Confidence (in [0, 1]) from the hits alone combines how many segments agree and how far ahead of the
runner-up track the winner is (:func:`match_confidence`). With the query's fingerprints and the reference
windows at the winner's alignment, :func:`verified_confidence` rates the track decision on every segment
instead (aligned similarity, and its margin over the best other track's hit; the default of
:func:`~faiss_flowhash.db.identify.identify`). Everything here is pure numpy on arrays passed in.
"""

from dataclasses import dataclass

import numpy as np

__all__ = ["Candidate", "VoteCells", "check_hits", "vote_cells", "vote_offsets", "refine_offset", "match_confidence",
           "impostor_scores", "verified_confidence", "VERIFY_WEIGHTS",
           "DEFAULT_SIM_FLOOR", "DEFAULT_SIM_CEIL", "DEFAULT_MIN_CONFIDENCE", "HITS_MIN_CONFIDENCE"]

#: Below this confidence a query is answered "no match" (the database, the CLI, the service). It applies to
#: :func:`verified_confidence`, the confidence of every query that has its fingerprints and the reference
#: windows (the database's queries). Chosen on real music, calibration seed 0 only (``python -m
#: bench.nomatch_features`` / ``bench.nomatch_fit``: 30 indexed tracks of wesnoth / singularity / supertux
#: music, 30 never indexed, 600 positives and 400 negatives of 1-5 s): false matches 0.50 % (2 of 400) at
#: every threshold from 0.60 to 0.80 while hits fall 89.0 -> 88.2 %; 0.70 is the middle of that flat stretch,
#: leaving room for seed-to-seed spread (one false match is 0.25 % of a seed). Held out (seeds 1 and 2,
#: ``python -m bench.threshold_real``, bench/results/nomatch.md): false matches 5 of 800 (0.62 %), "no match"
#: on unseen audio 99.4 %, hits 86.8 % (right track, start within 50 ms), where the hits-only confidence
#: needs 0.80 for <= 1 % (0.83 %) and keeps 75.5 %. Synthetic calibration: see tests/test_calibration.py.
DEFAULT_MIN_CONFIDENCE = 0.70
#: The threshold of the hits-only :func:`match_confidence` (no fingerprints or reference windows at hand:
#: the span tracker of long recordings), calibrated on synthetic audio (numbers in
#: :mod:`faiss_flowhash.db.database`); on real music it lets 13.7 % false matches in.
HITS_MIN_CONFIDENCE = 0.35

#: (bias, aligned similarity, margin over the best other track, ln segments): the logistic weights of
#: :func:`verified_confidence`, fitted on real-music calibration seed 0 (right answers 1, negatives 0; wrong
#: positives left out; bench/nomatch_fit.py, L2 1e-3) and tested on seeds 1 and 2.
VERIFY_WEIGHTS = (-17.21, 13.69, 80.12, 2.37)

#: Similarity below which a hit is no evidence of a match, and above which it is full evidence
#: (inner products of L2-normalised fingerprints of the shipped model; see match_confidence).
DEFAULT_SIM_FLOOR = 0.55
DEFAULT_SIM_CEIL = 0.85


@dataclass(frozen=True)
class Candidate:
    """One (track, offset) hypothesis after voting.

    Attributes:
        track_id: the reference track.
        offset_s: estimated start of the snippet in the track, seconds.
        score: summed best hit score of the agreeing segments (the vote).
        support: segments that agree (at most one vote each).
        n_segments: segments in the query.
        evidence: sum over agreeing segments of the similarity mapped to [0, 1] (floor/ceil ramp).
    """

    track_id: int
    offset_s: float
    score: float
    support: int
    n_segments: int
    evidence: float


def check_hits(tracks, times, scores, segment_times):
    """The hit arrays as int64 / float64, checked: (n_segments, k) x 3 and (n_segments,)."""
    tracks = np.asarray(tracks, dtype=np.int64)
    times = np.asarray(times, dtype=np.float64)
    scores = np.asarray(scores, dtype=np.float64)
    segment_times = np.asarray(segment_times, dtype=np.float64)
    if tracks.ndim != 2:
        raise ValueError(f"tracks: expected shape (n_segments, k), got {tracks.shape}")
    if times.shape != tracks.shape or scores.shape != tracks.shape:
        raise ValueError(f"times, scores: expected shape {tracks.shape} like tracks, got {times.shape}, {scores.shape}")
    if segment_times.shape != (tracks.shape[0],):
        raise ValueError(f"segment_times: expected shape ({tracks.shape[0]},), got {segment_times.shape}")
    return tracks, times, scores, segment_times


def _ramp(sim: np.ndarray, floor: float, ceil: float) -> np.ndarray:
    return np.clip((sim - floor) / (ceil - floor), 0.0, 1.0)


@dataclass(frozen=True)
class VoteCells:
    """Every (track, grid cell) that got a vote; arrays (n_cells,) unless said otherwise.

    track, grid (cell start = grid * tolerance_s), votes (summed best score per agreeing segment),
    support (agreeing segments), offset (score-weighted mean start, seconds), evidence (summed
    similarity ramp). ``cell_of``, ``segment``, ``ramp`` (n_votes,): the single votes behind them.
    """

    track: np.ndarray
    grid: np.ndarray
    votes: np.ndarray
    support: np.ndarray
    offset: np.ndarray
    evidence: np.ndarray
    cell_of: np.ndarray
    segment: np.ndarray
    ramp: np.ndarray

    def union_evidence(self, cells, n_segments: int) -> float:
        """Evidence of a set of cells where each segment counts once: sum over segments of its best ramp."""
        sel = np.isin(self.cell_of, cells)
        best = np.zeros(n_segments)
        np.maximum.at(best, self.segment[sel], self.ramp[sel])
        return float(best.sum())


def vote_cells(tracks, times, scores, segment_times, *, tolerance_s: float = 0.05,
               sim_floor: float = DEFAULT_SIM_FLOOR, sim_ceil: float = DEFAULT_SIM_CEIL) -> VoteCells | None:
    """The vote of the module docstring on every (track, grid cell); None when no hit is valid.

    Arguments as :func:`vote_offsets`.
    """
    tracks, times, scores, segment_times = check_hits(tracks, times, scores, segment_times)
    if not tolerance_s > 0:
        raise ValueError(f"tolerance_s: expected > 0 seconds, got {tolerance_s}")
    if not sim_ceil > sim_floor:
        raise ValueError(f"sim_floor, sim_ceil: expected floor < ceil, got {sim_floor}, {sim_ceil}")
    seg = np.broadcast_to(np.arange(tracks.shape[0])[:, None], tracks.shape)
    ok = (tracks >= 0) & np.isfinite(scores)
    t, s, o, sc = tracks[ok], (times - segment_times[:, None])[ok], seg[ok], scores[ok]
    if len(t) == 0:
        return None
    # each hit votes for the grid points within tolerance of its start (the grid step is the tolerance)
    g0 = np.round(s / tolerance_s).astype(np.int64)
    grid = np.concatenate([g0 - 1, g0, g0 + 1])
    t3, s3, o3, sc3 = (np.tile(a, 3) for a in (t, s, o, sc))
    near = np.abs(grid * tolerance_s - s3) <= tolerance_s * (1 + 1e-6)
    grid, t3, s3, o3, sc3 = grid[near], t3[near], s3[near], o3[near], sc3[near]
    # one vote per (track, grid, segment): its best-scoring hit
    order = np.lexsort((-sc3, o3, grid, t3))
    grid, t3, s3, o3, sc3 = grid[order], t3[order], s3[order], o3[order], sc3[order]
    first = np.r_[True, (t3[1:] != t3[:-1]) | (grid[1:] != grid[:-1]) | (o3[1:] != o3[:-1])]
    grid, t3, s3, o3, sc3 = grid[first], t3[first], s3[first], o3[first], sc3[first]
    # sum the votes per (track, grid)
    new_cell = np.r_[True, (t3[1:] != t3[:-1]) | (grid[1:] != grid[:-1])]
    start = np.flatnonzero(new_cell)
    votes = np.add.reduceat(sc3, start)
    support = np.diff(np.r_[start, len(t3)])
    ramp = _ramp(sc3, sim_floor, sim_ceil)
    # score-weighted mean start; scores may be <= 0 for L2-like metrics, fall back to the cell's start
    wsum = np.add.reduceat(sc3 * s3, start)
    offset = np.where(votes > 1e-9, wsum / np.where(votes > 1e-9, votes, 1.0), grid[start] * tolerance_s)
    return VoteCells(track=t3[start], grid=grid[start], votes=votes, support=support, offset=offset,
                     evidence=np.add.reduceat(ramp, start), cell_of=np.cumsum(new_cell) - 1, segment=o3, ramp=ramp)


def vote_offsets(
    tracks,
    times,
    scores,
    segment_times,
    *,
    tolerance_s: float = 0.05,
    sim_floor: float = DEFAULT_SIM_FLOOR,
    sim_ceil: float = DEFAULT_SIM_CEIL,
) -> list[Candidate]:
    """Vote on (track, reference start) over all hits; the best candidate of each track, best first.

    Args:
        tracks: (n_segments, k) int track id of each hit, -1 for padding (ignored).
        times: (n_segments, k) seconds into the track where each hit's window starts.
        scores: (n_segments, k) hit similarity (inner product; higher is better).
        segment_times: (n_segments,) seconds into the snippet where each segment starts.
        tolerance_s: hits whose starts are within this of a candidate start agree with it (0.05 s).
        sim_floor, sim_ceil: similarity ramp for :attr:`Candidate.evidence`.

    Returns:
        One :class:`Candidate` per track that has any hit, sorted by score (then support), best first.
        (:func:`faiss_flowhash.db.identify.identify` builds the matches, repeats included, on the same vote.)
    """
    cells = vote_cells(tracks, times, scores, segment_times, tolerance_s=tolerance_s, sim_floor=sim_floor,
                       sim_ceil=sim_ceil)
    if cells is None:
        return []
    n_seg = int(np.asarray(tracks).shape[0])
    # best cell per track: highest score, then support, then earliest start
    rank = np.lexsort((cells.grid, -cells.support, -cells.votes))
    out, seen = [], set()
    for i in rank:
        tid = int(cells.track[i])
        if tid in seen:
            continue
        seen.add(tid)
        out.append(Candidate(track_id=tid, offset_s=float(cells.offset[i]), score=float(cells.votes[i]),
                             support=int(cells.support[i]), n_segments=n_seg, evidence=float(cells.evidence[i])))
    return out


def refine_offset(query, reference, offset_s: float, *, hop_s: float = 0.1, first_frame: int = 0) -> float:
    """Sub-hop offset: parabola through the mean similarity at the vote's frame and one frame either side.

    The vote gives ``offset_s``; with ``b = round(offset_s / hop_s)``, segment i of the query is compared
    with reference frames ``b + i + k`` for k = -1, 0, +1 (those that exist), the mean similarities
    S(k) are fitted with a parabola, and its vertex ``b + delta`` (|delta| <= 1) is the refined start in
    frames. Without a peak (S not concave) the vote's offset is returned unchanged. On the calibration
    set this brings the median offset error of right answers from ~20 ms to ~8 ms.

    Args:
        query: (n, d) the snippet's fingerprints, segment i starting at i * hop_s.
        reference: (m, d) consecutive fingerprints of the track, row j = frame ``first_frame + j``.
        offset_s: the vote's offset, seconds. hop_s: frame hop, seconds (0.1).
        first_frame: frame number of ``reference[0]`` (0).

    Returns:
        The refined offset in seconds.
    """
    query = np.asarray(query, dtype=np.float32)
    reference = np.asarray(reference, dtype=np.float32)
    if query.ndim != 2 or reference.ndim != 2 or query.shape[1] != reference.shape[1]:
        raise ValueError(f"query, reference: expected (n, d) and (m, d), got {query.shape} and {reference.shape}")
    if not hop_s > 0:
        raise ValueError(f"hop_s: expected > 0 seconds, got {hop_s}")
    b = int(round(offset_s / hop_s))
    S = np.full(3, -np.inf)
    for j, k in enumerate((-1, 0, 1)):
        rows = b + k + np.arange(len(query)) - first_frame
        ok = (rows >= 0) & (rows < len(reference))
        if ok.any():
            S[j] = float(np.einsum("ij,ij->i", query[ok], reference[rows[ok]]).mean())
    den = S[0] - 2 * S[1] + S[2]
    if not np.isfinite(den) or den >= 0:
        return float(offset_s)
    delta = float(np.clip(0.5 * (S[0] - S[2]) / den, -1.0, 1.0))
    return (b + delta) * hop_s


def match_confidence(best: Candidate, runner_up: Candidate | None = None, *, margin_weight: float = 0.3,
                     min_segments: int = 3) -> float:
    """Confidence in [0, 1] that ``best`` is a true match.

    ``share = best.evidence / max(n_segments, min_segments)`` is the fraction of the snippet's segments
    that agree on the track and offset, each weighted by how clearly its hit is a match (similarity
    ramp floor -> ceil); ``min_segments`` (3) keeps a 1-segment snippet from being fully sure on one
    hit. ``margin = 1 - runner_up.evidence / best.evidence`` (1 without a runner-up) says how far ahead
    of the next track the winner is. Confidence is ``share ** (1 - margin_weight) * margin ** margin_weight``
    (geometric blend; ``margin_weight`` 0.3): 0 when nothing agrees or the runner-up ties, 1 when every
    segment agrees with full similarity and no other track has evidence. Defaults are the calibrated
    ones (see :mod:`faiss_flowhash.db.database`).
    """
    if min_segments < 1:
        raise ValueError(f"min_segments: expected >= 1, got {min_segments}")
    if not 0 <= margin_weight <= 1:
        raise ValueError(f"margin_weight: expected in [0, 1], got {margin_weight}")
    if best.n_segments <= 0 or best.evidence <= 0:
        return 0.0
    share = min(1.0, best.evidence / max(best.n_segments, min_segments))
    margin = 1.0 if runner_up is None else max(0.0, 1.0 - runner_up.evidence / best.evidence)
    return float(share ** (1 - margin_weight) * margin ** margin_weight)


def impostor_scores(tracks, scores, track: int) -> np.ndarray:
    """(n_segments,) per segment the best hit score of a track other than ``track`` (a ratio test of the track
    decision); where all of the segment's valid hits are ``track``, the lowest of them (an upper bound on any
    other track's); -inf where the segment has no valid hit. tracks, scores: (n_segments, k); -1 tracks and
    non-finite scores are no hits."""
    tracks, scores = np.asarray(tracks), np.asarray(scores, dtype=np.float64)
    ok = (tracks >= 0) & np.isfinite(scores)
    other = ok & (tracks != track)
    best_other = np.where(other, scores, -np.inf).max(axis=1)
    lowest = np.where(ok, scores, np.inf).min(axis=1)
    return np.where(other.any(axis=1), best_other, np.where(ok.any(axis=1), lowest, -np.inf))


def verified_confidence(aligned, impostor, *, sim_floor: float = DEFAULT_SIM_FLOOR,
                        weights=VERIFY_WEIGHTS) -> float:
    """Confidence in (0, 1) that the query is the track at the alignment, from every segment.

    ``aligned`` (n,): similarity of query segment i with the track's window at the alignment (NaN where the
    track has no such window); ``impostor`` (n,): :func:`impostor_scores`. With ``A`` the mean aligned
    similarity (over the windows that exist; 0 if none), ``M`` the mean over all n segments of
    ``max(aligned, floor) - max(impostor, floor)`` (the margin over the best other track above the similarity
    floor, below which a similarity is no evidence; 0 for a missing window):

        confidence = sigmoid(w0 + w1 A + w2 M + w3 ln n)

    with ``weights`` (w0..w3; :data:`VERIFY_WEIGHTS`). ``M`` is the per-query normalisation: unseen music whose
    fingerprints are close to everything (a "hub") has high similarities at every track, so its margin is ~0;
    ``ln n``: a longer snippet is more evidence. The margin needs hits of other tracks: with one hit per
    segment (k = 1, the paper's protocol) every impostor is the own hit, M = 0 and the confidence rests on A
    and n alone (the database searches k = 5).
    """
    a = np.asarray(aligned, dtype=np.float64)
    imp = np.asarray(impostor, dtype=np.float64)
    if a.ndim != 1 or imp.shape != a.shape or len(a) == 0:
        raise ValueError(f"aligned, impostor: expected equal shapes (n,) with n >= 1, got {a.shape}, {imp.shape}")
    w = tuple(float(x) for x in weights)
    if len(w) != 4:
        raise ValueError(f"weights: expected 4 numbers (bias, aligned, margin, ln segments), got {len(w)}")
    ok = np.isfinite(a)
    A = float(a[ok].mean()) if ok.any() else 0.0
    M = float(np.where(ok, np.maximum(np.where(ok, a, 0.0), sim_floor) - np.maximum(imp, sim_floor), 0.0).mean())
    z = w[0] + w[1] * A + w[2] * M + w[3] * np.log(len(a))
    return float(0.5 * (1.0 + np.tanh(0.5 * z)))  # the logistic sigmoid, without overflow
