"""The database's index on disk: a base file plus append-only segments, so a commit writes only what it adds.

Layout inside the database directory::

    index.flowhash     the base: the FlowHashIndex (quantizer, bucket map, ids, codes) as of generation G
                       (``write_index``, atomic), G recorded in the file (``base_generation``; absent in
                       files written before the segments: 0)
    index.lists-G-T.ivf   the base's inverted lists (vectors + ids, faiss's IVF format), named by
                       index.flowhash; opened memory-mapped, so opening reads neither vectors nor ids
                       (bases written before this layout hold their lists inline and are read whole)
    index.segments/    a :class:`~faiss_flowhash.index.segments.SegmentStore` (same dtype as the index's
                       storage, so replay is exact): each commit after the base appends one segment
                       (its new vectors and ids) and/or a tombstone (ids removed), as generation G+1, G+2..

The index a reader sees is the base, minus the ids of the tombstones newer than G, plus the live rows of
the segments newer than G (added with ``add_with_ids``, in commit order). A commit is the segment
store's manifest rename (crash safety: see segments.py); the base is rewritten only by the first commit
and by :meth:`IndexStore.compact`, which writes a new lists file (a new name), then a new base naming
it, then drops the older lists file and the segments it absorbed from the manifest (each step atomic; a
kill before the base's rename leaves an unnamed lists file, one after it a base newer than some listed
segments, which readers skip by generation; the next writer removes both). Readers never wait: they hold
their index (its lists mapped: a lists file removed under them stays readable until they let go of it),
and :meth:`IndexStore.refresh` applies only the generations committed since (a new base is mapped anew).
A segment stores its vectors' bucket codes, so a replay adds them without encoding (assign="none").

Replay skips ids already in the index, so a base written by anything else (an older faiss-flowhash, a
repair tool) with a stale or missing generation still opens to the same set of vectors.
"""

from __future__ import annotations

import os

import numpy as np

__all__ = ["IndexStore", "ReadWriteLock", "INDEX_FILE", "SEGMENTS_DIR", "LISTS_PREFIX", "DEFAULT_COMPACT_RATIO"]

INDEX_FILE, SEGMENTS_DIR = "index.flowhash", "index.segments"
LISTS_PREFIX, LISTS_SUFFIX = "index.lists-", ".ivf"  # the base's lists file: index.lists-<generation>-<tag>.ivf
# compact once the segments hold this share of the base's vectors: replaying a segment costs what adding its
# vectors to the lists costs (no encoding: the codes are stored), so open time grows with it; 0.1 rewrites the base about as often as the database's commits did before the segments
# (commit_growth 0.1), with the commits in between writing only their own rows
DEFAULT_COMPACT_RATIO = 0.1
# the segment store's manifest name (segments.MANIFEST): spelled here so that stat-only callers (stats,
# list, the change check of every query) import neither faiss_flowhash.index nor torch
MANIFEST = "MANIFEST.json"


class ReadWriteLock:
    """Many searches at once (``shared``), or one refresh that changes the index in place (``exclusive``,
    which waits for the searches under way and holds up new ones). Not reentrant."""

    def __init__(self):
        import threading

        self._cond = threading.Condition()
        self._readers, self._writer, self._waiting = 0, False, 0

    class _Ctx:
        def __init__(self, enter, leave):
            self.enter, self.leave = enter, leave

        def __enter__(self):
            self.enter()

        def __exit__(self, *exc):
            self.leave()

    def _acquire_shared(self):
        with self._cond:
            while self._writer or self._waiting:
                self._cond.wait()
            self._readers += 1

    def _release_shared(self):
        with self._cond:
            self._readers -= 1
            self._cond.notify_all()

    def _acquire_exclusive(self):
        with self._cond:
            self._waiting += 1
            while self._writer or self._readers:
                self._cond.wait()
            self._waiting -= 1
            self._writer = True

    def _release_exclusive(self):
        with self._cond:
            self._writer = False
            self._cond.notify_all()

    def shared(self):
        return self._Ctx(self._acquire_shared, self._release_shared)

    def exclusive(self):
        return self._Ctx(self._acquire_exclusive, self._release_exclusive)


def _sig(path: str):
    try:
        st = os.stat(path)
    except FileNotFoundError:
        return None
    return (st.st_ino, st.st_mtime_ns, st.st_size)


class IndexStore:
    """Base file + segment store of one database directory (see the module docstring).

    Args:
        folder: the database directory.
        readonly: readers never create or repair anything.
        lock_timeout_s: the segment store's wait for its own (short) commit lock.
    """

    def __init__(self, folder: str, *, readonly: bool = False, lock_timeout_s: float = 60.0):
        self.folder, self.readonly, self.lock_timeout_s = folder, readonly, lock_timeout_s
        self.base_path = os.path.join(folder, INDEX_FILE)
        self.seg_path = os.path.join(folder, SEGMENTS_DIR)
        self._segs = None
        self.base_generation = 0  # generation of the base the last load read
        self.applied = 0  # last generation applied to the index returned by load / refresh
        self.base_rows = 0  # vectors in the base file the last load read (or write_base wrote)
        self._base_sig = None

    # -- segment store ----------------------------------------------------------------------------
    def _store(self, d: int | None = None, dtype: str | None = None) -> SegmentStore | None:
        if self._segs is None:
            from ..index.segments import SegmentStore

            if os.path.exists(os.path.join(self.seg_path, MANIFEST)):
                self._segs = SegmentStore(self.seg_path, readonly=self.readonly, lock_timeout_s=self.lock_timeout_s)
            elif d is not None and not self.readonly:
                self._segs = SegmentStore(self.seg_path, d, dtype=dtype, lock_timeout_s=self.lock_timeout_s)
        return self._segs

    @property
    def signature(self):
        """Changes whenever a commit, a compaction or a base write happened (stat of two small files)."""
        return (_sig(self.base_path), _sig(os.path.join(self.seg_path, MANIFEST)))

    # -- reading ----------------------------------------------------------------------------------
    def load(self):
        """The index as committed now (None before the first commit): base + replay (module docstring)."""
        from ..index.serialize import read_index_meta

        for attempt in range(20):
            store = self._store()
            snap = store.snapshot() if store is not None else None  # first: its files stay mapped
            sig = _sig(self.base_path)
            if sig is None:
                if snap is not None and snap.segments:
                    raise ValueError(f"{self.base_path}: missing, but {self.seg_path} holds segments")
                self._base_sig, self.base_generation, self.applied = None, 0, 0
                return None
            try:
                index, meta = read_index_meta(self.base_path, mmap=True)
            except FileNotFoundError:  # replaced meanwhile (a compaction; its old lists file gone): read again
                continue
            self._base_sig = sig
            self.base_generation = int(meta.get("base_generation", 0))
            self.applied, self.base_rows = self.base_generation, int(index.ntotal)
            if snap is not None:
                self._apply(index, snap)
            return index
        raise RuntimeError(f"{self.folder}: the index kept changing while being read")

    def refresh(self, index):
        """``index`` (from :meth:`load` / :meth:`refresh`) brought up to the last commit: only the new
        generations are applied when the base is the same; a new base is read whole. Returns the index."""
        if index is None or _sig(self.base_path) != self._base_sig:
            return self.load()
        store = self._store()
        if store is not None:
            snap = store.snapshot()
            if snap.generation > self.applied:
                if _sig(self.base_path) != self._base_sig:  # compacted between the two reads
                    return self.load()
                self._apply(index, snap)
        return index

    def _apply(self, index, snap) -> None:
        """Generations of ``snap`` newer than ``self.applied``, in order: tombstones, then the segment."""
        after = self.applied
        ops = [(int(t["gen"]), 0, t) for t in snap.manifest["tombstones"] if int(t["gen"]) > after]
        ops += [(seg.gen, 1, seg) for seg in snap.segments if seg.gen > after]
        dead = []
        for gen, kind, item in sorted(ops, key=lambda o: (o[0], o[1])):
            if kind == 0:
                dead.append(np.load(os.path.join(snap.folder, item["name"]), allow_pickle=False))
                continue
            if dead:  # removes are batched (one centroid rebuild) up to the next segment
                index.remove_ids(np.concatenate(dead))
                dead = []
            ids = np.asarray(item.ids)
            mask = snap.live_mask(item)
            fresh = index._rows_of(ids) < 0 if index.ntotal else np.ones(len(ids), bool)
            if mask is not None:
                fresh &= mask
            rows = np.flatnonzero(fresh)
            coded = item.codes is not None and index.assign == "none"
            for lo in range(0, len(rows), 1 << 18):
                r = rows[lo: lo + (1 << 18)]
                codes = np.asarray(item.codes[r]) if coded else None  # stored at commit: no encoding
                index.add_with_ids(np.asarray(item.vectors[r], np.float32), ids[r], codes=codes)
        if dead:
            index.remove_ids(np.concatenate(dead))
        self.applied = max(after, snap.generation)

    # -- writing (the caller holds the database's write lock) --------------------------------------
    def write_base(self, index) -> None:
        """Write ``index`` whole as the base of the last generation (a new lists file, then the base
        naming it), then drop the older lists files and the segments it absorbs."""
        import secrets

        from ..index.serialize import write_index

        store = self._store(index.d, index.storage)
        gen = store.generation
        name = f"{LISTS_PREFIX}{gen:010d}-{secrets.token_hex(4)}{LISTS_SUFFIX}"
        write_index(index, self.base_path, meta={"base_generation": gen}, lists_path=os.path.join(self.folder, name))
        self._base_sig, self.base_generation, self.applied = _sig(self.base_path), gen, gen
        self.base_rows = int(index.ntotal)
        self._drop_lists(keep=name)
        store.drop_through(gen)

    def _lists_files(self) -> list[str]:
        if not os.path.isdir(self.folder):
            return []
        return sorted(n for n in os.listdir(self.folder) if n.startswith(LISTS_PREFIX) and n.endswith(LISTS_SUFFIX))

    def _drop_lists(self, keep: str | None) -> list[str]:
        """Delete the lists files other than ``keep`` (mapped by readers: their pages live on until unmapped)."""
        gone = [n for n in self._lists_files() if n != keep]
        for n in gone:
            try:
                os.unlink(os.path.join(self.folder, n))
            except FileNotFoundError:
                pass
        return gone

    def append(self, x: np.ndarray, ids: np.ndarray, index) -> None:
        """Commit rows x (n, d) under ids (n,) already added to ``index`` (the writer's in-memory copy)."""
        if len(ids) == 0:
            return
        if _sig(self.base_path) is None:  # the first commit: the base holds the quantizer
            self.write_base(index)
            return
        self.applied = self._store(index.d, index.storage).commit(x, ids, codes=index.codes_of(ids))

    def delete(self, ids: np.ndarray, index) -> None:
        """Commit the removal of ids (already removed from ``index``)."""
        ids = np.asarray(ids, np.int64).reshape(-1)
        if len(ids) == 0 or _sig(self.base_path) is None:
            return
        self.applied = self._store(index.d, index.storage).commit(delete=ids)

    def delta_rows(self) -> int:
        """Rows the segments add plus ids their tombstones remove (what a compaction would absorb)."""
        store = self._store()
        if store is None:
            return 0
        m = store.snapshot().manifest
        return int(sum(s["n"] for s in m["segments"] if s["gen"] > self.base_generation)
                   + sum(t["n"] for t in m["tombstones"] if t["gen"] > self.base_generation))

    def should_compact(self, ratio: float) -> bool:
        """Whether the segments (rows added + ids removed) reach ``ratio`` x the base's vectors."""
        delta = self.delta_rows()
        return delta > 0 and delta >= ratio * max(self.base_rows, 1)

    def compact(self, index) -> dict:
        """Rewrite the base from ``index`` (current through the last commit); returns what was absorbed."""
        import time

        t0 = time.perf_counter()
        store = self._store()
        n_seg = 0 if store is None else len(store.snapshot().segments)
        delta = self.delta_rows()
        self.write_base(index)
        return {"segments": n_seg, "delta_rows": delta, "ntotal": int(index.ntotal),
                "base_bytes": self.base_bytes(), "seconds": time.perf_counter() - t0}

    def repair(self) -> list[str]:
        """Remove what a killed writer left: temporary base files, unnamed segment files (the store's own
        repair), segments a newer base already holds. Returns the names removed."""
        from ..index.serialize import lists_file_of

        removed = []
        for name in os.listdir(self.folder):
            if name.startswith(".flowhash-"):
                os.unlink(os.path.join(self.folder, name))
                removed.append(name)
        removed += self._drop_lists(keep=lists_file_of(self.base_path) if _sig(self.base_path) else None)
        store = self._store()
        if store is not None:
            removed += list(getattr(store, "removed_orphans", []))
            base = _sig(self.base_path)
            if base is not None:
                from ..index.serialize import read_index_meta

                gen = int(read_index_meta(self.base_path, meta_only=True).get("base_generation", 0))
                store.drop_through(gen)
        return removed

    def _lists_bytes(self) -> int:
        return sum(os.path.getsize(os.path.join(self.folder, n)) for n in self._lists_files())

    def base_bytes(self) -> int:
        """Bytes of the base file and its lists file (0 before the first commit)."""
        if not os.path.exists(self.base_path):
            return 0
        return os.path.getsize(self.base_path) + self._lists_bytes()

    def disk_bytes(self) -> int:
        """Bytes of the base file and of the segment store's folder (a stat of each file)."""
        total = os.path.getsize(self.base_path) if os.path.exists(self.base_path) else 0
        total += self._lists_bytes()
        if os.path.isdir(self.seg_path):
            total += sum(e.stat().st_size for e in os.scandir(self.seg_path) if e.is_file())
        return total
