"""FingerprintDB: a directory holding a FlowHashIndex file and an LMDB track store.

Layout of ``path/``::

    index.flowhash   the FlowHashIndex as of its last full write (the base: first commit, compaction)
    index.segments/  what each later commit added or removed, one append-only segment per commit
                     (:mod:`faiss_flowhash.db.index_store`: a commit writes only its own vectors)
    tracks.lmdb/     TrackStore: metadata record, track records, content hashes (msgpack values)
    write.lock       flock'ed by the one process that writes (ingest, remove, repair)

Fingerprint ids encode (track, frame) arithmetically (:mod:`faiss_flowhash.db.ids`), so no Python
object per fingerprint exists anywhere.

Commit protocol (crash safety). Ingest works in batches; a batch is committed by appending its vectors to
the index (a new segment, committed by an atomic manifest rename; the first batch writes the base file
atomically), then the LMDB transaction with its track records. Remove deletes the LMDB records first,
then commits a tombstone of the ids. ``compact()`` (``flowhash compact DB``, and automatically once the
segments hold ``compact_ratio`` x the base) rewrites the base atomically while readers keep answering.
A process killed at any point therefore leaves (a) index ids whose track has no LMDB record, or (b)
LMDB records whose ids are not (all) in the index, never a half-written file. Queries ignore hits whose
track has no record (so a removed track vanishes from results at once, in every process), and the next
writer repairs (a) by removing those ids and (b) by dropping the record (re-running the ingest adds the
file again). Readers apply the commits made since they last looked (a new base is read whole).

Confidence threshold (``DEFAULT_MIN_CONFIDENCE = 0.70``, ``--min-confidence``) of the verified confidence
(:func:`~faiss_flowhash.db.consensus.verified_confidence`: every segment's similarity with the track at the
answer's alignment and its margin over the best other track's hit), chosen and measured on real music: see
:data:`~faiss_flowhash.db.consensus.DEFAULT_MIN_CONFIDENCE` and bench/results/nomatch.md (held out: 0.62 %
false matches at 86.8 % hits). What follows is the history of the hits-only confidence
(:func:`~faiss_flowhash.db.consensus.match_confidence`, now used where no reference windows are at hand, e.g.
``scan(verify=False)``, with ``HITS_MIN_CONFIDENCE = 0.35``; ``scan`` rates its spans by the verified
confidence too). It was calibrated with
``python -m faiss_flowhash.eval.calibrate --seed S`` on the shipped model 063ef8c90201e4ef: 15 reference
tracks of 20 s (music, speech, chirps), per seed 400 snippets of 1-5 s: 240 positives (clean / noise
10 dB / reverb + noise 5 dB, 80 each) and 160 negatives from audio not ingested (other music, other
words and voices, noise), with the defaults of vote_offsets / match_confidence (sim_floor 0.55,
sim_ceil 0.85, margin_weight 0.3, min_segments 3). A hit is the right track, the offset within 50 ms
and confidence >= threshold:

    seed  threshold  hit clean  hit noise10  hit reverb+noise5  hit all  no-match  largest negative
    0     none       0.988      0.850        0.700              0.846    0.000
    0     0.35       0.975      0.838        0.650              0.821    1.000     0.31
    1     none       1.000      0.838        0.738              0.858    0.000
    1     0.35       1.000      0.825        0.625              0.817    0.994     0.35 (1 of 160)
    2     none       1.000      0.863        0.700              0.854    0.000     (held out)
    2     0.35       1.000      0.825        0.600              0.808    1.000     0.26

So 479 of 480 negatives get "no match" while positives keep 96% of their hit rate (0.815 of 0.853 over
the three seeds; offsets refined by :func:`~faiss_flowhash.db.consensus.refine_offset`). The ramp,
margin weight and min_segments were chosen on seed 0 with the earlier model dae8284171152323 (grid
search: zero false matches, most hits; it gave 0.717/0.787/0.725 hit all and 480/480 no-match at 0.35,
before offset refinement) and kept for this one. A larger collection (``calibration_hits(fp,
n_tracks=100, n_queries=300, seed=5)``, 33 min of reference audio; before offset refinement): hit all
0.772 without threshold, 0.728 at 0.35, no-match 0.992 (1 of 120 negatives, at 0.42; none above 0.45):
false matches grow with the collection. Raise the threshold (0.45) where a false match is costly, lower
it (0.25) for more hits on heavily distorted audio at ~1-2% false matches, and re-run the calibration on
audio like yours or after changing the model.

Since the one identification path (:func:`faiss_flowhash.db.identify.identify`: a segment agreeing with
any of a track's equal repeats counts once for the track's evidence) the calibration gives, seed 1, the
same hit rates at 0.35 (0.817 all) and the same no-match rate (0.994, largest negative 0.352); the
runner-up negatives move by at most 0.016 (bench/results/audiopath.md). With the snippets rendered by the
one distortion protocol (:mod:`faiss_flowhash.audio.distort`; ``python -m faiss_flowhash.eval.calibrate``
now) at 0.35: seed 0 hit all 0.833 (no threshold 0.863), no-match 0.994 (largest negative 0.361); seed 1
hit all 0.871 (0.892), no-match 0.994 (largest 0.392): one false match in 160 per seed, as before.
"""

from __future__ import annotations

import contextlib
import os
import time
from dataclasses import replace
from datetime import datetime, timezone

import numpy as np
from tqdm import tqdm

from ..audio.files import expand_paths
from ..audio.io import AudioDecodeError, content_hash, load_audio
from ..audio.stream import audio_chunks
from .consensus import DEFAULT_MIN_CONFIDENCE, HITS_MIN_CONFIDENCE
from .identify import identify
from .index_settings import db_search_params, new_db_index
from .spans import SpanTracker
from .ids import decode_ids, encode_ids
from .lock import write_lock
from .index_store import DEFAULT_COMPACT_RATIO, INDEX_FILE, SEGMENTS_DIR, IndexStore, ReadWriteLock
from .repair import plan_repair
from .results import IngestReport, Match, QueryResult
from .tracks import TrackRecord, TrackStore

__all__ = ["FingerprintDB", "DatabaseMismatchError", "SnippetTooShortError", "FORMAT", "FORMAT_VERSION", "DEFAULT_MIN_CONFIDENCE"]

FORMAT = "faiss-flowhash-db"
FORMAT_VERSION = 1
TRACKS_DIR, LOCK_FILE = "tracks.lmdb", "write.lock"
_MIN_FLOW_VECTORS = 256  # fewest (window, next window) pairs the index's own flow is trained on


class DatabaseMismatchError(ValueError):
    """The database was written in another format version or with another fingerprint model."""


class SnippetTooShortError(ValueError):
    """A query snippet shorter than one fingerprint window: there is nothing to identify."""


def _now() -> str:
    return datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def _sig_json(sig) -> list:
    """An index-store signature as it reads back from JSON (lists, None)."""
    return [None if s is None else list(s) for s in sig]


class _IndexWindows:
    """The reference windows of committed tracks, read from the index in one batch (``identify``'s
    ``reference``): frame f of track t is id ``records[t].first_id + f``."""

    def __init__(self, index: FlowHashIndex, records: dict):
        self.index, self.records = index, records

    def take(self, tracks, frames) -> np.ndarray:
        first = np.array([self.records[t].first_id if t in self.records else -1 for t in tracks.tolist()], np.int64)
        count = np.array([self.records[t].n_fingerprints if t in self.records else 0 for t in tracks.tolist()], np.int64)
        ok = (first >= 0) & (frames >= 0) & (frames < count)
        out = np.full((len(tracks), self.index.d), np.nan, np.float32)
        try:
            out[ok] = self.index.reconstruct_batch(first[ok] + frames[ok])
        except KeyError:  # the index file is older than a record (a writer is between its two steps)
            pass
        return out


class _CommittedWindows:
    """The reference windows of the tracks committed now, for the span tracker of ``scan``: each ``take`` reads
    the records of the tracks asked for, from ``index`` (set by ``scan`` to the index of the chunk searched)."""

    def __init__(self, store):
        self.store, self.index = store, None

    def take(self, tracks, frames) -> np.ndarray:
        tracks = np.asarray(tracks, np.int64)
        records = self.store.get_many(np.unique(tracks[tracks >= 0]).tolist())
        return _IndexWindows(self.index, records).take(tracks, np.asarray(frames, np.int64))


class FingerprintDB:
    """Audio fingerprint database: ingest files, identify snippets (track, offset, confidence), manage tracks.

    Args:
        path: the database directory.
        model: a :class:`Fingerprinter`, a model file path, or None: the model recorded in the database
            when it was created from a file that still exists, else the shipped default model.
        create: create the database when ``path`` holds none (True); else FileNotFoundError.
        readonly: open for queries only (no lock, no repair; what ``query``/``stats``/``list`` use).
        batch_files: ingest commits once at least this many files are pending (16) and either they add
            ``commit_growth`` (0.1) x the index's size or ``commit_interval_s`` (60 s) passed since the
            last commit: commits on a large database are spaced out, while a killed ingest loses at most
            the work since the last commit (each commit appends only its own vectors to the index).
        compact_ratio: a commit that leaves the index's segments holding at least this share of the base's
            vectors (added rows + removed ids) rewrites the base (:meth:`compact`; 0.1; None: never
            automatically). Open time grows with the segments (they are replayed), commits do not.
        hits_per_segment: index hits per 1 s query segment that vote (5).
        quantizer_config: how to train the index's flow when the model has none (None:
            ``QuantizerConfig(steps=1000, verbose=False)``; positives are each window's successor).
        min_train_vectors: fingerprints collected before that training (2000 = 200 s of audio).
        lock_timeout_s: how long a writer waits for another writer to finish (60 s).
        on_lock_wait: called once (no arguments) when a write finds another writer's lock and starts
            waiting for it (the command line says so on stderr); None: wait silently.

    Raises:
        DatabaseMismatchError (a ValueError): other format version or other model than the database's.
    """

    def __init__(self, path, model=None, *, create: bool = True, readonly: bool = False, batch_files: int = 16,
                 hits_per_segment: int = 5, quantizer_config: QuantizerConfig | None = None,
                 min_train_vectors: int = 2000,
                 lock_timeout_s: float = 60.0, commit_growth: float = 0.1, commit_interval_s: float = 60.0,
                 on_lock_wait=None, compact_ratio: float | None = DEFAULT_COMPACT_RATIO):
        for name, v in (("batch_files", batch_files), ("hits_per_segment", hits_per_segment),
                        ("min_train_vectors", min_train_vectors)):
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
        self.path = os.path.abspath(os.fspath(path))
        self.readonly, self.on_lock_wait = readonly, on_lock_wait
        if os.path.exists(self.path) and not os.path.isdir(self.path):
            raise NotADirectoryError(f"{self.path}: is a file, not a fingerprint database directory "
                                     "(the database is a directory; ingest creates it)")
        if not commit_growth >= 0 or not commit_interval_s >= 0:
            raise ValueError(f"commit_growth, commit_interval_s: expected >= 0, got {commit_growth}, {commit_interval_s}")
        self.batch_files, self.hits_per_segment = batch_files, hits_per_segment
        self.commit_growth, self.commit_interval_s = float(commit_growth), float(commit_interval_s)
        if quantizer_config is not None:
            from ..index import QuantizerConfig

            if not isinstance(quantizer_config, QuantizerConfig):
                raise TypeError(f"quantizer_config: expected a QuantizerConfig or None, got {type(quantizer_config).__name__}")
        self.quantizer_config = quantizer_config
        self.min_train_vectors, self.lock_timeout_s = min_train_vectors, lock_timeout_s
        if compact_ratio is not None and not compact_ratio > 0:
            raise ValueError(f"compact_ratio: expected None or a number > 0, got {compact_ratio!r}")
        self.compact_ratio = compact_ratio
        self._index_path = os.path.join(self.path, INDEX_FILE)
        self._istore = IndexStore(self.path, readonly=readonly, lock_timeout_s=lock_timeout_s)
        self._guard = ReadWriteLock()  # searches (shared) vs a refresh that applies new commits in place
        tracks_dir = os.path.join(self.path, TRACKS_DIR)
        if not os.path.isdir(tracks_dir):
            if readonly or not create:
                raise FileNotFoundError(f"{self.path}: no fingerprint database here (create it with ingest)")
            os.makedirs(self.path, exist_ok=True)
        self._store = TrackStore(tracks_dir, readonly=readonly)
        try:
            meta = self._store.get_meta()
            # a reader opened without a model loads it (torch) and the index at first use: listing tracks
            # needs neither; a model given, a writer or a new database load them now (and check them)
            eager = model is not None or not readonly or meta is None
            model_path = None if meta is None else meta.get("model_path")
            if model is None and model_path and os.path.isfile(model_path):
                model = model_path
            self._model_spec, self._fingerprinter = model, None
            if meta is None:
                if readonly:
                    raise FileNotFoundError(f"{self.path}: the database was never initialised")
                meta = self._initial_meta(model)
                self._store.put_meta(meta)
            self._check_format(meta)
            self._meta = meta
            self._index, self._index_sig = None, None
            self.last_repair: dict = {}
            if eager:
                self._check_model(meta, self.fingerprinter)
                self._reload_index()
            if not readonly:
                with self._writing(wait=False):
                    pass  # repairs when no other process is writing (a busy writer repairs on its own)
        except BaseException:
            self._store.close()
            raise

    # -- opening --------------------------------------------------------------------------------
    @property
    def fingerprinter(self) -> Fingerprinter:
        """The fingerprint model (loaded at first use when the database was opened without one)."""
        if self._fingerprinter is None:
            fp = self._load_model(self._model_spec)
            self._check_model(self._meta if hasattr(self, "_meta") else None, fp)
            self._fingerprinter = fp
        return self._fingerprinter

    @staticmethod
    def _load_model(model) -> Fingerprinter:
        from ..audio.fingerprinter import Fingerprinter

        if model is None or isinstance(model, (str, os.PathLike)):
            return Fingerprinter.load(model)
        if not isinstance(model, Fingerprinter):
            raise TypeError(f"model: expected a Fingerprinter, a model path or None, got {type(model).__name__}")
        return model

    def _initial_meta(self, model) -> dict:
        fp = self.fingerprinter
        return {"format": FORMAT, "version": FORMAT_VERSION, "model_id": fp.model_id,
                "model_path": os.path.abspath(os.fspath(model)) if isinstance(model, (str, os.PathLike)) else None,
                "K": fp.quantizer.K if fp.quantizer is not None else 16, "dim": fp.dim, "hop_s": fp.hop_s,
                "sample_rate": fp.sample_rate, "created": _now(), "next_track_id": 0}

    def _check_format(self, meta: dict) -> None:
        if meta.get("format") != FORMAT:
            raise DatabaseMismatchError(f"{self.path}: expected a {FORMAT!r} database, found format {meta.get('format')!r}")
        if meta.get("version") != FORMAT_VERSION:
            raise DatabaseMismatchError(
                f"{self.path}: database format version {meta.get('version')!r}; this faiss-flowhash reads version "
                f"{FORMAT_VERSION} (re-ingest the audio into a new database)")

    def _check_model(self, meta: dict | None, fp: Fingerprinter) -> None:
        if meta is None:  # creating the database: its metadata comes from this model
            return
        if meta.get("model_id") != fp.model_id:
            where = f" (built from {meta['model_path']})" if meta.get("model_path") else ""
            raise DatabaseMismatchError(
                f"{self.path}: database built with fingerprint model {meta.get('model_id')!r}{where}, but the model "
                f"given is {fp.model_id!r}; pass the database's model (--model) or use a new database")
        if meta.get("hop_s") != fp.hop_s:
            raise DatabaseMismatchError(f"{self.path}: database hop {meta.get('hop_s')} s, model hop {fp.hop_s} s")

    def close(self) -> None:
        """Release the track store; later calls raise ValueError. Idempotent."""
        self._closed = True
        self._store.close()

    def _check_open(self) -> None:
        if getattr(self, "_closed", False):
            raise ValueError(f"{self.path}: the database is closed")

    def __enter__(self) -> "FingerprintDB":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"FingerprintDB({self.path!r}, model_id={self._meta['model_id']!r}, readonly={self.readonly})"

    # -- index file -----------------------------------------------------------------------------
    @property
    def index(self) -> FlowHashIndex | None:
        """The FlowHashIndex as on disk now (re-read when its file changed); None before the first ingest.

        It may hold ids of tracks not (yet) committed; :meth:`tracks` lists the committed ones."""
        return self._reload_index()

    def _reload_index(self, force: bool = False) -> FlowHashIndex | None:
        """The index as on disk: when a commit happened since it was last read, the new commits are
        applied (a new base, or ``force``, reads it whole)."""
        sig = self._istore.signature
        if force or sig != self._index_sig:
            try:
                with self._guard.exclusive():  # the searches under way finish first (serve's threads)
                    self._index = self._istore.load() if force else self._istore.refresh(self._index)
            except ValueError as e:
                raise ValueError(f"{self._index_path}: {e}") from None
            if self._index is not None and self._index.d != self._meta["dim"]:
                raise DatabaseMismatchError(f"{self._index_path}: index d={self._index.d}, database d={self._meta['dim']}")
            self._index_sig = sig
        return self._index

    _index_dirty = False  # the in-memory index was changed and that change not (yet) committed

    def _index_committed(self) -> None:
        """After the writer committed its in-memory index: remember the files' state, and what stats
        reports about the index (recorded with the next LMDB write: stats then needs no torch)."""
        self._index_sig, self._index_dirty = self._istore.signature, False
        index, bal = self._index, self._index.balance() if self._index.ntotal else {}
        self._meta = {**self._meta, "index_summary": {
            "sig": _sig_json(self._index_sig), "ntotal": int(index.ntotal), "K": int(index.K),
            "buckets_used": int(bal.get("buckets_used", 0)), "empty_share": float(bal.get("empty_share", 1.0)),
            "max_over_mean": float(bal.get("max_over_mean", 0.0)), "within_k1_share": float(bal.get("within_k1_share", 0.0)),
            "memory_bytes": int(index.memory_bytes())}}

    # -- writer lock and repair -----------------------------------------------------------------
    @contextlib.contextmanager
    def _writing(self, *, wait: bool = True):
        """Hold the write lock (yields True), re-read the index and repair it; yields False without it."""
        if self.readonly:
            raise PermissionError(f"{self.path}: opened readonly")
        with write_lock(os.path.join(self.path, LOCK_FILE), timeout_s=self.lock_timeout_s if wait else 0.0,
                        on_wait=self.on_lock_wait) as held:
            if held:
                self._meta = self._store.get_meta()
                self._reload_index(force=self._index_dirty)  # new commits of other writers, or a clean copy
                self.last_repair = self._repair()
            yield held

    def _repair(self) -> dict:
        """Make index and track store agree after a crash (see the module docstring); returns what was done."""
        self._istore.repair()  # temporary files of a killed index write, segments a newer base holds
        ids = self._index.ids if self._index is not None else np.zeros(0, np.int64)
        plan = plan_repair(ids, self._store.all(), next_track_id=self._meta.get("next_track_id", 0))
        if plan.orphan_tracks:  # index first, then LMDB: the same order as a commit
            gone = ids[np.isin(decode_ids(ids)[0], plan.orphan_tracks)]
            self._index_dirty = True
            with self._guard.exclusive():
                self._index.remove_ids(gone)
            self._istore.delete(gone, self._index)
            self._index_committed()
            self._store.put_meta(self._meta)
        if plan.incomplete_records:
            self._store.delete(plan.incomplete_records)
        if plan.next_track_id != self._meta.get("next_track_id"):
            self._meta = {**self._meta, "next_track_id": plan.next_track_id}
            self._store.put_meta(self._meta)
        return {"dropped_index_tracks": plan.orphan_tracks, "dropped_records": plan.incomplete_records}

    # -- ingest ---------------------------------------------------------------------------------
    def ingest(self, paths, *, progress: bool = False) -> IngestReport:
        """Fingerprint and add audio files; see :func:`faiss_flowhash.audio.files.expand_paths` for ``paths``.

        Files already present (same content hash) are skipped; files that are missing, do not decode,
        are empty or shorter than one window are reported in ``failed`` and the rest is ingested.
        ``progress`` shows a tqdm bar (files/s, x real time) on stderr.
        """
        self._check_open()
        files, missing = expand_paths(paths)
        report = IngestReport(failed=list(missing))
        t_wait = time.perf_counter()
        with self._writing(), tqdm(total=len(files), unit="file", disable=not progress, dynamic_ncols=True) as bar:
            t0 = time.perf_counter()  # speed counts the work, not the wait for another writer's lock
            report.lock_wait_s = t0 - t_wait
            pending, batch_hashes, last_commit = [], set(), time.monotonic()
            for f in files:
                self._ingest_one(f, pending, batch_hashes, report)
                if self._should_commit(pending, last_commit):
                    self._commit(pending, report)
                    pending, batch_hashes, last_commit = [], set(), time.monotonic()
                bar.update(1)
                elapsed = time.perf_counter() - t0
                bar.set_postfix_str(f"{report.audio_s / max(elapsed, 1e-9):.0f}x real time", refresh=False)
            if pending:
                self._commit(pending, report)
        report.elapsed_s = time.perf_counter() - t0
        return report

    def _should_commit(self, pending: list, last_commit: float) -> bool:
        if len(pending) < self.batch_files:
            return False
        n_vec = sum(len(e) for _, e in pending)
        if self._index is None:  # the first commit (trains the flow when the model has none)
            return self.fingerprinter.quantizer is not None or n_vec >= self.min_train_vectors
        return (n_vec >= self.commit_growth * self._index.ntotal
                or time.monotonic() - last_commit >= self.commit_interval_s)

    def _ingest_one(self, f: str, pending: list, batch_hashes: set, report: IngestReport) -> None:
        fp = self.fingerprinter
        try:
            h = content_hash(f)
            if h in batch_hashes or self._store.by_hash(h) is not None:
                report.skipped.append((f, "already ingested (same content hash)"))
                return
            wave = load_audio(f, sample_rate=fp.sample_rate)
        except (AudioDecodeError, OSError) as e:
            report.failed.append((f, str(e.reason) if isinstance(e, AudioDecodeError) else f"{type(e).__name__}: {e}"))
            return
        duration = len(wave) / fp.sample_rate
        if duration < fp.window_s:
            report.failed.append((f, f"shorter than one {fp.window_s:g} s window ({duration:.2f} s)"))
            return
        emb = fp.fingerprint(wave)
        tid = int(self._meta["next_track_id"])
        first = int(encode_ids(tid, 1)[0])
        record = TrackRecord(track_id=tid, path=f, duration_s=float(duration), content_hash=h,
                             sample_rate=int(fp.sample_rate), first_id=first, n_fingerprints=int(len(emb)),
                             model_id=fp.model_id, added=_now())
        self._meta = {**self._meta, "next_track_id": tid + 1}
        pending.append((record, emb))
        batch_hashes.add(h)
        report.audio_s += duration

    def _commit(self, pending: list, report: IngestReport) -> None:
        """Index file first (atomic), then one LMDB transaction: see the commit protocol above."""
        if self._index is None:
            self._index = new_db_index(self.fingerprinter.dim, self._quantizer(pending))
        new_ids, self._index_dirty = [], True
        with self._guard.exclusive():  # this object's own searches (other threads) wait for the adds
            for record, emb in pending:
                new_ids.append(encode_ids(record.track_id, len(emb)))
                self._index.add_with_ids(emb, new_ids[-1])
        if pending:
            self._istore.append(np.concatenate([e for _, e in pending]), np.concatenate(new_ids), self._index)
        self._index_committed()
        self._store.commit([r for r, _ in pending], meta=self._meta)
        report.added += [r for r, _ in pending]
        self._maybe_compact()

    def _quantizer(self, pending: list) -> FlowQuantizer:
        """The model's trained flow, or one trained here on the first batch (positives: the next window)."""
        fp = self.fingerprinter
        if fp.quantizer is not None:
            return fp.quantizer
        pairs = [(e[:-1], e[1:]) for _, e in pending if len(e) > 1]
        n = sum(len(a) for a, _ in pairs)
        if n < _MIN_FLOW_VECTORS:
            raise ValueError(f"the model {fp.model_id} has no trained flow and the first ingest gave {n} fingerprint "
                             f"pairs to train one; expected at least {_MIN_FLOW_VECTORS} (ingest more audio at once)")
        from ..index import FlowQuantizer, QuantizerConfig

        x, x_pos = np.concatenate([a for a, _ in pairs]), np.concatenate([b for _, b in pairs])
        q = FlowQuantizer(fp.dim, int(self._meta["K"]), config=self.quantizer_config or QuantizerConfig(steps=1000, verbose=False))
        q.train(x, x_pos)
        return q

    # -- query ----------------------------------------------------------------------------------
    def query(self, query, *, top: int = 1, min_confidence: float = DEFAULT_MIN_CONFIDENCE,
              r_query: float | None = None, budget: int | None = None) -> QueryResult:
        """Identify a snippet: a path (decoded like ingest) or a wave (T,) float32 at 16 kHz.

        Returns at most ``top`` matches (best track first, one per track) whose confidence reaches
        ``min_confidence`` (0.70, calibrated on real music: see the module docstring); none means "no match".
        ``r_query``/``budget`` override the index's probe radius / candidate budget. Each match carries
        the other places of its track the snippet fits as well (``alternates``: repeats). A snippet
        shorter than one window (1 s) raises :class:`SnippetTooShortError` (a ValueError).
        """
        self._check_open()
        if isinstance(top, bool) or not isinstance(top, int) or top < 1:
            raise ValueError(f"top: expected an int >= 1, got {top!r}")
        if not 0 <= min_confidence <= 1:
            raise ValueError(f"min_confidence: expected in [0, 1], got {min_confidence}")
        t0 = time.perf_counter()
        fp = self.fingerprinter
        if isinstance(query, np.ndarray):
            wave, name = query, f"<wave {len(query) / fp.sample_rate:.2f} s>"
        elif isinstance(query, (str, os.PathLike)):
            wave, name = load_audio(query, sample_rate=fp.sample_rate), os.fspath(query)
        else:
            raise TypeError(f"query: expected a path or a np.ndarray wave (T,), got {type(query).__name__}")
        if len(wave) < fp.window_s * fp.sample_rate:
            raise SnippetTooShortError(
                f"{name}: {len(wave) / fp.sample_rate:.2f} s of audio is shorter than one {fp.window_s:g} s fingerprint "
                f"window, so there is nothing to identify (give at least {fp.window_s:g} s)")
        emb = fp.fingerprint(wave)
        result = QueryResult(query=name, n_segments=len(emb), duration_s=len(wave) / fp.sample_rate)
        index = self._reload_index()
        if index is not None and index.ntotal and len(emb):
            with self._guard.shared():  # a concurrent refresh changes the index in place
                D, I = index.search(emb, self.hits_per_segment, params=db_search_params(), r_query=r_query, budget=budget)
                result.eval_percent = float(index.last_search_stats.eval_percent)
                result.matches = self._consensus(index, emb, D, I, top, min_confidence)
        result.elapsed_ms = 1000 * (time.perf_counter() - t0)
        return result

    def scan(self, source, *, min_confidence: float | None = None, chunk_s: float = 10.0,
             r_query: float | None = None, budget: int | None = None, verify: bool = True):
        """Every matched span of a long recording or stream, yielded as each one ends (:class:`Span`).

        ``source``: a path, a binary stream (WAV or raw 16 kHz s16le, see
        :func:`faiss_flowhash.audio.stream.audio_chunks`), a wave (T,) or an iterable of 16 kHz float32
        waves (consecutive chunks). Audio is fingerprinted ``chunk_s`` seconds at a time and only the last 30 s
        of hits are kept (:class:`~faiss_flowhash.db.spans.SpanTracker`), so memory is bounded whatever
        the length. Spans of tracks removed meanwhile are dropped.

        A span opens where a block of segments is identified with ``min_confidence``: with ``verify`` (True)
        the tracker gets the segments' fingerprints and the reference windows, and rates a block as
        :meth:`query` rates a snippet (verified confidence; None: ``DEFAULT_MIN_CONFIDENCE``, 0.70); with
        ``verify=False`` on the hits alone (None: ``HITS_MIN_CONFIDENCE``, 0.35; more false spans on
        music not ingested: bench/results/spans.md). Spans shorter than the tracker's 3 s detection block
        are dropped (``SpanTracker.min_duration_s``).
        """
        self._check_open()
        if min_confidence is None:
            min_confidence = DEFAULT_MIN_CONFIDENCE if verify else HITS_MIN_CONFIDENCE
        if not 0 <= min_confidence <= 1:
            raise ValueError(f"min_confidence: expected in [0, 1], got {min_confidence}")
        fp = self.fingerprinter
        hop = int(round(fp.hop_s * fp.sample_rate))
        window = int(round(fp.window_s * fp.sample_rate))
        if isinstance(source, np.ndarray):
            chunks = [source]  # one wave
        elif isinstance(source, (str, os.PathLike)) or hasattr(source, "read"):
            chunks = audio_chunks(source, sample_rate=fp.sample_rate, chunk_s=chunk_s)
        else:
            chunks = source
        windows = _CommittedWindows(self._store) if verify else None
        tracker = SpanTracker(hop_s=fp.hop_s, window_s=fp.window_s, reference=windows, min_confidence=min_confidence)
        buf, pos = np.zeros(0, np.float32), 0  # pos: recording sample of buf[0] (a multiple of the hop)

        def named(spans):
            if not spans:
                return []
            records = self._store.get_many(sorted({s.track_id for s in spans}))
            return [replace(s, path=records[s.track_id].path) for s in spans if s.track_id in records]

        for chunk in chunks:
            buf = np.concatenate([buf, np.asarray(chunk, np.float32)])
            n = fp.num_windows(len(buf))
            index = self._reload_index()
            if n == 0 or index is None or not index.ntotal:
                continue
            wave = buf[: (n - 1) * hop + window]
            emb = fp.fingerprint(wave)
            levels = fp.window_levels(wave)
            with self._guard.shared():  # the tracker reads reference windows from the index: same guard
                D, I = index.search(emb, self.hits_per_segment, params=db_search_params(), r_query=r_query, budget=budget)
                tracks, frames = decode_ids(I)
                committed = list(self._store.get_many(np.unique(tracks[tracks >= 0]).tolist()))
                tracks = np.where(np.isin(tracks, committed), tracks, -1)  # uncommitted / removed tracks: no vote
                if windows is not None:
                    windows.index = index
                ended = tracker.push((pos + np.arange(n) * hop) / fp.sample_rate, tracks, frames * fp.hop_s, D, levels,
                                     fingerprints=None if windows is None else emb)
            yield from named(ended)
            buf, pos = buf[n * hop:], pos + n * hop
        yield from named(tracker.finish())  # (finish rates nothing: no reference window is read)

    def _consensus(self, index, emb, D: np.ndarray, I: np.ndarray, top: int, min_confidence: float) -> list[Match]:
        hop = self.fingerprinter.hop_s
        tracks, frames = decode_ids(I)
        records = self._store.get_many(np.unique(tracks[tracks >= 0]).tolist())
        tracks = np.where(np.isin(tracks, list(records)), tracks, -1)  # uncommitted / removed tracks: no vote
        # the defaults of identify are the calibrated settings (module docstring)
        found = identify(tracks, frames * hop, D, np.arange(len(D)) * hop, query=emb,
                         reference=_IndexWindows(index, records), hop_s=hop, top=top, min_confidence=min_confidence)
        return [Match(track_id=m.track_id, path=records[m.track_id].path, offset_s=m.offset_s, score=m.score,
                      confidence=m.confidence, alternates=tuple((a.offset_s, a.score) for a in m.alternates))
                for m in found]

    # -- management -----------------------------------------------------------------------------
    def tracks(self) -> list[TrackRecord]:
        """Every committed track, by id."""
        self._check_open()
        return self._store.all()

    def remove(self, tracks) -> list[TrackRecord]:
        """Remove tracks given by id (int) or path (str / PathLike), one or a list; returns their records.

        KeyError (nothing removed) when one is not in the database. Their fingerprints leave search
        results at once (the LMDB records go first), then the index file is rewritten without them.
        """
        self._check_open()
        if isinstance(tracks, (int, np.integer, str, os.PathLike)):
            tracks = [tracks]
        with self._writing():
            records = self._store.all()
            by_id = {r.track_id: r for r in records}
            chosen = {}
            for t in tracks:
                if isinstance(t, (int, np.integer)) and not isinstance(t, bool):
                    found = [by_id[int(t)]] if int(t) in by_id else []
                elif isinstance(t, (str, os.PathLike)):
                    p = os.path.abspath(os.fspath(t))
                    found = [r for r in records if r.path == p]
                else:
                    raise TypeError(f"tracks: expected track ids (int) or paths (str), got {type(t).__name__}")
                if not found:
                    raise KeyError(f"no track {t!r} in {self.path}")
                chosen.update({r.track_id: r for r in found})
            removed = self._store.delete(sorted(chosen))
            if removed and self._index is not None:
                gone = np.concatenate([np.arange(r.first_id, r.first_id + r.n_fingerprints) for r in removed])
                self._index_dirty = True
                with self._guard.exclusive():
                    self._index.remove_ids(gone)
                self._istore.delete(gone, self._index)
                self._index_committed()
                self._store.put_meta(self._meta)
                self._maybe_compact()
        return removed

    def compact(self) -> dict:
        """Rewrite the index's base file with every commit so far and drop the segments (atomic; readers
        keep answering from what they hold and read the new base at their next query). Returns
        {"segments", "delta_rows", "ntotal", "base_bytes", "seconds"}; nothing to do: segments 0."""
        self._check_open()
        with self._writing():
            if self._index is None or self._istore.delta_rows() == 0:
                return {"segments": 0, "delta_rows": 0, "ntotal": 0 if self._index is None else int(self._index.ntotal),
                        "base_bytes": self._istore.base_bytes(),
                        "seconds": 0.0}
            out = self._istore.compact(self._index)
            self._index_committed()
            self._store.put_meta(self._meta)
        return out

    def _maybe_compact(self) -> None:
        """The automatic compaction past ``compact_ratio`` (the caller holds the write lock)."""
        if self.compact_ratio is not None and self._index is not None and \
                self._istore.should_compact(self.compact_ratio):
            self._istore.compact(self._index)
            self._index_committed()
            self._store.put_meta(self._meta)

    def stats(self) -> dict:
        """Tracks, hours, fingerprints, buckets used and balance, bytes on disk, model and format.

        The index figures come from the summary recorded with the last write when it describes the index
        file on disk now (no need to read the index, nor to import torch), else from the index itself."""
        self._check_open()
        meta = self._store.get_meta() or self._meta
        summary = meta.get("index_summary")
        sig = self._istore.signature
        if sig[0] is None or summary is None or _sig_json(sig) != summary["sig"]:
            index = self._reload_index()
            bal = index.balance() if index is not None and index.ntotal else {}
            summary = {"ntotal": index.ntotal if index is not None else 0, "K": index.K if index is not None else
                       meta.get("K"), "buckets_used": int(bal.get("buckets_used", 0)),
                       "empty_share": float(bal.get("empty_share", 1.0)), "max_over_mean": float(bal.get("max_over_mean", 0.0)),
                       "within_k1_share": float(bal.get("within_k1_share", 0.0)),
                       "memory_bytes": index.memory_bytes() if index is not None else 0}
        records = self._store.all()
        disk = self._store.disk_bytes() + self._istore.disk_bytes()
        return {
            "path": self.path, "tracks": len(records), "hours": sum(r.duration_s for r in records) / 3600,
            "fingerprints": sum(r.n_fingerprints for r in records),
            "index_vectors": int(summary["ntotal"]), "K": summary["K"],
            "buckets_used": int(summary["buckets_used"]),
            "bucket_empty_share": float(summary["empty_share"]),
            "bucket_max_over_mean": float(summary["max_over_mean"]),
            "bucket_within_k1_share": float(summary["within_k1_share"]),
            "index_memory_bytes": int(summary["memory_bytes"]),
            "bytes_on_disk": int(disk), "model_id": self._meta["model_id"], "format_version": self._meta["version"],
            "created": self._meta["created"],
        }
