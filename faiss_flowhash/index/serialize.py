"""Persistence of a FlowHashIndex: one file (or bytes) with config, quantizer, table, vectors and ids.

Layout: 8-byte magic ``FLOWHASH``, uint32 little-endian format version, then an uncompressed npz
holding the JSON header and the arrays of :meth:`FlowHashIndex.state` (the inverted lists in faiss's
own format, the bucket map, ids, codes, the quantizer's ``state_dict``). Files are written atomically (temporary file + rename), so a
reader never sees half a file; both stream (no whole-file copy in memory); a truncated, foreign or other-version file gets a clear ValueError.
"""

import io
import json
import os
import struct
import tempfile

import numpy as np

from .flowhash_index import FlowHashIndex

__all__ = ["FORMAT_VERSION", "serialize_index", "deserialize_index", "write_index", "read_index", "read_index_meta"]

MAGIC = b"FLOWHASH"
FORMAT_VERSION = 2  # 2: faiss inverted lists + bucket map + quantizer state_dict; 1: row table (refused)


def _write_to(index: FlowHashIndex, f, meta: dict | None = None) -> None:
    """Write the layout to the binary file object f (streamed: no copy of the whole file in memory);
    ``meta`` (JSON-able) rides along as ``__meta__`` (readers that do not ask for it ignore it)."""
    if not isinstance(index, FlowHashIndex):
        raise TypeError(f"index: expected a FlowHashIndex, got {type(index).__name__}")
    header, arrays = index.state()
    f.write(MAGIC + struct.pack("<I", FORMAT_VERSION))
    extra = {} if meta is None else {"__meta__": np.frombuffer(json.dumps(meta).encode(), np.uint8)}
    np.savez(f, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **extra, **arrays)


def serialize_index(index: FlowHashIndex) -> bytes:
    """The index as bytes (see module docstring for the layout): ``index.state()`` in an npz."""
    buf = io.BytesIO()
    _write_to(index, buf)
    return buf.getvalue()


def deserialize_index(data: bytes, *, device: str = "cpu") -> FlowHashIndex:
    """Rebuild an index from :func:`serialize_index` bytes."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise TypeError(f"data: expected bytes, got {type(data).__name__}")
    return _read_from(io.BytesIO(bytes(data)), device=device)


def _read_from(f, *, device: str = "cpu", with_meta: bool = False, meta_only: bool = False):
    """Read the layout from the seekable binary file object f (arrays are read straight from it):
    the index, or (index, meta) with ``with_meta``, or only meta ({} when none) with ``meta_only``."""
    head = f.read(12)
    if len(head) < 12 or head[:8] != MAGIC:
        raise ValueError("not a FlowHash index: the file does not start with the FLOWHASH magic")
    (version,) = struct.unpack("<I", head[8:12])
    if version != FORMAT_VERSION:
        hint = (" (written by faiss-flowhash before the faiss-list engine: rebuild it with train/add and "
                "write_index)" if version < FORMAT_VERSION else " (written by a newer faiss-flowhash)")
        raise ValueError(f"FlowHash index format version {version}; this faiss-flowhash reads version "
                         f"{FORMAT_VERSION}{hint}")
    try:
        with np.load(f, allow_pickle=False) as z:
            if meta_only:
                return json.loads(z["__meta__"].tobytes()) if "__meta__" in z.files else {}
            arrays = {k: z[k] for k in z.files}
        header = json.loads(arrays.pop("__header__").tobytes())
        meta = json.loads(arrays.pop("__meta__").tobytes()) if "__meta__" in arrays else {}
    except Exception as e:  # zipfile / zlib / json errors of a truncated or corrupted payload
        raise ValueError(f"corrupted or truncated FlowHash index ({type(e).__name__}: {e})") from None
    try:
        index = FlowHashIndex.from_state(header, arrays, device=device)
        return (index, meta) if with_meta else index
    except (KeyError, TypeError, RuntimeError) as e:  # RuntimeError: faiss refusing a malformed IVF
        raise ValueError(f"corrupted FlowHash index: missing or malformed field {e}") from None


def write_index(index: FlowHashIndex, path, *, meta: dict | None = None) -> None:
    """Write the index to ``path`` atomically (a temporary file in the same folder, then rename);
    ``meta``: a small JSON-able dict stored with it (:func:`read_index_meta` returns it)."""
    if not isinstance(index, FlowHashIndex):
        raise TypeError(f"index: expected a FlowHashIndex, got {type(index).__name__}")
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=".flowhash-", dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            _write_to(index, f, meta)
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
        return _read_from(f, device=device)


def read_index_meta(path, *, device: str = "cpu", meta_only: bool = False):
    """(index, meta) of a file written by :func:`write_index` (meta {} when none was given); only the
    meta, without reading the rest of the file, with ``meta_only``."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    with open(path, "rb") as f:
        return _read_from(f, device=device, with_meta=not meta_only, meta_only=meta_only)
