"""The fused planner (faiss_flowhash.index.planner) against the reference numpy planner, its oracle;
per-call search statistics under threads; the numba flow against the numpy flow."""

import threading

import faiss
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import faiss_flowhash as ffh
from faiss_flowhash.index import planner as planner_mod
from faiss_flowhash.index.bfloat16 import round_bf16
from faiss_flowhash.index.bucket_map import BucketMap
from faiss_flowhash.index.probing import flip_candidates
from faiss_flowhash.index.quantizer import _flow_numpy

D = 16


def _rows_agree(A, B, q, cent, rtol=1e-4):
    """Each row of A and B names the same lists, except where a list's distance ties (to rtol) with the
    boundary of the other's set: float sums in another order may swap lists of equal distance."""
    assert A.shape == B.shape
    for i in range(len(A)):
        a, b = set(A[i][A[i] >= 0].tolist()), set(B[i][B[i] >= 0].tolist())
        assert len(a) == len(b)
        if a == b:
            continue
        d = lambda ls: np.array([((q[i].astype(np.float64) - cent[l]) ** 2).sum() for l in ls])
        worst = max(d(a).max(), d(b).max())
        for extra in (a - b, b - a):
            assert np.all(np.abs(d(extra) - worst) <= rtol * worst), (i, a ^ b)


def _random_map(rng, K, n_codes, max_group):
    codes = rng.choice(1 << K, size=n_codes, replace=False).astype(np.uint64)
    m = BucketMap(K)
    m.add_lists(codes)
    extra = rng.integers(0, max_group, n_codes)  # split some buckets into several lists
    sel = extra > 0
    if sel.any():
        order = np.argsort(codes[sel])
        m.extend_groups(codes[sel][order], extra[sel][order])
    return m


@settings(max_examples=40, deadline=None)
@given(seed=st.integers(0, 10_000), K=st.integers(2, 12), bits=st.integers(0, 12), keep=st.sampled_from([None, 1, 3, 16, 200]),
       nprobe=st.sampled_from([None, 1, 5, 40]), n=st.sampled_from([1, 3, 20]), dense=st.booleans())
def test_fused_plan_names_the_reference_lists(seed, K, bits, keep, nprobe, n, dense):
    rng = np.random.default_rng(seed)
    m = _random_map(rng, K, int(rng.integers(1, (1 << K) + 1)), 3)
    if not dense:
        m._dense_bits = None  # the sorted-keys binary search, as above K = 20
    cent = round_bf16(rng.standard_normal((m.n_lists, D)).astype(np.float32))  # what the fused planner stores
    z = rng.standard_normal((n, K)).astype(np.float32)
    q = rng.standard_normal((n, D)).astype(np.float32)
    kw = dict(probe_bits=bits, keep=keep, nprobe=nprobe)
    A_ref, m_ref = planner_mod.reference_plan(z, q, bucket_map=m, centroids=cent, **kw)
    A, m_f = planner_mod.fused_plan(z, q, tables=m.tables(), centroids=cent, max_group=m.max_group, **kw)
    assert m_f == m_ref
    if nprobe is None:  # every proposed list: the reference keeps its columns, the fused planner trims them
        A = np.pad(A, ((0, 0), (0, max(A_ref.shape[1] - A.shape[1], 0))), constant_values=-1)
        A_ref = np.pad(A_ref, ((0, 0), (0, max(A.shape[1] - A_ref.shape[1], 0))), constant_values=-1)
    _rows_agree(A, A_ref, q, cent)
    # nearest first, as the reference
    for i in range(n):
        ls = A[i][A[i] >= 0]
        dd = ((q[i] - cent[ls]) ** 2).sum(1)
        assert np.all(np.diff(dd) >= -1e-4 * max(dd.max(initial=0), 1))


@settings(max_examples=60, deadline=None)
@given(seed=st.integers(0, 10_000), K=st.integers(1, 20), bits=st.integers(0, 20), keep=st.integers(1, 3000))
def test_cheapest_flips_are_the_cheapest(seed, K, bits, keep):
    z = np.random.default_rng(seed).standard_normal(K).astype(np.float32)
    flips, cost = planner_mod.jit_kernels().cheapest_flips(z, bits, keep)
    b = min(bits, K)
    assert len(flips) == min(keep, 1 << b) and len(set(flips.tolist())) == len(flips)
    assert np.all(np.diff(cost) >= 0)
    codes, ref_cost = flip_candidates(z[None], bits, keep, ordered=True)
    a = np.abs(z.astype(np.float64))
    mine = np.array([a[[k for k in range(K) if (int(f) >> k) & 1]].sum() for f in flips])
    np.testing.assert_allclose(cost, mine, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.sort(cost), np.sort(ref_cost[0]), rtol=1e-5, atol=1e-6)  # same cheapest costs


@pytest.fixture(scope="module")
def built():
    rng = np.random.default_rng(1)
    c = rng.standard_normal((40, D))
    x = (c[rng.integers(0, 40, 8000)] + 0.3 * rng.standard_normal((8000, D))).astype(np.float32)
    q = (x[:200] + 0.1 * rng.standard_normal((200, D))).astype(np.float32)
    index = ffh.FlowHashIndex(D, K=10, config=ffh.QuantizerConfig(steps=40, batch_size=128, verbose=False,
                                                                   neighbour_pairs=2000))
    index.train(x[:3000])
    index.add(x)
    return index, x, q


def test_fused_and_reference_searches_agree(built):
    index, _, q = built
    ref = ffh.SearchParams(planner="reference")
    for nprobe in (4, 32):
        D1, I1 = index.search(q, 5, params=ffh.SearchParams(nprobe=nprobe, planner="fused"))
        s1 = index.last_search_stats
        D0, I0 = index.search(q, 5, params=ffh.SearchParams(nprobe=nprobe, planner="reference"))
        s0 = index.last_search_stats
        assert np.mean(np.all(I1 == I0, axis=1)) >= 0.99
        assert abs(s1.candidates - s0.candidates) <= 0.01 * s0.candidates
    assert ref.planner == "reference"


def test_batch_equals_per_query_with_the_jit_flow(built):
    """Few rows go through the numba flow, many through numpy: same latents (to float), same results."""
    index, _, q = built
    planner_mod.jit_kernels()  # the numba flow serves few rows once numba is loaded
    quant = index.quantizer
    y = quant.project(q[:8])
    if quant.flow_active:
        np.testing.assert_allclose(quant.latent(y), _flow_numpy(quant._flow_weights(), y), rtol=1e-4, atol=1e-5)
    _, I = index.search(q[:40], 3)
    single = np.concatenate([index.search(q[i: i + 1], 3)[1] for i in range(40)])
    assert np.mean(np.all(I == single, axis=1)) >= 0.97


def test_eval_percent_is_per_thread_under_concurrent_searches(built):
    index, _, q = built
    settings_ = [ffh.SearchParams(nprobe=p) for p in (1, 4, 16, 64)]
    want = []
    for sp in settings_:
        index.search(q, 3, params=sp)
        want.append(index.last_search_stats.candidates)
    got = {i: [] for i in range(len(settings_))}
    barrier = threading.Barrier(len(settings_))

    def work(i):
        barrier.wait()
        for _ in range(15):
            index.search(q, 3, params=settings_[i])
            got[i].append(index.last_search_stats.candidates)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(len(settings_))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for i, w in enumerate(want):
        assert got[i] == [w] * 15, (i, w, got[i][:3])
    assert len(set(want)) == len(want)  # the settings differ, so mixing would show


def test_candidates_match_the_list_sizes(built):
    index, _, q = built
    sp = ffh.SearchParams(nprobe=8)
    A, _ = index._plan(q, sp.over(index.params))
    index.search(q, 3, params=sp)
    assert index.last_search_stats.candidates == pytest.approx(index._engine.scanned_per_query(A).mean())


def test_memory_bytes_counts_the_centroids(built):
    index = built[0]
    cent = index._cent
    assert cent.rows.dtype == np.uint16  # bfloat16 bits: 2 d bytes per list
    assert index.memory_bytes() >= (index._engine.nbytes() + index._map.nbytes + cent.rows.nbytes
                                    + cent.counts.nbytes)


def test_search_without_numba_falls_back_to_the_reference(built, monkeypatch):
    index, _, q = built
    _, I1 = index.search(q[:30], 3, params=ffh.SearchParams(planner="fused"))
    monkeypatch.setattr(planner_mod, "_KERNELS", False)
    _, I0 = index.search(q[:30], 3, params=ffh.SearchParams(planner="fused"))
    assert np.mean(np.all(I1 == I0, axis=1)) >= 0.96


def test_wide_codes_use_the_sorted_keys():
    """K above the dense table's 20 bits: the kernel binary-searches the codes; probing every list
    is still exact search."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3000, 32)).astype(np.float32)
    index = ffh.FlowHashIndex(32, K=22, config=ffh.QuantizerConfig(steps=0, verbose=False))
    index.train(x)
    index.add(x)
    assert len(index._map.tables()[0]) == 0
    q = rng.standard_normal((20, 32)).astype(np.float32)
    sp = ffh.SearchParams(nprobe=16, max_probe_bits=12, planner="fused")
    _, I1 = index.search(q, 3, params=sp)
    _, I0 = index.search(q, 3, params=ffh.SearchParams(nprobe=16, max_probe_bits=12, planner="reference"))
    np.testing.assert_array_equal(I1, I0)


def test_shortlist_at_least_the_proposals_is_exact_ranking(built):
    index, _, q = built
    _, I = index.search(q, 3, params=ffh.SearchParams(nprobe=16))
    _, Is = index.search(q, 3, params=ffh.SearchParams(nprobe=16, shortlist=10**6))
    np.testing.assert_array_equal(I, Is)
    _, Ish = index.search(q, 3, params=ffh.SearchParams(nprobe=16, shortlist=32))  # the estimate: close
    assert np.mean(Ish[:, 0] == I[:, 0]) >= 0.8


def test_bad_planner_settings_are_refused():
    with pytest.raises(ValueError, match="planner"):
        ffh.SearchParams(planner="fast")
    with pytest.raises(ValueError, match="shortlist"):
        ffh.SearchParams(shortlist=0)


def test_auto_planner_loads_numba_only_for_large_calls(monkeypatch):
    """planner="auto" (the default): small calls in a process without numba use the reference planner,
    so a short CLI query never pays numba's import; large calls, or any call once numba is loaded, go
    fused."""
    assert ffh.FlowHashIndex(8, K=4).params.planner == "auto"
    monkeypatch.setattr(planner_mod, "_KERNELS", None)  # as in a new process
    assert planner_mod.choose_planner("auto", planner_mod.AUTO_FUSED_MIN_ROWS - 1) == "reference"
    assert planner_mod.choose_planner("reference", 10**6) == "reference"
    assert planner_mod._KERNELS is None  # nothing imported so far
    assert planner_mod.choose_planner("auto", planner_mod.AUTO_FUSED_MIN_ROWS) == "fused"
    assert planner_mod.choose_planner("auto", 1) == "fused"  # numba is loaded now
    monkeypatch.setattr(planner_mod, "_KERNELS", False)  # numba missing
    assert planner_mod.choose_planner("fused", 10**6) == "reference"


def test_a_small_search_in_a_new_process_does_not_import_numba(tmp_path):
    import subprocess
    import sys

    code = ("import sys, faiss, numpy as np, faiss_flowhash as ffh\n"
            "x = np.random.default_rng(0).standard_normal((2000, 16)).astype(np.float32)\n"
            "index = ffh.FlowHashIndex(16, K=6, metric=faiss.METRIC_L2,\n"
            "                          config=ffh.QuantizerConfig(steps=20, verbose=False))\n"
            "index.verbose = False\n"
            "index.train(x); index.add(x)\n"
            "D, I = index.search(x[:21], 3)\n"
            "assert (I[:, 0] == np.arange(21)).mean() > 0.9, I[:, 0]\n"
            "print('numba' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300, check=True)
    assert out.stdout.strip().splitlines()[-1] == "False", out.stdout + out.stderr


def test_query_batches_run_the_numpy_flow_in_blocks_with_the_same_latents(built):
    """Between FLOW_BLOCK_ROWS and FLOW_BLOCKED_MAX rows the numpy flow runs in row blocks (each matmul
    under OpenBLAS's threading threshold): the latents equal one call's, to float; above, one call."""
    from faiss_flowhash.index import quantizer as quantizer_mod

    index, _, q = built
    w = index.quantizer._flow_weights()
    rng = np.random.default_rng(3)
    y = rng.standard_normal((quantizer_mod.FLOW_BLOCK_ROWS * 3 + 5, index.K)).astype(np.float32)
    blocked, whole = quantizer_mod._flow_numpy(w, y), quantizer_mod._flow_rows(w, y)
    np.testing.assert_allclose(blocked, whole, rtol=1e-5, atol=1e-6)
    assert blocked.shape == whole.shape and blocked.dtype == np.float32
    big = np.zeros((quantizer_mod.FLOW_BLOCKED_MAX + 1, index.K), np.float32)
    np.testing.assert_array_equal(quantizer_mod._flow_numpy(w, big), quantizer_mod._flow_rows(w, big))


def test_bfloat16_centroids_rank_as_float32_means_do(built):
    """The fused plan over the stored (bfloat16) centroids names the lists that ranking by the exact
    float32 means names, up to lists whose distances tie within bfloat16's rounding (2^-8 relative)."""
    index, _, q = built
    L = index._map.n_lists
    exact = np.zeros((L, D), np.float32)
    for l in range(L):
        _, v = index._engine.list_entries(l)
        if len(v):
            exact[l] = v.mean(0)
    xs = index._scaled(q)
    z = index.quantizer.latent(index.quantizer.project(xs))
    for nprobe in (8, 32):
        sp = ffh.SearchParams(nprobe=nprobe, planner="fused").over(index.params)
        A, _ = index._plan(q, sp)
        A32, _ = planner_mod.reference_plan(z, xs, probe_bits=sp.max_probe_bits, keep=sp.max_probes, nprobe=nprobe,
                                            bucket_map=index._map, centroids=exact)
        A32 = A32[:, : A.shape[1]]
        assert np.mean([set(a[a >= 0]) == set(b[b >= 0]) for a, b in zip(A, A32)]) >= 0.8
        _rows_agree(A, A32, xs, exact, rtol=0.02)
