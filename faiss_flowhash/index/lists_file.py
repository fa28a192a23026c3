"""The engine's inverted lists in a file of their own, opened memory-mapped (read-only) or read into RAM.

The file is exactly what ``faiss.write_index`` writes for the engine's IVF (IndexIVFFlat, or
IndexIVFScalarQuantizer QT_fp16), so faiss reads it, and with ``faiss.IO_FLAG_MMAP_IFC`` its
ArrayInvertedLists are views into a read-only ``mmap`` of the file (faiss >= 1.11): opening reads the
header and the list sizes, never the vectors, and pages come in as lists are scanned. Layout: the IVF
header (faiss's own bytes, taken from an empty IVF of the same nlist and ntotal), then the ``ilar`` block:
``nlist``, ``code_size``, ``"full"`` + the nlist list sizes (uint64), then for every non-empty list in
order its codes (size x code_size bytes) and its ids (size x int64). :func:`write_lists` streams it one
list at a time (the writer holds one list, not the index). ``data_offset`` (where list 0's codes start)
locates every list's ids in the file without faiss (:meth:`Lists.lists_holding`).

A mapped view must never be written: faiss aborts on a resize of a view and a store into it faults.
The engine copies a list out before it changes it (:mod:`.engine`).
"""

import os
import struct

import faiss
import numpy as np

__all__ = ["Lists", "write_lists", "lists_header"]

_TAIL = struct.Struct("<4sQQ4sQ")  # 'ilar', nlist, code_size, 'sprs', 0: the end of an empty IVF's bytes


def lists_header(empty_ivf, sizes: np.ndarray) -> bytes:
    """Bytes before list 0's codes: ``empty_ivf`` (the engine's IVF type, nlist lists, all empty, ntotal
    set) serialized by faiss with its empty ``ilar`` block replaced by the full one of ``sizes``."""
    raw = faiss.serialize_index(empty_ivf).tobytes()
    nlist, cs = int(empty_ivf.nlist), int(empty_ivf.code_size)
    if len(sizes) != nlist:
        raise ValueError(f"sizes: expected {nlist} list sizes, got {len(sizes)}")
    if raw[-_TAIL.size:] != _TAIL.pack(b"ilar", nlist, cs, b"sprs", 0):
        raise RuntimeError(f"faiss {faiss.__version__}: an empty IVF no longer ends with an empty 'ilar' block")
    block = struct.pack("<4sQQ4sQ", b"ilar", nlist, cs, b"full", nlist)
    return raw[: -_TAIL.size] + block + np.ascontiguousarray(sizes, "<u8").tobytes()


def write_lists(f, header: bytes, sizes: np.ndarray, code_size: int, list_data) -> int:
    """Write the layout to the binary file object f: ``header`` (:func:`lists_header`), then for each
    non-empty list ``L`` in order the two buffers ``list_data(L)`` returns (codes, ids). Returns the
    data offset (the header's length)."""
    f.write(header)
    for lst in np.flatnonzero(sizes).tolist():
        codes, ids = list_data(lst)
        n = int(sizes[lst])
        if len(codes) != n * code_size or len(ids) != n:
            raise RuntimeError(f"list {lst}: {len(ids)} ids / {len(codes)} code bytes, expected {n}")
        f.write(codes)
        f.write(ids)
    return len(header)


class Lists:
    """The lists of one file: ``ivf`` (the faiss index read from it; it owns the lists), ``il`` (its
    ArrayInvertedLists), ``sizes`` (nlist,) int64, ``mapped`` (views into a read-only mmap, or owned).

    Args:
        path: the lists file.
        d, metric, storage: what the engine expects (checked).
        sizes: the list sizes recorded beside the file (checked against it).
        data_offset: where list 0's codes start (recorded beside the file).
        mmap: map the file read-only (``IO_FLAG_MMAP_IFC``) instead of reading it into RAM.
    """

    def __init__(self, path, *, d: int, metric: int, storage: str, sizes: np.ndarray, data_offset: int,
                 mmap: bool = True):
        self.path = os.fspath(path)
        if not os.path.exists(self.path):
            raise FileNotFoundError(self.path)
        self.sizes = np.asarray(sizes, np.int64)
        self.data_offset, self.mapped = int(data_offset), bool(mmap)
        # the ids are read through one map taken now: a compaction unlinks the file while this index still
        # uses it (the writer removes more ids after it compacted), and a map outlives the name, a path does not
        self._mm = np.memmap(self.path, np.uint8, "r")
        ivf = faiss.read_index(self.path, faiss.IO_FLAG_MMAP_IFC if mmap else 0)
        want = faiss.IndexIVFFlat if storage == "float32" else faiss.IndexIVFScalarQuantizer
        if not isinstance(ivf, want) or ivf.d != d or ivf.metric_type != metric or ivf.nlist != len(self.sizes):
            raise ValueError(f"{self.path}: expected a {want.__name__} with d={d}, metric={metric}, "
                             f"nlist={len(self.sizes)}, got {type(ivf).__name__} with d={ivf.d}, "
                             f"metric={ivf.metric_type}, nlist={ivf.nlist}")
        self.ivf, self.il = ivf, faiss.downcast_InvertedLists(ivf.invlists)
        self.nlist, self.code_size = int(ivf.nlist), int(ivf.code_size)
        nz = np.flatnonzero(self.sizes)
        for lst in (nz[:1].tolist() + nz[-1:].tolist()):  # the recorded layout is the file's
            n = int(self.sizes[lst])
            got = faiss.rev_swig_ptr(self.il.get_ids(lst), n) if self.il.list_size(lst) == n else None
            if got is None or not np.array_equal(got, self._ids_in_file(np.array([lst]))[0]):
                raise ValueError(f"{self.path}: list {lst} does not match the recorded sizes / offset")

    def _offsets(self):
        """Byte offset of every list's ids in the file (nlist,)."""
        per = self.sizes * (self.code_size + 8)
        start = self.data_offset + np.r_[0, np.cumsum(per)[:-1]]
        return start + self.sizes * self.code_size

    def _ids_in_file(self, lists: np.ndarray) -> list:
        """Ids of ``lists`` read from the file itself (a memory map of it), one array per list."""
        mm = self._mm
        off = self._offsets()
        return [np.frombuffer(mm, np.int64, count=int(self.sizes[l]), offset=int(off[l])) for l in lists]

    def lists_holding(self, ids: np.ndarray, among: np.ndarray | None = None) -> np.ndarray:
        """Lists (sorted, unique) that hold any of ``ids``; only lists in ``among`` (a bool mask (nlist,))
        are read when given. Reads the ids of those lists (8 bytes an entry), not their vectors."""
        cand = np.flatnonzero(self.sizes if among is None else self.sizes * among)
        if len(cand) == 0 or len(ids) == 0:
            return np.zeros(0, np.int64)
        parts = self._ids_in_file(cand)
        hit = np.isin(np.concatenate(parts), ids)
        owner = np.repeat(cand, self.sizes[cand])
        return np.unique(owner[hit])

    def list_data(self, lst: int):
        """(codes (size x code_size,) uint8, ids (size,) int64) of one list: views, do not write."""
        n = int(self.sizes[lst])
        return (faiss.rev_swig_ptr(self.il.get_codes(lst), n * self.code_size),
                faiss.rev_swig_ptr(self.il.get_ids(lst), n))
