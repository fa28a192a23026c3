"""Crash safety of the database's mechanisms, with real processes: a writer killed inside the index write of
an ingest and of a remove, and concurrent writers (the write lock).

The kill point is deterministic without a hook in the code: the writer runs the real CLI under a file-size
limit (RLIMIT_FSIZE) smaller than the index file it is about to write, with SIGXFSZ at its default action,
so the kernel terminates it inside write(2) once that many bytes are written: no handler, no ``finally``,
no cleanup, exactly as SIGKILL at that byte would. Whatever the implementation, the old index must still
read (the write was atomic), the readers' answers stay consistent, and the next writer removes what the
killed one left behind and repairs index and track records.
"""

import json
import os
import shutil
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from faiss_flowhash.audio import save_audio, synth
from faiss_flowhash.db import FingerprintDB, write_lock

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR = 16000
TRACK_S = 20.0
KNOWN = {"index.flowhash", "tracks.lmdb", "write.lock"}  # what a database directory holds at rest

# Run faiss_flowhash.cli.main(argv) killed by the kernel once a file would grow past `limit` bytes
# (0: no limit); `lock_timeout_s` (optional) shortens the writers' wait for the lock.
_DRIVER = """
import json, resource, signal, sys
limit, lock_timeout_s, argv = json.loads(sys.argv[1])
if limit:
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    signal.signal(signal.SIGXFSZ, signal.SIG_DFL)  # Python ignores it; the default terminates the process
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, limit))
if lock_timeout_s is not None:
    from faiss_flowhash.db import FingerprintDB
    FingerprintDB.__init__.__kwdefaults__["lock_timeout_s"] = lock_timeout_s
from faiss_flowhash.cli import main
sys.exit(main(argv))
"""


def writer(argv, *, limit: int = 0, lock_timeout_s=None, stderr=subprocess.PIPE) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    return subprocess.Popen([sys.executable, "-c", _DRIVER, json.dumps([limit, lock_timeout_s, [str(a) for a in argv]])],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)


def stray(db) -> set:
    return set(os.listdir(db)) - KNOWN


def snippet(wave, start_s, length_s=3.0):
    return wave[int(start_s * SR): int((start_s + length_s) * SR)]


def answers(db, waves, expect_tracks):
    """A reader's view: the committed tracks are exactly ``expect_tracks`` (paths), each answers its snippets
    (right track, offset within 50 ms), and a removed or uncommitted track answers nothing."""
    with FingerprintDB(db, readonly=True) as reader:
        assert sorted(r.path for r in reader.tracks()) == sorted(expect_tracks)
        for path, wave in waves.items():
            best = reader.query(snippet(wave, 7.0)).best
            if path in expect_tracks:
                assert best is not None and best.path == path and abs(best.offset_s - 7.0) <= 0.05, (path, best)
            else:
                assert best is None or best.path != path, (path, best)


def consistent(db):
    """The next writer: cleans what a killed writer left, and the index holds exactly the records' fingerprints."""
    with FingerprintDB(db) as w:
        repair = w.last_repair
        s = w.stats()
        assert s["index_vectors"] == s["fingerprints"] == sum(r.n_fingerprints for r in w.tracks())
    assert stray(db) == set(), stray(db)
    return repair


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("crash")
    waves = {}
    for i in range(6):
        path = str(root / f"t{i}.flac")
        w = np.clip(synth.synthetic_music(TRACK_S, seed=800 + i), -1, 1).astype(np.float32)
        save_audio(path, w)
        waves[path] = w
    base = str(root / "base")
    with FingerprintDB(base) as db:  # three tracks committed, index file on disk
        assert len(db.ingest(sorted(waves)[:3]).added) == 3
    return {"root": root, "waves": waves, "paths": sorted(waves), "base": base}


def _copy_base(corpus, tmp_path) -> str:
    db = str(tmp_path / "db")
    shutil.copytree(corpus["base"], db)
    return db


def test_killed_inside_the_index_write_of_an_ingest(corpus, tmp_path):
    db = _copy_base(corpus, tmp_path)
    old_size = os.path.getsize(os.path.join(db, "index.flowhash"))
    new = corpus["paths"][3:]
    proc = writer(["ingest", db, *new, "--no-progress"], limit=old_size)  # the new index is larger
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGXFSZ, err[-3000:]
    answers(db, corpus["waves"], corpus["paths"][:3])  # the old index still reads; nothing new committed
    assert stray(db), "the killed write left no partial file: was it written in place?"
    consistent(db)  # the partial file goes, nothing to repair in the records
    with FingerprintDB(db) as w:  # ingesting again adds exactly the files the killed writer lost
        assert sorted(r.path for r in w.ingest(new).added) == new
    answers(db, corpus["waves"], corpus["paths"])
    consistent(db)


def test_killed_inside_the_index_write_of_a_remove(corpus, tmp_path):
    db = _copy_base(corpus, tmp_path)
    old_size = os.path.getsize(os.path.join(db, "index.flowhash"))
    gone = corpus["paths"][0]
    proc = writer(["remove", db, gone], limit=old_size // 2)  # the index without one of 3 tracks: > half
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGXFSZ, err[-3000:]
    kept = corpus["paths"][1:3]
    answers(db, {p: corpus["waves"][p] for p in corpus["paths"][:3]}, kept)  # removed at once for readers
    assert stray(db), "the killed write left no partial file: was it written in place?"
    repair = consistent(db)  # the next writer drops the removed track's ids from the index
    assert repair["dropped_index_tracks"] == [0], repair
    answers(db, {p: corpus["waves"][p] for p in corpus["paths"][:3]}, kept)


def _wait_for(predicate, procs, what, timeout_s=120.0):
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline or all(p.poll() is not None for p in procs):
            return False
        time.sleep(0.1)
    return True


def test_concurrent_writers_ingest_each_file_once_and_a_short_lock_timeout_exits_2(corpus, tmp_path):
    db = str(tmp_path / "db")
    folder = str(corpus["root"])
    with FingerprintDB(db):  # an empty database, so that the writers below contend for its lock
        pass
    logs = [tmp_path / f"writer{i}.err" for i in range(2)]
    with write_lock(os.path.join(db, "write.lock"), timeout_s=5) as held:  # another writer is busy
        assert held
        impatient = writer(["ingest", db, folder, "--no-progress"], lock_timeout_s=1.0)
        files = [open(log, "w") for log in logs]
        writers = [writer(["ingest", db, folder, "--no-progress", "--json"], stderr=f) for f in files]
        _, err = impatient.communicate(timeout=300)
        waiting = _wait_for(lambda: all("waiting" in log.read_text() for log in logs), writers, "both wait")
    # the lock is free now: the two waiting writers race for it
    outs = [w.communicate(timeout=300)[0] for w in writers]
    for f in files:
        f.close()
    errs = [log.read_text() for log in logs]

    assert impatient.returncode == 2 and "Traceback" not in err, err[-3000:]
    assert err.strip().splitlines()[-1].startswith("flowhash ingest: error: ") and "another process" in err
    assert waiting, errs
    assert [w.returncode for w in writers] == [0, 0], errs
    reports = [json.loads(out) for out in outs]
    added = sorted(len(r["added"]) for r in reports)
    assert added == [0, 6], reports  # one writer ingested everything, the other found it all there
    assert all(len(r["added"]) + len(r["skipped"]) == 6 for r in reports)
    answers(db, corpus["waves"], corpus["paths"])
    assert consistent(db) == {"dropped_index_tracks": [], "dropped_records": []}
