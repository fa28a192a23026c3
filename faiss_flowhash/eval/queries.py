"""Query specs of the Table 1 protocol: drawn from a seed, saved and loaded, rendered into audio.

:func:`make_queries` draws query *specs* (track, start, length, distortion, noise clip, room) from a
seed; :func:`query_distortion` turns one spec into a :class:`~faiss_flowhash.audio.distort.Distortion`
(the one distortion protocol, eval split of its noise clips and rooms: never used in training),
:func:`render_query` into audio, :func:`fingerprint_queries` every spec into fingerprints;
:func:`make_banks` lists the clips and rooms a set refers to. A saved spec file regenerates the exact
query audio.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .conditions import PAPER_CONDITIONS, QUERY_LENGTHS_S, Condition

__all__ = ["QuerySet", "Banks", "make_queries", "make_banks", "query_distortion", "render_query", "fingerprint_queries",
           "query_repeats"]

NOISE_CLIP_S = 10.0  # the length of the clips distort.render_window reads (distort.noise_clip's default)
_VERSION = 2  # 2: rendered through audio.distort (1: augment.add_noise / apply_rir, retired)


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
        meta = {"version": _VERSION, "conditions": [[c.kind, c.snr_db, c.rt60_s] for c in self.conditions],
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
        if meta.get("version") != _VERSION:
            raise ValueError(f"{path}: expected query set version {_VERSION} (rendered by audio.distort), got "
                             f"{meta.get('version')!r}; version 1 rendered another way: draw the queries again")
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
    if max(lengths) > noise_len or noise_s > NOISE_CLIP_S:
        raise ValueError(f"noise_s: expected >= the longest query ({max(lengths_s)} s) and <= the noise clips' "
                         f"{NOISE_CLIP_S:g} s, got {noise_s}")
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
    """The eval-split distortions a query set refers to, as :mod:`~faiss_flowhash.audio.distort` renders
    them: ``noises`` list of noise clips (10 s), ``rooms`` {rt60_s: list of prepared RIRs}. For inspection
    (rendering draws the same clips and rooms itself through ``distort``'s caches)."""

    noises: list
    rooms: dict


def _room_seed(queries: QuerySet, rt60_s: float) -> int:
    return int(queries.bank_seed) + int(round(rt60_s * 1000))  # one set of n_rooms rooms per distinct RT60


def make_banks(queries: QuerySet) -> Banks:
    """The eval-split noise clips and rooms ``queries`` refer to (``distort.noise_clip`` /
    ``distort.room_rir`` with ``split="eval"``: never used in training). One set of ``n_rooms`` rooms
    per distinct RT60, each at exactly that RT60."""
    from ..audio.distort import noise_clip, room_rir

    noises = [noise_clip(queries.bank_seed, j, "eval") for j in range(queries.n_noises)]
    rooms = {}
    for rt in sorted({c.rt60_s for c in queries.conditions if c.rt60_s is not None}):
        rooms[rt] = [room_rir(_room_seed(queries, rt), j, "eval", (rt, rt)) for j in range(queries.n_rooms)]
    return Banks(noises=noises, rooms=rooms)


def query_distortion(queries: QuerySet, i: int):
    """The :class:`~faiss_flowhash.audio.distort.Distortion` of query ``i``: the condition's recipe
    (:func:`faiss_flowhash.audio.distort.condition`) with the spec's eval noise clip (``noise``, cut
    from ``noise_start``) and eval room (``room``, at the condition's exact RT60). The recipe's own
    random parts (burst envelope, phone band jitter) are seeded by the query's spec, so the same spec
    gives the same audio in any query set."""
    from dataclasses import replace

    from ..audio.distort import Room, condition

    if not 0 <= i < len(queries):
        raise ValueError(f"i: expected a query index in [0, {len(queries)}), got {i}")
    cond = queries.conditions[int(queries.cond[i])]
    rng = np.random.default_rng(np.random.SeedSequence(
        [int(queries.seed), int(queries.track[i]), int(queries.start[i]), int(queries.noise_start[i]), 0x6576]))
    rt = cond.rt60_s if cond.rt60_s is not None else 0.5
    d = condition(cond.kind, rng, snr_db=cond.snr_db if cond.snr_db is not None else 10.0,
                  bank_seed=int(queries.bank_seed), n_noises=int(queries.n_noises), n_rooms=int(queries.n_rooms),
                  split="eval", rt60_range=(rt, rt))
    if d.noise is not None:
        clip_len = int(round(NOISE_CLIP_S * queries.sample_rate))
        phase = ((int(queries.noise_start[i]) % clip_len) + 0.5) / clip_len  # int(phase * clip_len) = noise_start
        d = replace(d, noise=replace(d.noise, seed=int(queries.bank_seed), index=int(queries.noise[i]), phase=phase))
    if d.room is not None:
        d = replace(d, room=Room(_room_seed(queries, rt), int(queries.room[i]), "eval", (rt, rt)))
    return d


def render_query(track_wave: np.ndarray, queries: QuerySet, i: int) -> np.ndarray:
    """Audio of query ``i`` (float32 (length,)), cut from ``track_wave`` (the whole track (T,)) and
    degraded by :func:`query_distortion` through :func:`faiss_flowhash.audio.distort.render` (the room
    hears 0.5 s of the audio before the snippet, then noise at the condition's SNR over the snippet)."""
    from ..audio.distort import render

    track_wave = np.asarray(track_wave)
    s, L = int(queries.start[i]), int(queries.length[i])
    if track_wave.ndim != 1 or s + L > len(track_wave):
        raise ValueError(f"track_wave: expected shape (T,) with T >= {s + L} for query {i}, got {track_wave.shape}")
    x = render(track_wave, query_distortion(queries, i), start=s, length=L)
    return np.ascontiguousarray(x, dtype=np.float32)


def fingerprint_queries(queries: QuerySet, load_track: Callable[[int], np.ndarray], fingerprinter, *,
                        progress: Callable[[str], None] | None = None) -> list:
    """Render every query (:func:`render_query`) and fingerprint it: a list of (O_i, d) arrays.
    ``load_track(t)`` returns track t's audio (T,) at the queries' sample rate; each track is loaded once."""
    out = [None] * len(queries)
    tracks = np.unique(queries.track)
    for j, t in enumerate(tracks):
        wave = load_track(int(t))
        for i in np.flatnonzero(queries.track == t):
            out[i] = fingerprinter.fingerprint(render_query(wave, queries, int(i)))
        if progress is not None:
            progress(f"queries of {j + 1}/{len(tracks)} tracks fingerprinted")
    return out


def query_repeats(queries: QuerySet, load_track: Callable[[int], np.ndarray], *, min_corr: float = 0.95) -> list:
    """Per query, the exact repeats of its true segment in its track (seconds,
    :func:`~faiss_flowhash.eval.scoring.exact_repeats`), for ``run_eval(repeats=...)``; each track loaded once."""
    from .scoring import exact_repeats

    out = [[] for _ in range(len(queries))]
    for t in np.unique(queries.track):
        wave = load_track(int(t))
        for i in np.flatnonzero(queries.track == t):
            out[i] = exact_repeats(wave, int(queries.start[i]), int(queries.length[i]), min_corr=min_corr,
                                   sample_rate=queries.sample_rate)
    return out
