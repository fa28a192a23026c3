import numpy as np
import pytest
import torch
from hypothesis import given, strategies as st

from faiss_flowhash.index.flow import RealNVP
from faiss_flowhash.index.gaussianize import Gaussianizer, two_mode_quantile
from faiss_flowhash.index.prior import code_cross_entropy, two_mode_log_prob, sample_two_mode


def _random_flow(K, seed=0, n_layers=4):
    torch.manual_seed(seed)
    flow = RealNVP(K, n_layers=n_layers, hidden=(16, 16), seed=seed).double()
    with torch.no_grad():  # leave the identity start so the test exercises real couplings
        for p in flow.parameters():
            p.add_(0.3 * torch.randn_like(p))
        flow.loc.copy_(torch.randn(K))
        flow.scale.copy_(torch.rand(K) + 0.5)
    return flow


@given(K=st.integers(2, 9), seed=st.integers(0, 1000))
def test_flow_inverse_recovers_input(K, seed):
    flow = _random_flow(K, seed)
    y = torch.randn(32, K, dtype=torch.float64, generator=torch.Generator().manual_seed(seed))
    z, ld = flow(y)
    y2, ld_inv = flow.inverse(z)
    torch.testing.assert_close(y2, y, atol=1e-9, rtol=1e-9)
    torch.testing.assert_close(ld_inv, -ld, atol=1e-9, rtol=1e-9)


@pytest.mark.parametrize("K", [2, 5, 16])
def test_flow_log_det_matches_autograd(K):
    flow = _random_flow(K, seed=K)
    y = torch.randn(4, K, dtype=torch.float64)
    _, ld = flow(y)
    for i in range(len(y)):
        J = torch.autograd.functional.jacobian(lambda v: flow(v[None])[0][0], y[i])
        torch.testing.assert_close(ld[i], torch.linalg.slogdet(J).logabsdet, atol=1e-8, rtol=1e-8)


def test_flow_starts_as_identity_after_standardization():
    flow = RealNVP(6)
    y = torch.randn(100, 6) * 3 + 1
    flow.init_standardization(y)
    z, _ = flow(y)
    torch.testing.assert_close(z.mean(0), torch.zeros(6), atol=1e-5, rtol=0)


def test_flow_rejects_k_below_2():
    with pytest.raises(ValueError, match="K"):
        RealNVP(1)


def test_gaussianizer_inverse_and_log_det():
    torch.manual_seed(0)
    y = torch.randn(4000, 4) @ torch.randn(4, 4) + torch.randn(4000, 1) ** 2
    g = Gaussianizer(4, rounds=2, n_knots=64)
    g.fit(y)
    z, ld = g(y[:50])
    y2, ld2 = g.inverse(z)
    torch.testing.assert_close(y2, y[:50], atol=1e-3, rtol=1e-3)
    torch.testing.assert_close(ld2, -ld, atol=1e-3, rtol=1e-3)
    J = torch.autograd.functional.jacobian(lambda v: g(v[None])[0][0], y[7])
    torch.testing.assert_close(ld[7], torch.linalg.slogdet(J).logabsdet, atol=1e-3, rtol=1e-3)
    # the last layer matches the two-mode prior's marginals: every bit splits the data in half
    zall, _ = g(y)
    assert torch.allclose((zall > 0).float().mean(0), torch.full((4,), 0.5), atol=0.01)


def test_two_mode_log_prob_is_a_normalised_mixture():
    z = torch.linspace(-12, 12, 24001, dtype=torch.float64)[:, None]
    p = two_mode_log_prob(z).exp()
    assert abs(torch.trapezoid(p, z[:, 0]).item() - 1) < 1e-6
    direct = torch.log(0.5 * torch.exp(-0.5 * (z - 2) ** 2) + 0.5 * torch.exp(-0.5 * (z + 2) ** 2)) - 0.5 * np.log(2 * np.pi)
    torch.testing.assert_close(two_mode_log_prob(z), direct[:, 0])


def test_two_mode_quantile_inverts_the_cdf():
    samples = sample_two_mode(200_000, 1, generator=torch.Generator().manual_seed(0)).numpy()[:, 0]
    for p in (0.1, 0.25, 0.5, 0.9):
        assert abs(np.quantile(samples, p) - two_mode_quantile(np.array([p]))[0]) < 0.03


def test_code_cross_entropy_prefers_agreeing_codes():
    z = torch.tensor([[2.0, -2.0]])
    same = code_cross_entropy(z, z.clone())
    flipped = code_cross_entropy(z, -z)
    assert same.item() < 0.05 < 10 * same.item() < flipped.item()
