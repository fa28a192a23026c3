"""Benchmark data: synthetic fingerprint-like vectors, and loading of real ones.

The synthetic generator imitates audio fingerprints (unit-norm, d=128 by default):

* "genres": clusters on the sphere with Zipf-distributed weights and varied spread;
* "tracks": each track has a centre drawn around its genre centre and a length drawn
  from a log-normal law (50..3000 segments, ~300 on average = a 30 s track at 100 ms hop);
* segments of a track follow a smooth random process around the track centre (moving
  average of white noise with a per-track window), so consecutive vectors are correlated
  like overlapping 1 s windows;
* all noise is anisotropic (a decaying spectrum in a random basis), as real embeddings are.

Queries are distorted copies of random database vectors (a sub-hop time offset, then
noise at a per-query "SNR" level); the index of the source vector is the known truth. The
distortion is strong enough that exact search does not always return the source vector
(neighbouring segments of the same track compete), so hit rate and recall-vs-exact differ.
Positives ``x_pos`` for FlowHash training are the same distortion applied to training
vectors with independent draws.
"""

from __future__ import annotations

import dataclasses
import os

import numpy as np

__all__ = ["Dataset", "SynthParams", "make_synthetic", "distort", "load_vectors", "exact_top1"]


@dataclasses.dataclass(frozen=True)
class SynthParams:
    """Knobs of the synthetic generator (defaults are the committed benchmark's)."""

    d: int = 128
    n_genres: int = 48           # top-level clusters
    zipf: float = 1.1            # genre weight ~ 1 / rank**zipf
    mean_track_len: float = 300.0
    genre_spread: tuple = (0.35, 1.0)   # std of track centres around the genre centre
    track_spread: tuple = (0.45, 0.9)   # std of segments around the track centre
    window: tuple = (3, 20)             # moving-average window (segments) of the in-track process
    jitter: float = 0.25                # independent per-segment noise (relative)
    spectrum_decay: float = 0.6         # noise variance of direction j ~ (1 + j) ** -decay
    # queries / positives
    offset_max: float = 0.5             # time offset, fraction of a hop towards the next segment
    noise: tuple = (0.3, 1.0)           # per-query distortion std (relative to unit-norm vectors)


@dataclasses.dataclass
class Dataset:
    """Vectors for one benchmark run (all float32, unit-norm for the synthetic set).

    x: (N, d) database; q: (nq, d) queries; truth: (nq,) int64 index of the known true
    neighbour (-1 unknown); x_train: (nt, d) training vectors; x_pos: (nt, d) positives or
    None; track: (N,) int64 track id of each database vector or None.
    """

    name: str
    x: np.ndarray
    q: np.ndarray
    truth: np.ndarray
    x_train: np.ndarray
    x_pos: np.ndarray | None
    track: np.ndarray | None = None
    info: dict = dataclasses.field(default_factory=dict)


def _normalize(x: np.ndarray) -> np.ndarray:
    x /= np.linalg.norm(x, axis=1, keepdims=True) + 1e-12
    return x


class _Aniso:
    """Anisotropic Gaussian noise: spectrum (1+j)^-decay in a random orthonormal basis."""

    def __init__(self, d: int, decay: float, rng: np.random.Generator):
        s = (1.0 + np.arange(d)) ** (-decay / 2)
        self.scale = (s / np.sqrt((s**2).sum())).astype(np.float32)   # E|n|^2 = 1
        self.basis = np.linalg.qr(rng.standard_normal((d, d)))[0].astype(np.float32)

    def __call__(self, n: int, rng: np.random.Generator) -> np.ndarray:
        g = rng.standard_normal((n, self.scale.size), dtype=np.float32)
        return (g * self.scale) @ self.basis.T                         # (n, d)


def _segments(n: int, p: SynthParams, rng: np.random.Generator) -> np.ndarray:
    """Track lengths summing to exactly n."""
    sigma = 0.6
    mu = np.log(p.mean_track_len) - sigma**2 / 2
    lens = []
    total = 0
    while total < n:
        ln = int(np.clip(rng.lognormal(mu, sigma), 50, 3000))
        ln = min(ln, n - total)
        lens.append(ln)
        total += ln
    return np.asarray(lens, dtype=np.int64)


def make_synthetic(n: int, nq: int, *, n_train: int | None = None,
                   params: SynthParams = SynthParams(), seed: int = 0) -> Dataset:
    """Generate a synthetic fingerprint-like data set (see module docstring).

    n: database size; nq: number of queries; n_train: training-set size (a sample of the
    database, default min(n, 100_000)), with positives x_pos of the same size.
    """
    if n < 100 or nq < 1:
        raise ValueError(f"n, nq: expected n >= 100 and nq >= 1, got n={n}, nq={nq}")
    p = params
    rng = np.random.default_rng(seed)
    d = p.d
    aniso = _Aniso(d, p.spectrum_decay, rng)

    # genres: centres, weights (Zipf), spreads
    g_centre = _normalize(rng.standard_normal((p.n_genres, d)).astype(np.float32))
    g_w = 1.0 / (1.0 + np.arange(p.n_genres)) ** p.zipf
    g_w /= g_w.sum()
    g_spread = rng.uniform(*p.genre_spread, size=p.n_genres).astype(np.float32)

    # tracks: genre, centre, spread, smoothing window
    lens = _segments(n, p, rng)
    nt = lens.size
    t_genre = rng.choice(p.n_genres, size=nt, p=g_w)
    t_centre = _normalize(g_centre[t_genre] + g_spread[t_genre, None] * aniso(nt, rng))
    t_spread = rng.uniform(*p.track_spread, size=nt).astype(np.float32)
    t_win = rng.integers(p.window[0], p.window[1] + 1, size=nt)

    track = np.repeat(np.arange(nt), lens)                     # (N,)
    start = np.repeat(np.cumsum(lens) - lens, lens)            # (N,) first row of the track
    pos = np.arange(n) - start
    # moving average of white noise inside each track, vectorised with a cumulative sum
    x = np.empty((n, d), dtype=np.float32)
    chunk = 1 << 18
    cs = np.zeros((n + 1, d), dtype=np.float32)
    for i0 in range(0, n, chunk):
        cs[i0 + 1:i0 + 1 + min(chunk, n - i0)] = aniso(min(chunk, n - i0), rng)
    np.cumsum(cs, axis=0, out=cs)
    win = t_win[track]
    lo = np.maximum(pos - win + 1, 0) + start                  # first row of the window
    cnt = (np.arange(n) - lo + 1).astype(np.float32)
    for i0 in range(0, n, chunk):
        sl = slice(i0, min(n, i0 + chunk))
        idx = np.arange(sl.start, sl.stop)
        w = (cs[idx + 1] - cs[lo[sl]]) / np.sqrt(cnt[sl])[:, None]   # unit variance
        w += p.jitter * aniso(idx.size, rng)
        x[sl] = t_centre[track[sl]] + t_spread[track[sl], None] * w
    del cs
    _normalize(x)

    q, truth = _queries(x, track, nq, p, aniso, rng)
    n_train = min(n, 100_000) if n_train is None else min(n_train, n)
    tr = np.sort(rng.choice(n, size=n_train, replace=False))
    x_train = x[tr]
    x_pos = distort(x, tr, track, p, rng, aniso)
    info = dict(generator="synthetic", seed=seed, n_tracks=int(nt), n_genres=p.n_genres,
                params=dataclasses.asdict(p))
    return Dataset(f"synth-{n}", x, q, truth, x_train, x_pos, track, info)


def distort(x: np.ndarray, idx: np.ndarray, track: np.ndarray | None, p: SynthParams,
            rng: np.random.Generator, aniso: _Aniso | None = None) -> np.ndarray:
    """Distorted copies of x[idx]: time offset towards the next segment, then noise.

    x: (N, d) unit-norm; idx: (m,) rows; track: (N,) track ids (None: no time offset).
    Returns (m, d) float32 unit-norm.
    """
    d = x.shape[1]
    aniso = aniso or _Aniso(d, p.spectrum_decay, rng)
    m = idx.size
    nxt = np.minimum(idx + 1, x.shape[0] - 1)
    if track is not None:
        same = track[nxt] == track[idx]
        a = rng.uniform(0, p.offset_max, size=m).astype(np.float32) * same
    else:
        a = np.zeros(m, dtype=np.float32)
    y = (1 - a)[:, None] * x[idx] + a[:, None] * x[nxt]
    # half isotropic (broadband noise), half along the data's own spectrum (structured)
    sig = rng.uniform(*p.noise, size=m).astype(np.float32)[:, None]
    iso = rng.standard_normal((m, d), dtype=np.float32) / np.sqrt(d)
    y += sig * np.sqrt(0.5) * (iso + aniso(m, rng))
    return _normalize(y.astype(np.float32))


def _queries(x, track, nq, p, aniso, rng):
    truth = rng.choice(x.shape[0], size=nq, replace=False if nq <= x.shape[0] else True)
    return distort(x, truth, track, p, rng, aniso), truth.astype(np.int64)


def load_vectors(vectors: str, queries: str | None = None, truth: str | None = None, *,
                 positives: str | None = None, nq: int = 1000, n_train: int | None = None,
                 params: SynthParams = SynthParams(), seed: int = 0) -> Dataset:
    """Load real vectors (.npy, (N, d)). Without ``queries``, queries are synthetic
    distortions of random database rows (truth = the row); without ``positives``,
    x_pos are synthetic distortions of the training rows (no time offset: track unknown).
    Vectors are L2-normalised (the benchmark uses inner product).
    """
    for f in (vectors, queries, truth, positives):
        if f is not None and not os.path.exists(f):
            raise FileNotFoundError(f)
    rng = np.random.default_rng(seed)
    x = _normalize(np.ascontiguousarray(np.load(vectors), dtype=np.float32))
    if x.ndim != 2:
        raise ValueError(f"{vectors}: expected shape (N, d), got {x.shape}")
    n, d = x.shape
    aniso = _Aniso(d, params.spectrum_decay, rng)
    info = dict(generator="file", vectors=os.path.abspath(vectors))
    if queries is not None:
        q = _normalize(np.ascontiguousarray(np.load(queries), dtype=np.float32))
        if q.ndim != 2 or q.shape[1] != d:
            raise ValueError(f"{queries}: expected shape (nq, {d}), got {q.shape}")
        if truth is not None:
            t = np.load(truth).astype(np.int64).reshape(-1)
            if t.size != q.shape[0]:
                raise ValueError(f"{truth}: expected {q.shape[0]} ids, got {t.size}")
        else:
            t = np.full(q.shape[0], -1, dtype=np.int64)
        info["queries"] = os.path.abspath(queries)
    else:
        q, t = _queries(x, None, nq, params, aniso, rng)
        info["queries"] = "synthetic distortion of database rows"
    n_train = min(n, 100_000) if n_train is None else min(n_train, n)
    tr = np.sort(rng.choice(n, size=n_train, replace=False))
    if positives is not None:
        xp = _normalize(np.ascontiguousarray(np.load(positives), dtype=np.float32))
        if xp.shape != x.shape:
            raise ValueError(f"{positives}: expected shape {x.shape}, got {xp.shape}")
        x_pos = xp[tr]
        info["positives"] = os.path.abspath(positives)
    else:
        x_pos = distort(x, tr, None, params, rng, aniso)
        info["positives"] = "synthetic distortion of training rows"
    name = os.path.splitext(os.path.basename(vectors))[0]
    return Dataset(name, x, q, t, x[tr], x_pos, None, info)


def exact_top1(ds: Dataset) -> np.ndarray:
    """Exact inner-product top-1 of every query of ds (nq,) int64: the reference for recall@1."""
    import faiss

    index = faiss.IndexFlatIP(ds.x.shape[1])
    index.add(ds.x)
    return index.search(ds.q, 1)[1][:, 0]
