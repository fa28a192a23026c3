"""The LMDB track store: track records, content hashes and the database's metadata record.

One LMDB environment (a directory) with three named databases, values msgpack-encoded:

- ``meta``:   ``b"db"`` -> {"format", "version", "model_id", "K", "created", "next_track_id", ...}
- ``tracks``: track id (8-byte big-endian) -> :class:`TrackRecord` fields
- ``hashes``: content hash (hex, utf-8) -> track id (8-byte big-endian)

LMDB gives one writer and any number of readers (other processes included) that each see the last
committed transaction; a write transaction commits all of its records or none.
"""

import os
import struct
import threading
from dataclasses import asdict, dataclass

import lmdb
import msgpack

__all__ = ["TrackRecord", "TrackStore"]

_KEY = struct.Struct(">Q")

# LMDB refuses to open one environment twice in a process: TrackStores on the same path share one
# Environment (opened writable whenever the directory is writable), counted by reference.
_ENVS: dict[str, list] = {}
_ENVS_LOCK = threading.Lock()


def _acquire_env(path: str, *, readonly: bool, map_size: int):
    key = os.path.realpath(path)
    with _ENVS_LOCK:
        if key in _ENVS:
            _ENVS[key][1] += 1
            return key, _ENVS[key][0]
        ro = readonly and not (os.path.isdir(path) and os.access(path, os.W_OK))
        env = lmdb.open(path, map_size=map_size, max_dbs=4, readonly=ro, subdir=True, create=not readonly)
        _ENVS[key] = [env, 1]
        return key, env


def _release_env(key: str) -> None:
    with _ENVS_LOCK:
        entry = _ENVS.get(key)
        if entry is None:
            return
        entry[1] -= 1
        if entry[1] == 0:
            entry[0].close()
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
        map_size: largest size the environment may grow to, bytes (1 GiB; the file is sparse).
    """

    def __init__(self, path, *, readonly: bool = False, map_size: int = 1 << 30):
        path = os.fspath(path)
        if readonly and not os.path.isdir(path):
            raise FileNotFoundError(f"{path}: no track store (LMDB environment)")
        self.path, self.readonly = path, readonly
        self._key, self.env = _acquire_env(path, readonly=readonly, map_size=map_size)
        try:
            create = not self.env.flags()["readonly"]
            self._meta = self.env.open_db(b"meta", create=create)
            self._tracks = self.env.open_db(b"tracks", create=create)
            self._hashes = self.env.open_db(b"hashes", create=create)
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

    # -- metadata -------------------------------------------------------------------------------
    def get_meta(self) -> dict | None:
        with self.env.begin(db=self._meta) as txn:
            data = txn.get(b"db")
        return None if data is None else msgpack.unpackb(data, raw=False)

    def put_meta(self, meta: dict) -> None:
        self._writable()
        with self.env.begin(db=self._meta, write=True) as txn:
            txn.put(b"db", msgpack.packb(meta, use_bin_type=True))

    # -- tracks ---------------------------------------------------------------------------------
    def get(self, track_id: int) -> TrackRecord | None:
        with self.env.begin(db=self._tracks) as txn:
            data = txn.get(_KEY.pack(int(track_id)))
        return None if data is None else TrackRecord.from_bytes(data)

    def get_many(self, track_ids) -> dict[int, TrackRecord]:
        """Records of the given ids that exist, in one read transaction."""
        out = {}
        with self.env.begin(db=self._tracks) as txn:
            for t in track_ids:
                data = txn.get(_KEY.pack(int(t)))
                if data is not None:
                    out[int(t)] = TrackRecord.from_bytes(data)
        return out

    def by_hash(self, content_hash: str) -> int | None:
        with self.env.begin(db=self._hashes) as txn:
            data = txn.get(content_hash.encode())
        return None if data is None else _KEY.unpack(data)[0]

    def all(self) -> list[TrackRecord]:
        """Every record, by track id."""
        with self.env.begin(db=self._tracks) as txn:
            return [TrackRecord.from_bytes(v) for _, v in txn.cursor()]

    def count(self) -> int:
        with self.env.begin(db=self._tracks) as txn:
            return txn.stat(self._tracks)["entries"]

    def commit(self, records: list[TrackRecord], *, meta: dict | None = None) -> None:
        """Add ``records`` (and replace the metadata record when given) in one transaction."""
        self._writable()
        with self.env.begin(write=True) as txn:
            for r in records:
                txn.put(_KEY.pack(r.track_id), r.to_bytes(), db=self._tracks)
                txn.put(r.content_hash.encode(), _KEY.pack(r.track_id), db=self._hashes)
            if meta is not None:
                txn.put(b"db", msgpack.packb(meta, use_bin_type=True), db=self._meta)

    def delete(self, track_ids) -> list[TrackRecord]:
        """Delete these tracks (and their hashes) in one transaction; returns the records deleted."""
        self._writable()
        out = []
        with self.env.begin(write=True) as txn:
            for t in track_ids:
                key = _KEY.pack(int(t))
                data = txn.get(key, db=self._tracks)
                if data is None:
                    continue
                r = TrackRecord.from_bytes(data)
                txn.delete(key, db=self._tracks)
                if txn.get(r.content_hash.encode(), db=self._hashes) == key:
                    txn.delete(r.content_hash.encode(), db=self._hashes)
                out.append(r)
        return out

    def disk_bytes(self) -> int:
        """Bytes the environment's files occupy on disk (allocated blocks: data.mdb is sparse)."""
        total = 0
        for name in os.listdir(self.path):
            st = os.stat(os.path.join(self.path, name))
            total += min(st.st_size, st.st_blocks * 512)
        return total
