"""FlowQuantizer: x (n, d) -> z (n, K), one composed chain: projection -> [preconditioner] -> flow.

The K sign bits of z are the bucket code (paper 3.2-3.3). Inference lives here; training (projection
fit, flow fit, held-out check) is :mod:`.quantizer_training`. The default chain starts at sign-of-PCA:
centred PCA directions at raw scale, one global scale, a RealNVP initialised to the identity; training
keeps the flow only if it beats that start on held-out pairs (see ``report``). The projection also
keeps ``extra_dims`` further principal directions, used by the index to split oversized buckets.

torch is imported only where it is needed: a quantizer read from a file (``from_state`` /
``from_bytes``) keeps its state arrays and encodes on the CPU in numpy (:mod:`.quantizer_numpy`); its
torch modules (``projection``, ``gauss``, ``flow``) are built from those arrays at first access
(training, ``to(device)``), and from then on they are the quantizer. A new quantizer builds them at once.
"""

import io
import json
from dataclasses import asdict, dataclass

import numpy as np
from tqdm.auto import tqdm

from . import quantizer_numpy
from .checks import as_matrix
from .codes import pack_codes
from .errors import NotTrainedError
from .threads import blocks, n_threads, run as run_blocks
from .train_report import TrainReport

__all__ = ["QuantizerConfig", "TrainReport", "FlowQuantizer"]


#: query-sized batches (up to FLOW_BLOCKED_MAX rows) run the numpy flow in blocks of FLOW_BLOCK_ROWS rows:
#: each matmul then stays under OpenBLAS's multi-threading threshold (M*N*K <= 262,144 for the 64 x 64
#: layers), so it never waits for descheduled BLAS threads on a loaded box. Measured on 2,000 query rows at
#: load 4 (bench/results/fingerprints.md, "the batch flow"): median 75 ms in blocks against 143-203 ms in
#: one call (best 66-73 against 50-73 ms), the numba kernel 282 ms. Larger batches (an add of millions of
#: rows) keep one call, where BLAS threads pay off and per-block numpy calls would not.
FLOW_BLOCK_ROWS = 64
FLOW_BLOCKED_MAX = 8192


def _in_row_blocks(fn, x: np.ndarray) -> np.ndarray:
    """fn(x), for query-sized batches (FLOW_BLOCK_ROWS < n <= FLOW_BLOCKED_MAX) one block of
    FLOW_BLOCK_ROWS rows at a time (see above); fn maps rows to rows."""
    if FLOW_BLOCK_ROWS < len(x) <= FLOW_BLOCKED_MAX:
        return np.concatenate([fn(x[i: i + FLOW_BLOCK_ROWS]) for i in range(0, len(x), FLOW_BLOCK_ROWS)])
    return fn(x)


def _flow_numpy(weights, y: np.ndarray) -> np.ndarray:
    """RealNVP forward (y -> z) in numpy, the same arithmetic as :class:`.flow.RealNVP`."""
    return _in_row_blocks(lambda rows: _flow_rows(weights, rows), y)


def _flow_rows(weights, y: np.ndarray) -> np.ndarray:
    (loc, scale), layers = weights
    x = ((y - loc) / scale).astype(np.float32)
    for perm, inv_perm, k, bound, lin in layers:
        x = x[:, perm]
        x1, x2 = x[:, :k], x[:, k:]
        h = x1
        for i, (W, b) in enumerate(lin):
            h = h @ W + b
            if i < len(lin) - 1:
                h = np.maximum(h, 0.0)
        shift, log_scale = h[:, : h.shape[1] // 2], h[:, h.shape[1] // 2:]
        log_scale = bound * np.tanh(log_scale / bound)
        x = np.concatenate([x1, x2 * np.exp(log_scale) + shift], axis=1)[:, inv_perm]
    return x.astype(np.float32)

def _pack_flow(weights):
    """The numpy flow weights as the flat arrays of :func:`._jit.flow_forward`."""
    (loc, scale), layers = weights
    perms = np.stack([np.asarray(l[0], np.int64) for l in layers])
    ks = np.array([l[2] for l in layers], np.int64)
    bounds = np.array([l[3] for l in layers], np.float64)
    lins = [lin for l in layers for lin in l[4]]
    shapes = np.array([W.shape for W, _ in lins], np.int64).reshape(-1, 2)
    woff = np.r_[0, np.cumsum(shapes[:, 0] * shapes[:, 1])[:-1]].astype(np.int64)
    boff = np.r_[0, np.cumsum(shapes[:, 1])[:-1]].astype(np.int64)
    W = np.concatenate([W.reshape(-1) for W, _ in lins]).astype(np.float32)
    bias = np.concatenate([b.reshape(-1) for _, b in lins]).astype(np.float32)
    lin_start = np.r_[0, np.cumsum([len(l[4]) for l in layers])].astype(np.int64)
    return (np.asarray(loc, np.float32), np.asarray(scale, np.float32), perms, ks, bounds, W, woff, shapes, bias,
            boff, lin_start)


JIT_FLOW_MAX_ROWS = 16  # rows a thread gets at least when the numba flow runs on threads

_PROJECTIONS = ("auto", "pca", "contrast", "triplet")


@dataclass(frozen=True)
class QuantizerConfig:
    """Training settings of a :class:`FlowQuantizer`.

    Args:
        n_layers: coupling layers (10, paper). hidden: conditioner MLP widths ((64, 64, 64), paper).
        mu: prior mode centres +-mu (2.0, paper).
        steps: flow optimisation steps (200; 0 = keep the identity start, i.e. sign of PCA).
        batch_size: pairs per step (512).
        lr, lr_min: Adam learning rate, cosine-annealed from lr to lr_min (1e-3 -> 1e-4).
        bce_weight: lambda of eq. 11 (0.5, paper).
        warmup: fraction of steps trained on NLL alone before lambda ramps up linearly (0.3).
        heldout: share of the training pairs held out to check the trained flow against its start (0.1).
        gate: what that check counts: "probes" (the target's code among the query's cheapest 1 / 16 /
            256 flips: fits centroid probing, which ranks the proposed buckets by their data) or
            "candidates" (the target's bucket reached in flip order before 0.1 / 0.5 / 2 % of the
            training vectors are scanned: fits flip probing under a budget, the paper's mode, where a
            flow that splits dense buckets costs recall per vector scanned; bench/results/flow_vs_identity.md).
            FlowHashIndex picks "candidates" for ``probe="flip"`` when it makes the config itself.
        neighbour_pairs: without positives, pairs are made from this many training vectors and their
            exact nearest neighbours (20,000).
        projection: "auto" / "pca" (centred PCA, raw scale), "contrast" (variance over distortion
            variance, needs positives) or "triplet" (contrast refined with eq. 2).
        projection_steps: Adam steps of the triplet refinement (300).
        precondition: insert a per-component quantile map to the prior's marginal before the flow
            (False; True balances every bit from the start but whitens flip costs, which measured worse).
        gauss_rounds: rounds of iterative Gaussianization inside that preconditioner (0).
        max_train: training vectors used at most, a seeded subsample beyond (200,000).
        threads: torch CPU threads while training, restored afterwards (1; None: leave as is).
        seed: seed of every random choice. device: torch device of training and encoding ("cpu").
        log_every: steps between log entries (100). verbose: progress bar and messages (True).
    """

    n_layers: int = 10
    hidden: tuple = (64, 64, 64)
    mu: float = 2.0
    steps: int = 200
    batch_size: int = 512
    lr: float = 1e-3
    lr_min: float = 1e-4
    bce_weight: float = 0.5
    warmup: float = 0.3
    heldout: float = 0.1
    gate: str = "probes"
    neighbour_pairs: int = 20_000
    projection: str = "auto"
    projection_steps: int = 300
    precondition: bool = False
    gauss_rounds: int = 0
    max_train: int = 200_000
    threads: int | None = 1
    seed: int = 0
    device: str = "cpu"
    log_every: int = 100
    verbose: bool = True

    def __post_init__(self):
        object.__setattr__(self, "hidden", tuple(int(h) for h in self.hidden))
        if self.n_layers < 1:
            raise ValueError(f"n_layers: expected >= 1, got {self.n_layers}")
        if self.steps < 0 or self.projection_steps < 0:
            raise ValueError(f"steps: expected >= 0, got {self.steps} / {self.projection_steps}")
        if self.batch_size < 2:
            raise ValueError(f"batch_size: expected >= 2, got {self.batch_size}")
        if not 0 < self.lr_min <= self.lr:
            raise ValueError(f"lr, lr_min: expected 0 < lr_min <= lr, got {self.lr}, {self.lr_min}")
        if self.bce_weight < 0:
            raise ValueError(f"bce_weight: expected >= 0, got {self.bce_weight}")
        if not 0 <= self.warmup <= 1:
            raise ValueError(f"warmup: expected in [0, 1], got {self.warmup}")
        if not 0 <= self.heldout < 1:
            raise ValueError(f"heldout: expected in [0, 1), got {self.heldout}")
        if self.gate not in ("probes", "candidates"):
            raise ValueError(f"gate: expected 'probes' or 'candidates', got {self.gate!r}")
        if self.neighbour_pairs < 2:
            raise ValueError(f"neighbour_pairs: expected >= 2, got {self.neighbour_pairs}")
        if self.projection not in _PROJECTIONS:
            raise ValueError(f"projection: expected one of {_PROJECTIONS}, got {self.projection!r}")
        if self.mu <= 0:
            raise ValueError(f"mu: expected > 0, got {self.mu}")
        if self.max_train < 2:
            raise ValueError(f"max_train: expected >= 2, got {self.max_train}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads: expected None or >= 1, got {self.threads}")


class FlowQuantizer:
    """Projection + RealNVP flow: x (n, d) -> z (n, K); ``codes`` are the sign bits of z.

    Args:
        d: input dimension. K: code bits (2 <= K <= 62, K <= d).
        config: :class:`QuantizerConfig` (defaults when None).
        extra_dims: principal directions kept beyond the first K, for splitting buckets (16).
    """

    def __init__(self, d: int, K: int = 16, *, config: QuantizerConfig | None = None, extra_dims: int = 16,
                 _arrays: dict | None = None):
        if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
            raise ValueError(f"d: expected a positive int, got {d!r}")
        if isinstance(K, bool) or not isinstance(K, (int, np.integer)) or not 2 <= K <= 62:
            raise ValueError(f"K: expected an int in [2, 62], got {K!r}")
        if K > d:
            raise ValueError(f"K: expected <= d = {d}, got {K}")
        if config is not None and not isinstance(config, QuantizerConfig):
            raise TypeError(f"config: expected a QuantizerConfig or None, got {type(config).__name__}")
        self.d, self.K = int(d), int(K)
        self.extra_dims = int(max(0, min(extra_dims, d - K)))
        self.config = config or QuantizerConfig()
        self._arrays = _arrays  # a loaded quantizer's state arrays, until its torch modules are built
        self._torch = None  # {"projection", "gauss", "flow"}: the torch modules
        self._gauss_np = None  # cached numpy preconditioner layers (loaded quantizers)
        if _arrays is None:
            self._modules()
        self.extra = np.zeros((self.d, self.extra_dims), np.float32)  # further principal directions
        self.flow_active = False  # False: the flow is the identity start (z = y / scale), encoded in numpy
        self.is_trained = False
        self.report: TrainReport | None = None
        self._np = None  # cached numpy copy of the linear chain (mean, W / scale)

    # -- torch modules ----------------------------------------------------------------------------
    def _modules(self) -> dict:
        """The torch modules, built (from the loaded arrays, if any) at first use."""
        if self._torch is None:
            import torch

            from .flow import RealNVP
            from .gaussianize import Gaussianizer
            from .projection import Projection

            cfg = self.config
            torch.manual_seed(cfg.seed)
            mods = {"projection": Projection(self.d, self.K),
                    "gauss": Gaussianizer(self.K, rounds=cfg.gauss_rounds, mu=cfg.mu),
                    "flow": RealNVP(self.K, n_layers=cfg.n_layers, hidden=cfg.hidden, seed=cfg.seed)}
            mods["flow"].eval()
            if self._arrays is not None:
                for name, module in mods.items():
                    sd = {k[len(name) + 1:]: torch.as_tensor(np.array(v)) for k, v in self._arrays.items()
                          if k.startswith(name + ".")}
                    if name == "gauss" and not sd:
                        continue
                    try:
                        module.load_state_dict(sd)
                    except RuntimeError as e:
                        raise ValueError(f"quantizer state does not fit d={self.d}, K={self.K}: {e}") from None
            self._torch, self._arrays, self._np, self._gauss_np = mods, None, None, None
        return self._torch

    projection = property(lambda self: self._modules()["projection"],
                          lambda self, m: self._modules().__setitem__("projection", m), doc="Projection (torch).")
    gauss = property(lambda self: self._modules()["gauss"],
                     lambda self, m: self._modules().__setitem__("gauss", m), doc="Gaussianizer (torch).")
    flow = property(lambda self: self._modules()["flow"],
                    lambda self, m: self._modules().__setitem__("flow", m), doc="RealNVP (torch).")

    # -- training ---------------------------------------------------------------------------------
    def say(self, msg: str) -> None:
        if self.config.verbose:
            tqdm.write(f"[FlowQuantizer] {msg}")

    def train(self, x, x_pos=None) -> TrainReport:
        """Fit the projection, then the flow, and keep the flow only if it beats its identity start.

        Args:
            x: training vectors (n, d), n >= 2.
            x_pos: optional positives (n, d): a distorted view of each row of x. Without them the flow
                trains on nearest-neighbour pairs of x.

        Returns:
            a :class:`TrainReport` (also kept as ``self.report``).
        """
        x = as_matrix(x, self.d, name="x")
        if len(x) < 2:
            raise ValueError(f"x: expected at least 2 training vectors, got {len(x)}")
        if x_pos is not None:
            x_pos = as_matrix(x_pos, self.d, name="x_pos")
            if x_pos.shape != x.shape:
                raise ValueError(f"x_pos: expected shape {x.shape} (one positive per row of x), got {x_pos.shape}")
        import torch

        from .flow import RealNVP
        from .quantizer_training import train_quantizer

        self._modules()
        torch.manual_seed(self.config.seed)  # the flow's initial weights (zero last layers) are seeded
        self.flow = RealNVP(self.K, n_layers=self.config.n_layers, hidden=self.config.hidden, seed=self.config.seed)
        self.flow.eval()
        self.flow_active, self._np = False, None
        self.report = train_quantizer(self, x, x_pos)
        self.is_trained = True
        b = self.report.balance
        self.say(f"done in {self.report.seconds:.1f}s on {self.report.n_train} vectors ({self.report.kept} kept); "
                 f"buckets used {b['buckets_used']}/{2 ** self.K}, max/mean {b['max_over_mean']:.1f}")
        return self.report

    def set_projection(self, mean: np.ndarray, weight: np.ndarray, extra: np.ndarray) -> None:
        """Set the linear part: y = (x - mean) @ weight (d, K); ``extra`` (d, e) further directions."""
        self.projection.set(mean, weight)
        e = np.zeros((self.d, self.extra_dims), np.float32)
        m = min(self.extra_dims, extra.shape[1])
        e[:, :m] = extra[:, :m]
        self.extra = e
        self._np = None

    def init_flow_scale(self, y: np.ndarray) -> None:
        """One global scale for all components (relative scales are the flip costs: no whitening),
        chosen so that y matches the prior's second moment (mu^2 + 1)."""
        import torch

        with torch.no_grad():
            if self.config.precondition:
                self.gauss.fit(torch.as_tensor(y))
                y = self.gauss(torch.as_tensor(y))[0].numpy()
                self.flow.init_standardization(torch.as_tensor(y))
                self._np = None
                return
            rms = float(np.sqrt(np.mean(np.square(y, dtype=np.float64)))) or 1.0
            self.flow.loc.zero_()
            self.flow.scale.fill_(rms / np.sqrt(self.config.mu ** 2 + 1))
        self._np = None

    def refine_triplet(self, x: np.ndarray, x_pos: np.ndarray) -> None:
        """Refine the projection with eq. 2's triplet loss plus a decorrelation penalty."""
        import torch

        from .projection import decorrelation_penalty, triplet_loss

        cfg = self.config
        dev = torch.device(cfg.device)
        proj = self.projection.to(dev)
        opt = torch.optim.Adam([proj.weight], lr=1e-3 * float(proj.weight.detach().abs().mean()))
        gen = np.random.default_rng(cfg.seed + 1)
        m = min(cfg.batch_size, len(x))
        for _ in tqdm(range(cfg.projection_steps), desc="projection (triplet)", disable=not cfg.verbose, leave=False):
            idx = gen.choice(len(x), m, replace=False)
            y, yp = proj(torch.as_tensor(x[idx], device=dev)), proj(torch.as_tensor(x_pos[idx], device=dev))
            loss = triplet_loss(y, yp) + decorrelation_penalty(torch.cat([y, yp]))
            opt.zero_grad()
            loss.backward()
            opt.step()
        self.projection.to("cpu")
        self._np = None

    def _place(self, device) -> None:
        """Move the modules to ``device`` only when they are elsewhere."""
        if self.projection.weight.device != device:
            self.projection.to(device)
            self.flow.to(device)
            self.gauss.to(device)

    def project(self, x: np.ndarray) -> np.ndarray:
        """y = (x - mean) @ W (n, K) float32, in numpy; query-sized batches in blocks of FLOW_BLOCK_ROWS
        rows, as the flow: one (2,000 x 128) @ (128 x 16) call wakes OpenBLAS's threads, which then spin
        for a while and took a core from the numba planner that runs next (a search of 2,000 queries on
        2 cores: 63 against 44 us a query planned; bench/results/fingerprints.md, session 5)."""
        mean, w, _ = self._linear()
        return _in_row_blocks(lambda rows: (rows - mean) @ w, x)

    def latent(self, y: np.ndarray, *, batch_size: int = 65536) -> np.ndarray:
        """y (n, K) -> z (n, K) float32 through the preconditioner and the flow (identity start: y / scale).
        On the CPU without a preconditioner no torch is involved (numpy, or numba for a few rows)."""
        if not self.flow_active and not self.config.precondition:
            loc, scale = self._linear()[2]
            return (y - loc) / scale
        if not self.config.precondition and str(self.config.device) == "cpu":
            return self._flow_cpu(y)
        if self._torch is None and str(self.config.device) == "cpu":  # a loaded quantizer: numpy, no torch
            u = quantizer_numpy.gauss_numpy(self._gauss_weights(), y)
            if self.flow_active:  # the shipped model's chain: the flow as above, after the preconditioner
                return self._flow_cpu(u)
            loc, scale = self._linear()[2]
            return ((u - loc) / scale).astype(np.float32)
        import torch

        dev = torch.device(self.config.device)
        self._place(dev)
        out = []
        with torch.no_grad():
            for i in range(0, len(y), batch_size):
                t = torch.as_tensor(np.ascontiguousarray(y[i: i + batch_size]), device=dev)
                if self.config.precondition:
                    t = self.gauss(t)[0]
                out.append(self.flow(t)[0].cpu().numpy() if self.flow_active
                           else ((t - self.flow.loc) / self.flow.scale).cpu().numpy())
        return np.concatenate(out).astype(np.float32) if out else np.zeros((0, self.K), np.float32)

    def _gauss_weights(self) -> list:
        """A loaded quantizer's preconditioner layers in numpy (cached)."""
        if self._gauss_np is None:
            self._gauss_np = quantizer_numpy.gauss_layers(self._arrays, gauss_rounds=self.config.gauss_rounds, K=self.K)
        return self._gauss_np

    def _flow_weights(self):
        """The trained RealNVP as numpy arrays (cached with the linear chain): CPU inference without
        torch's per-call overhead (a single query: ~0.1 ms instead of several)."""
        mean, w, (loc, scale) = self._linear()
        if len(self._np) < 4 and self._torch is None:
            layers = quantizer_numpy.flow_layers(self._arrays, n_layers=self.config.n_layers,
                                                 hidden=self.config.hidden, K=self.K)
            self._np = (mean, w, (loc, scale), layers)
        if len(self._np) < 4:
            import torch

            layers = []
            for layer in self.flow.layers:
                lin = [m for m in layer.net if isinstance(m, torch.nn.Linear)]
                layers.append((layer.perm.cpu().numpy(), layer.inv_perm.cpu().numpy(), layer.k, layer.scale_bound,
                               [(m.weight.detach().cpu().numpy().T.astype(np.float32),
                                 m.bias.detach().cpu().numpy().astype(np.float32)) for m in lin]))
            self._np = (mean, w, (loc, scale), layers)
        return self._np[2], self._np[3]

    def _flow_cpu(self, y: np.ndarray) -> np.ndarray:
        """The flow on the CPU: in numba once numba is loaded, for up to FLOW_BLOCKED_MAX rows (blocks of
        at least JIT_FLOW_MAX_ROWS rows on threads: the kernel releases the GIL, numpy's small matmuls do
        not); else, and for the millions of rows of an add, numpy."""
        packed = self._packed_flow() if len(y) <= FLOW_BLOCKED_MAX else None
        if packed is None:
            return _flow_numpy(self._flow_weights(), y)
        kern, arrays = packed
        y = np.ascontiguousarray(y, np.float32)
        parts = n_threads(len(y), JIT_FLOW_MAX_ROWS)
        if parts == 1:
            return kern.flow_forward(y, *arrays)
        out = np.empty(y.shape, np.float32)

        def block(s):
            out[s] = kern.flow_forward(y[s], *arrays)

        run_blocks(block, blocks(len(y), parts))
        return out

    def _packed_flow(self):
        """(kernels module, packed weights) for few-row flow inference in numba, cached while the numpy
        weights are; None without numba or while numba is not loaded (the import costs more than it saves
        in a short process: the planner loads it for large calls, :data:`.planner.AUTO_FUSED_MIN_ROWS`)."""
        from .planner import loaded_kernels
        kern = loaded_kernels()
        if kern is None:
            return None
        weights = self._flow_weights()
        cached = getattr(self, "_jit_flow", None)
        if cached is None or cached[0] is not weights[1]:
            cached = (weights[1], _pack_flow(weights))
            self._jit_flow = cached
        return kern, cached[1]

    def _linear(self):
        if self._np is None and self._torch is None:
            a = self._arrays
            self._np = tuple(np.asarray(a[k], np.float32) for k in ("projection.mean", "projection.weight")) + (
                (np.asarray(a["flow.loc"], np.float32), np.asarray(a["flow.scale"], np.float32)),)
        if self._np is None:
            mean = self.projection.mean.detach().cpu().numpy().astype(np.float32)
            w = self.projection.weight.detach().cpu().numpy().astype(np.float32)
            loc = self.flow.loc.detach().cpu().numpy().astype(np.float32)
            scale = self.flow.scale.detach().cpu().numpy().astype(np.float32)
            self._np = (mean, w, (loc, scale))
        return self._np[:3]

    # -- inference --------------------------------------------------------------------------------
    def _require_trained(self) -> None:
        if not self.is_trained:
            raise NotTrainedError("quantizer is not trained: call train(x) first")

    def encode(self, x, *, batch_size: int = 65536) -> np.ndarray:
        """Latents z (n, K) float32 of vectors x (n, d)."""
        self._require_trained()
        x = as_matrix(x, self.d, name="x")
        return self.latent(self.project(x), batch_size=batch_size)

    def codes(self, x) -> np.ndarray:
        """Primary K-bit bucket code of each row of x, uint64 (n,)."""
        return pack_codes(self.encode(x))

    def coords(self, x) -> np.ndarray:
        """Coordinates along the projection's directions and the ``extra_dims`` further principal
        directions (n, K + extra_dims) float32: where the index cuts oversized buckets."""
        self._require_trained()
        x = as_matrix(x, self.d, name="x")
        mean, w, _ = self._linear()
        return np.concatenate([(x - mean) @ w, (x - mean) @ self.extra], axis=1)

    def to(self, device) -> "FlowQuantizer":
        """Move the parameters to a torch device (a trained flow then runs there)."""
        import torch

        self.config = QuantizerConfig(**{**asdict(self.config), "device": str(device)})
        self._place(torch.device(device))
        return self

    # -- persistence ------------------------------------------------------------------------------
    def state(self) -> tuple[dict, dict]:
        """(header, arrays): a JSON-able header and numpy arrays holding everything to rebuild self."""
        header = {"d": self.d, "K": self.K, "config": asdict(self.config), "is_trained": self.is_trained,
                  "flow_active": self.flow_active, "extra_dims": self.extra_dims}
        if self._torch is None:  # loaded and never touched: the arrays it was loaded from
            arrays = {k: np.array(v) for k, v in self._arrays.items()}
            if not any(k.startswith("gauss.") for k in arrays):
                arrays.update(quantizer_numpy.default_gauss_arrays(self.K, self.config.gauss_rounds))
        else:
            arrays = {f"projection.{k}": v.detach().cpu().numpy() for k, v in self.projection.state_dict().items()}
            arrays.update({f"flow.{k}": v.detach().cpu().numpy() for k, v in self.flow.state_dict().items()})
            arrays.update({f"gauss.{k}": v.detach().cpu().numpy() for k, v in self.gauss.state_dict().items()})
        arrays["extra"] = self.extra
        return header, arrays

    def state_dict(self) -> dict:
        """Everything to rebuild self as one flat dict of numpy arrays (the header JSON-encoded under
        ``"__header__"``): the single codec used by :meth:`to_bytes` and by the index's files."""
        header, arrays = self.state()
        return {"__header__": np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays}

    @classmethod
    def from_state(cls, header: dict, arrays: dict | None = None) -> "FlowQuantizer":
        """Inverse of :meth:`state_dict` (one dict) or of :meth:`state` (header, arrays)."""
        if arrays is None:
            arrays = dict(header)
            if "__header__" not in arrays:
                raise ValueError("quantizer state: no '__header__' entry")
            header = json.loads(np.asarray(arrays.pop("__header__"), np.uint8).tobytes())
        known = set(QuantizerConfig.__dataclass_fields__)
        cfg = {k: v for k, v in header["config"].items() if k in known}
        legacy = "flow_active" not in header  # files of 0.1: per-component standardisation, trained flow in use
        if legacy:
            cfg.setdefault("precondition", True)
        config = QuantizerConfig(**{**cfg, "device": "cpu"})
        quantizer_numpy.check_state({**header, "config": asdict(config)}, arrays)
        chain = {k: np.asarray(v) for k, v in arrays.items() if k.split(".", 1)[0] in ("projection", "flow", "gauss")}
        q = cls(header["d"], header["K"], config=config, extra_dims=int(header.get("extra_dims", 0)), _arrays=chain)
        if "extra" in arrays:
            q.extra = np.asarray(arrays["extra"], np.float32).reshape(q.d, q.extra_dims)
        q.flow_active = True if legacy else bool(header["flow_active"])
        q.is_trained = bool(header["is_trained"])
        return q

    def to_bytes(self) -> bytes:
        """Serialize to bytes (npz with a JSON header)."""
        buf = io.BytesIO()
        np.savez(buf, **self.state_dict())
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "FlowQuantizer":
        """Inverse of :meth:`to_bytes`."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                state = {k: z[k] for k in z.files}
        except Exception as e:  # zipfile errors of a foreign or truncated payload
            raise ValueError(f"not a serialized FlowQuantizer: {e}") from None
        return cls.from_state(state)
