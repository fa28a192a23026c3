"""faiss-flowhash: learned, balanced hashing for vector search (FlowHash) and audio fingerprinting.

>>> import numpy as np, faiss_flowhash as ffh
>>> x = np.random.default_rng(0).standard_normal((1000, 16)).astype("float32")
>>> index = ffh.FlowHashIndex(16, K=6, config=ffh.QuantizerConfig(steps=20, batch_size=256, verbose=False))
>>> _ = index.train(x)
>>> index.add(x)
>>> D, I = index.search(x[:5], 1)
>>> I.shape, I.dtype.name
((5, 1), 'int64')
"""

from .index import (FlowHashIndex, FlowQuantizer, NotTrainedError, QuantizerConfig, SearchParams, SearchStats, TrainReport,
                    bucket_balance, deserialize_index, read_index, serialize_index, write_index)

__version__ = "0.1.0"


def __getattr__(name):
    # the audio stack (and its model file) loads only when asked for
    if name == "Fingerprinter":
        from .audio import Fingerprinter

        return Fingerprinter
    raise AttributeError(f"module 'faiss_flowhash' has no attribute {name!r}")

__all__ = [
    "FlowHashIndex", "FlowQuantizer", "QuantizerConfig", "TrainReport", "SearchParams", "SearchStats", "NotTrainedError",
    "write_index", "read_index", "serialize_index", "deserialize_index", "bucket_balance", "Fingerprinter",
]
