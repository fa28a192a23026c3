exec(open("bench/scratch/qstudy2.py").read().split("t=time.time()\nmean_all")[0])
from faiss_flowhash.index.partition import median_split
W32 = evec[:, np.argsort(ev)[::-1][:32]].astype(np.float32)
y32 = (x - mean) @ W32
mean_all = N / 2**16
for cf in (2, 4):
    t = time.time(); vls = median_split(y32, vl, int(round(cf * mean_all))); tt = time.time() - t
    # sub-lists of bucket b: all labels whose rows have vl == b
    pairs = np.unique(np.stack([vl, vls], 1), axis=0)
    starts = np.searchsorted(pairs[:, 0], np.arange(vl.max() + 2))
    sub = {b: pairs[starts[b]:starts[b+1], 1] for b in range(vl.max() + 1)}
    Le = [np.concatenate([sub[b] for b in Li]).astype(np.int64) for Li in L4]
    sz = np.bincount(vls); print(f"median cap {cf}x: lists {len(sz)} max/mean(2^K) {sz.max()/mean_all:.1f} split {tt:.1f}s")
    curve(reorder(Le, vls, 2048, x, q), vls, f"median{cf} full-d L2 P2048")
    curve(reorder(Le, vls, 10**9, x, q), vls, f"median{cf} full-d L2 Pall4096")
