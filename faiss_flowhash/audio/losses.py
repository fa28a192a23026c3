"""Pre-training losses (paper eq. 1-3), pure functions on batches of M positive pairs."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ..index.projection import triplet_loss as _projection_triplet_loss

__all__ = ["contrastive_loss", "triplet_loss", "pretrain_loss"]


def _check_pairs(a: torch.Tensor, b: torch.Tensor, names: tuple[str, str]) -> None:
    if not isinstance(a, torch.Tensor) or not isinstance(b, torch.Tensor):
        raise TypeError(f"{names[0]}, {names[1]}: expected torch tensors, got {type(a).__name__}, {type(b).__name__}")
    if a.ndim != 2 or a.shape != b.shape:
        raise ValueError(
            f"{names[0]}, {names[1]}: expected two (M, d) tensors of the same shape, got {tuple(a.shape)} and {tuple(b.shape)}"
        )
    if a.shape[0] < 2:
        raise ValueError(f"{names[0]}: expected at least M=2 pairs (negatives come from the batch), got M={a.shape[0]}")


def contrastive_loss(e: torch.Tensor, e_pos: torch.Tensor, *, tau: float = 0.1) -> torch.Tensor:
    """NT-Xent (eq. 1) over the 2M samples of M pairs; every other sample of the batch is a negative.

    e, e_pos: (M, d) fingerprints, expected L2-normalised (dot product = cosine similarity).
    tau: temperature (0.1). Returns a scalar: the mean over the 2M anchors. When all 2M embeddings are
    equal it is log(2M - 1).
    """
    _check_pairs(e, e_pos, ("e", "e_pos"))
    if not tau > 0:
        raise ValueError(f"tau: expected > 0, got {tau}")
    M = e.shape[0]
    z = torch.cat([e, e_pos], dim=0)  # (2M, d)
    logits = z @ z.T / tau  # (2M, 2M)
    self_mask = torch.eye(2 * M, dtype=torch.bool, device=z.device)
    logits = logits.masked_fill(self_mask, float("-inf"))  # a sample is not its own negative
    target = torch.cat([torch.arange(M, 2 * M), torch.arange(0, M)]).to(z.device)  # index of each one's positive
    return F.cross_entropy(logits, target)


def triplet_loss(y: torch.Tensor, y_pos: torch.Tensor) -> torch.Tensor:
    """Triplet loss of eq. 2 with the mean of the 2M-2 in-batch negatives, as written in the paper.

    For anchor a with partner p: max(0, ||a - p|| - ||a - mean of the other 2M-2 samples||); both
    members of each pair act as anchor and the loss is the mean over the 2M anchors (no margin: the
    paper's equation has none). y, y_pos: (M, K) projections, M >= 2. Returns a scalar.
    The math is the quantizer's (``projection.triplet_loss``); this adds the input checks.
    """
    _check_pairs(y, y_pos, ("y", "y_pos"))
    return _projection_triplet_loss(y, y_pos)


def pretrain_loss(
    e: torch.Tensor,
    e_pos: torch.Tensor,
    y: torch.Tensor,
    y_pos: torch.Tensor,
    *,
    tau: float = 0.1,
    triplet_weight: float = 1.0,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Eq. 3: contrastive + triplet_weight * triplet (weight 1 in the paper).

    Returns (total, contrastive, triplet), scalars.
    """
    lc = contrastive_loss(e, e_pos, tau=tau)
    lt = triplet_loss(y, y_pos)
    return lc + triplet_weight * lt, lc, lt
