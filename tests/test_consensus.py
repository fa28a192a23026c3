"""Offset consensus (eq. 12-13 generalised), confidence, and the arithmetic fingerprint ids: pure functions."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from faiss_flowhash.db.consensus import (DEFAULT_MIN_CONFIDENCE, Candidate, impostor_scores, match_confidence, refine_offset, verified_confidence,
                                         vote_offsets)
from faiss_flowhash.db.ids import FRAME_BITS, MAX_TRACK_ID, decode_ids, encode_ids, track_id_range

HOP = 0.1


def _hits(true_track, true_start_s, n_seg, *, k=5, n_tracks=20, track_len_s=60.0, hit_rate=0.8, seed=0):
    """Per-segment top-k hits: the true (track, window) with probability hit_rate, the rest random."""
    rng = np.random.default_rng(seed)
    tracks = rng.integers(0, n_tracks, (n_seg, k))
    times = np.round(rng.uniform(0, track_len_s, (n_seg, k)) / HOP) * HOP
    scores = np.sort(rng.uniform(0.3, 0.6, (n_seg, k)))[:, ::-1]
    for o in range(n_seg):
        if rng.random() < hit_rate:
            j = int(rng.integers(k))
            tracks[o, j] = true_track
            times[o, j] = np.round((true_start_s + o * HOP) / HOP) * HOP  # nearest reference window
            scores[o, j] = rng.uniform(0.8, 1.0)
    return tracks, times, scores, np.arange(n_seg) * HOP


# -- ids ------------------------------------------------------------------------------------------
@given(track=st.integers(0, MAX_TRACK_ID), n=st.integers(0, 50))
def test_ids_round_trip(track, n):
    ids = encode_ids(track, n)
    assert ids.dtype == np.int64 and (ids >= 0).all()
    t, f = decode_ids(ids)
    assert (t == track).all() and (f == np.arange(n)).all()
    lo, hi = track_id_range(track, n)
    assert hi - lo == n and (n == 0 or (ids[0] == lo and ids[-1] == hi - 1))


def test_ids_padding_and_errors():
    t, f = decode_ids(np.array([[-1, encode_ids(3, 5)[4]]]))
    assert t.tolist() == [[-1, 3]] and f.tolist() == [[-1, 4]]
    with pytest.raises(ValueError, match="track_id"):
        encode_ids(MAX_TRACK_ID + 1, 1)
    with pytest.raises(ValueError, match="n_frames"):
        encode_ids(0, 1 << FRAME_BITS + 1)
    with pytest.raises(TypeError, match="track_id"):
        encode_ids(1.5, 3)


# -- voting ---------------------------------------------------------------------------------------
@given(track=st.integers(0, 19), start=st.floats(0.0, 50.0), n_seg=st.integers(5, 50), seed=st.integers(0, 10_000))
def test_vote_finds_track_and_offset_within_50ms(track, start, n_seg, seed):
    tracks, times, scores, seg_t = _hits(track, start, n_seg, seed=seed)
    best = vote_offsets(tracks, times, scores, seg_t)[0]
    assert best.track_id == track
    assert abs(best.offset_s - start) <= 0.05 + 1e-9
    assert 1 <= best.support <= n_seg and best.n_segments == n_seg


def test_vote_interpolates_between_windows():
    # snippet starts at 3.25 s: half of the segments hit the window before, half the one after
    n = 10
    tracks = np.full((n, 1), 7)
    times = np.array([[3.2 + o * HOP] if o % 2 else [3.3 + o * HOP] for o in range(n)])
    c = vote_offsets(tracks, times, np.ones((n, 1)), np.arange(n) * HOP)
    assert c[0].support == n and abs(c[0].offset_s - 3.25) < 1e-6


def test_a_segment_votes_once_per_candidate():
    n, k = 6, 5
    tracks = np.full((n, k), 2)
    times = np.repeat((np.arange(n) * HOP + 1.0)[:, None], k, axis=1)  # k identical hits per segment
    c = vote_offsets(tracks, times, np.full((n, k), 0.9), np.arange(n) * HOP)
    assert len(c) == 1 and c[0].support == n and c[0].score == pytest.approx(0.9 * n)


@given(seed=st.integers(0, 1000))
def test_vote_ignores_order_of_hits_within_a_segment(seed):
    tracks, times, scores, seg_t = _hits(4, 12.34, 20, seed=seed)
    perm = np.random.default_rng(seed).permuted(np.tile(np.arange(5), (20, 1)), axis=1)
    a = vote_offsets(tracks, times, scores, seg_t)
    b = vote_offsets(*(np.take_along_axis(x, perm, 1) for x in (tracks, times, scores)), seg_t)
    assert [(c.track_id, c.support) for c in a] == [(c.track_id, c.support) for c in b]
    assert a[0].offset_s == pytest.approx(b[0].offset_s) and a[0].score == pytest.approx(b[0].score)


def test_one_candidate_per_track_best_first():
    tracks, times, scores, seg_t = _hits(1, 5.0, 30, seed=3)
    c = vote_offsets(tracks, times, scores, seg_t)
    assert len({x.track_id for x in c}) == len(c)
    assert all(a.score >= b.score for a, b in zip(c, c[1:]))


def test_padding_and_empty():
    n = 4
    assert vote_offsets(np.full((n, 3), -1), np.zeros((n, 3)), np.full((n, 3), -3.4e38), np.arange(n) * HOP) == []
    assert vote_offsets(np.zeros((0, 3)), np.zeros((0, 3)), np.zeros((0, 3)), np.zeros(0)) == []


def test_vote_checks_inputs():
    with pytest.raises(ValueError, match="tracks: expected shape"):
        vote_offsets(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3))
    with pytest.raises(ValueError, match="times, scores"):
        vote_offsets(np.zeros((3, 2)), np.zeros((3, 1)), np.zeros((3, 2)), np.zeros(3))
    with pytest.raises(ValueError, match="segment_times"):
        vote_offsets(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(4))
    with pytest.raises(ValueError, match="tolerance_s"):
        vote_offsets(np.zeros((3, 2)), np.zeros((3, 2)), np.zeros((3, 2)), np.zeros(3), tolerance_s=0)


# -- sub-hop refinement ----------------------------------------------------------------------------
def _smooth_embedding(t, d=16):
    """Unit vectors that change smoothly with time t (s): similarity peaks where the times agree."""
    freqs = np.linspace(0.5, 3.0, d // 2)
    e = np.concatenate([np.cos(np.outer(t, freqs)), np.sin(np.outer(t, freqs))], axis=1)
    return (e / np.linalg.norm(e, axis=1, keepdims=True)).astype(np.float32)


@given(start=st.floats(0.2, 20.0), n=st.integers(3, 40))
def test_refine_offset_recovers_a_start_between_windows(start, n):
    reference = _smooth_embedding(np.arange(300) * HOP)
    query = _smooth_embedding(start + np.arange(n) * HOP)
    coarse = round(start / HOP) * HOP + 0.04  # the vote: right frame, off by up to 90 ms
    refined = refine_offset(query, reference, coarse)
    assert abs(refined - start) <= 0.02 and abs(refined - start) <= abs(coarse - start) + 1e-9
    # a window of the reference starting at first_frame gives the same answer
    lo = max(0, round(start / HOP) - 2)
    assert refine_offset(query, reference[lo:], coarse, first_frame=lo) == pytest.approx(refined)


def test_refine_offset_without_a_peak_keeps_the_vote():
    flat = np.ones((50, 4), np.float32) / 2
    assert refine_offset(flat[:5], flat, 1.23) == 1.23
    with pytest.raises(ValueError, match="query, reference"):
        refine_offset(np.zeros((3, 4)), np.zeros((5, 3)), 0.0)


# -- confidence -----------------------------------------------------------------------------------
def _cand(evidence, n=20, track=0):
    return Candidate(track_id=track, offset_s=0.0, score=evidence, support=int(np.ceil(evidence)), n_segments=n,
                     evidence=evidence)


@given(best=st.floats(0, 30), other=st.floats(0, 30), n=st.integers(1, 50), w=st.floats(0, 1))
def test_confidence_in_unit_interval(best, other, n, w):
    c = match_confidence(_cand(best, n), _cand(min(other, best), n, 1), margin_weight=w)
    assert 0.0 <= c <= 1.0


def test_confidence_orders_the_cases():
    full = match_confidence(_cand(20), None)
    assert full == pytest.approx(1.0)
    assert match_confidence(_cand(10), None) < full  # fewer agreeing segments
    assert match_confidence(_cand(20), _cand(10, track=1)) < full  # a runner-up
    assert match_confidence(_cand(20), _cand(20, track=1)) == 0.0  # a tie: no idea which track
    assert match_confidence(_cand(0), None) == 0.0
    # a one-segment snippet cannot be as sure as min_segments agreeing segments
    assert match_confidence(_cand(1, n=1), None, min_segments=3) == pytest.approx((1 / 3) ** 0.7)
    with pytest.raises(ValueError, match="margin_weight"):
        match_confidence(_cand(1), None, margin_weight=2)


# -- verified confidence (aligned similarity and margin over the best other track) -----------------
def test_impostor_is_the_best_other_track_else_the_lowest_own_hit():
    tracks = np.array([[3, 5, 3], [3, 3, 3], [-1, -1, -1], [3, -1, 7]])
    scores = np.array([[0.9, 0.7, 0.6], [0.9, 0.8, 0.5], [0.0, 0.0, 0.0], [0.9, 0.95, np.nan]])
    imp = impostor_scores(tracks, scores, 3)
    assert imp[0] == pytest.approx(0.7)  # track 5's hit
    assert imp[1] == pytest.approx(0.5)  # only track 3: the lowest of its hits bounds any other track's
    assert imp[2] == -np.inf  # no valid hit
    assert imp[3] == pytest.approx(0.9)  # -1 and NaN are no hits: only the own hit is left


@given(a=st.lists(st.floats(-1, 1), min_size=1, max_size=50), d=st.floats(0, 1), seed=st.integers(0, 1000))
def test_verified_confidence_in_unit_interval_and_monotone(a, d, seed):
    a = np.array(a)
    imp = np.random.default_rng(seed).uniform(-1, 1, len(a))
    c = verified_confidence(a, imp)
    assert 0.0 <= c <= 1.0
    assert verified_confidence(np.minimum(a + d, 1.0), imp) >= c  # more similar at the alignment: surer
    assert verified_confidence(a, np.minimum(imp + d, 1.0)) <= c  # a closer other track: less sure


def test_verified_confidence_orders_the_cases():
    n = 30
    match = verified_confidence(np.full(n, 0.95), np.full(n, 0.6))
    weak = verified_confidence(np.full(n, 0.45), np.full(n, 0.2))  # a margin, but below the similarity floor
    assert match > 0.99 and weak < 0.05
    # a short snippet close to everything (a "hub": no margin over other tracks) is no match, with a margin it is
    hub, clear = (verified_confidence(np.full(5, 0.85), np.full(5, x)) for x in (0.84, 0.65))
    assert hub < DEFAULT_MIN_CONFIDENCE <= clear
    # a longer snippet with the same per-segment evidence is more evidence; missing windows are none
    assert verified_confidence(np.full(5, 0.9), np.full(5, 0.75)) < verified_confidence(np.full(40, 0.9), np.full(40, 0.75))
    half = np.r_[np.full(15, 0.9), np.full(15, np.nan)]
    assert verified_confidence(half, np.full(30, 0.75)) < verified_confidence(np.full(30, 0.9), np.full(30, 0.75))
    with pytest.raises(ValueError, match="aligned, impostor"):
        verified_confidence(np.zeros(3), np.zeros(4))
    with pytest.raises(ValueError, match="weights"):
        verified_confidence(np.zeros(3), np.zeros(3), weights=(1.0, 2.0))
