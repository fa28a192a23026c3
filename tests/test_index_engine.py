"""The faiss scan engine against the numpy reference scorer; compact lists at K = 24; spill and dedupe."""

import faiss
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import faiss_flowhash as ffh
from faiss_flowhash.index import engine as engine_module
from faiss_flowhash.index.engine import IVFEngine, dedupe_topk
from faiss_flowhash.index.scoring import topk_candidates

METRICS = [faiss.METRIC_INNER_PRODUCT, faiss.METRIC_L2]


def _reference(xb, lists, q, assign, k, max_codes, metric):
    """The numpy oracle: per query, the entries of its lists in probe order, cut at max_codes, unique
    ids (first copy), scored exactly, top k."""
    qidx, rows = [], []
    for i, row in enumerate(assign):
        seen, scanned = [], 0
        for lst in row[row >= 0]:
            for r in lists[lst]:
                if max_codes and scanned >= max_codes:
                    break
                scanned += 1
                if r not in seen:
                    seen.append(r)
        qidx += [i] * len(seen)
        rows += seen
    norms = (xb.astype(np.float64) ** 2).sum(1).astype(np.float32)
    return topk_candidates(q, xb, np.array(qidx, np.int64), np.array(rows, np.int64), k, metric=metric, norms=norms)


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 300), st.integers(1, 12), st.integers(1, 9), st.integers(0, 60), st.sampled_from(METRICS),
       st.booleans(), st.integers(0, 2**31 - 1), st.booleans(), st.sampled_from([7, 40]))
def test_engine_equals_the_reference_scorer_on_the_same_lists(n, n_lists, k, max_codes, metric, spill, seed, jit, nq):
    """faiss's scan and the numba scan (row by row below GROUP_MIN_ROWS queries, grouped by list above)."""
    rng = np.random.default_rng(seed)
    d = 8
    x = rng.standard_normal((n, d)).astype(np.float32)
    ids = rng.choice(2**40, n, replace=False).astype(np.int64)  # rows of x are ids[row]
    primary = rng.integers(0, n_lists, n)
    extra = np.where(rng.random(n) < 0.5, rng.integers(0, n_lists, n), -1) if spill else None
    if extra is not None:
        extra = np.where(extra == primary, -1, extra)[:, None]
    eng = IVFEngine(d, metric)
    half = n // 2  # two batches: lists keep insertion order across adds
    for sl in (slice(0, half), slice(half, n)):
        eng.add(x[sl], ids[sl], primary[sl], None if extra is None else extra[sl])
    lists = [[] for _ in range(n_lists)]
    for sl in (slice(0, half), slice(half, n)):
        for r in range(sl.start, sl.stop):
            lists[primary[r]].append(r)
        if extra is not None:
            for r in range(sl.start, sl.stop):
                if extra[r, 0] >= 0:
                    lists[extra[r, 0]].append(r)
    q = rng.standard_normal((nq, d)).astype(np.float32)
    P = rng.integers(1, n_lists + 1)
    assign = np.stack([rng.permutation(n_lists)[:P] for _ in range(nq)]).astype(np.int64)
    assign[rng.random(assign.shape) < 0.2] = -1
    assign = np.sort(np.where(assign < 0, n_lists, assign), axis=1)  # any order works; keep -1 last
    assign = np.where(assign == n_lists, -1, assign)
    D, I, scanned = eng.search(q, assign, k, max_codes, jit=jit)
    Dr, Rr = _reference(x, lists, q, assign, k, max_codes, metric)
    np.testing.assert_array_equal(I, np.where(Rr >= 0, ids[np.maximum(Rr, 0)], -1))
    np.testing.assert_allclose(D, Dr, rtol=1e-4, atol=1e-4)
    assert scanned == eng.scanned_per_query(assign, max_codes).sum()


@given(st.integers(1, 6), st.integers(1, 12), st.integers(0, 2**31 - 1))
def test_dedupe_topk_keeps_the_first_copy_in_rank_order(n, m, seed):
    rng = np.random.default_rng(seed)
    I = rng.integers(0, 5, (n, m))
    I[np.arange(m)[None, :] >= rng.integers(0, m + 1, (n, 1))] = -1  # faiss pads at the end
    D = np.sort(rng.random((n, m)).astype(np.float32), axis=1)  # L2: best (smallest) first
    for k in (1, 3, m + 2):
        D2, I2 = dedupe_topk(D, I, k, faiss.METRIC_L2)
        assert D2.shape == I2.shape == (n, k)
        for r in range(n):
            first = {}
            for j in range(m):
                if I[r, j] >= 0:
                    first.setdefault(int(I[r, j]), float(D[r, j]))
            want = list(first.items())[:k]
            got = [(int(i), float(dd)) for i, dd in zip(I2[r], D2[r]) if i >= 0]
            assert got == want
            assert (I2[r, len(want):] == -1).all()


def test_engine_remove_reconstruct_reset_and_growth():
    rng = np.random.default_rng(0)
    d = 6
    eng = IVFEngine(d)
    x = rng.standard_normal((500, d)).astype(np.float32)
    ids = np.arange(500, dtype=np.int64) + 2**62
    for b in range(5):  # each batch opens new lists: capacity grows, contents are kept
        sl = slice(100 * b, 100 * (b + 1))
        eng.add(x[sl], ids[sl], rng.integers(0, 40 * (b + 1), 100), rng.integers(-1, 40 * (b + 1), (100, 1)))
    assert eng.nlist >= 200 and eng.list_sizes().sum() == eng.n_entries
    np.testing.assert_array_equal(eng.reconstruct(ids[[3, 499]]), x[[3, 499]])
    removed = eng.remove_ids(ids[:10])
    assert removed >= 10 and eng.n_entries == eng.list_sizes().sum()
    everything = np.tile(np.arange(eng.nlist), (3, 1))
    _, I, _ = eng.search(x[:3], everything, 20)
    assert not np.isin(I, ids[:10]).any() and len(set(I[0].tolist())) == 20
    eng.reset()
    assert eng.n_entries == 0 and eng.search(x[:2], np.zeros((2, 1), np.int64), 3)[1].tolist() == [[-1] * 3] * 2


def _cheap_quantizer(d, K, x):
    """A PCA start with a one-layer identity-initialised flow (steps=0): the test's speed, not quality."""
    cfg = ffh.QuantizerConfig(steps=0, n_layers=1, hidden=(8,), projection_steps=0, max_train=4000, verbose=False)
    q = ffh.FlowQuantizer(d, K, config=cfg)
    q.train(x[:4000])
    return q


def test_K24_at_200k_vectors_keeps_lists_compact():
    rng = np.random.default_rng(0)
    d, n = 32, 200_000
    x = rng.standard_normal((n, d)).astype(np.float32)
    index = ffh.FlowHashIndex(quantizer=_cheap_quantizer(d, 24, x))
    index.add(x)
    n_lists = index._engine.nlist
    assert len(index._map) == len(np.unique(index._codes))
    assert n_lists < 1.5 * index._map.n_lists + 64, "lists exist for non-empty buckets only, not 2^24"
    # + the list centroids (float32 mean + count per list), which memory_bytes counts since 2026-12-02
    assert index.memory_bytes() / n < (4 * d + 8) * 1.1 * 1.2 + 16 + (160 + 4 * d + 8) * n_lists / n + 40
    _, I = index.search(x[:200], 1)
    assert (I[:, 0] == np.arange(200)).mean() > 0.99, "a stored vector is found in its own bucket"


@pytest.mark.parametrize("metric", METRICS)
def test_spill_every_vector_then_dedupe_equals_exact(metric):
    rng = np.random.default_rng(1)
    d = 12
    x = rng.standard_normal((2000, d)).astype(np.float32)
    index = ffh.FlowHashIndex(quantizer=_cheap_quantizer(d, 6, x), metric=metric, assign="spill", spill=1.0,
                              probe="flip", max_probes=None,
                              max_probe_bits=6)
    index.add(x)
    assert index.table_entries == 2 * index.ntotal and index._engine.max_copies == 2
    q = rng.standard_normal((30, d)).astype(np.float32)
    D, I = index.search(q, 10, r_query=1e9)
    ex = faiss.IndexFlatIP(d) if metric == faiss.METRIC_INNER_PRODUCT else faiss.IndexFlatL2(d)
    ex.add(x)
    De, Ie = ex.search(q, 10)
    np.testing.assert_array_equal(I, Ie)
    np.testing.assert_allclose(D, De, rtol=1e-4, atol=1e-4)
    assert index.remove_ids(Ie[:, 0]) == len(np.unique(Ie[:, 0]))
    _, I2 = index.search(q, 10, r_query=1e9)
    assert not np.isin(I2, Ie[:, 0]).any(), "both copies of a removed vector are gone"


def test_assign_modes_store_the_expected_copies():
    rng = np.random.default_rng(2)
    d = 12
    x = rng.standard_normal((3000, d)).astype(np.float32)
    q = _cheap_quantizer(d, 8, x)
    entries = {}
    for mode, kw in (("none", {}), ("spill", dict(spill=0.1)), ("radius", dict(r=1.0, max_assign_bits=2))):
        index = ffh.FlowHashIndex(quantizer=q, metric=faiss.METRIC_L2, assign=mode, probe="flip", max_probes=None, **kw)
        index.add(x)
        entries[mode] = index.table_entries
        _, I = index.search(x[:100], 1)
        assert (I[:, 0] == np.arange(100)).all()
    assert entries["none"] == 3000
    assert 3000 * 1.08 <= entries["spill"] <= 3000 * 1.12
    assert 3000 < entries["radius"] <= 4 * 3000


@pytest.mark.parametrize("budget", [1, 40, 300, 5000])
def test_budgeted_search_builds_only_a_probe_prefix_with_the_same_result(budget):
    """Under a budget the index builds the cheapest probes first and more only where needed: the result
    must equal scanning the assign matrix of every probe."""
    from faiss_flowhash.index.codes import probe_codes

    rng = np.random.default_rng(3)
    d = 12
    x = rng.standard_normal((4000, d)).astype(np.float32)
    index = ffh.FlowHashIndex(quantizer=_cheap_quantizer(d, 10, x), metric=faiss.METRIC_L2, r_query=float("inf"),
                              max_probe_bits=10, probe="flip", max_probes=None)
    index.add(x)
    q = rng.standard_normal((40, d)).astype(np.float32)
    qidx, codes, _ = probe_codes(index._encode_queries(q), radius=float("inf"), max_bits=10)
    A = index._map.probe_matrix(qidx, codes, len(q))
    for planner, jit in (("reference", False), ("fused", True)):  # the scan follows the planner's numba rule
        D, I = index.search(q, 5, params=ffh.SearchParams(budget=budget, planner=planner))
        De, Ie, scanned = index._engine.search(q, A, 5, budget, jit=jit)
        np.testing.assert_array_equal(I, Ie)
        np.testing.assert_array_equal(D, De)
        assert index.last_search_stats.candidates == scanned / len(q)


def _same_scan(eng, q, assign, k, max_codes=0):
    """The numba scan returns faiss's ids, scores (to float rounding) and scanned count."""
    Df, If, sf = eng.search(q, assign, k, max_codes)
    Dj, Ij, sj = eng.search(q, assign, k, max_codes, jit=True)
    np.testing.assert_array_equal(Ij, If)
    np.testing.assert_allclose(Dj, Df, rtol=1e-5, atol=1e-5)
    assert sj == sf


@pytest.mark.parametrize("metric", METRICS)
def test_the_numba_scan_follows_every_change_of_the_lists(metric, monkeypatch):
    """Adds (lists reallocate), splits, removals and list growth move or resize lists: the numba scan
    reads them through a table of addresses that must follow each change (a stale address reads freed
    memory: wrong answers or a crash). Grouped blocks are cut small here, so a batch spans several."""
    monkeypatch.setattr(engine_module, "GROUP_ENTRIES", 500)
    rng = np.random.default_rng(3)
    d, n_lists = 12, 60
    eng = IVFEngine(d, metric)
    x = rng.standard_normal((4000, d)).astype(np.float32)
    q = rng.standard_normal((50, d)).astype(np.float32)
    nxt = 0

    def assign(L, n=len(q)):
        return np.stack([rng.permutation(L)[:20] for _ in range(n)]).astype(np.int64)

    for step in range(8):
        m = int(rng.integers(1, 400))
        eng.add(x[nxt: nxt + m], np.arange(nxt, nxt + m), rng.integers(0, n_lists + 10 * step, m))
        nxt += m
        _same_scan(eng, q, assign(eng.nlist), 5)
        _same_scan(eng, q[:3], assign(eng.nlist, 3), 5, max_codes=40)
        if step % 3 == 1:
            lst = int(np.argmax(eng.list_sizes()))
            dest = np.where(rng.random(eng.list_sizes()[lst]) < 0.5, lst, eng.nlist + 1)
            eng.split_list(lst, dest)
            _same_scan(eng, q, assign(eng.nlist), 5)
        if step % 3 == 2:
            eng.remove_ids(rng.choice(nxt, nxt // 5, replace=False))
            _same_scan(eng, q, assign(eng.nlist), 64)


def test_queries_and_assign_rows_must_agree():
    eng = IVFEngine(4)
    eng.add(np.ones((3, 4), np.float32), np.arange(3), np.zeros(3, np.int64))
    for jit in (False, True):
        with pytest.raises(ValueError, match="rows of assign"):
            eng.search(np.ones((2, 4), np.float32), np.zeros((5, 1), np.int64), 1, jit=jit)
    with pytest.raises(ValueError, match="list ids < nlist"):  # the numba scan reads without bounds checks
        eng.search(np.ones((2, 4), np.float32), np.full((2, 1), eng.nlist, np.int64), 1, jit=True)


def test_the_numba_scan_applies_where_it_can():
    """k x copies above JIT_MAX_K, and float16 storage, scan in faiss: same answers either way."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((500, 8)).astype(np.float32)
    for storage in ("float32", "float16"):
        eng = IVFEngine(8, faiss.METRIC_L2, storage)
        eng.add(x, np.arange(500), rng.integers(0, 9, 500))
        A = np.tile(np.arange(9), (40, 1))
        for k in (1, engine_module.JIT_MAX_K, engine_module.JIT_MAX_K + 1):
            _same_scan(eng, x[:40], A, k)


def test_equal_vectors_under_several_ids_come_back_in_id_order_from_either_scan():
    rng = np.random.default_rng(5)
    x = rng.standard_normal((50, 6)).astype(np.float32)
    xx = np.r_[x, x, x]  # every vector three times, under ids i, i + 50, i + 100
    for metric in METRICS:
        eng = IVFEngine(6, metric)
        eng.add(xx[::-1].copy(), np.arange(150)[::-1].copy(), rng.integers(0, 5, 150))  # scanned in reverse id order
        A = np.tile(np.arange(5), (40, 1))
        for jit in (False, True):
            _, I, _ = eng.search(x[:40], A, 4, jit=jit)
            top = I[:, :3]  # the best vector's three copies, in id order
            np.testing.assert_array_equal(top, (top[:, :1] % 50) + [0, 50, 100])
