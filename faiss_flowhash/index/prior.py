"""The two-mode latent prior of FlowHash (paper eq. 7) and the code-robustness term (eq. 9-10).

Every latent component z_k follows 0.5 N(-mu, 1) + 0.5 N(mu, 1) independently, so the joint prior has
2^K equally weighted modes, one per K-bit sign code. Pure functions on tensors.
"""

import math

import torch
import torch.nn.functional as F

__all__ = ["two_mode_log_prob", "mode_logit", "code_cross_entropy", "sample_two_mode"]

_LOG_NORM = -0.5 * math.log(2 * math.pi)


def two_mode_log_prob(z: torch.Tensor, *, mu: float = 2.0) -> torch.Tensor:
    """Log-density of the two-mode prior, summed over the last dimension.

    Args:
        z: latents, shape (..., K).
        mu: distance of each mode from zero (paper: 2); unit variance.

    Returns:
        log p_Z(z), shape (...).
    """
    # log(0.5 N(z|-mu) + 0.5 N(z|mu)) = log N(z|0) - mu^2/2 + log cosh(mu z)
    a = mu * z
    log_cosh = a.abs() + F.softplus(-2 * a.abs()) - math.log(2.0)
    return (_LOG_NORM - 0.5 * z.square() - 0.5 * mu * mu + log_cosh).sum(-1)


def mode_logit(z: torch.Tensor, *, mu: float = 2.0) -> torch.Tensor:
    """Log-odds that each component belongs to the positive mode: log N(z|mu) - log N(z|-mu) = 2 mu z."""
    return 2.0 * mu * z


def code_cross_entropy(z: torch.Tensor, z_pos: torch.Tensor, *, mu: float = 2.0) -> torch.Tensor:
    """Symmetric cross-entropy between the mode posteriors of z and z_pos (eq. 9-10), summed over K.

    H(u, v) = -[p1(u) log p1(v) + p2(u) log p2(v)] with p the posterior of each mode.

    Args:
        z, z_pos: latents of a vector and of its positive, shape (..., K).

    Returns:
        shape (...).
    """
    lu, lv = mode_logit(z, mu=mu), mode_logit(z_pos, mu=mu)
    h_uv = F.binary_cross_entropy_with_logits(lv, torch.sigmoid(lu), reduction="none")
    h_vu = F.binary_cross_entropy_with_logits(lu, torch.sigmoid(lv), reduction="none")
    return (h_uv + h_vu).sum(-1)


def sample_two_mode(n: int, K: int, *, mu: float = 2.0, generator: torch.Generator | None = None) -> torch.Tensor:
    """Draw n samples (n, K) from the prior."""
    signs = torch.randint(0, 2, (n, K), generator=generator).float() * 2 - 1
    return signs * mu + torch.randn(n, K, generator=generator)
