"""bfloat16, the 16-bit codec of the list centroids: the upper half of a float32, round to nearest even.

The list centroids only *rank* lists (:mod:`.planner`, :func:`.partition.nearest_in_groups`), so they are
kept in half the bytes of float32: 8 significant bits (7 stored; relative error <= 2^-8 per
coordinate) and float32's full exponent range, so no data needs rescaling (float16 would overflow above 65,504 and flush
small values). Decoding is exact and costs a shift, which the numba planner does in registers
(:func:`._jit.bf16_l2`): on real fingerprints it ranks 1,500 lists per query a little *faster* than
float32 rows do (half the bytes read), at the same R@1 (bench/results/fingerprints.md).

Pure functions on numpy arrays: ``uint16`` bit patterns in, ``float32`` out, and back.
"""

import numpy as np

__all__ = ["to_bf16", "from_bf16", "round_bf16"]


def to_bf16(x) -> np.ndarray:
    """float32 (any shape) -> uint16 bfloat16 bit patterns, rounded to nearest, ties to even
    (NaN stays NaN, inf stays inf, a finite value above the largest bfloat16 becomes that largest value).
    Values that are already bfloat16 come back unchanged."""
    x = np.ascontiguousarray(x, np.float32)
    b = x.view(np.uint32)
    r = ((b + np.uint32(0x7FFF) + ((b >> np.uint32(16)) & np.uint32(1))) >> np.uint32(16)).astype(np.uint16)
    bad = ~np.isfinite(x) | (np.abs(x) > 3.38e38)
    if bad.any():  # NaN payloads and the top of the range must not round into inf / another NaN
        sign = (b[bad] >> np.uint32(16)) & np.uint32(0x8000)
        v = x[bad]
        r[bad] = np.where(np.isnan(v), 0x7FC0, np.where(np.isinf(v), sign | 0x7F80, sign | 0x7F7F)).astype(np.uint16)
    return r


def from_bf16(h) -> np.ndarray:
    """uint16 bfloat16 bit patterns (any shape) -> float32, exactly."""
    h = np.asarray(h, np.uint16)
    return (h.astype(np.uint32) << np.uint32(16)).view(np.float32)


def round_bf16(x) -> np.ndarray:
    """float32 values rounded to the nearest bfloat16 (as float32): what a stored centroid holds."""
    return from_bf16(to_bf16(x))
