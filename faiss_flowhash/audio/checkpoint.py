"""Resumable training checkpoints (model, optimizer, step, config, RNG state in one torch file), and the
checked reading of versioned torch files that checkpoints and model files share."""

from __future__ import annotations

import io
import os
from pathlib import Path

import torch

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "save_checkpoint",
    "load_checkpoint",
    "read_torch_dict",
    "check_header",
]

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


def read_torch_dict(src: str | os.PathLike | bytes, *, what: str, source: str) -> object:
    """``torch.load(weights_only=True)`` of a path or bytes on the CPU; any failure -> ValueError("not a <what>")."""
    try:
        return torch.load(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src,
                          map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not our file"
        raise ValueError(f"{source}: not a {what} ({e.__class__.__name__}: {e})") from e


def check_header(state, *, fmt: str, version: int, version_label: str, source: str) -> dict:
    """Return ``state`` if it is a dict with ``format == fmt`` and ``version == version``, else ValueError."""
    if not isinstance(state, dict) or state.get("format") != fmt:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{source}: expected format {fmt!r}, got {found!r}")
    if state.get("version") != version:
        raise ValueError(f"{source}: expected {version_label} {version}, got {state.get('version')!r}")
    return state


def load_checkpoint(path: str | os.PathLike) -> dict:
    """Read a checkpoint written by ``save_checkpoint``; ValueError if it is not one (or another version)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such checkpoint")
    state = read_torch_dict(path, what="training checkpoint", source=str(path))
    return check_header(state, fmt=CHECKPOINT_FORMAT, version=CHECKPOINT_VERSION,
                        version_label="checkpoint version", source=str(path))
