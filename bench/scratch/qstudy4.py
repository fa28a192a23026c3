exec(open("bench/scratch/qstudy3.py").read().split("for cf in (2, 4):")[0])
W64 = evec[:, np.argsort(ev)[::-1][:64]].astype(np.float32)
cf=2
vls = median_split(y32, vl, int(round(cf * mean_all)))
pairs = np.unique(np.stack([vl, vls], 1), axis=0)
starts = np.searchsorted(pairs[:, 0], np.arange(vl.max() + 2))
sub = {b: pairs[starts[b]:starts[b+1], 1] for b in range(vl.max() + 1)}
Le = [np.concatenate([sub[b] for b in Li]).astype(np.int64) for Li in L4]
for nm, Wr in (("pca32", W32), ("pca64", W64)):
    curve(reorder(Le, vls, 10**9, (x - mean) @ Wr, (q - mean) @ Wr), vls, f"median2 rank in {nm}")
print("mean lists proposed", np.mean([len(l) for l in Le]))
