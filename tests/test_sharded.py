"""ShardedFlowHashIndex on a local Ray (2 CPUs): the same answers as one FlowHashIndex on the same data
with the same trained quantizer under flip probing (search, add_with_ids, remove_ids, reconstruct,
persistence), at least its recall under centroid-ranked probing; shards chosen by code prefix."""

import os

import faiss
import numpy as np
import pytest

from faiss_flowhash.distributed import ShardedFlowHashIndex, code_bounds, shard_of_codes, shard_of_range
from faiss_flowhash.index import FlowHashIndex, FlowQuantizer, QuantizerConfig
from faiss_flowhash.index.codes import pack_codes

if not os.environ.get("CI"):  # CI installs ray through the test extra: there these tests must run
    pytest.importorskip("ray")
import ray  # noqa: E402

D, K = 32, 8
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_shard_of_codes_is_the_code_prefix():
    codes = np.arange(1 << K, dtype=np.uint64)  # every code once: perfectly balanced
    for s in (1, 2, 4, 8):
        shard = shard_of_codes(codes, K, s)
        assert np.array_equal(np.bincount(shard, minlength=s), np.full(s, (1 << K) // s))
        if s > 1:  # a power of two: exactly the high log2(s) bits
            assert np.array_equal(shard, (codes >> np.uint64(K - int(np.log2(s)))).astype(np.int64))
    three = np.bincount(shard_of_codes(codes, K, 3), minlength=3)
    assert three.sum() == 1 << K and three.max() - three.min() <= (1 << K) // 4  # 2-bit prefix over 3 shards
    with pytest.raises(ValueError, match="n_shards"):
        shard_of_codes(codes, 2, 5)


def test_range_bounds_make_equal_shards_of_unbalanced_codes(rng):
    codes = np.minimum(rng.pareto(1.5, 10_000) * 60, (1 << K) - 1).astype(np.uint64)  # mostly low codes: top bit unbalanced
    assert np.bincount(shard_of_codes(codes, K, 2), minlength=2).min() < 3000
    for s in (2, 3, 4):
        b = code_bounds(codes, s)
        sizes = np.bincount(shard_of_range(codes, b), minlength=s)
        assert sizes.sum() == 10_000 and sizes.max() - sizes.min() <= 0.05 * 10_000 + np.bincount(codes.astype(np.int64)).max()
        order = np.argsort(codes, kind="stable")  # ranges in code order: shard ids never decrease along it
        assert np.all(np.diff(shard_of_range(codes[order], b)) >= 0)
    assert np.array_equal(code_bounds(np.arange(1 << K, dtype=np.uint64), 4), np.array([64, 128, 192], np.uint64))


@pytest.fixture(scope="module")
def local_ray():
    """One local Ray for the module (its start costs seconds); the indexes join it and leave it running."""
    started = not ray.is_initialized()
    if started:
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                 runtime_env={"env_vars": {"PYTHONPATH": ROOT, "OMP_NUM_THREADS": "1"}})
    yield ray
    if started:
        ray.shutdown()


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(7)
    centres = rng.standard_normal((24, D)).astype(np.float32)
    x = centres[rng.integers(24, size=5000)] + 0.6 * rng.standard_normal((5000, D)).astype(np.float32)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    q = x[rng.choice(5000, 150, replace=False)] + 0.15 * rng.standard_normal((150, D)).astype(np.float32)
    quantizer = FlowQuantizer(D, K, config=QuantizerConfig(n_layers=2, hidden=(32,), steps=50, batch_size=512,
                                                           verbose=False, max_train=4000))
    quantizer.train(x[:4000])
    return x, q.astype(np.float32), quantizer


def _pair(data, n_shards, **kw):
    """A single index and a sharded one with the same quantizer; flip probing unless kw says otherwise:
    the probed buckets' lists are scanned whole, so the shards' candidates together are the single's."""
    x, q, quantizer = data
    kw = {"probe": "flip", **kw}
    single = FlowHashIndex(D, quantizer=quantizer, **kw)
    sharded = ShardedFlowHashIndex(D, n_shards, quantizer=quantizer, cpus_per_shard=0.5, **kw)
    return single, sharded


def _same(a, b):
    (Da, Ia), (Db, Ib) = a, b
    assert np.array_equal(Ia, Ib)
    np.testing.assert_allclose(Da, Db, rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("kw", [{}, {"assign": "none", "metric": faiss.METRIC_L2}], ids=["spill-IP", "none-L2"])
def test_search_equals_the_single_index(local_ray, data, kw):
    x, q, quantizer = data
    single, sharded = _pair(data, 2, **kw)
    with sharded:
        for lo, hi in ((0, 300), (300, 3300), (3300, 5000)):  # a small first batch, then a large one
            single.add(x[lo:hi])
            sharded.add(x[lo:hi])
        assert sharded.ntotal == single.ntotal == 5000
        sizes = np.bincount(shard_of_range(quantizer.codes(x), sharded.bounds), minlength=2)
        assert np.array_equal(sharded.shard_sizes(), sizes)
        assert np.array_equal(sharded.bounds, code_bounds(quantizer.codes(x[:300]), 2))  # from the first batch
        assert abs(int(sizes[0]) - int(sizes[1])) < 0.2 * 5000
        _same(sharded.search(q, 10), single.search(q, 10))
        assert sharded.last_search_stats.candidates == pytest.approx(single.last_search_stats.candidates)
        _same(sharded.search(q, 3, r_query=0.5), single.search(q, 3, r_query=0.5))
        _same(sharded.search(q[:0], 5), single.search(q[:0], 5))


def test_centroid_probing_recall_at_least_the_single_index(local_ray, data):
    """Centroid ranking (the default) keeps nprobe lists per shard, ranked by the shard's own centroids:
    not the single index's list set; recall stays the single index's (within 3 queries in 150)."""
    x, q, _ = data
    single, sharded = _pair(data, 2, probe="centroid", nprobe=8)
    exact = faiss.IndexFlatIP(D)
    exact.add(x)
    truth = exact.search(q, 1)[1][:, 0]
    with sharded:
        single.add(x)
        sharded.add(x)
        r_single = float(np.mean(single.search(q, 1)[1][:, 0] == truth))
        r_sharded = float(np.mean(sharded.search(q, 1)[1][:, 0] == truth))
        assert sharded.last_search_stats.lists_scanned == 2 * single.last_search_stats.lists_scanned
    assert r_sharded >= r_single - 0.02 and r_single > 0.5, (r_single, r_sharded)


def test_ids_removal_reconstruct_persistence(local_ray, data, tmp_path):
    x, q, _ = data
    single, sharded = _pair(data, 3)  # not a power of two: a 2-bit prefix over 3 shards
    ids = np.random.default_rng(3).choice(1 << 40, 4000, replace=False).astype(np.int64)
    with sharded:
        single.add_with_ids(x[:4000], ids)
        sharded.add_with_ids(x[:4000], ids)
        gone = ids[::3]
        assert sharded.remove_ids(gone) == single.remove_ids(gone) == len(gone)
        assert sharded.remove_ids(gone) == 0 and sharded.remove_ids([]) == 0
        assert sharded.ntotal == single.ntotal
        _same(sharded.search(q, 8), single.search(q, 8))
        np.testing.assert_array_equal(sharded.reconstruct(int(ids[1])), single.reconstruct(int(ids[1])))
        with pytest.raises(KeyError):
            sharded.reconstruct(int(ids[0]))
        with pytest.raises(ValueError, match="already in the index"):
            sharded.add_with_ids(x[4000:4002], ids[1:3])
        with pytest.raises(ValueError, match="duplicate id"):
            sharded.add_with_ids(x[4000:4002], [5, 5])
        with pytest.raises(ValueError, match=r"expected shape \(n, 32\)"):
            sharded.add(x[:, :5])
        sharded.add(x[4000:])  # plain ids continue after the largest, as in the single index
        single.add(x[4000:])
        want = single.search(q, 8)
        _same(sharded.search(q, 8), want)
        sharded.write(tmp_path / "idx")
    names = sorted(os.listdir(tmp_path / "idx"))
    assert names == ["shard-000.flowhash", "shard-001.flowhash", "shard-002.flowhash", "sharded.json",
                     "template.flowhash"]
    with ShardedFlowHashIndex.read(tmp_path / "idx", cpus_per_shard=0.5) as again:
        assert again.ntotal == single.ntotal and again.n_shards == 3
        _same(again.search(q, 8), want)
        infos = again.shard_info()
        assert sum(i["ntotal"] for i in infos) == single.ntotal and len({i["pid"] for i in infos}) == 3
        again.add(x[:10])  # ids go on after the largest written
        single.add(x[:10])
        _same(again.search(q, 8), single.search(q, 8))
    with pytest.raises(FileNotFoundError):
        ShardedFlowHashIndex.read(tmp_path / "nothing")
