"""FingerprintDB end to end on synthesised audio: ingest, identify (track + offset within 50 ms), no match
for audio not ingested, idempotence, remove, crash repair, format/model mismatch."""

import os
import shutil
import time

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from faiss_flowhash import QuantizerConfig, read_index, write_index
from faiss_flowhash.audio import Fingerprinter, add_noise, apply_rir, noise_bank, rir_bank, save_audio, synth
from faiss_flowhash.audio.files import expand_paths
from faiss_flowhash.db import (DatabaseMismatchError, FingerprintDB, SnippetTooShortError, TrackRecord, TrackStore,
                               decode_ids, encode_ids)
from faiss_flowhash.db.repair import plan_repair
from faiss_flowhash.db.database import INDEX_FILE, TRACKS_DIR


SR = 16000
WORDS = "river mountain signal window quiet orange table seven green paper morning station silver garden".split()


def _speech(words, voice, seconds):
    x = synth.speech(" ".join(words), voice=voice, speed_wpm=150)
    return np.tile(x, int(np.ceil(seconds * SR / len(x))))[: int(seconds * SR)]


def make_corpus(folder, seconds=12.0):
    """Reference tracks (3 music, 1 chirp, 1 speech when espeak-ng is present) and broken files."""
    os.makedirs(os.path.join(folder, "sub"), exist_ok=True)
    waves = {
        "m0.wav": synth.synthetic_music(seconds, seed=500),
        "sub/m1.flac": synth.synthetic_music(seconds, seed=501),
        "sub/m2.wav": synth.synthetic_music(seconds, seed=502),
        "chirp.flac": synth.chirp(150.0, 5000.0, seconds, method="log"),
    }
    if synth.espeak_available():
        waves["speech.wav"] = _speech(np.random.default_rng(1).choice(WORDS, 40), "en", seconds)
    out = {}
    for name, w in waves.items():
        path = os.path.join(folder, name)
        save_audio(path, np.clip(w, -1, 1).astype(np.float32))
        out[os.path.abspath(path)] = np.clip(w, -1, 1).astype(np.float32)
    with open(os.path.join(folder, "broken.wav"), "wb") as f:
        f.write(b"RIFF\x24\x00\x00\x00WAVEnot really audio")
    open(os.path.join(folder, "sub", "empty.flac"), "wb").close()
    save_audio(os.path.join(folder, "short.wav"), synth.tone(440.0, 0.5))
    with open(os.path.join(folder, "notes.txt"), "w") as f:
        f.write("not audio: ignored inside folders")
    return out


def not_ingested(seconds=4.0):
    """Snippets of audio that is not in the database: other music, other words and voice, noise."""
    out = [synth.synthetic_music(seconds, seed=s) for s in (900, 901, 902)]
    if synth.espeak_available():
        out.append(_speech("bicycle thunder marble velvet harbour lantern puzzle cactus meadow rocket".split(),
                           "de+f3", seconds))
    out.append(0.1 * noise_bank(7, 1, split="eval", duration_s=seconds)[0])
    out.append(add_noise(synth.synthetic_music(seconds, seed=903), noise_bank(8, 1, split="eval")[0], 10.0))
    return [np.asarray(x, np.float32) for x in out]


def snippet(wave, start_s, length_s):
    return wave[int(round(start_s * SR)) : int(round((start_s + length_s) * SR))]


@pytest.fixture(scope="module")
def model():
    return Fingerprinter.load()


@pytest.fixture(scope="module")
def built(tmp_path_factory, model):
    root = tmp_path_factory.mktemp("fpdb")
    corpus = make_corpus(str(root / "audio"))
    path = str(root / "db")
    with FingerprintDB(path, model, batch_files=2) as db:
        report = db.ingest([str(root / "audio")])
    return {"path": path, "corpus": corpus, "report": report, "audio": str(root / "audio")}


@pytest.fixture
def db_copy(built, tmp_path):
    """A private copy of the built database (for tests that change it)."""
    path = str(tmp_path / "db")
    shutil.copytree(built["path"], path)
    return path


def test_ingest_reports_broken_files_and_adds_the_rest(built):
    r = built["report"]
    assert len(r.added) == len(built["corpus"]) and not r.skipped
    failed = {os.path.basename(p): reason for p, reason in r.failed}
    assert set(failed) == {"broken.wav", "empty.flac", "short.wav"} and not r.ok
    assert "shorter than one 1 s window" in failed["short.wav"]
    assert {t.path for t in r.added} == set(built["corpus"])


def test_records_and_stats(built, model):
    with FingerprintDB(built["path"], readonly=True) as db:
        tracks, s = db.tracks(), db.stats()
    seconds = sum(len(w) for w in built["corpus"].values()) / SR
    assert s["tracks"] == len(tracks) == len(built["corpus"])
    assert s["hours"] == pytest.approx(seconds / 3600)
    assert s["fingerprints"] == s["index_vectors"] == sum(t.n_fingerprints for t in tracks)
    assert s["fingerprints"] == sum(model.num_windows(len(w)) for w in built["corpus"].values())
    assert 0 < s["buckets_used"] <= s["fingerprints"] and s["bytes_on_disk"] > 0
    assert s["model_id"] == model.model_id and s["format_version"] == 1
    for t in tracks:
        assert t.first_id == int(encode_ids(t.track_id, 1)[0]) and t.model_id == model.model_id
        assert t.sample_rate == SR and len(t.content_hash) == 64


def test_clean_snippets_give_track_and_offset(built, model):
    with FingerprintDB(built["path"], model, readonly=True) as db:
        by_path = {t.path: t.track_id for t in db.tracks()}
        rng = np.random.default_rng(0)
        for path, wave in built["corpus"].items():
            for length in (1.5, 4.0):
                start = float(rng.uniform(0, 12.0 - length))
                res = db.query(snippet(wave, start, length))
                assert res.matches, (path, start, length)
                m = res.best
                assert (m.track_id, m.path) == (by_path[path], path)
                assert abs(m.offset_s - start) <= 0.05, (path, start, m.offset_s)
                assert 0 < m.score <= 1.0 + 1e-6 and 0.35 <= m.confidence <= 1
                assert 0 < res.eval_percent <= 100 and res.elapsed_ms > 0


def test_noisy_snippets_give_track_and_offset(built, model):
    # music and speech; not the chirp: a log chirp is the same sweep at every time, scaled in frequency,
    # so under reverb its offset is ambiguous by about 0.1 s (clean chirp snippets are tested above)
    noises, rooms = noise_bank(3, 4, split="eval"), rir_bank(3, 2, split="eval")
    rng = np.random.default_rng(1)
    ok, total = 0, 0
    with FingerprintDB(built["path"], model, readonly=True) as db:
        for i, (path, wave) in enumerate(built["corpus"].items()):
            if "chirp" in path:
                continue
            for j in range(2):
                start = float(rng.uniform(0, 8.0))
                x = snippet(wave, start, 3.5)
                x = add_noise(x, noises[(i + j) % 4], 10.0, rng=rng) if j == 0 else \
                    add_noise(apply_rir(x, rooms[i % 2]), noises[i % 4], 15.0, rng=rng)
                m = db.query(x).best
                ok += m is not None and m.path == path and abs(m.offset_s - start) <= 0.05
                total += 1
    assert ok == total, f"{ok}/{total} noisy snippets identified"


def test_audio_not_ingested_gives_no_match(built, model):
    with FingerprintDB(built["path"], model, readonly=True) as db:
        for x in not_ingested():
            res = db.query(x, top=3)
            assert res.matches == [], res.matches
        # the threshold is an option: with 0 every snippet gets its best guess
        assert db.query(not_ingested()[0], min_confidence=0.0).matches


def test_top_n_and_short_query(built, model):
    wave = next(iter(built["corpus"].values()))
    with FingerprintDB(built["path"], model, readonly=True) as db:
        res = db.query(snippet(wave, 2.0, 3.0), top=3, min_confidence=0.0)
        assert 1 <= len(res.matches) <= 3 and len({m.track_id for m in res.matches}) == len(res.matches)
        assert res.matches[0].confidence == max(m.confidence for m in res.matches)
        with pytest.raises(SnippetTooShortError, match="0.50 s of audio is shorter than one 1 s"):
            db.query(wave[:8000])  # not a silent "no match"
        with pytest.raises(ValueError, match="top"):
            db.query(wave, top=0)
        with pytest.raises(TypeError, match="query"):
            db.query(123)


def test_query_a_file(built, model, tmp_path):
    path, wave = next(iter(built["corpus"].items()))
    f = str(tmp_path / "snippet.flac")
    save_audio(f, snippet(wave, 4.27, 3.0))
    with FingerprintDB(built["path"], model, readonly=True) as db:
        res = db.query(f)
    assert res.query == f and res.best.path == path and abs(res.best.offset_s - 4.27) <= 0.05


def test_reingest_is_idempotent(built, db_copy, model):
    with FingerprintDB(db_copy, model) as db:
        before = db.stats()
        r = db.ingest([built["audio"]])
        assert not r.added and len(r.skipped) == len(built["corpus"])
        # the same content under another name is skipped too
        src = next(iter(built["corpus"]))
        dup = os.path.join(os.path.dirname(db_copy), "copy_of_track.wav")
        shutil.copy(src, dup)
        assert db.ingest([dup]).skipped and db.stats()["fingerprints"] == before["fingerprints"]


def test_remove_frees_results_at_once(built, db_copy, model):
    path, wave = next(iter(built["corpus"].items()))
    q = snippet(wave, 3.0, 3.0)
    reader = FingerprintDB(db_copy, model, readonly=True)
    try:
        assert reader.query(q).best.path == path
        with FingerprintDB(db_copy, model) as writer:
            removed = writer.remove(path)
            assert [r.path for r in removed] == [path]
            assert writer.query(q, min_confidence=0.0).matches == [] or writer.query(q, min_confidence=0.0).best.path != path
            with pytest.raises(KeyError):
                writer.remove(12345)
        # the reader opened before the removal does not return it either
        res = reader.query(q, top=5, min_confidence=0.0)
        assert path not in [m.path for m in res.matches]
        assert reader.stats()["tracks"] == len(built["corpus"]) - 1
    finally:
        reader.close()
    with FingerprintDB(db_copy, model) as db:  # by id; re-ingesting the removed file brings it back
        tid = db.tracks()[0].track_id
        assert db.remove(tid)[0].track_id == tid
        assert len(db.ingest([built["audio"]]).added) == 2
        assert db.query(q).best.path == path


def test_repair_drops_index_ids_without_a_track(built, db_copy, model):
    """A writer killed after writing the index file but before the LMDB commit."""
    path, wave = next(iter(built["corpus"].items()))
    index_file = os.path.join(db_copy, INDEX_FILE)
    index = read_index(index_file)
    e = model.fingerprint(wave)
    index.add_with_ids(e, encode_ids(999, len(e)))  # a copy of the track under an uncommitted id
    write_index(index, index_file)
    with FingerprintDB(db_copy, model, readonly=True) as reader:  # readers ignore uncommitted ids
        assert reader.query(snippet(wave, 2.0, 3.0), top=5, min_confidence=0.0).best.path == path
        assert 999 not in [m.track_id for m in reader.query(snippet(wave, 2.0, 3.0), top=5, min_confidence=0).matches]
    with FingerprintDB(db_copy, model) as db:
        assert db.last_repair["dropped_index_tracks"] == [999]
        s = db.stats()
        assert s["index_vectors"] == s["fingerprints"]
        assert len(db.ingest([built["audio"]]).added) == 0
        assert all(t.track_id != 999 for t in db.tracks())


def test_repair_drops_tracks_whose_ids_are_missing(built, db_copy, model):
    """A record whose fingerprints are not in the index file: dropped, and a re-run ingests it again."""
    index_file = os.path.join(db_copy, INDEX_FILE)
    with FingerprintDB(db_copy, model, readonly=True) as db:
        victim = db.tracks()[1]
    index = read_index(index_file)
    index.remove_ids(np.arange(victim.first_id, victim.first_id + victim.n_fingerprints))
    write_index(index, index_file)
    with FingerprintDB(db_copy, model) as db:
        assert db.last_repair["dropped_records"] == [victim.track_id]
        assert victim.path not in [t.path for t in db.tracks()]
        r = db.ingest([built["audio"]])
        assert [t.path for t in r.added] == [victim.path]
        m = db.query(snippet(built["corpus"][victim.path], 5.0, 3.0)).best
        assert m.path == victim.path and m.track_id != victim.track_id  # ids are never reused


def test_format_and_model_mismatch(built, db_copy, model):
    other = Fingerprinter(model.encoder, quantizer=None)  # same encoder, no flow: another model id
    with pytest.raises(DatabaseMismatchError, match="fingerprint model"):
        FingerprintDB(db_copy, other)
    store = TrackStore(os.path.join(db_copy, TRACKS_DIR))
    meta = store.get_meta()
    store.put_meta({**meta, "version": 99})
    store.close()
    with pytest.raises(DatabaseMismatchError, match="format version 99"):
        FingerprintDB(db_copy, model)
    with pytest.raises(FileNotFoundError):
        FingerprintDB(os.path.join(db_copy, "nothing"), model, create=False)


def test_corrupted_index_file_is_a_clear_error(db_copy, model):
    with open(os.path.join(db_copy, INDEX_FILE), "r+b") as f:
        f.truncate(100)
    with pytest.raises(ValueError, match="corrupted or truncated"):
        FingerprintDB(db_copy, model, readonly=True)


def test_model_without_flow_trains_the_index_quantizer(built, model, tmp_path):
    plain = Fingerprinter(model.encoder, quantizer=None)
    config = QuantizerConfig(steps=30, projection_steps=20, batch_size=256, verbose=False)
    with FingerprintDB(str(tmp_path / "db"), plain, quantizer_config=config, min_train_vectors=300, batch_files=1) as db:
        r = db.ingest([built["audio"]])
        assert len(r.added) == len(built["corpus"])
        assert db._index.is_trained and db.stats()["index_vectors"] == db.stats()["fingerprints"]
        path, wave = next(iter(built["corpus"].items()))
        m = db.query(snippet(wave, 6.0, 4.0), min_confidence=0.0).best
        assert m.path == path and abs(m.offset_s - 6.0) <= 0.05


def test_expand_paths(built, tmp_path):
    files, missing = expand_paths([built["audio"], os.path.join(built["audio"], "sub", "*.wav"),
                                   str(tmp_path / "nope.wav"), str(tmp_path / "*.ogg")])
    names = [os.path.relpath(f, built["audio"]) for f in files]
    assert "notes.txt" not in names and "broken.wav" in names and names.count("sub/m2.wav") == 1
    assert [reason for _, reason in missing] == ["no such file or folder", "pattern matches no file"]


@pytest.mark.parametrize("growth, interval, expected", [(0.0, 1e9, "one per file"), (100.0, 1e9, 2), (100.0, 0.0, "one per file")])
def test_commit_policy(built, model, tmp_path, monkeypatch, growth, interval, expected):
    calls = []
    orig = FingerprintDB._commit
    monkeypatch.setattr(FingerprintDB, "_commit", lambda self, pending, report: (calls.append(len(pending)),
                                                                                   orig(self, pending, report)))
    with FingerprintDB(str(tmp_path / "db"), model, batch_files=1, commit_growth=growth,
                       commit_interval_s=interval) as db:
        n = len(db.ingest([built["audio"]]).added)
    # the first file commits at once (it creates the index); then growth or time decide
    assert calls == ([1] * n if expected == "one per file" else [1, n - 1])


@given(st.lists(st.tuples(st.integers(0, 30), st.integers(1, 5), st.integers(0, 5)), max_size=12, unique_by=lambda t: t[0]),
       st.lists(st.integers(31, 40), max_size=3, unique=True))
def test_plan_repair_leaves_index_and_records_in_agreement(tracks, orphans):
    """Records whose ids are partly missing and index ids without records, in any mix."""
    records = [TrackRecord(t, f"/a/{t}.wav", 1.0, f"{t:064x}", SR, int(encode_ids(t, 1)[0]), n, "m", "now")
               for t, n, _ in tracks]
    ids = np.concatenate([encode_ids(t, n - min(missing, n) if missing % 2 else n) for t, n, missing in tracks]
                         + [encode_ids(t, 3) for t in orphans] + [np.zeros(0, np.int64)])
    plan = plan_repair(ids, records, next_track_id=5)
    kept_ids = ids[~np.isin(decode_ids(ids)[0], plan.orphan_tracks)]
    kept = [r for r in records if r.track_id not in plan.incomplete_records]
    again = plan_repair(kept_ids, kept, next_track_id=plan.next_track_id)
    assert again.empty and again.next_track_id == plan.next_track_id
    assert set(orphans) <= set(plan.orphan_tracks)
    assert plan.next_track_id > max([4] + [t for t, _, _ in tracks] + orphans)


def test_package_docstring_example():
    import doctest

    import faiss_flowhash.db

    result = doctest.testmod(faiss_flowhash.db, verbose=False)
    assert result.attempted > 0 and result.failed == 0


def test_closed_database_is_a_clear_error(built, model):
    db = FingerprintDB(built["path"], model, readonly=True)
    db.close()
    db.close()
    for call in (lambda: db.tracks(), lambda: db.stats(), lambda: db.query(np.zeros(SR, np.float32))):
        with pytest.raises(ValueError, match="closed"):
            call()


# -- long recordings, repeats, one identification path ---------------------------------------------
def _recording(built):
    """Silence, three ingested tracks (parts of them; the last two back to back), silence: and the truth."""
    names = [p for p in built["corpus"] if "chirp" not in p and "speech" not in p][:3]
    w = [built["corpus"][n] for n in names]
    z = lambda s: np.zeros(int(s * SR), np.float32)  # noqa: E731
    rec = np.concatenate([z(1.5), w[0][: 8 * SR], z(2.0), w[1][3 * SR: 10 * SR], w[2][1 * SR: 9 * SR], z(1.0)])
    return rec, [(names[0], 1.5, 0.0), (names[1], 11.5, 3.0), (names[2], 18.5, 1.0)]


def _check_spans(spans, truth):
    assert [s.path for s in spans] == [t[0] for t in truth], spans
    for s, (_, start, track_start) in zip(spans, truth):
        assert abs(s.start_s - start) <= 0.2 and abs(s.track_start_s - track_start) <= 0.2, s
        assert s.confidence >= 0.35 and 6.0 <= s.duration_s <= 9.5


def _spy_verified(monkeypatch):
    """Records, per identify call of the span tracker, whether it got the fingerprints and reference windows."""
    from faiss_flowhash.db import spans as spans_module

    calls, real = [], spans_module.identify
    monkeypatch.setattr(spans_module, "identify", lambda *a, **kw: (
        calls.append(kw.get("query") is not None and kw.get("reference") is not None), real(*a, **kw))[1])
    return calls


def test_scan_a_long_recording_gives_every_span(built, model, tmp_path, monkeypatch):
    import io

    rec, truth = _recording(built)
    f = str(tmp_path / "rec.wav")
    save_audio(f, rec)
    verified = _spy_verified(monkeypatch)
    with FingerprintDB(built["path"], model, readonly=True) as db:
        _check_spans(list(db.scan(f, chunk_s=4.0)), truth)  # chunks far shorter than a track: spans cross them
        raw = io.BytesIO((np.clip(rec, -1, 1) * 32767).astype("<i2").tobytes())  # a headerless stream
        _check_spans(list(db.scan(raw)), truth)
        assert verified and all(verified)  # the spans were detected by the verified confidence
        # the plain query of the whole recording answers one track only: what --all is for
        assert len(db.query(rec, top=1).matches) <= 1
        # the hits-only tracker (verify=False) finds the same spans on this recording
        verified.clear()
        _check_spans(list(db.scan(f, verify=False)), truth)
        assert verified and not any(verified)


def test_scan_of_audio_not_ingested_gives_no_span(built, model, monkeypatch):
    """Other music, noise and music in noise, with silences between (40 s): no span under the verified path."""
    z = np.zeros(SR, np.float32)
    parts = [synth.synthetic_music(8.0, seed=s) for s in (910, 911, 912)]
    parts += [0.1 * noise_bank(9, 1, split="eval", duration_s=8.0)[0],
              add_noise(synth.synthetic_music(8.0, seed=913), noise_bank(10, 1, split="eval")[0], 10.0)]
    rec = np.concatenate([x for p in parts for x in (z, np.clip(np.asarray(p, np.float32), -1, 1))])
    verified = _spy_verified(monkeypatch)
    with FingerprintDB(built["path"], model, readonly=True) as db:
        assert list(db.scan(rec, chunk_s=4.0)) == []
    assert verified and all(verified)


def _with_repeat(built, db_path, model, tmp_path):
    """A track whose 4 s opening comes back at 8 s (A B A), ingested into the copy ``db_path``."""
    a = synth.synthetic_music(4.0, seed=777)
    b = synth.synthetic_music(4.0, seed=778)
    track = np.clip(np.concatenate([a, b, a, synth.synthetic_music(2.0, seed=779)]), -1, 1).astype(np.float32)
    f = str(tmp_path / "aba.wav")
    save_audio(f, track)
    with FingerprintDB(db_path, model) as db:
        assert db.ingest([f]).ok
    return f, track


def test_repeats_are_answers_with_confidence_of_the_track(built, db_copy, model, tmp_path):
    f, track = _with_repeat(built, db_copy, model, tmp_path)
    with FingerprintDB(db_copy, model, readonly=True) as db:
        m = db.query(snippet(track, 0.5, 3.0)).best
        assert m is not None and m.path == os.path.abspath(f)
        offsets = [m.offset_s] + [o for o, _ in m.alternates]
        assert len(offsets) == 2, m  # the passage is at 0.5 s and at 8.5 s: both are given
        assert sorted(round(o, 1) for o in offsets) == [0.5, 8.5]
        assert all(abs(o - t) <= 0.05 for o, t in zip(sorted(offsets), (0.5, 8.5)))
        assert m.alternates[0][1] <= m.score and m.confidence >= 0.8  # the track is certain, the place is not
        assert m.to_dict()["alternates"] == [{"offset_s": o, "score": sc} for o, sc in m.alternates]
        # a snippet of the unrepeated middle part has no alternates
        u = db.query(snippet(track, 4.5, 3.0)).best
        assert u.path == os.path.abspath(f) and u.alternates == () and abs(u.offset_s - 4.5) <= 0.05


def test_evaluation_and_database_give_the_same_answer(built, model):
    """The same hits go through the evaluation's answer and the database's query: the same answer."""
    from faiss_flowhash.db import ReferenceWindows
    from faiss_flowhash.eval import answer

    rng = np.random.default_rng(3)
    noises = noise_bank(4, 2, split="eval")
    with FingerprintDB(built["path"], model, readonly=True) as db:
        index, records = db.index, sorted(db.tracks(), key=lambda r: r.track_id)
        pos = {r.track_id: i for i, r in enumerate(records)}
        rows = [index.reconstruct_batch(np.arange(r.first_id, r.first_id + r.n_fingerprints)) for r in records]
        reference = ReferenceWindows.from_tracks(rows)  # the evaluation's view: tracks 0..T-1, one array
        for i, (path, wave) in enumerate(built["corpus"].items()):
            x = add_noise(snippet(wave, float(rng.uniform(0, 8)), 2.5), noises[i % 2], 5.0, rng=rng)
            res = db.query(x, min_confidence=0.0)
            e = model.fingerprint(x)
            D, I = index.search(e, db.hits_per_segment)
            t, frame = decode_ids(I)
            t = np.array([[pos.get(int(v), -1) for v in row] for row in t])
            a = answer(t, np.where(t >= 0, frame, -1), D, hop_s=model.hop_s, query=e, reference=reference)
            m = res.best
            assert records[a["track"]].track_id == m.track_id
            assert a["start_s"] == pytest.approx(m.offset_s, abs=1e-9)
            assert a["confidence"] == pytest.approx(m.confidence, abs=1e-12)
            assert a["alternates"] == pytest.approx([o for o, _ in m.alternates])


def test_a_file_where_the_database_directory_belongs(built, tmp_path):
    f = next(iter(built["corpus"]))
    with pytest.raises(NotADirectoryError, match="is a file, not a fingerprint database directory"):
        FingerprintDB(f)


def test_a_second_writer_waits_says_so_and_the_wait_is_not_work(built, db_copy, model):
    import threading

    from faiss_flowhash.db import write_lock
    from faiss_flowhash.db.database import LOCK_FILE

    held, told = threading.Event(), []

    def hold():
        with write_lock(os.path.join(db_copy, LOCK_FILE)):
            held.set()
            threading.Event().wait(1.0)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:
        with FingerprintDB(db_copy, model, on_lock_wait=lambda: told.append("waiting")) as db:
            t0 = time.perf_counter()
            report = db.ingest([built["audio"]])  # everything is there already: skipped, after the wait
            total = time.perf_counter() - t0
    finally:
        holder.join()
    assert told == ["waiting"] and report.lock_wait_s > 0 and "after waiting" in report.summary()
    assert report.lock_wait_s + report.elapsed_s <= total + 1e-6  # the wait is not counted as work
