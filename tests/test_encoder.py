"""Encoder, projection head and pre-training losses (paper eq. 1-3)."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given
from hypothesis import strategies as st

from faiss_flowhash.audio.encoder import (
    ENCODER_CONFIGS,
    EncoderConfig,
    ProjectionHead,
    TransformerEncoder,
    encoder_config,
)
from faiss_flowhash.audio.losses import contrastive_loss, pretrain_loss, triplet_loss


TINY = ENCODER_CONFIGS["tiny"]


def test_presets_valid_and_paper_matches_appendix():
    paper = ENCODER_CONFIGS["paper"]
    assert (paper.dim, paper.layers, paper.heads, paper.ffn, paper.out_dim) == (128, 8, 8, 2048, 128)
    assert paper.n_patches == 10 and paper.n_mels * paper.patch_frames == 640
    assert ENCODER_CONFIGS["small"].out_dim == 128
    assert encoder_config("small") is ENCODER_CONFIGS["small"]


@pytest.mark.parametrize(
    "kwargs", [dict(dim=30, heads=8), dict(n_frames=100, patch_frames=7), dict(layers=0), dict(dropout=1.0)]
)
def test_config_rejects_bad_values(kwargs):
    with pytest.raises(ValueError):
        EncoderConfig(**kwargs)


def test_config_round_trip_and_unknown_preset():
    assert EncoderConfig.from_dict(TINY.to_dict()) == TINY
    with pytest.raises(ValueError, match="expected one of"):
        encoder_config("huge")
    with pytest.raises(ValueError, match="unknown keys"):
        EncoderConfig.from_dict({"width": 3})


@given(B=st.integers(1, 5))
def test_output_shape_and_unit_norm(B):
    torch.manual_seed(0)
    enc = TransformerEncoder(TINY).eval()
    e = enc(torch.randn(B, 64, 100))
    assert e.shape == (B, TINY.out_dim)
    torch.testing.assert_close(e.norm(dim=1), torch.ones(B))


def test_eval_is_deterministic_and_batch_equals_per_item():
    torch.manual_seed(0)
    enc = TransformerEncoder(ENCODER_CONFIGS["small"]).eval()
    x = torch.randn(6, 64, 100)
    with torch.inference_mode():
        a, b = enc(x), enc(x)
        one = torch.cat([enc(x[i : i + 1]) for i in range(6)])
    torch.testing.assert_close(a, b, rtol=0, atol=0)
    torch.testing.assert_close(a, one, rtol=1e-5, atol=1e-5)


def test_gain_invariance():
    """A gain change shifts log-Mel by a constant; the per-window standardisation removes it."""
    torch.manual_seed(0)
    enc = TransformerEncoder(TINY).eval()
    x = torch.randn(3, 64, 100)
    torch.testing.assert_close(enc(x), enc(x + math.log(4.0)), rtol=1e-4, atol=1e-4)


def test_encoder_rejects_wrong_shape():
    enc = TransformerEncoder(TINY)
    with pytest.raises(ValueError, match=r"expected shape \(B, 64, 100\)"):
        enc(torch.randn(2, 64, 99))


def test_projection_head_shape():
    head = ProjectionHead(16, 8, hidden=32)
    assert head(torch.randn(5, 16)).shape == (5, 8)
    with pytest.raises(ValueError):
        head(torch.randn(5, 15))


# ----------------------------------------------------------------------------- losses


@pytest.mark.parametrize("M", [2, 3, 8])
def test_contrastive_all_equal_is_log_2m_minus_1(M):
    e = torch.nn.functional.normalize(torch.ones(M, 4), dim=1)
    assert contrastive_loss(e, e).item() == pytest.approx(math.log(2 * M - 1), rel=1e-6)


def test_contrastive_hand_checked_orthogonal():
    """M=2, e = [u1, u2], e+ = e, all four mutually orthogonal except pairs: closed form."""
    e = torch.eye(4)[:2]
    tau = 0.5
    # each anchor: positive sim 1, two negatives sim 0 -> -log(e^{2} / (e^{2} + 2))
    expected = -math.log(math.exp(1 / tau) / (math.exp(1 / tau) + 2))
    assert contrastive_loss(e, e.clone(), tau=tau).item() == pytest.approx(expected, rel=1e-6)


def test_contrastive_is_symmetric_and_prefers_true_pairs():
    g = torch.Generator().manual_seed(0)
    e = torch.nn.functional.normalize(torch.randn(8, 16, generator=g), dim=1)
    good = contrastive_loss(e, e)
    bad = contrastive_loss(e, e.roll(1, 0))
    assert good < bad
    torch.testing.assert_close(contrastive_loss(e, e.roll(1, 0)), contrastive_loss(e.roll(1, 0), e))


def test_triplet_hand_checked():
    # M=2: y = [(0,0), (4,0)], y+ = [(1,0), (4,0)]
    y = torch.tensor([[0.0, 0.0], [4.0, 0.0]])
    y_pos = torch.tensor([[1.0, 0.0], [4.0, 0.0]])
    # anchor y0: d_pos 1, negatives {y1, y1+} mean (4,0): d_neg 4 -> 0
    # anchor y1: d_pos 0 -> 0; anchor y0+ (1,0): d_pos 1, neg mean (4,0) d 3 -> 0; y1+: 0
    assert triplet_loss(y, y_pos).item() == 0.0
    y_pos = torch.tensor([[5.0, 0.0], [4.0, 0.0]])
    # anchor y0 (0,0): d_pos 5, neg mean (4,0) -> 4: loss 1; anchor y0+ (5,0): d_pos 5, neg (4,0) -> 1: loss 4
    # anchor y1 (4,0): d_pos 0; anchor y1+ (4,0): d_pos 0. mean = (1 + 4) / 4
    assert triplet_loss(y, y_pos).item() == pytest.approx(5 / 4)


def test_pretrain_loss_sums_terms():
    g = torch.Generator().manual_seed(1)
    e = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=1)
    e2 = torch.nn.functional.normalize(torch.randn(4, 8, generator=g), dim=1)
    y, y2 = torch.randn(4, 3, generator=g), torch.randn(4, 3, generator=g)
    total, lc, lt = pretrain_loss(e, e2, y, y2, triplet_weight=2.0)
    torch.testing.assert_close(total, lc + 2.0 * lt)


def test_losses_reject_bad_shapes():
    with pytest.raises(ValueError):
        contrastive_loss(torch.ones(3, 4), torch.ones(3, 5))
    with pytest.raises(ValueError, match="M=2"):
        triplet_loss(torch.ones(1, 4), torch.ones(1, 4))
    with pytest.raises(TypeError):
        contrastive_loss(np.ones((3, 4)), torch.ones(3, 4))
