"""Generated General MIDI music rendered with FluidSynth: training audio with real instrument samples.

``random_song(seed, duration_s)`` composes a seeded piece (tempo, key, mode, chord progression, GM
programs for bass / chords / melody / a counter-line, a drum pattern on channel 10) and returns it as
Standard MIDI File bytes (format 0, written here: no MIDI library needed). ``render_midi`` renders
MIDI bytes with the ``fluidsynth`` program and a SoundFont to a float32 (T,) array at 16 kHz.

The default SoundFont is FluidR3_GM (Debian package ``fluid-soundfont-gm``, MIT licence, Frank Wen):
audio rendered with it, and weights trained on that audio, may ship. ``fluidsynth`` (Debian package
``fluidsynth``, LGPL-2.1) is a program run at training time only.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

import numpy as np

__all__ = ["DEFAULT_SOUNDFONT", "fluidsynth_available", "random_song", "render_midi", "midi_music"]

DEFAULT_SOUNDFONT = Path("/usr/share/sounds/sf2/FluidR3_GM.sf2")
_TPQ = 480  # ticks per quarter note

# GM programs (0-based) by role
_BASS = (32, 33, 34, 35, 36, 37, 38, 39, 43, 58, 70)
_CHORDS = (0, 1, 2, 4, 5, 6, 16, 17, 19, 24, 25, 26, 27, 29, 46, 48, 49, 50, 52, 61, 88, 89, 90, 91, 94)
_MELODY = (0, 8, 11, 12, 13, 22, 40, 41, 42, 56, 57, 60, 64, 65, 66, 68, 71, 72, 73, 74, 75, 78, 79, 80, 81, 104, 105, 108)
_MAJOR = (0, 2, 4, 5, 7, 9, 11)
_MINOR = (0, 2, 3, 5, 7, 8, 10)
_PROGRESSIONS = ((0, 4, 5, 3), (0, 5, 3, 4), (0, 3, 4, 4), (5, 3, 0, 4), (0, 3, 0, 4), (1, 4, 0, 0), (0, 6, 5, 4))


def fluidsynth_available(soundfont: str | os.PathLike = DEFAULT_SOUNDFONT) -> bool:
    """True when the ``fluidsynth`` program and ``soundfont`` exist."""
    return shutil.which("fluidsynth") is not None and Path(soundfont).is_file()


def _vlq(n: int) -> bytes:
    out = [n & 0x7F]
    n >>= 7
    while n:
        out.append(0x80 | (n & 0x7F))
        n >>= 7
    return bytes(reversed(out))


def _smf(events: list[tuple[int, bytes]], tempo_us: int) -> bytes:
    """Format-0 Standard MIDI File from (absolute tick, message bytes) events."""
    events = sorted(events, key=lambda e: (e[0], e[1][0] & 0xF0 != 0x80))  # note-offs first at a tick
    body = bytearray(b"\x00\xff\x51\x03" + tempo_us.to_bytes(3, "big"))
    t = 0
    for tick, msg in events:
        body += _vlq(tick - t) + msg
        t = tick
    body += b"\x00\xff\x2f\x00"
    return b"MThd" + (6).to_bytes(4, "big") + (0).to_bytes(2, "big") + (1).to_bytes(2, "big") + _TPQ.to_bytes(2, "big") + \
        b"MTrk" + len(body).to_bytes(4, "big") + bytes(body)


def random_song(seed: int, duration_s: float = 30.0) -> bytes:
    """A seeded GM piece of about ``duration_s`` seconds as Standard MIDI File bytes."""
    if not duration_s > 0:
        raise ValueError(f"duration_s: expected > 0 seconds, got {duration_s}")
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), 0x6D6964]))
    bpm = float(rng.uniform(60, 170))
    beat = 60.0 / bpm
    n_bars = int(np.ceil(duration_s / (4 * beat))) + 1
    scale = _MAJOR if rng.random() < 0.55 else _MINOR
    root = 48 + int(rng.integers(0, 12))
    prog = _PROGRESSIONS[int(rng.integers(len(_PROGRESSIONS)))]
    ev: list[tuple[int, bytes]] = []

    def note(ch, pitch, t0, dur, vel):
        pitch = int(np.clip(pitch, 0, 127))
        vel = int(np.clip(vel, 1, 127))
        a, b = int(round(t0 * _TPQ)), int(round((t0 + dur) * _TPQ))
        ev.append((a, bytes([0x90 | ch, pitch, vel])))
        ev.append((max(b, a + 1), bytes([0x80 | ch, pitch, 0])))

    def degree(d, octave=0):
        return root + 12 * (octave + d // 7) + scale[d % 7]

    roles = [(0, _BASS), (1, _CHORDS), (2, _MELODY)] + ([(3, _MELODY)] if rng.random() < 0.6 else [])
    for ch, pool in roles:
        ev.append((0, bytes([0xC0 | ch, int(rng.choice(pool))])))
        ev.append((0, bytes([0xB0 | ch, 7, int(rng.integers(70, 120))])))  # channel volume
        ev.append((0, bytes([0xB0 | ch, 10, int(rng.integers(20, 108))])))  # pan
        ev.append((0, bytes([0xB0 | ch, 91, int(rng.integers(0, 80))])))  # reverb send
    ev.append((0, bytes([0xC9, int(rng.choice([0, 8, 16, 24, 25, 32, 40]))])))  # drum kit
    bass_rhythm = [(0, 1), (1, 1), (2, 1), (3, 1)] if rng.random() < 0.5 else [(0, 1.5), (1.5, 0.5), (2, 2)]
    chord_style = int(rng.integers(3))  # 0 sustained, 1 on beats, 2 arpeggio
    drums = rng.random() < 0.85
    swing = float(rng.uniform(0, 0.12))
    motif = rng.integers(-3, 5, size=8)
    for bar in range(n_bars):
        c = prog[bar % len(prog)] + (int(rng.integers(-1, 2)) if rng.random() < 0.15 else 0)
        t_bar = 4.0 * bar
        for t, d in bass_rhythm:
            note(0, degree(c, -1) + (12 if rng.random() < 0.15 else 0), t_bar + t, d * 0.9, rng.integers(70, 110))
        chord = [degree(c + k) for k in (0, 2, 4)] + ([degree(c + 6)] if rng.random() < 0.3 else [])
        if chord_style == 0:
            for p in chord:
                note(1, p, t_bar, 3.9, rng.integers(50, 80))
        elif chord_style == 1:
            for b in range(4):
                for p in chord:
                    note(1, p, t_bar + b, 0.8, rng.integers(45, 85))
        else:
            for k in range(8):
                note(1, chord[k % len(chord)] + 12 * (k // len(chord) % 2), t_bar + 0.5 * k, 0.45, rng.integers(50, 90))
        # melody: a motif varied per bar, on scale degrees around the chord
        t = 0.0
        while t < 4.0:
            d = float(rng.choice([0.25, 0.5, 0.5, 1.0, 1.0, 1.5, 2.0]))
            if rng.random() < 0.15:
                t += d
                continue
            step = int(motif[int(t * 2) % 8]) + (int(rng.integers(-2, 3)) if rng.random() < 0.4 else 0)
            tt = t + (swing if (t * 2) % 2 == 1 else 0.0)
            note(2, degree(c + step, 1), t_bar + tt, min(d, 4.0 - t) * 0.95, rng.integers(70, 120))
            t += d
        if len(roles) == 4:
            for b in range(0, 4, 2):
                note(3, degree(c + int(rng.choice([2, 4, 7])), 0), t_bar + b, 1.9, rng.integers(50, 90))
        if drums:
            for s in range(8):
                tt = t_bar + 0.5 * s
                if s in (0, 4) or rng.random() < 0.1:
                    note(9, 36, tt, 0.2, rng.integers(90, 120))
                if s in (2, 6):
                    note(9, 38 if rng.random() < 0.85 else 40, tt, 0.2, rng.integers(80, 115))
                note(9, 42 if rng.random() < 0.85 else 46, tt, 0.1, rng.integers(40, 90))
            if bar % 4 == 3:
                note(9, int(rng.choice([49, 57, 45, 47, 50])), t_bar + 3.5, 0.4, rng.integers(80, 120))
    return _smf(ev, int(round(beat * 1e6)))


def render_midi(midi: bytes, *, soundfont: str | os.PathLike = DEFAULT_SOUNDFONT, sample_rate: int = 16000,
                gain: float = 0.6, timeout_s: float = 120.0) -> np.ndarray:
    """Render Standard MIDI File bytes with ``fluidsynth``; float32 mono (T,) at ``sample_rate``.

    RuntimeError when fluidsynth or the SoundFont is missing (``apt-get install fluidsynth
    fluid-soundfont-gm``) or rendering fails.
    """
    import soundfile as sf

    if not fluidsynth_available(soundfont):
        raise RuntimeError(f"render_midi: needs the fluidsynth program and the SoundFont {soundfont} "
                           "(apt-get install fluidsynth fluid-soundfont-gm)")
    with tempfile.TemporaryDirectory() as tmp:
        mid, wav = Path(tmp) / "song.mid", Path(tmp) / "song.wav"
        mid.write_bytes(midi)
        proc = subprocess.run(["fluidsynth", "-ni", "-q", "-g", str(gain), "-r", str(sample_rate), "-T", "wav",
                               "-F", str(wav), str(soundfont), str(mid)],
                              capture_output=True, timeout=timeout_s, check=False)
        if proc.returncode != 0 or not wav.is_file():
            raise RuntimeError(f"render_midi: fluidsynth failed: {proc.stderr.decode(errors='replace').strip()[:300]}")
        x, sr = sf.read(wav, dtype="float32")
    x = x.mean(axis=1) if x.ndim == 2 else x
    if sr != sample_rate:
        from .io import resample

        x = resample(x, sr, sample_rate)
    return np.ascontiguousarray(x, dtype=np.float32)


def midi_music(duration_s: float, *, seed: int, soundfont: str | os.PathLike = DEFAULT_SOUNDFONT) -> np.ndarray:
    """``random_song(seed, duration_s)`` rendered at 16 kHz and cut to ``duration_s`` (float32 (T,))."""
    x = render_midi(random_song(seed, duration_s), soundfont=soundfont)
    n = int(round(duration_s * 16000))
    return x[:n] if x.size >= n else np.pad(x, (0, n - x.size))
