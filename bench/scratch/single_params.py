"""Single-query FlowHash search with the params= merge remembered (FlowHashIndex._merged_params) against
the merge done on every call, interleaved in one process, on real fingerprints (K chosen from N).

    OMP_WAIT_POLICY=PASSIVE python -m bench.scratch.single_params
"""
import os
import time

import numpy as np
import faiss

import faiss_flowhash as ffh
from faiss_flowhash.index.params import DEFAULT, SearchParams
from bench import datasets


def main():
    d = lambda f: os.path.join("bench/data/fingerprint_ann", f)
    ds = datasets.load_vectors(d("vectors.npy"), d("queries.npy"), d("truth.npy"), positives=d("positives.npy"))
    idx = ffh.FlowHashIndex(ds.x.shape[1], config=ffh.QuantizerConfig(seed=0, verbose=False), metric=faiss.METRIC_INNER_PRODUCT)
    idx.verbose = False
    idx.train(ds.x_train, x_pos=ds.x_pos)
    idx.add(ds.x)
    q = ds.q.astype(np.float32)
    sp = ffh.SearchParams(nprobe=128)
    faiss.omp_set_num_threads(1)
    idx.search(q[:300], 1, params=sp)
    cached = idx._merged_params
    def uncached(params, r_query, budget, max_probes):
        alias = SearchParams(r_query=DEFAULT if r_query is None else r_query, budget=DEFAULT if budget is None else budget,
                             max_probes=DEFAULT if max_probes is None else max_probes)
        return alias.over((params or SearchParams()).over(idx.params))
    res = {"cached": [], "uncached": []}
    for rep in range(6):
        for name, fn in (("cached", cached), ("uncached", uncached)):
            idx._merged_params = fn
            t = time.perf_counter()
            for i in range(1000):
                idx.search(q[i:i + 1], 1, params=sp)
            res[name].append(1e6 * (time.perf_counter() - t) / 1000)
    print({k: (round(min(v), 1), round(float(np.median(v)), 1)) for k, v in res.items()}, "us/query (best, median of 6 x 1000), K", idx.K, "load", os.getloadavg()[0])


if __name__ == "__main__":
    main()
