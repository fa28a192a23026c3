"""The append-only segment store: commits add files (never rewrite), float16 memory-mapped reads,
deletes and replacement, compaction that neither blocks readers nor loses concurrent commits, and
SIGKILL at every step of a commit or a compaction leaving the last commit."""

import os
import signal
import threading

import numpy as np
import pytest

from faiss_flowhash.index import segments as seg_module
from faiss_flowhash.index.segments import MANIFEST, SegmentStore

D = 16


def _batch(rng, n, first_id):
    x = rng.standard_normal((n, D)).astype(np.float32)
    return x, np.arange(first_id, first_id + n, dtype=np.int64), rng.integers(0, 1 << 16, n).astype(np.uint64)


def _state(store):
    x, ids, codes = store.snapshot().arrays()
    order = np.argsort(ids)
    return x[order], ids[order], None if codes is None else codes[order]


def test_commits_append_files_and_read_back_memory_mapped(tmp_path, rng):
    store = SegmentStore(tmp_path / "s", D, dtype="float16")
    batches = [_batch(rng, n, i * 1000) for i, n in enumerate((300, 1, 700))]
    seen = set()
    for x, ids, codes in batches:
        store.commit(x, ids, codes)
        names = set(os.listdir(tmp_path / "s"))
        assert seen <= names  # nothing is rewritten or removed by a commit
        seen = names
    snap = store.snapshot()
    assert snap.generation == 3 and len(snap.segments) == 3 and snap.ntotal == 1001
    assert all(isinstance(s.vectors, np.memmap) and s.vectors.dtype == np.float16 for s in snap.segments)
    x, ids, codes = snap.arrays()
    want = np.concatenate([b[0] for b in batches])
    np.testing.assert_array_equal(x, want.astype(np.float16).astype(np.float32))  # float16 storage, float32 out
    assert np.array_equal(ids, np.concatenate([b[1] for b in batches]))
    assert np.array_equal(codes, np.concatenate([b[2] for b in batches]))
    f32 = SegmentStore(tmp_path / "f32", D, dtype="float32")
    f32.commit(*batches[0])
    np.testing.assert_array_equal(f32.snapshot().arrays()[0], batches[0][0])
    again = SegmentStore(tmp_path / "s", readonly=True)
    assert again.d == D and again.dtype == "float16" and again.snapshot().ntotal == 1001


def test_deletes_replacement_and_compaction(tmp_path, rng):
    store = SegmentStore(tmp_path / "s", D)
    a, b = _batch(rng, 500, 0), _batch(rng, 500, 500)
    store.commit(*a)
    store.commit(*b)
    store.commit(delete=np.arange(100, 700))  # spans both segments
    new = _batch(rng, 50, 600)  # ids 600..649 again: replaced by new rows in one commit
    store.commit(*new, delete=new[1])
    x, ids, codes = _state(store)
    keep = np.r_[np.arange(100), np.arange(600, 650), np.arange(700, 1000)]
    assert np.array_equal(ids, keep)
    full = np.concatenate([a[0], b[0]]).astype(np.float16).astype(np.float32)
    np.testing.assert_array_equal(x[ids >= 700], full[700:])
    np.testing.assert_array_equal(x[(ids >= 600) & (ids < 650)], new[0].astype(np.float16).astype(np.float32))
    before_disk = store.snapshot().disk_bytes()
    report = store.compact(chunk_rows=64)  # many chunks: the streaming path
    assert report["merged_segments"] == 3 and report["rows"] == 450 and report["dropped_rows"] == 600
    snap = store.snapshot()
    assert len(snap.segments) == 1 and snap.manifest["tombstones"] == [] and snap.disk_bytes() < before_disk
    assert all(np.array_equal(u, v) for u, v in zip(_state(store), (x, ids, codes)))
    store.commit(delete=[0, 1])  # later tombstones apply to the merged segment
    assert _state(store)[1][0] == 2
    assert store.compact()["merged_segments"] == 1 and store.compact()["merged_segments"] == 0


def test_drop_through_forgets_what_a_base_holds(tmp_path, rng):
    """The database's compaction writes its base elsewhere, then drops the generations it holds."""
    store = SegmentStore(tmp_path / "s", D, dtype="float32")
    batches = [_batch(rng, 30, 100 * i) for i in range(3)]
    for b in batches:
        store.commit(*b)
    store.commit(delete=[0, 1])
    reader = store.snapshot()
    assert store.drop_through(0) == []
    removed = store.drop_through(2)
    assert len(removed) == 6 and store.generation == 4  # two segments x 3 files; the generation stays
    snap = store.snapshot()
    assert [s.gen for s in snap.segments] == [3] and [t["gen"] for t in snap.manifest["tombstones"]] == [4]
    assert np.array_equal(snap.arrays()[1], batches[2][1])
    assert sorted(os.listdir(tmp_path / "s")) == sorted(
        [MANIFEST, "write.lock"] + [snap.segments[0].name + k for k in (".vec.npy", ".ids.npy", ".codes.npy")]
        + [snap.manifest["tombstones"][0]["name"]])
    assert reader.arrays()[1].size == 88  # an older snapshot still reads its unlinked files


def test_compaction_blocks_neither_readers_nor_commits(tmp_path, rng, monkeypatch):
    store = SegmentStore(tmp_path / "s", D)
    for i in range(4):
        store.commit(*_batch(rng, 200, 200 * i))
    store.commit(delete=np.arange(0, 800, 2))
    old = store.snapshot()
    old_x = old.arrays()[0]
    paused, go = threading.Event(), threading.Event()
    chunks = seg_module.Snapshot.chunks

    def slow_chunks(self, chunk_rows=1 << 18):
        for i, c in enumerate(chunks(self, chunk_rows)):
            if i == 1:  # compaction is half way through its merge
                paused.set()
                assert go.wait(60)
            yield c

    monkeypatch.setattr(seg_module.Snapshot, "chunks", slow_chunks)
    t = store.compact_in_background(chunk_rows=50)
    assert paused.wait(60)
    extra = _batch(rng, 100, 5000)
    store.commit(*extra, delete=[1, 3])  # neither waits for the merge
    monkeypatch.setattr(seg_module.Snapshot, "chunks", chunks)
    mid = store.snapshot()
    assert mid.ntotal == 400 - 2 + 100
    go.set()
    t.join(60)
    assert isinstance(t.result, dict) and t.result["merged_segments"] == 4, t.result
    snap = store.snapshot()
    assert [s.gen for s in snap.segments] == [old.generation, old.generation + 1]  # merged + the one committed meanwhile
    ids = np.sort(snap.arrays()[1])
    assert np.array_equal(ids, np.r_[np.arange(5, 800, 2), np.arange(5000, 5100)])
    np.testing.assert_array_equal(old.arrays()[0], old_x)  # the old snapshot reads its (now unlinked) files
    assert sorted(os.listdir(tmp_path / "s")) == sorted(
        [MANIFEST, "write.lock"] + [s.name + k for s in snap.segments for k in (".vec.npy", ".ids.npy", ".codes.npy")]
        + [t["name"] for t in snap.manifest["tombstones"]])


def _killed_child(fn) -> None:
    """Run ``fn`` in a forked child that SIGKILLs itself where ``fn`` says; wait for it."""
    pid = os.fork()
    if pid == 0:
        try:
            fn()
        finally:
            os._exit(3)  # fn returned without killing itself: reported as exit 3
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, status


def _kill_on_replace(n):
    """Patch os.replace (each file rename of a commit, and the manifest's) to SIGKILL on call ``n``."""
    calls = []
    real = os.replace

    def replace(src, dst):
        calls.append(dst)
        if len(calls) == n:
            os.kill(os.getpid(), signal.SIGKILL)
        real(src, dst)

    os.replace = replace


@pytest.mark.parametrize("step", [1, 2, 3, 4], ids=["vectors", "ids", "codes", "manifest"])
def test_sigkill_during_a_commit_leaves_the_last_commit(tmp_path, rng, step):
    store = SegmentStore(tmp_path / "s", D)
    store.commit(*_batch(rng, 100, 0))
    want = _state(store)
    nxt = _batch(rng, 100, 100)

    def child():
        _kill_on_replace(step)  # 1-3: the segment's files, 4: the manifest (the commit itself)
        SegmentStore(tmp_path / "s").commit(*nxt, delete=[0])

    _killed_child(child)
    reader = SegmentStore(tmp_path / "s", readonly=True)
    assert all(np.array_equal(u, v) for u, v in zip(_state(reader), want))  # readers: the last commit
    writer = SegmentStore(tmp_path / "s")  # the next writer removes what the killed one left
    assert writer.removed_orphans and all(n.startswith((".tmp-", "seg-", "del-")) for n in writer.removed_orphans)
    writer.commit(*nxt, delete=[0])
    assert np.array_equal(_state(writer)[1], np.arange(1, 200))


@pytest.mark.parametrize("step", [1, 3, 4, "unlink"], ids=["merged-vectors", "merged-codes", "manifest", "cleanup"])
def test_sigkill_during_compaction_leaves_a_whole_state(tmp_path, rng, step):
    store = SegmentStore(tmp_path / "s", D)
    for i in range(3):
        store.commit(*_batch(rng, 100, 100 * i))
    store.commit(delete=np.arange(50, 150))
    want = _state(store)

    def child():
        if step == "unlink":  # after the manifest swap, while the merged-away files are deleted
            real = os.unlink
            os.unlink = lambda p: (os.kill(os.getpid(), signal.SIGKILL), real(p))
        else:
            _kill_on_replace(step)
        SegmentStore(tmp_path / "s").compact()

    _killed_child(child)
    reader = SegmentStore(tmp_path / "s", readonly=True)
    assert all(np.array_equal(u, v) for u, v in zip(_state(reader), want))  # before or after the swap: same rows
    writer = SegmentStore(tmp_path / "s")
    assert all(np.array_equal(u, v) for u, v in zip(_state(writer), want))
    swapped = len(writer.snapshot().segments) == 1  # killed before the manifest's rename: not swapped
    assert swapped == (step == "unlink")
    report = writer.compact()
    assert report["merged_segments"] == (0 if swapped else 3)
    assert all(np.array_equal(u, v) for u, v in zip(_state(writer), want))
    names = set(os.listdir(tmp_path / "s"))
    assert len([n for n in names if n.endswith(".vec.npy")]) == 1 and not any(n.startswith(".tmp-") for n in names)


def test_bad_input(tmp_path):
    with pytest.raises(FileNotFoundError):
        SegmentStore(tmp_path / "none")
    with pytest.raises(ValueError, match="dtype"):
        SegmentStore(tmp_path / "a", D, dtype="int8")
    store = SegmentStore(tmp_path / "s", D)
    with pytest.raises(ValueError, match="d: the store"):
        SegmentStore(tmp_path / "s", D + 1)
    with pytest.raises(ValueError, match=r"expected shape \(n, 16\)"):
        store.commit(np.zeros((3, 5), np.float32), [1, 2, 3])
    with pytest.raises(ValueError, match="duplicate"):
        store.commit(np.zeros((2, D), np.float32), [1, 1])
    with pytest.raises(ValueError, match="codes"):
        store.commit(np.zeros((2, D), np.float32), [1, 2], codes=np.zeros(3, np.uint64))
    with pytest.raises(PermissionError):
        SegmentStore(tmp_path / "s", readonly=True).commit(np.zeros((1, D), np.float32), [1])
    with open(tmp_path / "s" / MANIFEST, "w") as f:
        f.write("{not json")
    with pytest.raises(ValueError, match="corrupted manifest"):
        SegmentStore(tmp_path / "s", readonly=True)
