import numpy as np
import pytest
import torch

import faiss_flowhash as ffh
from faiss_flowhash.index.projection import contrast_directions, decorrelation_penalty, triplet_loss


def _mixture(n, d=12, seed=0):
    rng = np.random.default_rng(seed)
    centers = 3 * rng.standard_normal((8, d))
    return (centers[rng.integers(0, 8, n)] + rng.standard_normal((n, d))).astype(np.float32)


def test_training_without_positives_uses_neighbour_pairs(capsys):
    x = _mixture(6000)
    q = ffh.FlowQuantizer(12, 6, config=ffh.QuantizerConfig(steps=80, batch_size=512, log_every=40))
    report = q.train(x)
    out = capsys.readouterr()
    assert "no positives" in out.out + out.err and "held-out pairs" in out.out + out.err
    assert report.projection == "pca" and not report.used_positives and report.bce is not None
    assert len(report.history) == 2 and report.history[-1]["step"] == 80
    assert report.kept in ("start", "trained") and report.heldout_start is not None
    assert report.balance["buckets_used"] >= 40, report.balance  # 6000 vectors in 64 buckets


def test_untrained_start_is_sign_of_centred_pca():
    """steps=0: the chain is the identity start, so codes are the signs of the raw PCA coordinates."""
    from faiss_flowhash.index.codes import pack_codes
    from faiss_flowhash.index.projection import pca_basis

    x = _mixture(3000, seed=5)
    q = ffh.FlowQuantizer(12, 5, config=ffh.QuantizerConfig(steps=0, verbose=False))
    report = q.train(x)
    assert report.kept == "start" and not q.flow_active
    w, _ = pca_basis(x, 5)
    np.testing.assert_array_equal(q.codes(x), pack_codes((x - x.mean(0)) @ w))
    np.testing.assert_allclose(q.encode(x) * q.flow.scale.numpy(), (x - x.mean(0)) @ w, rtol=1e-4, atol=1e-4)


def test_trained_flow_never_loses_to_its_start():
    """The flow is kept only if it beats the identity start on held-out pairs (fixed seed)."""
    from faiss_flowhash.index.quantizer_training import flip_rank_score

    x = _mixture(5000, seed=6)
    xp = x + 0.3 * np.random.default_rng(7).standard_normal(x.shape).astype(np.float32)
    q = ffh.FlowQuantizer(12, 6, config=ffh.QuantizerConfig(steps=60, batch_size=256, verbose=False))
    r = q.train(x, xp)
    assert r.used_positives and r.bce is not None and r.heldout_trained is not None
    if r.kept == "trained":
        assert q.flow_active and r.heldout_trained > r.heldout_start
    else:
        assert not q.flow_active and r.heldout_trained <= r.heldout_start
    # the quantizer in use scores at least the start on pairs it was trained on too (not worse)
    start = ffh.FlowQuantizer(12, 6, config=ffh.QuantizerConfig(steps=0, verbose=False))
    start.train(x, xp)
    assert flip_rank_score(q.encode(xp), q.encode(x)) >= flip_rank_score(start.encode(xp), start.encode(x)) - 0.01


def _scan_in_flip_order(z_query, z_target, z_data, budget, probe_bits):
    """Reference for flip_budget_score: walk each query's probes (codes.probe_codes, the index's flip
    order), count the vectors of every probed bucket, stop at ``budget``; the target is found with
    probability (budget - scanned before its bucket) / its bucket's size."""
    from faiss_flowhash.index.codes import pack_codes, probe_codes

    keys, counts = np.unique(pack_codes(z_data), return_counts=True)
    size_of = dict(zip(keys.tolist(), counts.tolist()))
    qidx, codes, _ = probe_codes(z_query, radius=float("inf"), max_bits=probe_bits)
    target = pack_codes(z_target)
    found = []
    for i in range(len(z_query)):
        scanned, p = 0, 0.0
        for c in codes[qidx == i].tolist():
            size = size_of.get(c, 0)
            if c == int(target[i]):
                p = min(1.0, max(0.0, (budget - scanned) / max(size, 1)))
                break
            scanned += size
        found.append(p)
    return float(np.mean(found))


def test_flip_budget_score_is_the_flip_scan_under_a_budget():
    """The gate of flip probing equals an explicit scan of the buckets in the index's probe order."""
    from faiss_flowhash.index.quantizer_training import flip_budget_score

    rng = np.random.default_rng(3)
    z_data = rng.standard_normal((3000, 8)).astype(np.float32) * np.linspace(0.3, 2, 8)
    z_target = z_data[:200]
    z_query = z_target + 0.4 * rng.standard_normal(z_target.shape).astype(np.float32)
    for frac in (0.002, 0.01, 0.05):
        got = flip_budget_score(z_query, z_target, z_data, probe_bits=6, fractions=(frac,))
        want = _scan_in_flip_order(z_query, z_target, z_data, frac * len(z_data), probe_bits=6)
        assert got == pytest.approx(want, abs=1e-9), frac


def test_flip_probing_index_gates_its_flow_on_candidates():
    """probe='flip' (the paper's mode) pays for every vector of a probed bucket: its own quantizer is
    gated on candidates scanned; the default (centroid) probing keeps the probe-count gate; a config
    the user passes is used as given."""
    assert ffh.FlowHashIndex(12, K=6, probe="flip").quantizer.config.gate == "candidates"
    assert ffh.FlowHashIndex(12, K=6).quantizer.config.gate == "probes"
    cfg = ffh.QuantizerConfig(gate="probes")
    assert ffh.FlowHashIndex(12, K=6, probe="flip", config=cfg).quantizer.config.gate == "probes"
    x = _mixture(4000, seed=8)
    xp = x + 0.3 * np.random.default_rng(9).standard_normal(x.shape).astype(np.float32)
    q = ffh.FlowQuantizer(12, 6, config=ffh.QuantizerConfig(steps=40, batch_size=256, gate="candidates",
                                                             verbose=False))
    r = q.train(x, xp)
    assert r.heldout_start is not None and 0 <= r.heldout_start <= 1
    assert (r.kept == "trained") == (r.heldout_trained is not None and r.heldout_trained > r.heldout_start)


def test_identical_rows_do_not_train_into_nan(capsys):
    q = ffh.FlowQuantizer(8, 4, config=ffh.QuantizerConfig(steps=20, batch_size=64))
    r = q.train(np.ones((500, 8), np.float32))
    assert "identical" in capsys.readouterr().out
    assert r.kept == "start" and np.isfinite(q.encode(np.ones((3, 8), np.float32))).all()


def test_training_is_seeded():
    x = _mixture(2000, seed=3)
    cfg = ffh.QuantizerConfig(steps=20, batch_size=256, verbose=False, seed=7)
    a, b = ffh.FlowQuantizer(12, 4, config=cfg), ffh.FlowQuantizer(12, 4, config=cfg)
    a.train(x)
    b.train(x)
    np.testing.assert_array_equal(a.encode(x[:50]), b.encode(x[:50]))


def test_preconditioned_mode_trains_and_balances_bits():
    x = _mixture(3000, seed=4)
    q = ffh.FlowQuantizer(12, 4, config=ffh.QuantizerConfig(steps=60, batch_size=512, precondition=True,
                                                            verbose=False))
    q.train(x)
    assert q.report.balance["buckets_used"] >= 14, q.report.balance
    assert q.report.balance["max_over_mean"] < 8, q.report.balance


def test_encode_validates_and_requires_training():
    q = ffh.FlowQuantizer(8, 4, config=ffh.QuantizerConfig(verbose=False))
    with pytest.raises(ffh.NotTrainedError):
        q.encode(np.zeros((2, 8), np.float32))
    with pytest.raises(ValueError, match="at least 2"):
        q.train(np.zeros((1, 8), np.float32))
    with pytest.raises(ValueError, match="K"):
        ffh.FlowQuantizer(8, 9)
    with pytest.raises(ValueError, match="needs positives"):
        ffh.FlowQuantizer(8, 4, config=ffh.QuantizerConfig(projection="triplet")).train(np.ones((5, 8)))


@pytest.mark.parametrize("kw", [dict(steps=-1), dict(batch_size=1), dict(lr=1e-3, lr_min=1e-2),
                                dict(bce_weight=-1), dict(warmup=2), dict(projection="lda"), dict(n_layers=0),
                                dict(heldout=1.0), dict(max_train=1), dict(gate="recall")])
def test_config_validation(kw):
    with pytest.raises(ValueError):
        ffh.QuantizerConfig(**kw)


def test_triplet_loss_matches_the_equation():
    y = torch.tensor([[0.0, 0.0], [4.0, 0.0]])
    yp = torch.tensor([[1.0, 0.0], [4.0, 0.5]])
    # anchor y0: |y0 - y0+| = 1, negatives {y1, y1+} mean (4, .25): distance ~4.008 -> loss 0
    assert triplet_loss(y, yp).item() == 0.0
    yp_far = torch.tensor([[10.0, 0.0], [4.0, 0.5]])
    both = torch.cat([y, yp_far])
    partner = torch.cat([yp_far, y])
    expected = []
    for i in range(4):
        negs = [both[j] for j in range(4) if j != i and j != (i + 2) % 4]
        expected.append(max(0.0, (both[i] - partner[i]).norm().item() - (both[i] - torch.stack(negs).mean(0)).norm().item()))
    assert triplet_loss(y, yp_far).item() == pytest.approx(np.mean(expected), rel=1e-5)


def test_contrast_directions_ignore_the_noisy_axis():
    rng = np.random.default_rng(0)
    x = rng.standard_normal((5000, 3)).astype(np.float32) * [1.0, 1.0, 3.0]
    noise = np.zeros_like(x)
    noise[:, 2] = 3 * rng.standard_normal(5000)  # axis 2 is pure distortion
    w = contrast_directions(x, x + noise, 2)
    assert np.abs(w[2]).max() < 0.05 * np.abs(w[:2]).max()
    assert decorrelation_penalty(torch.as_tensor(x @ w)).item() < 1e-3
