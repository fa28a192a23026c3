"""The database's index persistence (faiss_flowhash.db.index_store): a base file plus one segment per commit.

A commit writes only its own rows (the base file is untouched), every state opens to exactly the writer's
index (same ids, same vectors, same search results), readers catch up on new commits incrementally, and a
compaction rewrites the base and drops the segments without changing what is read. The invariant is
checked over random sequences of adds, removes and compactions (hypothesis)."""

import os

import faiss
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from faiss_flowhash.db.index_store import INDEX_FILE, SEGMENTS_DIR, IndexStore
from faiss_flowhash.index import FlowHashIndex, QuantizerConfig
from faiss_flowhash.index.serialize import read_index_meta, write_index

D, K = 16, 6


@pytest.fixture(scope="module")
def quantizer():
    rng = np.random.default_rng(5)
    ix = FlowHashIndex(D, K=K, config=QuantizerConfig(steps=0, verbose=False, seed=0))
    ix.train(rng.standard_normal((2000, D)).astype(np.float32))
    return ix.quantizer


def _same(a: FlowHashIndex, b: FlowHashIndex, rng) -> None:
    assert a.ntotal == b.ntotal
    assert np.array_equal(np.sort(a.ids), np.sort(b.ids))
    if a.ntotal:
        ids = np.sort(a.ids)
        np.testing.assert_array_equal(a.reconstruct_batch(ids), b.reconstruct_batch(ids))
        q = rng.standard_normal((20, D)).astype(np.float32)
        Da, Ia = a.search(q, 5)
        Db, Ib = b.search(q, 5)
        # same vectors; list layout may differ after a replay, so compare the result sets by score
        np.testing.assert_allclose(Da, Db, rtol=1e-5, atol=1e-5)


def _sig(path):
    st_ = os.stat(path)
    return st_.st_ino, st_.st_size, st_.st_mtime_ns


def test_commits_append_segments_and_leave_the_base_alone(tmp_path, quantizer, rng):
    ix = FlowHashIndex(quantizer=quantizer)
    store = IndexStore(str(tmp_path))
    x = rng.standard_normal((300, D)).astype(np.float32)
    ix.add_with_ids(x, np.arange(300))
    store.append(x, np.arange(300), ix)  # the first commit writes the base
    base = _sig(tmp_path / INDEX_FILE)
    reader = IndexStore(str(tmp_path), readonly=True)
    seen = reader.load()
    for i in range(3):
        y = rng.standard_normal((50, D)).astype(np.float32)
        ids = np.arange(1000 + 50 * i, 1050 + 50 * i)
        ix.add_with_ids(y, ids)
        store.append(y, ids, ix)
        assert _sig(tmp_path / INDEX_FILE) == base  # a commit never rewrites the base
        seen = reader.refresh(seen)  # incremental: only the new segment
        _same(ix, seen, rng)
    gone = np.arange(100, 200)
    ix.remove_ids(gone)
    store.delete(gone, ix)
    assert _sig(tmp_path / INDEX_FILE) == base
    seen = reader.refresh(seen)
    _same(ix, seen, rng)
    _same(ix, IndexStore(str(tmp_path), readonly=True).load(), rng)
    assert store.delta_rows() == 150 + 100
    assert store.base_rows == 300 and store.should_compact(0.8) and not store.should_compact(0.9)
    c = store.compact(ix)
    assert c["segments"] == 3 and c["delta_rows"] == 250 and store.delta_rows() == 0
    assert sorted(os.listdir(tmp_path / SEGMENTS_DIR)) == ["MANIFEST.json", "write.lock"]
    assert read_index_meta(tmp_path / INDEX_FILE, meta_only=True)["base_generation"] == 4
    seen = reader.refresh(seen)  # a new base: read whole
    _same(ix, seen, rng)


def test_a_base_newer_than_its_listed_segments_opens_to_the_same_index(tmp_path, quantizer, rng):
    """A compaction killed between the new base and the manifest swap, or a base written by other code
    without a generation: segments the base holds are skipped, removed ids stay removed."""
    ix = FlowHashIndex(quantizer=quantizer)
    store = IndexStore(str(tmp_path))
    x = rng.standard_normal((200, D)).astype(np.float32)
    ix.add_with_ids(x[:100], np.arange(100))
    store.append(x[:100], np.arange(100), ix)
    ix.add_with_ids(x[100:], np.arange(100, 200))
    store.append(x[100:], np.arange(100, 200), ix)
    ix.remove_ids(np.arange(150, 160))
    store.delete(np.arange(150, 160), ix)
    for meta in ({"base_generation": 2}, None):  # stale generation / none at all (an older writer)
        write_index(ix, tmp_path / INDEX_FILE, meta=meta)
        _same(ix, IndexStore(str(tmp_path), readonly=True).load(), rng)
    IndexStore(str(tmp_path)).repair()  # no generation recorded: nothing is dropped, still the same
    _same(ix, IndexStore(str(tmp_path), readonly=True).load(), rng)


def test_no_commit_no_index(tmp_path):
    assert IndexStore(str(tmp_path), readonly=True).load() is None
    assert IndexStore(str(tmp_path)).disk_bytes() == 0


@settings(max_examples=10)
@given(st.lists(st.tuples(st.sampled_from(["add", "remove", "compact"]), st.integers(1, 60)), min_size=1, max_size=8),
       st.integers(0, 2**16))
def test_any_sequence_of_commits_opens_to_the_writers_index(tmp_path_factory, quantizer, ops, seed):
    rng = np.random.default_rng(seed)
    folder = str(tmp_path_factory.mktemp("seq"))
    ix = FlowHashIndex(quantizer=quantizer)
    store, reader = IndexStore(folder), IndexStore(folder, readonly=True)
    seen, next_id = None, 0
    for op, n in ops:
        if op == "add":
            x = rng.standard_normal((n, D)).astype(np.float32)
            ids = np.arange(next_id, next_id + n)
            next_id += n
            ix.add_with_ids(x, ids)
            store.append(x, ids, ix)
        elif op == "remove" and ix.ntotal:
            gone = rng.choice(ix.ids, size=min(n, ix.ntotal), replace=False)
            ix.remove_ids(gone)
            store.delete(gone, ix)
        elif op == "compact" and ix.ntotal:
            store.compact(ix)
        seen = reader.refresh(seen) if seen is not None else reader.load()
        if seen is not None:
            _same(ix, seen, rng)
    fresh = IndexStore(folder, readonly=True).load()
    if fresh is not None:
        _same(ix, fresh, rng)

def test_the_manifest_name_is_the_segment_stores():
    from faiss_flowhash.db import index_store
    from faiss_flowhash.index import segments

    assert index_store.MANIFEST == segments.MANIFEST


def test_a_refresh_waits_for_the_searches_under_way():
    import threading

    from faiss_flowhash.db.index_store import ReadWriteLock

    lock, events = ReadWriteLock(), []
    inside, release = threading.Event(), threading.Event()

    def search():
        with lock.shared():
            events.append("search in")
            inside.set()
            assert release.wait(30)
            events.append("search out")

    def refresh():
        with lock.exclusive():
            events.append("refresh")

    s = threading.Thread(target=search)
    s.start()
    assert inside.wait(30)
    r = threading.Thread(target=refresh)
    r.start()
    release.set()
    s.join(30), r.join(30)
    assert events == ["search in", "search out", "refresh"]
    with lock.shared(), lock.shared():  # searches share it
        pass
