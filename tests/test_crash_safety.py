"""Crash safety of the database's mechanisms, with real processes: a writer killed inside each step of the
index commit of an ingest (a new segment), of a remove (a tombstone) and of a compaction (a new base file),
and concurrent writers (the write lock).

The kill points are deterministic without a hook in the code. Either the writer runs the real CLI under a
file-size limit (RLIMIT_FSIZE) smaller than the file it is about to write, with SIGXFSZ at its default
action, so the kernel terminates it inside write(2) once that many bytes are written; or its ``os.replace``
(every rename of a commit: a segment's files, a tombstone, the manifest, the base file) SIGKILLs the process
when the destination's name contains a given string, after the temporary file was written and before it
is renamed. No handler, no ``finally``, no cleanup. Whatever the implementation, the last commit must
still read, the readers' answers stay consistent, and the next writer removes what the killed one left
behind and repairs index and track records.
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
from faiss_flowhash.index.serialize import lists_file_of, read_index_meta

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR = 16000
TRACK_S = 20.0
KNOWN = {"index.flowhash", "index.segments", "tracks.lmdb", "write.lock"}  # a database directory at rest

# Run faiss_flowhash.cli.main(argv) killed by the kernel once a file would grow past `limit` bytes
# (0: no limit), or SIGKILLed at the first os.replace whose destination contains `kill_on` (None: never);
# `lock_timeout_s` (optional) shortens the writers' wait for the lock.
_DRIVER = """
import json, os, resource, signal, sys
limit, lock_timeout_s, kill_on, argv = json.loads(sys.argv[1])
if kill_on:
    _replace = os.replace
    def replace(src, dst, *a, **kw):
        if kill_on in os.fspath(dst):
            os.kill(os.getpid(), signal.SIGKILL)
        return _replace(src, dst, *a, **kw)
    os.replace = replace
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


def writer(argv, *, limit: int = 0, lock_timeout_s=None, kill_on=None, stderr=subprocess.PIPE) -> subprocess.Popen:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTHONDONTWRITEBYTECODE="1")
    env.pop("PYTHONPATH", None)
    return subprocess.Popen([sys.executable, "-c", _DRIVER, json.dumps([limit, lock_timeout_s, kill_on, [str(a) for a in argv]])],
                            cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=stderr, text=True)


def stray(db) -> set:
    """Files a database at rest does not hold: unknown names, and segment-store files its manifest does not
    name (or names for a generation the base already holds)."""
    out = set(os.listdir(db)) - KNOWN
    base = os.path.join(db, "index.flowhash")
    if os.path.exists(base):  # the base's lists file (its vectors) is the one it names
        out -= {lists_file_of(base)}
    seg = os.path.join(db, "index.segments")
    if os.path.isdir(seg):
        with open(os.path.join(seg, "MANIFEST.json")) as f:
            m = json.load(f)
        base = os.path.join(db, "index.flowhash")
        base_gen = read_index_meta(base, meta_only=True).get("base_generation", 0) if os.path.exists(base) else 0
        named = {"MANIFEST.json", "write.lock"} | {t["name"] for t in m["tombstones"] if t["gen"] > base_gen}
        named |= {s["name"] + x for s in m["segments"] if s["gen"] > base_gen for x in (".vec.npy", ".ids.npy", ".codes.npy")}
        out |= {f"index.segments/{n}" for n in set(os.listdir(seg)) - named}
    return out


def segments(db) -> int:
    with open(os.path.join(db, "index.segments", "MANIFEST.json")) as f:
        return len(json.load(f)["segments"])


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
    grown = str(root / "grown")  # the same + a fourth track in a segment (no automatic compaction)
    shutil.copytree(base, grown)
    before = os.stat(os.path.join(grown, "index.flowhash"))
    with FingerprintDB(grown, compact_ratio=None) as db:
        assert len(db.ingest(sorted(waves)[3:4]).added) == 1
    after = os.stat(os.path.join(grown, "index.flowhash"))
    assert (after.st_ino, after.st_size, after.st_mtime_ns) == (before.st_ino, before.st_size, before.st_mtime_ns)
    assert segments(grown) == 1  # the commit appended a segment and left the base file alone
    return {"root": root, "waves": waves, "paths": sorted(waves), "base": base, "grown": grown}


def _copy_base(corpus, tmp_path, which="base") -> str:
    db = str(tmp_path / "db")
    shutil.copytree(corpus[which], db)
    return db


@pytest.mark.parametrize("step", [".vec.npy", "MANIFEST.json"])
def test_killed_inside_the_segment_commit_of_an_ingest(corpus, tmp_path, step):
    """Killed before a new segment's first file is renamed in, or with all its files in place but before the
    manifest names them: the commit did not happen; a commit writes no more than its own vectors."""
    db = _copy_base(corpus, tmp_path)
    base_bytes = os.path.getsize(os.path.join(db, "index.flowhash"))
    new = corpus["paths"][3:]
    proc = writer(["ingest", db, *new, "--no-progress"], kill_on=step)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
    assert os.path.getsize(os.path.join(db, "index.flowhash")) == base_bytes  # the base was not rewritten
    answers(db, corpus["waves"], corpus["paths"][:3])  # the last commit still reads; nothing new committed
    assert stray(db), "the killed commit left no partial file: was it written in place?"
    consistent(db)  # the partial files go, nothing to repair in the records
    with FingerprintDB(db) as w:  # ingesting again adds exactly the files the killed writer lost
        assert sorted(r.path for r in w.ingest(new).added) == new
    answers(db, corpus["waves"], corpus["paths"])
    consistent(db)


@pytest.mark.parametrize("step", ["index.lists-", "index.flowhash"])
def test_killed_inside_the_base_write_of_a_first_ingest(corpus, tmp_path, step):
    """The first commit writes the base (the quantizer with the first vectors): its lists file, then the
    file naming it. Killed before the lists file is renamed in, or with it in place but unnamed."""
    db = str(tmp_path / "db")
    proc = writer(["ingest", db, corpus["paths"][0], "--no-progress"], kill_on=step)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
    assert stray(db), "the killed write left no partial file: was it written in place?"
    with FingerprintDB(db) as w:
        assert w.tracks() == [] and w.index is None
        assert [r.path for r in w.ingest(corpus["paths"][:1]).added] == corpus["paths"][:1]
    answers(db, {p: corpus["waves"][p] for p in corpus["paths"][:2]}, corpus["paths"][:1])
    consistent(db)


@pytest.mark.parametrize("how", ["base write", "lists renamed", "manifest swap"])
def test_killed_inside_a_compaction(corpus, tmp_path, how):
    """``flowhash compact`` killed inside the new base's write (RLIMIT_FSIZE at the old lists file's size:
    the new one is larger), after the new lists file is renamed in but before the base naming it is, or
    after the new base is renamed in but before the manifest drops the segments it absorbed (a base newer
    than listed segments): every committed track still answers, exactly once."""
    db = _copy_base(corpus, tmp_path, "grown")
    old_lists = lists_file_of(os.path.join(db, "index.flowhash"))
    assert old_lists is not None, "the base keeps its vectors in a lists file"
    old = os.path.getsize(os.path.join(db, old_lists))
    kw = {"base write": dict(limit=old), "lists renamed": dict(kill_on="index.flowhash"),
          "manifest swap": dict(kill_on="MANIFEST.json")}[how]
    proc = writer(["compact", db], **kw)
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == (-signal.SIGXFSZ if how == "base write" else -signal.SIGKILL), err[-3000:]
    four = corpus["paths"][:4]
    answers(db, corpus["waves"], four)
    if how in ("base write", "lists renamed"):
        assert stray(db) and segments(db) == 1
        assert lists_file_of(os.path.join(db, "index.flowhash")) == old_lists  # the old base still reads
    else:  # the new base holds the segment: readers skip it by generation, the next writer drops it
        assert os.path.getsize(os.path.join(db, "index.flowhash")) > old and stray(db)
    assert consistent(db) == {"dropped_index_tracks": [], "dropped_records": []}
    proc = writer(["compact", db, "--json"])
    out, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-3000:]
    assert json.loads(out)["segments"] == (0 if how == "manifest swap" else 1)
    assert segments(db) == 0
    answers(db, corpus["waves"], four)
    consistent(db)


def test_killed_inside_the_tombstone_commit_of_a_remove(corpus, tmp_path):
    db = _copy_base(corpus, tmp_path)
    gone = corpus["paths"][0]
    proc = writer(["remove", db, gone], kill_on="del-")  # the records are gone, the tombstone not renamed in
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == -signal.SIGKILL, err[-3000:]
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
