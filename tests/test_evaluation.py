"""The Table 1 protocol (faiss_flowhash.eval): seeded, reproducible queries; distortions at the
requested SNR and RT60; the 50 ms hit criterion; the offset consensus of eq. 12-13; run_eval and the
`flowhash eval` shell end to end on a tiny reference."""

import argparse
import json

import faiss
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st


from faiss_flowhash import eval as ev
from faiss_flowhash.audio.rooms import measure_rt60
from faiss_flowhash.audio.synth import synthetic_music

SR = 16000
TRACKS = [int(s * SR) for s in (8.0, 12.0, 6.5)]


def _small_queries(seed=0, **kw):
    kw.setdefault("lengths_s", (1.0, 2.0))
    kw.setdefault("n_per_cell", 3)
    kw.setdefault("n_noises", 3)
    kw.setdefault("n_rooms", 2)
    kw.setdefault("noise_s", 3.0)
    return ev.make_queries(TRACKS, seed=seed, **kw)


def _arrays(q):
    return {k: getattr(q, k) for k in ("track", "start", "length", "cond", "noise", "noise_start", "room")}


# ------------------------------------------------------------------------------------------ queries
def test_queries_are_seeded_and_cover_every_cell():
    a, b, c = _small_queries(0), _small_queries(0), _small_queries(1)
    for k, v in _arrays(a).items():
        np.testing.assert_array_equal(v, _arrays(b)[k])
    assert any(not np.array_equal(v, _arrays(c)[k]) for k, v in _arrays(a).items())
    assert len(a) == 2 * len(ev.PAPER_CONDITIONS) * 3
    cells = {(int(L), int(cd)) for L, cd in zip(a.length, a.cond)}
    assert cells == {(L * SR, c) for L in (1, 2) for c in range(len(ev.PAPER_CONDITIONS))}
    # every query lies inside its track, every noise cut inside its clip
    assert (a.start >= 0).all() and (a.start + a.length <= np.array(TRACKS)[a.track]).all()
    assert (a.noise_start + a.length <= 3 * SR).all()


def test_paper_conditions():
    labels = [c.label for c in ev.PAPER_CONDITIONS]
    assert labels[:5] == [f"noise {s}dB" for s in (0, 5, 10, 15, 20)]
    assert all(c.rt60_s == 0.5 for c in ev.PAPER_CONDITIONS[5:10])
    assert [c.rt60_s for c in ev.PAPER_CONDITIONS[10:]] == [0.2, 0.4, 0.5, 0.7, 0.8]


def test_query_set_round_trip_regenerates_the_same_audio(tmp_path):
    q = _small_queries(3)
    q.save(tmp_path / "q.npz")
    r = ev.QuerySet.load(tmp_path / "q.npz")
    for k, v in _arrays(q).items():
        np.testing.assert_array_equal(v, _arrays(r)[k])
    assert r.conditions == q.conditions and r.track_names == q.track_names
    waves = [synthetic_music(L / SR, seed=100 + t) for t, L in enumerate(TRACKS)]
    for i in (0, 20, 40, len(q) - 1):
        x1 = ev.render_query(waves[q.track[i]], q, i)
        x2 = ev.render_query(waves[r.track[i]], r, i)
        assert x1.dtype == np.float32 and x1.shape == (q.length[i],)
        np.testing.assert_array_equal(x1, x2)
    # a version-1 file (rendered by the retired add_noise / apply_rir protocol) is refused, not reinterpreted
    with np.load(tmp_path / "q.npz") as z:
        arrays = {k: z[k] for k in z.files}
    meta = json.loads(str(arrays.pop("meta")))
    np.savez(tmp_path / "v1.npz", meta=np.array(json.dumps({**meta, "version": 1})), **arrays)
    with pytest.raises(ValueError, match="version 2"):
        ev.QuerySet.load(tmp_path / "v1.npz")


def test_queries_render_through_the_one_distortion_protocol():
    """Each query is a distort.Distortion on the eval split: the spec's noise clip from its start, the
    spec's room at the condition's RT60, rendered by distort.render; the same spec renders the same
    audio inside another query set (a subset)."""
    from faiss_flowhash.audio import distort

    q = _small_queries(4, conditions=ev.PAPER_CONDITIONS + ev.EXTRA_CONDITIONS)
    wave = synthetic_music(TRACKS[1] / SR, seed=9)
    for i in range(len(q)):
        cond, d = q.conditions[q.cond[i]], ev.query_distortion(q, i)
        assert distort.Distortion.from_dict(d.to_dict()) == d
        if cond.snr_db is not None or cond.kind == "phone":
            assert d.noise.split == "eval" and d.noise.index == q.noise[i]
            assert int(d.noise.phase * 10 * SR) == q.noise_start[i]
            assert d.noise.snr_db == (20.0 if cond.kind == "phone" else cond.snr_db)
            assert (d.noise.bursty > 0) == (cond.kind == "bursty")
        else:
            assert d.noise is None
        if cond.rt60_s is not None:
            assert d.room.split == "eval" and d.room.index == q.room[i] and d.room.rt60_range == (cond.rt60_s,) * 2
        else:
            assert d.room is None
        assert (d.eq is not None) == (cond.kind == "phone")
    sub = q.select(np.arange(len(q))[::-7])
    for j, i in enumerate(np.arange(len(q))[::-7][:6]):
        q.track[i] = sub.track[j] = 1
        q.start[i] = sub.start[j] = min(int(q.start[i]), TRACKS[1] - int(q.length[i]))
        s, L = int(q.start[i]), int(q.length[i])
        x = ev.render_query(wave, q, int(i))
        np.testing.assert_array_equal(x, distort.render(wave, ev.query_distortion(q, int(i)), start=s, length=L))
        np.testing.assert_array_equal(x, ev.render_query(wave, sub, j))


def test_snr_and_rt60_applied_as_requested():
    q = _small_queries(5, n_rooms=3, conditions=ev.PAPER_CONDITIONS + ev.EXTRA_CONDITIONS)
    banks = ev.make_banks(q)
    for rt, rooms in banks.rooms.items():
        for h in rooms:
            assert measure_rt60(h) == pytest.approx(rt, rel=0.25)
    wave = synthetic_music(TRACKS[0] / SR, seed=7)
    q.track[:] = 0
    q.start[:] = np.minimum(q.start, TRACKS[0] - q.length)
    for i in range(len(q)):
        cond = q.conditions[q.cond[i]]
        x = ev.render_query(wave, q, i).astype(np.float64)
        s, L = q.start[i], q.length[i]
        clean = wave[s:s + L].astype(np.float64)
        if cond.kind == "noise":
            noise = x - clean
            snr = 10 * np.log10(np.mean(clean**2) / np.mean(noise**2))
            assert snr == pytest.approx(cond.snr_db, abs=0.05)
            n0 = q.noise_start[i]
            ref = banks.noises[q.noise[i]][n0:n0 + L]
            assert abs(np.corrcoef(noise, ref)[0, 1]) > 0.999  # the spec's clip, at the spec's start
        elif cond.kind == "reverb":
            assert not np.allclose(x, clean, atol=1e-3)
            assert np.mean(x**2) == pytest.approx(np.mean(clean**2), rel=0.6)
        elif cond.kind == "noise+reverb":
            # reverb first, then noise at the SNR over the reverberant snippet
            cond_rev = ev.Condition("reverb", rt60_s=cond.rt60_s)
            qr = q.select(np.arange(len(q)))
            qr.conditions = tuple(list(q.conditions) + [cond_rev])
            qr.cond = qr.cond.copy()
            qr.cond[i] = len(q.conditions)
            rev = ev.render_query(wave, qr, i).astype(np.float64)
            snr = 10 * np.log10(np.mean(rev**2) / np.mean((x - rev) ** 2))
            assert snr == pytest.approx(cond.snr_db, abs=0.05)
        elif cond.kind == "bursty":
            # noise in bursts (the SNR holds during a burst) and pauses 20-30 dB down: quieter on average
            # than steady noise at that SNR, and either a burst and a pause in the snippet or all pause
            noise = (x - clean).reshape(-1, 1600)
            p = 10 * np.log10(np.mean(noise**2, axis=1) / np.mean(clean**2))  # per 100 ms, dB re the music
            assert 10 * np.log10(np.mean(10 ** (p / 10))) < -cond.snr_db
            assert p.max() - p.min() > 10 or p.max() < -cond.snr_db - 15
        elif cond.kind == "phone":
            # band-limited playback: a 4x smaller share of the energy above 7 kHz than the music has
            f = np.abs(np.fft.rfft(x)) ** 2
            fc = np.abs(np.fft.rfft(clean)) ** 2
            hi = np.fft.rfftfreq(len(x), 1 / SR) > 7000
            assert f[hi].sum() / f.sum() < 0.25 * fc[hi].sum() / fc.sum()


@pytest.mark.parametrize("kw, match", [
    (dict(n_per_cell=0), "n_per_cell"),
    (dict(lengths_s=(0.5,)), "lengths_s"),
    (dict(lengths_s=(20.0,)), "noise_s|no track"),
    (dict(n_rooms=0), "n_rooms"),
])
def test_make_queries_rejects_bad_input(kw, match):
    with pytest.raises(ValueError, match=match):
        _small_queries(**kw)


def test_condition_and_file_errors(tmp_path):
    with pytest.raises(ValueError, match="kind"):
        ev.Condition("echo")
    with pytest.raises(ValueError, match="noise"):
        ev.Condition("noise")
    with pytest.raises(TypeError, match="Condition"):
        ev.make_queries(TRACKS, conditions=("noise",))
    with pytest.raises(FileNotFoundError):
        ev.QuerySet.load(tmp_path / "missing.npz")


# ------------------------------------------------------------------------------------------ scoring
def test_hit_needs_track_and_offset_within_50ms():
    assert ev.is_hit(2, 1.30, 2, 1.35)
    assert ev.is_hit(2, 1.30, 2, 1.25)
    assert not ev.is_hit(2, 1.30, 2, 1.351)
    assert not ev.is_hit(1, 1.30, 2, 1.30)
    np.testing.assert_array_equal(ev.is_hit([0, 0, 1], [0.0, 0.1, 0.0], [0, 0, 0], [0.04, 0.04, 0.0]),
                                  [True, False, False])


def test_consensus_is_eq_12_13():
    # segments o = 0..4 hit windows 10, 11, 57, 13, 14 of track 3: four vote for start 10
    tracks = np.full((5, 1), 3)
    segs = np.array([[10], [11], [57], [13], [14]])
    assert ev.consensus(tracks, segs, np.ones((5, 1))) == (3, 10, 4)
    # a tie on votes goes to the larger summed score
    tracks = np.array([[1], [1], [2], [2]])
    segs = np.array([[5], [6], [20], [21]])
    assert ev.consensus(tracks, segs, np.array([[0.5], [0.5], [0.9], [0.9]]))[:2] == (2, 18)
    assert ev.consensus(np.full((3, 1), -1), np.full((3, 1), -1), np.zeros((3, 1))) == (-1, 0, 0)


@given(st.integers(0, 3), st.integers(0, 200), st.integers(1, 41), st.data())
def test_consensus_recovers_the_start_despite_a_minority_of_wrong_hits(track, start, O, data):
    wrong = data.draw(st.sets(st.integers(0, O - 1), max_size=(O - 1) // 2))
    tracks = np.full((O, 1), track)
    segs = (start + np.arange(O))[:, None].copy()
    for o in wrong:
        tracks[o, 0] = (track + 1 + o) % 4
        segs[o, 0] = data.draw(st.integers(0, 300))
    t, s, v = ev.consensus(tracks, segs, np.ones((O, 1)))
    assert (t, s) == (track, start) and v >= O - len(wrong)


def test_locate_from_counts():
    locate = ev.locate_from_counts([3, 0, 2])
    t, s = locate(np.array([0, 2, 3, 4, -1, 5]))
    np.testing.assert_array_equal(t, [0, 0, 2, 2, -1, -1])
    np.testing.assert_array_equal(s, [0, 2, 0, 1, -1, -1])


def test_run_eval_scores_exact_and_shifted_answers(rng):
    counts = [40, 60]
    x = rng.standard_normal((100, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = ev.make_queries([int((c - 1) * 0.1 * SR + SR) for c in counts], lengths_s=(1.0, 2.0),
                        conditions=(ev.Condition("clean"),), n_per_cell=10, seed=1, noise_s=3.0)
    q.start[:] = np.round(q.start / 1600) * 1600  # on the 100 ms grid
    first = np.cumsum([0] + counts)[q.track] + q.start // 1600
    O = 1 + (q.length - SR) // 1600
    fps = [x[f:f + o] for f, o in zip(first, O)]
    flat = faiss.IndexFlatIP(16)
    flat.add(x)
    for how, batch in (("paper", 0), ("db", 0), ("db", 7)):
        res = ev.run_eval(fps, q, {"exact": ev.index_searcher(flat)}, ev.locate_from_counts(counts), len(x),
                          consensus=how, batch_rows=batch)
        assert all(r["hit"] and r["track_right"] for r in res.rows) and len(res.rows) == len(q)
        assert [r["start_s"] for r in res.rows] == pytest.approx(q.start_s.tolist())
    assert {r["eval_pct"] for r in res.table} == {100.0}
    assert [r["n"] for r in res.table] == [10, 10]
    # one window (100 ms) later is outside the 50 ms tolerance
    q2 = q.select(np.arange(len(q)))
    q2.start = q.start - 1600
    res2 = ev.run_eval(fps, q2, {"exact": ev.index_searcher(flat)}, ev.locate_from_counts(counts), len(x))
    assert not any(r["hit"] for r in res2.rows)
    md = res.markdown()
    assert md.count("\n") == 3 and "| 1s | exact |" in md and "clean" in md


def test_run_eval_checks_lengths():
    q = _small_queries(0)
    with pytest.raises(ValueError, match="query_fps"):
        ev.run_eval([], q, {}, ev.locate_from_counts([1]), 1)


# ------------------------------------------------------------------------------------------ shell
def _tiny_tracks(tmp_path, fp):
    from faiss_flowhash.audio import save_audio

    paths, counts, samples, xs = [], [], [], []
    for t in range(3):
        w = synthetic_music(4.0, seed=60_000 + t)
        p = tmp_path / f"t{t}.wav"
        save_audio(p, w, sample_rate=SR)
        e = fp.fingerprint(w)
        paths.append(str(p)), counts.append(len(e)), samples.append(len(w)), xs.append(e)
    return paths, counts, samples, xs


def _eval_args(*argv):
    parser = argparse.ArgumentParser()
    ev.add_eval_arguments(parser)
    return parser.parse_args([str(a) for a in argv])


def test_eval_command_on_a_reference_file(tmp_path, capsys):
    from faiss_flowhash.audio import Fingerprinter
    from faiss_flowhash.eval.command import save_reference

    fp = Fingerprinter.load()
    paths, counts, samples, xs = _tiny_tracks(tmp_path, fp)
    save_reference(tmp_path / "ref.npz", np.concatenate(xs), counts, paths, samples, model_id=fp.model_id)
    args = _eval_args(tmp_path / "ref.npz", tmp_path / "q.npz", "--n-per-cell", 1, "--lengths", 2,
                      "--methods", "flowhash,exact,ivf,lsh", "--json")
    assert ev.run_eval_command(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_queries"] == 15 and (tmp_path / "q.npz").exists()
    methods = {r["method"] for r in out["table"]}
    assert {"FlowHash", "Exact", "IndexLSH64"} < methods and any(m.startswith("IVFFlat") for m in methods)
    exact = [r for r in out["table"] if r["method"] == "Exact"]
    assert np.mean([r["hit_rate"] for r in exact]) >= 50.0
    # rerun on the saved query file: same table
    assert ev.run_eval_command(args) == 0
    again = json.loads(capsys.readouterr().out)
    assert [r["hit_rate"] for r in again["table"]] == [r["hit_rate"] for r in out["table"]]
    assert ev.run_eval_command(_eval_args(tmp_path / "nope.npz", tmp_path / "q.npz")) == 2
    assert "no such" in capsys.readouterr().err


def test_eval_command_on_a_database_directory(tmp_path, capsys):
    from faiss_flowhash.audio import Fingerprinter
    from faiss_flowhash.db import FingerprintDB

    fp = Fingerprinter.load()
    paths, *_ = _tiny_tracks(tmp_path, fp)
    with FingerprintDB(tmp_path / "db", model=fp) as db:
        assert db.ingest(paths).ok
    args = _eval_args(tmp_path / "db", tmp_path / "q.npz", "--n-per-cell", 1, "--lengths", "1,2",
                      "--methods", "flowhash,exact", "--json", "--repeats", "--min-confidence", "0.1")
    assert ev.run_eval_command(args) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["n_queries"] == 30 and {r["method"] for r in out["table"]} == {"FlowHash", "Exact"}
    exact = [r for r in out["table"] if r["method"] == "Exact"]
    flow = [r for r in out["table"] if r["method"] == "FlowHash"]
    assert np.mean([r["hit_rate"] for r in exact]) >= 50.0
    assert all(r["eval_pct"] == 100.0 for r in exact) and all(r["eval_pct"] < 100.0 for r in flow)


def test_exact_repeats_count_as_right():
    a, b = synthetic_music(3.0, seed=11), synthetic_music(3.0, seed=12)
    track = np.concatenate([a, b, a, b[:SR]])  # a at 0 s and again at 6 s
    start, length = int(0.5 * SR), 2 * SR
    reps = ev.exact_repeats(track, start, length)
    assert reps == pytest.approx([6.5], abs=1 / SR)
    assert ev.exact_repeats(track, int(3.5 * SR), length) == []  # b's full 2 s never comes back
    assert ev.is_hit(0, 6.53, 0, 0.5, repeats=reps) and not ev.is_hit(0, 6.53, 0, 0.5)
    assert not ev.is_hit(1, 6.5, 0, 0.5, repeats=reps) and not ev.is_hit(0, 6.6, 0, 0.5, repeats=reps)
    with pytest.raises(ValueError, match="segment inside the track"):
        ev.exact_repeats(track, len(track) - 10, length)


def test_run_eval_answers_as_the_database(rng):
    """With the reference windows the evaluation refines offsets and applies the threshold like the database."""
    from faiss_flowhash.db.identify import ReferenceWindows

    counts = [40, 60]
    x = rng.standard_normal((100, 16)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = ev.make_queries([int((c - 1) * 0.1 * SR + SR) for c in counts], lengths_s=(2.0,),
                        conditions=(ev.Condition("clean"),), n_per_cell=6, seed=2, noise_s=3.0)
    q.start[:] = np.round(q.start / 1600) * 1600
    first = np.cumsum([0] + counts)[q.track] + q.start // 1600
    fps = [x[f:f + 11] for f in first]
    flat = faiss.IndexFlatIP(16)
    flat.add(x)
    ref = ReferenceWindows(x, np.cumsum(counts) - counts, counts)
    methods = {"exact": ev.index_searcher(flat)}
    # k = 5 hits per segment, as the database searches: the confidence sees the other tracks' best hits
    res = ev.run_eval(fps, q, methods, ev.locate_from_counts(counts), len(x), reference=ref, k=5)
    assert all(r["hit"] and r["confidence"] > 0.9 and r["alternates"] == [] for r in res.rows)
    assert [r["start_s"] for r in res.rows] == pytest.approx(q.start_s.tolist(), abs=0.01)  # refined: sub-hop
    # a threshold above every confidence: every answer is "no match"
    none = ev.run_eval(fps, q, methods, ev.locate_from_counts(counts), len(x), reference=ref, k=5, min_confidence=1.0)
    assert all(r["track"] == -1 and not r["hit"] for r in none.rows if r["confidence"] < 1.0)
    with pytest.raises(ValueError, match="repeats"):
        ev.run_eval(fps, q, methods, ev.locate_from_counts(counts), len(x), repeats=[[]])


def test_run_eval_gives_the_databases_answer_for_the_same_hits(rng):
    """Noisy queries, 3 hits per segment: every row of run_eval (with the reference windows, as bench/table1
    passes them) is what ``identify`` returns when called as ``FingerprintDB._consensus`` calls it (hits
    as times, the query's fingerprints and the reference windows for refinement), and differs from the
    vote without refinement somewhere. tests/test_db.py checks the database itself against ``answer``."""
    from faiss_flowhash.db.identify import ReferenceWindows, identify

    counts = [50, 70, 30]
    x = rng.standard_normal((150, 16)).astype(np.float32)
    x = np.cumsum(x, axis=0) * 0.3 + x  # neighbouring windows alike, as fingerprints of music are
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = ev.make_queries([int((c - 1) * 0.1 * SR + SR) for c in counts], lengths_s=(2.0,),
                        conditions=(ev.Condition("clean"),), n_per_cell=12, seed=4, noise_s=3.0)
    first = np.cumsum([0] + counts)[q.track] + np.round(q.start / 1600).astype(int)
    fps = []
    for f in first:
        e = x[f:f + 11] + 0.35 * rng.standard_normal((11, 16)).astype(np.float32)
        fps.append(e / np.linalg.norm(e, axis=1, keepdims=True))
    flat = faiss.IndexFlatIP(16)
    flat.add(x)
    ref = ReferenceWindows(x, np.cumsum(counts) - counts, counts)
    locate = ev.locate_from_counts(counts)
    res = ev.run_eval(fps, q, {"exact": ev.index_searcher(flat)}, locate, len(x), k=3, reference=ref)
    plain = ev.run_eval(fps, q, {"exact": ev.index_searcher(flat)}, locate, len(x), k=3)
    for r, e in zip(res.rows, fps):
        D, I = flat.search(e, 3)
        t, fr = locate(I)
        m = identify(t, fr * 0.1, D, np.arange(len(e)) * 0.1, query=e, reference=ref, hop_s=0.1)[0]
        assert (r["track"], r["start_s"], r["votes"]) == (m.track_id, m.offset_s, m.support)
        assert r["confidence"] == pytest.approx(m.confidence, abs=1e-12)
        assert r["alternates"] == [a.offset_s for a in m.alternates]
    assert any(a["start_s"] != b["start_s"] for a, b in zip(res.rows, plain.rows))  # refinement ran
    assert np.mean([r["hit"] for r in res.rows]) >= 0.6  # starts off the 100 ms grid, noisy windows: 0.75 seen


def test_repeat_near_finds_the_repeats_exact_repeats_finds():
    a, b = synthetic_music(3.0, seed=11), synthetic_music(3.0, seed=12)
    track = np.concatenate([a, b, a, b[:SR]])  # a at 0 s and again at 6 s
    start, length = int(0.5 * SR), 2 * SR
    (rep,) = ev.exact_repeats(track, start, length)
    for at in (rep, rep + 0.04, rep - 0.04):
        assert ev.repeat_near(track, start, length, at) == pytest.approx(rep, abs=1 / SR)
    for at in (rep + 0.06, 0.5, 3.0, 9.0):  # too far from the repeat; the true start itself is no repeat
        assert ev.repeat_near(track, start, length, at) is None
    with pytest.raises(ValueError, match="segment inside the track"):
        ev.repeat_near(track, len(track) - 10, length, 1.0)
