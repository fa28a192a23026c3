"""FlowHashIndex's public surface: the design card, SearchParams, device, state, scale invariance, and
every bad input a fuzz run found."""

import logging

import faiss
import numpy as np
import pytest

import faiss_flowhash as ffh
from faiss_flowhash.index.serialize import MAGIC

D = 16
SMALL = ffh.QuantizerConfig(steps=20, n_layers=2, hidden=(16,), batch_size=256, projection_steps=0, verbose=False)


def _data(n, seed=0, d=D):
    rng = np.random.default_rng(seed)
    c = rng.standard_normal((12, d))
    x = c[rng.integers(0, 12, n)] + 0.4 * rng.standard_normal((n, d))
    return (x / np.linalg.norm(x, axis=1, keepdims=True)).astype(np.float32)


@pytest.fixture(scope="module")
def quantizer():
    q = ffh.FlowQuantizer(D, 6, config=SMALL)
    q.train(_data(2000))
    return q


def _index(quantizer, **kw):
    kw = {"probe": "flip", "max_probes": None, **kw}  # radius semantics; centroid probing: test_index_probing
    index = ffh.FlowHashIndex(quantizer=quantizer, **kw)
    index.add(_data(2000))
    return index


# -- the design card ------------------------------------------------------------------------------

def test_the_design_card_three_lines(caplog):
    x, q = _data(1500), _data(5, seed=1)
    with caplog.at_level(logging.WARNING, logger="faiss_flowhash"):
        index = ffh.FlowHashIndex(K=6, config=SMALL)  # the card: FlowHashIndex(K=16), small here for speed
        index.add(x)
        D_, I = index.search(q, 1)
    assert index.d == D and index.is_trained and index.ntotal == 1500
    assert I.shape == (5, 1) and (I >= 0).all()
    lines = [r.getMessage() for r in caplog.records if "trained the quantizer" in r.getMessage()]
    assert len(lines) == 1 and "n=1500" in lines[0] and " s)" in lines[0]
    index.add(x[:10])  # already trained: no second training, no second line
    assert sum("trained the quantizer" in r.getMessage() for r in caplog.records) == 1
    with pytest.raises(ValueError, match=r"expected shape \(n, 16\)"):
        index.add(np.zeros((2, 5), np.float32))


def test_auto_train_on_add_with_ids_and_explicit_faiss_path(quantizer):
    index = ffh.FlowHashIndex(K=6, config=SMALL)
    index.add_with_ids(_data(800), np.arange(800) * 2)
    assert index.is_trained and index.ids[-1] == 1598
    faiss_path = ffh.FlowHashIndex(D, K=6, config=SMALL)
    with pytest.raises(ffh.NotTrainedError):
        faiss_path.search(_data(2), 1)
    faiss_path.train(_data(800))
    faiss_path.add(_data(800))
    assert faiss_path.ntotal == 800


@pytest.mark.parametrize("n,want", [(1, 2), (32, 2), (2000, 8), (100_000, 14), (101_184, 14), (500_000, 16),
                                    (10_000_000, 16)])
def test_auto_K_is_log2_of_n_over_8_clipped(n, want):
    from faiss_flowhash.index.code_bits import auto_K

    assert auto_K(n) == want
    assert auto_K(n) == min(16, max(2, round(np.log2(n / 8))))


@pytest.mark.parametrize("bad", [0, -5, 2.5, True, "100"])
def test_auto_K_refuses_what_is_not_a_count(bad):
    from faiss_flowhash.index.code_bits import auto_K

    with pytest.raises(ValueError, match="n: expected an int >= 1"):
        auto_K(bad)


def test_K_none_is_chosen_from_the_training_set_on_train_and_on_first_add(caplog):
    """FlowHashIndex(d) without K: K = auto_K(training rows), on the FAISS path and on auto-train; the index
    then works as one built with that K (probe everything = exact search, file round trip)."""
    x = _data(1100)
    index = ffh.FlowHashIndex(D, config=SMALL)
    assert index.K is None and not index.is_trained
    with pytest.raises(ffh.NotTrainedError):
        index.search(x[:2], 1)
    with pytest.raises(ffh.NotTrainedError, match="K=None"):
        index.state()
    index.train(x)
    assert index.K == 7 == index.quantizer.K  # round(log2(1100 / 8)) = round(7.1)
    index.add(x)
    q = _data(30, seed=5)
    D_, I = index.search(q, 3, params=ffh.SearchParams(max_probe_bits=7, max_probes=None, nprobe=None))
    flat = faiss.IndexFlatIP(D)
    flat.add(x)
    _, I_exact = flat.search(q, 3)
    np.testing.assert_array_equal(I[:, 0], I_exact[:, 0])
    back = ffh.deserialize_index(ffh.serialize_index(index))
    assert back.K == 7
    np.testing.assert_array_equal(back.search(q, 3)[1], index.search(q, 3)[1])
    with caplog.at_level(logging.WARNING, logger="faiss_flowhash"):
        card = ffh.FlowHashIndex(config=SMALL)
        card.add(_data(300))  # round(log2(300 / 8)) = round(5.2)
    assert card.K == 5 and card.is_trained and card.ntotal == 300
    assert any("K=5" in r.getMessage() for r in caplog.records if "trained the quantizer" in r.getMessage())


def test_an_explicit_K_is_kept_whatever_the_training_size():
    index = ffh.FlowHashIndex(D, K=6, config=SMALL)
    index.train(_data(1100))
    assert index.K == 6 == index.quantizer.K
    for bad in (1, 63, 4.0, True):
        with pytest.raises(ValueError, match="K: expected None or an int"):
            ffh.FlowHashIndex(D, K=bad)


# -- SearchParams ---------------------------------------------------------------------------------

def test_merged_params_follow_a_change_of_the_index_settings(quantizer):
    """The merge of params= and the aliases over the index's settings is remembered per call shape; a
    change of index.params must still be seen by the next call with the same params."""
    index = _index(quantizer, budget=50, r_query=float("inf"))
    q = _data(20, seed=3)
    p = ffh.SearchParams(r_query=float("inf"))
    index.search(q, 1, params=p)
    assert index.last_search_stats.candidates == 50
    index.params = ffh.SearchParams(**{**index.params.as_dict(), "budget": 20})
    index.search(q, 1, params=p)
    assert index.last_search_stats.candidates == 20
    index.search(q, 1, params=p, budget=7)
    assert index.last_search_stats.candidates == 7
    with pytest.raises(ValueError, match="r_query"):  # an unhashable alias is merged (and refused), not cached
        index.search(q, 1, r_query=[1.0])


def test_search_params_override_and_the_none_sentinel(quantizer):
    index = _index(quantizer, budget=50, r_query=float("inf"))
    q = _data(20, seed=3)
    index.search(q, 1)
    assert index.last_search_stats.candidates == 50
    index.search(q, 1, params=ffh.SearchParams(budget=10))
    assert index.last_search_stats.candidates == 10
    index.search(q, 1, params=ffh.SearchParams(budget=None))  # None = no budget, not "the default"
    assert index.last_search_stats.candidates > 50
    index.search(q, 1, budget=None)  # the old keyword alias: None = the index's setting
    assert index.last_search_stats.candidates == 50
    a = index.search(q, 3, params=ffh.SearchParams(r_query=0.5, max_probes=4))
    b = index.search(q, 3, r_query=0.5, max_probes=4)
    np.testing.assert_array_equal(a[1], b[1])
    p = ffh.SearchParams(budget=5)
    with pytest.raises(Exception):
        p.budget = 6  # frozen
    with pytest.raises(TypeError, match="SearchParams"):
        index.search(q, 1, params=faiss.SearchParametersIVF())
    for bad in (dict(r_query=float("nan")), dict(r_query=-1.0), dict(budget=0), dict(max_probes=1.5),
                dict(max_probe_bits=21)):
        with pytest.raises(ValueError):
            ffh.SearchParams(**bad)
    with pytest.raises(ValueError, match="r_query"):
        index.search(q, 1, r_query=float("nan"))
    with pytest.raises(ValueError, match="r_query"):
        ffh.FlowHashIndex(D, K=6, r_query=float("nan"))
    with pytest.raises(ValueError, match="assign='radius'"):
        ffh.FlowHashIndex(D, K=6, r=1.0)  # r means radius copies: asking for it without them is an error


# -- device, state ----------------------------------------------------------------------------------

def test_to_device_and_state_round_trip(quantizer):
    index = _index(quantizer, assign="spill", storage="float16")
    assert index.to("cpu") is index
    if not hasattr(faiss, "StandardGpuResources"):
        with pytest.raises(RuntimeError, match="faiss-gpu"):
            index.to("cuda")
        assert index.device == "cpu"
    header, arrays = index.state()
    back = ffh.FlowHashIndex.from_state(header, arrays)
    q = _data(30, seed=4)
    np.testing.assert_array_equal(back.search(q, 5)[1], index.search(q, 5)[1])
    np.testing.assert_array_equal(back.ids, index.ids)
    assert back.params == index.params and back.assign == "spill" and back.storage == "float16"


def test_version_1_files_are_refused_with_a_clear_message(quantizer):
    data = ffh.serialize_index(_index(quantizer))
    old = MAGIC + (1).to_bytes(4, "little") + data[12:]
    with pytest.raises(ValueError, match="version 1.*rebuild"):
        ffh.deserialize_index(old)


# -- scale invariance under inner product ----------------------------------------------------------

@pytest.mark.parametrize("scale", [7.0, 0.01])
def test_inner_product_probes_do_not_depend_on_the_query_scale(quantizer, scale):
    index = _index(quantizer, r_query=0.5)
    q = _data(100, seed=6)
    D1, I1 = index.search(q, 5)
    n1 = index.last_search_stats.candidates
    D2, I2 = index.search(scale * q, 5)
    np.testing.assert_array_equal(I1, I2)
    found = I1 >= 0
    np.testing.assert_allclose(D2[found], scale * D1[found], rtol=1e-4, atol=1e-5)
    assert index.last_search_stats.candidates == n1
    index.search(np.zeros((1, D), np.float32), 1)  # a zero query is encoded as is


# -- the fuzz run's findings ----------------------------------------------------------------------

def test_train_on_a_populated_index_rebuckets_the_stored_vectors(quantizer):
    x = _data(1500)
    index = ffh.FlowHashIndex(D, K=6, config=SMALL)
    index.train(x)
    index.add_with_ids(x, np.arange(1500) + 100)
    index.train(_data(1500, seed=9))
    assert index.ntotal == 1500
    np.testing.assert_array_equal(index.ids, np.arange(1500) + 100)
    _, I = index.search(x[:200], 1)
    assert (I[:, 0] == np.arange(200) + 100).mean() > 0.95, "buckets follow the new quantizer"
    np.testing.assert_array_equal(index.reconstruct_n(0, 3), x[:3])


def test_huge_k_is_capped_or_refused_before_allocating(quantizer):
    index = _index(quantizer)
    q = _data(2, seed=1)
    with pytest.raises(ValueError, match="k <= ntotal"):
        index.search(q, 10**9)
    D_, I = index.search(q, index.ntotal + 5, r_query=1e9)
    assert I.shape == (2, index.ntotal + 5) and (I[:, -5:] == -1).all() and (I[:, :-5] >= 0).all()


def test_ids_near_2_63(quantizer):
    index = ffh.FlowHashIndex(quantizer=quantizer, probe="flip", max_probes=None)
    x = _data(20)
    big = 2**63 - 1
    index.add_with_ids(x[:1], [big])
    index.add(x[1:4])  # next id would overflow: the smallest free ids are used
    assert index.ids.tolist() == [big, 0, 1, 2]
    index.add(x[4:6])
    assert len(set(index.ids.tolist())) == 6
    np.testing.assert_array_equal(index.reconstruct(big), x[0])
    for key in (2**63, 2**64, -1):
        with pytest.raises(KeyError, match="not in the index"):
            index.reconstruct(key)
    with pytest.raises(ValueError, match=r"2\*\*63"):
        index.add_with_ids(x[6:7], [2**63])
    with pytest.raises(ValueError, match=r"2\*\*63"):
        index.add_with_ids(x[6:7], np.array([2**63], np.uint64))
    _, I = index.search(x[:1], 1)
    assert I[0, 0] == big
    assert index.remove_ids([big]) == 1 and index.ntotal == 5


def test_empty_ids_are_no_ops(quantizer):
    index = _index(quantizer)
    n0 = index.ntotal
    assert index.remove_ids([]) == 0
    assert index.remove_ids(np.array([])) == 0
    index.add_with_ids(np.zeros((0, D), np.float32), [])
    index.add_with_ids(np.zeros((0, D), np.float32), np.array([], np.int64))
    assert index.ntotal == n0


def test_integer_arrays_are_accepted_as_faiss_does(quantizer):
    index = _index(quantizer, metric=faiss.METRIC_L2)
    xi = np.random.default_rng(0).integers(-3, 4, (10, D))
    D1, I1 = index.search(xi, 3)
    D2, I2 = index.search(xi.astype(np.float32), 3)
    np.testing.assert_array_equal(I1, I2)
    index.add(xi.astype(np.int32))
    np.testing.assert_array_equal(index.reconstruct_n(index.ntotal - 10, 10), xi.astype(np.float32))


def test_identical_training_rows_are_refused():
    index = ffh.FlowHashIndex(D, K=6, config=SMALL)
    with pytest.raises(ValueError, match="identical"):
        index.train(np.ones((500, D), np.float32))
    with pytest.raises(ValueError, match="identical"):
        ffh.FlowHashIndex(K=6, config=SMALL).add(np.ones((500, D), np.float32))
    assert not index.is_trained
