"""Audio fingerprinting: decoding, log-Mel front end, augmentation, the Transformer encoder and the
:class:`Fingerprinter` that turns audio into L2-normalised fingerprints (paper sections 3.1, 4.4, A.3)."""

from .augment import AugmentConfig, Augmenter, add_noise, apply_rir, split_bank, time_offset
from .encoder import ENCODER_CONFIGS, EncoderConfig, ProjectionHead, TransformerEncoder
from .fingerprinter import DEFAULT_MODEL_PATH, Fingerprinter
from .losses import contrastive_loss, triplet_loss
from .train import TrainConfig
from .io import AudioDecodeError, audio_duration, content_hash, load_audio, resample, save_audio
from .melspec import LogMel, frame_windows, log_mel, mel_filterbank, num_windows, window_starts
from .noise import NOISE_KINDS, babble, coloured_noise, noise_bank
from .rooms import measure_rt60, rir_bank, simulate_rir
from .synth import EspeakUnavailableError, chirp, espeak_available, speech, synthetic_music, tone

__all__ = [
    "AugmentConfig", "Augmenter", "add_noise", "apply_rir", "split_bank", "time_offset",
    "ENCODER_CONFIGS", "EncoderConfig", "ProjectionHead", "TransformerEncoder",
    "DEFAULT_MODEL_PATH", "Fingerprinter", "TrainConfig", "contrastive_loss", "triplet_loss",
    "AudioDecodeError", "audio_duration", "content_hash", "load_audio", "resample", "save_audio",
    "LogMel", "frame_windows", "log_mel", "mel_filterbank", "num_windows", "window_starts",
    "NOISE_KINDS", "babble", "coloured_noise", "noise_bank",
    "measure_rt60", "rir_bank", "simulate_rir",
    "EspeakUnavailableError", "chirp", "espeak_available", "speech", "synthetic_music", "tone",
]
