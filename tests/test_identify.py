"""The one identification path (db.identify): votes, repeats as alternates, track-decision confidence,
offset refinement from one batch of reference windows. Pure functions on hand-made hits."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from faiss_flowhash.db.consensus import vote_offsets
from faiss_flowhash.db.identify import ReferenceWindows, TrackMatch, identify

from test_consensus import _hits, _smooth_embedding

HOP = 0.1


def _two_places(n_seg, starts, *, track=3, k=1, score=0.95, split=True):
    """Hits of a snippet that fits track ``track`` at each of ``starts``: with ``split`` and k=1 the
    segments' single hits alternate between the places (how exact repeats share the top-1 hit)."""
    tracks = np.full((n_seg, k), track)
    times = np.zeros((n_seg, k))
    for o in range(n_seg):
        for j in range(k):
            place = starts[(o + j) % len(starts)] if split else starts[j % len(starts)]
            times[o, j] = place + o * HOP
    return tracks, times, np.full((n_seg, k), score), np.arange(n_seg) * HOP


@given(track=st.integers(0, 19), start=st.floats(0.0, 50.0), n_seg=st.integers(5, 50), seed=st.integers(0, 10_000))
def test_identify_agrees_with_the_vote(track, start, n_seg, seed):
    tracks, times, scores, seg_t = _hits(track, start, n_seg, seed=seed)
    m = identify(tracks, times, scores, seg_t, top=3)
    c = vote_offsets(tracks, times, scores, seg_t)
    assert [x.track_id for x in m] == [x.track_id for x in c[:3]]
    assert m[0].track_id == track and abs(m[0].offset_s - start) <= 0.05 + 1e-9
    assert m[0].support == c[0].support and m[0].score == pytest.approx(c[0].score / n_seg)
    assert all(0 <= x.confidence <= 1 for x in m) and m[0].confidence == max(x.confidence for x in m)


@pytest.mark.parametrize("k, split", [(2, False), (1, True)])
def test_repeats_are_alternates_and_do_not_lower_the_confidence(k, split):
    tracks, times, scores, seg_t = _two_places(30, (4.0, 21.3), k=k, split=split)
    unique = identify(*_two_places(30, (4.0,), k=1), top=1)[0]
    m = identify(tracks, times, scores, seg_t)[0]
    assert isinstance(m, TrackMatch) and m.track_id == 3
    offsets = sorted(o.offset_s for o in m.occurrences)
    assert offsets == pytest.approx([4.0, 21.3], abs=0.05)
    assert len(m.alternates) == 1 and m.alternates[0].score <= m.score
    # the track is as certain as with one occurrence: equal repeats are no coin flip for the confidence
    assert m.confidence == pytest.approx(unique.confidence)


def test_a_weaker_second_place_is_not_a_repeat():
    tracks, times, scores, seg_t = _two_places(30, (4.0, 21.3), k=2, split=False)
    scores[:, 1] = 0.6  # the second place fits far worse
    m = identify(tracks, times, scores, seg_t)[0]
    assert m.alternates == () and abs(m.offset_s - 4.0) <= 0.05
    # neighbouring grid cells of one peak are one occurrence, never alternates of each other
    tracks, times, scores, seg_t = _two_places(30, (4.0, 4.1), k=2, split=False)
    assert identify(tracks, times, scores, seg_t)[0].alternates == ()


def test_confidence_is_the_track_decision():
    n = 20
    a = _two_places(n, (4.0,), track=1, k=1)
    b = _two_places(n, (9.0,), track=2, k=1)
    tie = [np.concatenate([x, y], axis=1) for x, y in zip(a[:3], b[:3])]
    m = identify(*tie, a[3], top=2)
    assert {x.track_id for x in m} == {1, 2} and all(x.confidence == 0.0 for x in m)  # two tracks: no idea
    alone = identify(*a)[0]
    assert alone.confidence == pytest.approx(1.0)
    # the threshold drops what is not confident; no hit at all is no match
    assert identify(*tie, a[3], min_confidence=0.1) == []
    assert identify(np.full((4, 2), -1), np.zeros((4, 2)), np.zeros((4, 2)), np.arange(4) * HOP) == []


class _Counting(ReferenceWindows):
    calls = 0

    def take(self, tracks, frames):
        type(self).calls += 1
        return super().take(tracks, frames)


@given(start=st.floats(0.2, 15.0), n=st.integers(3, 30))
def test_refinement_uses_one_batch_of_reference_windows(start, n):
    ref = [_smooth_embedding(np.arange(200) * HOP) for _ in range(2)]
    ref[0] = ref[0][::-1].copy()  # another track, unlike track 1
    reference = _Counting.from_tracks(ref)
    query = _smooth_embedding(start + np.arange(n) * HOP)
    near = round(start / HOP) * HOP  # the index returns the nearest stored window for each segment
    tracks, times = np.full((n, 1), 1), (near + np.arange(n) * HOP)[:, None]
    seg_t = np.arange(n) * HOP
    coarse = identify(tracks, times, np.full((n, 1), 0.9), seg_t)[0]
    before = _Counting.calls
    fine = identify(tracks, times, np.full((n, 1), 0.9), seg_t, query=query, reference=reference)[0]
    assert _Counting.calls == before + 1
    assert abs(fine.offset_s - start) <= 0.02 and abs(fine.offset_s - start) <= abs(coarse.offset_s - start) + 1e-9


def test_reference_windows_and_errors():
    w = ReferenceWindows.from_tracks([np.ones((3, 4), np.float32), 2 * np.ones((2, 4), np.float32)])
    got = w.take(np.array([0, 1, 1, 0, 5, -1]), np.array([2, 0, 2, -1, 0, 0]))
    assert got[0, 0] == 1 and got[1, 0] == 2 and np.isnan(got[2:]).all()
    with pytest.raises(ValueError, match="first_row"):
        ReferenceWindows(np.zeros((3, 4)), [0, 2], [2, 2])
    hits = _two_places(5, (1.0,))
    with pytest.raises(ValueError, match="query, reference"):
        identify(*hits, query=np.zeros((5, 4)))
    with pytest.raises(ValueError, match="top"):
        identify(*hits, top=0)
    with pytest.raises(ValueError, match="tracks: expected shape"):
        identify(np.zeros(3), np.zeros(3), np.zeros(3), np.zeros(3))


# -- spans of a long recording ----------------------------------------------------------------------
def test_span_tracker_on_hand_made_hits_and_bounded_memory():
    from faiss_flowhash.db.spans import SpanTracker

    rng = np.random.default_rng(0)
    # 3 minutes: track 4 from its 30 s at 40-70 s, track 9 from 0 s at 100-150 s, noise-only hits elsewhere
    n, k = 1800, 3
    r = np.arange(n) * HOP
    tracks = rng.integers(20, 40, (n, k))
    times = rng.uniform(0, 100, (n, k))
    scores = np.full((n, k), 0.4)
    for track, rec0, rec1, t0 in ((4, 40.0, 70.0, 30.0), (9, 100.0, 150.0, 0.0)):
        sel = (r >= rec0) & (r <= rec1 - 1.0)
        tracks[sel, 0], times[sel, 0], scores[sel, 0] = track, np.round((r[sel] - rec0 + t0) / HOP) * HOP, 0.95
    tracker = SpanTracker()
    spans, held = [], 0
    for lo in range(0, n, 97):  # any chunking
        spans += tracker.push(r[lo:lo + 97], tracks[lo:lo + 97], times[lo:lo + 97], scores[lo:lo + 97])
        held = max(held, tracker.held_segments)
    spans += tracker.finish()
    assert [s.track_id for s in spans] == [4, 9]
    for s, (rec0, rec1, t0) in zip(spans, ((40.0, 70.0, 30.0), (100.0, 150.0, 0.0))):
        assert abs(s.start_s - rec0) <= 0.2 and abs(s.track_start_s - t0) <= 0.2
        assert abs(s.start_s + s.duration_s - rec1) <= 0.2 and s.confidence >= 0.35
    assert held <= 300  # 30 s of hits, not the whole recording


def _span_case(seed=0, d=32):
    """3 minutes of hand-made hits and fingerprints: track 4 from its 30 s at 40-70 s, track 9 from 0 s at
    100-150 s (fingerprints = the track's windows + noise), other audio elsewhere (random fingerprints, hits of
    random tracks at 0.4). Reference: 40 tracks of random unit windows."""
    rng = np.random.default_rng(seed)
    unit = lambda x: (x / np.linalg.norm(x, axis=-1, keepdims=True)).astype(np.float32)  # noqa: E731
    reference = ReferenceWindows.from_tracks([unit(rng.standard_normal((1200, d))) for _ in range(40)])
    n, k = 1800, 3
    r = np.arange(n) * HOP
    tracks = rng.integers(20, 40, (n, k))
    times = np.round(rng.uniform(0, 100, (n, k)) / HOP) * HOP
    scores = np.full((n, k), 0.4)
    fps = unit(rng.standard_normal((n, d)))
    truth = ((4, 40.0, 70.0, 30.0), (9, 100.0, 150.0, 0.0))
    for track, rec0, rec1, t0 in truth:
        sel = np.flatnonzero((r >= rec0) & (r <= rec1 - 1.0))
        frames = np.round((r[sel] - rec0 + t0) / HOP).astype(int)
        fps[sel] = unit(reference.take(np.full(len(sel), track), frames) + 0.1 * rng.standard_normal((len(sel), d)))
        tracks[sel, 0], times[sel, 0] = track, frames * HOP
        scores[sel, 0] = np.einsum("ij,ij->i", fps[sel], reference.take(np.full(len(sel), track), frames))
    return r, tracks, times, scores, fps, reference, truth


def _track_spans(tracker, r, tracks, times, scores, fps=None, chunk=97):
    spans = []
    for lo in range(0, len(r), chunk):  # any chunking
        sl = slice(lo, lo + chunk)
        spans += tracker.push(r[sl], tracks[sl], times[sl], scores[sl],
                              **({} if fps is None else {"fingerprints": fps[sl]}))
    return spans + tracker.finish()


def test_span_tracker_with_reference_windows_rates_blocks_by_the_verified_confidence(monkeypatch):
    from faiss_flowhash.db import spans as spans_module
    from faiss_flowhash.db.consensus import DEFAULT_MIN_CONFIDENCE
    from faiss_flowhash.db.spans import SpanTracker

    r, tracks, times, scores, fps, reference, truth = _span_case()
    verified_calls = []
    real = spans_module.identify
    monkeypatch.setattr(spans_module, "identify", lambda *a, **kw: (verified_calls.append(kw.get("query") is not None),
                                                                    real(*a, **kw))[1])
    tracker = SpanTracker(reference=reference)
    assert tracker.min_confidence == DEFAULT_MIN_CONFIDENCE
    spans = _track_spans(tracker, r, tracks, times, scores, fps)
    assert verified_calls and all(verified_calls)
    assert [s.track_id for s in spans] == [4, 9]
    for s, (_, rec0, rec1, t0) in zip(spans, truth):
        assert abs(s.start_s - rec0) <= 0.2 and abs(s.track_start_s - t0) <= 0.2
        assert abs(s.start_s + s.duration_s - rec1) <= 0.2 and s.confidence >= DEFAULT_MIN_CONFIDENCE
    assert tracker.held_segments <= 300
    # hits that claim track 4 while the fingerprints are other audio: the hits-only tracker opens a span,
    # the verified one does not (it compares the fingerprints with the track's windows)
    rng = np.random.default_rng(1)
    other = rng.standard_normal(fps.shape).astype(np.float32)
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    sel = (r >= 40.0) & (r <= 69.0)
    other[~sel] = fps[~sel]
    assert [s.track_id for s in _track_spans(SpanTracker(), r, tracks, times, scores)] == [4, 9]
    assert [s.track_id for s in _track_spans(SpanTracker(reference=reference), r, tracks, times, scores, other)] == [9]


def test_span_tracker_drops_spans_shorter_than_min_duration():
    from faiss_flowhash.db.spans import SpanTracker

    r, tracks, times, scores, fps, reference, _ = _span_case()
    rng = np.random.default_rng(2)
    sel = np.flatnonzero((r >= 160.0) & (r <= 161.5))  # 2.5 s of track 2 from its 10 s
    frames = np.round((r[sel] - 160.0 + 10.0) / HOP).astype(int)
    windows = reference.take(np.full(len(sel), 2), frames)
    fps[sel] = windows + 0.1 * rng.standard_normal(windows.shape).astype(np.float32)
    fps[sel] /= np.linalg.norm(fps[sel], axis=1, keepdims=True)
    tracks[sel, 0], times[sel, 0] = 2, frames * HOP
    scores[sel, 0] = np.einsum("ij,ij->i", fps[sel], windows)
    for ref in (reference, None):
        fp = fps if ref is not None else None
        kept = _track_spans(SpanTracker(reference=ref, min_duration_s=0.0), r, tracks, times, scores, fp)
        assert [s.track_id for s in kept] == [4, 9, 2]
        short = kept[2]
        assert abs(short.start_s - 160.0) <= 0.2 and short.duration_s < 3.0
        default = _track_spans(SpanTracker(reference=ref), r, tracks, times, scores, fp)  # min_duration_s = block_s
        assert default == kept[:2]
    with pytest.raises(ValueError, match="min_duration_s"):
        SpanTracker(min_duration_s=-1.0)


def test_span_tracker_fingerprints_go_with_reference_windows():
    from faiss_flowhash.db.spans import SpanTracker

    r, tracks, times, scores, fps, reference, _ = _span_case()
    with pytest.raises(ValueError, match="fingerprints"):
        SpanTracker(reference=reference).push(r[:5], tracks[:5], times[:5], scores[:5])
    with pytest.raises(ValueError, match="fingerprints"):
        SpanTracker().push(r[:5], tracks[:5], times[:5], scores[:5], fingerprints=fps[:5])
    with pytest.raises(ValueError, match="fingerprints: expected shape"):
        SpanTracker(reference=reference).push(r[:5], tracks[:5], times[:5], scores[:5], fingerprints=fps[:4])
    with pytest.raises(TypeError, match="reference"):
        SpanTracker(reference=[[0.0, 1.0]])


# -- the verified confidence (with the query's fingerprints and the reference windows) ---------------
def _verified_case(n=30, start=4.0, repeat=None, hub=False):
    """Track 1 holds the query at ``start`` (and at ``repeat``); track 0 is other audio. Hits: each segment's
    window in track 1, and a track-0 hit with the similarity the query has to track 0 (``hub``: nearly as close)."""
    rng = np.random.default_rng(1)
    emb = _smooth_embedding(np.arange(400) * HOP)
    query = emb[int(round(start / HOP)):][:n] + 0.05 * rng.standard_normal((n, emb.shape[1])).astype(np.float32)
    query /= np.linalg.norm(query, axis=1, keepdims=True)
    track1 = emb.copy()
    if repeat is not None:
        r, s = int(round(repeat / HOP)), int(round(start / HOP))
        track1[r:r + n] = emb[s:s + n]
    other = rng.standard_normal(emb.shape).astype(np.float32)
    other /= np.linalg.norm(other, axis=1, keepdims=True)
    reference = ReferenceWindows.from_tracks([other, track1])
    f = int(round(start / HOP)) + np.arange(n)
    own = np.einsum("ij,ij->i", query, track1[f])
    imp = own - 0.01 if hub else own - 0.4
    tracks = np.c_[np.ones(n, int), np.zeros(n, int)]
    times = np.c_[f * HOP, rng.uniform(0, 30, n)]
    return (tracks, times, np.c_[own, imp], np.arange(n) * HOP), query, reference


def test_the_verified_confidence_is_the_default_with_reference_windows():
    from faiss_flowhash.db.consensus import DEFAULT_MIN_CONFIDENCE, impostor_scores, verified_confidence

    hits, query, reference = _verified_case()
    m = identify(*hits, query=query, reference=reference)[0]
    assert m.track_id == 1 and abs(m.offset_s - 4.0) <= 0.05
    frames = int(round(m.offset_s / HOP)) + np.arange(len(query))
    aligned = np.einsum("ij,ij->i", query, reference.take(np.ones(len(query), int), frames))
    assert m.confidence == pytest.approx(verified_confidence(aligned, impostor_scores(hits[0], hits[2], 1)))
    assert m.confidence >= DEFAULT_MIN_CONFIDENCE
    hits_only = identify(*hits, query=query, reference=reference, verify=False)[0]
    assert hits_only.confidence == pytest.approx(identify(*hits)[0].confidence)  # the hits-only confidence
    assert (hits_only.track_id, hits_only.offset_s) == (m.track_id, m.offset_s)  # the same answer
    # another track nearly as close on every segment (a "hub" query): the margin lowers the confidence (a short
    # snippet, where the margin decides; the same aligned similarity)
    short, q5, ref5 = _verified_case(n=5)
    hub_hits, _, _ = _verified_case(n=5, hub=True)
    clear, hub = (identify(*h, query=q5, reference=ref5)[0] for h in (short, hub_hits))
    assert (clear.track_id, clear.offset_s) == (hub.track_id, hub.offset_s)
    assert hub.confidence < clear.confidence - 0.2


def test_a_repeat_within_the_track_does_not_lower_the_verified_confidence():
    hits, query, reference = _verified_case(repeat=20.0)
    once = identify(*_verified_case()[0], query=query, reference=_verified_case()[2])[0]
    twice = identify(*hits, query=query, reference=reference)[0]
    assert twice.confidence == pytest.approx(once.confidence, abs=1e-6)
