"""Small result types of the fingerprint database: matches, query results, ingest reports."""

from dataclasses import asdict, dataclass, field

from .tracks import TrackRecord

__all__ = ["Match", "QueryResult", "IngestReport"]


@dataclass(frozen=True)
class Match:
    """An identified track.

    Attributes:
        track_id: the track.
        path: its path at ingest time.
        offset_s: where the snippet starts in the track, seconds (within 50 ms when correct).
        score: mean over the snippet's segments of the similarity of the hit that agrees with this
            (track, offset), 0 for segments that do not agree: in [0, 1] for cosine similarity.
        confidence: in [0, 1], of the track decision (see :mod:`faiss_flowhash.db.identify`).
        alternates: other places in the track where the snippet fits almost as well (a repeated
            passage): (offset_s, score) pairs, best first; empty when the match is unique.
    """

    track_id: int
    path: str
    offset_s: float
    score: float
    confidence: float
    alternates: tuple = ()

    def to_dict(self) -> dict:
        """JSON-ready: the fields, ``alternates`` as a list of {"offset_s", "score"}."""
        d = asdict(self)
        d["alternates"] = [{"offset_s": float(o), "score": float(s)} for o, s in self.alternates]
        return d


@dataclass
class QueryResult:
    """The answer for one snippet; ``matches`` is empty for "no match".

    Attributes:
        query: the path or a description of the wave.
        matches: best first, at most ``top``, each with confidence >= the threshold used.
        eval_percent: % of the database scored per segment (the paper's efficiency metric).
        elapsed_ms: wall time of fingerprinting + search + consensus, milliseconds.
        n_segments: 1 s segments (every hop) the snippet was cut into.
        duration_s: snippet length, seconds.
    """

    query: str
    matches: list[Match] = field(default_factory=list)
    eval_percent: float = 0.0
    elapsed_ms: float = 0.0
    n_segments: int = 0
    duration_s: float = 0.0

    @property
    def best(self) -> Match | None:
        return self.matches[0] if self.matches else None

    def to_dict(self) -> dict:
        """The ``--json`` object: query, matches, eval_percent, elapsed_ms."""
        return {"query": self.query, "matches": [m.to_dict() for m in self.matches],
                "eval_percent": float(self.eval_percent), "elapsed_ms": float(self.elapsed_ms)}


@dataclass
class IngestReport:
    """What an ingest did.

    Attributes:
        added: records of the tracks ingested.
        skipped: (path, reason) of files already in the database (same content hash).
        failed: (path, reason) of files that could not be ingested (missing, undecodable, too short).
        audio_s: seconds of audio fingerprinted. elapsed_s: wall time of the work, from the moment the
            write lock was held. lock_wait_s: time spent waiting for another writer's lock (not in elapsed_s).
    """

    added: list[TrackRecord] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    failed: list[tuple[str, str]] = field(default_factory=list)
    audio_s: float = 0.0
    elapsed_s: float = 0.0
    lock_wait_s: float = 0.0

    @property
    def ok(self) -> bool:
        """True when no file failed."""
        return not self.failed

    def summary(self) -> str:
        speed = self.audio_s / self.elapsed_s if self.elapsed_s > 0 else 0.0
        waited = f", after waiting {self.lock_wait_s:.1f} s for another writer" if self.lock_wait_s >= 0.05 else ""
        return (f"{len(self.added)} added, {len(self.skipped)} skipped (already ingested), {len(self.failed)} failed; "
                f"{self.audio_s / 3600:.3f} h of audio in {self.elapsed_s:.1f} s ({speed:.0f}x real time){waited}")
