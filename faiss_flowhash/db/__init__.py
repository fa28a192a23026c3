"""The fingerprint database: ingest audio, identify snippets (track, offset, confidence), manage tracks.

>>> import tempfile
>>> from faiss_flowhash.audio import save_audio, synth
>>> from faiss_flowhash.db import FingerprintDB
>>> root = tempfile.mkdtemp()
>>> song = synth.synthetic_music(12.0, seed=1).clip(-1, 1)
>>> save_audio(f"{root}/song.flac", song)
>>> with FingerprintDB(f"{root}/db") as db:          # the shipped model; the directory is created
...     report = db.ingest([root])                   # files, folders (recursive) or globs
...     result = db.query(song[48000:96000], top=3)  # a 3 s snippet starting at 3.0 s (or a path)
...     unknown = db.query(synth.synthetic_music(3.0, seed=2))
>>> len(report.added), result.best.path.endswith("song.flac"), round(result.best.offset_s, 1)
(1, True, 3.0)
>>> unknown.matches                                  # audio not in the database: no match
[]
"""

from .consensus import DEFAULT_MIN_CONFIDENCE, Candidate, match_confidence, vote_offsets
from .database import FORMAT_VERSION, DatabaseMismatchError, FingerprintDB, SnippetTooShortError
from .identify import Occurrence, ReferenceWindows, TrackMatch, identify
from .ids import FRAME_BITS, decode_ids, encode_ids
from .lock import write_lock
from .repair import RepairPlan, plan_repair
from .results import IngestReport, Match, QueryResult
from .spans import Span, SpanTracker
from .tracks import TrackRecord, TrackStore

__all__ = [
    "FingerprintDB", "DatabaseMismatchError", "SnippetTooShortError", "DEFAULT_MIN_CONFIDENCE", "FORMAT_VERSION",
    "Match", "QueryResult", "IngestReport", "Span", "SpanTracker", "TrackRecord", "TrackStore",
    "identify", "TrackMatch", "Occurrence", "ReferenceWindows", "Candidate", "vote_offsets", "match_confidence",
    "encode_ids", "decode_ids", "FRAME_BITS",
    "RepairPlan", "plan_repair", "write_lock",
]
