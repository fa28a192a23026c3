"""An index whose lists live in a file of their own, opened memory-mapped: the same answers as the index
read into RAM, changes copied on write (the file is never written), old one-file indexes still open,
and segment replay from stored codes equal to replay by encoding."""

import hashlib
import io
import json
import os

import faiss
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import faiss_flowhash as ffh
from faiss_flowhash.db.index_store import INDEX_FILE, LISTS_PREFIX, IndexStore
from faiss_flowhash.index.engine import IVFEngine
from faiss_flowhash.index.serialize import MAGIC, lists_file_of, read_index, write_index

D = 16


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(11)
    return rng.standard_normal((6000, D)).astype(np.float32), rng.standard_normal((60, D)).astype(np.float32)


def _index(x, storage, **kw):
    ix = ffh.FlowHashIndex(D, K=10, storage=storage, config=ffh.QuantizerConfig(steps=0, verbose=False, seed=0), **kw)
    ix.train(x[:2000])
    ix.add_with_ids(x[:4000], np.arange(4000) * 2)
    return ix


def _write(ix, folder, name="a"):
    path = os.path.join(folder, f"{name}.flowhash")
    write_index(ix, path, lists_path=os.path.join(folder, f"{name}.lists"))
    return path


def _digest(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()


def _same(a, b, q, **kw):
    for params in (ffh.SearchParams(**kw), ffh.SearchParams(budget=60, **kw)):
        Da, Ia = a.search(q, 7, params=params)
        Db, Ib = b.search(q, 7, params=params)
        np.testing.assert_array_equal(Ia, Ib)
        np.testing.assert_array_equal(Da, Db)
        assert a.last_search_stats == b.last_search_stats


@pytest.mark.parametrize("storage", ["float16", "float32"])
@pytest.mark.parametrize("probe", ["centroid", "flip"])
def test_a_mapped_index_answers_as_the_one_read_into_ram(data, tmp_path, storage, probe):
    x, q = data
    ix = _index(x, storage, probe=probe)
    path = _write(ix, str(tmp_path))
    mapped, read = read_index(path, mmap=True), read_index(path)
    assert mapped._engine.mapped and not read._engine.mapped
    assert mapped._engine.mapped_bytes() == ix.table_entries * (mapped._engine._parts[0].code_size + 8)
    for other in (ix, read):
        _same(mapped, other, q)
    np.testing.assert_array_equal(mapped.reconstruct_batch(ix.ids[::37]), ix.reconstruct_batch(ix.ids[::37]))
    assert sorted(os.listdir(tmp_path)) == ["a.flowhash", "a.lists"] and lists_file_of(path) == "a.lists"
    write_index(ix, tmp_path / "inline.flowhash")  # the vectors and ids are in the lists file, not here
    payload = ix.table_entries * (mapped._engine._parts[0].code_size + 8)
    assert os.path.getsize(tmp_path / "inline.flowhash") - os.path.getsize(path) >= payload


@settings(max_examples=15, deadline=None)
@given(ops=st.lists(st.tuples(st.sampled_from(["add", "remove"]), st.integers(1, 300)), min_size=1, max_size=6),
       storage=st.sampled_from(["float16", "float32"]), cap=st.sampled_from([None, 6]))
def test_changes_on_a_mapped_index_equal_the_same_changes_in_ram(data, tmp_path_factory, ops, storage, cap):
    """add_with_ids / remove_ids (and the bucket splits they cause, bucket_cap=6) on a mapped index copy
    the lists they touch: answers equal the index in RAM after the same calls; the files are unchanged."""
    x, q = data
    folder = str(tmp_path_factory.mktemp("mm"))
    ix = _index(x, storage, bucket_cap=cap)
    path = _write(ix, folder)
    before = {n: _digest(os.path.join(folder, n)) for n in os.listdir(folder)}
    mapped, ram = read_index(path, mmap=True), read_index(path)
    rng = np.random.default_rng(len(ops))
    nxt = 4000
    for op, n in ops:
        if op == "add":
            rows = rng.integers(4000, len(x), n)
            ids = np.arange(nxt, nxt + n) * 2 + 1
            nxt += n
            for o in (ix, mapped, ram):
                o.add_with_ids(x[rows], ids)
        else:
            gone = rng.choice(ix.ids, size=min(n, ix.ntotal - 1), replace=False)
            for o in (ix, mapped, ram):
                assert o.remove_ids(gone) == len(gone)
    for other in (ix, ram):
        _same(mapped, other, q)
        np.testing.assert_array_equal(np.sort(mapped.ids), np.sort(other.ids))
        np.testing.assert_array_equal(mapped._engine.list_sizes(), other._engine.list_sizes())
    ids = np.sort(ix.ids)[::11]
    np.testing.assert_array_equal(mapped.reconstruct_batch(ids), ix.reconstruct_batch(ids))
    assert {n: _digest(os.path.join(folder, n)) for n in os.listdir(folder)} == before
    again = read_index(_write(mapped, folder, "b"), mmap=True)  # written from base + copies, mapped again
    _same(again, ix, q)


def test_a_small_change_copies_only_the_lists_it_touches(data, tmp_path):
    x, q = data
    ix = _index(x, "float16")
    mapped = read_index(_write(ix, str(tmp_path)), mmap=True)
    total = mapped._engine.mapped_bytes()
    mapped.add_with_ids(x[4000:4003], np.array([1, 3, 5]))
    per = mapped._engine._parts[0].code_size + 8
    copied = total - mapped._engine.mapped_bytes()
    assert 0 < copied <= 3 * per * int(ix._engine.list_sizes().max())  # at most the 3 lists added to
    assert mapped._engine.mapped


def test_a_mapped_index_keeps_working_after_its_lists_file_is_unlinked(data, tmp_path):
    # a writer compacts (a new lists file; the old one is unlinked) and goes on removing ids from the index
    # it holds, which still maps the old file: found by `flowhash remove DB A B` on a small database
    x, q = data
    ix = _index(x, "float32")
    mapped = read_index(_write(ix, str(tmp_path)), mmap=True)
    os.unlink(tmp_path / "a.lists")
    gone = ix.ids[::5]
    assert mapped.remove_ids(gone) == ix.remove_ids(gone) == len(gone)
    _same(mapped, ix, q)


def test_one_file_indexes_of_every_version_still_open(data, tmp_path):
    """Version 2 files (the lists inline, as every earlier faiss-flowhash wrote them) read, with or without
    mmap (then read whole); writing without lists_path still writes one version 2 file."""
    x, q = data
    ix = _index(x, "float16")
    one = tmp_path / "one.flowhash"
    write_index(ix, one)
    assert open(one, "rb").read(12) == MAGIC + (2).to_bytes(4, "little") and lists_file_of(one) is None
    header, arrays = ix.state()
    del arrays["engine/sizes"]  # exactly the arrays of the writer before the lists file
    old = tmp_path / "old.flowhash"
    with open(old, "wb") as f:
        f.write(MAGIC + (2).to_bytes(4, "little"))
        np.savez(f, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    for path in (one, old):
        for mm in (False, True):
            back = read_index(path, mmap=mm)
            assert not back._engine.mapped
            _same(back, ix, q)


def test_the_lists_file_is_a_faiss_ivf_and_a_missing_one_is_named(data, tmp_path):
    x, q = data
    ix = _index(x, "float32")
    path = _write(ix, str(tmp_path))
    for flags in (0, faiss.IO_FLAG_MMAP_IFC):
        ivf = faiss.read_index(str(tmp_path / "a.lists"), flags)
        assert isinstance(ivf, faiss.IndexIVFFlat) and ivf.ntotal == ix.ntotal and ivf.nlist == ix._engine.nlist
        il = ivf.invlists
        got = np.fromiter((il.list_size(i) for i in range(ivf.nlist)), np.int64, ivf.nlist)
        np.testing.assert_array_equal(got, ix._engine.list_sizes())
    os.rename(tmp_path / "a.lists", tmp_path / "gone.lists")
    with pytest.raises(FileNotFoundError, match="a.lists"):
        read_index(path, mmap=True)
    with pytest.raises(ValueError, match="its file"):  # bytes cannot name a file beside them
        buf = io.BytesIO()
        from faiss_flowhash.index.serialize import _write_to
        _write_to(ix, buf, lists={"name": "a.lists", "data_offset": 0})
        ffh.deserialize_index(buf.getvalue())


def test_engine_parts_scan_as_one_faiss_ivf():
    """Growing by parts (never copying a list) and scanning them as a VStack: results, budget cuts and
    scan counts equal one IndexIVFFlat holding the same lists in the same order."""
    rng = np.random.default_rng(3)
    d, n = 8, 3000
    eng = IVFEngine(d, faiss.METRIC_L2)
    ref = faiss.IndexIVFFlat(faiss.IndexFlatL2(d), d, 2000, faiss.METRIC_L2)
    ref.is_trained = True
    x = rng.standard_normal((n, d)).astype(np.float32)
    ids = np.arange(n, dtype=np.int64)
    for b in range(6):  # lists 0 .. 60, 0 .. 180, ...: new parts
        sl = slice(500 * b, 500 * (b + 1))
        lists = rng.integers(0, 60 * 3 ** b if b < 4 else 1900, 500).astype(np.int64)
        eng.add(x[sl], ids[sl], lists)
        ref.add_core(500, faiss.swig_ptr(x[sl]), faiss.swig_ptr(ids[sl]), faiss.swig_ptr(lists))
    assert len(eng._parts) > 3 and eng.n_entries == n
    q = rng.standard_normal((20, d)).astype(np.float32)
    A = np.stack([rng.permutation(eng.nlist)[:300] for _ in range(20)]).astype(np.int64)
    A = np.where(A < 2000, A, -1)
    for budget in (0, 40, 400):
        De, Ie, scanned = eng.search(q, A, 5, budget)
        ref.nprobe = A.shape[1]
        st = faiss.IndexIVFStats()
        Dr, Ir = np.empty((20, 5), np.float32), np.empty((20, 5), np.int64)
        ref.search_preassigned_c(20, faiss.swig_ptr(q), 5, faiss.swig_ptr(A), faiss.swig_ptr(np.zeros(A.shape, np.float32)),
                                 faiss.swig_ptr(Dr), faiss.swig_ptr(Ir), False,
                                 faiss.SearchParametersIVF(nprobe=A.shape[1], max_codes=budget), st)
        np.testing.assert_array_equal(Ie, Ir)
        np.testing.assert_array_equal(De, Dr)
        assert scanned == st.ndis


def _commits(folder, quantizer, rng, storage):
    """A base, then segments of adds (with their codes) and removes."""
    ix = ffh.FlowHashIndex(quantizer=quantizer, storage=storage)
    store = IndexStore(folder)
    x = rng.standard_normal((900, D)).astype(np.float32)
    ix.add_with_ids(x[:300], np.arange(300))
    store.append(x[:300], np.arange(300), ix)
    for i in range(3):
        ids = np.arange(1000 + 200 * i, 1200 + 200 * i)
        for lo in range(0, 200, 50):  # a commit of several adds, as a database ingest
            ix.add_with_ids(x[300 + 200 * i + lo: 350 + 200 * i + lo], ids[lo: lo + 50])
        store.append(x[300 + 200 * i: 500 + 200 * i], ids, ix)
        ix.remove_ids(np.arange(10 * i, 10 * i + 5))
        store.delete(np.arange(10 * i, 10 * i + 5), ix)
    return ix


@pytest.mark.parametrize("storage", ["float32", "float16"])
def test_replay_adds_the_stored_codes_without_encoding(tmp_path, monkeypatch, storage):
    """Replay from the stored codes gives the writer's codes, without encoding. With float32 segments it
    equals replay by encoding; float16 segments hold rounded vectors, whose encoding may flip a bit the
    writer's vector did not (bench/results/scale.md: 118 of 100k), so there only the codes are compared."""
    rng = np.random.default_rng(4)
    q = ffh.FlowHashIndex(D, K=6, config=ffh.QuantizerConfig(steps=0, verbose=False, seed=0))
    q.train(rng.standard_normal((2000, D)).astype(np.float32))
    writer = _commits(str(tmp_path), q.quantizer, rng, storage)
    manifest = json.load(open(tmp_path / "index.segments" / "MANIFEST.json"))
    assert len(manifest["segments"]) == 3 and all(s["codes"] for s in manifest["segments"])
    assert [n for n in os.listdir(tmp_path) if n.startswith(LISTS_PREFIX)] == [lists_file_of(tmp_path / INDEX_FILE)]

    encoded = IndexStore(str(tmp_path), readonly=True)
    orig = ffh.FlowHashIndex.add_with_ids
    monkeypatch.setattr(ffh.FlowHashIndex, "add_with_ids", lambda self, x, ids, codes=None: orig(self, x, ids))
    by_encoding = encoded.load()
    monkeypatch.setattr(ffh.FlowHashIndex, "add_with_ids", orig)

    def no_encoding(*a, **kw):
        raise AssertionError("replay encoded vectors")

    monkeypatch.setattr(type(q.quantizer), "encode", no_encoding)
    by_codes = IndexStore(str(tmp_path), readonly=True).load()
    monkeypatch.undo()
    assert by_codes._engine._base is not None  # opened mapped (K=6: the replay touched every list)
    queries = rng.standard_normal((40, D)).astype(np.float32)
    np.testing.assert_array_equal(by_codes.ids, writer.ids)
    np.testing.assert_array_equal(by_codes._codes, writer._codes)
    np.testing.assert_array_equal(by_codes.ids, by_encoding.ids)
    if storage == "float32":
        np.testing.assert_array_equal(by_codes._codes, by_encoding._codes)
        _same(by_codes, by_encoding, queries)  # (the writer added in other batches: its running means may round apart)
