"""What the index holds per vector: narrow codes, growth buffers without idle room, honest memory_bytes."""

import numpy as np
import pytest

import faiss_flowhash as ffh
from faiss_flowhash.index.codes import code_dtype
from faiss_flowhash.index.growth import append_rows, fit_rows, held_bytes


def _index(K, n=3000, d=16, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, d)).astype(np.float32)
    index = ffh.FlowHashIndex(d, K=K, config=ffh.QuantizerConfig(steps=0, verbose=False))
    index.verbose = False
    index.add(x)
    return index, x


@pytest.mark.parametrize("K, dtype", [(4, np.uint16), (16, np.uint16), (20, np.uint32), (40, np.uint64)])
def test_codes_are_stored_narrow_and_read_as_uint64(K, dtype, tmp_path):
    assert code_dtype(K) == dtype
    index, x = _index(K, n=500, d=48)
    assert index._codes.dtype == dtype
    got = index.codes_of(index.ids[:7])
    assert got.dtype == np.uint64
    np.testing.assert_array_equal(got, ffh.index.codes.pack_codes(index.quantizer.encode(x[:7])))
    ffh.write_index(index, tmp_path / "i.flowhash")
    back = ffh.read_index(tmp_path / "i.flowhash")
    assert back._codes.dtype == dtype
    np.testing.assert_array_equal(back._codes, index._codes)


def test_auto_K_narrows_the_codes_at_the_first_add():
    x = np.random.default_rng(1).standard_normal((2000, 8)).astype(np.float32)
    index = ffh.FlowHashIndex(8, config=ffh.QuantizerConfig(steps=0, verbose=False))  # K chosen by the train
    index.verbose = False
    index.add(x)
    assert index._codes.dtype == code_dtype(index.K) == np.uint16


def test_a_file_with_uint64_codes_still_opens():
    index, x = _index(8, n=400)
    header, arrays = index.state()
    arrays = dict(arrays, codes=arrays["codes"].astype(np.uint64))  # as files before the narrow codes
    back = type(index).from_state(header, arrays)
    assert back._codes.dtype == np.uint16
    np.testing.assert_array_equal(back.search(x[:20], 3)[1], index.search(x[:20], 3)[1])
    bad = dict(arrays, codes=arrays["codes"] | np.uint64(1 << 9))  # a code wider than K = 8 bits
    with pytest.raises(ValueError, match="8-bit codes"):
        type(index).from_state(header, bad)


def test_growth_gives_a_bulk_append_no_room_and_small_appends_amortised_room():
    buf, cur = append_rows(None, np.zeros(0, np.int64), np.arange(5000), min_rows=64)
    assert len(buf) == 5000  # no idle room after one bulk append
    copies = 0
    for i in range(200):  # small appends: 1.5x growth, so few reallocations
        old = buf
        buf, cur = append_rows(buf, cur, np.array([i]))
        copies += buf is not old
    np.testing.assert_array_equal(cur, np.r_[np.arange(5000), np.arange(200)])
    assert copies == 1 and len(buf) == 7500
    assert held_bytes(buf, cur) == buf.nbytes
    buf2, cur2 = fit_rows(buf, cur)  # 7,500 rows for 5,200: the room goes back
    assert buf2 is None and held_bytes(buf2, cur2) == cur.nbytes
    np.testing.assert_array_equal(cur2, cur)
    buf3, cur3 = fit_rows(*append_rows(None, np.zeros(0), np.zeros(10), min_rows=11))
    assert buf3 is not None  # within the slack: kept


def test_memory_bytes_counts_what_the_index_holds():
    index, x = _index(10, n=4000)
    # after a bulk add no buffer holds more than 1.25x its rows
    for buf, cur in ((index._ids_buf, index._ids), (index._codes_buf, index._codes),
                     (index._cent._rows_buf, index._cent.rows)):
        assert held_bytes(buf, cur) <= 1.25 * cur.nbytes + 64 * cur.itemsize * (cur.shape[1] if cur.ndim > 1 else 1)
    before = index.memory_bytes()
    index.reconstruct(int(index.ids[5]))  # an id lookup sorts the ids once: counted
    assert index.memory_bytes() >= before
    for i in range(30):  # small adds grow the buffers with room, and memory_bytes sees the room
        index.add(x[i: i + 1])
    held = held_bytes(index._ids_buf, index._ids)
    assert held >= index._ids.nbytes
    assert index.memory_bytes() >= index._engine.nbytes() + held + index._cent.nbytes
    index.remove_ids(index.ids[:100])
    assert index._ids_buf is None  # no stale buffer left behind a removal


def _single_adds(monkeypatch, refresh_min):
    import faiss_flowhash.index.flowhash_index as fhi

    monkeypatch.setattr(fhi, "_REFRESH_MIN", refresh_min)
    rng = np.random.default_rng(5)
    c = 2 * rng.standard_normal((2, 32))
    data = lambda n: (c[rng.integers(0, 2, n)] + 0.3 * rng.standard_normal((n, 32))).astype(np.float32)
    index = ffh.FlowHashIndex(32, K=2, bucket_cap=10**9, config=ffh.QuantizerConfig(steps=0, verbose=False))
    index.verbose = False
    index.train(data(1000))
    x = data(1500)
    for i in range(len(x)):  # one vector a call: the stream an ingest of short tracks makes
        index.add(x[i: i + 1])
    errs = []
    for l in np.flatnonzero(index._engine.list_sizes()):
        _, v = index._engine.list_entries(int(l))
        exact = v.astype(np.float64).mean(0)
        errs.append(np.linalg.norm(index._cent.means[l] - exact) / np.linalg.norm(exact))
    return max(errs)


def test_list_means_stay_exact_enough_under_a_stream_of_single_adds(monkeypatch):
    """A bfloat16 running mean stops following a list fed one vector at a time (a vector's share of the
    change falls below half an ulp); the index recomputes a list's mean each time its count doubles."""
    refreshed = _single_adds(monkeypatch, 64)
    assert refreshed < 0.01
    assert _single_adds(monkeypatch, 10**12) > 2 * refreshed  # the refresh is what keeps it there
