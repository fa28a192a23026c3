"""Decode / save / resample / hash, and the documented errors."""

import numpy as np
import pytest
import soundfile as sf

from faiss_flowhash.audio.io import (
    AudioDecodeError,
    audio_duration,
    content_hash,
    load_audio,
    resample,
    save_audio,
)


def _tone(freq, sr, dur=1.0):
    t = np.arange(int(sr * dur)) / sr
    return (0.5 * np.sin(2 * np.pi * freq * t)).astype(np.float32)


def _peak_hz(x, sr):
    spec = np.abs(np.fft.rfft(x * np.hanning(len(x))))
    return np.argmax(spec) * sr / len(x)


@pytest.mark.parametrize("suffix", [".wav", ".flac"])
def test_save_load_round_trip(tmp_path, rng, suffix):
    x = (0.3 * rng.standard_normal(8000)).clip(-1, 1).astype(np.float32)
    p = tmp_path / f"a{suffix}"
    save_audio(p, x, 16000)
    y = load_audio(p, sample_rate=16000)
    assert y.dtype == np.float32 and y.shape == x.shape
    np.testing.assert_allclose(y, x, atol=1e-6 if suffix == ".wav" else 2e-7 * 2**8)
    assert audio_duration(p) == pytest.approx(0.5)


def test_load_downmixes_and_resamples(tmp_path):
    sr = 44100
    left, right = _tone(1000, sr), _tone(1000, sr)
    sf.write(tmp_path / "st.wav", np.stack([left, right], 1), sr)
    y = load_audio(tmp_path / "st.wav", sample_rate=16000)
    assert y.ndim == 1 and abs(len(y) - 16000) <= 1
    assert _peak_hz(y, 16000) == pytest.approx(1000, abs=2)


def test_load_offset_and_duration(tmp_path):
    x = np.linspace(-1, 1, 16000, dtype=np.float32)
    save_audio(tmp_path / "r.wav", x)
    y = load_audio(tmp_path / "r.wav", offset_s=0.25, duration_s=0.5)
    np.testing.assert_allclose(y, x[4000:12000])


@pytest.mark.parametrize("freq", [440.0, 3000.0])
def test_resample_keeps_frequency(freq):
    x = _tone(freq, 48000)
    y = resample(x, 48000, 16000)
    assert y.dtype == np.float32 and len(y) == 16000
    assert _peak_hz(y, 16000) == pytest.approx(freq, abs=2)


def test_resample_batched_equals_per_item(rng):
    x = rng.standard_normal((3, 4410)).astype(np.float32)
    y = resample(x, 44100, 16000)
    assert y.shape == (3, 1600)
    for i in range(3):
        np.testing.assert_allclose(y[i], resample(x[i], 44100, 16000), atol=1e-6)


def test_missing_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.wav"):
        load_audio(tmp_path / "nope.wav")
    with pytest.raises(FileNotFoundError):
        audio_duration(tmp_path / "nope.wav")


def test_corrupt_and_empty_files(tmp_path):
    bad = tmp_path / "bad.mp3"
    bad.write_bytes(b"not audio at all" * 64)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    zero = tmp_path / "zero.wav"
    sf.write(zero, np.zeros(0, np.float32), 16000)
    for p in (bad, empty, zero):
        with pytest.raises(AudioDecodeError) as e:
            load_audio(p)
        assert str(p) in str(e.value) and isinstance(e.value, ValueError)
        assert e.value.path == str(p) and e.value.reason
    with pytest.raises(AudioDecodeError):
        audio_duration(bad)


def test_nan_samples(tmp_path):
    x = np.zeros(1600, np.float32)
    x[100] = np.nan
    p = tmp_path / "nan.wav"
    sf.write(p, x, 16000, subtype="FLOAT")
    with pytest.raises(AudioDecodeError, match="NaN"):
        load_audio(p)


def test_save_rejects_bad_input(tmp_path):
    with pytest.raises(ValueError, match=".mp3"):
        save_audio(tmp_path / "a.mp3", np.zeros(10))
    with pytest.raises(ValueError, match=r"\[-1, 1\]"):
        save_audio(tmp_path / "a.flac", np.full(10, 2.0))
    with pytest.raises(ValueError, match="shape"):
        save_audio(tmp_path / "a.wav", np.zeros((2, 2, 2)))


def test_content_hash(tmp_path):
    import hashlib

    p = tmp_path / "b.bin"
    data = bytes(range(256)) * 5000
    p.write_bytes(data)
    assert content_hash(p, chunk_size=1000) == hashlib.sha256(data).hexdigest()


@pytest.mark.parametrize("fmt,subtype,sr", [("ogg", "VORBIS", 44100), ("ogg", "OPUS", 48000), ("mp3", "MPEG_LAYER_III", 44100)])
def test_decodes_compressed_formats(tmp_path, fmt, subtype, sr):
    if subtype not in sf.available_subtypes(fmt.upper() if fmt != "mp3" else "MP3"):
        pytest.skip(f"libsndfile here cannot write {subtype}")
    p = tmp_path / f"t.{'opus' if subtype == 'OPUS' else fmt}"
    sf.write(p, _tone(1000, sr), sr, format="MP3" if fmt == "mp3" else "OGG", subtype=subtype)
    y = load_audio(p, sample_rate=16000)
    assert y.ndim == 1 and abs(len(y) - 16000) < 1600  # codecs pad a little
    assert _peak_hz(y[800:-800], 16000) == pytest.approx(1000, abs=5)
