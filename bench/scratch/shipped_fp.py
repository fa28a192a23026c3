"""Shared set-up of the scratch studies on real fingerprints with the shipped model's quantizer.

``shipped_index(data)`` loads ``bench.fingerprint_ann``'s saved vectors (``--data-only``), the exact top-1
of every query, and the database's FlowHash index built on the shipped quantizer, with the queries'
scaled vectors and latents: what ``coarse_score`` and ``flip_power`` both start from.
"""
import os
from dataclasses import dataclass

import faiss
import numpy as np

import faiss_flowhash as ffh
from bench import datasets

__all__ = ["Shipped", "shipped_index"]


@dataclass
class Shipped:
    ds: object  # bench.datasets vectors: x (N, d), q (n, d), truth (n,)
    gt: np.ndarray  # (n, 1) exact inner-product top-1
    index: ffh.FlowHashIndex  # built with the shipped model's quantizer
    xs: np.ndarray  # (n, d) the queries as the index scales them
    z: np.ndarray  # (n, K) their latents


def shipped_index(data: str) -> Shipped:
    from faiss_flowhash.audio import Fingerprinter

    d = lambda f: os.path.join(data, f)
    ds = datasets.load_vectors(d("vectors.npy"), d("queries.npy"), d("truth.npy"))
    fl = faiss.IndexFlatIP(ds.x.shape[1])
    fl.add(ds.x)
    _, gt = fl.search(ds.q, 1)
    idx = ffh.FlowHashIndex(ds.x.shape[1], quantizer=Fingerprinter.load(None).quantizer)
    idx.verbose = False
    idx.add(ds.x)
    xs = idx._scaled(ds.q)
    return Shipped(ds=ds, gt=gt, index=idx, xs=xs, z=idx.quantizer.latent(idx.quantizer.project(xs)))
