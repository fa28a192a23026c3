"""add's choice of sub-list in split buckets is memory-bounded and equals the one-pass choice."""

import numpy as np

import faiss_flowhash as ffh
import faiss_flowhash.index.flowhash_index as fhi


def _clustered(n, d=16, seed=0):
    rng = np.random.default_rng(seed)
    centers = 4 * rng.standard_normal((5, d))
    w = np.array([0.6, 0.2, 0.1, 0.05, 0.05])  # one dense cluster: its bucket splits into many sub-lists
    return (centers[rng.choice(5, n, p=w)] + rng.standard_normal((n, d))).astype(np.float32)


def _build(x, x_more):
    index = ffh.FlowHashIndex(16, K=4, bucket_cap=16, config=ffh.QuantizerConfig(steps=0, verbose=False))
    index.add(x)
    index.add(x_more)  # rows of split buckets go to their nearest sub-list
    return index


def test_chunked_sub_list_choice_equals_one_pass(monkeypatch):
    x, x_more = _clustered(3000), _clustered(2000, seed=1)
    one_pass = _build(x, x_more)
    groups = one_pass._map.groups(np.unique(one_pass._codes))
    assert (groups >= 0).sum(1).max() > 8  # the test needs buckets of many sub-lists
    monkeypatch.setattr(fhi, "_GROUP_CELLS", 7)  # fewer cells than one group: every chunk is one row
    chunked = _build(x, x_more)
    q = _clustered(50, seed=2)
    for a, b in zip(one_pass.search(q, 5), chunked.search(q, 5)):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(one_pass.bucket_sizes(), chunked.bucket_sizes())
