"""Persistence of a FlowHashIndex: one file (or bytes) with config, quantizer, table, vectors and ids,
or that file without the vectors plus a lists file that can be memory-mapped.

Layout: 8-byte magic ``FLOWHASH``, uint32 little-endian format version, then an uncompressed npz
holding the JSON header and the arrays of :meth:`FlowHashIndex.state` (the inverted lists in faiss's
own format, the bucket map, ids, codes, the quantizer's ``state_dict``). Files are written atomically (temporary file + rename), so a
reader never sees half a file; both stream (no whole-file copy in memory); a truncated, foreign or other-version file gets a clear ValueError.

Version 3 (``write_index(..., lists_path=...)``): the inverted lists (vectors and their ids, 97 % of the
bytes) are not in the npz but in the lists file it names (``engine/lists_file``, same folder; faiss's own
IVF format, :mod:`.lists_file`), with their sizes and data offset. ``read_index(..., mmap=True)`` maps
that file read-only: opening reads the small file and the list sizes, not the vectors; the index stays
writable (lists are copied when changed). The lists file is written (atomically) before the file that
names it, so a reader never finds a name without its file. Version 2 files (lists inline) still read.
"""

import io
import json
import os
import struct
import tempfile

import numpy as np

from .flowhash_index import FlowHashIndex

__all__ = ["FORMAT_VERSION", "serialize_index", "deserialize_index", "write_index", "read_index", "read_index_meta",
           "lists_file_of"]

MAGIC = b"FLOWHASH"
FORMAT_VERSION = 3  # 3: lists in a file of their own; 2: faiss inverted lists inline (still read); 1: row table (refused)
_READS = (2, 3)


def _text(s: str) -> np.ndarray:
    return np.frombuffer(s.encode(), np.uint8)


def _write_to(index: FlowHashIndex, f, meta: dict | None = None, lists: dict | None = None) -> None:
    """Write the layout to the binary file object f (streamed: no copy of the whole file in memory);
    ``meta`` (JSON-able) rides along as ``__meta__`` (readers that do not ask for it ignore it);
    ``lists`` ({"name", "data_offset"} of a lists file already written): version 3, lists left out."""
    if not isinstance(index, FlowHashIndex):
        raise TypeError(f"index: expected a FlowHashIndex, got {type(index).__name__}")
    header, arrays = index.state(lists=lists is None)
    if lists is not None:
        arrays["engine/lists_file"] = _text(lists["name"])
        arrays["engine/data_offset"] = np.array([lists["data_offset"]], np.int64)
    f.write(MAGIC + struct.pack("<I", 2 if lists is None else FORMAT_VERSION))
    extra = {} if meta is None else {"__meta__": _text(json.dumps(meta))}
    np.savez(f, __header__=_text(json.dumps(header)), **extra, **arrays)


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


def _read_from(f, *, device: str = "cpu", with_meta: bool = False, meta_only: bool = False, folder=None,
               mmap: bool = False, lists_name: bool = False):
    """Read the layout from the seekable binary file object f (arrays are read straight from it):
    the index, or (index, meta) with ``with_meta``, or only meta ({} when none) with ``meta_only``, or
    only the name of its lists file (None: lists inline) with ``lists_name``. A version 3 file's lists
    are opened from ``folder`` (mapped with ``mmap``)."""
    head = f.read(12)
    if len(head) < 12 or head[:8] != MAGIC:
        raise ValueError("not a FlowHash index: the file does not start with the FLOWHASH magic")
    (version,) = struct.unpack("<I", head[8:12])
    if version not in _READS:
        hint = (" (written by faiss-flowhash before the faiss-list engine: rebuild it with train/add and "
                "write_index)" if version < min(_READS) else " (written by a newer faiss-flowhash)")
        raise ValueError(f"FlowHash index format version {version}; this faiss-flowhash reads versions "
                         f"{', '.join(map(str, _READS))}{hint}")
    try:
        with np.load(f, allow_pickle=False) as z:
            if meta_only:
                return json.loads(z["__meta__"].tobytes()) if "__meta__" in z.files else {}
            if lists_name:
                return z["engine/lists_file"].tobytes().decode() if "engine/lists_file" in z.files else None
            arrays = {k: z[k] for k in z.files}
        header = json.loads(arrays.pop("__header__").tobytes())
        meta = json.loads(arrays.pop("__meta__").tobytes()) if "__meta__" in arrays else {}
    except Exception as e:  # zipfile / zlib / json errors of a truncated or corrupted payload
        raise ValueError(f"corrupted or truncated FlowHash index ({type(e).__name__}: {e})") from None
    lists = None
    try:
        if "engine/lists_file" in arrays:
            from .lists_file import Lists

            name = arrays.pop("engine/lists_file").tobytes().decode()
            if folder is None or os.path.basename(name) != name:
                raise ValueError(f"the index keeps its lists in {name!r}: read it from its file (read_index)")
            lists = Lists(os.path.join(folder, name), d=header["d"], metric=header["metric"],
                          storage=header["storage"], sizes=arrays["engine/sizes"],
                          data_offset=int(arrays.pop("engine/data_offset")[0]), mmap=mmap)
        index = FlowHashIndex.from_state(header, arrays, device=device, lists=lists)
        return (index, meta) if with_meta else index
    except (KeyError, TypeError, RuntimeError) as e:  # RuntimeError: faiss refusing a malformed IVF
        raise ValueError(f"corrupted FlowHash index: missing or malformed field {e}") from None


def _atomic(path: str, write) -> None:
    """``write(f)`` into a temporary file beside ``path``, fsync, rename over ``path``."""
    fd, tmp = tempfile.mkstemp(prefix=".flowhash-", dir=os.path.dirname(os.path.abspath(path)))
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def write_index(index: FlowHashIndex, path, *, meta: dict | None = None, lists_path=None) -> None:
    """Write the index to ``path`` atomically (a temporary file in the same folder, then rename);
    ``meta``: a small JSON-able dict stored with it (:func:`read_index_meta` returns it).

    ``lists_path``: write the inverted lists (the vectors) to this file instead, in the same folder
    (written and renamed in first; a new name each time keeps readers of the old one whole), so that
    ``read_index(path, mmap=True)`` maps them. The caller removes the lists files it no longer names."""
    if not isinstance(index, FlowHashIndex):
        raise TypeError(f"index: expected a FlowHashIndex, got {type(index).__name__}")
    path = os.fspath(path)
    lists = None
    if lists_path is not None:
        lists_path = os.fspath(lists_path)
        if os.path.dirname(os.path.abspath(lists_path)) != os.path.dirname(os.path.abspath(path)):
            raise ValueError(f"lists_path: expected a file in {os.path.dirname(os.path.abspath(path))}, got {lists_path}")
        index._require_d("write_index")
        out = {}
        _atomic(lists_path, lambda f: out.setdefault("data_offset", index._engine.write_lists(f)))
        lists = {"name": os.path.basename(lists_path), "data_offset": out["data_offset"]}
    _atomic(path, lambda f: _write_to(index, f, meta, lists))


def _read_path(path, **kw):
    """:func:`_read_from` on the file at ``path`` (a version 3 file's lists opened from its folder)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise FileNotFoundError(path)
    with open(path, "rb") as f:
        return _read_from(f, folder=os.path.dirname(os.path.abspath(path)), **kw)


def read_index(path, *, device: str = "cpu", mmap: bool = False) -> FlowHashIndex:
    """Read an index written by :func:`write_index`; ``mmap``: map its lists file read-only instead of
    reading it (files with the lists inline are read whole either way)."""
    return _read_path(path, device=device, mmap=mmap)


def read_index_meta(path, *, device: str = "cpu", meta_only: bool = False, mmap: bool = False):
    """(index, meta) of a file written by :func:`write_index` (meta {} when none was given); only the
    meta, without reading the rest of the file, with ``meta_only``; ``mmap`` as :func:`read_index`."""
    return _read_path(path, device=device, with_meta=not meta_only, meta_only=meta_only, mmap=mmap)


def lists_file_of(path) -> str | None:
    """Name of the lists file the index file at ``path`` keeps its vectors in (same folder), or None
    when they are inline; reads only that entry."""
    return _read_path(path, lists_name=True)
