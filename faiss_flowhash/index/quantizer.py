"""FlowQuantizer: projection R^d -> R^K, then a RealNVP flow to the two-mode prior; z's signs are the code.

Training follows the paper (eq. 2, 8-11) with the fixes DESIGN.md calls for: the projection is fitted
first and frozen; the flow warms up on NLL alone before the robustness term (BCE) ramps in, and bucket
balance is logged during training, not only at the end.
"""

import io
import json
import time
from dataclasses import asdict, dataclass, field

import numpy as np
import torch
from tqdm.auto import tqdm

from .balance import code_balance
from .checks import as_matrix
from .codes import pack_codes
from .errors import NotTrainedError
from .flow import RealNVP
from .gaussianize import Gaussianizer
from .prior import code_cross_entropy, two_mode_log_prob
from .projection import Projection, contrast_directions, decorrelation_penalty, pca_directions, triplet_loss

__all__ = ["QuantizerConfig", "TrainReport", "FlowQuantizer"]

_PROJECTIONS = ("auto", "pca", "contrast", "triplet")


@dataclass(frozen=True)
class QuantizerConfig:
    """Training settings of a :class:`FlowQuantizer` (paper A.3 defaults where the paper gives one).

    Args:
        n_layers: coupling layers (10). hidden: conditioner MLP widths ((64, 64, 64)).
        mu: prior mode centres +-mu (2.0).
        precondition: before the RealNVP, map every component of y through its own monotone
            quantile map to the prior's marginal (a fixed, data-fitted flow layer), so every bit starts
            exactly balanced and the RealNVP only has to remove dependence (True; False = paper).
        gauss_rounds: rounds of iterative Gaussianization (marginal map + rotation) before that (0).
        threads: torch CPU threads while training, restored afterwards (1: the flow's small matrices
            train fastest on one thread, 5x faster than two on a busy 2-core machine; None: leave as is).
        steps: flow optimisation steps (3000). batch_size: pairs per step (2048).
        lr, lr_min: Adam learning rate, cosine-annealed from lr to lr_min (1e-3 -> 1e-4).
        bce_weight: lambda of eq. 11 (0.5), used only when positives are given.
        warmup: fraction of steps trained on NLL alone before lambda ramps up linearly (0.3).
        projection: "auto" (triplet when positives are given, else PCA), "pca", "contrast" (variance over
            distortion variance, closed form) or "triplet" (contrast start refined with eq. 2).
        projection_steps: Adam steps of the triplet refinement (300).
        max_train: vectors used for training at most, a seeded subsample beyond (500,000).
        seed: seed of every random choice. device: torch device of training and encoding ("cpu").
        log_every: steps between balance checks (250). verbose: progress bar and messages (True).
    """

    n_layers: int = 10
    hidden: tuple = (64, 64, 64)
    mu: float = 2.0
    steps: int = 3000
    batch_size: int = 2048
    lr: float = 1e-3
    lr_min: float = 1e-4
    bce_weight: float = 0.5
    warmup: float = 0.3
    projection: str = "auto"
    projection_steps: int = 300
    max_train: int = 500_000
    seed: int = 0
    device: str = "cpu"
    log_every: int = 250
    verbose: bool = True
    gauss_rounds: int = 0
    precondition: bool = True
    threads: int | None = 1

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
        if self.projection not in _PROJECTIONS:
            raise ValueError(f"projection: expected one of {_PROJECTIONS}, got {self.projection!r}")
        if self.mu <= 0:
            raise ValueError(f"mu: expected > 0, got {self.mu}")
        if self.threads is not None and self.threads < 1:
            raise ValueError(f"threads: expected None or >= 1, got {self.threads}")


@dataclass
class TrainReport:
    """What :meth:`FlowQuantizer.train` did: settings used, time, final losses and balance history."""

    projection: str
    used_positives: bool
    n_train: int
    steps: int
    seconds: float
    nll: float
    bce: float | None
    balance: dict
    history: list = field(default_factory=list)


class FlowQuantizer:
    """Projection + RealNVP flow: x (n, d) -> z (n, K); ``codes`` are the sign bits of z.

    Args:
        d: input dimension. K: code bits (2 <= K <= 62).
        config: :class:`QuantizerConfig` (defaults when None).
    """

    def __init__(self, d: int, K: int = 16, *, config: QuantizerConfig | None = None):
        if not isinstance(d, (int, np.integer)) or d < 1:
            raise ValueError(f"d: expected a positive int, got {d!r}")
        if not isinstance(K, (int, np.integer)) or not 2 <= K <= 62:
            raise ValueError(f"K: expected an int in [2, 62], got {K!r}")
        if K > d:
            raise ValueError(f"K: expected <= d = {d}, got {K}")
        self.d, self.K = int(d), int(K)
        self.config = config or QuantizerConfig()
        torch.manual_seed(self.config.seed)
        self.projection = Projection(self.d, self.K)
        self.gauss = Gaussianizer(self.K, rounds=self.config.gauss_rounds, mu=self.config.mu)
        self.flow = RealNVP(self.K, n_layers=self.config.n_layers, hidden=self.config.hidden, seed=self.config.seed)
        self.is_trained = False
        self.report: TrainReport | None = None

    # -- training ---------------------------------------------------------------------------------
    def _say(self, msg: str) -> None:
        if self.config.verbose:
            tqdm.write(f"[FlowQuantizer] {msg}")

    def train(self, x, x_pos=None) -> TrainReport:
        """Fit the projection, then the flow.

        Args:
            x: training vectors (n, d), n >= 2.
            x_pos: optional positives (n, d): a distorted view of each row of x. Without them the
                projection is PCA and the flow is trained on NLL alone (no robustness term).

        Returns:
            a :class:`TrainReport` (also kept as ``self.report``).
        """
        cfg = self.config
        x = as_matrix(x, self.d, name="x")
        if len(x) < 2:
            raise ValueError(f"x: expected at least 2 training vectors, got {len(x)}")
        if x_pos is not None:
            x_pos = as_matrix(x_pos, self.d, name="x_pos")
            if x_pos.shape != x.shape:
                raise ValueError(f"x_pos: expected shape {x.shape} (one positive per row of x), got {x_pos.shape}")
        rng = np.random.default_rng(cfg.seed)
        if len(x) > cfg.max_train:
            sel = np.sort(rng.choice(len(x), cfg.max_train, replace=False))
            x = x[sel]
            x_pos = x_pos[sel] if x_pos is not None else None
        torch.manual_seed(cfg.seed)
        t0 = time.perf_counter()
        threads_before = torch.get_num_threads()
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        try:
            kind = self._fit_projection(x, x_pos)
            y = self._project(x)
            y_pos = self._project(x_pos) if x_pos is not None else None
            nll, bce, history = self._fit_flow(y, y_pos, rng)
        finally:
            torch.set_num_threads(threads_before)
        self.is_trained = True
        balance = code_balance(pack_codes(self._flow_z(y[: min(len(y), 200_000)]).cpu().numpy()), self.K)
        self.report = TrainReport(kind, x_pos is not None, len(x), cfg.steps, time.perf_counter() - t0,
                                  nll, bce, balance, history)
        self._say(
            f"done in {self.report.seconds:.1f}s: nll {nll:.3f}"
            + (f", bce {bce:.3f}" if bce is not None else "")
            + f"; buckets used {balance['buckets_used']}/{2 ** self.K}, within K+-1 {balance['within_k1_share']:.1%}"
            f" (perfect hash at this N: {balance['within_k1_share_ideal']:.1%}), max/mean {balance['max_over_mean']:.1f}"
        )
        return self.report

    def _fit_projection(self, x: np.ndarray, x_pos: np.ndarray | None) -> str:
        cfg = self.config
        kind = cfg.projection
        if kind == "auto":
            kind = "triplet" if x_pos is not None else "pca"
        if kind in ("contrast", "triplet") and x_pos is None:
            raise ValueError(f"projection={kind!r} needs positives: pass x_pos or use projection='pca'")
        if x_pos is None:
            self._say(
                f"no positives given: projection = PCA to K={self.K}; flow trained on NLL only "
                "(no code-robustness term). Pass x_pos (distorted copies of x) to learn robust codes."
            )
        mean = x.mean(0)
        if kind == "pca":
            w = pca_directions(x, self.K)
        else:
            w = contrast_directions(x, x_pos, self.K)
        self.projection.set(mean, w)
        if kind == "triplet" and cfg.projection_steps > 0:
            self._refine_triplet(x, x_pos)
        return kind

    def _refine_triplet(self, x: np.ndarray, x_pos: np.ndarray) -> None:
        cfg = self.config
        dev = torch.device(cfg.device)
        proj = self.projection.to(dev)
        opt = torch.optim.Adam([proj.weight], lr=1e-3 * float(proj.weight.detach().abs().mean()))
        gen = np.random.default_rng(cfg.seed + 1)
        m = min(cfg.batch_size, len(x))
        bar = tqdm(range(cfg.projection_steps), desc="projection (triplet)", disable=not cfg.verbose, leave=False)
        for _ in bar:
            idx = gen.choice(len(x), m, replace=False)
            xb = torch.as_tensor(x[idx], device=dev)
            xp = torch.as_tensor(x_pos[idx], device=dev)
            y, yp = proj(xb), proj(xp)
            # keep outputs decorrelated: the triplet loss alone lets all K directions collapse into one
            loss = triplet_loss(y, yp) + decorrelation_penalty(torch.cat([y, yp]))
            opt.zero_grad()
            loss.backward()
            opt.step()
            bar.set_postfix(loss=f"{loss.item():.4f}")

    def _place(self, device: torch.device) -> None:
        """Move the modules to ``device`` only when they are elsewhere (``Module.to`` walks every
        submodule: half of a single-query encode when called each time)."""
        if self.projection.weight.device != device:
            self.projection.to(device)
            self.flow.to(device)
            self.gauss.to(device)

    @torch.no_grad()
    def _project(self, x: np.ndarray) -> torch.Tensor:
        dev = torch.device(self.config.device)
        self._place(dev)
        return torch.cat([self.projection(torch.as_tensor(x[i : i + 65536], device=dev))
                          for i in range(0, len(x), 65536)]) if len(x) else torch.zeros(0, self.K, device=dev)

    def _latent(self, y: torch.Tensor):
        """y (n, K) -> (z (n, K), log|det dz/dy| (n,)) through the preconditioner and the RealNVP."""
        if self.config.precondition:
            y, ld0 = self.gauss(y)
            z, ld = self.flow(y)
            return z, ld + ld0
        return self.flow(y)

    @torch.no_grad()
    def _flow_z(self, y: torch.Tensor) -> torch.Tensor:
        self._place(y.device)
        if self.flow.training:
            self.flow.eval()
        return torch.cat([self._latent(y[i : i + 65536])[0] for i in range(0, len(y), 65536)]) if len(y) else y

    def _fit_flow(self, y: torch.Tensor, y_pos: torch.Tensor | None, rng: np.random.Generator):
        cfg = self.config
        flow = self.flow.to(y.device)
        if cfg.precondition:
            self.gauss.to(y.device).fit(y)
            with torch.no_grad():  # the fixed layers are applied once, not at every step
                y = self.gauss(y)[0]
                y_pos = self.gauss(y_pos)[0] if y_pos is not None else None
        else:
            flow.init_standardization(y)
        opt = torch.optim.Adam(flow.parameters(), lr=cfg.lr)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.steps, 1), eta_min=cfg.lr_min)
        n, m = len(y), min(cfg.batch_size, len(y))
        probe_y = y[torch.as_tensor(np.sort(rng.choice(n, min(n, 50_000), replace=False)), device=y.device)]
        history, nll_v, bce_v = [], float("nan"), None
        warm = int(cfg.warmup * cfg.steps)
        flow.train()
        bar = tqdm(range(cfg.steps), desc="flow", disable=not cfg.verbose, leave=False)
        for step in bar:
            idx = torch.as_tensor(rng.choice(n, m, replace=False), device=y.device)
            z, log_det = flow(y[idx])
            nll = -(two_mode_log_prob(z, mu=cfg.mu) + log_det).mean() / self.K  # per dimension
            loss = nll
            lam = 0.0
            if y_pos is not None and cfg.bce_weight > 0 and step >= warm:
                lam = cfg.bce_weight * min(1.0, (step - warm + 1) / max(1, (cfg.steps - warm) // 3))
                z_pos, _ = flow(y_pos[idx])
                bce = code_cross_entropy(z, z_pos, mu=cfg.mu).mean() / self.K
                loss = nll + lam * bce
                bce_v = float(bce.detach())
            opt.zero_grad()
            loss.backward()
            torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
            opt.step()
            sched.step()
            nll_v = float(nll.detach())
            if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
                entry = {"step": step + 1, "nll": nll_v, "bce": bce_v, "lambda": lam, **self._probe_balance(probe_y)}
                history.append(entry)
                bar.set_postfix(nll=f"{nll_v:.3f}", within=f"{entry['within_k1_share']:.2f}",
                                maxmean=f"{entry['max_over_mean']:.1f}")
                flow.train()
        return nll_v, bce_v, history

    @torch.no_grad()
    def _probe_balance(self, u: torch.Tensor) -> dict:
        """Balance of the codes of u, the input of the RealNVP (already preconditioned)."""
        self.flow.eval()
        z = self.flow(u)[0]
        bits = (z > 0).float().mean(0).cpu().numpy()
        out = code_balance(pack_codes(z.cpu().numpy()), self.K)
        out["worst_bit_share"] = float(np.abs(bits - 0.5).max() + 0.5)
        return out

    # -- inference --------------------------------------------------------------------------------
    def _require_trained(self) -> None:
        if not self.is_trained:
            raise NotTrainedError("quantizer is not trained: call train(x) first")

    def encode(self, x, *, batch_size: int = 65536) -> np.ndarray:
        """Latents z (n, K) float32 of vectors x (n, d)."""
        self._require_trained()
        x = as_matrix(x, self.d, name="x")
        return self._flow_z(self._project(x)).cpu().numpy().astype(np.float32)

    def codes(self, x) -> np.ndarray:
        """Primary K-bit bucket code of each row of x, uint64 (n,)."""
        return pack_codes(self.encode(x))

    def to(self, device) -> "FlowQuantizer":
        """Move the parameters to a torch device (encoding then runs there)."""
        self.config = QuantizerConfig(**{**asdict(self.config), "device": str(device)})
        self.projection.to(device)
        self.flow.to(device)
        self.gauss.to(device)
        return self

    # -- persistence ------------------------------------------------------------------------------
    def state(self) -> tuple[dict, dict]:
        """(header, arrays): a JSON-able header and numpy arrays holding everything to rebuild self."""
        header = {"d": self.d, "K": self.K, "config": asdict(self.config), "is_trained": self.is_trained}
        arrays = {f"projection.{k}": v.detach().cpu().numpy() for k, v in self.projection.state_dict().items()}
        arrays.update({f"flow.{k}": v.detach().cpu().numpy() for k, v in self.flow.state_dict().items()})
        arrays.update({f"gauss.{k}": v.detach().cpu().numpy() for k, v in self.gauss.state_dict().items()})
        return header, arrays

    @classmethod
    def from_state(cls, header: dict, arrays: dict) -> "FlowQuantizer":
        config = QuantizerConfig(**{**header["config"], "device": "cpu"})
        q = cls(header["d"], header["K"], config=config)
        for prefix, module in (("projection.", q.projection), ("flow.", q.flow), ("gauss.", q.gauss)):
            sd = {k[len(prefix):]: torch.as_tensor(np.asarray(v)) for k, v in arrays.items() if k.startswith(prefix)}
            try:
                module.load_state_dict(sd)
            except RuntimeError as e:
                raise ValueError(f"quantizer state does not fit d={header['d']}, K={header['K']}: {e}") from None
        q.is_trained = bool(header["is_trained"])
        return q

    def to_bytes(self) -> bytes:
        """Serialize to bytes (npz with a JSON header)."""
        header, arrays = self.state()
        buf = io.BytesIO()
        np.savez(buf, __header__=np.frombuffer(json.dumps(header).encode(), np.uint8), **arrays)
        return buf.getvalue()

    @classmethod
    def from_bytes(cls, data: bytes) -> "FlowQuantizer":
        """Inverse of :meth:`to_bytes`."""
        try:
            with np.load(io.BytesIO(data), allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
            header = json.loads(arrays.pop("__header__").tobytes())
        except Exception as e:  # zipfile/json errors of a foreign or truncated payload
            raise ValueError(f"not a serialized FlowQuantizer: {e}") from None
        return cls.from_state(header, arrays)
