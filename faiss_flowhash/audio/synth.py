"""Deterministic test/demo signals: tones, chirps, synthetic "music", espeak-ng speech.

All generators return float32 arrays of shape ``(T,)`` at ``sample_rate`` Hz with
``T = round(duration_s * sample_rate)``. ``synthetic_music`` is fully determined by its
``seed``; different seeds give different tracks (tempo, key, timbres, melody, drums).
"""

from __future__ import annotations

import functools
import io
import shutil
import subprocess

import numpy as np

__all__ = [
    "EspeakUnavailableError",
    "espeak_available",
    "tone",
    "chirp",
    "synthetic_music",
    "speech",
]


class EspeakUnavailableError(RuntimeError):
    """espeak-ng is not installed (Debian/Ubuntu: ``apt-get install espeak-ng``)."""


def _n_samples(duration_s: float, sample_rate: int) -> int:
    if isinstance(sample_rate, bool) or not isinstance(sample_rate, (int, np.integer)) or sample_rate <= 0:
        raise ValueError(f"sample_rate: expected a positive int (Hz), got {sample_rate!r}")
    if not np.isfinite(duration_s) or duration_s < 0:
        raise ValueError(f"duration_s: expected a finite duration >= 0 seconds, got {duration_s}")
    return int(round(duration_s * sample_rate))


def tone(
    freq_hz: float, duration_s: float, *, sample_rate: int = 16000, amplitude: float = 0.5, phase: float = 0.0
) -> np.ndarray:
    """Sine ``amplitude * sin(2 pi freq_hz t + phase)``, float32 ``(T,)``."""
    n = _n_samples(duration_s, sample_rate)
    if not 0 <= freq_hz <= sample_rate / 2:
        raise ValueError(f"freq_hz: expected in [0, {sample_rate / 2}] Hz, got {freq_hz}")
    t = np.arange(n, dtype=np.float64) / sample_rate
    return (amplitude * np.sin(2 * np.pi * freq_hz * t + phase)).astype(np.float32)


def chirp(
    f0_hz: float,
    f1_hz: float,
    duration_s: float,
    *,
    sample_rate: int = 16000,
    amplitude: float = 0.5,
    method: str = "linear",
) -> np.ndarray:
    """Sweep from ``f0_hz`` to ``f1_hz`` over ``duration_s`` (``"linear"`` or ``"log"``), float32 ``(T,)``."""
    n = _n_samples(duration_s, sample_rate)
    nyq = sample_rate / 2
    if not (0 < f0_hz <= nyq and 0 < f1_hz <= nyq):
        raise ValueError(f"f0_hz, f1_hz: expected in (0, {nyq}] Hz, got {f0_hz}, {f1_hz}")
    t = np.arange(n, dtype=np.float64) / sample_rate
    d = max(duration_s, 1e-12)
    if method == "linear":
        phase = 2 * np.pi * (f0_hz * t + 0.5 * (f1_hz - f0_hz) / d * t * t)
    elif method == "log":
        if f0_hz == f1_hz:
            phase = 2 * np.pi * f0_hz * t
        else:
            k = np.log(f1_hz / f0_hz) / d
            phase = 2 * np.pi * f0_hz * (np.exp(k * t) - 1.0) / k
    else:
        raise ValueError(f"method: expected 'linear' or 'log', got {method!r}")
    return (amplitude * np.sin(phase)).astype(np.float32)


# ----------------------------------------------------------------------------- music

_SCALES = {
    "major": (0, 2, 4, 5, 7, 9, 11),
    "minor": (0, 2, 3, 5, 7, 8, 10),
    "dorian": (0, 2, 3, 5, 7, 9, 10),
    "pentatonic": (0, 2, 4, 7, 9),
    "blues": (0, 3, 5, 6, 7, 10),
}


def _one_pole_lowpass(x: np.ndarray, alpha: float) -> np.ndarray:
    from scipy.signal import lfilter

    return lfilter([alpha], [1.0, alpha - 1.0], x)


def _add_note(buf, start, freq, dur, amp, harmonics, decay, sr, vibrato=0.0):
    n = min(int(dur * sr), buf.size - start)
    if n <= 0 or freq <= 0:
        return
    t = np.arange(n) / sr
    attack = np.minimum(1.0, t / 0.01)
    release = np.minimum(1.0, (n - np.arange(n)) / (0.02 * sr))
    env = attack * release * np.exp(-decay * t)
    ph = 2 * np.pi * freq * t + vibrato * np.sin(2 * np.pi * 5.5 * t)
    # sin(k ph) by the Chebyshev recurrence: one sin/cos per note instead of one per harmonic
    s_prev, s_cur, two_c = np.zeros(n), np.sin(ph), 2.0 * np.cos(ph)
    wave = np.zeros(n)
    for k, a in enumerate(harmonics, start=1):
        if k * freq >= sr / 2 - 200:
            break
        wave += a * s_cur
        s_prev, s_cur = s_cur, two_c * s_cur - s_prev
    buf[start:start + n] += amp * env * wave


def synthetic_music(duration_s: float, *, seed: int, sample_rate: int = 16000) -> np.ndarray:
    """A seeded synthetic track: melody, bass, chords with harmonics and envelopes, drums.

    Tempo (70-170 bpm), key, scale, timbres, drum pattern and the (non-repeating) melody
    all come from ``seed``; the result is peak-normalised to 0.9. float32 ``(T,)``.
    """
    n = _n_samples(duration_s, sample_rate)
    sr = sample_rate
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x6D75736963]))
    buf = np.zeros(n + sr, dtype=np.float64)  # one second of tail room, cut at the end
    bpm = rng.uniform(70, 170)
    beat = 60.0 / bpm
    step = beat / 2  # eighth notes
    scale = _SCALES[rng.choice(list(_SCALES))]
    root_midi = int(rng.integers(45, 58))

    def midi_hz(m):
        return 440.0 * 2.0 ** ((m - 69) / 12.0)

    def degree_midi(d, base):
        octave, idx = divmod(d, len(scale))
        return base + 12 * octave + scale[idx]

    def timbre():
        k = np.arange(1, 9)
        return rng.uniform(0.2, 1.0, 8) * k ** (-rng.uniform(0.6, 2.0))

    lead_h, bass_h, pad_h = timbre(), timbre()[:4], timbre()
    lead_decay, pad_decay = rng.uniform(1.0, 6.0), rng.uniform(0.2, 1.5)
    n_steps = int(np.ceil(duration_s / step)) + 1
    degree = int(rng.integers(0, len(scale)))
    chord_every = int(rng.choice([4, 8, 16]))
    rest_p = rng.uniform(0.05, 0.3)
    kick_pat = rng.random(16) < np.tile([0.9, 0.1, 0.3, 0.1], 4)
    snare_pat = rng.random(16) < np.tile([0.05, 0.1, 0.9, 0.1], 4)
    hat_pat = rng.random(16) < rng.uniform(0.3, 0.9)
    hat_alpha = rng.uniform(0.2, 0.6)
    for s in range(n_steps):
        start = int(round(s * step * sr))
        if start >= n:
            break
        # melody: random walk on the scale, never looping
        degree = int(np.clip(degree + rng.choice([-2, -1, -1, 0, 1, 1, 2, 3, -3]), -3, 2 * len(scale) + 2))
        if rng.random() > rest_p:
            length = step * rng.choice([1, 1, 2, 3])
            _add_note(buf, start, midi_hz(degree_midi(degree, root_midi + 12)), length,
                      rng.uniform(0.15, 0.3), lead_h, lead_decay, sr, vibrato=rng.uniform(0, 0.3))
        if s % chord_every == 0:
            chord_root = int(rng.integers(0, len(scale)))
            for d in (0, 2, 4):
                _add_note(buf, start, midi_hz(degree_midi(chord_root + d, root_midi)), step * chord_every,
                          0.06, pad_h, pad_decay, sr)
            bass_deg = chord_root
        if s % 2 == 0:
            _add_note(buf, start, midi_hz(degree_midi(bass_deg, root_midi - 12)), beat * 0.9,
                      0.3, bass_h, 3.0, sr)
        p = s % 16
        vel = rng.uniform(0.7, 1.0)
        if kick_pat[p] or (rng.random() < 0.03):
            m = int(0.25 * sr)
            t = np.arange(m) / sr
            f = 50 + 100 * np.exp(-t * 30)
            buf[start:start + m] += 0.5 * vel * np.sin(2 * np.pi * np.cumsum(f) / sr) * np.exp(-t * 12)
        if snare_pat[p] or (rng.random() < 0.03):
            m = int(0.18 * sr)
            t = np.arange(m) / sr
            noise = rng.standard_normal(m)
            body = noise - _one_pole_lowpass(noise, 0.15)  # high-passed noise
            buf[start:start + m] += 0.25 * vel * body * np.exp(-t * 22)
        if hat_pat[p]:
            m = int(0.05 * sr)
            t = np.arange(m) / sr
            noise = rng.standard_normal(m)
            hat = noise - _one_pole_lowpass(noise, hat_alpha)
            buf[start:start + m] += 0.08 * vel * hat * np.exp(-t * 80)
    out = buf[:n]
    peak = np.max(np.abs(out)) if n else 0.0
    if peak > 0:
        out = out * (0.9 / peak)
    return out.astype(np.float32)


# ----------------------------------------------------------------------------- speech

@functools.lru_cache(maxsize=1)
def _espeak_path() -> str | None:
    return shutil.which("espeak-ng")


def espeak_available() -> bool:
    """True when the ``espeak-ng`` executable is on ``PATH``."""
    return _espeak_path() is not None


@functools.lru_cache(maxsize=512)
def _espeak_wav(text: str, voice: str, speed_wpm: int, pitch: int) -> bytes:
    exe = _espeak_path()
    if exe is None:
        raise EspeakUnavailableError("espeak-ng is not installed (apt-get install espeak-ng); speech is unavailable")
    proc = subprocess.run(
        [exe, "--stdout", "-v", voice, "-s", str(speed_wpm), "-p", str(pitch), "--", text],
        capture_output=True, timeout=60, check=False,
    )
    if proc.returncode != 0 or len(proc.stdout) < 64:
        raise ValueError(f"voice: espeak-ng failed for voice {voice!r}: {proc.stderr.decode(errors='replace').strip()}")
    return proc.stdout  # a WAV file (22.05 kHz for most voices)


def speech(
    text: str,
    *,
    voice: str = "en",
    sample_rate: int = 16000,
    speed_wpm: int = 160,
    pitch: int = 50,
) -> np.ndarray:
    """Speak ``text`` with espeak-ng; float32 ``(T,)`` at ``sample_rate`` Hz.

    ``voice`` is an espeak-ng voice, optionally with a variant (``"en"``, ``"de+f3"``,
    ``"fr+m2"``); ``speed_wpm`` in words per minute (80-450), ``pitch`` 0-99. Raises
    :class:`EspeakUnavailableError` when espeak-ng is absent (check with
    :func:`espeak_available`). Results are cached per argument set.
    """
    import soundfile as sf

    from .io import resample

    if not isinstance(text, str) or not text.strip():
        raise ValueError(f"text: expected a non-empty string, got {text!r}")
    if not 80 <= speed_wpm <= 450:
        raise ValueError(f"speed_wpm: expected 80-450 words per minute, got {speed_wpm}")
    if not 0 <= pitch <= 99:
        raise ValueError(f"pitch: expected 0-99, got {pitch}")
    _n_samples(0.0, sample_rate)
    wav = _espeak_wav(text, voice, int(speed_wpm), int(pitch))
    x, sr = sf.read(io.BytesIO(wav), dtype="float32")
    if x.ndim == 2:
        x = x.mean(axis=1)
    return resample(x, sr, sample_rate)
