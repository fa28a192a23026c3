import struct

import numpy as np
import pytest

import faiss_flowhash as ffh
from faiss_flowhash.index.serialize import FORMAT_VERSION, MAGIC


@pytest.fixture(scope="module")
def index():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((1500, 16)).astype(np.float32)
    idx = ffh.FlowHashIndex(16, K=5, assign="radius", r=0.8, r_query=1.1, budget=300,
                            config=ffh.QuantizerConfig(steps=30, batch_size=256, verbose=False))
    idx.train(x)
    idx.add_with_ids(x, np.arange(len(x)) * 3)
    idx.remove_ids(np.arange(0, 300, 3))
    return idx


def _same_results(a, b):
    q = np.random.default_rng(1).standard_normal((50, 16)).astype(np.float32)
    Da, Ia = a.search(q, 7)
    Db, Ib = b.search(q, 7)
    np.testing.assert_array_equal(Ia, Ib)
    np.testing.assert_array_equal(Da, Db)
    assert a.last_search_stats == b.last_search_stats


def test_bytes_round_trip(index):
    data = ffh.serialize_index(index)
    assert data[:8] == MAGIC
    back = ffh.deserialize_index(data)
    assert (back.d, back.K, back.ntotal, back.r, back.r_query, back.budget) == (16, 5, index.ntotal, 0.8, 1.1, 300)
    _same_results(index, back)
    np.testing.assert_array_equal(back.ids, index.ids)
    back.add(np.zeros((1, 16), np.float32))  # still usable: ids continue
    assert back.ids[-1] == index.ids.max() + 1


def test_file_round_trip_is_atomic(index, tmp_path):
    path = tmp_path / "idx.flowhash"
    ffh.write_index(index, path)
    _same_results(index, ffh.read_index(path))
    ffh.write_index(index, str(path))  # overwrite in place
    assert [p.name for p in tmp_path.iterdir()] == ["idx.flowhash"], "no temporary file left behind"


def test_quantizer_bytes_round_trip(index):
    q2 = ffh.FlowQuantizer.from_bytes(index.quantizer.to_bytes())
    x = np.random.default_rng(2).standard_normal((20, 16)).astype(np.float32)
    np.testing.assert_array_equal(q2.encode(x), index.quantizer.encode(x))


def test_truncated_foreign_and_other_version_files(index, tmp_path):
    data = ffh.serialize_index(index)
    for cut in (5, 20, len(data) // 2, len(data) - 10):
        with pytest.raises(ValueError, match="FLOWHASH|corrupted|truncated"):
            ffh.deserialize_index(data[:cut])
    with pytest.raises(ValueError, match="magic"):
        ffh.deserialize_index(b"\x93NUMPY" + data[6:])
    other = MAGIC + struct.pack("<I", FORMAT_VERSION + 1) + data[12:]
    with pytest.raises(ValueError, match=f"version {FORMAT_VERSION + 1}"):
        ffh.deserialize_index(other)
    path = tmp_path / "broken.flowhash"
    path.write_bytes(data[: len(data) // 3])
    with pytest.raises(ValueError):
        ffh.read_index(path)
    with pytest.raises(FileNotFoundError):
        ffh.read_index(tmp_path / "missing.flowhash")
    with pytest.raises(TypeError):
        ffh.deserialize_index("not bytes")
    with pytest.raises(ValueError, match="FlowQuantizer"):
        ffh.FlowQuantizer.from_bytes(b"junk")
