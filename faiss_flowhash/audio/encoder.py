"""Transformer fingerprint encoder F_theta (paper section 3.1, appendix A.3.1) and projection head F_phi.

A 1 s log-Mel window (64 mels x 100 frames) is cut into 10 non-overlapping patches of 64 x 10 along
time, each patch is embedded linearly, a learned positional embedding is added, the sequence goes
through a Transformer encoder, the output tokens are concatenated (keeping their temporal order) and
projected to ``out_dim``, then L2-normalised: a fingerprint ``e`` on the unit sphere S^d.

The projection head maps ``e`` to ``y`` in R^K for the triplet loss (eq. 2).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import torch
import torch.nn as nn
import torch.nn.functional as F

__all__ = ["EncoderConfig", "ENCODER_CONFIGS", "TransformerEncoder", "ProjectionHead", "encoder_config"]


@dataclass(frozen=True)
class EncoderConfig:
    """Encoder shape. Defaults are the paper's (A.3.1); see ``ENCODER_CONFIGS`` for named presets.

    n_mels: mel bins of the input (64). n_frames: frames per window (100 = 1 s at a 10 ms hop).
    patch_frames: frames per patch (10 -> 10 patches). dim: token width (128). layers: Transformer
    layers (8). heads: attention heads (8). ffn: feed-forward hidden size (2048). out_dim: fingerprint
    size d (128). dropout: dropout inside the Transformer during training (0.1).
    """

    n_mels: int = 64
    n_frames: int = 100
    patch_frames: int = 10
    dim: int = 128
    layers: int = 8
    heads: int = 8
    ffn: int = 2048
    out_dim: int = 128
    dropout: float = 0.1

    def __post_init__(self):
        for name in ("n_mels", "n_frames", "patch_frames", "dim", "layers", "heads", "ffn", "out_dim"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"EncoderConfig.{name}: expected a positive int, got {value!r}")
        if self.n_frames % self.patch_frames:
            raise ValueError(
                f"EncoderConfig: expected n_frames divisible by patch_frames, "
                f"got n_frames={self.n_frames}, patch_frames={self.patch_frames}"
            )
        if self.dim % self.heads:
            raise ValueError(f"EncoderConfig: expected dim divisible by heads, got dim={self.dim}, heads={self.heads}")
        if not (isinstance(self.dropout, (int, float)) and 0.0 <= self.dropout < 1.0):
            raise ValueError(f"EncoderConfig.dropout: expected a float in [0, 1), got {self.dropout!r}")

    @property
    def n_patches(self) -> int:
        return self.n_frames // self.patch_frames

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "EncoderConfig":
        if not isinstance(d, dict):
            raise TypeError(f"EncoderConfig.from_dict: expected a dict, got {type(d).__name__}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(d) - names)
        if unknown:
            raise ValueError(f"EncoderConfig.from_dict: unknown keys {unknown}, expected a subset of {sorted(names)}")
        return cls(**d)


ENCODER_CONFIGS: dict[str, EncoderConfig] = {
    # The paper's encoder (A.3.1): for GPUs.
    "paper": EncoderConfig(),
    # Trains on a 2-core CPU in tens of minutes and fingerprints well above 50x real time on 2 cores.
    "small": EncoderConfig(dim=128, layers=3, heads=4, ffn=256, dropout=0.1),
    # For tests only: a few thousand parameters.
    "tiny": EncoderConfig(dim=16, layers=1, heads=2, ffn=32, out_dim=16, dropout=0.0),
}


def encoder_config(config: str | EncoderConfig) -> EncoderConfig:
    """Resolve a preset name (``"paper"``, ``"small"``, ``"tiny"``) or pass an ``EncoderConfig`` through."""
    if isinstance(config, EncoderConfig):
        return config
    if isinstance(config, str):
        if config not in ENCODER_CONFIGS:
            raise ValueError(f"encoder config: expected one of {sorted(ENCODER_CONFIGS)}, got {config!r}")
        return ENCODER_CONFIGS[config]
    raise TypeError(f"encoder config: expected a preset name or EncoderConfig, got {type(config).__name__}")


class TransformerEncoder(nn.Module):
    """Log-Mel window (B, n_mels, n_frames) -> fingerprint (B, out_dim), L2-normalised.

    Each window is standardised (zero mean, unit variance over mels x frames) first, so a gain change,
    which shifts a log-Mel window by a constant, does not move the fingerprint.
    """

    def __init__(self, config: EncoderConfig = EncoderConfig()):
        super().__init__()
        self.config = config
        c = config
        self.patch = nn.Linear(c.n_mels * c.patch_frames, c.dim)
        self.pos = nn.Parameter(torch.randn(1, c.n_patches, c.dim) * 0.02)
        layer = nn.TransformerEncoderLayer(
            d_model=c.dim,
            nhead=c.heads,
            dim_feedforward=c.ffn,
            dropout=c.dropout,
            activation="relu",
            batch_first=True,
        )
        self.transformer = nn.TransformerEncoder(layer, num_layers=c.layers, enable_nested_tensor=False)
        self.out = nn.Linear(c.n_patches * c.dim, c.out_dim)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        c = self.config
        if x.ndim != 3 or x.shape[1:] != (c.n_mels, c.n_frames):
            raise ValueError(f"x: expected shape (B, {c.n_mels}, {c.n_frames}), got {tuple(x.shape)}")
        B = x.shape[0]
        mean = x.mean(dim=(1, 2), keepdim=True)
        std = x.std(dim=(1, 2), keepdim=True)
        x = (x - mean) / (std + 1e-5)  # (B, M, T)
        x = x.reshape(B, c.n_mels, c.n_patches, c.patch_frames)  # (B, M, P, F)
        x = x.permute(0, 2, 1, 3).reshape(B, c.n_patches, c.n_mels * c.patch_frames)  # (B, P, M*F)
        h = self.patch(x) + self.pos  # (B, P, dim)
        h = self.transformer(h)  # (B, P, dim)
        e = self.out(h.reshape(B, c.n_patches * c.dim))  # (B, out_dim)
        return F.normalize(e, dim=-1)


class ProjectionHead(nn.Module):
    """F_phi: fingerprint (B, d) -> projection y (B, K), an MLP with one ReLU hidden layer (512)."""

    def __init__(self, d: int = 128, K: int = 16, *, hidden: int = 512):
        super().__init__()
        for name, value in (("d", d), ("K", K), ("hidden", hidden)):
            if not isinstance(value, int) or value < 1:
                raise ValueError(f"ProjectionHead: expected {name} a positive int, got {value!r}")
        self.d, self.K, self.hidden = d, K, hidden
        self.net = nn.Sequential(nn.Linear(d, hidden), nn.ReLU(), nn.Linear(hidden, K))

    def forward(self, e: torch.Tensor) -> torch.Tensor:
        if e.ndim != 2 or e.shape[1] != self.d:
            raise ValueError(f"e: expected shape (B, {self.d}), got {tuple(e.shape)}")
        return self.net(e)  # (B, K)
