import itertools

import numpy as np
from hypothesis import given, strategies as st
from hypothesis.extra.numpy import arrays

from faiss_flowhash.index.codes import expand_codes, pack_codes, probe_codes
from faiss_flowhash.index.table import BucketTable, gather_ranges

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


@given(st.lists(st.tuples(st.integers(0, 40), st.integers(0, 30)), max_size=60), st.integers(0, 3))
def test_bucket_table_matches_a_dict(entries, n_batches):
    table, ref = BucketTable(), {}
    chunks = np.array_split(np.arange(len(entries)), n_batches + 1)
    for ch in chunks:
        codes = np.array([entries[i][0] for i in ch], np.uint64)
        rows = np.array([entries[i][1] for i in ch], np.int64)
        table.add(codes, rows)
    for c, r in entries:
        ref.setdefault(c, []).append(r)
    probe = np.arange(45, dtype=np.uint64)
    starts, lengths = table.lookup(probe)
    for c, s, n in zip(probe.tolist(), starts, lengths):
        assert sorted(table.rows[s : s + n].tolist()) == sorted(ref.get(c, []))


def test_bucket_table_remove_rows_renumbers():
    t = BucketTable()
    t.add(np.array([5, 5, 7, 9], np.uint64), np.array([0, 1, 2, 3]))
    keep = np.array([True, False, True, True])
    t.remove_rows(keep)
    s, n = t.lookup(np.array([5, 7, 9, 11], np.uint64))
    assert [t.rows[a : a + b].tolist() for a, b in zip(s, n)] == [[0], [1], [2], []]


def test_gather_ranges():
    out = gather_ranges(np.array([5, 0, 10]), np.array([2, 0, 3]))
    assert out.tolist() == [5, 6, 10, 11, 12]
    assert gather_ranges(np.array([], np.int64), np.array([], np.int64)).tolist() == []


def test_candidates_budget_and_dedupe():
    t = BucketTable()
    t.add(np.array([1, 1, 2, 2, 3], np.uint64), np.array([0, 1, 1, 2, 3]))
    qidx = np.array([0, 0, 0, 1])
    codes = np.array([1, 2, 3, 3], np.uint64)
    q, r, n = t.candidates(qidx, codes, budget=None, n_rows=4)
    assert (q.tolist(), r.tolist(), n) == ([0, 0, 0, 0, 1], [0, 1, 2, 3, 3], 4)  # row 1 counted once
    q, r, n = t.candidates(qidx, codes, budget=2, n_rows=4)
    assert (q.tolist(), r.tolist(), n) == ([0, 0, 1], [0, 1, 3], 2)  # query 0 stops after its first probe
