"""Resumable training checkpoints (model, optimizer, step, config, RNG state in one torch file), and the
checked reading of versioned torch files that checkpoints and model files share.

``read_torch_dict(..., arrays="numpy")`` reads a ``torch.save`` file without importing torch: the zip
archive's pickle is unpickled with an allow-list as narrow as ``torch.load(weights_only=True)``'s for
plain tensors (dicts, ``OrderedDict``, ``_rebuild_tensor_v2`` over typed storages), each tensor becomes
a numpy array read from its storage record. A file with anything else in it (a legacy non-zip file,
other torch classes) is read with ``torch.load(weights_only=True)`` and its tensors converted, so the
result is the same either way.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

__all__ = [
    "CHECKPOINT_FORMAT",
    "CHECKPOINT_VERSION",
    "save_checkpoint",
    "load_checkpoint",
    "read_torch_dict",
    "read_torch_zip",
    "tensors_to_numpy",
    "check_header",
]

CHECKPOINT_FORMAT = "faiss-flowhash-train-checkpoint"
CHECKPOINT_VERSION = 1


def save_checkpoint(path: str | os.PathLike, *, encoder, head, optimizer, step: int, config, history) -> None:
    """Write a resumable checkpoint atomically (a killed write leaves the previous one intact)."""
    import torch

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


# torch storage class name -> numpy dtype of its elements (the typed storages torch.save records)
_STORAGE_DTYPES = {
    "FloatStorage": np.float32, "DoubleStorage": np.float64, "HalfStorage": np.float16,
    "LongStorage": np.int64, "IntStorage": np.int32, "ShortStorage": np.int16, "CharStorage": np.int8,
    "ByteStorage": np.uint8, "BoolStorage": np.bool_,
}


class _NotPlain(Exception):
    """The file holds something the torch-free reader does not read (torch.load will)."""


def _rebuild_tensor_v2(storage, storage_offset, size, stride, requires_grad=False, backward_hooks=None,
                       metadata=None):
    """numpy counterpart of ``torch._utils._rebuild_tensor_v2``: a contiguous copy of the strided view."""
    size, stride = tuple(int(s) for s in size), tuple(int(s) for s in stride)
    if not size:
        return storage[storage_offset].copy()
    item = storage.itemsize
    view = np.lib.stride_tricks.as_strided(storage[storage_offset:], shape=size,
                                           strides=tuple(s * item for s in stride), writeable=False)
    return np.ascontiguousarray(view)


class _Unpickler(pickle.Unpickler):
    _GLOBALS = {("collections", "OrderedDict"): collections.OrderedDict,
                ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2}

    def __init__(self, data: bytes, read_record, byteorder: str):
        super().__init__(io.BytesIO(data))
        self._read, self._swap, self._storages = read_record, byteorder != "little", {}

    def find_class(self, module, name):
        if (module, name) in self._GLOBALS:
            return self._GLOBALS[(module, name)]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _STORAGE_DTYPES[name]
        raise _NotPlain(f"{module}.{name}")

    def persistent_load(self, pid):
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise _NotPlain(f"persistent id {pid!r}")
        _, dtype, key, _location, numel = pid
        if not isinstance(dtype, type) or not issubclass(dtype, np.generic):
            raise _NotPlain(f"storage type {dtype!r}")
        if key not in self._storages:
            arr = np.frombuffer(self._read(f"data/{key}"), dtype=dtype)
            if len(arr) < numel:
                raise ValueError(f"storage {key}: expected {numel} elements, found {len(arr)}")
            self._storages[key] = arr.byteswap() if self._swap else arr
        return self._storages[key]


def read_torch_zip(src: str | os.PathLike | bytes) -> object:
    """A ``torch.save`` zip file (path or bytes) -> its object with numpy arrays for tensors, without torch.

    Raises ``_NotPlain`` for content outside the allow-list and zipfile / pickle errors for other files."""
    with zipfile.ZipFile(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src) as z:
        names = z.namelist()
        pkl = [n for n in names if n.endswith("/data.pkl") or n == "data.pkl"]
        if len(pkl) != 1:
            raise _NotPlain(f"expected one data.pkl in the archive, found {len(pkl)}")
        prefix = pkl[0][: -len("data.pkl")]
        byteorder = z.read(prefix + "byteorder").decode().strip() if prefix + "byteorder" in names else "little"
        return _Unpickler(z.read(pkl[0]), lambda rec: z.read(prefix + rec), byteorder).load()


def tensors_to_numpy(obj):
    """Every torch tensor in a nest of dicts / lists / tuples -> a numpy array (CPU copy); the rest as is."""
    if hasattr(obj, "detach") and hasattr(obj, "numpy"):
        return obj.detach().cpu().numpy()
    if isinstance(obj, dict):
        return type(obj)((k, tensors_to_numpy(v)) for k, v in obj.items())
    if isinstance(obj, (list, tuple)):
        return type(obj)(tensors_to_numpy(v) for v in obj)
    return obj


def read_torch_dict(src: str | os.PathLike | bytes, *, what: str, source: str, arrays: str = "torch") -> object:
    """Read a ``torch.save`` file (path or bytes) on the CPU; any failure -> ValueError("not a <what>").

    arrays: "torch" (default): ``torch.load(weights_only=True)``, tensors stay tensors. "numpy": tensors
    come back as numpy arrays, read without importing torch when the file holds only plain tensors and
    containers (every model file this package writes), else through torch.load and converted."""
    if arrays not in ("torch", "numpy"):
        raise ValueError(f"arrays: expected 'torch' or 'numpy', got {arrays!r}")
    if arrays == "numpy":
        try:
            return read_torch_zip(src)
        except _NotPlain:
            pass  # torch.load reads it (and refuses what weights_only refuses)
        except Exception as e:  # noqa: BLE001 - not a zip / truncated / foreign pickle: "not our file"
            if zipfile.is_zipfile(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src):
                raise ValueError(f"{source}: not a {what} ({e.__class__.__name__}: {e})") from e
            # a legacy (pre-zip) torch file, or no torch file at all: torch.load decides
    import torch

    try:
        state = torch.load(io.BytesIO(src) if isinstance(src, (bytes, bytearray)) else src,
                           map_location="cpu", weights_only=True)
    except Exception as e:  # noqa: BLE001 - any unpickling failure means "not our file"
        raise ValueError(f"{source}: not a {what} ({e.__class__.__name__}: {e})") from e
    return tensors_to_numpy(state) if arrays == "numpy" else state


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
