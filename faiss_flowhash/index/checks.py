"""Input validation shared by the public classes: one place that turns bad input into clear errors."""

import numpy as np

__all__ = ["as_matrix", "as_ids", "check_unique_ids", "check_k"]

_MAX_ID = int(np.iinfo(np.int64).max)


def as_matrix(x, d: int, *, name: str = "x", allow_empty: bool = True) -> np.ndarray:
    """Return x as a C-contiguous float32 array of shape (n, d), or raise.

    Integer arrays are accepted and converted (as faiss's Python layer does); bool, complex, string
    and object arrays are not.

    Raises:
        TypeError: x is not an array of real numbers (object, string, complex, bool arrays).
        ValueError: x is not 2-D, its second dimension is not d, or it holds NaN/inf.
    """
    if hasattr(x, "detach"):  # a torch tensor
        x = x.detach().cpu().numpy()
    arr = np.asarray(x)
    if arr.dtype.kind not in "fiu" or arr.dtype == np.bool_:
        raise TypeError(f"{name}: expected a float (or integer) array, got dtype {arr.dtype}")
    if arr.ndim != 2:
        raise ValueError(f"{name}: expected shape (n, {d}), got {arr.shape} ({arr.ndim}-D)")
    if arr.shape[1] != d:
        raise ValueError(f"{name}: expected shape (n, {d}), got {arr.shape}")
    if not allow_empty and arr.shape[0] == 0:
        raise ValueError(f"{name}: expected at least one row, got shape {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=np.float32)
    if not np.isfinite(arr).all():
        bad = int(np.flatnonzero(~np.isfinite(arr).all(1))[0])
        raise ValueError(f"{name}: row {bad} holds NaN or inf")
    return arr


def as_ids(ids, n: int, *, name: str = "ids") -> np.ndarray:
    """Return ids as an int64 array of shape (n,), or raise on a wrong shape, dtype or negative id."""
    if hasattr(ids, "detach"):
        ids = ids.detach().cpu().numpy()
    arr = np.asarray(ids)
    if arr.size == 0 and n == 0:  # an empty list / array of any dtype: no ids
        return np.zeros(0, np.int64)
    if arr.dtype == object and all(isinstance(v, int) and not isinstance(v, bool) for v in arr.reshape(-1)):
        big = [v for v in arr.reshape(-1) if not 0 <= v <= _MAX_ID]
        if big:
            raise ValueError(f"{name}: ids must be in [0, 2**63), got {big[0]}")
        arr = arr.astype(np.int64)
    if arr.dtype.kind not in "iu":
        raise TypeError(f"{name}: expected an integer array, got dtype {arr.dtype}")
    arr = arr.reshape(-1) if arr.ndim == 0 else arr
    if arr.shape != (n,):
        raise ValueError(f"{name}: expected shape ({n},), got {arr.shape}")
    if arr.dtype == np.uint64 and n and arr.max() > _MAX_ID:
        raise ValueError(f"{name}: ids must be in [0, 2**63), got {int(arr.max())}")
    arr = arr.astype(np.int64)
    if n and arr.min() < 0:
        raise ValueError(f"{name}: ids must be >= 0, got {int(arr.min())}")
    return arr


def check_unique_ids(ids: np.ndarray, *, name: str = "ids") -> None:
    """ValueError naming the first id that occurs twice in one batch."""
    uniq, counts = np.unique(ids, return_counts=True)
    if (counts > 1).any():
        raise ValueError(f"{name}: duplicate id {int(uniq[counts > 1][0])} in the batch")


def check_k(k) -> int:
    """Validate the number of neighbours asked for."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k: expected an int, got {type(k).__name__}")
    if k < 1:
        raise ValueError(f"k: expected >= 1, got {k}")
    return int(k)
