"""Bytes per vector of FlowHash on real fingerprints after a first search, by part (what memory_bytes
counts: buffers' room included), against IndexIVFFlat (issue 10: <= ~1.2x IVFFlat's bytes/vector).

    OMP_WAIT_POLICY=PASSIVE python -m bench.scratch.memory_fp --data bench/data/fingerprint_ann
"""
import argparse
import json
import os

import faiss
import numpy as np

import faiss_flowhash as ffh
from bench import datasets
from faiss_flowhash.index.growth import held_bytes


def parts(idx, n):
    out = dict(engine=idx._engine.nbytes(), ids=held_bytes(idx._ids_buf, idx._ids),
               codes=held_bytes(idx._codes_buf, idx._codes), map=idx._map.nbytes, centroids=idx._cent.nbytes)
    out = {k: v / n for k, v in out.items()}
    out["total"] = idx.memory_bytes() / n
    out["lists"] = int(idx._map.n_lists)
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--data", default="bench/data/fingerprint_ann")
    a = ap.parse_args()
    from faiss_flowhash.audio import Fingerprinter

    d = lambda f: os.path.join(a.data, f)
    ds = datasets.load_vectors(d("vectors.npy"), d("queries.npy"), d("truth.npy"), positives=d("positives.npy"))
    x, q, n = ds.x, ds.q, len(ds.x)
    rows = {}
    for label, kw in (("FlowHash K=None (auto)", {}), ("FlowHash K16", dict(K=16))):
        idx = ffh.FlowHashIndex(x.shape[1], config=ffh.QuantizerConfig(seed=0, verbose=False), **kw)
        idx.verbose = False
        idx.train(ds.x_train, x_pos=ds.x_pos)
        idx.add(x)
        idx.search(q[:300], 1)
        rows[f"{label} K{idx.K}"] = parts(idx, n)
    idx = ffh.FlowHashIndex(x.shape[1], quantizer=Fingerprinter.load(None).quantizer)
    idx.verbose = False
    idx.add(x)
    idx.search(q[:300], 1)
    rows["FlowHash shipped flow K16"] = parts(idx, n)
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(x.shape[1]), x.shape[1], 1024, faiss.METRIC_INNER_PRODUCT)
    ivf.train(x)
    ivf.add(x)
    rows["IVFFlat1024 (codes + ids + centroids)"] = dict(total=(n * (4 * x.shape[1] + 8) + 1024 * 4 * x.shape[1]) / n)
    for k, v in rows.items():
        print(k, json.dumps({a: round(b, 1) if isinstance(b, float) else b for a, b in v.items()}), flush=True)
    print("load", os.getloadavg())


if __name__ == "__main__":
    main()
