"""Query specs of the Table 1 protocol: drawn from a seed, saved and loaded, rendered into audio.

:func:`make_queries` draws query *specs* (track, start, length, distortion, noise clip, room) from a
seed; :func:`make_banks` builds the eval-split noises and rooms they refer to (never used in
training); :func:`render_query` turns one spec into audio, :func:`fingerprint_queries` every spec
into fingerprints. A saved spec file regenerates the exact query audio.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .conditions import PAPER_CONDITIONS, QUERY_LENGTHS_S, Condition

__all__ = ["QuerySet", "Banks", "make_queries", "make_banks", "render_query", "fingerprint_queries", "query_repeats"]


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
    from ..audio.noise import noise_bank
    from ..audio.rooms import rir_bank

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
    from ..audio.augment import add_noise, apply_rir

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
