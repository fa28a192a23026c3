import faiss
import numpy as np
import pytest
from hypothesis import given, strategies as st

import faiss_flowhash as ffh

D_DIM = 24


def _data(n, seed=0, d=D_DIM):
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((20, d))
    x = centers[rng.integers(0, 20, n)] + 0.5 * rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x.astype(np.float32)


@pytest.fixture(scope="module")
def trained():
    """A small trained quantizer shared by the tests (K=6: 64 buckets)."""
    x = _data(3000)
    xp = x + 0.05 * np.random.default_rng(1).standard_normal(x.shape).astype(np.float32)
    q = ffh.FlowQuantizer(D_DIM, 6, config=ffh.QuantizerConfig(steps=60, batch_size=512, projection_steps=20,
                                                               verbose=False))
    q.train(x, xp)
    return q, x


def _index(trained, metric=faiss.METRIC_INNER_PRODUCT, **kw):
    """The paper's flip-cost probing (radius semantics) unless told otherwise; the default centroid
    probing is tested in test_index_probing.py."""
    q, x = trained
    kw = {"probe": "flip", "max_probes": None, **kw}
    index = ffh.FlowHashIndex(D_DIM, metric=metric, quantizer=q, **kw)
    index.add(x)
    return index


def _exact(x, q, k, metric):
    ex = faiss.IndexFlatIP(D_DIM) if metric == faiss.METRIC_INNER_PRODUCT else faiss.IndexFlatL2(D_DIM)
    ex.add(x)
    return ex.search(q, k)


@pytest.mark.parametrize("metric", [faiss.METRIC_INNER_PRODUCT, faiss.METRIC_L2])
def test_probing_every_bucket_equals_exact_search(trained, metric):
    index = _index(trained, metric, max_probe_bits=6)
    q = _data(200, seed=5)
    D, I = index.search(q, 10, r_query=1e9)
    De, Ie = _exact(trained[1], q, 10, metric)
    assert index.last_search_stats.eval_percent == pytest.approx(100.0 * index.table_entries / index.ntotal)
    assert index.last_search_stats.buckets_probed == 64
    np.testing.assert_array_equal(I, Ie)
    np.testing.assert_allclose(D, De, rtol=1e-4, atol=1e-4)


def test_search_output_types_and_stats(trained):
    index = _index(trained)
    D, I = index.search(_data(7, seed=3), 3)
    assert D.shape == I.shape == (7, 3) and D.dtype == np.float32 and I.dtype == np.int64
    assert np.all(np.diff(D, axis=1) <= 0), "inner products come best first"
    s = index.last_search_stats
    assert s.n_queries == 7 and 1 <= s.buckets_probed <= 2**index.max_probe_bits
    assert 0 < s.eval_percent < 100 and s.candidates == pytest.approx(s.eval_percent * index.ntotal / 100)


def test_a_stored_vector_finds_itself(trained):
    index = _index(trained)
    x = trained[1]
    _, I = index.search(x[:300], 1)
    assert (I[:, 0] == np.arange(300)).mean() > 0.99


@given(st.integers(1, 25), st.integers(1, 12))
def test_batch_search_equals_per_query_search(trained, n, k):
    index = _index(trained, budget=200)
    q = _data(n, seed=n)
    D, I = index.search(q, k)
    for i in range(n):
        d1, i1 = index.search(q[i : i + 1], k)
        np.testing.assert_array_equal(i1[0], I[i])
        np.testing.assert_allclose(d1[0], D[i], rtol=1e-6)


def test_budget_reduces_candidates_and_keeps_the_first_probe(trained):
    index = _index(trained)
    q = _data(100, seed=9)
    index.search(q, 1)
    full = index.last_search_stats.candidates
    _, I = index.search(q, 1, budget=1)
    assert index.last_search_stats.candidates == 1 < full, "faiss max_codes: exactly the budget is scanned"
    assert (I[:, 0] >= 0).all()
    _, I = index.search(q, 1, params=ffh.SearchParams(budget=None))  # None switches a budget off
    assert index.last_search_stats.candidates == full


def test_k_larger_than_ntotal_pads(trained):
    q, x = trained
    index = ffh.FlowHashIndex(D_DIM, quantizer=q, max_probe_bits=6, probe="flip", max_probes=None)
    index.add(x[:5])
    for metric_index, worst in ((index, -np.finfo(np.float32).max),):
        D, I = metric_index.search(x[:2], 8, r_query=1e9)
        assert (I[:, 5:] == -1).all() and (D[:, 5:] == worst).all()
        assert sorted(I[0, :5].tolist()) == list(range(5))
    l2 = ffh.FlowHashIndex(D_DIM, metric=faiss.METRIC_L2, quantizer=q)
    l2.add(x[:2])
    D, I = l2.search(x[:1], 4, r_query=1e9)
    assert (I[0, 2:] == -1).all() and (D[0, 2:] == np.finfo(np.float32).max).all()


def test_empty_batch_and_empty_index(trained):
    q, x = trained
    index = ffh.FlowHashIndex(D_DIM, quantizer=q)
    D, I = index.search(x[:3], 2)
    assert (I == -1).all()
    index.add(x)
    D, I = index.search(np.zeros((0, D_DIM), np.float32), 4)
    assert D.shape == (0, 4) and I.shape == (0, 4)
    index.add(np.zeros((0, D_DIM), np.float32))
    assert index.ntotal == len(x)


def test_add_with_ids_remove_reset_reconstruct(trained):
    q, x = trained
    index = ffh.FlowHashIndex(D_DIM, quantizer=q)
    ids = np.arange(len(x)) * 10 + 7
    index.add_with_ids(x, ids)
    np.testing.assert_array_equal(index.reconstruct(int(ids[42])), x[42])
    _, I = index.search(x[:50], 1)
    assert set(I[:, 0].tolist()) <= set(ids.tolist())
    assert index.remove_ids(np.array([ids[0], ids[1], 999_999_999])) == 2
    assert index.ntotal == len(x) - 2
    with pytest.raises(KeyError):
        index.reconstruct(int(ids[0]))
    _, I = index.search(x[:2], 5)
    assert ids[0] not in I and ids[1] not in I
    np.testing.assert_array_equal(index.reconstruct(int(ids[42])), x[42])
    _, I = index.search(x[42:43], 1)
    assert I[0, 0] == ids[42]
    index.add(x[:3])  # plain add continues after the largest id
    assert index.ids[-3:].tolist() == [ids.max() + 1, ids.max() + 2, ids.max() + 3]
    index.reset()
    assert index.ntotal == 0 and index.is_trained
    assert index.remove_ids(np.array([1])) == 0


def test_remove_ids_frees_results_and_keeps_the_rest_exact(trained):
    index = _index(trained, max_probe_bits=6)
    x = trained[1]
    gone = np.arange(0, len(x), 3)
    index.remove_ids(gone)
    keep = np.setdiff1d(np.arange(len(x)), gone)
    q = _data(40, seed=11)
    D, I = index.search(q, 5, r_query=1e9)
    De, Ie = _exact(x[keep], q, 5, faiss.METRIC_INNER_PRODUCT)
    np.testing.assert_array_equal(I, keep[Ie])


def test_float16_storage_agrees(trained):
    q = _data(60, seed=4)
    ref = _index(trained)
    D, I = ref.search(q, 5)
    half = _index(trained, storage="float16")
    D16, I16 = half.search(q, 5)
    assert (I16[:, 0] == I[:, 0]).mean() > 0.95
    np.testing.assert_allclose(D16[:, 0], D[:, 0], atol=2e-3)
    assert half.memory_bytes() < ref.memory_bytes()
    np.testing.assert_allclose(half.reconstruct_n(0, 10), trained[1][:10], atol=1e-3)


def test_balance_and_introspection(trained):
    index = _index(trained)
    assert index.bucket_sizes().sum() == index.ntotal
    b = index.balance()
    assert b["buckets_used"] > 48, "64 buckets on 3000 vectors: a trained quantizer must not collapse"
    assert b["max_over_mean"] < 6
    assert index.table_entries >= index.ntotal
    assert "FlowHashIndex" in repr(index)


# -- bad input --------------------------------------------------------------------------------------

def test_untrained_index_refuses_search():
    index = ffh.FlowHashIndex(8, K=4)
    x = np.zeros((3, 8), np.float32)
    with pytest.raises(ffh.NotTrainedError, match="train"):
        index.search(x, 1)
    with pytest.raises(ValueError, match="train"):
        ffh.FlowHashIndex(K=4).search(x, 1)


@pytest.mark.parametrize("bad, exc, msg", [
    (np.zeros((3, D_DIM + 1), np.float32), ValueError, r"expected shape \(n, 24\), got \(3, 25\)"),
    (np.zeros(D_DIM, np.float32), ValueError, "1-D"),
    (np.zeros((2, 3, D_DIM), np.float32), ValueError, "3-D"),
    (np.array([["a"] * D_DIM]), TypeError, "dtype"),
    (np.ones((2, D_DIM), bool), TypeError, "dtype"),
    (np.zeros((2, D_DIM), object), TypeError, "dtype"),
    (np.zeros((2, D_DIM), complex), TypeError, "dtype"),
    (np.full((2, D_DIM), np.nan, np.float32), ValueError, "NaN"),
    (np.full((2, D_DIM), np.inf, np.float64), ValueError, "inf"),
])
def test_bad_vectors_are_rejected_and_nothing_changes(trained, bad, exc, msg):
    index = _index(trained)
    n0 = index.ntotal
    for call in (index.add, lambda v: index.search(v, 1), lambda v: index.add_with_ids(v, np.arange(len(v)) + 10**6)):
        with pytest.raises(exc, match=msg):
            call(bad)
    assert index.ntotal == n0


def test_bad_k_ids_and_params(trained):
    index = _index(trained)
    q = trained[1][:2]
    with pytest.raises(ValueError, match="k: expected >= 1"):
        index.search(q, 0)
    with pytest.raises(TypeError, match="k: expected an int"):
        index.search(q, 1.5)
    n0 = index.ntotal
    with pytest.raises(ValueError, match="duplicate id"):
        index.add_with_ids(q, np.array([10**6, 10**6]))
    with pytest.raises(ValueError, match="already in the index"):
        index.add_with_ids(q, np.array([0, 10**6]))
    with pytest.raises(ValueError, match=">= 0"):
        index.add_with_ids(q, np.array([-1, 10**6]))
    with pytest.raises(ValueError, match=r"expected shape \(2,\)"):
        index.add_with_ids(q, np.array([1, 2, 3]) + 10**6)
    with pytest.raises(TypeError, match="integer"):
        index.add_with_ids(q, np.array([1.0, 2.0]))
    assert index.ntotal == n0
    with pytest.raises(ValueError, match="budget"):
        index.search(q, 1, budget=0)
    with pytest.raises(ValueError, match="metric"):
        ffh.FlowHashIndex(8, K=4, metric=99)
    with pytest.raises(ValueError, match="K"):
        ffh.FlowHashIndex(8, K=1)
    with pytest.raises(ValueError, match="storage"):
        ffh.FlowHashIndex(8, K=4, storage="int8")
    with pytest.raises(ValueError, match="x_pos"):
        ffh.FlowHashIndex(8, K=4).train(np.zeros((10, 8), np.float32), np.zeros((9, 8), np.float32))


@pytest.mark.parametrize("K", [4, 24, 40])
def test_code_widths_from_4_to_40_bits(K):
    x = _data(1500, seed=K, d=48)
    index = ffh.FlowHashIndex(48, K=K, max_probe_bits=8, probe="flip", max_probes=None,
                              config=ffh.QuantizerConfig(steps=5, batch_size=256, verbose=False))
    index.train(x)
    index.add(x)
    assert int(index._codes.max()) < 2**K
    assert index.bucket_sizes().sum() == 1500
    _, I = index.search(x[:20], 1)
    assert (I[:, 0] == np.arange(20)).mean() >= 0.9, "a stored vector is in its own primary bucket"


def test_max_probes_caps_probing_cheapest_first(trained):
    index = _index(trained, max_probe_bits=6)
    q = _data(50, seed=12)
    D_all, I_all = index.search(q, 1, r_query=np.inf)
    assert index.last_search_stats.buckets_probed == 64
    D, I = index.search(q, 1, r_query=np.inf, max_probes=3)
    assert index.last_search_stats.buckets_probed == 3
    _, I1 = index.search(q, 1, r_query=0.0)  # own bucket only = the cheapest probe
    D2, I2 = index.search(q, 1, r_query=np.inf, max_probes=1)
    np.testing.assert_array_equal(I1, I2)
    with pytest.raises(ValueError, match="max_probes"):
        index.search(q, 1, max_probes=0)
    back = ffh.deserialize_index(ffh.serialize_index(ffh.FlowHashIndex(D_DIM, quantizer=trained[0], max_probes=7)))
    assert back.max_probes == 7
