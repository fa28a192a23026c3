"""ListCentroids: one copy of the list means (bfloat16), laid out in the bucket map's list order."""

import numpy as np
from hypothesis import given, settings, strategies as st

from faiss_flowhash.index.bfloat16 import from_bf16, round_bf16, to_bf16
from faiss_flowhash.index.partition import ListCentroids

BF16 = dict(rtol=2.0 ** -8, atol=1e-6)  # a stored mean is the running mean rounded to bfloat16

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
    np.testing.assert_array_equal(c.id_of[c.of(perm)], perm)  # the two maps are inverse
    assert c.of(np.array([-1]))[0] == -1
    np.testing.assert_allclose(from_bf16(rows), _reference_means(L, ids1, x1)[perm], **BF16)
    # updates after the layout, into old and new lists
    c.reserve(L + extra)  # new lists get rows at the end, as the index reserves them
    ids2 = rng.integers(0, L + extra, n)
    x2 = rng.standard_normal((n, D)).astype(np.float32)
    c.update(ids2, x2)
    want = _reference_means(L + extra, np.r_[ids1, ids2], np.r_[x1, x2])
    M = float(np.abs(np.r_[x1, x2]).max())  # every mean (and every rounding error's scale) is below it
    np.testing.assert_allclose(c.means, want, rtol=0, atol=2 * 2.0 ** -8 * M)  # two roundings
    # a new layout over every list moves the stored bits, it does not change them
    before = c.means
    perm2 = rng.permutation(L + extra)
    c.layout(perm2)
    np.testing.assert_array_equal(c.means, before)
    # taking the second batch away again: back to the first batch's means, the rounding errors scaled by
    # count before / count after (the index never does this: a removal recomputes means from the vectors)
    n1 = np.bincount(ids1, minlength=L)
    amp = np.bincount(np.r_[ids1, ids2], minlength=L + extra)[:L] / np.maximum(n1, 1)
    c.update(ids2, x2, sign=-1)
    err = np.abs(c.means[:L] - _reference_means(L, ids1, x1)).max(1)
    assert np.all(err <= 3 * 2.0 ** -8 * M * np.maximum(amp, 1) + 1e-6)
    assert np.all(c.means[:L][n1 == 0] == 0)


def test_layout_of_a_partial_list_order_is_a_copy_and_leaves_the_rows_alone():
    c = ListCentroids(D)
    x = np.arange(4 * D, dtype=np.float32).reshape(4, D)  # small integers: exact in bfloat16
    c.update(np.arange(4), x)
    got = c.layout(np.array([2, 0]))  # not every list: a gathered copy
    np.testing.assert_array_equal(from_bf16(got), x[[2, 0]])
    np.testing.assert_array_equal(from_bf16(c.rows), x)
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
    np.testing.assert_allclose(vmin + scale * codes, from_bf16(rows), atol=float(scale.max()))


def test_state_keeps_the_stored_bits_and_reads_float32_files():
    rng = np.random.default_rng(2)
    c = ListCentroids(D)
    c.update(rng.integers(0, 7, 40), rng.standard_normal((40, D)).astype(np.float32))
    state = c.state()
    assert state["means_bf16"].dtype == np.uint16
    back = ListCentroids.from_state(state)
    np.testing.assert_array_equal(back.rows, c.rows)  # the same bits: the same plans after a round trip
    old = ListCentroids.from_state({"means": c.means, "counts": c.counts})  # a file written before bfloat16
    np.testing.assert_array_equal(old.rows, c.rows)


def test_gather_decodes_only_the_named_lists():
    rng = np.random.default_rng(3)
    c = ListCentroids(D)
    c.update(np.arange(9), rng.standard_normal((9, D)).astype(np.float32))
    c.layout(rng.permutation(9))
    A = np.array([[4, 1, -1], [1, 8, 2]])
    uniq, base, local = c.gather(A)
    np.testing.assert_array_equal(uniq, [1, 2, 4, 8])
    assert base.dtype == np.float32 and base.shape == (4, D)
    np.testing.assert_array_equal(local == -1, A == -1)
    np.testing.assert_array_equal(np.where(local >= 0, uniq[np.maximum(local, 0)], -1), A)
    np.testing.assert_array_equal(base, c.means[uniq])
    big = ListCentroids(D)  # few entries for a large table: the sorting branch, same answer
    big.update(np.arange(200), rng.standard_normal((200, D)).astype(np.float32))
    A = np.array([[150, -1], [3, 150]])
    uniq, base, local = big.gather(A)
    np.testing.assert_array_equal(uniq, [3, 150])
    np.testing.assert_array_equal(local, [[1, -1], [0, 1]])
    np.testing.assert_array_equal(base, big.means[uniq])


def test_bfloat16_codec():
    x = np.random.default_rng(4).standard_normal(10_000).astype(np.float32) * 100
    r = round_bf16(x)
    assert np.all(np.abs(r - x) <= np.abs(x) * 2.0 ** -8)
    np.testing.assert_array_equal(round_bf16(r), r)  # bfloat16 values are kept exactly
    edge = np.array([0.0, -0.0, np.inf, -np.inf, 3.4e38, -3.4e38, 1e-40], np.float32)
    back = from_bf16(to_bf16(edge))
    assert np.all(np.isfinite(back[4:6])) and back[2] == np.inf and back[3] == -np.inf
    assert np.isnan(from_bf16(to_bf16(np.array([np.nan], np.float32))))[0]
