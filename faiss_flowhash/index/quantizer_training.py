"""Training of a :class:`~faiss_flowhash.index.quantizer.FlowQuantizer`: projection, flow, held-out check.

1. Projection: centred PCA to K (orthonormal directions, raw scale: flip costs stay comparable
   across bits), or the contrast / triplet projections of :mod:`.projection` when asked for.
2. Flow: the RealNVP starts at the identity (zero-initialised last layers, one global scale), so the
   untrained quantizer is exactly sign-of-PCA. It is trained on NLL to the two-mode prior plus
   lambda * BCE on pairs (paper eq. 7-11): the user's positives, or, without them, each training
   vector's nearest neighbour in a sample of the training set.
3. Held-out check: on pairs the flow never saw, how often is the target's code among the query's
   cheapest flips (hit@1 / @16 / @256, averaged; ``gate="probes"``), or reached in flip order before
   0.1 / 0.5 / 2 % of the training vectors are scanned (``gate="candidates"``: the paper's flip probing
   under a budget)? The trained flow is kept only if it beats the identity start; otherwise the report
   says so and the start is kept.
"""

import time

import faiss
import numpy as np
import torch
from tqdm.auto import tqdm

from .balance import code_balance
from .codes import pack_codes, probe_codes, subset_masks
from .prior import code_cross_entropy, two_mode_log_prob
from .projection import contrast_directions, pca_basis
from .train_report import TrainReport

__all__ = ["TrainReport", "neighbour_pairs", "flip_rank_score", "flip_budget_score", "fit_flow"]


def neighbour_pairs(x: np.ndarray, n: int, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Pairs (x_i, its exact nearest neighbour among a sample) from a sample of at most n rows of x.

    Returns (a, b), each (m, d) float32: b[i] is the nearest other row of the sample to a[i] (L2).
    """
    m = min(n, len(x))
    s = x[np.sort(rng.choice(len(x), m, replace=False))]
    index = faiss.IndexFlatL2(x.shape[1])
    index.add(s)
    _, I = index.search(s, 2)
    other = np.where(I[:, 0] == np.arange(m), I[:, 1], I[:, 0])  # the first hit is usually the row itself
    ok = other >= 0
    return s[ok], s[other[ok]]


def flip_rank_score(z_query: np.ndarray, z_target: np.ndarray, probe_bits: int = 12) -> float:
    """Mean over pairs of [target code within the query's cheapest 1, 16, 256 flips], averaged.

    z_query, z_target: (m, K) latents of the queries and of the vectors they should find.
    Scale-free: only the ranking of each query's flip costs matters. The target is reachable when the
    bits where the codes differ are all among the query's ``probe_bits`` least certain ones; its rank is
    the number of subsets of those bits that cost less.
    """
    rank = _flip_ranks(z_query, z_target, probe_bits)
    return float(np.mean([(rank < p).mean() for p in (1, 16, 256)]))


def _flip_ranks(z_query: np.ndarray, z_target: np.ndarray, probe_bits: int) -> np.ndarray:
    """Per pair: the target code's rank in the query's flip order (the number of cheaper subsets of its
    ``probe_bits`` least certain bits); unreachable targets: int64 max."""
    a = np.abs(z_query)
    b = min(probe_bits, z_query.shape[1])
    pos = np.argsort(a, axis=1, kind="stable")[:, :b]
    differ = (z_query > 0) != (z_target > 0)  # (m, K)
    inside = np.take_along_axis(differ, pos, axis=1)  # (m, b) differing bits among the flippable ones
    reachable = inside.sum(1) == differ.sum(1)
    ca = np.take_along_axis(a, pos, axis=1)
    tcost = (ca * inside).sum(1)
    cost = ca @ subset_masks(b).astype(np.float32).T  # (m, 2^b) all flip costs (BLAS)
    rank = (cost < tcost[:, None] - 1e-6).sum(1)
    return np.where(reachable, rank, np.iinfo(np.int64).max)


def flip_budget_score(z_query: np.ndarray, z_target: np.ndarray, z_data: np.ndarray, probe_bits: int = 12,
                      fractions=(0.001, 0.005, 0.02)) -> float:
    """Mean over ``fractions`` of the expected share of pairs whose target is scanned when the query's
    buckets are scanned in flip order (cheapest first) until ``fraction x len(z_data)`` vectors.

    z_query, z_target: (m, K) latents of the queries and of the vectors they should find; z_data (n, K):
    latents of the data whose bucket sizes the scan pays (e.g. the training vectors). This is the
    paper's flip probing under a candidate budget: unlike :func:`flip_rank_score` it charges a probe
    for the vectors in its bucket, so a flow that splits dense buckets into many small ones is not
    rewarded for probes that hold few neighbours. The probe order is the index's own
    (:func:`.codes.probe_codes`, every one of the ``probe_bits`` least certain bits flippable).
    """
    rank = _flip_ranks(z_query, z_target, probe_bits)
    _, codes, _ = probe_codes(z_query, radius=np.inf, max_bits=probe_bits)
    codes = codes.reshape(len(z_query), -1)  # (m, 2^b) each query's probes, cheapest first
    keys, counts = np.unique(pack_codes(z_data), return_counts=True)
    at = np.minimum(np.searchsorted(keys, codes), len(keys) - 1)
    sizes = np.where(keys[at] == codes, counts[at], 0)
    before = np.cumsum(sizes, axis=1) - sizes  # vectors scanned before each probe
    ok = rank < codes.shape[1]
    r = np.minimum(rank, codes.shape[1] - 1)[:, None]
    start = np.take_along_axis(before, r, 1)[:, 0].astype(np.float64)  # scanned before the target's bucket
    size = np.maximum(np.take_along_axis(sizes, r, 1)[:, 0], 1).astype(np.float64)
    n = max(len(z_data), 1)
    # the scan stops at the budget inside a bucket: the target (anywhere in its list) is found with
    # probability (budget - start) / size, clipped to [0, 1]
    return float(np.mean([np.where(ok, np.clip((f * n - start) / size, 0.0, 1.0), 0.0).mean() for f in fractions]))


def fit_flow(flow, y: torch.Tensor, y_pos: torch.Tensor, cfg, K: int, rng: np.random.Generator):
    """Adam on NLL + lambda * BCE (eq. 7-11, lambda ramped in after a warm-up). Returns (nll, bce, history)."""
    opt = torch.optim.Adam(flow.parameters(), lr=cfg.lr)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(cfg.steps, 1), eta_min=cfg.lr_min)
    n, m = len(y), min(cfg.batch_size, len(y))
    history, nll_v, bce_v = [], None, None
    warm = int(cfg.warmup * cfg.steps)
    flow.train()
    bar = tqdm(range(cfg.steps), desc="flow", disable=not cfg.verbose, leave=False)
    for step in bar:
        idx = torch.as_tensor(rng.choice(n, m, replace=False), device=y.device)
        z, log_det = flow(y[idx])
        nll = -(two_mode_log_prob(z, mu=cfg.mu) + log_det).mean() / K  # per dimension
        loss, lam = nll, 0.0
        if cfg.bce_weight > 0 and step >= warm:
            lam = cfg.bce_weight * min(1.0, (step - warm + 1) / max(1, (cfg.steps - warm) // 3))
            z_pos, _ = flow(y_pos[idx])
            bce = code_cross_entropy(z, z_pos, mu=cfg.mu).mean() / K
            loss = nll + lam * bce
            bce_v = float(bce.detach())
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(flow.parameters(), 10.0)
        opt.step()
        sched.step()
        nll_v = float(nll.detach())
        if not np.isfinite(nll_v):
            raise FloatingPointError(f"flow training diverged at step {step + 1} (nll = {nll_v})")
        if (step + 1) % cfg.log_every == 0 or step + 1 == cfg.steps:
            history.append({"step": step + 1, "nll": nll_v, "bce": bce_v, "lambda": lam})
            bar.set_postfix(nll=f"{nll_v:.3f}")
    flow.eval()
    return nll_v, bce_v, history


def train_quantizer(q, x: np.ndarray, x_pos: np.ndarray | None) -> TrainReport:
    """Fit q's projection and flow on x (n, d) (positives x_pos (n, d) optional); see the module doc."""
    cfg = q.config
    rng = np.random.default_rng(cfg.seed)
    if len(x) > cfg.max_train:
        sel = np.sort(rng.choice(len(x), cfg.max_train, replace=False))
        x = x[sel]
        x_pos = x_pos[sel] if x_pos is not None else None
    torch.manual_seed(cfg.seed)
    t0 = time.perf_counter()
    kind = cfg.projection if cfg.projection != "auto" else "pca"
    if kind in ("contrast", "triplet") and x_pos is None:
        raise ValueError(f"projection={kind!r} needs positives: pass x_pos or use projection='pca'")
    mean = x.mean(0).astype(np.float32)
    basis, spread = pca_basis(x, q.K + q.extra_dims)
    w = basis[:, : q.K] if kind == "pca" else contrast_directions(x, x_pos, q.K)
    if kind != "pca":  # keep the raw scale comparable across bits: unit-norm columns
        w = w / np.linalg.norm(w, axis=0, keepdims=True)
    q.set_projection(mean, w, basis[:, q.K:] if kind == "pca" else basis)
    if kind == "triplet" and cfg.projection_steps > 0:
        q.refine_triplet(x, x_pos)

    # pairs: the user's positives, else nearest neighbours in a sample; a held-out share for the check
    if x_pos is not None:
        a, b = x, x_pos
    else:
        q.say("no positives given: the flow trains on nearest-neighbour pairs from the training set")
        a, b = neighbour_pairs(x, cfg.neighbour_pairs, rng)
    perm = rng.permutation(len(a))
    n_hold = int(round(cfg.heldout * len(a))) if len(a) >= 20 else 0
    hold, fit = perm[:n_hold], perm[n_hold:]
    y_a, y_b = q.project(a), q.project(b)
    q.init_flow_scale(y_a)
    start = None
    y_data = y_a[rng.choice(len(y_a), min(len(y_a), 50_000), replace=False)] if cfg.gate == "candidates" else None

    def gate_score():
        zq, zt = q.latent(y_b[hold]), q.latent(y_a[hold])
        return flip_rank_score(zq, zt) if y_data is None else flip_budget_score(zq, zt, q.latent(y_data))

    if n_hold:
        start = gate_score()
    nll = bce = trained = None
    history, kept = [], "start"
    degenerate = float(np.median(np.abs(y_a))) < 1e-6 * max(float(np.abs(y_a).max()), 1e-30)
    if cfg.steps > 0 and len(fit) >= 2 and not degenerate:
        snapshot = {k: v.clone() for k, v in q.flow.state_dict().items()}
        ya_t = torch.as_tensor(y_a[fit], device=cfg.device)
        yb_t = torch.as_tensor(y_b[fit], device=cfg.device)
        threads_before = torch.get_num_threads()
        if cfg.threads is not None:
            torch.set_num_threads(cfg.threads)
        try:
            nll, bce, history = fit_flow(q.flow.to(ya_t.device), ya_t, yb_t, cfg, q.K, rng)
        except FloatingPointError as e:
            q.say(f"{e}; keeping the identity start")
            nll = None
        finally:
            torch.set_num_threads(threads_before)
        q.flow_active = nll is not None
        q._np = None  # the numpy copy of the chain is stale after training
        if q.flow_active and n_hold:
            trained = gate_score()
            q.flow_active = trained > start
        if q.flow_active:
            kept = "trained"
        else:
            q.flow.load_state_dict(snapshot)
            q._np = None
    elif degenerate:
        q.say("training vectors are (almost) identical: codes carry no information; keeping the identity start")
    codes = pack_codes(q.latent(q.project(x[: min(len(x), 200_000)])))
    report = TrainReport(kind, x_pos is not None, len(x), cfg.steps, time.perf_counter() - t0, nll, bce,
                         start, trained, kept, code_balance(codes, q.K), history)
    if n_hold:
        verdict = ("kept the trained flow" if kept == "trained" else "the trained flow did not beat its start: "
                   "kept the identity start (sign of PCA)")
        q.say(f"held-out pairs ({n_hold}): start {start:.4f}, trained "
              f"{'-' if trained is None else f'{trained:.4f}'}: {verdict}")
    return report
