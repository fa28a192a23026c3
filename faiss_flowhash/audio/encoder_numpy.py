"""The Transformer fingerprint encoder's forward pass in numpy (inference without torch).

The same arithmetic as :class:`~faiss_flowhash.audio.encoder.TransformerEncoder` in eval mode (post-norm
``nn.TransformerEncoderLayer``: ReLU feed-forward, LayerNorm eps 1e-5, no dropout), in float32, over the
encoder's ``state_dict`` as a dict of numpy arrays. Pure functions: :func:`check_weights` validates a
state against its config, :func:`prepare` lays the weights out for the forward (transposed, contiguous),
:func:`encode` maps log-Mel windows (B, n_mels, n_frames) to L2-normalised fingerprints (B, out_dim).
Agreement with the torch module is tested in ``tests/test_encoder_numpy.py`` (max abs diff < 1e-4).
"""

from __future__ import annotations

import numpy as np

__all__ = ["CONFIG_KEYS", "expected_shapes", "check_config", "check_weights", "prepare", "encode"]

#: The fields of :class:`~faiss_flowhash.audio.encoder.EncoderConfig` (a test keeps them equal).
CONFIG_KEYS = ("n_mels", "n_frames", "patch_frames", "dim", "layers", "heads", "ffn", "out_dim", "dropout")
_LN_EPS = 1e-5


def check_config(config: dict) -> dict:
    """A model file's ``encoder_config`` with every field present and sane; ValueError otherwise."""
    if not isinstance(config, dict):
        raise TypeError(f"encoder config: expected a dict, got {type(config).__name__}")
    if set(config) != set(CONFIG_KEYS):
        raise ValueError(f"encoder config: expected the keys {sorted(CONFIG_KEYS)}, got {sorted(config)}")
    for k in CONFIG_KEYS[:-1]:
        v = config[k]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ValueError(f"encoder config {k}: expected a positive int, got {v!r}")
    if config["n_frames"] % config["patch_frames"] or config["dim"] % config["heads"]:
        raise ValueError(f"encoder config: expected n_frames % patch_frames == 0 and dim % heads == 0, got {config}")
    return config


def expected_shapes(config: dict) -> dict[str, tuple]:
    """state_dict key -> shape of a TransformerEncoder of ``config`` (the keys torch's module has)."""
    c = check_config(config)
    P, D, F = c["n_frames"] // c["patch_frames"], c["dim"], c["ffn"]
    shapes = {"pos": (1, P, D), "patch.weight": (D, c["n_mels"] * c["patch_frames"]), "patch.bias": (D,)}
    for i in range(c["layers"]):
        p = f"transformer.layers.{i}."
        shapes.update({
            p + "self_attn.in_proj_weight": (3 * D, D), p + "self_attn.in_proj_bias": (3 * D,),
            p + "self_attn.out_proj.weight": (D, D), p + "self_attn.out_proj.bias": (D,),
            p + "linear1.weight": (F, D), p + "linear1.bias": (F,),
            p + "linear2.weight": (D, F), p + "linear2.bias": (D,),
            p + "norm1.weight": (D,), p + "norm1.bias": (D,), p + "norm2.weight": (D,), p + "norm2.bias": (D,),
        })
    shapes.update({"out.weight": (c["out_dim"], P * D), "out.bias": (c["out_dim"],)})
    return shapes


def check_weights(config: dict, weights: dict) -> None:
    """ValueError unless ``weights`` has exactly the keys and shapes of an encoder of ``config``."""
    want = expected_shapes(config)
    missing, unexpected = sorted(set(want) - set(weights)), sorted(set(weights) - set(want))
    if missing or unexpected:
        raise ValueError(f"encoder weights: missing keys {missing[:4]}, unexpected keys {unexpected[:4]}")
    for k, shape in want.items():
        if tuple(np.shape(weights[k])) != shape:
            raise ValueError(f"encoder weights {k}: expected shape {shape}, got {tuple(np.shape(weights[k]))}")


def prepare(config: dict, weights: dict) -> dict:
    """Checked weights laid out for :func:`encode`: float32, matrices transposed to (in, out), contiguous."""
    check_weights(config, weights)
    f32 = lambda a: np.ascontiguousarray(np.asarray(a, dtype=np.float32))  # noqa: E731
    p = {"config": dict(config), "pos": f32(weights["pos"])[0], "patch_w": f32(weights["patch.weight"]).T.copy(),
         "patch_b": f32(weights["patch.bias"]), "out_w": f32(weights["out.weight"]).T.copy(),
         "out_b": f32(weights["out.bias"]), "layers": []}
    for i in range(config["layers"]):
        g = lambda k: f32(weights[f"transformer.layers.{i}.{k}"])  # noqa: E731
        p["layers"].append({
            "in_w": g("self_attn.in_proj_weight").T.copy(), "in_b": g("self_attn.in_proj_bias"),
            "attn_out_w": g("self_attn.out_proj.weight").T.copy(), "attn_out_b": g("self_attn.out_proj.bias"),
            "ff1_w": g("linear1.weight").T.copy(), "ff1_b": g("linear1.bias"),
            "ff2_w": g("linear2.weight").T.copy(), "ff2_b": g("linear2.bias"),
            "ln1_w": g("norm1.weight"), "ln1_b": g("norm1.bias"), "ln2_w": g("norm2.weight"), "ln2_b": g("norm2.bias"),
        })
    return p


def _layer_norm(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    mean = x.mean(-1, keepdims=True)
    xc = x - mean
    var = np.square(xc).mean(-1, keepdims=True)  # biased, as torch's LayerNorm
    return xc / np.sqrt(var + np.float32(_LN_EPS)) * w + b


def _attention(h: np.ndarray, L: dict, heads: int, B: int, P: int) -> np.ndarray:
    """Multi-head self-attention of h (B*P, D), torch's nn.MultiheadAttention arithmetic -> (B*P, D)."""
    D = h.shape[1]
    dh = D // heads
    qkv = (h @ L["in_w"] + L["in_b"]).reshape(B, P, 3, heads, dh)  # (B, P, 3, H, dh)
    q = np.ascontiguousarray(qkv[:, :, 0].transpose(0, 2, 1, 3))  # (B, H, P, dh); contiguous: 10x faster matmuls
    k = np.ascontiguousarray(qkv[:, :, 1].transpose(0, 2, 3, 1))  # (B, H, dh, P)
    v = np.ascontiguousarray(qkv[:, :, 2].transpose(0, 2, 1, 3))  # (B, H, P, dh)
    s = (q * np.float32(1.0 / np.sqrt(dh))) @ k  # (B, H, P, P)
    s = np.exp(s - s.max(-1, keepdims=True))
    s /= s.sum(-1, keepdims=True)
    o = (s @ v).transpose(0, 2, 1, 3).reshape(B * P, D)  # (B*P, D)
    return o @ L["attn_out_w"] + L["attn_out_b"]


def encode(params: dict, mel: np.ndarray) -> np.ndarray:
    """Log-Mel windows (B, n_mels, n_frames) -> fingerprints (B, out_dim) float32, L2-normalised.

    ``params`` from :func:`prepare`. Each window is standardised first (mean, unbiased std over mels x
    frames), as the torch module does."""
    c = params["config"]
    M, T, Fp = c["n_mels"], c["n_frames"], c["patch_frames"]
    P = T // Fp
    mel = np.asarray(mel, dtype=np.float32)
    if mel.ndim != 3 or mel.shape[1:] != (M, T):
        raise ValueError(f"mel: expected shape (B, {M}, {T}), got {mel.shape}")
    B = mel.shape[0]
    mean = mel.mean(axis=(1, 2), keepdims=True, dtype=np.float64)
    std = mel.std(axis=(1, 2), keepdims=True, ddof=1, dtype=np.float64)
    x = ((mel - mean) / (std + 1e-5)).astype(np.float32)  # (B, M, T)
    x = x.reshape(B, M, P, Fp).transpose(0, 2, 1, 3).reshape(B, P, M * Fp)  # (B, P, M*F)
    # every linear layer as one 2-D matmul over the B*P tokens (numpy's stacked 3-D matmul is several x slower)
    h = (x.reshape(B * P, M * Fp) @ params["patch_w"]).reshape(B, P, -1) + params["patch_b"] + params["pos"]
    h = h.reshape(B * P, -1)  # (B*P, D)
    for L in params["layers"]:
        h = _layer_norm(h + _attention(h, L, c["heads"], B, P), L["ln1_w"], L["ln1_b"])
        ff = np.maximum(h @ L["ff1_w"] + L["ff1_b"], 0.0) @ L["ff2_w"] + L["ff2_b"]
        h = _layer_norm(h + ff, L["ln2_w"], L["ln2_b"])
    e = h.reshape(B, P * c["dim"]) @ params["out_w"] + params["out_b"]  # (B, out_dim)
    norm = np.sqrt(np.square(e, dtype=np.float32).sum(-1, keepdims=True))
    return (e / np.maximum(norm, np.float32(1e-12))).astype(np.float32)
