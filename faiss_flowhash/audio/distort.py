"""One distortion protocol: a seeded, serialisable spec of how a recording was degraded, and its renderer.

A :class:`Distortion` says everything about one distorted view: time offset, room (an impulse response
named by bank seed, split and index), noise (a clip named the same way, its SNR, and an optional bursty
on/off envelope, as in a cafe), band-limiting / EQ of the playback or microphone (phone, laptop),
gain, clipping and a lossy codec (MP3, Opus, Vorbis through libsndfile). It is a frozen dataclass of
plain values: ``to_dict`` / ``from_dict`` round-trip through JSON, so a query set, a calibration run
or a training batch can be stored and rendered again bit for bit.

- ``render(wave, d, start=...)`` renders one distorted snippet; ``d.offset_s`` cuts it from ``wave``
  that much later (or earlier) than ``start`` so the shift brings in real neighbouring audio, and the
  room sees ``pre_s`` of audio before the snippet so the reverb tail is not cut off.
- ``draw(rng, profile)`` draws a random Distortion from a named :data:`PROFILES` entry ("train": the
  mixture used for training, on the train split of the banks; "eval-*": fixed conditions on the eval
  split).
- ``DistortionAugment`` applies ``draw`` + rendering to a batch of training views (``pairs.Augment``).

Order of the chain: room -> noise -> band/EQ -> gain -> clipping -> codec (playback in a room, noise
in the room, a microphone or phone channel, its level, its converter, its transmission). Noise clips
and rooms are the same as ``noise.noise_bank(seed, n, split)[index]`` and
``rooms.rir_bank(seed, n, rt60_range=..., split)[index]``; the train and eval splits never share a
clip or a room.
"""

from __future__ import annotations

import dataclasses
import functools
import io
import json
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.fft
from scipy.signal import butter, sosfilt

__all__ = [
    "Room",
    "Noise",
    "EQ",
    "Codec",
    "Distortion",
    "Profile",
    "EQ_PRESETS",
    "PROFILES",
    "render",
    "render_window",
    "draw",
    "CONDITIONS",
    "condition",
    "noise_clip",
    "room_rir",
    "DistortionAugment",
]

SAMPLE_RATE = 16000
_SPLITS = ("train", "eval")


def _check_split(split: str) -> None:
    if split not in _SPLITS:
        raise ValueError(f"split: expected 'train' or 'eval', got {split!r}")


def _check_index(name: str, v) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 0:
        raise ValueError(f"{name}: expected an int >= 0, got {v!r}")


@dataclass(frozen=True)
class Room:
    """Impulse response ``rooms.rir_bank(seed, index + 1, rt60_range=rt60_range, split=split)[index]``."""

    seed: int = 0
    index: int = 0
    split: str = "eval"
    rt60_range: tuple[float, float] = (0.2, 0.8)

    def __post_init__(self):
        _check_split(self.split)
        _check_index("Room.seed", self.seed)
        _check_index("Room.index", self.index)
        object.__setattr__(self, "rt60_range", tuple(float(v) for v in self.rt60_range))


@dataclass(frozen=True)
class Noise:
    """Noise clip ``noise.noise_bank(seed, index + 1, split=split)[index]`` at ``snr_db``, read from
    ``phase`` (fraction of the clip) on. ``bursty`` > 0: the noise comes in bursts (cafe-like: voices,
    dishes), an on/off envelope with mean burst ``bursty`` s and duty ``duty``, a floor of
    ``floor_db`` between bursts; the SNR is then the level *during* bursts."""

    seed: int = 0
    index: int = 0
    split: str = "eval"
    snr_db: float = 10.0
    phase: float = 0.0
    bursty: float = 0.0
    duty: float = 0.5
    floor_db: float = -20.0

    def __post_init__(self):
        _check_split(self.split)
        _check_index("Noise.seed", self.seed)
        _check_index("Noise.index", self.index)
        if not np.isfinite(self.snr_db):
            raise ValueError(f"Noise.snr_db: expected a finite dB value, got {self.snr_db!r}")
        if not 0.0 <= self.phase < 1.0:
            raise ValueError(f"Noise.phase: expected a fraction in [0, 1), got {self.phase!r}")
        if not self.bursty >= 0 or not 0.0 < self.duty <= 1.0:
            raise ValueError(f"Noise: expected bursty >= 0 s and duty in (0, 1], got {self.bursty!r}, {self.duty!r}")


@dataclass(frozen=True)
class EQ:
    """Band-limiting and one peaking band: high-pass at ``highpass_hz`` (0 = none), low-pass at
    ``lowpass_hz`` (0 = none), both Butterworth of ``order``; a peak of ``peak_db`` at ``peak_hz``."""

    highpass_hz: float = 0.0
    lowpass_hz: float = 0.0
    order: int = 4
    peak_hz: float = 0.0
    peak_db: float = 0.0
    peak_q: float = 1.0

    def __post_init__(self):
        nyq = SAMPLE_RATE / 2
        if not 0 <= self.highpass_hz < nyq or not 0 <= self.lowpass_hz < nyq:
            raise ValueError(f"EQ: expected cut-offs in [0, {nyq}) Hz, got {self.highpass_hz}, {self.lowpass_hz}")
        if self.highpass_hz and self.lowpass_hz and self.highpass_hz >= self.lowpass_hz:
            raise ValueError(f"EQ: expected highpass_hz < lowpass_hz, got {self.highpass_hz} >= {self.lowpass_hz}")
        if not 0 <= self.peak_hz < nyq or not self.peak_q > 0:
            raise ValueError(f"EQ: expected peak_hz in [0, {nyq}) and peak_q > 0, got {self.peak_hz}, {self.peak_q}")


# Channels: a phone call (300-3400 Hz), a phone's loudspeaker, a laptop microphone (no lows, a presence
# peak), a small Bluetooth speaker.
EQ_PRESETS: dict[str, EQ] = {
    "phone": EQ(highpass_hz=300.0, lowpass_hz=3400.0, order=6),
    "phone_speaker": EQ(highpass_hz=600.0, lowpass_hz=6000.0, order=4, peak_hz=2500.0, peak_db=6.0, peak_q=1.5),
    "laptop": EQ(highpass_hz=200.0, lowpass_hz=7000.0, order=4, peak_hz=3000.0, peak_db=6.0, peak_q=1.0),
    "small_speaker": EQ(highpass_hz=150.0, lowpass_hz=0.0, order=2, peak_hz=1200.0, peak_db=4.0, peak_q=0.8),
}


@dataclass(frozen=True)
class Codec:
    """Lossy round trip through libsndfile: ``kind`` "mp3", "opus" or "vorbis" at ``level`` in [0, 1]
    (libsndfile's compression level: 0 = best quality, 1 = smallest file; for MP3 at 16 kHz 0.9 is
    about 26 kbit/s, for Opus about 37 kbit/s; levels above 0.95 render as 0.95)."""

    kind: str = "mp3"
    level: float = 0.8

    def __post_init__(self):
        if self.kind not in _CODECS:
            raise ValueError(f"Codec.kind: expected one of {sorted(_CODECS)}, got {self.kind!r}")
        if not 0.0 <= self.level <= 1.0:
            raise ValueError(f"Codec.level: expected in [0, 1], got {self.level!r}")


_CODECS = {"mp3": ("MP3", "MPEG_LAYER_III"), "opus": ("OGG", "OPUS"), "vorbis": ("OGG", "VORBIS")}
_CODEC_BLOCK = 1 << 15  # frames per write to the encoder (see _codec)


@dataclass(frozen=True)
class Distortion:
    """One distorted view. Every part is optional (None / 0 = off); ``Distortion()`` is the identity
    (apart from ``offset_s`` = 0 cutting at ``start``).

    offset_s: the view starts this many seconds after the true start (negative: before).
    room, noise, eq, codec: see :class:`Room`, :class:`Noise`, :class:`EQ`, :class:`Codec`.
    gain_db: level change (after EQ). clip_db: hard clipping at this many dB below the view's peak
    (0 = none; 6 clips the top half of the amplitude range), applied before the gain's full-scale
    clip at 1.0 (``clip_full_scale``, the converter).
    """

    offset_s: float = 0.0
    room: Room | None = None
    noise: Noise | None = None
    eq: EQ | None = None
    gain_db: float = 0.0
    clip_db: float = 0.0
    clip_full_scale: bool = False
    codec: Codec | None = None

    def __post_init__(self):
        if not np.isfinite(self.offset_s) or abs(self.offset_s) > 5.0:
            raise ValueError(f"Distortion.offset_s: expected seconds in [-5, 5], got {self.offset_s!r}")
        for name, cls in (("room", Room), ("noise", Noise), ("eq", EQ), ("codec", Codec)):
            v = getattr(self, name)
            if v is not None and not isinstance(v, cls):
                raise TypeError(f"Distortion.{name}: expected {cls.__name__} or None, got {type(v).__name__}")
        if not np.isfinite(self.gain_db) or not 0 <= self.clip_db <= 40:
            raise ValueError(f"Distortion: expected finite gain_db and clip_db in [0, 40], got {self.gain_db}, {self.clip_db}")

    def to_dict(self) -> dict:
        """Plain dict (JSON-serialisable); inverse of :meth:`from_dict`."""
        return json.loads(json.dumps(dataclasses.asdict(self)))

    @classmethod
    def from_dict(cls, d: dict) -> "Distortion":
        if not isinstance(d, dict):
            raise TypeError(f"Distortion.from_dict: expected a dict, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"Distortion.from_dict: unknown keys {unknown}, expected a subset of {sorted(names)}")
        d = dict(d)
        for name, sub in (("room", Room), ("noise", Noise), ("eq", EQ), ("codec", Codec)):
            if d.get(name) is not None:
                d[name] = sub(**d[name])
        return cls(**d)

    def describe(self) -> str:
        """Short human label, e.g. ``"room0.53+noise10dB(bursty)+phone"``."""
        parts = []
        if self.room is not None:
            parts.append("room")
        if self.noise is not None:
            parts.append(f"noise{self.noise.snr_db:g}dB" + ("(bursty)" if self.noise.bursty else ""))
        if self.eq is not None:
            parts.append(next((k for k, v in EQ_PRESETS.items() if v == self.eq), "eq"))
        if self.gain_db:
            parts.append(f"gain{self.gain_db:+.0f}dB")
        if self.clip_db:
            parts.append(f"clip{self.clip_db:g}dB")
        if self.codec is not None:
            parts.append(self.codec.kind)
        return "+".join(parts) or "clean"


# ----------------------------------------------------------------------------- banks (cached)


@functools.lru_cache(maxsize=512)
def noise_clip(seed: int, index: int, split: str, duration_s: float = 10.0) -> np.ndarray:
    """``noise.noise_bank(seed, index + 1, split=split, duration_s=duration_s)[index]`` (cached, read-only)."""
    from .noise import NOISE_KINDS, _make

    _check_split(split)
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _SPLITS.index(split), int(index)]))
    clip = _make(NOISE_KINDS[index % len(NOISE_KINDS)], int(round(duration_s * SAMPLE_RATE)), SAMPLE_RATE, rng, split)
    clip.setflags(write=False)
    return clip


@functools.lru_cache(maxsize=512)
def room_rir(seed: int, index: int, split: str, rt60_range: tuple[float, float] = (0.2, 0.8)) -> np.ndarray:
    """``rooms.rir_bank(seed, index + 1, rt60_range=rt60_range, split=split)[index]``, prepared for
    convolution (aligned to the direct path, unit energy; cached, read-only)."""
    from .augment import prepare_rir
    from .rooms import simulate_rir

    _check_split(split)
    lo, hi = rt60_range
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), _SPLITS.index(split), int(index), 0x726972]))
    rt60 = float(rng.uniform(lo, hi))
    h = prepare_rir(simulate_rir(rt60, sample_rate=SAMPLE_RATE, rng=rng, method="auto"), normalize="energy")
    h.setflags(write=False)
    return h


@functools.lru_cache(maxsize=64)
def _eq_sos(eq: EQ) -> np.ndarray | None:
    sections = []
    if eq.highpass_hz:
        sections.append(butter(eq.order, eq.highpass_hz, btype="high", fs=SAMPLE_RATE, output="sos"))
    if eq.lowpass_hz:
        sections.append(butter(eq.order, eq.lowpass_hz, btype="low", fs=SAMPLE_RATE, output="sos"))
    if eq.peak_hz and eq.peak_db:
        # RBJ peaking biquad
        A = 10 ** (eq.peak_db / 40)
        w0 = 2 * np.pi * eq.peak_hz / SAMPLE_RATE
        alpha = np.sin(w0) / (2 * eq.peak_q)
        b = np.array([1 + alpha * A, -2 * np.cos(w0), 1 - alpha * A])
        a = np.array([1 + alpha / A, -2 * np.cos(w0), 1 - alpha / A])
        sections.append(np.concatenate([b / a[0], a / a[0]])[None, :])
    return np.concatenate(sections) if sections else None


# ----------------------------------------------------------------------------- rendering


def _bursts(n: int, mean_s: float, duty: float, floor_db: float, rng: np.random.Generator) -> np.ndarray:
    """On/off envelope (n,): alternating exponential on (mean ``mean_s``) and off (mean_s (1-duty)/duty)
    runs, 10 ms ramps, ``floor_db`` between bursts."""
    env = np.full(n, 10 ** (floor_db / 20))
    t, on = 0, bool(rng.random() < duty)
    off_mean = mean_s * (1 - duty) / duty if duty < 1 else 0.0
    while t < n:
        run = max(1, int(rng.exponential(mean_s if on else max(off_mean, 1e-3)) * SAMPLE_RATE))
        if on:
            env[t:t + run] = 1.0
        t += run
        on = not on
    k = int(0.01 * SAMPLE_RATE)
    return np.convolve(env, np.ones(k) / k, mode="same")


def _codec(x: np.ndarray, c: Codec) -> np.ndarray:
    import soundfile as sf

    fmt, sub = _CODECS[c.kind]
    peak = float(np.max(np.abs(x))) if x.size else 0.0
    scale = 0.95 / peak if peak > 0.95 else 1.0  # the codec sees the float range [-1, 1]
    buf = io.BytesIO()
    # libsndfile's MP3 encoder rejects some levels near 1 (seen at 0.99993): levels cap at 0.95. One big
    # write of minutes of audio overflows libvorbis's stack (a segfault at 300 s of 16 kHz Vorbis, known
    # upstream: python-soundfile #396, libsndfile #1023): the codec is fed in blocks of _CODEC_BLOCK frames
    xs = (x * scale).astype(np.float32)
    with sf.SoundFile(buf, "w", SAMPLE_RATE, 1, format=fmt, subtype=sub,
                      compression_level=min(float(c.level), 0.95)) as f:
        for i in range(0, xs.size, _CODEC_BLOCK):
            f.write(xs[i:i + _CODEC_BLOCK])
    buf.seek(0)
    y, _ = sf.read(buf, dtype="float32")
    y = y if y.ndim == 1 else y[:, 0]
    # some encoders (LAME without a gapless header) prepend their delay: align on the input
    if len(y) > len(x):
        extra = len(y) - len(x)
        seg = x[: min(len(x), 4000)]
        if seg.size and np.any(seg):
            lags = [float(np.dot(y[k:k + seg.size], seg)) for k in range(0, extra + 1)]
            k = int(np.argmax(lags))
        else:
            k = 0
        y = y[k:k + len(x)]
    if len(y) < len(x):
        y = np.pad(y, (0, len(x) - len(y)))
    return (y / scale).astype(np.float32)


def render_window(x: np.ndarray, d: Distortion, *, pre: int = 0) -> np.ndarray:
    """Apply ``d`` (all but the offset) to ``x`` (T,); the first ``pre`` samples are context only (the
    room's reverb of the audio before the snippet) and are dropped: returns float32 (T - pre,)."""
    x = np.asarray(x, dtype=np.float64)
    if x.ndim != 1 or x.size <= pre:
        raise ValueError(f"x: expected shape (T,) with T > pre={pre}, got {x.shape}")
    if d.room is not None:
        h = room_rir(d.room.seed, d.room.index, d.room.split, d.room.rt60_range)
        n_fft = scipy.fft.next_fast_len(x.size + h.size - 1, real=True)
        x = scipy.fft.irfft(scipy.fft.rfft(x, n_fft) * scipy.fft.rfft(h, n_fft), n_fft)[: x.size]
    x = x[pre:]
    if d.noise is not None:
        nz = d.noise
        clip = noise_clip(nz.seed, nz.index, nz.split)
        start = int(nz.phase * clip.size)
        seg = clip[(start + np.arange(x.size)) % clip.size].astype(np.float64)
        if nz.bursty:
            rng = np.random.default_rng(np.random.SeedSequence([nz.seed, nz.index, int(nz.phase * 2**31), 0x627572]))
            seg = seg * _bursts(x.size, nz.bursty, nz.duty, nz.floor_db, rng)
        p_c = float(np.mean(x * x))
        # bursty: the SNR holds during bursts (unit-RMS clip), so the pauses are quieter
        p_n = 1.0 if nz.bursty else float(np.mean(seg * seg))
        if p_c > 0 and p_n > 0:
            x = x + seg * np.sqrt(p_c / (p_n * 10 ** (nz.snr_db / 10)))
    if d.eq is not None:
        sos = _eq_sos(d.eq)
        if sos is not None:
            x = sosfilt(sos, x)
    if d.gain_db:
        x = x * 10 ** (d.gain_db / 20)
    if d.clip_db:
        peak = float(np.max(np.abs(x)))
        if peak > 0:
            lim = peak * 10 ** (-d.clip_db / 20)
            x = np.clip(x, -lim, lim)
    if d.clip_full_scale:
        x = np.clip(x, -1.0, 1.0)
    if d.codec is not None:
        x = _codec(x.astype(np.float32), d.codec)
    return np.asarray(x, dtype=np.float32)


def render(wave: np.ndarray, d: Distortion, *, start: int, length: int, pre_s: float = 0.5) -> np.ndarray:
    """The snippet of ``wave`` (T,) at sample ``start`` of ``length`` samples as ``d`` degrades it.

    The snippet is cut at ``start + round(d.offset_s * 16000)`` (clamped to the signal) with up to
    ``pre_s`` s of the audio before it as room context. Deterministic: the same wave, spec, start and
    length give the same samples. Returns float32 (length,).
    """
    wave = np.asarray(wave)
    if wave.ndim != 1:
        raise ValueError(f"wave: expected shape (T,), got {wave.shape}")
    if length < 1 or length > wave.size:
        raise ValueError(f"length: expected 1..{wave.size} samples, got {length}")
    s = int(np.clip(start + int(round(d.offset_s * SAMPLE_RATE)), 0, wave.size - length))
    pre = min(s, int(round(pre_s * SAMPLE_RATE))) if d.room is not None else 0
    return render_window(wave[s - pre:s + length], d, pre=pre)


# ----------------------------------------------------------------------------- random draws


@dataclass(frozen=True)
class Profile:
    """Probabilities of each part in :func:`draw`; ranges of their parameters."""

    split: str = "train"
    bank_seed: int = 0
    n_noises: int = 32
    n_rooms: int = 32
    p_room: float = 0.5
    p_noise: float = 0.7
    p_bursty: float = 0.3
    snr_db: tuple[float, float] = (0.0, 20.0)
    p_eq: float = 0.35
    p_gain: float = 0.5
    gain_db: tuple[float, float] = (-12.0, 6.0)
    p_clip: float = 0.1
    clip_db: tuple[float, float] = (1.0, 8.0)
    p_codec: float = 0.06
    max_offset_s: float = 0.0


PROFILES: dict[str, Profile] = {
    # training mixture (offsets are cut by pairs.sample_pairs from the real neighbouring audio)
    "train": Profile(),
    # evaluation: every part drawn on the eval split; the same mixture as training
    "eval-mix": Profile(split="eval", n_noises=16, n_rooms=16),
}


def _jitter_eq(base: EQ, rng: np.random.Generator) -> EQ:
    f = lambda v, r: float(v * np.exp(rng.uniform(-r, r))) if v else 0.0  # noqa: E731
    lp = min(f(base.lowpass_hz, 0.15), 7800.0) if base.lowpass_hz else 0.0
    hp = f(base.highpass_hz, 0.3)
    if lp and hp >= lp:
        hp = lp / 4
    return EQ(highpass_hz=hp, lowpass_hz=lp, order=base.order, peak_hz=min(f(base.peak_hz, 0.3), 7500.0),
              peak_db=float(base.peak_db * rng.uniform(0.5, 1.5)) if base.peak_db else 0.0, peak_q=base.peak_q)


def draw(rng: np.random.Generator, profile: str | Profile = "train") -> Distortion:
    """A random :class:`Distortion` from ``profile`` (a :data:`PROFILES` name or a Profile)."""
    p = PROFILES[profile] if isinstance(profile, str) else profile
    if not isinstance(p, Profile):
        raise TypeError(f"profile: expected a name in {sorted(PROFILES)} or a Profile, got {type(profile).__name__}")
    u = rng.random(8)
    room = Room(p.bank_seed, int(rng.integers(p.n_rooms)), p.split) if u[0] < p.p_room else None
    noise = None
    if u[1] < p.p_noise:
        bursty = float(rng.uniform(0.2, 1.5)) if u[2] < p.p_bursty else 0.0
        noise = Noise(p.bank_seed, int(rng.integers(p.n_noises)), p.split, snr_db=float(rng.uniform(*p.snr_db)),
                      phase=float(rng.random()), bursty=bursty, duty=float(rng.uniform(0.3, 0.7)),
                      floor_db=float(rng.uniform(-30, -10)))
    eq = None
    if u[3] < p.p_eq:
        eq = _jitter_eq(EQ_PRESETS[str(rng.choice(list(EQ_PRESETS)))], rng)
    gain = float(rng.uniform(*p.gain_db)) if u[4] < p.p_gain else 0.0
    clip = float(rng.uniform(*p.clip_db)) if u[5] < p.p_clip else 0.0
    codec = None
    if u[6] < p.p_codec:
        codec = Codec(str(rng.choice(["mp3", "vorbis", "opus"], p=[0.45, 0.45, 0.1])), float(rng.uniform(0.5, 0.95)))
    offset = float(rng.uniform(-p.max_offset_s, p.max_offset_s)) if p.max_offset_s else 0.0
    return Distortion(offset_s=offset, room=room, noise=noise, eq=eq, gain_db=gain, clip_db=clip, codec=codec)


# Named evaluation conditions (Table 1 and the issue-11 extras): each is a recipe; ``condition`` draws the
# clip, room, phase and jitter from the eval split with the generator it is given.
CONDITIONS = ("clean", "noise", "reverb", "noise+reverb", "bursty", "phone", "phone+noise", "laptop+room",
              "codec", "gain+clip")


def condition(name: str, rng: np.random.Generator, *, snr_db: float = 10.0, bank_seed: int = 0, n_noises: int = 16,
              n_rooms: int = 16, split: str = "eval", rt60_range: tuple[float, float] = (0.2, 0.8),
              offset_s: float = 0.0) -> Distortion:
    """A :class:`Distortion` for the evaluation condition ``name`` (one of :data:`CONDITIONS`).

    "noise": a steady noise clip at ``snr_db``; "reverb": a room with RT60 in ``rt60_range``;
    "noise+reverb": both; "bursty": cafe-like bursts (0.2-1.5 s, duty 0.3-0.7, 20-30 dB down between)
    at ``snr_db`` during bursts; "phone": 300-3400 Hz phone band (playback through a phone: its
    loudspeaker's band, jittered) + 20 dB noise; "phone+noise": the phone band at ``snr_db``;
    "laptop+room": a laptop microphone's EQ in a room with ``snr_db`` noise; "codec": MP3 or Opus at
    a low bitrate; "gain+clip": -12..+6 dB and clipping 3-8 dB below the peak. Noise clips and rooms
    come from ``split`` of the banks seeded ``bank_seed``.
    """
    if name not in CONDITIONS:
        raise ValueError(f"condition: expected one of {CONDITIONS}, got {name!r}")
    _check_split(split)

    def room():
        return Room(bank_seed, int(rng.integers(n_rooms)), split, rt60_range)

    def noise(snr, bursty=0.0):
        return Noise(bank_seed, int(rng.integers(n_noises)), split, snr_db=float(snr), phase=float(rng.random()),
                     bursty=bursty, duty=float(rng.uniform(0.3, 0.7)), floor_db=float(rng.uniform(-30, -20)))

    kw: dict = {"offset_s": offset_s}
    if name in ("noise", "noise+reverb"):
        kw["noise"] = noise(snr_db)
    if name in ("reverb", "noise+reverb", "laptop+room"):
        kw["room"] = room()
    if name == "bursty":
        kw["noise"] = noise(snr_db, bursty=float(rng.uniform(0.2, 1.5)))
    if name in ("phone", "phone+noise"):
        kw["eq"] = _jitter_eq(EQ_PRESETS[str(rng.choice(["phone", "phone_speaker"]))], rng)
        kw["noise"] = noise(20.0 if name == "phone" else snr_db)
    if name == "laptop+room":
        kw["eq"] = _jitter_eq(EQ_PRESETS["laptop"], rng)
        kw["noise"] = noise(snr_db)
    if name == "codec":
        kw["codec"] = Codec(str(rng.choice(["mp3", "opus"])), float(rng.uniform(0.8, 0.95)))
    if name == "gain+clip":
        kw["gain_db"] = float(rng.uniform(-12, 6))
        kw["clip_db"] = float(rng.uniform(3, 8))
    return Distortion(**kw)


class DistortionAugment:
    """``pairs.Augment`` for training: each view (row) gets its own ``draw(rng, profile)``.

    ``aug(views (B, T), rng) -> (B, T)``; the first ``pre`` samples of each row serve as room context
    and the output keeps T samples by using the row's own start as context (so ``pre`` = 0 here: the
    pairs' windows already carry 30 ms of context). ``last`` holds the specs of the last batch.
    """

    def __init__(self, profile: str | Profile = "train"):
        self.profile = profile
        self.last: list[Distortion] = []

    def __call__(self, views: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        views = np.asarray(views)
        if views.ndim != 2:
            raise ValueError(f"views: expected shape (B, T), got {views.shape}")
        self.last = [draw(rng, self.profile) for _ in range(views.shape[0])]
        return np.stack([render_window(v, d) for v, d in zip(views, self.last)])

    def __repr__(self) -> str:
        return f"DistortionAugment(profile={self.profile!r})"
