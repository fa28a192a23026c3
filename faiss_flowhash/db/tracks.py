"""The LMDB track store: track records, content hashes and the database's metadata record.

One LMDB environment (a directory) with three named databases, values msgpack-encoded:

- ``meta``:   ``b"db"`` -> {"format", "version", "model_id", "K", "created", "next_track_id", ...}
- ``tracks``: track id (8-byte big-endian) -> :class:`TrackRecord` fields
- ``hashes``: content hash (hex, utf-8) -> track id (8-byte big-endian)

LMDB gives one writer and any number of readers (other processes included) that each see the last
committed transaction; a write transaction commits all of its records or none.

The map (the largest size the environment may reach) starts small (``map_size``, 16 MiB) and grows:
a write transaction that fills it (``lmdb.MapFullError``) is aborted, the map doubled
(``Environment.set_mapsize``) and the transaction run again from the start, so it still commits all or
nothing. A process whose map another process outgrew (``lmdb.MapResizedError``) adopts the new size and
retries. LMDB requires no transaction of the process to be open while the map is resized, so every
transaction holds a per-environment shared lock and a resize takes it exclusively.
"""

import contextlib
import os
import struct
import threading
from dataclasses import asdict, dataclass

import lmdb
import msgpack

__all__ = ["TrackRecord", "TrackStore", "DEFAULT_MAP_SIZE"]

_KEY = struct.Struct(">Q")
DEFAULT_MAP_SIZE = 16 << 20  # initial map, bytes; doubled whenever a write fills it

class _SharedExclusive:
    """Many holders of the shared side at once, or one of the exclusive side (writers preferred)."""

    def __init__(self):
        self._cond = threading.Condition()
        self._shared = 0
        self._exclusive = False
        self._waiting = 0

    @contextlib.contextmanager
    def shared(self):
        with self._cond:
            while self._exclusive or self._waiting:
                self._cond.wait()
            self._shared += 1
        try:
            yield
        finally:
            with self._cond:
                self._shared -= 1
                if self._shared == 0:
                    self._cond.notify_all()

    @contextlib.contextmanager
    def exclusive(self):
        with self._cond:
            self._waiting += 1
            while self._exclusive or self._shared:
                self._cond.wait()
            self._waiting -= 1
            self._exclusive = True
        try:
            yield
        finally:
            with self._cond:
                self._exclusive = False
                self._cond.notify_all()


class _Env:
    """One process-wide lmdb.Environment, its resize lock and its reference count."""

    def __init__(self, env):
        self.env, self.lock, self.refs = env, _SharedExclusive(), 1

    def grow(self, seen_size: int) -> None:
        """Double the map, unless another thread already grew it past ``seen_size``."""
        with self.lock.exclusive():
            if self.env.info()["map_size"] <= seen_size:
                self.env.set_mapsize(2 * seen_size)

    def adopt(self) -> None:
        """Adopt the map size another process grew the environment to."""
        with self.lock.exclusive():
            self.env.set_mapsize(0)


# LMDB refuses to open one environment twice in a process: TrackStores on the same path share one
# Environment (opened writable whenever the directory is writable), counted by reference.
_ENVS: dict[str, _Env] = {}
_ENVS_LOCK = threading.Lock()


def _acquire_env(path: str, *, readonly: bool, map_size: int) -> tuple[str, _Env]:
    key = os.path.realpath(path)
    with _ENVS_LOCK:
        if key in _ENVS:
            _ENVS[key].refs += 1
            return key, _ENVS[key]
        ro = readonly and not (os.path.isdir(path) and os.access(path, os.W_OK))
        # an existing environment larger than map_size opens at its used size (LMDB takes the larger)
        env = lmdb.open(path, map_size=map_size, max_dbs=4, readonly=ro, subdir=True, create=not readonly)
        _ENVS[key] = _Env(env)
        return key, _ENVS[key]


def _release_env(key: str) -> None:
    with _ENVS_LOCK:
        entry = _ENVS.get(key)
        if entry is None:
            return
        entry.refs -= 1
        if entry.refs == 0:
            entry.env.close()
            del _ENVS[key]


@dataclass(frozen=True)
class TrackRecord:
    """One ingested audio file.

    Attributes:
        track_id: id of the track (its fingerprints have ids ``first_id .. first_id + n_fingerprints - 1``).
        path: absolute path at ingest time.
        duration_s: decoded duration, seconds.
        content_hash: hex sha256 of the file's bytes (ingest skips a file whose hash is present).
        sample_rate: rate the audio was fingerprinted at (Hz).
        first_id: first fingerprint id (see :mod:`faiss_flowhash.db.ids`).
        n_fingerprints: fingerprints stored (1 s windows every hop).
        model_id: fingerprint model that produced them.
        added: UTC time of ingest, ISO 8601.
    """

    track_id: int
    path: str
    duration_s: float
    content_hash: str
    sample_rate: int
    first_id: int
    n_fingerprints: int
    model_id: str
    added: str

    def to_bytes(self) -> bytes:
        return msgpack.packb(asdict(self), use_bin_type=True)

    @classmethod
    def from_bytes(cls, data: bytes) -> "TrackRecord":
        return cls(**msgpack.unpackb(data, raw=False))


class TrackStore:
    """Track records and metadata in an LMDB environment at ``path`` (a directory).

    Args:
        path: the environment directory (created unless ``readonly``).
        readonly: open for reading only (the directory must exist).
        map_size: initial map size, bytes (None: ``DEFAULT_MAP_SIZE``, 16 MiB); the map doubles whenever
            a write fills it, and an existing environment opens at least at its used size.
    """

    def __init__(self, path, *, readonly: bool = False, map_size: int | None = None):
        path = os.fspath(path)
        map_size = DEFAULT_MAP_SIZE if map_size is None else map_size
        if isinstance(map_size, bool) or not isinstance(map_size, int) or map_size < 1 << 12:
            raise ValueError(f"map_size: expected an int >= 4096 (bytes), got {map_size!r}")
        if readonly and not os.path.isdir(path):
            raise FileNotFoundError(f"{path}: no track store (LMDB environment)")
        self.path, self.readonly = path, readonly
        self._key, self._env = _acquire_env(path, readonly=readonly, map_size=map_size)
        self.env = self._env.env
        try:
            create = not self.env.flags()["readonly"]
            self._meta, self._tracks, self._hashes = (self._open_db(n, create) for n in (b"meta", b"tracks", b"hashes"))
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Release the environment (closed when the last TrackStore on it closes); idempotent."""
        if self._key is not None:
            _release_env(self._key)
            self._key = None

    def _writable(self) -> None:
        if self.readonly:
            raise PermissionError(f"{self.path}: track store opened readonly")

    def _open_db(self, name: bytes, create: bool):
        while True:  # creating a named database is a write transaction of its own: it may fill the map
            with self._env.lock.shared():
                size = self.env.info()["map_size"]
                try:
                    return self.env.open_db(name, create=create)
                except lmdb.MapFullError:
                    pass
            self._env.grow(size)

    def _run(self, fn, *, write: bool = False, db=None):
        """``fn(txn)`` in one transaction; a full map is doubled and the whole transaction run again."""
        while True:
            with self._env.lock.shared():
                size = self.env.info()["map_size"]
                try:
                    with self.env.begin(db=db, write=write) as txn:
                        return fn(txn)  # the with block commits (write) or aborts on any exception
                except lmdb.MapFullError:
                    pass
                except lmdb.MapResizedError:
                    size = None
            if size is None:
                self._env.adopt()
            else:
                self._env.grow(size)

    def map_size(self) -> int:
        """The map's current size, bytes (what the environment may grow to before it is resized)."""
        return int(self.env.info()["map_size"])

    # -- metadata -------------------------------------------------------------------------------
    def get_meta(self) -> dict | None:
        data = self._run(lambda txn: txn.get(b"db"), db=self._meta)
        return None if data is None else msgpack.unpackb(data, raw=False)

    def put_meta(self, meta: dict) -> None:
        self._writable()
        data = msgpack.packb(meta, use_bin_type=True)
        self._run(lambda txn: txn.put(b"db", data), write=True, db=self._meta)

    # -- tracks ---------------------------------------------------------------------------------
    def get(self, track_id: int) -> TrackRecord | None:
        data = self._run(lambda txn: txn.get(_KEY.pack(int(track_id))), db=self._tracks)
        return None if data is None else TrackRecord.from_bytes(data)

    def get_many(self, track_ids) -> dict[int, TrackRecord]:
        """Records of the given ids that exist, in one read transaction."""
        track_ids = [int(t) for t in track_ids]

        def read(txn):
            out = {}
            for t in track_ids:
                data = txn.get(_KEY.pack(t))
                if data is not None:
                    out[t] = TrackRecord.from_bytes(data)
            return out

        return self._run(read, db=self._tracks)

    def by_hash(self, content_hash: str) -> int | None:
        data = self._run(lambda txn: txn.get(content_hash.encode()), db=self._hashes)
        return None if data is None else _KEY.unpack(data)[0]

    def all(self) -> list[TrackRecord]:
        """Every record, by track id."""
        return self._run(lambda txn: [TrackRecord.from_bytes(v) for _, v in txn.cursor()], db=self._tracks)

    def count(self) -> int:
        return self._run(lambda txn: txn.stat(self._tracks)["entries"], db=self._tracks)

    def commit(self, records: list[TrackRecord], *, meta: dict | None = None) -> None:
        """Add ``records`` (and replace the metadata record when given) in one transaction."""
        self._writable()
        rows = [(_KEY.pack(r.track_id), r.to_bytes(), r.content_hash.encode()) for r in records]
        meta_bytes = None if meta is None else msgpack.packb(meta, use_bin_type=True)

        def write(txn):
            for key, value, h in rows:
                txn.put(key, value, db=self._tracks)
                txn.put(h, key, db=self._hashes)
            if meta_bytes is not None:
                txn.put(b"db", meta_bytes, db=self._meta)

        self._run(write, write=True)

    def delete(self, track_ids) -> list[TrackRecord]:
        """Delete these tracks (and their hashes) in one transaction; returns the records deleted."""
        self._writable()
        track_ids = [int(t) for t in track_ids]

        def delete(txn):
            out = []
            for t in track_ids:
                key = _KEY.pack(t)
                data = txn.get(key, db=self._tracks)
                if data is None:
                    continue
                r = TrackRecord.from_bytes(data)
                txn.delete(key, db=self._tracks)
                if txn.get(r.content_hash.encode(), db=self._hashes) == key:
                    txn.delete(r.content_hash.encode(), db=self._hashes)
                out.append(r)
            return out

        return self._run(delete, write=True)

    def disk_bytes(self) -> int:
        """Bytes the environment's files occupy on disk (allocated blocks: data.mdb is sparse)."""
        total = 0
        for name in os.listdir(self.path):
            st = os.stat(os.path.join(self.path, name))
            total += min(st.st_size, st.st_blocks * 512)
        return total
