"""Numba kernels of the engine's CPU scan (:mod:`.engine`): exact scores of the probed lists' vectors.

The lists stay where faiss keeps them (``ArrayInvertedLists``, owned or views into a mapped lists file);
the kernels read them through a table of raw addresses (one for the codes, one for the ids of each
list) that the engine refreshes whenever a list may have moved. Two scans, same results:

- **by row** (:func:`scan_rows`): each query walks its lists in probe order and keeps its k best in a
  sorted buffer, as faiss's ``search_preassigned`` does, with a SIMD dot product (fastmath).
- **by list** (:func:`group_pairs`, :func:`scan_grouped`, :func:`select_topk`), for batches: the
  (query, list) pairs are grouped by list, so each probed list is read from memory once for all the
  queries of the batch that probe it (FlowHash's lists are small and many: a query reads ~100 lists
  of ~5 vectors, scattered, and reading them is what costs); every score lands at the query's own
  place in a flat buffer, in probe order, and each query then keeps its k best.

The budget (faiss's ``max_codes``) is faiss's rule: a query scans lists in probe order until it has
scanned that many entries, the last list in part. Scores are kept as "smaller is better" (squared L2,
or the negated inner product); ties keep the entry scanned first.

Imported lazily, like :mod:`._jit`: ``import faiss_flowhash`` and short CLI calls never load numba.
"""

import numpy as np
from llvmlite import ir
from numba import carray, njit, types
from numba.extending import intrinsic

__all__ = ["row_counts", "group_pairs", "scan_grouped", "select_topk", "scan_rows"]

_NO_BUDGET = np.int64(1) << np.int64(62)


@intrinsic
def _f32_at(typingctx, addr):
    """A float32 pointer from an integer address (an LLVM inttoptr)."""
    sig = types.CPointer(types.float32)(types.int64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.PointerType(ir.FloatType()))

    return sig, codegen


@intrinsic
def _i64_at(typingctx, addr):
    """An int64 pointer from an integer address (an LLVM inttoptr)."""
    sig = types.CPointer(types.int64)(types.int64)

    def codegen(context, builder, signature, args):
        return builder.inttoptr(args[0], ir.PointerType(ir.IntType(64)))

    return sig, codegen


@njit(cache=True, nogil=True, fastmath=True, inline="always")
def _score(q, x, ip):
    """Smaller is better: squared L2, or minus the inner product."""
    s = np.float32(0.0)
    if ip:
        for t in range(q.shape[0]):
            s += q[t] * x[t]
        return -s
    for t in range(q.shape[0]):
        e = q[t] - x[t]
        s += e * e
    return s


@njit(cache=True, nogil=True)
def _walk(row, sizes, max_codes, ls, cs):
    """faiss's budget rule for one query's lists ``row`` (P,) in probe order (-1 ends them): the lists
    it scans into ls, how many entries of each into cs (the last one in part, empty lists skipped);
    returns how many lists. max_codes 0: no budget."""
    left = max_codes if max_codes > 0 else _NO_BUDGET
    w = 0
    for j in range(row.shape[0]):
        l = row[j]
        if l < 0 or left <= 0:
            break
        c = min(sizes[l], left)
        if c > 0:
            ls[w] = l
            cs[w] = c
            w += 1
            left -= c
    return w


@njit(cache=True, nogil=True)
def row_counts(A, sizes, max_codes):
    """Entries each query of A (n, P) scans (n,) int64, under faiss's budget rule (0: no budget)."""
    n, P = A.shape
    out = np.zeros(n, np.int64)
    ls = np.empty(P, np.int64)
    cs = np.empty(P, np.int64)
    for i in range(n):
        w = _walk(A[i], sizes, max_codes, ls, cs)
        out[i] = cs[:w].sum()
    return out


@njit(cache=True, nogil=True)
def group_pairs(A, sizes, max_codes):
    """The (query, list) pairs of A (n, P) grouped by list.

    Returns (start (L + 1,) pair offsets per list, pq query of each pair, pc entries it scans, po where
    its scores go in the flat buffer, T (n + 1,) each query's span of that buffer)."""
    n, P = A.shape
    L = sizes.shape[0]
    start = np.zeros(L + 1, np.int64)
    T = np.zeros(n + 1, np.int64)
    ls = np.empty(P, np.int64)
    cs = np.empty(P, np.int64)
    for i in range(n):
        w = _walk(A[i], sizes, max_codes, ls, cs)
        t = 0
        for e in range(w):
            start[ls[e] + 1] += 1
            t += cs[e]
        T[i + 1] = T[i] + t
    for l in range(L):
        start[l + 1] += start[l]
    npairs = start[L]
    pos = start[:L].copy()
    pq = np.empty(npairs, np.int64)
    pc = np.empty(npairs, np.int64)
    po = np.empty(npairs, np.int64)
    for i in range(n):  # the same walk again (cheap), rather than (n, P) buffers
        w = _walk(A[i], sizes, max_codes, ls, cs)
        o = T[i]
        for e in range(w):
            p = pos[ls[e]]
            pos[ls[e]] += 1
            pq[p], pc[p], po[p] = i, cs[e], o
            o += cs[e]
    return start, pq, pc, po, T


@njit(cache=True, nogil=True, fastmath=True)
def scan_grouped(Q, l0, l1, start, pq, pc, po, caddr, iaddr, sizes, ip, dist, idout):
    """Score lists l0 .. l1 - 1 against the queries that probe them: dist / idout at each pair's place."""
    d = Q.shape[1]
    for l in range(l0, l1):
        a, b = start[l], start[l + 1]
        if a == b:
            continue
        m = sizes[l]
        X = carray(_f32_at(caddr[l]), (m, d))
        ids = carray(_i64_at(iaddr[l]), (m,))
        for p in range(a, b):
            q = Q[pq[p]]
            o = po[p]
            for v in range(pc[p]):
                dist[o + v] = _score(q, X[v], ip)
                idout[o + v] = ids[v]


@njit(cache=True, nogil=True)
def select_topk(i0, i1, T, dist, idout, D, I):
    """Rows i0 .. i1 - 1: the k best of each query's span of the flat buffer into D / I (n, k),
    best first (inf / -1 where fewer)."""
    k = D.shape[1]
    for i in range(i0, i1):
        bd = D[i]
        bi = I[i]
        for j in range(k):
            bd[j] = np.inf
            bi[j] = -1
        for e in range(T[i], T[i + 1]):
            s = dist[e]
            # into the sorted buffer; an equal score stays behind the ones before it. Written out here and
            # in scan_rows: as a shared njit helper (even inline="always") the selection took 11.2 instead
            # of 0.36 us a query (1,024 x 96 plans on fingerprints)
            if s < bd[k - 1]:
                j = k - 1
                while j > 0 and bd[j - 1] > s:
                    bd[j] = bd[j - 1]
                    bi[j] = bi[j - 1]
                    j -= 1
                bd[j] = s
                bi[j] = idout[e]


@njit(cache=True, nogil=True, fastmath=True)
def scan_rows(Q, A, caddr, iaddr, sizes, max_codes, ip, D, I):
    """Each query of Q (n, d) scans its lists A (n, P) in probe order; its k best into D / I (n, k)
    (inf / -1 where fewer). Returns the entries scanned."""
    n, P = A.shape
    d = Q.shape[1]
    k = D.shape[1]
    tot = 0
    ls = np.empty(P, np.int64)
    cs = np.empty(P, np.int64)
    for i in range(n):
        q = Q[i]
        bd = D[i]
        bi = I[i]
        for j in range(k):
            bd[j] = np.inf
            bi[j] = -1
        w = _walk(A[i], sizes, max_codes, ls, cs)
        for e in range(w):
            l, c = ls[e], cs[e]
            X = carray(_f32_at(caddr[l]), (c, d))
            ids = carray(_i64_at(iaddr[l]), (c,))
            for v in range(c):
                s = _score(q, X[v], ip)
                if s < bd[k - 1]:  # as in select_topk
                    w2 = k - 1
                    while w2 > 0 and bd[w2 - 1] > s:
                        bd[w2] = bd[w2 - 1]
                        bi[w2] = bi[w2 - 1]
                        w2 -= 1
                    bd[w2] = s
                    bi[w2] = ids[v]
            tot += c
    return tot
