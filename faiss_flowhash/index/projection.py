"""The projection F_phi: R^d -> R^K that feeds the flow (paper section 3.1, eq. 2).

A linear map y = (x - mean) W. Unsupervised it starts from PCA; with positives (x, x+) it starts from
the directions that maximise data variance over distortion variance (a generalized eigenproblem) and
is then refined with the triplet loss of eq. 2 plus a decorrelation penalty that keeps the K outputs
from collapsing onto one direction (the triplet loss alone is blind to that).
"""

import numpy as np
import torch
from torch import nn

__all__ = ["triplet_loss", "decorrelation_penalty", "pca_basis", "pca_directions", "contrast_directions", "Projection"]


def triplet_loss(y: torch.Tensor, y_pos: torch.Tensor) -> torch.Tensor:
    """Eq. 2 over a batch of M pairs: max(0, |y - y+| - |y - mean of the 2M-2 in-batch negatives|).

    Args:
        y, y_pos: projections of M vectors and of their positives, shape (M, K), M >= 2.

    Returns:
        the mean loss over the 2M anchors (both members of each pair act as anchor), scalar.
    """
    M = y.shape[0]
    both = torch.cat([y, y_pos])  # (2M, K)
    total = both.sum(0, keepdim=True)
    partner = torch.cat([y_pos, y])
    neg_mean = (total - both - partner) / (2 * M - 2)  # mean of everything but the anchor and its pair
    d_pos = (both - partner).norm(dim=-1)
    d_neg = (both - neg_mean).norm(dim=-1)
    return torch.relu(d_pos - d_neg).mean()


def decorrelation_penalty(y: torch.Tensor) -> torch.Tensor:
    """Mean squared off-diagonal correlation of the columns of y (n, K): 0 when they are uncorrelated."""
    yc = y - y.mean(0)
    yc = yc / yc.norm(dim=0).clamp_min(1e-8)
    corr = yc.T @ yc
    off = corr - torch.diag(torch.diagonal(corr))
    K = y.shape[1]
    return off.square().sum() / (K * (K - 1))


def _cov(x: np.ndarray) -> np.ndarray:
    xc = x - x.mean(0)
    return (xc.T @ xc) / max(len(x) - 1, 1)


def pca_basis(x: np.ndarray, E: int) -> tuple[np.ndarray, np.ndarray]:
    """Top-E principal directions of x (n, d): orthonormal columns (d, E) float32 (raw scale, not
    whitened) and the standard deviation of x along each (E,), largest first."""
    evals, evecs = np.linalg.eigh(_cov(x.astype(np.float64)))
    order = np.argsort(evals)[::-1][: min(E, x.shape[1])]
    return evecs[:, order].astype(np.float32), np.sqrt(np.maximum(evals[order], 0.0)).astype(np.float32)


def pca_directions(x: np.ndarray, K: int) -> np.ndarray:
    """Top-K principal directions of x (n, d), shape (d, K), scaled so each output has unit variance."""
    evals, evecs = np.linalg.eigh(_cov(x.astype(np.float64)))
    order = np.argsort(evals)[::-1][:K]
    return evecs[:, order] / np.sqrt(np.maximum(evals[order], 1e-12))


def contrast_directions(x: np.ndarray, x_pos: np.ndarray, K: int, *, ridge: float = 1e-3) -> np.ndarray:
    """Directions w maximising Var(w.x) / Var(w.(x - x+)), shape (d, K), unit output variance.

    These keep a vector and its distorted copy close relative to the spread of the data: the best
    linear start for codes that must survive distortion.
    """
    from scipy.linalg import eigh

    cx = _cov(x.astype(np.float64))
    cn = _cov((x - x_pos).astype(np.float64))
    cn += ridge * np.trace(cn) / len(cn) * np.eye(len(cn))
    evals, evecs = eigh(cx, cn)
    order = np.argsort(evals)[::-1][:K]
    w = evecs[:, order]
    return w / np.sqrt(np.maximum(np.einsum("dk,de,ek->k", w, cx, w), 1e-12))


class Projection(nn.Module):
    """y = (x - mean) @ W, x (n, d) -> y (n, K)."""

    def __init__(self, d: int, K: int):
        super().__init__()
        self.register_buffer("mean", torch.zeros(d))
        self.weight = nn.Parameter(torch.zeros(d, K))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) @ self.weight

    @torch.no_grad()
    def set(self, mean: np.ndarray, weight: np.ndarray) -> None:
        self.mean.copy_(torch.as_tensor(mean, dtype=self.mean.dtype))
        self.weight.copy_(torch.as_tensor(weight, dtype=self.weight.dtype))
