"""Distortions that make the positive view x+ of an audio window (paper section 4.4).

Pure functions (:func:`add_noise`, :func:`apply_rir`, :func:`time_offset`) work on numpy
arrays of shape ``(..., T)`` (samples); :class:`Augmenter` draws random distortions for a
batch of windows with a seeded ``numpy.random.Generator``. Noise and room-impulse-response
banks are passed in; build them with a train/eval split (``noise_bank(split=...)``,
``rir_bank(split=...)`` or :func:`split_bank`) so evaluation noises and rooms never reach
training.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.fft

__all__ = [
    "add_noise",
    "apply_rir",
    "prepare_rir",
    "time_offset",
    "split_bank",
    "AugmentConfig",
    "Augmenter",
]


def _as_signal(name: str, x, *, min_ndim: int = 1) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim < min_ndim or x.shape[-1] == 0:
        raise ValueError(f"{name}: expected shape (..., T) with T > 0, got {x.shape}")
    if not np.issubdtype(x.dtype, np.number) or np.iscomplexobj(x):
        raise TypeError(f"{name}: expected real numeric samples, got dtype {x.dtype}")
    return x


def _fit_length(noise: np.ndarray, n: int, start: int) -> np.ndarray:
    """``n`` samples of the 1-D ``noise`` from ``start``, tiling when it is too short."""
    L = noise.shape[-1]
    if L >= n and start + n <= L:
        return noise[start:start + n]
    idx = (start + np.arange(n)) % L
    return noise[idx]


def _mix(clean: np.ndarray, noise: np.ndarray, snr_db: np.ndarray) -> np.ndarray:
    """clean, noise (B, T) float64; snr_db (B,). Noise scaled so 10 log10(Pc/Pn) = snr_db."""
    p_c = np.mean(clean * clean, axis=-1)
    p_n = np.mean(noise * noise, axis=-1)
    # a silent clean window stays silent: there is no signal level to set an SNR against
    scale = np.sqrt(p_c / (np.maximum(p_n, 1e-300) * 10.0 ** (snr_db / 10.0)))
    return clean + scale[:, None] * noise


def add_noise(clean, noise, snr_db, *, rng: np.random.Generator | None = None) -> np.ndarray:
    """Add ``noise`` to ``clean`` ``(..., T)`` at ``snr_db`` dB (signal power / noise power).

    ``noise`` is either the same shape as ``clean`` or a 1-D clip of any length: longer
    clips are cropped at a random start (``rng``; start 0 when ``rng`` is None), shorter
    ones tiled. ``snr_db`` is a float or an array broadcastable to ``clean.shape[:-1]``.
    Powers are means over the whole window, so the SNR is exact up to float32 rounding.
    An all-zero ``clean`` row is returned unchanged. Returns float32 ``(..., T)``.
    """
    clean = _as_signal("clean", clean)
    noise = _as_signal("noise", noise)
    T = clean.shape[-1]
    lead = clean.shape[:-1]
    c = clean.reshape(-1, T).astype(np.float64)
    if noise.shape == clean.shape:
        nz = noise.reshape(-1, T).astype(np.float64)
    elif noise.ndim == 1:
        start = 0 if rng is None or noise.shape[0] <= T else int(rng.integers(0, noise.shape[0] - T + 1))
        nz = np.broadcast_to(_fit_length(noise.astype(np.float64), T, start), c.shape)
    else:
        raise ValueError(f"noise: expected shape {clean.shape} or (N,), got {noise.shape}")
    if not (np.mean(nz * nz, axis=-1) > 0).all():
        raise ValueError("noise: expected non-zero power, got an all-zero noise segment")
    snr = np.asarray(snr_db, dtype=np.float64)
    if not np.isfinite(snr).all():
        raise ValueError(f"snr_db: expected finite dB values, got {snr_db}")
    try:
        snr = np.broadcast_to(snr, lead).reshape(-1)
    except ValueError:
        raise ValueError(f"snr_db: expected a float or shape broadcastable to {lead}, got {snr.shape}") from None
    return _mix(c, nz, snr).astype(np.float32).reshape(clean.shape)


def prepare_rir(rir, *, normalize: str | None = "energy", align: bool = True) -> np.ndarray:
    """Return a 1-D float64 RIR ready for convolution.

    ``align`` drops the samples before the direct path (the largest ``|h|``) so reverb does
    not delay the signal. ``normalize``: ``"energy"`` (unit L2 norm: output power close to
    input power), ``"direct"`` (direct path = 1: the dry signal keeps its level, the tail
    adds to it) or ``None``.
    """
    h = _as_signal("rir", rir).astype(np.float64)
    if h.ndim != 1:
        raise ValueError(f"rir: expected shape (L,), got {h.shape}")
    if not np.isfinite(h).all() or not np.any(h):
        raise ValueError("rir: expected finite values, not all zero")
    peak = int(np.argmax(np.abs(h)))
    if align:
        h = h[peak:]
        peak = 0
    if normalize == "energy":
        h = h / np.sqrt(np.sum(h * h))
    elif normalize == "direct":
        h = h / h[peak]
    elif normalize is not None:
        raise ValueError(f"normalize: expected 'energy', 'direct' or None, got {normalize!r}")
    return h


def _fft_convolve_same(x: np.ndarray, H: np.ndarray, n_fft: int, T: int) -> np.ndarray:
    X = scipy.fft.rfft(x, n=n_fft, axis=-1)
    return scipy.fft.irfft(X * H, n=n_fft, axis=-1)[..., :T]


def apply_rir(x, rir, *, normalize: str | None = "energy", align: bool = True) -> np.ndarray:
    """Reverberate ``x`` ``(..., T)`` with the room impulse response ``rir`` ``(L,)``.

    FFT convolution, cut to the first ``T`` samples (same length as ``x``); see
    :func:`prepare_rir` for ``normalize`` and ``align``. Returns float32 ``(..., T)``.
    """
    x = _as_signal("x", x)
    h = prepare_rir(rir, normalize=normalize, align=align)
    T = x.shape[-1]
    n_fft = scipy.fft.next_fast_len(T + h.shape[0] - 1, real=True)
    H = scipy.fft.rfft(h, n=n_fft)
    return _fft_convolve_same(x.astype(np.float64), H, n_fft, T).astype(np.float32)


def _shift_rows(x: np.ndarray, shifts: np.ndarray) -> np.ndarray:
    """x (B, T); shifts (B,) int samples, > 0 delays (zeros in front), < 0 advances."""
    T = x.shape[-1]
    idx = np.arange(T)[None, :] - shifts[:, None]
    valid = (idx >= 0) & (idx < T)
    out = np.take_along_axis(x, np.clip(idx, 0, T - 1), axis=-1)
    return np.where(valid, out, 0).astype(x.dtype, copy=False)


def time_offset(x, offset_s: float, sample_rate: int = 16000) -> np.ndarray:
    """Shift ``x`` ``(..., T)`` by ``round(offset_s * sample_rate)`` samples, keeping ``T``.

    Positive offsets delay the content (zeros enter at the start), negative ones advance
    it (zeros at the end). Returns an array of ``x``'s dtype.
    """
    x = _as_signal("x", x)
    if sample_rate <= 0:
        raise ValueError(f"sample_rate: expected a positive int (Hz), got {sample_rate}")
    s = int(round(offset_s * sample_rate))
    T = x.shape[-1]
    flat = x.reshape(-1, T)
    return _shift_rows(flat, np.full(flat.shape[0], s)).reshape(x.shape)


def split_bank(clips, *, eval_fraction: float = 0.2, seed: int = 0) -> tuple[list, list]:
    """Split a list of clips (noises, RIRs) into disjoint ``(train, eval)`` lists.

    Deterministic for a given ``seed``; at least one clip goes to each side when there
    are two or more.
    """
    clips = list(clips)
    if not 0.0 < eval_fraction < 1.0:
        raise ValueError(f"eval_fraction: expected in (0, 1), got {eval_fraction}")
    n = len(clips)
    order = np.random.default_rng(seed).permutation(n)
    n_eval = min(max(1, int(round(eval_fraction * n))), n - 1) if n >= 2 else 0
    ev = sorted(order[:n_eval].tolist())
    tr = sorted(order[n_eval:].tolist())
    return [clips[i] for i in tr], [clips[i] for i in ev]


@dataclass(frozen=True)
class AugmentConfig:
    """Probabilities and ranges of :class:`Augmenter` (defaults: paper section 4.4).

    Each window gets exactly one of noise / reverb / noise+reverb / nothing, with
    probabilities ``p_noise``, ``p_reverb``, ``p_noise_reverb`` and the remainder; then,
    independently with ``p_offset``, a time offset uniform in ``[-max_offset_s,
    max_offset_s]`` seconds (applied first, zeros fill the gap). SNR in dB is uniform in
    ``snr_db_range``. ``rir_normalize`` is passed to :func:`prepare_rir`.

    The zero-filled offset only sees the window itself; when the whole track is at hand,
    cutting x+ from it at the shifted start is more realistic (then set ``p_offset=0``).
    """

    p_noise: float = 1 / 3
    p_reverb: float = 1 / 3
    p_noise_reverb: float = 1 / 3
    snr_db_range: tuple[float, float] = (0.0, 20.0)
    p_offset: float = 1.0
    max_offset_s: float = 0.05
    sample_rate: int = 16000
    rir_normalize: str | None = "energy"

    def __post_init__(self):
        for name in ("p_noise", "p_reverb", "p_noise_reverb", "p_offset"):
            v = getattr(self, name)
            if not 0.0 <= v <= 1.0:
                raise ValueError(f"{name}: expected a probability in [0, 1], got {v}")
        total = self.p_noise + self.p_reverb + self.p_noise_reverb
        if total > 1.0 + 1e-9:
            raise ValueError(f"p_noise + p_reverb + p_noise_reverb: expected <= 1, got {total}")
        lo, hi = self.snr_db_range
        if not (np.isfinite(lo) and np.isfinite(hi) and lo <= hi):
            raise ValueError(f"snr_db_range: expected finite (low, high) with low <= high, got {self.snr_db_range}")
        if not self.max_offset_s >= 0.0:
            raise ValueError(f"max_offset_s: expected >= 0 seconds, got {self.max_offset_s}")
        if self.sample_rate <= 0:
            raise ValueError(f"sample_rate: expected a positive int (Hz), got {self.sample_rate}")
        if self.rir_normalize not in ("energy", "direct", None):
            raise ValueError(f"rir_normalize: expected 'energy', 'direct' or None, got {self.rir_normalize!r}")

    @property
    def needs_noise(self) -> bool:
        return self.p_noise + self.p_noise_reverb > 0

    @property
    def needs_rirs(self) -> bool:
        return self.p_reverb + self.p_noise_reverb > 0


KIND_NAMES = ("clean", "noise", "reverb", "noise+reverb")


class Augmenter:
    """Random noise / reverb / noise+reverb and time offset for batches of windows.

    ``noises``: sequence of 1-D clips (any lengths, non-silent); ``rirs``: sequence of 1-D
    impulse responses, both at ``config.sample_rate``. Pass only the training split here.
    ``seed`` seeds the internal ``numpy.random.Generator``: the same seed and inputs give
    the same outputs.

    ``aug(x)`` with ``x`` of shape ``(T,)`` or ``(B, T)`` (numpy, or a torch tensor that is
    returned as a tensor on its device) returns the distorted float32 copy, same shape.
    ``aug(x, return_info=True)`` also returns a dict of per-row arrays: ``kind`` (index into
    ``KIND_NAMES``), ``snr_db`` (NaN without noise), ``noise_index``, ``rir_index`` (-1 when
    unused) and ``offset_samples``.
    """

    def __init__(self, noises=(), rirs=(), *, config: AugmentConfig = AugmentConfig(), seed: int = 0):
        if not isinstance(config, AugmentConfig):
            raise TypeError(f"config: expected AugmentConfig, got {type(config).__name__}")
        self.config = config
        self.rng = np.random.default_rng(seed)
        self.noises = []
        for i, n in enumerate(noises):
            n = _as_signal(f"noises[{i}]", n).astype(np.float32)
            if n.ndim != 1:
                raise ValueError(f"noises[{i}]: expected shape (N,), got {n.shape}")
            if not np.isfinite(n).all() or not np.mean(n.astype(np.float64) ** 2) > 0:
                raise ValueError(f"noises[{i}]: expected finite, non-silent samples")
            self.noises.append(n)
        self.rirs = [prepare_rir(h, normalize=config.rir_normalize) for h in rirs]
        if config.needs_noise and not self.noises:
            raise ValueError("noises: expected at least one clip when p_noise or p_noise_reverb > 0, got none")
        if config.needs_rirs and not self.rirs:
            raise ValueError("rirs: expected at least one impulse response when p_reverb or p_noise_reverb > 0, got none")
        self._rir_len = max((h.shape[0] for h in self.rirs), default=1)
        self._rir_fft: dict[int, np.ndarray] = {}

    def _rir_spectra(self, T: int) -> tuple[int, np.ndarray]:
        n_fft = scipy.fft.next_fast_len(T + self._rir_len - 1, real=True)
        if n_fft not in self._rir_fft:  # (R, n_fft // 2 + 1) complex64, cached per window length
            bank = np.zeros((len(self.rirs), n_fft), dtype=np.float32)
            for i, h in enumerate(self.rirs):
                bank[i, : h.shape[0]] = h
            self._rir_fft[n_fft] = scipy.fft.rfft(bank, axis=-1).astype(np.complex64)
        return n_fft, self._rir_fft[n_fft]

    def __call__(self, x, *, return_info: bool = False):
        torch_like = None
        if type(x).__module__.startswith("torch"):
            torch_like = x
            x = x.detach().cpu().numpy()
        x = _as_signal("x", x)
        if x.ndim > 2:
            raise ValueError(f"x: expected shape (T,) or (B, T), got {x.shape}")
        single = x.ndim == 1
        xb = np.array(x, dtype=np.float32, ndmin=2, copy=True)  # (B, T)
        B, T = xb.shape
        cfg, rng = self.config, self.rng

        u = rng.random(B)
        edges = np.cumsum([cfg.p_noise, cfg.p_reverb, cfg.p_noise_reverb])
        kind = np.where(u < edges[0], 1, np.where(u < edges[1], 2, np.where(u < edges[2], 3, 0)))
        max_shift = int(round(cfg.max_offset_s * cfg.sample_rate))
        shifts = rng.integers(-max_shift, max_shift + 1, size=B)
        shifts = np.where(rng.random(B) < cfg.p_offset, shifts, 0)
        snr = rng.uniform(*cfg.snr_db_range, size=B)
        noise_idx = rng.integers(0, max(len(self.noises), 1), size=B)
        noise_u = rng.random(B)
        rir_idx = rng.integers(0, max(len(self.rirs), 1), size=B)

        if np.any(shifts):
            xb = _shift_rows(xb, shifts)
        rev = (kind == 2) | (kind == 3)
        if rev.any():
            n_fft, H = self._rir_spectra(T)
            rows = np.flatnonzero(rev)
            xb[rows] = _fft_convolve_same(xb[rows], H[rir_idx[rows]], n_fft, T)
        noisy = (kind == 1) | (kind == 3)
        if noisy.any():
            rows = np.flatnonzero(noisy)
            segs = np.empty((rows.size, T), dtype=np.float64)
            for j, r in enumerate(rows):
                clip = self.noises[noise_idx[r]]
                start = int(noise_u[r] * clip.shape[0])  # random phase; tiles when clip is short
                segs[j] = _fit_length(clip, T, start)
            xb[rows] = _mix(xb[rows].astype(np.float64), segs, snr[rows])

        out = xb[0] if single else xb
        if torch_like is not None:
            import torch

            out = torch.from_numpy(np.ascontiguousarray(out)).to(torch_like.device)
        if not return_info:
            return out
        info = {
            "kind": kind,
            "snr_db": np.where(noisy, snr, np.nan),
            "noise_index": np.where(noisy, noise_idx, -1),
            "rir_index": np.where(rev, rir_idx, -1),
            "offset_samples": shifts,
        }
        return out, info
