"""Fingerprinter: frame counts, input checks, model file round trips and refusals."""

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from faiss_flowhash.audio.encoder import ENCODER_CONFIGS, ProjectionHead, TransformerEncoder
from faiss_flowhash.audio.features import CONTEXT, pad_signal, signal_features, window_features
from faiss_flowhash.audio.fingerprinter import DEFAULT_MODEL_PATH, MODEL_VERSION, Fingerprinter


SR = 16000


@pytest.fixture(scope="module")
def fp():
    torch.manual_seed(0)
    cfg = ENCODER_CONFIGS["tiny"]
    return Fingerprinter(TransformerEncoder(cfg), head=ProjectionHead(cfg.out_dim, 4, hidden=8))


def _wave(seconds, seed=0):
    return (0.1 * np.random.default_rng(seed).standard_normal(int(seconds * SR))).astype(np.float32)


@pytest.mark.parametrize("T,n", [(0, 0), (1, 0), (15999, 0), (16000, 1), (17599, 1), (17600, 2), (48000, 21)])
def test_frame_counts(fp, T, n):
    out = fp.fingerprint(_wave(T / SR))
    assert out.shape == (n, fp.dim) and out.dtype == np.float32
    assert fp.num_windows(T) == n


@given(T=st.integers(16000, 40000), hop=st.sampled_from([0.05, 0.1, 0.25, 1.0]))
def test_frame_count_formula_and_unit_norm(fp, T, hop):
    out = fp.fingerprint(_wave(T / SR, seed=T), hop_s=hop)
    assert out.shape == (1 + (T - SR) // int(round(hop * SR)), fp.dim)
    np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, rtol=1e-5)


def test_batching_does_not_change_rows(fp):
    w = _wave(3.3)
    a = fp.fingerprint(w, batch_size=256)
    b = fp.fingerprint(w, batch_size=1)
    c = fp.fingerprint(w, batch_size=7)
    np.testing.assert_allclose(a, b, atol=1e-5)
    np.testing.assert_allclose(a, c, atol=1e-5)


def test_row_i_is_the_window_at_i_hops_with_its_context(fp):
    """Row i = encoder(features of samples [i*hop - 480, i*hop + 16000 + 480)), the training input."""
    w = _wave(2.0)
    rows = fp.fingerprint(w)
    ctx = torch.from_numpy(w[5 * 1600 - CONTEXT : 5 * 1600 + SR + CONTEXT].copy())[None]
    with torch.inference_mode():
        expected = fp.encoder(window_features(ctx))[0].numpy()
    np.testing.assert_allclose(rows[5], expected, atol=1e-5)


@pytest.mark.parametrize("hop", [1600, 800, 1234])
def test_signal_features_fast_path_equals_per_window(hop):
    w = _wave(2.7, seed=3)
    padded = pad_signal(w)
    n = 1 + (len(w) - SR) // hop
    fast = signal_features(padded, 0, n, hop)
    windows = np.lib.stride_tricks.sliding_window_view(padded, SR + 2 * CONTEXT)[::hop][:n]
    slow = window_features(torch.from_numpy(windows.copy()))
    assert fast.shape == (n, 64, 100)
    torch.testing.assert_close(fast, slow, rtol=1e-4, atol=1e-4)
    part = signal_features(padded, 2, 3, hop)  # a batch from the middle
    torch.testing.assert_close(part, slow[2:5], rtol=1e-4, atol=1e-4)


def test_float64_accepted(fp):
    w = _wave(1.5)
    np.testing.assert_allclose(fp.fingerprint(w.astype(np.float64)), fp.fingerprint(w), atol=1e-6)


@pytest.mark.parametrize(
    "wave,err,match",
    [
        (np.full(SR, np.nan, np.float32), ValueError, "NaN"),
        (np.zeros((2, SR), np.float32), ValueError, r"expected shape \(T,\)"),
        (np.zeros(SR, np.int16), TypeError, "floating dtype"),
        ([0.0] * SR, TypeError, "np.ndarray"),
    ],
)
def test_bad_input(fp, wave, err, match):
    with pytest.raises(err, match=match):
        fp.fingerprint(wave)


def test_bad_arguments(fp):
    with pytest.raises(ValueError):
        fp.fingerprint(_wave(1), batch_size=0)
    with pytest.raises(ValueError):
        fp.fingerprint(_wave(1), hop_s=0)


def test_save_load_round_trip(fp, tmp_path):
    path = tmp_path / "m.pt"
    fp.save(path)
    fp2 = Fingerprinter.load(path)
    assert fp2.model_id == fp.model_id and fp2.dim == fp.dim and fp2.quantizer is None
    w = _wave(2.5)
    np.testing.assert_array_equal(fp2.fingerprint(w), fp.fingerprint(w))
    fp3 = Fingerprinter.from_bytes(fp.to_bytes())
    assert fp3.model_id == fp.model_id
    state = torch.load(path, weights_only=True)  # the file is plain tensors and dicts
    assert state["version"] == MODEL_VERSION


def test_model_id_tracks_weights(fp):
    enc = TransformerEncoder(fp.encoder.config)
    enc.load_state_dict(fp.encoder.state_dict())
    same = Fingerprinter(enc, head=fp.head)
    assert same.model_id == fp.model_id
    with torch.no_grad():
        enc.out.bias[0] += 1e-3
    assert Fingerprinter(enc, head=fp.head).model_id != fp.model_id


def test_refuses_foreign_and_other_version_files(fp, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_bytes(b"\x00garbage" * 10)
    with pytest.raises(ValueError, match="not a faiss-flowhash fingerprinter model"):
        Fingerprinter.load(junk)
    state = fp.state()
    state["version"] = MODEL_VERSION + 1
    torch.save(state, tmp_path / "v2.pt")
    with pytest.raises(ValueError, match=f"expected model file version {MODEL_VERSION}, got {MODEL_VERSION + 1}"):
        Fingerprinter.load(tmp_path / "v2.pt")
    torch.save({"weights": torch.zeros(3)}, tmp_path / "other.pt")
    with pytest.raises(ValueError, match="expected format"):
        Fingerprinter.load(tmp_path / "other.pt")
    state = fp.state()
    state["encoder_config"] = dict(state["encoder_config"], dim=32, heads=2)
    torch.save(state, tmp_path / "mismatch.pt")
    with pytest.raises(ValueError, match="weights do not match"):
        Fingerprinter.load(tmp_path / "mismatch.pt")
    state = fp.state()
    state["encoder"]["out.bias"] = state["encoder"]["out.bias"] + 1.0  # weights edited, id kept
    torch.save(state, tmp_path / "edited.pt")
    with pytest.raises(ValueError, match="does not match the weights"):
        Fingerprinter.load(tmp_path / "edited.pt")
    with pytest.raises(FileNotFoundError):
        Fingerprinter.load(tmp_path / "missing.pt")


def test_fingerprint_file(fp, tmp_path):
    from faiss_flowhash.audio.io import save_audio

    w = _wave(2.0)
    save_audio(tmp_path / "a.wav", w, SR)
    emb, dur = fp.fingerprint_file(tmp_path / "a.wav")
    assert dur == pytest.approx(2.0)
    np.testing.assert_allclose(emb, fp.fingerprint(w), atol=1e-6)


def test_quantizer_travels_with_the_model(fp, tmp_path):
    import faiss_flowhash as quantizer  # FlowQuantizer, QuantizerConfig: the public names (no importorskip: a broken module must fail)
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, fp.dim)).astype(np.float32)
    q = quantizer.FlowQuantizer(fp.dim, K=4, config=quantizer.QuantizerConfig(steps=5, batch_size=64, precondition=False, verbose=False))
    q.train(x)
    with_q = Fingerprinter(fp.encoder, head=fp.head, quantizer=q)
    assert with_q.model_id != fp.model_id
    with_q.save(tmp_path / "q.pt")
    back = Fingerprinter.load(tmp_path / "q.pt")
    assert back.model_id == with_q.model_id
    np.testing.assert_allclose(back.quantizer.encode(x), q.encode(x), atol=1e-5)


@pytest.mark.skipif(not DEFAULT_MODEL_PATH.exists(), reason="no shipped default model")
def test_shipped_default_model_loads():
    fp = Fingerprinter.load()
    assert fp.dim == 128 and fp.sample_rate == 16000 and fp.hop_s == 0.1
    assert fp.meta.get("command")
    out = fp.fingerprint(_wave(1.2))
    assert out.shape == (3, 128)


def test_window_levels_row_for_row(fp):
    w = np.concatenate([np.zeros(SR, np.float32), _wave(2.0)])
    levels = fp.window_levels(w)
    assert levels.shape == (fp.num_windows(len(w)),)
    assert levels[0] < -150 and levels[-1] == pytest.approx(-20.0, abs=0.5)  # silence; 0.1 RMS noise


def test_to_device_keeps_results(fp):
    w = _wave(1.5)
    before = fp.fingerprint(w)
    assert fp.to("cpu") is fp
    np.testing.assert_array_equal(fp.fingerprint(w), before)
