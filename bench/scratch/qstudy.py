"""Scratch study: which bucketing/probing beats sign-of-PCA at equal eval (recall@1 vs exact)."""
import sys, time, os
sys.path.insert(0, "/work/wt/lead"); sys.path.insert(0, "/work/wt/lead/bench")
import numpy as np, faiss
from datasets import make_synthetic, exact_top1
from faiss_flowhash.index.codes import pack_codes, probe_codes
faiss.omp_set_num_threads(1)
N = int(os.environ.get("N", 200_000)); K = 16
ds = make_synthetic(N, 2000, seed=int(os.environ.get("SEED", 0)))
gt = exact_top1(ds)
x, q = ds.x, ds.q
mean = ds.x_train.mean(0)
C = np.cov((ds.x_train - mean).T)
ev, evec = np.linalg.eigh(C); W = evec[:, np.argsort(ev)[::-1][:K]].astype(np.float32)
BUD = np.array([0.05, 0.1, 0.2, 0.5, 1, 2, 4]) / 100 * N

def curve(qlists, vlist, name):
    """qlists: list per query of ordered list ids (int arrays); vlist: (N,) list id of each vector
    (or (N,2) with spill, -1 none). recall/eval at each budget (faiss max_codes semantics)."""
    vl = vlist if vlist.ndim == 2 else vlist[:, None]
    nl = int(vl.max()) + 1
    sizes = np.bincount(vl[vl >= 0], minlength=nl)
    rec = np.zeros(len(BUD)); ev = np.zeros(len(BUD))
    for i, L in enumerate(qlists):
        s = sizes[L]; cs = np.cumsum(s); prev = cs - s
        tgt = vl[gt[i]]
        hitpos = np.flatnonzero(np.isin(L, tgt[tgt >= 0]))
        first = prev[hitpos[0]] if len(hitpos) else np.inf
        for b, B in enumerate(BUD):
            rec[b] += first < B
            j = np.searchsorted(cs, B)  # first j with cs[j] >= B
            ev[b] += cs[min(j, len(cs) - 1)]
    rec /= len(qlists); ev = ev / len(qlists) / N * 100
    print(f"{name:40s} " + " ".join(f"{e:5.2f}%:{r:.3f}" for e, r in zip(ev, rec)), flush=True)
    return ev, rec

def interp(ev, rec, at=(0.1, 0.5, 2.0)):
    return [float(np.interp(a, ev, rec)) for a in at]

def sign_lists(zb, zq, max_probes=4096, max_bits=14):
    codes = pack_codes(zb)
    uniq, vl = np.unique(codes, return_inverse=True)
    qi, qc, _ = probe_codes(zq, radius=np.inf, max_bits=max_bits, max_probes=max_probes)
    pos = np.searchsorted(uniq, qc); pos = np.minimum(pos, len(uniq) - 1)
    ok = uniq[pos] == qc
    out = [[] for _ in range(len(zq))]
    bounds = np.searchsorted(qi, np.arange(len(zq) + 1))
    for i in range(len(zq)):
        sl = slice(bounds[i], bounds[i + 1]); out[i] = pos[sl][ok[sl]]
    return out, vl, uniq

t = time.time()
yb = (x - mean) @ W; yq = (q - mean) @ W
L, vl, uniq = sign_lists(yb, yq)
sz = np.bincount(vl); print("pca-sign buckets", len(uniq), "max/mean(all 2^K)", sz.max() / (N / 2**K), "max/mean nonempty", sz.max()/sz.mean())
res = {}
res["pca-sign"] = curve(L, vl, "pca-sign raw |y|")
print("t", time.time() - t)

# --- split oversized buckets by k-means sub-lists, sub-lists ordered by centroid distance
def split_lists(L, vl, cap_factor=8, target=None):
    sizes = np.bincount(vl)
    mean_all = N / 2**K
    cap = cap_factor * max(mean_all, 1)
    sub_of = {}  # bucket -> (first new list id, centroids)
    newvl = vl.copy(); nxt = len(sizes)
    for b in np.flatnonzero(sizes > cap):
        rows = np.flatnonzero(vl == b)
        k = int(np.ceil(len(rows) / cap))
        km = faiss.Kmeans(x.shape[1], k, niter=10, seed=1, verbose=False); km.train(x[rows])
        _, a = km.index.search(x[rows], 1)
        ids = np.arange(nxt, nxt + k); nxt += k
        newvl[rows] = ids[a[:, 0]]
        sub_of[b] = (ids, km.centroids)
    out = []
    for i, Li in enumerate(L):
        acc = []
        for b in Li:
            if b in sub_of:
                ids, cen = sub_of[b]
                acc.extend(ids[np.argsort(-(cen @ q[i]))])
            else:
                acc.append(b)
        out.append(np.array(acc, np.int64))
    return out, newvl
for cf in (8, 3):
    t = time.time(); Ls, vls = split_lists(L, vl, cf)
    res[f"split{cf}"] = curve(Ls, vls, f"pca-sign + split >{cf}x mean (kmeans)"); print("t", time.time() - t)

# --- reorder the first P flip-cost probes by centroid IP
def centroid_reorder(L, vl, P=256, mix=None):
    nl = vl.max() + 1
    cen = np.zeros((nl, x.shape[1]), np.float64); np.add.at(cen, vl, x); cnt = np.bincount(vl, minlength=nl)
    cen = (cen / np.maximum(cnt, 1)[:, None]).astype(np.float32)
    cn = cen / np.maximum(np.linalg.norm(cen, axis=1, keepdims=True), 1e-9)
    out = []
    for i, Li in enumerate(L):
        head, tail = Li[:P], Li[P:]
        s = cn[head] @ q[i]
        out.append(np.concatenate([head[np.argsort(-s, kind="stable")], tail]))
    return out
for P in (64, 256, 1024):
    t = time.time(); res[f"reorder{P}"] = curve(centroid_reorder(L, vl, P), vl, f"pca-sign + centroid reorder top{P}"); print("t", time.time() - t)

print("--- combos")
def reorder_lists(L, vl, P, unnorm=False):
    nl = vl.max() + 1
    cen = np.zeros((nl, x.shape[1]), np.float64); np.add.at(cen, vl, x); cnt = np.bincount(vl, minlength=nl)
    cen = (cen / np.maximum(cnt, 1)[:, None]).astype(np.float32)
    cn = cen if unnorm else cen / np.maximum(np.linalg.norm(cen, axis=1, keepdims=True), 1e-9)
    out = []
    for i, Li in enumerate(L):
        head, tail = Li[:P], Li[P:]
        s = cn[head] @ q[i]
        out.append(np.concatenate([head[np.argsort(-s, kind="stable")], tail]))
    return out
curve(reorder_lists(L, vl, 1024, True), vl, "reorder1024 unnormalised centroid")
L4, vl4, _ = sign_lists(yb, yq, max_probes=4096)
curve(reorder_lists(L4, vl4, 4096), vl4, "reorder4096")
for cf in (8, 2):
    Ls, vls = split_lists(L, vl, cf)
    curve(reorder_lists(Ls, vls, 1024), vls, f"split{cf} + reorder1024")
