"""Resumable training checkpoints: model, optimizer, step, config and RNG state in one torch file."""

from __future__ import annotations

import os
from pathlib import Path

import torch

__all__ = ["CHECKPOINT_FORMAT", "CHECKPOINT_VERSION", "save_checkpoint", "load_checkpoint"]

CHECKPOINT_FORMAT = "faiss-flowhash-train-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, *, encoder, head, optimizer, step: int, config, history) -> None:
    """Write a resumable checkpoint atomically (a killed write leaves the previous one intact)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    state = {
        "format": CHECKPOINT_FORMAT,
        "version": CHECKPOINT_VERSION,
        "step": int(step),
        "config": config.to_dict(),
        "encoder": encoder.state_dict(),
        "head": head.state_dict(),
        "optimizer": optimizer.state_dict(),
        "torch_rng": torch.get_rng_state(),
        "history": [list(map(float, h)) for h in history],
    }
    tmp = path.with_name(path.name + ".tmp")
    torch.save(state, tmp)
    os.replace(tmp, path)


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by ``save_checkpoint``; ValueError if it is not one (or another version)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not our file"
        raise ValueError(f"{path}: not a training checkpoint ({e.__class__.__name__}: {e})") from e
    if not isinstance(state, dict) or state.get("format") != CHECKPOINT_FORMAT:
        raise ValueError(f"{path}: expected format {CHECKPOINT_FORMAT!r}, got {state.get('format') if isinstance(state, dict) else type(state).__name__!r}")
    if state.get("version") != CHECKPOINT_VERSION:
        raise ValueError(f"{path}: expected checkpoint version {CHECKPOINT_VERSION}, got {state.get('version')!r}")
    return state
