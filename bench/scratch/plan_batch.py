"""Two cheaper first stages for the centroid planner, against the fused planner, on real fingerprints:

- **template flips**: instead of each query's exact cheapest flips (a merge per bit, ~25 us for 1,024),
  one fixed list of flip patterns in *rank* space (flip the r-th least certain bit), the cheapest under
  the mean sorted |z| of the training set, mapped to each query's bits through its own |z| order;
- **grouped ranking**: a batch's (query, proposed bucket) pairs grouped by bucket, so each centroid row
  is read once per batch for every query that proposes it (the planner reads ~1,500 scattered rows per
  query, ~33 ns each).

Every variant's lists are scanned by the same engine (numba scan); R@1 against exact search.

    OMP_WAIT_POLICY=PASSIVE PYTHONPATH=$PWD python -m bench.scratch.plan_batch --data bench/data/fingerprint_ann
"""
import argparse
import os

import faiss
import numpy as np
from numba import njit

import faiss_flowhash as ffh
from bench.scratch.fp_setup import best, build, load, plan_inputs
from faiss_flowhash.index import _jit, threads
from faiss_flowhash.index.params import DEFAULT


@njit(cache=True, nogil=True)
def template_masks(mean_sorted, b, m):
    """Flip patterns in rank space (bit r = the r-th least certain bit), cheapest m under mean costs."""
    z = mean_sorted[:b].astype(np.float32)
    f, _ = _jit.cheapest_flips(z, b, m)  # z is already sorted: bit r of a mask is rank r
    return f


@njit(cache=True, nogil=True)
def _query_flips(z, b, tmpl, lut):
    """The template mapped to this query's bits: rank r -> the bit of its r-th smallest |z|."""
    order = _jit._argsort_small(np.abs(z))
    nb = (b + 7) // 8
    for t in range(nb):  # lut[t, v] = bits of the ranks 8t .. 8t + 7 set in v
        for v in range(256):
            acc = np.uint64(0)
            for r in range(8):
                rr = 8 * t + r
                if rr < b and (v >> r) & 1:
                    acc |= np.uint64(1) << np.uint64(order[rr])
            lut[t, v] = acc
    m = tmpl.shape[0]
    out = np.empty(m, np.uint64)
    for e in range(m):
        x = tmpl[e]
        acc = np.uint64(0)
        for t in range(nb):
            acc |= lut[t, np.int64((x >> np.uint64(8 * t)) & np.uint64(255))]
        out[e] = acc
    return out


@njit(cache=True, nogil=True)
def _superset_flips(z, b, tmpl, m, lut, lutc):
    """The m cheapest flips among the template's patterns (a superset: the cheapest under mean costs),
    each pattern's exact cost for this query from byte tables (sum of its ranks' |z|)."""
    order = _jit._argsort_small(np.abs(z))
    a = np.abs(z)
    nb = (b + 7) // 8
    for t in range(nb):
        for v in range(256):
            acc = np.uint64(0)
            c = np.float32(0)
            for r in range(8):
                rr = 8 * t + r
                if rr < b and (v >> r) & 1:
                    acc |= np.uint64(1) << np.uint64(order[rr])
                    c += a[order[rr]]
            lut[t, v] = acc
            lutc[t, v] = c
    M = tmpl.shape[0]
    cost = np.empty(M, np.float32)
    for e in range(M):
        x = tmpl[e]
        c = np.float32(0)
        for t in range(nb):
            c += lutc[t, np.int64((x >> np.uint64(8 * t)) & np.uint64(255))]
        cost[e] = c
    mm = min(m, M)
    thr = _jit._kth(cost.copy(), mm - 1)
    out = np.empty(mm, np.uint64)
    w = 0
    for e in range(M):
        if cost[e] < thr:
            x = tmpl[e]
            acc = np.uint64(0)
            for t in range(nb):
                acc |= lut[t, np.int64((x >> np.uint64(8 * t)) & np.uint64(255))]
            out[w] = acc
            w += 1
    for e in range(M):
        if w == mm:
            break
        if cost[e] == thr:
            x = tmpl[e]
            acc = np.uint64(0)
            for t in range(nb):
                acc |= lut[t, np.int64((x >> np.uint64(8 * t)) & np.uint64(255))]
            out[w] = acc
            w += 1
    return out


@njit(cache=True, nogil=True)
def _select(dist, lid, cnt, nprobe, lists, out_row):
    kk = min(nprobe, cnt, out_row.shape[0])
    if kk == 0:
        return 0
    if cnt > kk:
        thr = _jit._kth(dist[:cnt].copy(), kk - 1)
        sd = np.empty(kk, np.float32)
        sl = np.empty(kk, np.int64)
        w = 0
        for t in range(cnt):
            if dist[t] < thr:
                sd[w], sl[w] = dist[t], lid[t]
                w += 1
        for t in range(cnt):
            if w == kk:
                break
            if dist[t] == thr:
                sd[w], sl[w] = dist[t], lid[t]
                w += 1
        dist, lid = sd, sl
    o = _jit._argsort(dist[:kk])
    for t in range(kk):
        out_row[t] = lists[lid[o[t]]]
    return kk


@njit(cache=True, nogil=True)
def plan_rows(Z, Q, b, keep, nprobe, dense, offsets, lists, cent, tmpl, use_tmpl, out):
    """The fused plan per query (exact flips or the template), dense table lookups only."""
    n, K = Z.shape
    lut = np.empty(((b + 7) // 8, 256), np.uint64)
    lutc = np.empty(((b + 7) // 8, 256), np.float32)
    for i in range(n):
        z = Z[i]
        base = np.uint64(0)
        for k in range(K):
            if z[k] > 0:
                base |= np.uint64(1) << np.uint64(k)
        if use_tmpl == 1:
            flips = _query_flips(z, b, tmpl, lut)
        elif use_tmpl == 2:
            flips = _superset_flips(z, b, tmpl, keep, lut, lutc)
        else:
            flips, _ = _jit.cheapest_flips(z, b, keep)
        m = flips.shape[0]
        total = 0
        grp = np.empty(m, np.int64)
        for e in range(m):
            g = np.int64(dense[np.int64(base ^ flips[e])])
            grp[e] = g
            if g >= 0:
                total += offsets[g + 1] - offsets[g]
        dist = np.empty(total, np.float32)
        lid = np.empty(total, np.int64)
        cnt = 0
        for e in range(m):
            g = grp[e]
            if g < 0:
                continue
            for t in range(offsets[g], offsets[g + 1]):
                dist[cnt] = _jit.bf16_l2(Q[i], cent[t])
                lid[cnt] = t
                cnt += 1
        _select(dist, lid, cnt, nprobe, lists, out[i])


@njit(cache=True, nogil=True)
def propose(Z, b, keep, dense, offsets, tmpl, use_tmpl, G, S, T):  # use_tmpl: 0 exact, 1 template
    """Phase 1 of the grouped plan: per query the found bucket rows G[i, :] (-1 end), their first slot
    S[i, :] in the query's distance buffer, and the buffer's length T[i]."""
    n, K = Z.shape
    lut = np.empty(((b + 7) // 8, 256), np.uint64)
    for i in range(n):
        z = Z[i]
        base = np.uint64(0)
        for k in range(K):
            if z[k] > 0:
                base |= np.uint64(1) << np.uint64(k)
        if use_tmpl:
            flips = _query_flips(z, b, tmpl, lut)
        else:
            flips, _ = _jit.cheapest_flips(z, b, keep)
        w = 0
        tot = 0
        for e in range(flips.shape[0]):
            g = np.int64(dense[np.int64(base ^ flips[e])])
            if g >= 0:
                G[i, w] = g
                S[i, w] = tot
                tot += offsets[g + 1] - offsets[g]
                w += 1
        if w < G.shape[1]:
            G[i, w] = -1
        T[i] = tot


@njit(cache=True, nogil=True)
def group(G, ngroups):
    n, m = G.shape
    start = np.zeros(ngroups + 1, np.int64)
    for i in range(n):
        for e in range(m):
            g = G[i, e]
            if g < 0:
                break
            start[g + 1] += 1
    for g in range(ngroups):
        start[g + 1] += start[g]
    pos = start[:ngroups].copy()
    pi = np.empty(start[ngroups], np.int64)
    pe = np.empty(start[ngroups], np.int64)
    for i in range(n):
        for e in range(m):
            g = G[i, e]
            if g < 0:
                break
            p = pos[g]
            pos[g] += 1
            pi[p], pe[p] = i, e
    return start, pi, pe


@njit(cache=True, nogil=True)
def rank_groups(g0, g1, start, pi, pe, S, base_off, Q, offsets, cent, dist, lid):
    for g in range(g0, g1):
        for p in range(start[g], start[g + 1]):
            i = pi[p]
            o = base_off[i] + S[i, pe[p]]
            q = Q[i]
            for t in range(offsets[g], offsets[g + 1]):
                dist[o] = _jit.bf16_l2(q, cent[t])
                lid[o] = t
                o += 1


@njit(cache=True, nogil=True)
def select_rows(i0, i1, base_off, T, dist, lid, nprobe, lists, out):
    for i in range(i0, i1):
        a = base_off[i]
        _select(dist[a:a + T[i]], lid[a:a + T[i]], T[i], nprobe, lists, out[i])


def grouped_plan(Z, Q, b, keep, nprobe, dense, offsets, lists, cent, tmpl, use_tmpl, n_thr):
    n = len(Z)
    m = len(tmpl) if use_tmpl else min(keep, 1 << b)
    G = np.empty((n, m), np.int64)
    S = np.empty((n, m), np.int64)
    T = np.empty(n, np.int64)
    bl = threads.blocks(n, n_thr)
    threads.run(lambda s: propose(Z[s], b, keep, dense, offsets, tmpl, use_tmpl, G[s], S[s], T[s]), bl)
    ngroups = len(offsets) - 1
    start, pi, pe = group(G, ngroups)
    base_off = np.zeros(n, np.int64)
    base_off[1:] = np.cumsum(T)[:-1]
    dist = np.empty(int(T.sum()), np.float32)
    lid = np.empty(int(T.sum()), np.int64)
    edges = np.searchsorted(start, np.linspace(0, start[-1], n_thr + 1)).clip(0, ngroups)
    edges[0], edges[-1] = 0, ngroups
    threads.run(lambda t: rank_groups(int(edges[t]), int(edges[t + 1]), start, pi, pe, S, base_off, Q, offsets, cent,
                                      dist, lid), list(range(n_thr)))
    out = np.full((n, nprobe), -1, np.int64)
    threads.run(lambda s: select_rows(s.start, s.stop, base_off, T, dist, lid, nprobe, lists, out), bl)
    return out



def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="bench/data/fingerprint_ann")
    ap.add_argument("--K", type=int, default=16)
    ap.add_argument("--settings", default="1024:96,512:128,2048:64,4096:48")
    ap.add_argument("--reps", type=int, default=5)
    ap.add_argument("--grouped", action="store_true", help="also the grouped ranking (slower: measured)")
    a = ap.parse_args()
    ds = load(a.data)
    idx = build(ds, a.K)
    xq = np.ascontiguousarray(ds.q, np.float32)
    n = len(xq)
    xs, z, (dense, keys, offsets, lists), cent = plan_inputs(idx, ds)
    zt = idx.quantizer.latent(idx.quantizer.project(idx._scaled(ds.x_train[:20000])))
    mean_sorted = np.sort(np.abs(zt), axis=1).mean(0).astype(np.float32)
    flat = faiss.IndexFlatIP(ds.x.shape[1]) if idx._engine.metric == faiss.METRIC_INNER_PRODUCT else faiss.IndexFlatL2(ds.x.shape[1])
    flat.add(ds.x)
    exact = flat.search(xq, 1)[1][:, 0]
    print(f"K={idx.K} lists={len(lists)} mean sorted |z| {np.round(mean_sorted, 2).tolist()}; load {os.getloadavg()[0]:.1f}",
          flush=True)
    b = idx.K

    def r1(A):
        _, I, s = idx._engine.search(xq, A, 1, jit=True)
        return float(np.mean(I[:, 0] == exact)), s / n

    for setting in a.settings.split(","):
        keep, nprobe = (int(v) for v in setting.split(":"))
        tmpl = template_masks(mean_sorted, b, keep)
        sup2 = template_masks(mean_sorted, b, 2 * keep)
        sup4 = template_masks(mean_sorted, b, 4 * keep)
        p = ffh.SearchParams(max_probe_bits=b, max_probes=keep, nprobe=nprobe)
        pm = idx._merged_params(p, DEFAULT, DEFAULT, DEFAULT)
        A0, _ = idx._plan(xq, pm)
        variants = {}
        for nt in (1, 2):
            faiss.omp_set_num_threads(nt)

            def rows(use, tm=tmpl):
                out = np.full((n, nprobe), -1, np.int64)
                threads.run(lambda s: plan_rows(z[s], xs[s], b, keep, nprobe, dense, offsets, lists, cent, tm, use,
                                                out[s]), threads.blocks(n, nt))
                return out

            fns = {"fused (index)": lambda: idx._plan(xq, pm)[0],
                   "rows exact": lambda: rows(0), "rows template": lambda: rows(1),
                   "rows superset x2": lambda: rows(2, sup2), "rows superset x4": lambda: rows(2, sup4)}
            if a.grouped:
                fns.update({"grouped exact": lambda: grouped_plan(z, xs, b, keep, nprobe, dense, offsets, lists, cent, tmpl, False, nt),
                            "grouped template": lambda: grouped_plan(z, xs, b, keep, nprobe, dense, offsets, lists, cent, tmpl, True, nt)})
            for f in fns.values():
                f()
            times = {k: [] for k in fns}
            for _ in range(a.reps):
                for k, f in fns.items():
                    times[k].append(best(f, 1))
            for k, f in fns.items():
                variants.setdefault(k, {})[nt] = 1e6 * min(times[k]) / n
                variants[k]["A"] = f()
        print(f"props {keep} nprobe {nprobe}:", flush=True)
        for k, v in variants.items():
            rr, sc = r1(v["A"])
            same = float(np.mean([set(u[u >= 0]) == set(w[w >= 0]) for u, w in zip(v["A"], A0)]))
            print(f"  {k:18s} us/query 1 thread {v[1]:6.1f}, 2 threads {v[2]:6.1f}; R@1 {rr:.4f} at {sc:.0f} scanned; "
                  f"same lists as the index {same:.3f}; load {os.getloadavg()[0]:.1f}", flush=True)


if __name__ == "__main__":
    main()
