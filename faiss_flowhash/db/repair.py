"""What to repair after a crash: pure bookkeeping over the index's ids and the committed track records.

A killed writer leaves at worst (a) index ids whose track has no record (the index file was written,
the LMDB transaction was not) or (b) records whose fingerprints are not all in the index (a remove
deleted them from the index file first, or the index file is older than the records). The plan:
remove the ids of (a) from the index, drop the records of (b) (re-ingesting the file adds it again),
and keep allocating track ids above every id seen, so an id is never reused.
"""

from dataclasses import dataclass

import numpy as np

from .ids import decode_ids

__all__ = ["RepairPlan", "plan_repair"]


@dataclass(frozen=True)
class RepairPlan:
    """orphan_tracks: track ids in the index without a (complete) record, whose ids must go;
    incomplete_records: record track ids whose fingerprints are not all in the index;
    next_track_id: smallest track id never used by the index or the records (or the given floor)."""

    orphan_tracks: list
    incomplete_records: list
    next_track_id: int

    @property
    def empty(self) -> bool:
        return not self.orphan_tracks and not self.incomplete_records


def plan_repair(index_ids, records, *, next_track_id: int = 0) -> RepairPlan:
    """Plan from ``index_ids`` (N,) int64 and ``records`` (objects with .track_id and .n_fingerprints)."""
    tracks, _ = decode_ids(np.asarray(index_ids, np.int64).reshape(-1))
    present, counts = np.unique(tracks, return_counts=True)
    have = dict(zip(present.tolist(), counts.tolist()))
    incomplete = sorted(r.track_id for r in records if have.get(r.track_id, 0) != r.n_fingerprints)
    good = {r.track_id for r in records} - set(incomplete)
    orphans = [t for t in present.tolist() if t not in good]
    nxt = max([int(next_track_id)] + [t + 1 for t in present.tolist()] + [r.track_id + 1 for r in records])
    return RepairPlan(orphan_tracks=orphans, incomplete_records=incomplete, next_track_id=nxt)
