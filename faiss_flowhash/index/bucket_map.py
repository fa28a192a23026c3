"""Bucket map: K-bit code -> an ordered group of inverted-list ids, in compact sorted arrays.

Only codes that hold vectors get lists, so memory grows with the non-empty buckets, not with 2^K
(K = 24 has 16.8M codes; a faiss ArrayInvertedLists costs ~160 bytes per list even when empty).
A code maps to a *group* of lists (CSR ``offsets`` into ``lists``), probed in group order: today
every group has one list; splitting an oversized bucket appends lists to its group without touching
the engine or the probe code. Pure numpy.
"""

import numpy as np

__all__ = ["BucketMap", "gather_ranges", "DENSE_BITS"]

DENSE_BITS = 20


def gather_ranges(starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """Concatenate the index ranges [start, start + length) without a Python loop. Returns int64."""
    lengths = lengths.astype(np.int64)
    total = int(lengths.sum())
    if total == 0:
        return np.zeros(0, np.int64)
    ends = np.cumsum(lengths)
    shift = np.repeat(starts.astype(np.int64) - (ends - lengths), lengths)
    return np.arange(total, dtype=np.int64) + shift


class BucketMap:
    """Sorted codes (B,) with CSR groups of list ids.

    Attributes:
        keys: (B,) uint64 codes, ascending.
        offsets: (B + 1,) int64; code ``keys[b]`` owns ``lists[offsets[b]:offsets[b + 1]]``.
        lists: (L,) int64 list ids, in probe order within a group.
        n_lists: list ids handed out so far (lists are numbered 0 .. n_lists - 1).
    """

    def __init__(self, K: int | None = None):
        self.keys = np.zeros(0, np.uint64)
        self.offsets = np.zeros(1, np.int64)
        self.lists = np.zeros(0, np.int64)
        self.n_lists = 0
        # K <= DENSE_BITS: a dense code -> bucket table (4 B x 2^K, 4 MiB at K = 20) replaces the binary
        # search of lookups (1,024 probes: ~15x faster); above, lookups search the sorted keys
        self._dense_bits = K if K is not None and K <= DENSE_BITS else None
        self._dense = None

    def __len__(self) -> int:
        return len(self.keys)

    def lookup(self, codes: np.ndarray):
        """Groups of codes (m,) uint64: (starts (m,), lengths (m,)) into ``lists``; length 0 if absent."""
        codes = np.asarray(codes, np.uint64)
        if len(self.keys) == 0:
            z = np.zeros(len(codes), np.int64)
            return z, z.copy()
        if self._dense_bits is not None and (len(codes) == 0 or int(codes.max()) < (1 << self._dense_bits)):
            b = self.tables()[0][codes.astype(np.int64)]
            found = b >= 0
            b = np.maximum(b, 0)
            return (np.where(found, self.offsets[b], 0).astype(np.int64),
                    np.where(found, self.offsets[b + 1] - self.offsets[b], 0).astype(np.int64))
        pos = np.searchsorted(self.keys, codes)
        pos_c = np.minimum(pos, len(self.keys) - 1)
        found = (pos < len(self.keys)) & (self.keys[pos_c] == codes)
        starts = np.where(found, self.offsets[pos_c], 0)
        lengths = np.where(found, self.offsets[pos_c + 1] - self.offsets[pos_c], 0)
        return starts.astype(np.int64), lengths.astype(np.int64)

    def tables(self) -> tuple:
        """(dense, keys, offsets, lists) for compiled lookups: ``dense`` (2^K,) int32 code -> bucket row
        (-1: absent) for K <= DENSE_BITS, else an empty int32 array (search ``keys`` instead). Built
        once per change of the map."""
        if self._dense_bits is None:
            return np.zeros(0, np.int32), self.keys, self.offsets, self.lists
        if self._dense is None:
            self._dense = np.full(1 << self._dense_bits, -1, np.int32)
            self._dense[self.keys.astype(np.int64)] = np.arange(len(self.keys), dtype=np.int32)
        return self._dense, self.keys, self.offsets, self.lists

    @property
    def max_group(self) -> int:
        """The most lists one code maps to (1 on an empty map); cached per ``offsets`` array (every
        change of the map replaces it)."""
        cached = getattr(self, "_max_group", None)
        if cached is None or cached[0] is not self.offsets:
            cached = (self.offsets, max(int(np.diff(self.offsets).max()) if len(self.keys) else 1, 1))
            self._max_group = cached
        return cached[1]

    def add_lists(self, codes: np.ndarray) -> np.ndarray:
        """The list each code's new vectors go to (the last of its group), creating a list for every
        code not seen before. codes (n,) uint64 -> list ids (n,) int64."""
        codes = np.asarray(codes, np.uint64)
        uniq, inverse = np.unique(codes, return_inverse=True)  # one sort of the batch
        _, found = self.lookup(uniq)
        new = uniq[found == 0]
        if len(new):
            keys = np.concatenate([self.keys, new])
            lengths = np.concatenate([np.diff(self.offsets), np.ones(len(new), np.int64)])
            old_starts = self.offsets[:-1]
            new_ids = np.arange(self.n_lists, self.n_lists + len(new), dtype=np.int64)
            lists = np.concatenate([self.lists, new_ids])
            starts = np.concatenate([old_starts, len(self.lists) + np.arange(len(new), dtype=np.int64)])
            order = np.argsort(keys, kind="stable")
            self.lists = lists[gather_ranges(starts[order], lengths[order])]
            self.keys = keys[order]
            self._dense = None
            self.offsets = np.r_[0, np.cumsum(lengths[order])].astype(np.int64)
            self.n_lists += len(new)
            self._dense = None
        starts, lengths = self.lookup(uniq)
        return self.lists[starts + lengths - 1][inverse.reshape(-1)]

    def extend_groups(self, codes: np.ndarray, counts: np.ndarray) -> np.ndarray:
        """Append ``counts[i]`` new lists to the group of existing code ``codes[i]`` (codes distinct).
        Returns the new list ids, grouped by code in the order given (sum(counts),) int64."""
        codes = np.asarray(codes, np.uint64)
        counts = np.asarray(counts, np.int64)
        pos = np.searchsorted(self.keys, codes)
        if len(codes) and (pos.max() >= len(self.keys) or (self.keys[pos] != codes).any()):
            raise ValueError("extend_groups: every code must already have a group")
        total = int(counts.sum())
        new_ids = np.arange(self.n_lists, self.n_lists + total, dtype=np.int64)
        extra = np.zeros(len(self.keys), np.int64)
        extra[pos] = counts
        lengths = np.diff(self.offsets)
        new_offsets = np.r_[0, np.cumsum(lengths + extra)].astype(np.int64)
        lists = np.empty(int(new_offsets[-1]), np.int64)
        old_pos = gather_ranges(new_offsets[:-1], lengths)  # old entries keep their place at the group start
        lists[old_pos] = self.lists
        # the new ids fill each extended group's tail, in the order the codes were given
        tail_starts = new_offsets[pos] + lengths[pos]
        lists[gather_ranges(tail_starts, counts)] = new_ids
        self.lists, self.offsets = lists, new_offsets
        self.n_lists += total
        return new_ids

    def groups(self, codes: np.ndarray) -> np.ndarray:
        """The list group of each code (n,) as a matrix (n, G) int64, -1 padded (absent codes: all -1)."""
        starts, lengths = self.lookup(codes)
        G = max(int(lengths.max()) if len(lengths) else 0, 1)
        out = np.full((len(starts), G), -1, np.int64)
        rows = np.repeat(np.arange(len(starts)), lengths)
        col = np.arange(int(lengths.sum())) - np.repeat(np.cumsum(lengths) - lengths, lengths)
        out[rows, col] = self.lists[gather_ranges(starts, lengths)]
        return out

    def probe_matrix(self, qidx: np.ndarray, codes: np.ndarray, n: int) -> np.ndarray:
        """faiss's assign matrix for probes (qidx (m,) ascending, codes (m,)) of n queries.

        Each probed code expands into its group; absent codes are dropped. Returns (n, P) int64 list
        ids in probe order, -1 padded, P = the most lists any query probes (>= 1). Rows hold distinct
        lists, so P never exceeds the number of lists (faiss clips nprobe to nlist).
        """
        starts, lengths = self.lookup(codes)
        q = np.repeat(np.asarray(qidx, np.int64), lengths)
        lid = self.lists[gather_ranges(starts, lengths)]
        counts = np.bincount(q, minlength=n)
        P = max(int(counts.max()) if n else 0, 1)
        first = np.r_[0, np.cumsum(counts)[:-1]]
        pos = np.arange(len(q)) - first[q]
        out = np.full((n, P), -1, np.int64)
        out[q, pos] = lid
        return out

    def state(self) -> dict:
        return {"keys": self.keys, "offsets": self.offsets, "lists": self.lists,
                "n_lists": np.array([self.n_lists], np.int64)}

    @classmethod
    def from_state(cls, state: dict, K: int | None = None) -> "BucketMap":
        m = cls(K)
        m.keys = np.asarray(state["keys"], np.uint64)
        m.offsets = np.asarray(state["offsets"], np.int64)
        m.lists = np.asarray(state["lists"], np.int64)
        m.n_lists = int(np.asarray(state["n_lists"]).reshape(-1)[0])
        ok = (len(m.offsets) == len(m.keys) + 1 and m.offsets[0] == 0 and m.offsets[-1] == len(m.lists)
              and (np.diff(m.offsets) >= 1).all() and (len(m.lists) == 0 or 0 <= m.lists.min() <= m.lists.max() < m.n_lists)
              and (np.diff(m.keys.astype(np.uint64)) > 0).all())
        if not ok:
            raise ValueError(f"bucket map: {len(m.keys)} keys, {len(m.offsets)} offsets, {len(m.lists)} lists "
                             f"and n_lists={m.n_lists} do not fit together")
        return m

    @property
    def nbytes(self) -> int:
        dense = 0 if self._dense is None else self._dense.nbytes
        return self.keys.nbytes + self.offsets.nbytes + self.lists.nbytes + dense
