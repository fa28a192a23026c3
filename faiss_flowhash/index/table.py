"""The bucket table: code -> row numbers, in compact sorted arrays (no Python object per bucket).

Entries are (code, row) pairs. The table keeps the unique codes sorted (``keys``), CSR ``offsets`` into
a ``rows`` array, and looks codes up with a binary search, so K can go to 62 bits with memory that
grows with the entries, not with 2^K. Appends are buffered and merged on the next lookup.
"""

import numpy as np

__all__ = ["BucketTable", "gather_ranges"]


def gather_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate the index ranges [start, start + length) without a Python loop. Returns int64."""
    lengths = lengths.astype(np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(lengths)
    shift = np.repeat(starts.astype(np.int64) - (ends - lengths), lengths)
    return np.arange(total, dtype=np.int64) + shift


class BucketTable:
    """Sorted-key CSR table of (code, row) entries."""

    def __init__(self):
        self.keys = np.zeros(0, np.uint64)  # (B,) unique codes, ascending
        self.offsets = np.zeros(1, np.int64)  # (B + 1,)
        self.rows = np.zeros(0, np.int32)  # (E,) rows of each bucket, ascending within a bucket
        self._pending: list[tuple[np.ndarray, np.ndarray]] = []

    @property
    def n_entries(self) -> int:
        return len(self.rows) + sum(len(r) for _, r in self._pending)

    def add(self, codes: np.ndarray, rows: np.ndarray) -> None:
        """Buffer entries; codes (m,) uint64, rows (m,) int64."""
        if len(codes):
            self._pending.append((codes.astype(np.uint64), rows.astype(np.int64)))

    def _entries(self):
        """All entries as (codes, rows) arrays."""
        sizes = np.diff(self.offsets)
        return np.repeat(self.keys, sizes), self.rows

    def _flush(self) -> None:
        if not self._pending:
            return
        parts = [self._entries()] + self._pending
        codes = np.concatenate([c for c, _ in parts])
        rows = np.concatenate([r for _, r in parts])
        self._pending = []
        self._set(codes, rows)

    def _set(self, codes: np.ndarray, rows: np.ndarray) -> None:
        order = np.lexsort((rows, codes))
        codes, rows = codes[order], rows[order]
        small = len(rows) == 0 or int(rows.max()) < np.iinfo(np.int32).max
        self.rows = rows.astype(np.int32 if small else np.int64)  # 4 bytes an entry below 2^31 rows
        if len(codes):
            starts = np.flatnonzero(np.r_[True, codes[1:] != codes[:-1]])
        else:
            starts = np.zeros(0, np.int64)
        self.keys = codes[starts]
        self.offsets = np.r_[starts, len(codes)].astype(np.int64)

    def lookup(self, codes: np.ndarray):
        """Bucket ranges of codes (m,) uint64: (starts (m,), lengths (m,)) into ``rows``; 0 length if absent."""
        self._flush()
        pos = np.searchsorted(self.keys, codes)
        pos_c = np.minimum(pos, max(len(self.keys) - 1, 0))
        found = (pos < len(self.keys)) & (self.keys[pos_c] == codes) if len(self.keys) else np.zeros(len(codes), bool)
        starts = np.where(found, self.offsets[pos_c], 0)
        lengths = np.where(found, self.offsets[pos_c + 1] - self.offsets[pos_c], 0) if len(self.keys) else starts
        return starts.astype(np.int64), lengths.astype(np.int64)

    def candidates(self, qidx: np.ndarray, codes: np.ndarray, *, budget: int | None, n_rows: int):
        """The unique rows found under each query's probed codes.

        Args:
            qidx, codes: probes (m,), grouped by query (ascending) and cheapest first within a query.
            budget: keep a query's probes while the candidates before them are under budget (the
                first probe is always kept); None keeps every probe.
            n_rows: rows in the index (to pack (query, row) pairs in one int64 key).

        Returns:
            qidx (c,) ascending and rows (c,) without duplicate pairs, and the number of probes kept.
        """
        starts, lengths = self.lookup(codes)
        if budget is not None and len(qidx):
            csum = np.cumsum(lengths)
            first = np.r_[0, np.flatnonzero(qidx[1:] != qidx[:-1]) + 1]
            before = csum - lengths - np.repeat(csum[first] - lengths[first], np.diff(np.r_[first, len(qidx)]))
            keep = before < budget
            qidx, starts, lengths = qidx[keep], starts[keep], lengths[keep]
        rows = self.rows[gather_ranges(starts, lengths)].astype(np.int64)
        key = np.repeat(qidx, lengths) * n_rows + rows
        key.sort()  # de-duplicate (query, row) pairs; a sort beats np.unique's hashing here
        key = key[np.r_[True, key[1:] != key[:-1]]] if len(key) else key
        return key // max(n_rows, 1), key % max(n_rows, 1), len(qidx)

    def remove_rows(self, keep: np.ndarray) -> None:
        """Drop entries of rows where keep[row] is False and renumber the rest densely (rows compact)."""
        self._flush()
        codes, rows = self._entries()
        ok = keep[rows]
        new_index = np.cumsum(keep) - 1
        self._set(codes[ok], new_index[rows[ok]])

    def bucket_sizes(self) -> np.ndarray:
        """Entries per non-empty bucket (B,)."""
        self._flush()
        return np.diff(self.offsets)

    def clear(self) -> None:
        self.__init__()

    def state(self) -> dict:
        self._flush()
        return {"keys": self.keys, "offsets": self.offsets, "rows": self.rows}

    def load_state(self, state: dict) -> None:
        self.keys = np.asarray(state["keys"], np.uint64)
        self.offsets = np.asarray(state["offsets"], np.int64)
        self.rows = np.asarray(state["rows"])
        if self.rows.dtype not in (np.int32, np.int64):
            raise ValueError(f"bucket table: rows must be int32 or int64, got {self.rows.dtype}")
        self._pending = []
        if len(self.offsets) != len(self.keys) + 1 or self.offsets[-1] != len(self.rows):
            raise ValueError(
                f"bucket table: {len(self.keys)} keys, {len(self.offsets)} offsets and {len(self.rows)} rows do not fit"
            )

    @property
    def nbytes(self) -> int:
        self._flush()
        return self.keys.nbytes + self.offsets.nbytes + self.rows.nbytes
