"""RealNVP normalizing flow (paper eq. 4-6): affine coupling layers mapping projections y to latents z.

Direction convention (as in zuko's transforms): ``forward`` maps data y -> latent z (the paper's f^{-1})
and returns log|det dz/dy|; ``inverse`` maps z -> y. The coupling math is in pure functions; the
modules only own parameters.
"""

from collections.abc import Sequence

import torch
from torch import nn

__all__ = ["affine_coupling", "affine_coupling_inverse", "soft_clamp", "CouplingLayer", "RealNVP"]


def soft_clamp(log_scale: torch.Tensor, bound: float) -> torch.Tensor:
    """Smoothly limit log-scales to (-bound, bound) so a single step cannot blow a layer up."""
    return bound * torch.tanh(log_scale / bound)


def affine_coupling(x2: torch.Tensor, shift: torch.Tensor, log_scale: torch.Tensor):
    """y2 = x2 * exp(s) + t (eq. 6). Shapes (n, m); returns (y2 (n, m), log|det| (n,))."""
    return x2 * log_scale.exp() + shift, log_scale.sum(-1)


def affine_coupling_inverse(y2: torch.Tensor, shift: torch.Tensor, log_scale: torch.Tensor):
    """Inverse of :func:`affine_coupling`: x2 = (y2 - t) * exp(-s); returns (x2, log|det| (n,))."""
    return (y2 - shift) * (-log_scale).exp(), -log_scale.sum(-1)


def _mlp(n_in: int, hidden: Sequence[int], n_out: int) -> nn.Sequential:
    layers, width = [], n_in
    for h in hidden:
        layers += [nn.Linear(width, h), nn.ReLU()]
        width = h
    last = nn.Linear(width, n_out)
    nn.init.zeros_(last.weight)  # every coupling starts as the identity
    nn.init.zeros_(last.bias)
    return nn.Sequential(*layers, last)


class CouplingLayer(nn.Module):
    """One affine coupling: a fixed permutation, then the second part is scaled and shifted by an MLP of
    the first part (eq. 5-6).

    Args:
        perm: permutation of range(K), shape (K,).
        hidden: widths of the conditioner MLP's hidden layers (paper: 3 x 64).
        scale_bound: soft bound on the log-scales.
    """

    def __init__(self, perm: torch.Tensor, *, hidden: Sequence[int] = (64, 64, 64), scale_bound: float = 3.0):
        super().__init__()
        K = perm.numel()
        self.register_buffer("perm", perm.clone().long())
        self.register_buffer("inv_perm", torch.argsort(perm).long())
        self.k = K // 2
        self.scale_bound = scale_bound
        self.net = _mlp(self.k, hidden, 2 * (K - self.k))

    def _params(self, x1: torch.Tensor):
        shift, log_scale = self.net(x1).chunk(2, dim=-1)
        return shift, soft_clamp(log_scale, self.scale_bound)

    def forward(self, x: torch.Tensor):
        """x (n, K) -> (y (n, K), log|det dy/dx| (n,))."""
        x = x[:, self.perm]
        x1, x2 = x[:, : self.k], x[:, self.k :]
        y2, log_det = affine_coupling(x2, *self._params(x1))
        return torch.cat([x1, y2], dim=-1)[:, self.inv_perm], log_det

    def inverse(self, y: torch.Tensor):
        """Inverse of :meth:`forward`; returns (x, log|det dx/dy|)."""
        y = y[:, self.perm]
        y1, y2 = y[:, : self.k], y[:, self.k :]
        x2, log_det = affine_coupling_inverse(y2, *self._params(y1))
        return torch.cat([y1, x2], dim=-1)[:, self.inv_perm], log_det


class RealNVP(nn.Module):
    """A stack of affine couplings preceded by a fixed standardisation of the input.

    Args:
        K: dimension of y and z (K >= 2).
        n_layers: coupling layers (paper: 10).
        hidden: conditioner MLP widths (paper: 3 x 64).
        seed: seed of the layers' permutations (parameters use torch's global RNG).
    """

    def __init__(self, K: int, *, n_layers: int = 10, hidden: Sequence[int] = (64, 64, 64), seed: int = 0):
        super().__init__()
        if K < 2:
            raise ValueError(f"K: expected >= 2, got {K}")
        gen = torch.Generator().manual_seed(seed)
        layers = []
        for i in range(n_layers):
            # alternate halves and mix across them with a fresh random permutation every other layer
            perm = torch.randperm(K, generator=gen) if i % 2 == 0 else torch.roll(layers[-1].perm, K // 2)
            layers.append(CouplingLayer(perm, hidden=hidden))
        self.layers = nn.ModuleList(layers)
        self.register_buffer("loc", torch.zeros(K))
        self.register_buffer("scale", torch.ones(K))
        self.K = K

    @torch.no_grad()
    def init_standardization(self, y: torch.Tensor) -> None:
        """Set the input standardisation from data y (n, K): zero mean, unit variance per component."""
        self.loc.copy_(y.mean(0))
        self.scale.copy_(y.std(0).clamp_min(1e-6))

    def forward(self, y: torch.Tensor):
        """y (n, K) -> (z (n, K), log|det dz/dy| (n,))."""
        x = (y - self.loc) / self.scale
        log_det = -self.scale.log().sum().expand(y.shape[0])
        for layer in self.layers:
            x, ld = layer(x)
            log_det = log_det + ld
        return x, log_det

    def inverse(self, z: torch.Tensor):
        """z (n, K) -> (y (n, K), log|det dy/dz| (n,))."""
        log_det = torch.zeros(z.shape[0], dtype=z.dtype, device=z.device)
        for layer in reversed(self.layers):
            z, ld = layer.inverse(z)
            log_det = log_det + ld
        return z * self.scale + self.loc, log_det + self.scale.log().sum()
