"""ListCentroids: one copy of the list means, laid out in the bucket map's list order."""

import numpy as np
from hypothesis import given, settings, strategies as st

from faiss_flowhash.index.partition import ListCentroids

D = 6


def _reference_means(L, list_ids, x):
    out = np.zeros((L, D), np.float64)
    for l in range(L):
        sel = list_ids == l
        if sel.any():
            out[l] = x[sel].mean(0)
    return out


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), L=st.integers(1, 40), n=st.integers(1, 200), extra=st.integers(0, 5))
def test_layout_keeps_the_means_by_id_through_updates_and_new_lists(seed, L, n, extra):
    rng = np.random.default_rng(seed)
    c = ListCentroids(D)
    c.reserve(L)
    ids1 = rng.integers(0, L, n)
    x1 = rng.standard_normal((n, D)).astype(np.float32)
    c.update(ids1, x1)
    perm = rng.permutation(L)
    rows = c.layout(perm)
    assert rows is c.rows  # the one copy, no second one kept
    np.testing.assert_array_equal(c.id_of, perm)
    np.testing.assert_array_equal(c.of(perm), np.arange(L))
    np.testing.assert_array_equal(c.ids(c.of(np.r_[perm, -1])), np.r_[perm, -1])
    np.testing.assert_allclose(rows, _reference_means(L, ids1, x1)[perm], atol=1e-5)
    # updates after the layout, into old and new lists
    c.reserve(L + extra)  # new lists get rows at the end, as the index reserves them
    ids2 = rng.integers(0, L + extra, n)
    x2 = rng.standard_normal((n, D)).astype(np.float32)
    c.update(ids2, x2)
    want = _reference_means(L + extra, np.r_[ids1, ids2], np.r_[x1, x2])
    np.testing.assert_allclose(c.means, want, atol=1e-5)
    # a new layout over every list, then a removal
    perm2 = rng.permutation(L + extra)
    c.layout(perm2)
    np.testing.assert_allclose(c.means, want, atol=1e-5)
    c.update(ids2, x2, sign=-1)
    np.testing.assert_allclose(c.means[:L], _reference_means(L, ids1, x1), atol=1e-4)


def test_layout_of_a_partial_list_order_is_a_copy_and_leaves_the_rows_alone():
    c = ListCentroids(D)
    x = np.arange(4 * D, dtype=np.float32).reshape(4, D)
    c.update(np.arange(4), x)
    got = c.layout(np.array([2, 0]))  # not every list: a gathered copy
    np.testing.assert_array_equal(got, x[[2, 0]])
    np.testing.assert_array_equal(c.rows, x)
    np.testing.assert_array_equal(c.id_of, np.arange(4))


def test_state_round_trip_is_by_id_whatever_the_layout():
    rng = np.random.default_rng(0)
    c = ListCentroids(D)
    c.update(rng.integers(0, 9, 50), rng.standard_normal((50, D)).astype(np.float32))
    before = c.means.copy()
    c.layout(rng.permutation(9))
    back = ListCentroids.from_state(c.state())
    np.testing.assert_array_equal(back.means, before)
    np.testing.assert_array_equal(back.counts, c.counts)


def test_sq8_rows_follow_the_layout():
    rng = np.random.default_rng(1)
    c = ListCentroids(D)
    c.update(np.arange(5), rng.standard_normal((5, D)).astype(np.float32))
    perm = np.array([4, 2, 0, 1, 3])
    rows = c.layout(perm)
    vmin, scale, codes = c.sq8()
    np.testing.assert_allclose(vmin + scale * codes, rows, atol=float(scale.max()))
