"""The torch-free inference path agrees with torch: model files read without torch, the numpy encoder
forward, the numpy log-Mel and features, and a loaded quantizer's numpy chain (shipped and random models)."""

import dataclasses
import functools
import inspect
import io
import pickle

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from faiss_flowhash.audio import synth
from faiss_flowhash.audio.checkpoint import read_torch_dict, read_torch_zip
from faiss_flowhash.audio.encoder import ENCODER_CONFIGS, EncoderConfig, ProjectionHead, TransformerEncoder
from faiss_flowhash.audio.encoder_numpy import CONFIG_KEYS, check_weights, encode, prepare
from faiss_flowhash.audio.features import pad_signal, signal_features, signal_features_numpy
from faiss_flowhash.audio.fingerprinter import DEFAULT_MODEL_PATH, Fingerprinter
from faiss_flowhash.audio.melspec import log_mel, log_mel_numpy
from faiss_flowhash.index import FlowQuantizer, QuantizerConfig
from faiss_flowhash.index import quantizer_numpy
from faiss_flowhash.index.flow import CouplingLayer
from faiss_flowhash.index.gaussianize import Gaussianizer

SR = 16000


def _wave(seconds=3.0, seed=4):
    x = 0.7 * synth.synthetic_music(seconds, seed=seed) + 0.3 * synth.chirp(300.0, 3000.0, seconds)
    return np.asarray(x, np.float32)


def _mels(n=24, seed=0):
    """Log-Mel windows (n, 64, 100): real ones from a wave, and random ones."""
    real = signal_features_numpy(pad_signal(_wave()), 0, n // 2, 1600)
    rnd = (np.random.default_rng(seed).standard_normal((n - n // 2, 64, 100)) * 3 - 6).astype(np.float32)
    return np.concatenate([real, rnd])


@pytest.fixture(scope="module")
def shipped():
    return read_torch_dict(DEFAULT_MODEL_PATH, what="model", source="default", arrays="numpy")


def _torch_encoder(config: dict, weights: dict) -> TransformerEncoder:
    enc = TransformerEncoder(EncoderConfig.from_dict(config))
    enc.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in weights.items()})
    return enc.eval()


def test_config_keys_are_the_encoder_config_fields():
    assert set(CONFIG_KEYS) == {f.name for f in dataclasses.fields(EncoderConfig)}


def test_the_constants_the_numpy_chain_assumes_are_the_modules_defaults():
    assert quantizer_numpy.SCALE_BOUND == inspect.signature(CouplingLayer).parameters["scale_bound"].default
    assert quantizer_numpy.N_KNOTS == inspect.signature(Gaussianizer).parameters["n_knots"].default


def test_model_file_reads_without_torch_as_torch_load_does(shipped):
    ref = torch.load(DEFAULT_MODEL_PATH, map_location="cpu", weights_only=True)
    for part in ("encoder", "head"):
        assert shipped[part].keys() == ref[part].keys()
        for k, v in ref[part].items():
            a = shipped[part][k]
            assert isinstance(a, np.ndarray) and a.dtype == v.numpy().dtype
            np.testing.assert_array_equal(a, v.numpy())
    np.testing.assert_array_equal(shipped["quantizer"], ref["quantizer"].numpy())
    assert {k: v for k, v in shipped.items() if k not in ("encoder", "head", "quantizer")} == \
        {k: v for k, v in ref.items() if k not in ("encoder", "head", "quantizer")}


def test_strided_and_shared_storages_read_like_torch(tmp_path):
    base = torch.arange(24, dtype=torch.float32).reshape(4, 6)
    obj = {"t": base.T, "row": base[1], "slice": base[:, 2:5], "i64": torch.arange(5), "b": torch.tensor([True, False]),
           "half": torch.ones(3, dtype=torch.float16), "scalar": torch.tensor(2.5), "nested": [{"x": base[::2, ::3]}]}
    buf = io.BytesIO()
    torch.save(obj, buf)
    got = read_torch_zip(buf.getvalue())
    for k in ("t", "row", "slice", "i64", "b", "half", "scalar"):
        np.testing.assert_array_equal(got[k], obj[k].numpy())
        assert got[k].dtype == obj[k].numpy().dtype
    np.testing.assert_array_equal(got["nested"][0]["x"], obj["nested"][0]["x"].numpy())


def test_files_outside_the_allow_list_fall_back_to_torch_load(tmp_path):
    legacy = tmp_path / "legacy.pt"
    torch.save({"w": torch.ones(2, 3)}, legacy, _use_new_zipfile_serialization=False)
    got = read_torch_dict(legacy, what="model", source=str(legacy), arrays="numpy")
    np.testing.assert_array_equal(got["w"], np.ones((2, 3), np.float32))
    sized = tmp_path / "sized.pt"
    torch.save({"shape": torch.Size([2, 3]), "w": torch.zeros(2)}, sized)  # torch.Size: not in the allow-list
    got = read_torch_dict(sized, what="model", source=str(sized), arrays="numpy")
    assert tuple(got["shape"]) == (2, 3) and isinstance(got["w"], np.ndarray)
    evil = tmp_path / "evil.pt"
    torch.save({"f": pickle.loads}, evil)  # a callable global: refused by both readers
    with pytest.raises(ValueError, match="not a model"):
        read_torch_dict(evil, what="model", source=str(evil), arrays="numpy")


def test_numpy_encoder_equals_torch_on_the_shipped_model(shipped):
    mel = _mels()
    enc = _torch_encoder(shipped["encoder_config"], shipped["encoder"])
    with torch.inference_mode():
        want = enc(torch.from_numpy(mel)).numpy()
    got = encode(prepare(shipped["encoder_config"], shipped["encoder"]), mel)
    assert got.dtype == np.float32 and got.shape == want.shape
    assert np.abs(got - want).max() < 1e-4


@pytest.mark.parametrize("preset", ["small", "tiny"])
def test_numpy_encoder_equals_torch_on_a_random_model(preset):
    torch.manual_seed(3)
    enc = TransformerEncoder(ENCODER_CONFIGS[preset]).eval()
    weights = {k: v.detach().numpy() for k, v in enc.state_dict().items()}
    mel = _mels()
    with torch.inference_mode():
        want = enc(torch.from_numpy(mel)).numpy()
    assert np.abs(encode(prepare(enc.config.to_dict(), weights), mel) - want).max() < 1e-4


def test_weights_that_do_not_fit_the_config_are_refused(shipped):
    cfg = shipped["encoder_config"]
    with pytest.raises(ValueError, match="missing keys"):
        check_weights(cfg, {k: v for k, v in shipped["encoder"].items() if k != "out.bias"})
    with pytest.raises(ValueError, match="expected shape"):
        check_weights(dict(cfg, ffn=128), shipped["encoder"])
    with pytest.raises(ValueError, match="keys"):
        check_weights({k: v for k, v in cfg.items() if k != "ffn"}, shipped["encoder"])
    with pytest.raises(ValueError, match="mel: expected shape"):
        encode(prepare(cfg, shipped["encoder"]), np.zeros((2, 64, 99), np.float32))


def test_numpy_log_mel_matches_torch():
    w = _wave(2.0)
    want = log_mel(torch.from_numpy(w)).numpy()
    got = log_mel_numpy(w)
    assert got.shape == want.shape and got.dtype == np.float32
    loud = want > -10  # float32 FFT round-off dominates only bins ~1e-5 below the frame's peak
    assert np.abs(got - want)[loud].max() < 1e-3
    assert np.abs(got - want).mean() < 1e-3


@given(T=st.integers(600, 5000), hop=st.sampled_from([80, 160, 256]), pad=st.sampled_from(["reflect", "constant", "replicate"]),
       win=st.sampled_from([None, 400]))
def test_numpy_log_mel_shapes_and_values_match_torch(T, hop, pad, win):
    w = (0.1 * np.random.default_rng(T).standard_normal((2, T))).astype(np.float32)
    kw = dict(n_fft=512, hop_length=hop, pad_mode=pad, win_length=win)
    want = log_mel(torch.from_numpy(w), **kw).numpy()
    got = log_mel_numpy(w, **kw)
    assert got.shape == want.shape == (2, 64, T // hop)
    np.testing.assert_allclose(got, want, atol=2e-3)


@pytest.mark.parametrize("hop", [1600, 1000])  # whole log-Mel frames, and not
def test_numpy_features_match_torch(hop):
    padded = pad_signal(_wave(3.0))
    n = 1 + (48000 - SR) // hop
    want = signal_features(padded, 0, n, hop).numpy()
    got = signal_features_numpy(padded, 0, n, hop)
    assert got.shape == want.shape == (n, 64, 100)
    assert np.abs(got - want)[want > -10].max() < 1e-3


def test_shipped_fingerprints_numpy_vs_torch_backend():
    fn = Fingerprinter.load(backend="numpy")
    ft = Fingerprinter.load(backend="torch")
    assert (fn.backend, ft.backend) == ("numpy", "torch") and fn.model_id == ft.model_id
    w = _wave(3.0)
    a, b = fn.fingerprint(w), ft.fingerprint(w)
    assert a.shape == b.shape == (21, 128)
    assert np.sum(a * b, axis=1).min() > 0.9999
    assert np.abs(a - b).max() < 1e-3
    # the numpy encoder alone on the same features: float32 agreement
    mel = signal_features(pad_signal(w), 0, 21, 1600)
    with torch.inference_mode():
        want = ft.encoder(mel).numpy()
    assert np.abs(encode(prepare(fn._config, fn._weights), mel.numpy()) - want).max() < 1e-4


def test_random_model_round_trip_numpy_backend(tmp_path):
    torch.manual_seed(5)
    cfg = ENCODER_CONFIGS["tiny"]
    fp = Fingerprinter(TransformerEncoder(cfg), head=ProjectionHead(cfg.out_dim, 4, hidden=8))
    fp.save(tmp_path / "m.pt")
    back = Fingerprinter.load(tmp_path / "m.pt", backend="numpy")
    assert back.backend == "numpy" and back.model_id == fp.model_id and back.dim == fp.dim
    w = _wave(2.5, seed=9)
    assert np.abs(back.fingerprint(w) - fp.fingerprint(w)).max() < 1e-3
    # the state a numpy-backed model writes is the same model
    again = Fingerprinter.from_bytes(back.to_bytes(), backend="numpy")
    assert again.model_id == fp.model_id
    np.testing.assert_array_equal(again.fingerprint(w), back.fingerprint(w))
    # touching .encoder makes the module the model (training may change it): fingerprints come from torch
    assert back.encoder is back.encoder and back.backend == "torch" and back.head is not None
    np.testing.assert_allclose(back.fingerprint(w), fp.fingerprint(w), atol=1e-6)
    with pytest.raises(ValueError, match="backend"):
        Fingerprinter.load(tmp_path / "m.pt", backend="onnx")
    with pytest.raises(ValueError, match="CPU only"):
        Fingerprinter.load(tmp_path / "m.pt", backend="numpy", device="cuda")


@functools.lru_cache(maxsize=None)
def _trained_quantizer(precondition: bool, rounds: int = 0) -> tuple[FlowQuantizer, np.ndarray]:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((600, 32)).astype(np.float32) * np.linspace(2, 0.5, 32, dtype=np.float32)
    q = FlowQuantizer(32, K=8, config=QuantizerConfig(steps=30, batch_size=128, precondition=precondition,
                                                      gauss_rounds=rounds, heldout=0.0, verbose=False))
    q.train(x, x + 0.1 * rng.standard_normal(x.shape).astype(np.float32))
    return q, x


def test_shipped_quantizer_numpy_chain_equals_its_torch_modules():
    q = Fingerprinter.load(backend="numpy").quantizer
    assert q.config.precondition and q.flow_active and q._torch is None
    x = Fingerprinter.load(backend="numpy").fingerprint(_wave(3.0))
    z = q.encode(x)  # numpy: preconditioner + RealNVP
    assert q._torch is None
    q._modules()  # build the torch modules from the same arrays: they are the quantizer from now on
    np.testing.assert_allclose(q.encode(x), z, atol=1e-4)


@pytest.mark.parametrize("precondition,rounds", [(False, 0), (True, 0), (True, 1)])
def test_loaded_quantizer_encodes_in_numpy_like_the_trained_one(precondition, rounds):
    q, x = _trained_quantizer(precondition, rounds)
    back = FlowQuantizer.from_bytes(q.to_bytes())
    assert back._torch is None
    np.testing.assert_allclose(back.encode(x), q.encode(x), atol=1e-4)
    assert (back.codes(x) == q.codes(x)).mean() > 0.99
    np.testing.assert_allclose(back.coords(x), q.coords(x), atol=1e-5)
    assert back._torch is None  # encode, codes and coords never built torch modules
    # an untouched loaded quantizer writes the arrays it was read from
    a, b = back.state_dict(), q.state_dict()
    assert a.keys() == b.keys()
    for k in a:
        np.testing.assert_array_equal(a[k], b[k])


def test_loaded_quantizer_state_that_does_not_fit_is_refused():
    q, _ = _trained_quantizer(False)
    state = q.state_dict()  # a copy: the cached quantizer is not changed
    state["projection.weight"] = state["projection.weight"][:, :4]
    with pytest.raises(ValueError, match="does not fit"):
        FlowQuantizer.from_state(state)
    state = q.state_dict()
    del state["flow.layers.0.perm"]
    with pytest.raises(ValueError, match="does not fit"):
        FlowQuantizer.from_state(state)


@given(seed=st.integers(0, 10_000), n=st.integers(1, 3 * quantizer_numpy.SMALL_ROWS), J=st.integers(2, 40))
def test_piecewise_map_few_rows_equals_the_per_component_search(seed, n, J):
    """Few rows find their knots by one compare with every knot, many by searchsorted per component:
    the same knot, the same float32 expression, so the same bits (inputs beyond the knots included)."""
    rng = np.random.default_rng(seed)
    K = int(rng.integers(1, 17))
    xk = np.sort(rng.standard_normal((K, J)).astype(np.float32) * 2, axis=1)
    xk[:, 1:] = np.maximum(xk[:, 1:], np.nextafter(xk[:, :-1], np.float32(np.inf)))  # strictly increasing
    yk = np.sort(rng.standard_normal((K, J)).astype(np.float32), axis=1)
    x = (rng.standard_normal((n, K)) * 3).astype(np.float32)
    x[0, 0] = xk[0, J // 2]  # exactly on a knot
    per_row = np.concatenate([quantizer_numpy._piecewise_linear(x[i: i + 1], xk, yk) for i in range(n)])
    big = np.concatenate([x, np.zeros((quantizer_numpy.SMALL_ROWS + 1, K), np.float32)])
    per_component = quantizer_numpy._piecewise_linear(big, xk, yk)[:n]  # above SMALL_ROWS: searchsorted
    np.testing.assert_array_equal(per_row, per_component)


def test_shipped_chain_few_rows_through_numba_equal_the_numpy_batch():
    """Once numba is loaded, a loaded quantizer's few-row encodes run the RealNVP in the numba kernel
    (after the numpy preconditioner): the same latents as the numpy batch, to float."""
    from faiss_flowhash.index import planner

    q = Fingerprinter.load(backend="numpy").quantizer
    x = Fingerprinter.load(backend="numpy").fingerprint(_wave(3.0))
    z_batch = q.encode(np.concatenate([x] * 4))[: len(x)]  # > JIT_FLOW_MAX_ROWS rows: numpy
    assert planner.jit_kernels() is not None and q._packed_flow() is not None  # the kernel serves few rows
    z_few = np.concatenate([q.encode(x[i: i + 4]) for i in range(0, len(x), 4)])
    assert q._torch is None
    np.testing.assert_allclose(z_few, z_batch, rtol=1e-4, atol=1e-5)
