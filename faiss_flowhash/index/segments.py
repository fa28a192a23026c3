"""Append-only segment store: vectors that grow by new files, committed by a manifest, merged by compaction.

A store is a directory::

    MANIFEST.json                  the last commit: generation, d, dtype, segments, tombstones
    seg-<gen>-<tag>.vec.npy        (n, d) float16 or float32 vectors of one commit (memory-mappable .npy)
    seg-<gen>-<tag>.ids.npy        (n,) int64 ids            seg-...codes.npy  (n,) uint64 bucket codes (optional)
    del-<gen>-<tag>.npy            ids deleted by commit <gen>: they hide rows of segments older than <gen>
    write.lock                     flock'ed by the one process that commits

Commit protocol (crash safety): a commit writes its new files under temporary names, fsyncs and
renames them, then writes ``MANIFEST.json`` the same way; the manifest's rename is the commit. A
process killed at any point leaves the previous manifest and perhaps files it does not name; the next
writer deletes those. Files are never rewritten: a name is used once.

Readers take a :class:`Snapshot` (the manifest they read, its files memory-mapped): opening costs a few
milliseconds whatever the size, rows are paged in from the page cache as they are read, and the
snapshot stays valid while writers commit or compaction deletes the files it uses (POSIX keeps an
unlinked file's pages while it is mapped).

Compaction merges a snapshot's segments into one, dropping deleted rows, streaming in chunks (memory
bounded by ``chunk_rows``), without the write lock; it then takes the lock only to swap the manifest:
the merged segment plus every segment and tombstone committed meanwhile. Queries never wait for it and
appends wait only for that swap. The merged segment keeps the snapshot's generation, so later
tombstones still apply to it.
"""

import fcntl
import json
import os
import secrets
import threading
import time
from dataclasses import dataclass

import numpy as np

from .checks import as_ids, as_matrix

__all__ = ["SegmentStore", "Snapshot", "Segment", "MANIFEST", "STORE_FORMAT"]

MANIFEST = "MANIFEST.json"
STORE_FORMAT = "faiss-flowhash-segments"
_VERSION = 1
_DTYPES = ("float16", "float32")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_npy(folder: str, name: str, arr: np.ndarray) -> None:
    """``arr`` to ``folder/name`` atomically: temporary file, fsync, rename (the folder is fsynced later)."""
    tmp = os.path.join(folder, f".tmp-{name}")
    with open(tmp, "wb") as f:
        np.save(f, arr, allow_pickle=False)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, os.path.join(folder, name))


@dataclass(frozen=True)
class Segment:
    """One segment of a snapshot: memory-mapped arrays (read-only) and the generation that wrote it."""

    name: str
    gen: int
    vectors: np.ndarray  # (n, d) float16 / float32, memory-mapped
    ids: np.ndarray  # (n,) int64, memory-mapped
    codes: np.ndarray | None  # (n,) uint64 or None

    def __len__(self) -> int:
        return len(self.ids)


class Snapshot:
    """A committed state of the store: its segments and the ids deleted from each (read-only)."""

    def __init__(self, folder: str, manifest: dict):
        self.folder, self.manifest = folder, manifest
        self.generation, self.d, self.dtype = int(manifest["generation"]), int(manifest["d"]), manifest["dtype"]
        self.segments = [self._open_segment(s) for s in manifest["segments"]]
        self._tombstones = [(int(t["gen"]), np.load(os.path.join(folder, t["name"]), allow_pickle=False))
                            for t in manifest["tombstones"]]
        self._live: dict[str, np.ndarray | None] = {}

    def _open_segment(self, s: dict) -> Segment:
        load = lambda suffix: np.load(os.path.join(self.folder, s["name"] + suffix), mmap_mode="r", allow_pickle=False)
        return Segment(s["name"], int(s["gen"]), load(".vec.npy"), load(".ids.npy"),
                       load(".codes.npy") if s.get("codes") else None)

    def live_mask(self, seg: Segment) -> np.ndarray | None:
        """Rows of ``seg`` not deleted (n,) bool, or None when none is."""
        if seg.name not in self._live:
            dead = [ids for gen, ids in self._tombstones if gen > seg.gen]
            self._live[seg.name] = None if not dead else ~np.isin(seg.ids, np.concatenate(dead))
            if self._live[seg.name] is not None and self._live[seg.name].all():
                self._live[seg.name] = None
        return self._live[seg.name]

    @property
    def ntotal(self) -> int:
        """Live rows (deleted ones excluded)."""
        return int(sum(len(s) if (m := self.live_mask(s)) is None else int(m.sum()) for s in self.segments))

    def chunks(self, chunk_rows: int = 1 << 18):
        """Live rows in commit order, as (vectors (m, d) in the stored dtype, ids (m,), codes (m,) or None)."""
        for seg in self.segments:
            mask = self.live_mask(seg)
            for lo in range(0, len(seg), chunk_rows):
                hi = min(lo + chunk_rows, len(seg))
                sel = slice(lo, hi) if mask is None else np.flatnonzero(mask[lo:hi]) + lo
                codes = None if seg.codes is None else np.asarray(seg.codes[sel])
                if (hi - lo) if mask is None else len(sel):
                    yield np.asarray(seg.vectors[sel]), np.asarray(seg.ids[sel]), codes

    def arrays(self):
        """All live rows in RAM: vectors (n, d) float32, ids (n,) int64, codes (n,) uint64 or None."""
        parts = list(self.chunks())
        if not parts:
            return np.zeros((0, self.d), np.float32), np.zeros(0, np.int64), None
        codes = None if any(p[2] is None for p in parts) else np.concatenate([p[2] for p in parts])
        return (np.concatenate([p[0] for p in parts]).astype(np.float32, copy=False),
                np.concatenate([p[1] for p in parts]), codes)

    def disk_bytes(self) -> int:
        names = [s["name"] + x for s in self.manifest["segments"] for x in (".vec.npy", ".ids.npy", ".codes.npy")]
        names += [t["name"] for t in self.manifest["tombstones"]] + [MANIFEST]
        return int(sum(os.path.getsize(os.path.join(self.folder, n)) for n in names
                       if os.path.exists(os.path.join(self.folder, n))))


class SegmentStore:
    """Vectors with ids (and optional bucket codes) in append-only segments (see the module docstring).

    Args:
        path: the store directory (created when ``d`` is given and it holds no store).
        d: vector dimension (needed to create; checked against the store otherwise).
        dtype: "float16" (half the bytes; scores are computed in float32 by whoever reads) or "float32".
        readonly: snapshots only (no lock, no repair).
        lock_timeout_s: how long a commit waits for another process's commit or compaction swap.
    """

    def __init__(self, path, d: int | None = None, *, dtype: str = "float16", readonly: bool = False,
                 lock_timeout_s: float = 60.0):
        self.path, self.readonly, self.lock_timeout_s = os.path.abspath(os.fspath(path)), readonly, lock_timeout_s
        self._thread_lock = threading.RLock()
        mpath = os.path.join(self.path, MANIFEST)
        if not os.path.exists(mpath):
            if readonly or d is None:
                raise FileNotFoundError(f"{self.path}: no segment store here (create it with d=...)")
            if dtype not in _DTYPES:
                raise ValueError(f"dtype: expected one of {_DTYPES}, got {dtype!r}")
            if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
                raise ValueError(f"d: expected an int >= 1, got {d!r}")
            os.makedirs(self.path, exist_ok=True)
            with self._locked():
                if not os.path.exists(mpath):
                    self._write_manifest({"format": STORE_FORMAT, "version": _VERSION, "generation": 0, "d": int(d),
                                          "dtype": dtype, "segments": [], "tombstones": []})
        m = self._read_manifest()
        if d is not None and int(d) != m["d"]:
            raise ValueError(f"d: the store at {self.path} holds d={m['d']}, got d={d}")
        self.d, self.dtype = m["d"], m["dtype"]
        if not readonly:
            with self._locked():
                self.removed_orphans = self._repair()

    # -- manifest and lock -------------------------------------------------------------------------
    def _read_manifest(self) -> dict:
        path = os.path.join(self.path, MANIFEST)
        try:
            with open(path) as f:
                m = json.load(f)
        except FileNotFoundError:
            raise FileNotFoundError(f"{path}: no segment store here") from None
        except json.JSONDecodeError as e:
            raise ValueError(f"{path}: corrupted manifest ({e})") from None
        if m.get("format") != STORE_FORMAT or m.get("version") != _VERSION:
            raise ValueError(f"{path}: expected a {STORE_FORMAT!r} version {_VERSION} manifest, "
                             f"got {m.get('format')!r} version {m.get('version')!r}")
        return m

    def _write_manifest(self, m: dict) -> None:
        _fsync_dir(self.path)  # the files it names are durable before it is
        tmp = os.path.join(self.path, f".tmp-{MANIFEST}")
        with open(tmp, "w") as f:
            json.dump(m, f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, os.path.join(self.path, MANIFEST))
        _fsync_dir(self.path)

    class _Lock:
        def __init__(self, store):
            self.store = store

        def __enter__(self):
            s = self.store
            if s.readonly:
                raise PermissionError(f"{s.path}: segment store opened readonly")
            s._thread_lock.acquire()
            self.f = open(os.path.join(s.path, "write.lock"), "a+")
            deadline = time.monotonic() + s.lock_timeout_s
            while True:
                try:
                    fcntl.flock(self.f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    return self
                except BlockingIOError:
                    if time.monotonic() >= deadline:
                        self.f.close()
                        s._thread_lock.release()
                        raise TimeoutError(f"{s.path}: another process holds the write lock") from None
                    time.sleep(0.01)

        def __exit__(self, *exc):
            fcntl.flock(self.f, fcntl.LOCK_UN)
            self.f.close()
            self.store._thread_lock.release()

    def _locked(self):
        return SegmentStore._Lock(self)

    def _repair(self) -> list[str]:
        """Delete files the manifest does not name (left by a killed commit or compaction)."""
        m = self._read_manifest()
        keep = {MANIFEST, "write.lock"} | {t["name"] for t in m["tombstones"]}
        keep |= {s["name"] + x for s in m["segments"] for x in (".vec.npy", ".ids.npy", ".codes.npy")}
        removed = [n for n in os.listdir(self.path) if n not in keep]
        for n in removed:
            os.unlink(os.path.join(self.path, n))
        return sorted(removed)

    # -- reading -----------------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        """The last committed state, memory-mapped (retried if compaction removed a file meanwhile)."""
        for _ in range(100):
            try:
                return Snapshot(self.path, self._read_manifest())
            except FileNotFoundError:
                time.sleep(0.01)  # the manifest changed between reading it and opening its files
        return Snapshot(self.path, self._read_manifest())

    @property
    def generation(self) -> int:
        return int(self._read_manifest()["generation"])

    # -- writing -----------------------------------------------------------------------------------
    def commit(self, x=None, ids=None, codes=None, *, delete=None) -> int:
        """One commit: append rows ``x`` (n, d) with ``ids`` (n,) (and ``codes`` (n,) uint64), and/or
        delete ids (rows of earlier commits). Returns the new generation. Ids of live rows must not be
        appended again (delete them in the same or an earlier commit first)."""
        rows = None
        if x is not None:
            x = as_matrix(x, self.d, name="x")
            ids = as_ids(ids, len(x))
            if len(np.unique(ids)) != len(ids):
                raise ValueError("ids: duplicate ids in the batch")
            if codes is not None:
                codes = np.asarray(codes)
                if codes.shape != (len(x),) or codes.dtype.kind not in "iu":
                    raise ValueError(f"codes: expected ({len(x)},) unsigned integers, got {codes.shape} {codes.dtype}")
            rows = (x.astype(self.dtype), ids, None if codes is None else codes.astype(np.uint64))
        dead = None
        if delete is not None:
            arr = np.asarray(delete)
            dead = np.unique(as_ids(arr.reshape(-1), arr.size))
        with self._locked():
            m = self._read_manifest()
            gen = m["generation"] + 1
            tag = secrets.token_hex(4)
            if rows is not None and len(rows[1]):
                name = f"seg-{gen:010d}-{tag}"
                _write_npy(self.path, name + ".vec.npy", rows[0])
                _write_npy(self.path, name + ".ids.npy", rows[1])
                if rows[2] is not None:
                    _write_npy(self.path, name + ".codes.npy", rows[2])
                m["segments"].append({"name": name, "gen": gen, "n": int(len(rows[1])), "codes": rows[2] is not None})
            if dead is not None and len(dead):
                name = f"del-{gen:010d}-{tag}.npy"
                _write_npy(self.path, name, dead)
                m["tombstones"].append({"name": name, "gen": gen, "n": int(len(dead))})
            m["generation"] = gen
            self._write_manifest(m)
        return gen

    def compact(self, *, chunk_rows: int = 1 << 18) -> dict:
        """Merge the current segments into one without deleted rows (see the module docstring).

        Returns {"generation", "merged_segments", "rows", "dropped_rows", "seconds"}; a store with at
        most one segment and no tombstones is left as is."""
        t0 = time.perf_counter()
        snap = self.snapshot()
        if len(snap.segments) <= 1 and not snap.manifest["tombstones"]:
            return {"generation": snap.generation, "merged_segments": 0, "rows": snap.ntotal, "dropped_rows": 0,
                    "seconds": time.perf_counter() - t0}
        n_live = snap.ntotal
        with_codes = all(s.codes is not None for s in snap.segments)
        name = f"seg-{snap.generation:010d}-c{secrets.token_hex(4)}"
        paths = {k: os.path.join(self.path, f".tmp-{name}.{k}.npy") for k in ("vec", "ids", "codes")}
        out = {"vec": np.lib.format.open_memmap(paths["vec"], "w+", np.dtype(self.dtype), (n_live, self.d)),
               "ids": np.lib.format.open_memmap(paths["ids"], "w+", np.int64, (n_live,))}
        if with_codes:
            out["codes"] = np.lib.format.open_memmap(paths["codes"], "w+", np.uint64, (n_live,))
        pos = 0
        for v, i, c in snap.chunks(chunk_rows):  # streamed: memory bounded by chunk_rows
            out["vec"][pos : pos + len(i)], out["ids"][pos : pos + len(i)] = v, i
            if with_codes:
                out["codes"][pos : pos + len(i)] = c
            pos += len(i)
        assert pos == n_live
        for k, arr in out.items():
            arr.flush()
            with open(paths[k], "rb+") as f:
                os.fsync(f.fileno())
            del arr
        out.clear()
        for k in ("vec", "ids") + (("codes",) if with_codes else ()):
            os.replace(paths[k], os.path.join(self.path, f"{name}.{k}.npy"))
        merged_names = {s.name for s in snap.segments}
        with self._locked():  # the swap: only this waits for (and holds up) commits
            m = self._read_manifest()
            later = [s for s in m["segments"] if s["gen"] > snap.generation]
            gone = [s for s in m["segments"] if s["name"] in merged_names]
            if len(gone) != len(snap.segments):  # another compaction swapped first: ours is stale
                for k in ("vec", "ids", "codes"):
                    p = os.path.join(self.path, f"{name}.{k}.npy")
                    if os.path.exists(p):
                        os.unlink(p)
                raise RuntimeError(f"{self.path}: the store was compacted concurrently; nothing changed")
            m["segments"] = [{"name": name, "gen": snap.generation, "n": n_live, "codes": with_codes}] + later
            old_tombs = [t for t in m["tombstones"] if t["gen"] <= snap.generation]
            m["tombstones"] = [t for t in m["tombstones"] if t["gen"] > snap.generation]
            m["generation"] += 1
            self._write_manifest(m)
            for s in gone:  # mapped by readers' snapshots: their pages live on until unmapped
                for k in (".vec.npy", ".ids.npy", ".codes.npy"):
                    p = os.path.join(self.path, s["name"] + k)
                    if os.path.exists(p):
                        os.unlink(p)
            for t in old_tombs:
                os.unlink(os.path.join(self.path, t["name"]))
        dropped = sum(len(s) for s in snap.segments) - n_live
        return {"generation": m["generation"], "merged_segments": len(snap.segments), "rows": n_live,
                "dropped_rows": int(dropped), "seconds": time.perf_counter() - t0}

    def drop_through(self, generation: int) -> list[str]:
        """Forget the segments and tombstones of generations <= ``generation`` (their rows now live
        elsewhere: a base file written as of that generation) and delete their files; one manifest
        write under the lock. Returns the names deleted."""
        with self._locked():
            m = self._read_manifest()
            gone = [s for s in m["segments"] if s["gen"] <= generation]
            old_tombs = [t for t in m["tombstones"] if t["gen"] <= generation]
            if not gone and not old_tombs:
                return []
            m["segments"] = [s for s in m["segments"] if s["gen"] > generation]
            m["tombstones"] = [t for t in m["tombstones"] if t["gen"] > generation]
            self._write_manifest(m)
            names = [s["name"] + k for s in gone for k in (".vec.npy", ".ids.npy", ".codes.npy")]
            names += [t["name"] for t in old_tombs]
            removed = []
            for n in names:  # mapped by readers' snapshots: their pages live on until unmapped
                p = os.path.join(self.path, n)
                if os.path.exists(p):
                    os.unlink(p)
                    removed.append(n)
            return removed

    def compact_in_background(self, **kw) -> threading.Thread:
        """:meth:`compact` on a thread (started); its result or exception lands in ``thread.result``."""
        def run():
            try:
                t.result = self.compact(**kw)
            except BaseException as e:  # noqa: BLE001 -- handed to the caller
                t.result = e

        t = threading.Thread(target=run, name="flowhash-compact", daemon=True)
        t.result = None
        t.start()
        return t
