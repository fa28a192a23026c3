"""Shared set-up of the session-5 scratch benches on real fingerprints: the data, a FlowHash index built
as `fingerprint_ann` builds "FlowHash K16" (seed 0, with positives), and a best-of timer."""
import os
import time

import numpy as np

import faiss_flowhash as ffh
from bench import datasets

__all__ = ["load", "build", "plan_inputs", "best"]


def load(data: str):
    """The fingerprint_ann data set in folder ``data`` (vectors, queries, truth, positives)."""
    d = lambda f: os.path.join(data, f)
    return datasets.load_vectors(d("vectors.npy"), d("queries.npy"), d("truth.npy"), positives=d("positives.npy"))


def build(ds, K=16):
    """FlowHashIndex(d, K) trained on the training split with positives (seed 0), every vector added."""
    idx = ffh.FlowHashIndex(ds.x.shape[1], K=K, config=ffh.QuantizerConfig(seed=0, verbose=False))
    idx.verbose = False
    idx.train(ds.x_train, x_pos=ds.x_pos)
    idx.add(ds.x)
    return idx


def plan_inputs(idx, ds):
    """What the numba planner is fed for the queries of ds: (queries xs scaled as the index scales
    them, latents z, the bucket map's tables (dense, keys, offsets, lists), the centroid rows in the
    tables' list order), all C-contiguous."""
    xq = np.ascontiguousarray(ds.q, np.float32)
    xs = np.ascontiguousarray(idx._scaled(xq), np.float32)
    z = np.ascontiguousarray(idx.quantizer.latent(idx.quantizer.project(xs)), np.float32)
    tables = idx._map.tables()
    return xs, z, tables, idx._cent.layout(tables[3])


def best(fn, reps: int) -> float:
    """The shortest of ``reps`` wall-clock runs of fn(), seconds."""
    t = []
    for _ in range(reps):
        t0 = time.perf_counter()
        fn()
        t.append(time.perf_counter() - t0)
    return min(t)
