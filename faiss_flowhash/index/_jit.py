"""Numba kernels of the fused probe planner (:mod:`.planner`) and of small-batch flow inference.

Imported lazily (only :mod:`.planner` imports this module, inside a function): ``import numba`` and the
first compile cost seconds (cached on disk with ``cache=True`` after the first process), and neither
``import faiss_flowhash`` nor the CLI should pay them.

Every kernel is pure: arrays in, arrays out, no state.
"""

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.extending import intrinsic

__all__ = ["cheapest_flips", "plan_serial", "count_lists", "flow_forward", "bf16_l2"]


@intrinsic
def _bits_to_f32(typingctx, v):
    """Reinterpret a uint32's bits as a float32 (an LLVM bitcast: free, and it vectorizes)."""
    sig = types.float32(types.uint32)

    def codegen(context, builder, signature, args):
        return builder.bitcast(args[0], ir.FloatType())

    return sig, codegen


@njit(cache=True, nogil=True)
def _argsort_small(a):
    """Stable argsort of a short array (insertion sort; K <= 62 entries). numpy's argsort would cost
    ~10 s of compile time for this."""
    n = a.shape[0]
    idx = np.arange(n)
    for i in range(1, n):
        j = i
        v = idx[i]
        while j > 0 and a[idx[j - 1]] > a[v]:
            idx[j] = idx[j - 1]
            j -= 1
        idx[j] = v
    return idx


@njit(cache=True, nogil=True)
def _argsort(a):
    """Stable argsort (bottom-up merge sort of indices), without numpy's compile cost."""
    n = a.shape[0]
    idx = np.arange(n)
    tmp = np.empty(n, np.int64)
    width = 1
    while width < n:
        for lo in range(0, n, 2 * width):
            mid = min(lo + width, n)
            hi = min(lo + 2 * width, n)
            i, j, w = lo, mid, lo
            while i < mid and j < hi:
                if a[idx[j]] < a[idx[i]]:
                    tmp[w] = idx[j]
                    j += 1
                else:
                    tmp[w] = idx[i]
                    i += 1
                w += 1
            while i < mid:
                tmp[w] = idx[i]
                i += 1
                w += 1
            while j < hi:
                tmp[w] = idx[j]
                j += 1
                w += 1
        idx, tmp = tmp, idx
        width *= 2
    return idx


@njit(cache=True, nogil=True)
def cheapest_flips(z, b, m):
    """The m cheapest flip masks of z's b least certain bits, cheapest first: (flips (L,) uint64,
    costs (L,) float32), L = min(m, 2^b); cost = sum of |z_k| over the flipped bits.

    Exact top-m by merging: with the bits taken in order of |z|, the cheapest m subsets of the first
    j + 1 bits are the m cheapest of (those of the first j) and (those + bit j), two sorted lists, so
    one merge per bit; a bit dearer than the current m-th subset cannot enter, and ends the loop.
    O(b m) instead of the reference's O(2^b) cost matrix and partition; ties keep the subset without
    the newer bit first."""
    K = z.shape[0]
    bb = min(b, K)
    a = np.abs(z)
    order = _argsort_small(a)  # stable, as the reference's argsort
    m = min(m, 1 << bb)
    ca = np.empty(m, np.float32)
    fa = np.empty(m, np.uint64)
    cb = np.empty(m, np.float32)
    fb = np.empty(m, np.uint64)
    ca[0] = 0.0
    fa[0] = 0
    L = 1
    for j in range(bb):
        cj = a[order[j]]
        bj = np.uint64(1) << np.uint64(order[j])
        if L == m and cj >= ca[m - 1]:
            break
        i = 0
        k = 0
        tot = min(2 * L, m)
        for w in range(tot):
            if k >= L or (i < L and ca[i] <= ca[k] + cj):
                cb[w] = ca[i]
                fb[w] = fa[i]
                i += 1
            else:
                cb[w] = ca[k] + cj
                fb[w] = fa[k] | bj
                k += 1
        ca, cb = cb, ca
        fa, fb = fb, fa
        L = tot
    return fa[:L], ca[:L]


@njit(cache=True, nogil=True)
def _kth(x, k):
    """The k-th smallest (0-based) value of x; reorders x (Hoare quickselect, median-of-3 pivot)."""
    lo, hi = 0, x.shape[0] - 1
    while lo < hi:
        mid = (lo + hi) >> 1
        a, b, c = x[lo], x[mid], x[hi]
        piv = max(min(a, b), min(max(a, b), c))
        i, j = lo, hi
        while i <= j:
            while x[i] < piv:
                i += 1
            while x[j] > piv:
                j -= 1
            if i <= j:
                x[i], x[j] = x[j], x[i]
                i += 1
                j -= 1
        if k <= j:
            hi = j
        elif k >= i:
            lo = i
        else:
            return x[k]
    return x[k]


@njit(cache=True, nogil=True, fastmath=True)
def bf16_l2(q, h):
    """Squared L2 distance of a float32 vector q to a centroid stored as bfloat16 bits h (uint16,
    :mod:`.bfloat16`): each coordinate is decoded by a shift and a bitcast in the loop, so half the
    bytes of a float32 row are read and the sum still runs in SIMD lanes (fastmath)."""
    s = np.float32(0.0)
    for u in range(q.shape[0]):
        df = q[u] - _bits_to_f32(np.uint32(h[u]) << np.uint32(16))
        s += df * df
    return s


@njit(cache=True, nogil=True, fastmath=True)
def _l2_sq8(qn, code, s2):
    """Squared L2 estimate from a centroid's 8-bit codes: sum_u s2[u] (qn[u] - code[u])^2, with qn the
    query in code units ((q - vmin) / scale) and s2 = scale^2: a quarter of the float32 row's bytes."""
    s = np.float32(0.0)
    for u in range(qn.shape[0]):
        df = qn[u] - np.float32(code[u])
        s += s2[u] * df * df
    return s


@njit(cache=True, nogil=True)
def _plan_one(z, q, b, keep, nprobe, dense, keys, offsets, lists, cent, qr, cred, cres, short, out_row):
    """Plan one query: write its kept lists (nearest centroid first) into out_row; return how many.

    ``cent`` (L, d) uint16 holds the centroids as bfloat16 bits in the order of ``lists`` (row t =
    centroid of list lists[t]), and ``cred`` their 8-bit codes in the same order; the kernel works on
    rows t and names lists[t] at the end.

    The ``keep`` cheapest flips of the ``b`` least certain bits come from :func:`cheapest_flips`. With
    ``short`` > 0 and more proposed lists than that, the lists are first ranked by an estimate from
    8-bit centroid codes (qr (d,) the query in code units, cred (L, d) uint8 codes, cres (d,) squared
    scales) and only the ``short`` best get the exact distance."""
    K = z.shape[0]
    base = np.uint64(0)
    for k in range(K):
        if z[k] > 0:
            base |= np.uint64(1) << np.uint64(k)
    flips, _ = cheapest_flips(z, b, keep)
    m = flips.shape[0]
    grp = np.empty(m, np.int64)
    total = 0
    dense_ok = dense.shape[0] > 0
    nkeys = keys.shape[0]
    # look the codes up first: the distance buffers get their exact size. The lookup is :func:`_lookup`
    # written out by hand: calling it here (even with inline="always") made a plan ~30 % slower.
    for e in range(m):
        code = base ^ flips[e]
        if dense_ok:
            g = np.int64(dense[np.int64(code)])
        else:
            lo, hi = 0, nkeys
            while lo < hi:
                mid = (lo + hi) >> 1
                if keys[mid] < code:
                    lo = mid + 1
                else:
                    hi = mid
            g = lo if lo < nkeys and keys[lo] == code else -1
        grp[e] = g
        if g >= 0:
            total += offsets[g + 1] - offsets[g]
    dist = np.empty(total, np.float32)
    lid = np.empty(total, np.int64)
    cnt = 0
    approx = short > 0 and total > short
    for e in range(m):
        g = grp[e]
        if g < 0:
            continue
        for t in range(offsets[g], offsets[g + 1]):  # cent is in the order of lists: one contiguous block
            dist[cnt] = _l2_sq8(qr, cred[t], cres) if approx else bf16_l2(q, cent[t])
            lid[cnt] = t
            cnt += 1
    if approx:  # the ``short`` best by the estimate, in proposal order, then their exact distance
        thr = _kth(dist[:cnt].copy(), short - 1)
        sl = np.empty(short, np.int64)
        w = 0
        for t in range(cnt):
            if dist[t] < thr:
                sl[w] = lid[t]
                w += 1
        for t in range(cnt):
            if w == short:
                break
            if dist[t] == thr:
                sl[w] = lid[t]
                w += 1
        cnt = w
        for t in range(cnt):
            lid[t] = sl[t]
            dist[t] = bf16_l2(q, cent[sl[t]])
    kk = min(nprobe, cnt, out_row.shape[0])
    if kk == 0:
        return 0
    if cnt > kk:  # keep the kk nearest: threshold by partition; ties at the threshold in proposal order
        thr = _kth(dist[:cnt].copy(), kk - 1)
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
    o = _argsort(dist[:kk])
    for t in range(kk):
        out_row[t] = lists[lid[o[t]]]
    return kk


@njit(cache=True, nogil=True)
def _lookup(code, dense, keys):
    """Bucket row of a code: the dense table, or a binary search of the sorted keys; -1 if absent."""
    if dense.shape[0] > 0:
        return np.int64(dense[np.int64(code)])
    lo, hi = 0, keys.shape[0]
    while lo < hi:
        mid = (lo + hi) >> 1
        if keys[mid] < code:
            lo = mid + 1
        else:
            hi = mid
    return lo if lo < keys.shape[0] and keys[lo] == code else -1


@njit(cache=True, nogil=True)
def count_lists(Z, b, keep, dense, keys, offsets):
    """Lists each query of Z (n, K) would propose (n,) int64: sizes the output when every proposed list
    is kept (nprobe=None)."""
    n, K = Z.shape
    got = np.zeros(n, np.int64)
    for i in range(n):
        base = np.uint64(0)
        for k in range(K):
            if Z[i, k] > 0:
                base |= np.uint64(1) << np.uint64(k)
        flips, _ = cheapest_flips(Z[i], b, keep)
        for e in range(flips.shape[0]):
            g = _lookup(base ^ flips[e], dense, keys)
            if g >= 0:
                got[i] += offsets[g + 1] - offsets[g]
    return got


@njit(cache=True, nogil=True)
def plan_serial(Z, Q, b, keep, nprobe, dense, keys, offsets, lists, cent, QR, cred, cres, short, out):
    """:func:`_plan_one` over the rows of Z (n, K) and Q (n, d); out (n, P) is -1 filled. Returns the
    lists kept per query (n,) int64. Releases the GIL (nogil): :mod:`.planner` runs row blocks of a
    batch on threads (no numba ``parallel=True``: it would compile a second kernel, ~15 s)."""
    n = Z.shape[0]
    got = np.zeros(n, np.int64)
    for i in range(n):
        got[i] = _plan_one(Z[i], Q[i], b, keep, nprobe, dense, keys, offsets, lists, cent, QR[i], cred, cres, short, out[i])
    return got


@njit(cache=True, nogil=True, fastmath=True)
def flow_forward(Y, loc, scale, perms, ks, bounds, W, woff, wshape, bias, boff, lin_start):
    """RealNVP forward y -> z, the arithmetic of ``quantizer._flow_numpy`` (float32, up to rounding).

    Layer i has permutation perms[i] (K,), split ks[i], soft bound bounds[i] and the linears
    lin_start[i] .. lin_start[i + 1] - 1; linear j is W[woff[j]: ...] reshaped (wshape[j, 0], wshape[j, 1])
    (in, out) with bias bias[boff[j]: boff[j] + wshape[j, 1]]; ReLU between the linears of a layer.
    Rows go in blocks of 16 through each layer (a layer's weights are read once a block), each linear as
    a sum of weight rows over contiguous slices, which vectorizes (fastmath): 12 us for one row and
    ~9 us a row in batches, against 37 us for the earlier per-element indexing (10 layers of 64 x 64)."""
    n, K = Y.shape
    L = perms.shape[0]
    hmax = K
    for j in range(wshape.shape[0]):
        hmax = max(hmax, wshape[j, 1])
    R = 16
    out = np.empty((n, K), np.float32)
    x = np.empty((R, K), np.float32)
    xp = np.empty((R, K), np.float32)
    h = np.empty((R, hmax), np.float32)
    h2 = np.empty((R, hmax), np.float32)
    for r0 in range(0, n, R):
        m = min(R, n - r0)
        for r in range(m):
            for k in range(K):
                x[r, k] = (Y[r0 + r, k] - loc[k]) / scale[k]
        for i in range(L):
            kk = ks[i]
            for r in range(m):
                for k in range(K):
                    xp[r, k] = x[r, perms[i, k]]
                for k in range(kk):
                    h[r, k] = xp[r, k]
            j0, j1 = lin_start[i], lin_start[i + 1]
            width = kk
            for j in range(j0, j1):
                nin, nout = wshape[j, 0], wshape[j, 1]
                wj = W[woff[j]: woff[j] + nin * nout]
                bj = bias[boff[j]: boff[j] + nout]
                for r in range(m):
                    hr = h[r]
                    acc = h2[r]
                    for o in range(nout):
                        acc[o] = bj[o]
                    for u in range(nin):
                        hu = hr[u]
                        wu = wj[u * nout: (u + 1) * nout]
                        for o in range(nout):
                            acc[o] += hu * wu[o]
                    if j < j1 - 1:
                        for o in range(nout):
                            hr[o] = max(acc[o], np.float32(0.0))
                    else:
                        for o in range(nout):
                            hr[o] = acc[o]
                width = nout
            half = width // 2
            bd = np.float32(bounds[i])
            for r in range(m):
                for t in range(K - kk):
                    ls = bd * np.tanh(h[r, half + t] / bd)
                    xp[r, kk + t] = xp[r, kk + t] * np.exp(ls) + h[r, t]
                for k in range(K):  # inverse permutation: x[perm[k]] = xp[k]
                    x[r, perms[i, k]] = xp[r, k]
        for r in range(m):
            for k in range(K):
                out[r0 + r, k] = x[r, k]
    return out
