"""Offline background-noise sources and seeded noise banks with a train/eval split.

Every generator returns float32 ``(n,)`` normalised to unit RMS (the SNR is set later by
:func:`faiss_flowhash.audio.augment.add_noise`). Kinds: coloured noise (white, pink,
brown), babble (espeak-ng talkers; speech-shaped modulated noise when espeak-ng is absent),
hum + clatter (mains hum, dish clinks) and traffic (low-passed rumble with passing cars).
"""

from __future__ import annotations

import warnings

import numpy as np
from scipy.signal import butter, sosfilt

from .synth import espeak_available, speech

__all__ = [
    "NOISE_KINDS",
    "coloured_noise",
    "babble",
    "speech_shaped_noise",
    "hum_clatter",
    "traffic",
    "noise_bank",
]

NOISE_KINDS = ("white", "pink", "brown", "babble", "hum_clatter", "traffic")

# Voices for babble; train and eval banks draw from disjoint variant sets (unseen speakers).
_LANGS = ("en", "en-us", "de", "fr", "es", "it", "nl", "pt", "pl", "sv")
_TRAIN_VARIANTS = ("m1", "m2", "m3", "m4", "f1", "f2", "f3")
_EVAL_VARIANTS = ("m5", "m6", "m7", "f4", "f5")
_SYLLABLES = tuple(c + v for c in "bdfgklmnprstvz" for v in ("a", "e", "i", "o", "u", "an", "er", "ol"))


def _rng(rng) -> np.random.Generator:
    if rng is None:
        return np.random.default_rng(0)
    if isinstance(rng, np.random.Generator):
        return rng
    if isinstance(rng, (int, np.integer)):
        return np.random.default_rng(int(rng))
    raise TypeError(f"rng: expected numpy.random.Generator, int seed or None, got {type(rng).__name__}")


def _check_n(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise ValueError(f"n: expected a positive int (samples), got {n!r}")
    return int(n)


def _unit_rms(x: np.ndarray) -> np.ndarray:
    r = np.sqrt(np.mean(np.square(x, dtype=np.float64)))
    return (x / r if r > 0 else x).astype(np.float32)


def coloured_noise(n: int, *, exponent: float = 1.0, rng: np.random.Generator | None = None) -> np.ndarray:
    """Noise with power spectral density proportional to ``1 / f**exponent``.

    ``exponent`` 0 white, 1 pink, 2 brown (any real value works). Zero mean, unit RMS,
    float32 ``(n,)``.
    """
    n = _check_n(n)
    rng = _rng(rng)
    if exponent == 0 or n < 2:  # a 1-sample signal has no spectrum to shape
        return _unit_rms(rng.standard_normal(n))
    spec = np.fft.rfft(rng.standard_normal(n))
    f = np.fft.rfftfreq(n)
    f[0] = f[1] if n > 1 else 1.0
    spec *= f ** (-exponent / 2.0)
    spec[0] = 0.0
    return _unit_rms(np.fft.irfft(spec, n=n))


def speech_shaped_noise(n: int, *, sample_rate: int = 16000, n_talkers: int = 6,
                        rng: np.random.Generator | None = None) -> np.ndarray:
    """Babble stand-in without a synthesiser: 100-4000 Hz noise with syllable-rate (3-6 Hz)
    envelopes, one per talker, summed. Unit RMS float32 ``(n,)``."""
    n = _check_n(n)
    rng = _rng(rng)
    sos = butter(4, [100, min(4000, 0.45 * sample_rate)], btype="band", fs=sample_rate, output="sos")
    t = np.arange(n) / sample_rate
    out = np.zeros(n)
    for _ in range(n_talkers):
        rate = rng.uniform(3, 6)
        env = np.clip(np.sin(2 * np.pi * rate * t + rng.uniform(0, 2 * np.pi)), 0, None) ** 2
        env *= rng.random(n // max(1, sample_rate // 4) + 2).repeat(max(1, sample_rate // 4))[:n] > 0.2
        out += env * sosfilt(sos, coloured_noise(n, exponent=1.0, rng=rng))
    return _unit_rms(out)


def _pseudo_text(rng: np.random.Generator, n_words: int) -> str:
    words = ["".join(rng.choice(_SYLLABLES, size=int(rng.integers(1, 4)))) for _ in range(n_words)]
    return " ".join(words) + "."


def babble(
    n: int,
    *,
    sample_rate: int = 16000,
    n_talkers: int = 6,
    rng: np.random.Generator | None = None,
    voices: tuple[str, ...] | None = None,
    require_espeak: bool = False,
) -> np.ndarray:
    """Several simultaneous talkers (espeak-ng, pseudo-words) summed; unit RMS float32 ``(n,)``.

    Each talker gets a random voice from ``voices`` (default: the training variants of
    several languages), pitch and speed, starts at a random point and loops its speech to
    fill ``n`` samples. When espeak-ng is absent: raises ``EspeakUnavailableError`` if
    ``require_espeak`` else warns and returns :func:`speech_shaped_noise`.
    """
    n = _check_n(n)
    rng = _rng(rng)
    if n_talkers < 1:
        raise ValueError(f"n_talkers: expected >= 1, got {n_talkers}")
    if not espeak_available():
        if require_espeak:
            from .synth import EspeakUnavailableError

            raise EspeakUnavailableError("babble: espeak-ng is not installed (apt-get install espeak-ng)")
        warnings.warn("espeak-ng not found: babble falls back to speech-shaped noise", RuntimeWarning, stacklevel=2)
        return speech_shaped_noise(n, sample_rate=sample_rate, n_talkers=n_talkers, rng=rng)
    voices = voices or tuple(f"{lang}+{v}" for lang in _LANGS for v in _TRAIN_VARIANTS)
    out = np.zeros(n)
    for _ in range(n_talkers):
        voice = str(rng.choice(voices))
        speed = int(rng.integers(130, 200))
        words = max(4, int(n / sample_rate * speed / 60 * 1.3))  # enough for ~n samples
        x = speech(_pseudo_text(rng, words), voice=voice, sample_rate=sample_rate, speed_wpm=speed,
                   pitch=int(rng.integers(20, 80)))
        x = np.concatenate([x, np.zeros(int(rng.uniform(0.1, 0.5) * sample_rate), np.float32)])
        idx = (int(rng.integers(0, x.size)) + np.arange(n)) % x.size
        out += _unit_rms(x[idx]) * 10 ** (rng.uniform(-3, 3) / 20)
    return _unit_rms(out)


def hum_clatter(n: int, *, sample_rate: int = 16000, rng: np.random.Generator | None = None) -> np.ndarray:
    """Mains hum (50 or 60 Hz and harmonics) plus random clinks (damped 1.5-6 kHz
    partials) over a faint pink floor. Unit RMS float32 ``(n,)``."""
    n = _check_n(n)
    rng = _rng(rng)
    sr = sample_rate
    t = np.arange(n) / sr
    f0 = float(rng.choice([50.0, 60.0])) * rng.uniform(0.995, 1.005)
    hum = sum(rng.uniform(0.1, 1.0) / k * np.sin(2 * np.pi * k * f0 * t + rng.uniform(0, 6.3)) for k in range(1, 6))
    clatter = np.zeros(n)
    n_events = rng.poisson(rng.uniform(0.5, 4.0) * n / sr)
    for start in rng.integers(0, n, size=n_events):
        m = min(int(0.3 * sr), n - start)
        tt = np.arange(m) / sr
        ev = sum(np.sin(2 * np.pi * rng.uniform(1500, min(6000, 0.45 * sr)) * tt) for _ in range(3))
        clatter[start:start + m] += rng.uniform(0.5, 3.0) * ev * np.exp(-tt * rng.uniform(20, 60))
    floor = coloured_noise(n, exponent=1.0, rng=rng)
    return _unit_rms(_unit_rms(hum) * rng.uniform(0.3, 1.0) + clatter + 0.2 * floor)


def traffic(n: int, *, sample_rate: int = 16000, rng: np.random.Generator | None = None) -> np.ndarray:
    """Low-passed brown rumble plus passing vehicles (band noise under 2-6 s swells).
    Unit RMS float32 ``(n,)``."""
    n = _check_n(n)
    rng = _rng(rng)
    sr = sample_rate
    sos_low = butter(2, rng.uniform(200, 600), btype="low", fs=sr, output="sos")
    rumble = sosfilt(sos_low, coloured_noise(n, exponent=2.0, rng=rng))
    t = np.arange(n) / sr
    cars = np.zeros(n)
    for _ in range(max(1, rng.poisson(n / sr / 4.0))):
        centre, width = rng.uniform(0, n / sr), rng.uniform(1.0, 3.0)
        swell = np.exp(-0.5 * ((t - centre) / width) ** 2)
        lo = rng.uniform(80, 300)
        sos = butter(2, [lo, min(lo * rng.uniform(4, 12), 0.45 * sr)], btype="band", fs=sr, output="sos")
        cars += rng.uniform(0.5, 2.0) * swell * sosfilt(sos, coloured_noise(n, exponent=1.0, rng=rng))
    return _unit_rms(_unit_rms(rumble) + cars)


def _make(kind: str, n: int, sample_rate: int, rng: np.random.Generator, split: str) -> np.ndarray:
    if kind in ("white", "pink", "brown"):
        return coloured_noise(n, exponent={"white": 0.0, "pink": 1.0, "brown": 2.0}[kind], rng=rng)
    if kind == "babble":
        variants = _TRAIN_VARIANTS if split == "train" else _EVAL_VARIANTS
        voices = tuple(f"{lang}+{v}" for lang in _LANGS for v in variants)
        return babble(n, sample_rate=sample_rate, n_talkers=int(rng.integers(3, 9)), rng=rng, voices=voices)
    if kind == "hum_clatter":
        return hum_clatter(n, sample_rate=sample_rate, rng=rng)
    if kind == "traffic":
        return traffic(n, sample_rate=sample_rate, rng=rng)
    raise ValueError(f"kinds: expected names from {NOISE_KINDS}, got {kind!r}")


def noise_bank(
    seed: int,
    n_clips: int,
    *,
    split: str = "train",
    duration_s: float = 10.0,
    sample_rate: int = 16000,
    kinds: tuple[str, ...] = NOISE_KINDS,
) -> list[np.ndarray]:
    """``n_clips`` unit-RMS noise clips of ``duration_s`` seconds, kinds cycling through ``kinds``.

    Clip ``i`` of split ``s`` is generated from ``SeedSequence([seed, s, i])`` with ``s`` = 0
    for ``"train"`` and 1 for ``"eval"``, so the two splits never share a generation seed;
    babble also uses disjoint espeak-ng voice variants per split. Deterministic. Returns a
    list of float32 ``(round(duration_s * sample_rate),)`` arrays.
    """
    if split not in ("train", "eval"):
        raise ValueError(f"split: expected 'train' or 'eval', got {split!r}")
    if isinstance(n_clips, bool) or not isinstance(n_clips, (int, np.integer)) or n_clips < 0:
        raise ValueError(f"n_clips: expected an int >= 0, got {n_clips!r}")
    if not kinds:
        raise ValueError("kinds: expected at least one kind, got none")
    for k in kinds:
        if k not in NOISE_KINDS:
            raise ValueError(f"kinds: expected names from {NOISE_KINDS}, got {k!r}")
    n = _check_n(int(round(duration_s * sample_rate)))
    s = 0 if split == "train" else 1
    clips = []
    for i in range(n_clips):
        rng = np.random.default_rng(np.random.SeedSequence([int(seed), s, i]))
        clips.append(_make(kinds[i % len(kinds)], n, sample_rate, rng, split))
    return clips
