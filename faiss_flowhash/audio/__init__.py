"""Audio fingerprinting: decoding, log-Mel front end, augmentation, the Transformer encoder and the
:class:`Fingerprinter` that turns audio into L2-normalised fingerprints (paper sections 3.1, 4.4, A.3)."""

# Everything loads at first use (PEP 562): most of it imports torch (seconds), which decoding a file
# or listing a database's tracks never needs.
_LAZY = {
    "AugmentConfig": ".augment", "Augmenter": ".augment", "add_noise": ".augment", "apply_rir": ".augment",
    "split_bank": ".augment", "time_offset": ".augment", "ENCODER_CONFIGS": ".encoder", "EncoderConfig": ".encoder",
    "ProjectionHead": ".encoder", "TransformerEncoder": ".encoder", "DEFAULT_MODEL_PATH": ".fingerprinter",
    "Fingerprinter": ".fingerprinter", "contrastive_loss": ".losses", "triplet_loss": ".losses",
    "TrainConfig": ".train", "AudioDecodeError": ".io", "audio_duration": ".io", "content_hash": ".io",
    "load_audio": ".io", "resample": ".io", "save_audio": ".io", "LogMel": ".melspec", "frame_windows": ".melspec",
    "log_mel": ".melspec", "mel_filterbank": ".melspec", "num_windows": ".melspec", "window_starts": ".melspec",
    "NOISE_KINDS": ".noise", "babble": ".noise", "coloured_noise": ".noise", "noise_bank": ".noise",
    "measure_rt60": ".rooms", "rir_bank": ".rooms", "simulate_rir": ".rooms", "EspeakUnavailableError": ".synth",
    "chirp": ".synth", "espeak_available": ".synth", "speech": ".synth", "synthetic_music": ".synth",
    "tone": ".synth",
}


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name], __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'faiss_flowhash.audio' has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + list(_LAZY))


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
