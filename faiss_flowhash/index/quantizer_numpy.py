"""A loaded FlowQuantizer's inference chain in numpy, read straight from its state arrays (no torch).

:meth:`FlowQuantizer.from_state <faiss_flowhash.index.quantizer.FlowQuantizer.from_state>` keeps the
state arrays and builds torch modules only when something needs them (training, another device);
``encode`` of a loaded quantizer on the CPU runs these functions: the preconditioner's marginal maps and
rotations (:mod:`.gaussianize`'s arithmetic) and the RealNVP layers laid out for ``quantizer._flow_numpy``.
Pure functions over the arrays of ``FlowQuantizer.state_dict()`` (keys ``projection.*``, ``flow.*``,
``gauss.*``). Agreement with the torch modules: ``tests/test_encoder_numpy.py``.
"""

from __future__ import annotations

import re

import numpy as np

__all__ = ["SCALE_BOUND", "N_KNOTS", "state_shapes", "check_state", "default_gauss_arrays", "flow_layers",
           "gauss_layers", "gauss_numpy"]

SCALE_BOUND = 3.0  # CouplingLayer's scale_bound default (not stored in the state; a test pins it)
N_KNOTS = 512  # Gaussianizer's n_knots default (the knots' shape is checked against the stored arrays)


def _linear_indices(hidden) -> list[int]:
    return [2 * i for i in range(len(hidden) + 1)]  # nn.Sequential(Linear, ReLU, ..., Linear)


def state_shapes(d: int, K: int, *, n_layers: int, hidden, gauss_rounds: int) -> dict[str, tuple]:
    """Array name -> shape of a FlowQuantizer(d, K) state (the torch modules' state_dict keys)."""
    k = K // 2
    shapes = {"projection.mean": (d,), "projection.weight": (d, K), "flow.loc": (K,), "flow.scale": (K,)}
    for i in range(n_layers):
        p = f"flow.layers.{i}."
        shapes[p + "perm"] = shapes[p + "inv_perm"] = (K,)
        widths = [k, *hidden, 2 * (K - k)]
        for j, idx in enumerate(_linear_indices(hidden)):
            shapes[f"{p}net.{idx}.weight"] = (widths[j + 1], widths[j])
            shapes[f"{p}net.{idx}.bias"] = (widths[j + 1],)
    for i in range(2 * gauss_rounds + 1):
        if i % 2 == 0:
            shapes[f"gauss.layers.{i}.xk"] = shapes[f"gauss.layers.{i}.yk"] = (K, None)  # (K, n_knots)
        else:
            shapes[f"gauss.layers.{i}.R"] = (K, K)
    return shapes


def check_state(header: dict, arrays: dict) -> None:
    """ValueError unless ``arrays`` holds exactly the state of the quantizer ``header`` describes
    (the ``gauss.*`` entries may be absent: the preconditioner's untrained start)."""
    cfg = header["config"]
    want = state_shapes(int(header["d"]), int(header["K"]), n_layers=int(cfg.get("n_layers", 10)),
                        hidden=tuple(cfg.get("hidden", (64, 64, 64))), gauss_rounds=int(cfg.get("gauss_rounds", 0)))
    have = {k for k in arrays if re.match(r"(projection|flow|gauss)\.", k)}
    if not any(k.startswith("gauss.") for k in have):
        want = {k: v for k, v in want.items() if not k.startswith("gauss.")}
    missing, unexpected = sorted(set(want) - have), sorted(have - set(want))
    if missing or unexpected:
        raise ValueError(f"quantizer state does not fit d={header['d']}, K={header['K']}: missing "
                         f"{missing[:4]}, unexpected {unexpected[:4]}")
    for name, shape in want.items():
        got = np.shape(arrays[name])
        if len(got) != len(shape) or any(s is not None and s != g for s, g in zip(shape, got)):
            raise ValueError(f"quantizer state does not fit d={header['d']}, K={header['K']}: {name} has shape "
                             f"{got}, expected {tuple(s if s is not None else 'n' for s in shape)}")


def default_gauss_arrays(K: int, gauss_rounds: int, *, n_knots: int = N_KNOTS) -> dict[str, np.ndarray]:
    """The untrained preconditioner's state (identity-like knots, identity rotations)."""
    out = {}
    knots = np.tile(np.linspace(-1, 1, n_knots, dtype=np.float32), (K, 1))
    for i in range(2 * gauss_rounds + 1):
        if i % 2 == 0:
            out[f"gauss.layers.{i}.xk"], out[f"gauss.layers.{i}.yk"] = knots.copy(), knots.copy()
        else:
            out[f"gauss.layers.{i}.R"] = np.eye(K, dtype=np.float32)
    return out


def flow_layers(arrays: dict, *, n_layers: int, hidden, K: int) -> list:
    """The RealNVP's layers as ``quantizer._flow_numpy`` takes them: (perm, inv_perm, k, bound, [(W (in, out), b)])."""
    layers = []
    for i in range(n_layers):
        p = f"flow.layers.{i}."
        lin = [(np.asarray(arrays[f"{p}net.{idx}.weight"], np.float32).T.copy(),
                np.asarray(arrays[f"{p}net.{idx}.bias"], np.float32)) for idx in _linear_indices(hidden)]
        layers.append((np.asarray(arrays[p + "perm"], np.int64), np.asarray(arrays[p + "inv_perm"], np.int64),
                       K // 2, SCALE_BOUND, lin))
    return layers


def gauss_layers(arrays: dict, *, gauss_rounds: int, K: int) -> list:
    """The preconditioner's layers in order: ("map", xk (K, J), yk (K, J)) or ("rot", R (K, K))."""
    if not any(k.startswith("gauss.") for k in arrays):
        arrays = default_gauss_arrays(K, gauss_rounds)
    out = []
    for i in range(2 * gauss_rounds + 1):
        p = f"gauss.layers.{i}."
        if i % 2 == 0:
            out.append(("map", np.asarray(arrays[p + "xk"], np.float32), np.asarray(arrays[p + "yk"], np.float32)))
        else:
            out.append(("rot", np.asarray(arrays[p + "R"], np.float32)))
    return out


#: up to this many rows the knot search runs for all K components at once (a compare with every knot,
#: n x K x J); above, one ``searchsorted`` per component. A single query: ~5 numpy calls instead of ~80.
SMALL_ROWS = 64


def _piecewise_linear(x: np.ndarray, xk: np.ndarray, yk: np.ndarray) -> np.ndarray:
    """gaussianize.piecewise_linear's value in numpy: x (n, K), knots (K, J) -> y (n, K) float32.

    Both paths find the same knot (``searchsorted(side="left")`` = the number of knots below x) and
    evaluate the same float32 expression, so they agree bit for bit (tests/test_encoder_numpy.py)."""
    J = xk.shape[1]
    if len(x) <= SMALL_ROWS:
        i = np.clip((xk[None, :, :] < x[:, :, None]).sum(-1), 1, J - 1)  # (n, K)
        c = np.arange(xk.shape[0])[None, :]
        x0, x1, y0, y1 = xk[c, i - 1], xk[c, i], yk[c, i - 1], yk[c, i]
        return (y0 + (y1 - y0) / (x1 - x0) * (x - x0)).astype(x.dtype, copy=False)
    y = np.empty_like(x)
    for c in range(xk.shape[0]):
        i = np.clip(np.searchsorted(xk[c], x[:, c], side="left"), 1, J - 1)
        x0, x1, y0, y1 = xk[c, i - 1], xk[c, i], yk[c, i - 1], yk[c, i]
        y[:, c] = y0 + (y1 - y0) / (x1 - x0) * (x[:, c] - x0)
    return y


def gauss_numpy(layers: list, y: np.ndarray) -> np.ndarray:
    """The preconditioner y (n, K) -> u (n, K) float32 (no log-determinant: inference only)."""
    u = np.ascontiguousarray(y, dtype=np.float32)
    for layer in layers:
        u = _piecewise_linear(u, layer[1], layer[2]) if layer[0] == "map" else (u @ layer[1]).astype(np.float32)
    return u
