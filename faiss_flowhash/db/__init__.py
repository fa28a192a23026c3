"""The fingerprint database: ingest audio, identify snippets (track, offset, confidence), manage tracks.

>>> from faiss_flowhash.db import FingerprintDB          # doctest: +SKIP
>>> with FingerprintDB("music.db") as db:                 # doctest: +SKIP
...     report = db.ingest(["songs/"])
...     result = db.query("snippet.wav", top=3)
"""

from .consensus import DEFAULT_MIN_CONFIDENCE, Candidate, match_confidence, vote_offsets
from .database import FORMAT_VERSION, DatabaseMismatchError, FingerprintDB
from .files import AUDIO_EXTENSIONS, expand_paths
from .ids import FRAME_BITS, decode_ids, encode_ids
from .lock import write_lock
from .repair import RepairPlan, plan_repair
from .results import IngestReport, Match, QueryResult
from .tracks import TrackRecord, TrackStore

__all__ = [
    "FingerprintDB", "DatabaseMismatchError", "DEFAULT_MIN_CONFIDENCE", "FORMAT_VERSION",
    "Match", "QueryResult", "IngestReport", "TrackRecord", "TrackStore",
    "Candidate", "vote_offsets", "match_confidence",
    "expand_paths", "AUDIO_EXTENSIONS", "encode_ids", "decode_ids", "FRAME_BITS",
    "RepairPlan", "plan_repair", "write_lock",
]
