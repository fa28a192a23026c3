"""The Fingerprinter: a trained encoder (+ its flow quantizer) behind one object the database uses.

``fingerprint(wave)`` cuts a 16 kHz signal into 1 s windows every ``hop_s`` (100 ms), computes
log-Mel (64 x 100) per window and encodes each window to an L2-normalised fingerprint (d = 128).

Model file: one ``torch.save`` dict, loadable with ``weights_only=True``::

    {"format": "faiss-flowhash-fingerprinter", "version": 1,
     "encoder_config": dict, "encoder": state_dict,
     "head": state_dict | None, "head_config": {"d", "K", "hidden"} | None,
     "quantizer": uint8 tensor (FlowQuantizer.to_bytes()) | None,
     "frontend": dict (log-Mel settings), "meta": dict (provenance, free-form)}

Two inference backends compute the same fingerprints (to float32 rounding, ``tests/test_encoder_numpy.py``):
"torch" (the ``TransformerEncoder`` module; training, GPUs) and "numpy" (:mod:`.encoder_numpy` over the
same weights, and the numpy log-Mel). A model file is read without torch (:func:`.checkpoint.read_torch_dict`
with ``arrays="numpy"``) and, on the CPU, runs on numpy unless torch is already loaded in the process,
so ``flowhash query`` never pays the torch import. The ``encoder`` / ``head`` attributes build the torch
modules on first access; from then on the module is the model (training may change it) and
fingerprints come from torch.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import sys
from pathlib import Path

import numpy as np

from . import encoder_numpy
from .checkpoint import check_header, read_torch_dict, tensors_to_numpy
from .features import FRONTEND, pad_signal, signal_features, signal_features_numpy
from .melspec import frame_windows, num_windows

__all__ = ["Fingerprinter", "MODEL_FORMAT", "MODEL_VERSION", "DEFAULT_MODEL_PATH", "BACKENDS"]

MODEL_FORMAT = "faiss-flowhash-fingerprinter"
MODEL_VERSION = 1
DEFAULT_MODEL_PATH = Path(__file__).resolve().parent.parent / "models" / "default.pt"
BACKENDS = ("auto", "numpy", "torch")
_WHAT = "faiss-flowhash fingerprinter model"


def _raw(a) -> bytes:
    """The bytes of a tensor or array (C order), as the model id hashes them."""
    if hasattr(a, "detach"):
        a = a.detach().cpu().contiguous().numpy()
    return np.ascontiguousarray(a).tobytes()


def _model_id(config: dict, state: dict, head: dict | None, quantizer: bytes | None, frontend: dict) -> str:
    """sha256 over config, front end and every weight (sorted keys, raw bytes): 16 hex chars."""
    h = hashlib.sha256()
    h.update(json.dumps({"format": MODEL_FORMAT, "config": config, "frontend": frontend}, sort_keys=True).encode())
    for part in (state, head or {}):
        for k in sorted(part):
            h.update(k.encode())
            h.update(_raw(part[k]))
    h.update(quantizer or b"")
    return h.hexdigest()[:16]


def _resolve_backend(backend: str, device) -> str:
    if backend not in BACKENDS:
        raise ValueError(f"backend: expected one of {BACKENDS}, got {backend!r}")
    cpu = str(device) == "cpu"
    if backend == "numpy" and not cpu:
        raise ValueError(f"backend='numpy' runs on the CPU only, got device={str(device)!r}")
    if backend == "auto":
        return "numpy" if cpu and "torch" not in sys.modules else "torch"
    return backend


def _head_shapes(hc: dict) -> dict:
    return {"net.0.weight": (hc["hidden"], hc["d"]), "net.0.bias": (hc["hidden"],),
            "net.2.weight": (hc["K"], hc["hidden"]), "net.2.bias": (hc["K"],)}


class Fingerprinter:
    """Audio (T,) float32 at 16 kHz -> fingerprints (n, d) float32, one per 1 s window every ``hop_s``.

    A window's features are its frames of the whole signal's log-Mel (see ``features``), so its edge
    frames see the neighbouring audio; fingerprinting a 1 s clip on its own and as part of a track
    differ only in those 3 + 3 edge frames.

    Args:
        encoder: a TransformerEncoder (torch; the fingerprints come from it). ``load`` / ``from_state``
            build a Fingerprinter from a model file's weights instead, torch-free on the CPU.
        head, quantizer, hop_s (0.1), device ("cpu"), meta: as the attributes below.

    Attributes: ``sample_rate`` (16000), ``window_s`` (1.0), ``hop_s`` (0.1), ``dim`` (d),
    ``model_id`` (stable hash of config + weights), ``quantizer`` (FlowQuantizer or None),
    ``encoder`` (TransformerEncoder, eval mode; built from the weights at first access), ``head``,
    ``backend`` ("numpy" or "torch": what ``fingerprint`` runs on), ``device``, ``meta`` (provenance dict).
    """

    sample_rate = 16000
    window_s = 1.0

    def __init__(
        self,
        encoder,
        *,
        head=None,
        quantizer=None,
        hop_s: float = 0.1,
        device="cpu",
        meta: dict | None = None,
        _quantizer_bytes: bytes | None = None,
    ):
        from .encoder import ProjectionHead, TransformerEncoder

        if not isinstance(encoder, TransformerEncoder):
            raise TypeError(f"encoder: expected a TransformerEncoder, got {type(encoder).__name__}")
        if head is not None and not isinstance(head, ProjectionHead):
            raise TypeError(f"head: expected a ProjectionHead or None, got {type(head).__name__}")
        self._setup(config=encoder.config.to_dict(), weights=None, head_config=None, head_weights=None,
                    quantizer=quantizer, quantizer_bytes=_quantizer_bytes, hop_s=hop_s, device=device, meta=meta)
        self._encoder, self._head = encoder.eval(), head.eval() if head is not None else None
        self.to(device)
        self.model_id = _model_id(
            self._config, encoder.state_dict(), head.state_dict() if head is not None else None, self._qbytes, FRONTEND,
        )

    def _setup(self, *, config, weights, head_config, head_weights, quantizer, quantizer_bytes, hop_s, device, meta):
        if not 0 < hop_s <= self.window_s:
            raise ValueError(f"hop_s: expected seconds in (0, {self.window_s}], got {hop_s}")
        self._config, self._weights, self._params = config, weights, None
        self._head_config, self._head_weights = head_config, head_weights
        self._encoder = self._head = None
        self._device = str(device)
        self.quantizer = quantizer
        self.hop_s = float(hop_s)
        self.meta = json.loads(json.dumps(meta or {}, default=str))  # plain types: the file stays weights_only-loadable
        self.dim = int(config["out_dim"])
        # The bytes the quantizer was loaded from, when it was: its id must not depend on re-serialising.
        if quantizer is None:
            self._qbytes = None
        else:
            self._qbytes = quantizer_bytes if quantizer_bytes is not None else quantizer.to_bytes()

    @classmethod
    def _from_weights(cls, *, config, weights, head_config, head_weights, quantizer, quantizer_bytes, hop_s, meta):
        """A numpy-backed Fingerprinter over checked weights (numpy arrays); torch is not imported."""
        fp = cls.__new__(cls)
        fp._setup(config=config, weights=weights, head_config=head_config, head_weights=head_weights,
                  quantizer=quantizer, quantizer_bytes=quantizer_bytes, hop_s=hop_s, device="cpu", meta=meta)
        fp.model_id = _model_id(config, weights, head_weights, fp._qbytes, FRONTEND)
        return fp

    def __repr__(self) -> str:
        return (f"Fingerprinter(model_id={self.model_id!r}, dim={self.dim}, hop_s={self.hop_s}, "
                f"device={self._device!r}, backend={self.backend!r})")

    # ------------------------------------------------------------------ backends

    @property
    def backend(self) -> str:
        """"torch" once the encoder module exists (given, or built by accessing ``encoder``), else "numpy"."""
        return "numpy" if self._encoder is None else "torch"

    @property
    def device(self):
        """Where fingerprints are computed: a ``torch.device`` on the torch backend, "cpu" on numpy."""
        if self._encoder is None:
            return "cpu"
        import torch

        return torch.device(self._device)

    @property
    def encoder(self):
        """The TransformerEncoder (eval mode); built from the weights (importing torch) at first access."""
        if self._encoder is None:
            import torch

            from .encoder import EncoderConfig, TransformerEncoder

            enc = TransformerEncoder(EncoderConfig.from_dict(self._config))
            enc.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self._weights.items()})
            self._encoder = enc.to(self._device).eval()
            self._params = None
        return self._encoder

    @property
    def head(self):
        """The ProjectionHead or None; built from the weights (importing torch) at first access."""
        if self._head is None and self._head_weights is not None:
            import torch

            from .encoder import ProjectionHead

            hc = self._head_config
            head = ProjectionHead(hc["d"], hc["K"], hidden=hc["hidden"])
            head.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in self._head_weights.items()})
            self._head = head.to(self._device).eval()
        return self._head

    # ------------------------------------------------------------------ fingerprints

    def num_windows(self, n_samples: int, *, hop_s: float | None = None) -> int:
        """Rows ``fingerprint`` returns for n_samples: 0 if shorter than 1 s else 1 + (T - 16000) // hop."""
        return num_windows(n_samples, sample_rate=self.sample_rate, window_s=self.window_s, hop_s=hop_s or self.hop_s)

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
        if self._encoder is None:
            if self._params is None:
                self._params = encoder_numpy.prepare(self._config, self._weights)
            for lo in range(0, n, batch_size):
                b = min(batch_size, n - lo)
                out[lo : lo + b] = encoder_numpy.encode(self._params, signal_features_numpy(padded, lo, b, hop))
            return out
        import torch

        with torch.inference_mode():
            for lo in range(0, n, batch_size):
                b = min(batch_size, n - lo)
                mel = signal_features(padded, lo, b, hop, device=self._device)  # (b, 64, 100)
                out[lo : lo + b] = self._encoder(mel).float().cpu().numpy()
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

    def to(self, device) -> "Fingerprinter":
        """Move the encoder (and head) to ``device``; returns self. A numpy-backed model stays on numpy
        for "cpu"; any other device builds the torch modules there."""
        self._device = str(device)
        if self._encoder is None and self._device == "cpu":
            return self
        self.encoder.to(self._device)
        if self.head is not None:
            self.head.to(self._device)
        return self

    def fingerprint_file(self, path: str | os.PathLike, *, hop_s: float | None = None) -> tuple[np.ndarray, float]:
        """Decode ``path`` (any format io.load_audio reads) and fingerprint it: (emb (n, d), duration in s)."""
        from .io import load_audio

        wave = load_audio(path, sample_rate=self.sample_rate)
        return self.fingerprint(wave, hop_s=hop_s), len(wave) / self.sample_rate

    # ------------------------------------------------------------------ persistence

    def state(self, *, meta: dict | None = None) -> dict:
        """The model file's dict (see the module docstring; torch tensors, so torch is imported)."""
        import torch

        def tensors(module, arrays):
            if module is not None:
                return {k: v.detach().cpu() for k, v in module.state_dict().items()}
            return {k: torch.from_numpy(np.array(v)) for k, v in arrays.items()} if arrays is not None else None

        head = self._head if self._head is not None else None
        if head is not None:
            head_config = {"d": head.d, "K": head.K, "hidden": head.hidden}
        else:
            head_config = dict(self._head_config) if self._head_weights is not None else None
        q = self._qbytes
        return {
            "format": MODEL_FORMAT,
            "version": MODEL_VERSION,
            "encoder_config": dict(self._config),
            "encoder": tensors(self._encoder, self._weights),
            "head": tensors(head, self._head_weights),
            "head_config": head_config,
            "quantizer": torch.frombuffer(bytearray(q), dtype=torch.uint8) if q is not None else None,
            "frontend": dict(FRONTEND),
            "meta": self.meta if meta is None else json.loads(json.dumps(meta, default=str)),
            "model_id": self.model_id,
        }

    def save(self, path: str | os.PathLike) -> None:
        """Write the model file (atomically: a temporary file, then rename)."""
        import torch

        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        torch.save(self.state(), tmp)
        os.replace(tmp, path)

    def to_bytes(self) -> bytes:
        import torch

        buf = io.BytesIO()
        torch.save(self.state(), buf)
        return buf.getvalue()

    @classmethod
    def load(cls, path: str | os.PathLike | None = None, *, device="cpu", hop_s: float = 0.1,
             backend: str = "auto") -> "Fingerprinter":
        """Load a model file; ``path=None`` loads the shipped default (faiss_flowhash/models/default.pt).

        backend: "auto" (default: numpy on the CPU unless torch is already imported, else torch),
        "numpy" (CPU only) or "torch". The file is read without torch either way.
        FileNotFoundError for a missing file; ValueError for a file that is not a fingerprinter model,
        has another format version, or whose weights do not match its config.
        """
        path = DEFAULT_MODEL_PATH if path is None else Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file")
        state = read_torch_dict(path, what=_WHAT, source=str(path), arrays="numpy")
        return cls.from_state(state, device=device, hop_s=hop_s, source=str(path), backend=backend)

    @classmethod
    def from_bytes(cls, data: bytes, *, device="cpu", hop_s: float = 0.1, backend: str = "auto") -> "Fingerprinter":
        """Inverse of ``to_bytes``; ValueError like ``load``."""
        state = read_torch_dict(data, what=_WHAT, source="bytes", arrays="numpy")
        return cls.from_state(state, device=device, hop_s=hop_s, source="bytes", backend=backend)

    @classmethod
    def from_state(cls, state, *, device="cpu", hop_s: float = 0.1, source: str = "state",
                   backend: str = "auto") -> "Fingerprinter":
        """Build from a model file's dict (``state()``, tensors or numpy arrays); ValueError like ``load``."""
        backend = _resolve_backend(backend, device)
        check_header(state, fmt=MODEL_FORMAT, version=MODEL_VERSION, version_label="model file version", source=source)
        if state.get("frontend") != FRONTEND:
            raise ValueError(f"{source}: expected front end {FRONTEND}, got {state.get('frontend')}")
        state = tensors_to_numpy(state)
        try:
            config = state["encoder_config"]
            if isinstance(config, dict) and set(config) != set(encoder_numpy.CONFIG_KEYS):
                from .encoder import EncoderConfig  # an older file's partial config: fill in the defaults

                config = EncoderConfig.from_dict(config).to_dict()
            encoder_numpy.check_weights(config, state["encoder"])
            weights = {k: np.asarray(v) for k, v in state["encoder"].items()}
            head_config = head_weights = None
            if state.get("head") is not None:
                hc = state["head_config"]
                head_config = {"d": int(hc["d"]), "K": int(hc["K"]), "hidden": int(hc["hidden"])}
                want = _head_shapes(head_config)
                got = {k: tuple(np.shape(v)) for k, v in state["head"].items()}
                if got != want:
                    raise ValueError(f"head weights: expected {want}, got {got}")
                head_weights = {k: np.asarray(v) for k, v in state["head"].items()}
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"{source}: weights do not match the stored config ({e})") from e
        quantizer, qbytes = None, None
        if state.get("quantizer") is not None:
            from ..index.quantizer import FlowQuantizer

            qbytes = np.asarray(state["quantizer"], np.uint8).tobytes()
            quantizer = FlowQuantizer.from_bytes(qbytes)
        fp = cls._from_weights(config=config, weights=weights, head_config=head_config, head_weights=head_weights,
                               quantizer=quantizer, quantizer_bytes=qbytes, hop_s=hop_s, meta=state.get("meta"))
        if state.get("model_id", fp.model_id) != fp.model_id:
            raise ValueError(f"{source}: stored model_id {state['model_id']} does not match the weights "
                             f"({fp.model_id}): the file was altered or is corrupt")
        if backend == "torch":
            fp.to(device)
            fp.encoder  # noqa: B018 - build the module: fingerprints come from torch from now on
        return fp
