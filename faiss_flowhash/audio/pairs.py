"""Training data: audio sources (files, generated music and speech), and pairs (x, x+) of random 1 s
segments and their distorted views.

``sample_pairs`` is a pure function of its inputs and the generator passed in, so a training step's
batch depends only on (seed, step): resuming from a checkpoint replays the same data.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Callable, Sequence

import numpy as np

from .files import AUDIO_EXTENSIONS, audio_files_in

__all__ = [
    "AUDIO_SUFFIXES",
    "Augment",
    "list_audio_files",
    "load_sources",
    "sample_pairs",
    "default_augment",
    "synthetic_sources",
]

Augment = Callable[[np.ndarray, np.random.Generator], np.ndarray]  # views (B, T) -> distorted (B, T)

AUDIO_SUFFIXES = AUDIO_EXTENSIONS  # the package's one list (audio/files.py)


def list_audio_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Expand files and directories (searched recursively for ``AUDIO_SUFFIXES``) into a sorted file list."""
    out: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            out.extend(Path(f) for f in audio_files_in(p))
        elif p.is_file():
            out.append(p)
        else:
            raise FileNotFoundError(f"{p}: no such file or directory")
    return out


def load_sources(
    items: Sequence[str | os.PathLike | np.ndarray], *, sample_rate: int = 16000, min_s: float = 1.1
) -> list[np.ndarray]:
    """Audio arrays (T,) float32 from arrays and/or paths (directories expanded), keeping those >= ``min_s``.

    Files that fail to decode are skipped with a warning on stderr.
    """
    import sys

    from .io import load_audio

    arrays: list[np.ndarray] = []
    paths = [x for x in items if not isinstance(x, np.ndarray)]
    for x in items:
        if isinstance(x, np.ndarray):
            if x.ndim != 1:
                raise ValueError(f"audio array: expected shape (T,), got {x.shape}")
            arrays.append(np.ascontiguousarray(x, dtype=np.float32))
    for f in list_audio_files(paths):
        try:
            arrays.append(load_audio(f, sample_rate=sample_rate))
        except ValueError as e:  # AudioDecodeError
            print(f"warning: skipping {f}: {e}", file=sys.stderr)
    return [a for a in arrays if len(a) >= int(min_s * sample_rate)]


def sample_pairs(
    sources: Sequence[np.ndarray],
    n: int,
    *,
    rng: np.random.Generator,
    augment: Augment,
    window: int = 16000,
    max_offset: int = 800,
    min_rms_db: float = -50.0,
    tries: int = 8,
) -> tuple[np.ndarray, np.ndarray]:
    """n pairs of windows: x (n, window) clean, x_pos (n, window) its distorted view.

    x is a random ``window``-sample segment (sources picked with probability proportional to length).
    x_pos is cut from the same source up to ``max_offset`` samples away (800 = 50 ms, paper 4.4), so
    the offset brings in real neighbouring audio rather than zeros, then the batch goes through
    ``augment(views (n, window), rng) -> (n, window)``. Segments quieter than ``min_rms_db`` dBFS are
    re-drawn (up to ``tries`` times): silence carries no identity and only confuses the batch.
    """
    if not sources:
        raise ValueError("sources: expected at least one audio array, got none")
    lengths = np.array([len(s) for s in sources], dtype=np.float64)
    if (lengths < window).any():
        raise ValueError(f"sources: expected every array >= {window} samples, got min {int(lengths.min())}")
    p = lengths / lengths.sum()
    x = np.empty((n, window), np.float32)
    views = np.empty((n, window), np.float32)
    for i in range(n):
        for _ in range(tries):
            src = sources[rng.choice(len(sources), p=p)]
            start = int(rng.integers(0, len(src) - window + 1))
            seg = src[start : start + window]
            if 10 * np.log10(np.mean(np.square(seg, dtype=np.float64)) + 1e-20) >= min_rms_db:
                break
        lo, hi = max(0, start - max_offset), min(len(src) - window, start + max_offset)
        shifted = int(rng.integers(lo, hi + 1))
        x[i] = seg
        views[i] = src[shifted : shifted + window]
    return x, np.asarray(augment(views, rng), dtype=np.float32)


def default_augment(*, seed: int = 0, n_noises: int = 32, n_rirs: int = 32) -> Augment:
    """The paper's distortions (4.4) with the train split of the generated noise and room banks.

    The time offset is left to ``sample_pairs`` (it cuts x+ from the source up to 50 ms away), so the
    Augmenter's own offset, which fills with zeros, is off. The returned function uses the generator
    it is given, so a batch depends only on that generator.
    """
    from .augment import AugmentConfig, Augmenter
    from .noise import noise_bank
    from .rooms import rir_bank

    aug = Augmenter(
        noise_bank(seed=seed, n_clips=n_noises, split="train"),
        rir_bank(seed=seed, n=n_rirs, split="train"),
        config=AugmentConfig(p_offset=0.0),
        seed=seed,
    )

    def augment(x: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        aug.rng = rng
        return aug(x)

    return augment


_WORDS = (
    "the a of and to in is was for on that with as it by at from his her they we you this which be or an "
    "are not have one had but what all were when there can been has more if will who out so up said time "
    "about into than them only other new some could these two may first then do any like my now over such "
    "our man me even most made after also did many before must through back years where much your way well "
    "down should because each just those people how too little state good very make world still own see men "
    "work long get here between both life being under never day same another know while last might us great "
    "old year off come since against go came right used take three river music light water morning evening"
).split()
_VOICES = ("en", "en+f3", "en+m3", "en-us", "en-us+f2", "de", "fr+m2", "es", "it+f4", "nl", "pt", "pl+m1")


def synthetic_sources(*, n_music: int = 0, n_speech: int = 0, seconds: float = 30.0, seed: int = 0) -> list[np.ndarray]:
    """Generated training audio: ``n_music`` synth.synthetic_music clips of ``seconds`` and ``n_speech``
    espeak-ng clips (40 random words, about 11 s, each; voices cycling through 12 languages/variants)."""
    from . import synth

    out = [synth.synthetic_music(seconds, seed=seed * 100003 + i) for i in range(n_music)]
    for i in range(n_speech):
        rng = np.random.default_rng([seed, 7, i])
        text = " ".join(rng.choice(_WORDS, size=40))
        out.append(synth.speech(text, voice=_VOICES[i % len(_VOICES)], speed_wpm=int(rng.integers(130, 200)),
                                pitch=int(rng.integers(30, 70))))
    return [np.ascontiguousarray(a, dtype=np.float32) for a in out]
