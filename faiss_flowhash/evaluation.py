"""The paper's Table 1 protocol (sections 4.2, 4.4): distorted query snippets, per-segment search,
offset consensus (eq. 12-13), top-1 hit rate with a 50 ms tolerance and % of the database evaluated.

Pure protocol, no I/O except :meth:`QuerySet.save` / :meth:`QuerySet.load`:

* :func:`make_queries` draws query *specs* (track, start, length, distortion, noise clip, room) from a
  seed; :func:`make_banks` builds the eval-split noises and rooms they refer to (never used in
  training); :func:`render_query` turns one spec into audio. A saved spec file regenerates the exact
  query audio.
* :func:`run_eval` searches every query's fingerprints (1 s windows every 100 ms) with each method,
  votes for the query's start (the database's offset vote, or :func:`consensus`), scores the answer
  (:func:`is_hit`) and returns one row per (method, query length, condition): hit rate, eval %, search
  time per query.

``add_eval_arguments(parser)`` / ``run_eval_command(args)`` mount ``flowhash eval DB QUERIES`` (the
shell lives in :mod:`faiss_flowhash.eval_command`).
"""

from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping, Sequence

import numpy as np

__all__ = [
    "Condition", "PAPER_CONDITIONS", "QUERY_LENGTHS_S", "TOLERANCE_S", "QuerySet", "Banks",
    "make_queries", "make_banks", "render_query", "fingerprint_queries", "consensus", "is_hit", "locate_from_counts",
    "index_searcher", "run_eval", "EvalResult", "summarize", "format_table",
    "add_eval_arguments", "run_eval_command",
]

QUERY_LENGTHS_S = (1.0, 2.0, 3.0, 5.0)
TOLERANCE_S = 0.05          # a hit needs the offset within 50 ms of the truth (section 4.2)
_NOISE_REVERB_RT60 = 0.5    # noisy reverberant queries: RT60 0.5 s, then noise (section 4.4)


@dataclass(frozen=True)
class Condition:
    """One distortion: ``kind`` "clean", "noise" (``snr_db``), "reverb" (``rt60_s``) or
    "noise+reverb" (both: reverb first, then noise)."""

    kind: str
    snr_db: float | None = None
    rt60_s: float | None = None

    def __post_init__(self):
        need = {"clean": (False, False), "noise": (True, False), "reverb": (False, True),
                "noise+reverb": (True, True)}
        if self.kind not in need:
            raise ValueError(f"kind: expected one of {sorted(need)}, got {self.kind!r}")
        has = (self.snr_db is not None, self.rt60_s is not None)
        if has != need[self.kind]:
            raise ValueError(f"{self.kind}: expected snr_db/rt60_s set = {need[self.kind]}, got {has}")
        if self.rt60_s is not None and not 0.05 <= self.rt60_s <= 5.0:
            raise ValueError(f"rt60_s: expected seconds in [0.05, 5], got {self.rt60_s}")
        if self.snr_db is not None and not np.isfinite(self.snr_db):
            raise ValueError(f"snr_db: expected a finite dB value, got {self.snr_db}")

    @property
    def label(self) -> str:
        if self.kind == "clean":
            return "clean"
        if self.kind == "reverb":
            return f"reverb {self.rt60_s:g}s"
        return f"{self.kind} {self.snr_db:g}dB"


PAPER_CONDITIONS = (
    tuple(Condition("noise", snr_db=s) for s in (0.0, 5.0, 10.0, 15.0, 20.0))
    + tuple(Condition("noise+reverb", snr_db=s, rt60_s=_NOISE_REVERB_RT60) for s in (0.0, 5.0, 10.0, 15.0, 20.0))
    + tuple(Condition("reverb", rt60_s=t) for t in (0.2, 0.4, 0.5, 0.7, 0.8))
)


# ------------------------------------------------------------------------------------------ queries
@dataclass
class QuerySet:
    """Query specs, one entry per query (all arrays (n,)); enough to regenerate the audio exactly.

    track: index into ``track_names``; start: first sample in the track; length: samples;
    cond: index into ``conditions``; noise / noise_start: eval noise clip and the sample it is cut
    from; room: eval room index (for the query's RT60). ``bank_seed``, ``n_noises``, ``n_rooms`` and
    ``noise_s`` rebuild the banks (:func:`make_banks`).
    """

    track: np.ndarray
    start: np.ndarray
    length: np.ndarray
    cond: np.ndarray
    noise: np.ndarray
    noise_start: np.ndarray
    room: np.ndarray
    conditions: tuple
    track_names: tuple
    seed: int
    bank_seed: int
    n_noises: int
    n_rooms: int
    noise_s: float
    sample_rate: int = 16000

    def __len__(self) -> int:
        return len(self.track)

    @property
    def start_s(self) -> np.ndarray:
        return self.start / self.sample_rate

    @property
    def length_s(self) -> np.ndarray:
        return np.round(self.length / self.sample_rate, 3)

    def save(self, path: str | os.PathLike) -> None:
        """Write an .npz (arrays + a JSON header); :meth:`load` gives back an equal QuerySet."""
        meta = {"version": 1, "conditions": [[c.kind, c.snr_db, c.rt60_s] for c in self.conditions],
                "track_names": list(self.track_names), "seed": self.seed, "bank_seed": self.bank_seed,
                "n_noises": self.n_noises, "n_rooms": self.n_rooms, "noise_s": self.noise_s,
                "sample_rate": self.sample_rate}
        arrays = {k: getattr(self, k) for k in ("track", "start", "length", "cond", "noise", "noise_start", "room")}
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "wb") as f:
            np.savez_compressed(f, meta=np.array(json.dumps(meta)), **arrays)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "QuerySet":
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such query file")
        with np.load(path, allow_pickle=False) as z:
            if "meta" not in z:
                raise ValueError(f"{path}: not a query set (no 'meta' entry)")
            meta = json.loads(str(z["meta"]))
            arrays = {k: z[k] for k in ("track", "start", "length", "cond", "noise", "noise_start", "room")}
        if meta.get("version") != 1:
            raise ValueError(f"{path}: expected query set version 1, got {meta.get('version')!r}")
        conds = tuple(Condition(k, snr_db=s, rt60_s=t) for k, s, t in meta["conditions"])
        return cls(**arrays, conditions=conds, track_names=tuple(meta["track_names"]), seed=meta["seed"],
                   bank_seed=meta["bank_seed"], n_noises=meta["n_noises"], n_rooms=meta["n_rooms"],
                   noise_s=meta["noise_s"], sample_rate=meta["sample_rate"])

    def select(self, mask) -> "QuerySet":
        """The queries where ``mask`` (n,) bool / index array holds, same banks and conditions."""
        arrays = {k: getattr(self, k)[mask] for k in ("track", "start", "length", "cond", "noise", "noise_start", "room")}
        return QuerySet(**arrays, conditions=self.conditions, track_names=self.track_names, seed=self.seed,
                        bank_seed=self.bank_seed, n_noises=self.n_noises, n_rooms=self.n_rooms,
                        noise_s=self.noise_s, sample_rate=self.sample_rate)


def make_queries(
    track_samples: Sequence[int],
    *,
    track_names: Sequence[str] | None = None,
    lengths_s: Sequence[float] = QUERY_LENGTHS_S,
    conditions: Sequence[Condition] = PAPER_CONDITIONS,
    n_per_cell: int = 100,
    seed: int = 0,
    n_noises: int = 12,
    n_rooms: int = 8,
    noise_s: float = 10.0,
    sample_rate: int = 16000,
) -> QuerySet:
    """Draw ``n_per_cell`` queries for every (length, condition) pair (defaults: the paper's 1/2/3/5 s
    x 15 conditions). A query is a random segment of a random track long enough for it (uniform
    start, any sample), with an eval noise clip (uniform start in it) and an eval room drawn per query.
    Deterministic in ``seed``; the banks' seed is derived from it.
    """
    counts = np.asarray(track_samples, dtype=np.int64)
    if counts.ndim != 1 or len(counts) == 0 or (counts < 0).any():
        raise ValueError(f"track_samples: expected a non-empty 1-D list of sample counts >= 0, got shape {counts.shape}")
    names = tuple(str(t) for t in (track_names if track_names is not None else range(len(counts))))
    if len(names) != len(counts):
        raise ValueError(f"track_names: expected {len(counts)} names, got {len(names)}")
    if isinstance(n_per_cell, bool) or not isinstance(n_per_cell, (int, np.integer)) or n_per_cell < 1:
        raise ValueError(f"n_per_cell: expected an int >= 1, got {n_per_cell!r}")
    for name, v in (("n_noises", n_noises), ("n_rooms", n_rooms)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name}: expected an int >= 1, got {v!r}")
    conditions = tuple(conditions)
    if not conditions or not all(isinstance(c, Condition) for c in conditions):
        raise TypeError("conditions: expected a non-empty sequence of Condition")
    lengths = [int(round(float(s) * sample_rate)) for s in lengths_s]
    if not lengths or min(lengths) < sample_rate:
        raise ValueError(f"lengths_s: expected lengths >= 1 s (one fingerprint window), got {list(lengths_s)}")
    noise_len = int(round(noise_s * sample_rate))
    if max(lengths) > noise_len:
        raise ValueError(f"noise_s: expected >= the longest query ({max(lengths_s)} s), got {noise_s}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x7175]))
    cols = {k: [] for k in ("track", "start", "length", "cond", "noise", "noise_start", "room")}
    for L in lengths:
        ok = np.flatnonzero(counts >= L)
        if len(ok) == 0:
            raise ValueError(f"lengths_s: no track is at least {L / sample_rate:g} s long")
        # tracks drawn in proportion to the segments they offer, as a uniform draw over the database
        w = (counts[ok] - L + 1).astype(np.float64)
        for c in range(len(conditions)):
            t = ok[rng.choice(len(ok), size=n_per_cell, p=w / w.sum())]
            cols["track"].append(t)
            cols["start"].append(rng.integers(0, counts[t] - L + 1))
            cols["length"].append(np.full(n_per_cell, L))
            cols["cond"].append(np.full(n_per_cell, c))
            cols["noise"].append(rng.integers(0, n_noises, n_per_cell))
            cols["noise_start"].append(rng.integers(0, noise_len - L + 1, n_per_cell))
            cols["room"].append(rng.integers(0, n_rooms, n_per_cell))
    dtypes = {"track": np.int32, "cond": np.int16, "noise": np.int16, "room": np.int16}
    arrays = {k: np.concatenate(v).astype(dtypes.get(k, np.int64)) for k, v in cols.items()}
    return QuerySet(**arrays, conditions=conditions, track_names=names, seed=int(seed),
                    bank_seed=int(seed) + 1000, n_noises=int(n_noises), n_rooms=int(n_rooms),
                    noise_s=float(noise_s), sample_rate=int(sample_rate))


@dataclass
class Banks:
    """Eval-split distortions: ``noises`` list of (noise_len,) clips, ``rooms`` {rt60_s: list of RIRs}."""

    noises: list
    rooms: dict


def make_banks(queries: QuerySet, *, rir_method: str = "auto") -> Banks:
    """The eval-split noise clips and rooms ``queries`` refer to (``noise_bank`` / ``rir_bank`` with
    ``split="eval"``: never used in training). One set of ``n_rooms`` rooms per distinct RT60."""
    from .audio.noise import noise_bank
    from .audio.rooms import rir_bank

    noises = noise_bank(queries.bank_seed, queries.n_noises, split="eval", duration_s=queries.noise_s,
                        sample_rate=queries.sample_rate)
    rooms = {}
    for rt in sorted({c.rt60_s for c in queries.conditions if c.rt60_s is not None}):
        rooms[rt] = rir_bank(queries.bank_seed + int(round(rt * 1000)), queries.n_rooms, split="eval",
                             rt60_range=(rt, rt), sample_rate=queries.sample_rate, method=rir_method)
    return Banks(noises=noises, rooms=rooms)


def render_query(track_wave: np.ndarray, queries: QuerySet, i: int, banks: Banks) -> np.ndarray:
    """Audio of query ``i`` (float32 (length,)), cut from ``track_wave`` (the whole track (T,)).

    Reverb convolves the segment together with up to one RIR length of the audio before it (so the
    snippet carries the tail of what preceded it, as a recording would), then noise is added at the
    condition's SNR over the snippet (:func:`faiss_flowhash.audio.augment.add_noise`).
    """
    from .audio.augment import add_noise, apply_rir

    track_wave = np.asarray(track_wave)
    s, L = int(queries.start[i]), int(queries.length[i])
    if track_wave.ndim != 1 or s + L > len(track_wave):
        raise ValueError(f"track_wave: expected shape (T,) with T >= {s + L} for query {i}, got {track_wave.shape}")
    cond = queries.conditions[int(queries.cond[i])]
    if cond.rt60_s is not None:
        rir = banks.rooms[cond.rt60_s][int(queries.room[i])]
        pre = min(s, len(rir))
        x = apply_rir(track_wave[s - pre:s + L], rir)[pre:]
    else:
        x = np.asarray(track_wave[s:s + L], dtype=np.float32)
    if cond.snr_db is not None:
        n0 = int(queries.noise_start[i])
        x = add_noise(x, banks.noises[int(queries.noise[i])][n0:n0 + L], cond.snr_db)
    return np.ascontiguousarray(x, dtype=np.float32)


# ------------------------------------------------------------------------------------------ scoring
def locate_from_counts(counts: Sequence[int]) -> Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]]:
    """For a database whose ids run 0..N-1 track after track (``counts[t]`` windows of track t):
    a function ids (m,) -> (track (m,), window index in its track (m,)); -1, -1 for ids < 0 or >= N."""
    counts = np.asarray(counts, dtype=np.int64)
    ends = np.cumsum(counts)
    starts = ends - counts
    total = int(ends[-1]) if len(ends) else 0

    def locate(ids):
        ids = np.asarray(ids, dtype=np.int64)
        ok = (ids >= 0) & (ids < total)
        t = np.searchsorted(ends, np.where(ok, ids, 0), side="right")
        t = np.where(ok, t, -1)
        seg = np.where(ok, ids - starts[np.maximum(t, 0)], -1)
        return t, seg

    return locate


def consensus(tracks: np.ndarray, segs: np.ndarray, scores: np.ndarray) -> tuple[int, int, int]:
    """Offset consensus of eq. 12-13 over a query's per-segment hits, exactly as the paper writes it.

    tracks, segs, scores: (O, k) the track and window index of each segment's top-k hits (-1: none).
    Hit (o, j) votes for the query starting at window ``segs[o, j] - o`` of ``tracks[o, j]``; the
    start with the most votes wins (eq. 13; with k = 1 exactly the paper's rule), ties broken by the
    larger summed score, then the earlier segment. Returns (track, start window, votes); (-1, 0, 0)
    when no segment has a hit.
    """
    O = tracks.shape[0]
    o = np.broadcast_to(np.arange(O)[:, None], tracks.shape)
    ok = tracks >= 0
    if not ok.any():
        return -1, 0, 0
    t, st, sc = tracks[ok].astype(np.int64), (segs - o)[ok].astype(np.int64), scores[ok].astype(np.float64)
    keys, inv = np.unique(np.stack([t, st], 1), axis=0, return_inverse=True)
    inv = inv.reshape(-1)
    votes = np.bincount(inv, minlength=len(keys))
    mass = np.bincount(inv, weights=sc, minlength=len(keys))
    best = np.lexsort((-mass, -votes))[0]
    return int(keys[best, 0]), int(keys[best, 1]), int(votes[best])


def _answer(tracks, segs, scores, hop_s: float, how: str, tolerance_s: float) -> tuple[int, float, int]:
    """The query's (track, start in seconds, agreeing segments) from its hits (O, k)."""
    if how == "paper":
        t, start, votes = consensus(tracks, segs, scores)
        return t, start * hop_s, votes
    from .db.consensus import vote_offsets

    O = tracks.shape[0]
    cands = vote_offsets(tracks, np.where(segs >= 0, segs, 0) * hop_s, scores, np.arange(O) * hop_s,
                         tolerance_s=tolerance_s)
    if not cands:
        return -1, 0.0, 0
    return cands[0].track_id, max(0.0, cands[0].offset_s), cands[0].support


def is_hit(pred_track, pred_start_s, true_track, true_start_s, *, tolerance_s: float = TOLERANCE_S) -> np.ndarray:
    """Top-1 hit (section 4.2): right track and start within ``tolerance_s`` (50 ms) of the truth."""
    pred_track, true_track = np.asarray(pred_track), np.asarray(true_track)
    err = np.abs(np.asarray(pred_start_s, np.float64) - np.asarray(true_start_s, np.float64))
    return (pred_track == true_track) & (err <= tolerance_s + 1e-9)


# ------------------------------------------------------------------------------------------ methods
Searcher = Callable[[np.ndarray, int], tuple]  # (q (m, d), k) -> (D (m, k), I (m, k), evaluated per row)


def index_searcher(index) -> Searcher:
    """Wrap an index as a searcher ``(q, k) -> (D, I, evaluated)``; ``evaluated`` = mean database
    vectors scored per query row: FlowHashIndex's ``last_search_stats.candidates``; IndexIVF*: faiss's
    distance counter; any other faiss index (flat, IndexLSH's Hamming scan): ``ntotal``."""
    import faiss

    is_ivf = isinstance(index, faiss.IndexIVF)

    def search(q, k):
        q = np.ascontiguousarray(q, dtype=np.float32)
        if is_ivf:
            faiss.cvar.indexIVF_stats.reset()
        D, I = index.search(q, k)
        if hasattr(index, "last_search_stats"):
            ev = index.last_search_stats.candidates
        elif is_ivf:
            ev = faiss.cvar.indexIVF_stats.ndis / max(len(q), 1)
        else:
            ev = float(index.ntotal)
        return D, I, float(ev)

    return search


def run_eval(
    query_fps: Sequence[np.ndarray],
    queries: QuerySet,
    methods: Mapping[str, Searcher],
    locate: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    ntotal: int,
    *,
    k: int = 1,
    hop_s: float = 0.1,
    tolerance_s: float = TOLERANCE_S,
    consensus: str = "db",
    batch_rows: int = 0,
    keep_hits: bool = False,
    progress: Callable[[str], None] | None = None,
) -> "EvalResult":
    """Search every query with every method; one result row per (method, query).

    Args:
        query_fps: per query, its fingerprints (O_i, d) (1 s windows every ``hop_s``).
        queries: the specs (truth: ``track``, ``start``).
        methods: name -> searcher (see :func:`index_searcher`); each query is one search call.
        locate: database ids (m,) -> (track (m,), window (m,)) (e.g. :func:`locate_from_counts`).
        ntotal: database size N (for eval % = 100 * evaluated / N).
        k: hits per segment that vote (1: the paper).
        consensus: "db" (the database's vote, :func:`faiss_flowhash.db.consensus.vote_offsets`: eq. 12-13
            over every hit with a 50 ms tolerance, score-weighted, sub-hop offset) or "paper"
            (:func:`consensus`: eq. 12-13 exactly, offsets on the hop grid).
        batch_rows: 0 (default): one search call per query (search_ms is that query's latency); > 0:
            the segments of a whole (length, condition) cell in calls of at most this many rows
            (much faster on large runs; search_ms and eval_pct are then the cell's means).
        keep_hits: also store each segment's top-1 id in the rows (``hits``, a list) for diagnostics.

    Returns:
        :class:`EvalResult`: ``rows`` per (method, query): method, query, length_s, condition, hit
        (bool), track_right (bool: the right track, whatever the offset), track, start_s (the answer),
        votes, eval_pct (mean over the query's segments), search_ms (search + consensus); ``table`` =
        :func:`summarize` of the rows.
    """
    if len(query_fps) != len(queries):
        raise ValueError(f"query_fps: expected {len(queries)} arrays (one per query), got {len(query_fps)}")
    if ntotal < 1:
        raise ValueError(f"ntotal: expected >= 1, got {ntotal}")
    if consensus not in ("db", "paper"):
        raise ValueError(f"consensus: expected 'db' or 'paper', got {consensus!r}")
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 0:
        raise ValueError(f"batch_rows: expected an int >= 0, got {batch_rows!r}")
    truth = (queries.track.astype(np.int64), queries.start_s)
    rows = []
    for name, search in methods.items():
        t_all = time.perf_counter()
        if batch_rows:
            answers = _search_batched(query_fps, queries, search, k, batch_rows)
        else:
            answers = _search_per_query(query_fps, search, k)
        for i, (D, I, ev, ms) in enumerate(answers):
            t0 = time.perf_counter()
            if I is not None and I.size:
                tr, sg = locate(I)
                track, start_s, votes = _answer(np.where(I >= 0, tr, -1), sg, D, hop_s, consensus, tolerance_s)
            else:
                track, start_s, votes = -1, 0.0, 0
            ms += 1000.0 * (time.perf_counter() - t0)
            rows.append({
                "method": name, "query": i, "length_s": float(queries.length_s[i]),
                "condition": queries.conditions[int(queries.cond[i])].label, "track": track,
                "start_s": start_s, "votes": votes, "eval_pct": 100.0 * ev / ntotal, "search_ms": ms,
                "track_right": bool(track == truth[0][i]),
                "hit": bool(is_hit(track, start_s, truth[0][i], float(truth[1][i]), tolerance_s=tolerance_s)),
            })
            if keep_hits:
                rows[-1]["hits"] = I[:, 0].tolist() if I is not None else []
        if progress is not None:
            progress(f"{name}: {len(query_fps)} queries in {time.perf_counter() - t_all:.1f} s")
    return EvalResult(rows=rows, table=summarize(rows), conditions=tuple(queries.conditions))


def _search_per_query(query_fps, search, k):
    """One search call per query: (D, I, evaluated per row, ms) per query."""
    for q in query_fps:
        t0 = time.perf_counter()
        D, I, ev = search(q, k) if len(q) else (None, None, 0.0)
        yield D, I, ev, 1000.0 * (time.perf_counter() - t0)


def _search_batched(query_fps, queries, search, k, batch_rows):
    """The segments of all queries of one (length, condition) cell in calls of <= batch_rows rows:
    per query its (D, I) slice, the cell's mean evaluated per row, and the cell's time per query."""
    out = [None] * len(query_fps)
    cells = np.stack([queries.length, queries.cond], 1)
    for cell in np.unique(cells, axis=0):
        idx = np.flatnonzero((cells == cell).all(1))
        sizes = np.array([len(query_fps[i]) for i in idx])
        q = np.concatenate([query_fps[i] for i in idx])
        t0 = time.perf_counter()
        D, I, evs = [], [], 0.0
        for lo in range(0, len(q), batch_rows):
            d_, i_, e_ = search(q[lo:lo + batch_rows], k)
            D.append(d_), I.append(i_)
            evs += e_ * len(i_)
        ms = 1000.0 * (time.perf_counter() - t0) / len(idx)
        D, I = np.concatenate(D), np.concatenate(I)
        ends = np.cumsum(sizes)
        for j, i in enumerate(idx):
            out[i] = (D[ends[j] - sizes[j]:ends[j]], I[ends[j] - sizes[j]:ends[j]], evs / max(len(q), 1), ms)
    return out


@dataclass
class EvalResult:
    """``rows``: one dict per (method, query); ``table``: one per (method, length, condition)."""

    rows: list
    table: list
    conditions: tuple = PAPER_CONDITIONS

    def markdown(self) -> str:
        return format_table(self.table, conditions=self.conditions)


def summarize(rows: Sequence[dict]) -> list[dict]:
    """Per (method, length_s, condition): n, hit_rate (%), track_rate (% right track, any offset),
    eval_pct (mean), search_ms (mean), in first-seen order."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["method"], r["length_s"], r["condition"]), []).append(r)
    out = []
    for (m, L, c), g in groups.items():
        out.append({"method": m, "length_s": L, "condition": c, "n": len(g),
                    "hit_rate": 100.0 * float(np.mean([r["hit"] for r in g])),
                    "track_rate": 100.0 * float(np.mean([r.get("track_right", r["hit"]) for r in g])),
                    "eval_pct": float(np.mean([r["eval_pct"] for r in g])),
                    "search_ms": float(np.mean([r["search_ms"] for r in g]))})
    return out


def format_table(summary: Sequence[dict], *, conditions: Sequence[Condition] = PAPER_CONDITIONS) -> str:
    """Markdown table shaped like the paper's Table 1: rows = query length x method, columns =
    the conditions' hit rates (%), then eval % and search ms per query (means over the row)."""
    labels = [c.label for c in conditions]
    cell = {(s["method"], s["length_s"], s["condition"]): s for s in summary}
    methods = list(dict.fromkeys(s["method"] for s in summary))
    lengths = sorted({s["length_s"] for s in summary})
    head = ["query", "method"] + [lb.replace("noise+reverb", "N+R").replace("reverb ", "rev ") for lb in labels]
    lines = ["| " + " | ".join(head + ["eval %", "ms/query"]) + " |", "|" + "---|" * (len(head) + 2)]
    for L in lengths:
        for m in methods:
            got = [cell.get((m, L, lb)) for lb in labels]
            if not any(got):
                continue
            vals = [f"{g['hit_rate']:.1f}" if g else "" for g in got]
            present = [g for g in got if g]
            ev = np.mean([g["eval_pct"] for g in present])
            ms = np.mean([g["search_ms"] for g in present])
            lines.append("| " + " | ".join([f"{L:g}s", m] + vals + [f"{ev:.3g}", f"{ms:.2f}"]) + " |")
    return "\n".join(lines)


def fingerprint_queries(queries: QuerySet, load_track: Callable[[int], np.ndarray], fingerprinter,
                        banks: Banks, *, progress: Callable[[str], None] | None = None) -> list:
    """Render every query (:func:`render_query`) and fingerprint it: a list of (O_i, d) arrays.
    ``load_track(t)`` returns track t's audio (T,) at the queries' sample rate; each track is loaded once."""
    out = [None] * len(queries)
    tracks = np.unique(queries.track)
    for j, t in enumerate(tracks):
        wave = load_track(int(t))
        for i in np.flatnonzero(queries.track == t):
            out[i] = fingerprinter.fingerprint(render_query(wave, queries, int(i), banks))
        if progress is not None:
            progress(f"queries of {j + 1}/{len(tracks)} tracks fingerprinted")
    return out


def add_eval_arguments(parser) -> None:
    """Arguments of ``flowhash eval DB QUERIES`` (see :mod:`faiss_flowhash.eval_command`)."""
    from .eval_command import add_eval_arguments as add

    add(parser)


def run_eval_command(args) -> int:
    """``flowhash eval``: run the protocol on a database (see :mod:`faiss_flowhash.eval_command`)."""
    from .eval_command import run_eval_command as run

    return run(args)
