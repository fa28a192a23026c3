import itertools

import numpy as np
import pytest
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import arrays

from faiss_flowhash.index.codes import expand_codes, pack_codes, probe_codes
from faiss_flowhash.index.bucket_map import BucketMap, gather_ranges

latents = st.integers(1, 8).flatmap(
    lambda K: arrays(np.float32, st.tuples(st.integers(0, 12), st.just(K)),
                     elements=st.floats(-3, 3, width=32)))


def test_pack_codes_bit_order():
    z = np.array([[1.0, -1.0, 0.5], [-1.0, -1.0, -0.0]], np.float32)
    assert pack_codes(z).tolist() == [0b101, 0]


def _brute(z, radius, max_bits):
    """All codes reachable by flipping any subset of the (capped) near-zero bits, with flip costs."""
    base = int(pack_codes(z[None])[0])
    amb = [k for k in np.argsort(np.abs(z), kind="stable") if abs(z[k]) < radius][:max_bits]
    out = {}
    for m in range(len(amb) + 1):
        for sub in itertools.combinations(amb, m):
            code = base
            for k in sub:
                code ^= 1 << int(k)
            out[code] = float(sum(abs(z[k]) for k in sub))
    return out


@given(z=latents, radius=st.floats(0, 3), max_bits=st.integers(0, 5))
def test_expand_and_probe_agree_with_brute_force(z, radius, max_bits):
    rows, codes = expand_codes(z, radius=radius, max_bits=max_bits)
    qidx, pcodes, cost = probe_codes(z, radius=radius, max_bits=max_bits)
    assert np.all(np.diff(qidx) >= 0)
    for i in range(len(z)):
        ref = _brute(z[i], radius, max_bits)
        assert sorted(codes[rows == i].tolist()) == sorted(ref)
        mine = pcodes[qidx == i]
        assert sorted(mine.tolist()) == sorted(ref)
        c = cost[qidx == i]
        assert np.all(np.diff(c) >= -1e-6), "probes must be visited cheapest first"
        assert mine[0] == pack_codes(z[i : i + 1])[0] and c[0] == 0
        np.testing.assert_allclose(c, [ref[int(k)] for k in mine], atol=1e-5)


def test_probe_codes_max_probes_keeps_the_cheapest():
    z = np.array([[0.1, 0.2, 0.3, 3.0]], np.float32)
    _, codes, cost = probe_codes(z, radius=1.0, max_bits=3, max_probes=3)
    np.testing.assert_allclose(cost, [0, 0.1, 0.2], atol=1e-6)


@given(st.lists(st.integers(0, 40), max_size=60), st.integers(0, 3))
def test_bucket_map_matches_a_dict(codes, n_batches):
    """Every code gets one list, the same list on every add; lists are numbered densely in order of
    first appearance of a batch; absent codes are not found."""
    m, ref = BucketMap(), {}
    for ch in np.array_split(np.array(codes, np.uint64), n_batches + 1):
        lists = m.add_lists(ch)
        for c, lst in zip(ch.tolist(), lists.tolist()):
            assert ref.setdefault(c, lst) == lst
    assert m.n_lists == len(ref) == len(m)
    assert sorted(ref.values()) == list(range(len(ref)))
    probe = np.arange(45, dtype=np.uint64)
    starts, lengths = m.lookup(probe)
    for c, s, n in zip(probe.tolist(), starts, lengths):
        assert m.lists[s : s + n].tolist() == ([ref[c]] if c in ref else [])
    back = BucketMap.from_state(m.state())
    assert back.lists.tolist() == m.lists.tolist() and back.keys.tolist() == m.keys.tolist()


def test_bucket_map_probe_matrix_and_groups():
    m = BucketMap()
    m.add_lists(np.array([5, 7, 9], np.uint64))  # lists 0, 1, 2
    # a split bucket: code 7 owns the group [1, 3] (what splitting an oversized bucket produces)
    m.lists = np.array([0, 1, 3, 2]); m.offsets = np.array([0, 1, 3, 4]); m.n_lists = 4
    A = m.probe_matrix(np.array([0, 0, 0, 1]), np.array([9, 11, 7, 5], np.uint64), 3)
    assert A.tolist() == [[2, 1, 3], [0, -1, -1], [-1, -1, -1]]  # absent code 11 dropped, query 2 probes nothing
    assert m.add_lists(np.array([7], np.uint64)).tolist() == [3], "new vectors go to the last list of a group"
    with pytest.raises(ValueError, match="do not fit"):
        BucketMap.from_state({**m.state(), "offsets": np.array([0, 1, 3])})


def test_gather_ranges():
    out = gather_ranges(np.array([5, 0, 10]), np.array([2, 0, 3]))
    assert out.tolist() == [5, 6, 10, 11, 12]
    assert gather_ranges(np.array([], np.int64), np.array([], np.int64)).tolist() == []
