"""Simulated room impulse responses (RIRs) with a requested RT60, and RT60 measurement.

``simulate_rir`` builds a hybrid RIR: the image-source method (pyroomacoustics shoebox,
absorption from ``pra.inverse_sabine``) for the direct path and early reflections, plus a
seeded exponentially decaying noise tail with exactly the requested RT60 for the late
part. Full-order image sources are slow (seconds at 0.8 s) and miss Sabine's RT60 by
20-40 %; the hybrid is fast, deterministic and lands within ~10 %. Without
pyroomacoustics (``method="synthetic"`` or not installed) the early part is a direct path
alone. pyroomacoustics is imported lazily.
"""

from __future__ import annotations

import numpy as np

from .noise import _rng  # one seed-or-Generator rule for every generator

__all__ = ["simulate_rir", "rir_bank", "measure_rt60"]

_LN_1E3 = 3.0 * np.log(10.0)  # amplitude decays by 60 dB = a factor 1e3 in RT60 seconds


def _pra():
    try:
        import pyroomacoustics as pra
    except ImportError:
        return None
    return pra


def _tail(n: int, rt60_s: float, sample_rate: int, rng: np.random.Generator) -> np.ndarray:
    t = np.arange(n) / sample_rate
    return rng.standard_normal(n) * np.exp(-_LN_1E3 * t / rt60_s)


def _sample_room(rng: np.random.Generator) -> np.ndarray:
    return np.array([rng.uniform(3.0, 12.0), rng.uniform(2.5, 10.0), rng.uniform(2.4, 4.0)])


def _image_source_early(rt60_s, room_dim, sample_rate, rng, early_order):
    pra = _pra()
    dim = np.asarray(room_dim, dtype=float)
    for _ in range(20):  # Sabine needs absorption <= 1: shrink rooms too big for a short RT60
        try:
            e_abs, _max_order = pra.inverse_sabine(rt60_s, dim.tolist())
            break
        except ValueError:
            dim = dim * 0.85
    else:
        raise ValueError(f"room_dim: no absorption gives rt60_s={rt60_s} in a room of {list(room_dim)} m")
    margin = 0.5
    for _ in range(100):
        src = rng.uniform(margin, dim - margin)
        mic = rng.uniform(margin, dim - margin)
        if np.linalg.norm(src - mic) >= 1.0:
            break
    room = pra.ShoeBox(dim.tolist(), fs=sample_rate, materials=pra.Material(float(e_abs)), max_order=early_order)
    room.add_source(src.tolist())
    room.add_microphone(mic.tolist())
    room.compute_rir()
    return np.asarray(room.rir[0][0], dtype=np.float64), dim


def simulate_rir(
    rt60_s: float,
    *,
    room_dim=None,
    sample_rate: int = 16000,
    rng: np.random.Generator | None = None,
    method: str = "auto",
    early_order: int = 6,
) -> np.ndarray:
    """Room impulse response with reverberation time ``rt60_s`` seconds, float32 ``(L,)``.

    ``room_dim`` (metres, ``(3,)``) is drawn from ``rng`` when None; source and microphone
    positions are drawn from ``rng`` (>= 1 m apart). ``method``: ``"pra"`` (image sources
    up to ``early_order`` + exact-RT60 tail; needs pyroomacoustics), ``"synthetic"``
    (direct path + tail, pure numpy) or ``"auto"`` (pra when importable). The direct path
    is the largest sample; ``L`` covers the 60 dB decay. Deterministic for a given ``rng``.
    """
    if not (np.isfinite(rt60_s) and 0.05 <= rt60_s <= 5.0):
        raise ValueError(f"rt60_s: expected seconds in [0.05, 5], got {rt60_s}")
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate: expected a positive int (Hz), got {sample_rate!r}")
    if method not in ("auto", "pra", "synthetic"):
        raise ValueError(f"method: expected 'auto', 'pra' or 'synthetic', got {method!r}")
    if room_dim is not None:
        room_dim = np.asarray(room_dim, dtype=float)
        if room_dim.shape != (3,) or not np.all(room_dim > 1.0):
            raise ValueError(f"room_dim: expected 3 lengths > 1 m, got {room_dim.tolist()}")
    rng = _rng(rng)
    if method == "pra" and _pra() is None:
        raise ImportError("method='pra' needs pyroomacoustics (pip install pyroomacoustics)")
    use_pra = method == "pra" or (method == "auto" and _pra() is not None)
    dim = _sample_room(rng) if room_dim is None else room_dim
    n_tail = int(np.ceil(1.1 * rt60_s * sample_rate))
    if use_pra:
        early, dim = _image_source_early(rt60_s, dim, sample_rate, rng, early_order)
        d = int(np.argmax(np.abs(early)))
        # the tail takes over from the image sources across a fade window after the direct path,
        # at the level that matches their energy there (continuity of the decay envelope)
        w0, w1 = d + int(0.005 * sample_rate), d + int(0.05 * sample_rate)
        h = np.zeros(max(early.size, d + n_tail))
        h[: early.size] = early
        tail = np.zeros_like(h)
        tail[d:d + n_tail] = _tail(min(n_tail, h.size - d), rt60_s, sample_rate, rng)
        e_early = np.sum(early[w0:w1] ** 2) if w1 <= early.size else np.sum(early[w0:] ** 2)
        e_tail = np.sum(tail[w0:w1] ** 2)
        tail *= np.sqrt(e_early / e_tail) if e_tail > 0 and e_early > 0 else abs(early[d]) * 0.3
        ramp = np.clip((np.arange(h.size) - w0) / max(w1 - w0, 1), 0.0, 1.0)
        h = (1.0 - ramp) * h + ramp * tail  # crossfade: image sources early, diffuse tail late
    else:
        delay = int(rng.integers(int(0.001 * sample_rate), int(0.01 * sample_rate) + 1))
        h = np.zeros(delay + n_tail)
        drr_db = rng.uniform(-6.0, 6.0)  # direct-to-reverberant energy ratio
        tail = _tail(n_tail, rt60_s, sample_rate, rng)
        tail[: int(0.002 * sample_rate)] = 0.0
        tail *= np.sqrt(1.0 / (np.sum(tail**2) * 10 ** (drr_db / 10)))
        h[delay:] = tail
        h[delay] = 1.0
    h = h / np.max(np.abs(h))
    return h.astype(np.float32)


def rir_bank(
    seed: int,
    n: int,
    *,
    rt60_range: tuple[float, float] = (0.2, 0.8),
    split: str = "train",
    sample_rate: int = 16000,
    method: str = "auto",
    return_params: bool = False,
):
    """``n`` simulated RIRs with RT60 uniform in ``rt60_range`` seconds.

    RIR ``i`` of split ``s`` (0 train, 1 eval) comes from ``SeedSequence([seed, s, i])``:
    rooms, positions and tails never repeat across splits. Returns a list of float32
    ``(L_i,)`` arrays, and with ``return_params=True`` also a list of dicts
    (``rt60_s``, ``method``).
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split: expected 'train' or 'eval', got {split!r}")
    lo, hi = rt60_range
    if not 0.05 <= lo <= hi <= 5.0:
        raise ValueError(f"rt60_range: expected 0.05 <= low <= high <= 5 seconds, got {rt60_range}")
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n: expected an int >= 0, got {n!r}")
    s = 0 if split == "train" else 1
    rirs, params = [], []
    for i in range(n):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), s, i, 0x726972]))
        rt60 = float(rng.uniform(lo, hi))
        rirs.append(simulate_rir(rt60, sample_rate=sample_rate, rng=rng, method=method))
        params.append({"rt60_s": rt60, "method": method})
    return (rirs, params) if return_params else rirs


def measure_rt60(rir, sample_rate: int = 16000, *, decay_db: float = 20.0) -> float:
    """RT60 in seconds by Schroeder backward integration.

    The energy decay curve from the direct path (largest ``|h|``) on is fitted by least
    squares between -5 dB and ``-5 - decay_db`` dB (T20 by default, ``decay_db=30`` for
    T30) and extrapolated to 60 dB. Raises ``ValueError`` when the RIR does not decay that far.
    """
    h = np.asarray(rir, dtype=np.float64)
    if h.ndim != 1 or h.size < 2 or not np.isfinite(h).all() or not np.any(h):
        raise ValueError(f"rir: expected a finite, non-zero 1-D array, got shape {h.shape}")
    if not 5.0 <= decay_db <= 55.0:
        raise ValueError(f"decay_db: expected in [5, 55] dB, got {decay_db}")
    h = h[int(np.argmax(np.abs(h))):]
    energy = np.cumsum((h**2)[::-1])[::-1]
    edc = 10.0 * np.log10(np.maximum(energy / energy[0], 1e-300))
    below_start = np.flatnonzero(edc <= -5.0)
    below_end = np.flatnonzero(edc <= -5.0 - decay_db)
    if below_start.size == 0 or below_end.size == 0:
        raise ValueError(f"rir: energy decay does not reach -{5 + decay_db:g} dB; cannot measure RT60")
    i0, i1 = below_start[0], below_end[0]
    if i1 - i0 < 2:
        i1 = i0 + 2
    t = np.arange(i0, i1) / sample_rate
    slope = np.polyfit(t, edc[i0:i1], 1)[0]  # dB per second, negative
    if slope >= 0:
        raise ValueError("rir: energy decay curve does not decrease; cannot measure RT60")
    return float(-60.0 / slope)
