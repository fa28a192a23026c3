"""The Fingerprinter: a trained encoder (+ its flow quantizer) behind one object the database uses.

``fingerprint(wave)`` cuts a 16 kHz signal into 1 s windows every ``hop_s`` (100 ms), computes
log-Mel (64 x 100) per window and encodes each window to an L2-normalised fingerprint (d = 128).

Model file: one ``torch.save`` dict, loadable with ``weights_only=True``::

    {"format": "faiss-flowhash-fingerprinter", "version": 1,
     "encoder_config": dict, "encoder": state_dict,
     "head": state_dict | None, "head_config": {"d", "K", "hidden"} | None,
     "quantizer": uint8 tensor (FlowQuantizer.to_bytes()) | None,
     "frontend": dict (log-Mel settings), "meta": dict (provenance, free-form)}
"""

from __future__ import annotations

import hashlib
import io
import json
import os
from pathlib import Path

import numpy as np
import torch

from .checkpoint import check_header, read_torch_dict
from .encoder import EncoderConfig, ProjectionHead, TransformerEncoder
from .features import FRONTEND, pad_signal, signal_features
from .melspec import frame_windows, num_windows

__all__ = ["Fingerprinter", "MODEL_FORMAT", "MODEL_VERSION", "DEFAULT_MODEL_PATH"]

MODEL_FORMAT = "faiss-flowhash-fingerprinter"
MODEL_VERSION = 1
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / "models" / "default.pt"
_WHAT = "faiss-flowhash fingerprinter model"


def _model_id(config: dict, state: dict, head: dict | None, quantizer: bytes | None, frontend: dict) -> str:
    """sha256 over config, front end and every weight (sorted keys, raw bytes): 16 hex chars."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": MODEL_FORMAT, "config": config, "frontend": frontend}, sort_keys=True).encode())
    for part in (state, head or {}):
        for k in sorted(part):
            h.update(k.encode())
            h.update(part[k].detach().cpu().contiguous().numpy().tobytes())
    h.update(quantizer or b"")
    return h.hexdigest()[:16]


class Fingerprinter:
    """Audio (T,) float32 at 16 kHz -> fingerprints (n, d) float32, one per 1 s window every ``hop_s``.

    A window's features are its frames of the whole signal's log-Mel (see ``features``), so its edge
    frames see the neighbouring audio; fingerprinting a 1 s clip on its own and as part of a track
    differ only in those 3 + 3 edge frames.

    Attributes: ``sample_rate`` (16000), ``window_s`` (1.0), ``hop_s`` (0.1), ``dim`` (d),
    ``model_id`` (stable hash of config + weights), ``quantizer`` (FlowQuantizer or None),
    ``encoder`` (TransformerEncoder, eval mode), ``device``, ``meta`` (provenance dict).
    """

    sample_rate = 16000
    window_s = 1.0

    def __init__(
        self,
        encoder: TransformerEncoder,
        *,
        head: ProjectionHead | None = None,
        quantizer=None,
        hop_s: float = 0.1,
        device: str | torch.device = "cpu",
        meta: dict | None = None,
        _quantizer_bytes: bytes | None = None,
    ):
        if not isinstance(encoder, TransformerEncoder):
            raise TypeError(f"encoder: expected a TransformerEncoder, got {type(encoder).__name__}")
        if not 0 < hop_s <= self.window_s:
            raise ValueError(f"hop_s: expected seconds in (0, {self.window_s}], got {hop_s}")
        self.device = torch.device(device)
        self.encoder = encoder.to(self.device).eval()
        self.head = head.to(self.device).eval() if head is not None else None
        self.quantizer = quantizer
        self.hop_s = float(hop_s)
        self.meta = json.loads(json.dumps(meta or {}, default=str))  # plain types: the file stays weights_only-loadable
        self.dim = encoder.config.out_dim
        # The bytes the quantizer was loaded from, when it was: its id must not depend on re-serialising.
        if quantizer is None:
            self._qbytes = None
        else:
            self._qbytes = _quantizer_bytes if _quantizer_bytes is not None else quantizer.to_bytes()
        self.model_id = _model_id(
            encoder.config.to_dict(), encoder.state_dict(), head.state_dict() if head is not None else None,
            self._qbytes, FRONTEND,
        )

    def __repr__(self) -> str:
        return f"Fingerprinter(model_id={self.model_id!r}, dim={self.dim}, hop_s={self.hop_s}, device={str(self.device)!r})"

    # ------------------------------------------------------------------ fingerprints

    def num_windows(self, n_samples: int, *, hop_s: float | None = None) -> int:
        """Rows ``fingerprint`` returns for n_samples: 0 if shorter than 1 s else 1 + (T - 16000) // hop."""
        return num_windows(n_samples, sample_rate=self.sample_rate, window_s=self.window_s, hop_s=hop_s or self.hop_s)

    @torch.inference_mode()
    def fingerprint(self, wave: np.ndarray, *, hop_s: float | None = None, batch_size: int = 256) -> np.ndarray:
        """Fingerprints of ``wave`` (T,) at 16 kHz: float32 (n, d), n = 0 if T < 16000 else 1 + (T - 16000) // hop.

        Row i covers seconds [i * hop_s, i * hop_s + 1). ``hop_s`` defaults to ``self.hop_s`` (0.1).
        Any real floating dtype is accepted (computed in float32); integer PCM is refused (TypeError:
        scale it to [-1, 1] first). NaN/inf or a non-1-D array is a ValueError.
        """
        hop_s = self.hop_s if hop_s is None else hop_s
        if not 0 < hop_s:
            raise ValueError(f"hop_s: expected seconds > 0, got {hop_s}")
        if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size: expected a positive int, got {batch_size!r}")
        if not isinstance(wave, np.ndarray):
            raise TypeError(f"wave: expected a np.ndarray of shape (T,), got {type(wave).__name__}")
        if wave.dtype.kind != "f":
            raise TypeError(f"wave: expected a floating dtype (float32 samples in [-1, 1]), got {wave.dtype}")
        if wave.ndim != 1:
            raise ValueError(f"wave: expected shape (T,) mono at {self.sample_rate} Hz, got {wave.shape}")
        if not np.isfinite(wave).all():
            raise ValueError("wave: expected finite samples, found NaN or inf")
        wave = np.ascontiguousarray(wave, dtype=np.float32)
        hop = int(round(hop_s * self.sample_rate))
        n = self.num_windows(len(wave), hop_s=hop_s)
        out = np.empty((n, self.dim), np.float32)
        if n == 0:
            return out
        padded = pad_signal(wave)
        for lo in range(0, n, batch_size):
            b = min(batch_size, n - lo)
            mel = signal_features(padded, lo, b, hop, device=self.device)  # (b, 64, 100)
            out[lo : lo + b] = self.encoder(mel).float().cpu().numpy()
        return out

    def window_levels(self, wave: np.ndarray, *, hop_s: float | None = None) -> np.ndarray:
        """RMS level in dBFS of each window ``fingerprint`` returns: float32 (n,), row for row.

        Silent windows all get the same fingerprint (their log-Mel is flat); an index may skip rows
        below a floor (e.g. -60 dBFS) so they do not pile up in one bucket.
        """
        hop_s = self.hop_s if hop_s is None else hop_s
        wave = np.asarray(wave, dtype=np.float32)
        if wave.ndim != 1:
            raise ValueError(f"wave: expected shape (T,) mono at {self.sample_rate} Hz, got {wave.shape}")
        windows = frame_windows(wave, sample_rate=self.sample_rate, window_s=self.window_s, hop_s=hop_s)  # (n, 16000)
        power = np.einsum("nt,nt->n", windows, windows, dtype=np.float64) / windows.shape[1]
        return (10 * np.log10(power + 1e-20)).astype(np.float32)

    def to(self, device: str | torch.device) -> "Fingerprinter":
        """Move the encoder (and head) to ``device``; returns self."""
        self.device = torch.device(device)
        self.encoder.to(self.device)
        if self.head is not None:
            self.head.to(self.device)
        return self

    def fingerprint_file(self, path: str | os.PathLike, *, hop_s: float | None = None) -> tuple[np.ndarray, float]:
        """Decode ``path`` (any format io.load_audio reads) and fingerprint it: (emb (n, d), duration in s)."""
        from .io import load_audio

        wave = load_audio(path, sample_rate=self.sample_rate)
        return self.fingerprint(wave, hop_s=hop_s), len(wave) / self.sample_rate

    # ------------------------------------------------------------------ persistence

    def state(self, *, meta: dict | None = None) -> dict:
        """The model file's dict (see the module docstring)."""
        q = self._qbytes
        return {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "encoder_config": self.encoder.config.to_dict(),
            "encoder": {k: v.detach().cpu() for k, v in self.encoder.state_dict().items()},
            "head": {k: v.detach().cpu() for k, v in self.head.state_dict().items()} if self.head is not None else None,
            "head_config": {"d": self.head.d, "K": self.head.K, "hidden": self.head.hidden} if self.head is not None else None,
            "quantizer": torch.frombuffer(bytearray(q), dtype=torch.uint8) if q is not None else None,
            "frontend": dict(FRONTEND),
            "meta": self.meta if meta is None else json.loads(json.dumps(meta, default=str)),
            "model_id": self.model_id,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the model file (atomically: a temporary file, then rename)."""
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)

    def to_bytes(self) -> bytes:
        buf = io.BytesIO()
        torch.save(self.state(), buf)
        return buf.getvalue()

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, device: str | torch.device = "cpu", hop_s: float = 0.1) -> "Fingerprinter":
        """Load a model file; ``path=None`` loads the shipped default (faiss_flowhash/models/default.pt).

        FileNotFoundError for a missing file; ValueError for a file that is not a fingerprinter model,
        has another format version, or whose weights do not match its config.
        """
        path = DEFAULT_MODEL_PATH if path is None else Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file")
        state = read_torch_dict(path, what=_WHAT, source=str(path))
        return cls.from_state(state, device=device, hop_s=hop_s, source=str(path))

    @classmethod
    def from_bytes(cls, data: bytes, *, device: str | torch.device = "cpu", hop_s: float = 0.1) -> "Fingerprinter":
        """Inverse of ``to_bytes``; ValueError like ``load``."""
        state = read_torch_dict(data, what=_WHAT, source="bytes")
        return cls.from_state(state, device=device, hop_s=hop_s, source="bytes")

    @classmethod
    def from_state(cls, state, *, device="cpu", hop_s: float = 0.1, source: str = "state") -> "Fingerprinter":
        """Build from a model file's dict (``state()``); ValueError like ``load``."""
        check_header(state, fmt=MODEL_FORMAT, version=MODEL_VERSION, version_label="model file version", source=source)
        if state.get("frontend") != FRONTEND:
            raise ValueError(f"{source}: expected front end {FRONTEND}, got {state.get('frontend')}")
        try:
            encoder = TransformerEncoder(EncoderConfig.from_dict(state["encoder_config"]))
            encoder.load_state_dict(state["encoder"])
            head = None
            if state.get("head") is not None:
                hc = state["head_config"]
                head = ProjectionHead(hc["d"], hc["K"], hidden=hc["hidden"])
                head.load_state_dict(state["head"])
        except (KeyError, RuntimeError, TypeError) as e:
            raise ValueError(f"{source}: weights do not match the stored config ({e})") from e
        quantizer, qbytes = None, None
        if state.get("quantizer") is not None:
            from ..index import FlowQuantizer

            qbytes = state["quantizer"].numpy().tobytes()
            quantizer = FlowQuantizer.from_bytes(qbytes)
        fp = cls(encoder, head=head, quantizer=quantizer, device=device, hop_s=hop_s, meta=state.get("meta"),
                 _quantizer_bytes=qbytes)
        if state.get("model_id", fp.model_id) != fp.model_id:
            raise ValueError(f"{source}: stored model_id {state['model_id']} does not match the weights "
                             f"({fp.model_id}): the file was altered or is corrupt")
        return fp
