"""The LMDB track store grows its map as needed: writes past the initial size commit whole, once; readers
in other threads and other processes follow the growth; a fingerprint database ingests past it."""

import os
import subprocess
import sys
import threading
import time

import numpy as np
import pytest

from faiss_flowhash.audio import Fingerprinter, save_audio, synth
from faiss_flowhash.db import FingerprintDB, TrackRecord, TrackStore
from faiss_flowhash.db import tracks as tracks_module
from faiss_flowhash.db.database import TRACKS_DIR

TINY = 4096  # one page: smaller than an empty environment with its three named databases


def _records(first: int, n: int, path_len: int = 300) -> list[TrackRecord]:
    return [TrackRecord(track_id=t, path="/" + f"{t:08d}" * (path_len // 8), duration_s=1.0 + t,
                        content_hash=f"{t:064x}", sample_rate=16000, first_id=t << 20, n_fingerprints=10,
                        model_id="m", added="2026-01-01T00:00:00Z") for t in range(first, first + n)]


def _used_bytes(store: TrackStore) -> int:
    return (store.env.info()["last_pgno"] + 1) * store.env.stat()["psize"]


def test_commits_grow_the_map_and_keep_every_record(tmp_path):
    store = TrackStore(tmp_path / "t", map_size=TINY)
    start = store.map_size()
    for b in range(20):
        store.commit(_records(100 * b, 100), meta={"next_track_id": 100 * (b + 1)})
    assert store.count() == 2000
    assert store.get_meta() == {"next_track_id": 2000}
    assert _used_bytes(store) > 8 * start  # the data really went past the initial map, many times over
    assert store.map_size() >= _used_bytes(store)
    assert [r.track_id for r in store.all()] == list(range(2000))
    assert store.get(1234) == _records(1234, 1)[0]
    assert all(store.by_hash(f"{t:064x}") == t for t in (0, 999, 1999))
    store.close()


def test_one_transaction_larger_than_the_map_commits_once(tmp_path):
    store = TrackStore(tmp_path / "t", map_size=TINY)
    store.put_meta({"a": 1})
    small = store.map_size()
    recs = _records(0, 3000)
    store.commit(recs)  # needs several doublings: the aborted attempts leave nothing behind
    assert store.map_size() >= 8 * small
    assert store.count() == 3000
    assert store.get_many(range(0, 3000, 7)) == {r.track_id: r for r in recs[::7]}
    removed = store.delete(range(0, 3000, 2))
    assert len(removed) == 1500 and store.count() == 1500 and store.by_hash(f"{0:064x}") is None
    store.close()


def test_reopen_with_a_tiny_map_opens_at_the_used_size(tmp_path):
    store = TrackStore(tmp_path / "t", map_size=TINY)
    store.commit(_records(0, 1000))
    store.close()
    again = TrackStore(tmp_path / "t", map_size=TINY)
    assert again.map_size() >= _used_bytes(again) > TINY
    assert again.count() == 1000
    again.commit(_records(1000, 1000))  # and it grows again from there
    assert again.count() == 2000
    again.close()
    ro = TrackStore(tmp_path / "t", readonly=True, map_size=TINY)
    assert ro.count() == 2000 and ro.get(1999) == _records(1999, 1)[0]
    ro.close()


def test_a_reader_in_another_process_follows_the_growth(tmp_path):
    path = str(tmp_path / "t")
    store = TrackStore(path, map_size=TINY)
    store.commit(_records(0, 10))
    reader = subprocess.Popen(
        [sys.executable, "-c", "import importlib.util, sys\n"  # the module alone: no torch import (seconds)
         f"spec = importlib.util.spec_from_file_location('tracks', {tracks_module.__file__!r})\n"
         "tracks = importlib.util.module_from_spec(spec)\n"
         "spec.loader.exec_module(tracks)\n"
         f"s = tracks.TrackStore({path!r}, readonly=True, map_size={TINY})\n"
         "print(s.count(), s.map_size(), flush=True)\n"
         "sys.stdin.readline()\n"
         "print(s.count(), s.get(4999).path[:9], flush=True)\n"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        n0, size0 = map(int, reader.stdout.readline().split())
        assert n0 == 10
        store.commit(_records(10, 4990))  # far past the map the reader opened with
        assert _used_bytes(store) > size0
        out, _ = reader.communicate("go\n", timeout=60)
    finally:
        if reader.poll() is None:
            reader.kill()
    assert reader.returncode == 0
    assert out.split() == ["5000", "/00004999"]
    store.close()


def test_readers_in_other_threads_while_the_map_grows(tmp_path):
    store = TrackStore(tmp_path / "t", map_size=TINY)
    store.commit(_records(0, 1))
    done, errors = threading.Event(), []

    def read():
        try:
            last = 0
            while not done.is_set():
                n = store.count()
                if n < last or store.get(n - 1) is None:  # each read sees a whole committed state, never less
                    errors.append((last, n))
                last = n
                time.sleep(0.001)  # spinning readers would starve the writer of the GIL (a convoy, minutes)
        except Exception as e:  # noqa: BLE001 -- reported by the main thread
            errors.append(repr(e))

    threads = [threading.Thread(target=read) for _ in range(3)]
    for t in threads:
        t.start()
    try:
        for b in range(20):
            store.commit(_records(1 + 100 * b, 100))
    finally:
        done.set()
        for t in threads:
            t.join(timeout=60)
    assert not errors
    assert store.count() == 2001 and store.map_size() > 16 * TINY
    store.close()


def test_bad_map_size(tmp_path):
    for bad in (0, 100, 2.5, True, "1G"):
        with pytest.raises(ValueError, match="map_size"):
            TrackStore(tmp_path / "t", map_size=bad)


def test_database_ingests_past_the_initial_map(tmp_path, monkeypatch):
    """FingerprintDB opens its store at DEFAULT_MAP_SIZE (one page here): reopened at its size when
    empty, the store must grow several times during one ingest."""
    monkeypatch.setattr(tracks_module, "DEFAULT_MAP_SIZE", TINY)
    model = Fingerprinter.load()
    FingerprintDB(tmp_path / "db", model).close()  # an empty database: meta record only
    store = TrackStore(tmp_path / "db" / TRACKS_DIR, readonly=True)
    empty_size = store.map_size()  # an environment reopens at its used size when that exceeds map_size
    store.close()
    deep = tmp_path / "audio"
    for level in range(3):  # long paths make big records (~800 bytes each)
        deep = deep / (f"{level:02d}" + "x" * 240)
    os.makedirs(deep)
    for i in range(24):
        save_audio(str(deep / f"t{i:02d}.wav"), synth.synthetic_music(1.5, seed=700 + i).astype(np.float32))
    with FingerprintDB(tmp_path / "db", model, batch_files=4) as db:
        report = db.ingest([str(tmp_path / "audio")])
        assert report.ok and len(report.added) == 24
        assert len(db.tracks()) == 24
        res = db.query(str(deep / "t05.wav"))
    store = TrackStore(tmp_path / "db" / TRACKS_DIR, readonly=True)
    assert store.map_size() > 2 * empty_size and _used_bytes(store) > empty_size
    assert sorted(os.path.basename(r.path) for r in store.all()) == [f"t{i:02d}.wav" for i in range(24)]
    store.close()
    assert res.matches and os.path.basename(res.matches[0].path) == "t05.wav"
