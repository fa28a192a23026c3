"""Persistence of a FlowHashIndex: one file (or bytes) with config, quantizer, table, vectors and ids.

Layout: 8-byte magic ``FLOWHASH``, uint32 little-endian format version, then an uncompressed npz
holding a JSON header and the arrays. Files are written atomically (temporary file + rename), so a
reader never sees half a file; a truncated, foreign or other-version file gets a clear ValueError.
"""

import io
import json
import os
import struct
import tempfile

import numpy as np

from .flowhash_index import FlowHashIndex
from .quantizer import FlowQuantizer

__all__ = ["FORMAT_VERSION", "serialize_index", "deserialize_index", "write_index", "read_index"]

MAGIC = b"FLOWHASH"
FORMAT_VERSION = 1


def serialize_index(index: FlowHashIndex) -> bytes:
    """The index as bytes (see module docstring for the layout)."""
    if not isinstance(index, FlowHashIndex):
        raise TypeError(f"index: expected a FlowHashIndex, got {type(index).__name__}")
    qheader, qarrays = index.quantizer.state()
    header = {
        "d": index.d, "K": index.K, "metric": int(index.metric_type), "r": index.r, "r_query": index.r_query,
        "max_assign_bits": index.max_assign_bits, "max_probe_bits": index.max_probe_bits, "budget": index.budget, "max_probes": index.max_probes,
        "storage": index.storage, "ntotal": index.ntotal, "next_id": index._next_id, "quantizer": qheader,
    }
    arrays = {f"q/{k}": v for k, v in qarrays.items()}
    arrays.update({f"table/{k}": v for k, v in index._table.state().items()})
    n = index.ntotal
    arrays.update(xb=index._xb[:n], norms=index._norms, ids=index._ids, codes=index._codes)
    buf = io.BytesIO()
    buf.write(MAGIC + struct.pack("<I", FORMAT_VERSION))
    np.savez(buf, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
    return buf.getvalue()


def deserialize_index(data: bytes, *, device: str = "cpu") -> FlowHashIndex:
    """Rebuild an index from :func:`serialize_index` bytes."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data: expected bytes, got {type(data).__name__}")
    data = bytes(data)
    if len(data) < 12 or data[:8] != MAGIC:
        raise ValueError("not a FlowHash index: the file does not start with the FLOWHASH magic")
    (version,) = struct.unpack("<I", data[8:12])
    if version != FORMAT_VERSION:
        raise ValueError(f"FlowHash index format version {version}; this faiss-flowhash reads version {FORMAT_VERSION}")
    try:
        with np.load(io.BytesIO(data[12:]), allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
        header = json.loads(arrays.pop("__header__").tobytes())
    except Exception as e:  # zipfile / zlib / json errors of a truncated or corrupted payload
        raise ValueError(f"corrupted or truncated FlowHash index ({type(e).__name__}: {e})") from None
    try:
        quantizer = FlowQuantizer.from_state(
            header["quantizer"], {k[2:]: v for k, v in arrays.items() if k.startswith("q/")})
        index = FlowHashIndex(
            header["d"], header["K"], header["metric"], r=header["r"], r_query=header["r_query"],
            max_assign_bits=header["max_assign_bits"], max_probe_bits=header["max_probe_bits"],
            budget=header["budget"], max_probes=header.get("max_probes"), storage=header["storage"], device=device, quantizer=quantizer,
        )
        if device != "cpu":
            quantizer.to(device)
        n = int(header["ntotal"])
        xb, ids, codes, norms = arrays["xb"], arrays["ids"], arrays["codes"], arrays["norms"]
        if xb.shape != (n, index.d) or ids.shape != (n,) or codes.shape != (n,) or norms.shape != (n,):
            raise ValueError(f"arrays do not match ntotal={n}, d={index.d}")
        index._xb, index._ids, index._codes, index._norms = xb.astype(index.storage), ids, codes, norms
        index._n, index._next_id = n, int(header["next_id"])
        index._table.load_state({k[6:]: v for k, v in arrays.items() if k.startswith("table/")})
        if index._table.n_entries and int(index._table.rows.max()) >= n:
            raise ValueError("bucket table refers to rows past ntotal")
    except (KeyError, TypeError) as e:
        raise ValueError(f"corrupted FlowHash index: missing or malformed field {e}") from None
    return index


def write_index(index: FlowHashIndex, path) -> None:
    """Write the index to ``path`` atomically (a temporary file in the same folder, then rename)."""
    data = serialize_index(index)
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".flowhash-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def read_index(path, *, device: str = "cpu") -> FlowHashIndex:
    """Read an index written by :func:`write_index`."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    with open(path, "rb") as f:
        return deserialize_index(f.read(), device=device)
