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

__version__ = "0.1.0"

# Everything loads at first use (PEP 562): the index and the quantizer import torch (seconds), which
# commands like ``flowhash list`` / ``stats`` never need.
_LAZY = {
    **{name: ".index" for name in ("FlowHashIndex", "FlowQuantizer", "NotTrainedError", "QuantizerConfig", "SearchParams",
                                   "SearchStats", "TrainReport", "bucket_balance", "deserialize_index", "read_index",
                                   "serialize_index", "write_index")},
    "Fingerprinter": ".audio",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'faiss_flowhash' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


__all__ = [
    "FlowHashIndex", "FlowQuantizer", "QuantizerConfig", "TrainReport", "SearchParams", "SearchStats", "NotTrainedError",
    "write_index", "read_index", "serialize_index", "deserialize_index", "bucket_balance", "Fingerprinter",
]
