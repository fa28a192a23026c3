exec(open("bench/scratch/qstudy.py").read().split("t = time.time()\nyb")[0])
yb = (x - mean) @ W; yq = (q - mean) @ W
L4, vl, uniq = sign_lists(yb, yq, max_probes=4096)
def split_vl(vl, cap, space):
    sizes = np.bincount(vl); newvl = vl.copy(); nxt = len(sizes)
    order = np.argsort(vl, kind="stable"); starts = np.concatenate([[0], np.cumsum(sizes)])
    sub = {}
    for b in np.flatnonzero(sizes > cap):
        rows = order[starts[b]:starts[b+1]]
        k = int(np.ceil(len(rows) / cap))
        km = faiss.Kmeans(space.shape[1], k, niter=8, seed=1, verbose=False, min_points_per_centroid=1); km.train(space[rows])
        _, a = km.index.search(space[rows], 1)
        ids = np.arange(nxt, nxt + k); nxt += k
        newvl[rows] = ids[a[:, 0]]; sub[b] = ids
    return newvl, sub
def expand(L, sub):
    return [np.concatenate([sub.get(b, [b]) for b in Li]).astype(np.int64) for Li in L]
def reorder(L, vl, P, space, qspace):
    nl = vl.max() + 1
    cen = np.zeros((nl, space.shape[1])); np.add.at(cen, vl, space); cnt = np.bincount(vl, minlength=nl)
    cen = (cen / np.maximum(cnt, 1)[:, None]).astype(np.float32)
    out = []
    for i, Li in enumerate(L):
        head, tail = Li[:P], Li[P:]
        s = ((cen[head] - qspace[i]) ** 2).sum(1)   # L2 to centroid
        out.append(np.concatenate([head[np.argsort(s, kind="stable")], tail]))
    return out
t=time.time()
mean_all = N / 2**16
for cf in (2, 4, 8):
    vls, sub = split_vl(vl, cf * mean_all, x); Le = expand(L4, sub)
    sz = np.bincount(vls); print(f"cap {cf}x: lists {len(sz)} max/mean(2^K) {sz.max()/mean_all:.1f}  t {time.time()-t:.1f}")
    for P in (512, 2048):
        curve(reorder(Le, vls, P, x, q), vls, f"split{cf} full-d L2 P{P}")
        curve(reorder(Le, vls, P, yb, yq), vls, f"split{cf} K-d L2 P{P}")
