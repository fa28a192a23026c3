"""PNG plots of an ann_bench.py result (the dict it writes as JSON).

    python -m bench.plots bench/out/ann_200k.json bench/plots
"""

from __future__ import annotations

import json
import math
import os
import sys

import numpy as np

__all__ = ["plot_all", "pareto_eval", "pareto_qps", "density_hist", "poisson_reference"]

FAMILY_COLOR = {"FlowHash": "tab:red", "FlowHash-paper": "tab:brown", "IVFFlat": "tab:blue", "HNSWFlat": "tab:green",
                "MP-LSH": "tab:orange", "PCA-sign": "tab:purple", "IndexLSH": "tab:gray",
                "Exact": "black"}
STYLES = ["-", "--", ":", "-."]
MARKERS = ["o", "s", "^", "v", "D", "x"]


def _plt():
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    return plt


def _by_label(rows):
    out = {}
    for r in rows:
        out.setdefault(r["label"], []).append(r)
    return out


def _style(family, i):
    return dict(color=FAMILY_COLOR.get(family, "k"), linestyle=STYLES[i % len(STYLES)],
                marker=MARKERS[i % len(MARKERS)], markersize=3.5, linewidth=1.3)


def _frontier(pts):
    """Upper-left frontier of (cost, recall) points: keep a point if no cheaper point
    has a recall at least as high."""
    pts = sorted(pts)
    out, best = [], -1.0
    for c, r in pts:
        if r > best:
            out.append((c, r))
            best = r
    return out


def pareto_eval(out, path):
    """Recall@1 (vs exact) and hit@1 (vs known truth) against % of the database evaluated."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    counters = {}
    for label, rows in _by_label(out["rows"]).items():
        fam = rows[0]["family"]
        if fam == "Exact":
            continue
        i = counters.setdefault(fam, 0)
        counters[fam] += 1
        st = _style(fam, i)
        for ax, key in zip(axes, ("r1", "hit1")):
            f = _frontier([(max(r["eval_pct"], 1e-4), r[key]) for r in rows])
            ax.plot(*zip(*f), label=label, **st)
    n = out["data"]["n"]
    for ax, key, title in zip(axes, ("r1", "hit1"), ("recall@1 vs exact search",
                                                     "hit@1 vs known true neighbour")):
        ax.set_xscale("log")
        ax.set_xlabel("% of database evaluated (unique vectors with a distance computed / N)")
        ax.set_ylabel(key)
        ax.set_title(f"{title} (N={n})")
        ax.grid(True, which="both", alpha=0.3)
        if key == "hit1":
            ax.axhline(out["data"]["exact_hit1"], color="k", lw=0.8, ls="--")
            ax.text(1e-3, out["data"]["exact_hit1"], " exact search", va="bottom", fontsize=8)
    axes[0].legend(fontsize=6.5, ncol=2, loc="lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def pareto_qps(out, path):
    """Queries/s (batch and single-query) against recall@1; Pareto front per index."""
    plt = _plt()
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    counters = {}
    for label, rows in _by_label(out["rows"]).items():
        fam = rows[0]["family"]
        i = counters.setdefault(fam, 0)
        counters[fam] += 1
        st = _style(fam, i)
        for ax, key in zip(axes, ("qps", "qps_single")):
            # frontier: for each recall, the best QPS among settings reaching it
            pts = sorted(((r["r1"], r[key]) for r in rows), key=lambda p: (-p[0], -p[1]))
            f, best = [], -1.0
            for rec, q in pts:
                if q > best:
                    f.append((rec, q))
                    best = q
            ax.plot(*zip(*f), label=label, **st)
    for ax, key in zip(axes, ("batch", "single-query")):
        ax.set_yscale("log")
        ax.set_xlabel("recall@1 (vs exact search)")
        nth = out["meta"]["threads"] if key == "batch" else 1
        ax.set_ylabel(f"queries / s ({key}, {nth} thread{'s' if nth > 1 else ''})")
        ax.set_title(f"QPS {key}, N={out['data']['n']} (shared machine: noisy)")
        ax.grid(True, which="both", alpha=0.3)
    axes[0].legend(fontsize=6.5, ncol=2, loc="lower left")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def poisson_reference(n, cells):
    """Ideal hash (N balls thrown uniformly into `cells`): share of non-empty cells and
    share of cells whose size is within a factor 2 of N/cells (density within ±1 bit)."""
    lam = n / cells
    smax = int(lam + 12 * math.sqrt(lam) + 20)
    s = np.arange(0, smax + 1)
    logp = -lam + s * math.log(lam) - np.array([math.lgamma(v + 1) for v in s])
    p = np.exp(logp)
    within = p[(s >= lam / 2) & (s <= 2 * lam) & (s >= 1)].sum()
    return float(1 - p[0]), float(within)


def _poisson_sizes(n, cells):
    lam = n / cells
    smax = int(lam + 12 * math.sqrt(lam) + 20)
    s = np.arange(1, smax + 1)
    p = np.exp(-lam + s * math.log(lam) - np.array([math.lgamma(v + 1) for v in s]))
    return s, p * cells                                         # sizes, expected cell counts


def density_hist(out, path):
    """Paper Fig. 3: bucket density rho = -log2(|bucket| / N) over non-empty buckets.
    Left: K=16 hashes (ideal density 16) with the Poisson reference of an ideal hash.
    Right: every index as the deviation rho - log2(cells) (0 = perfectly balanced),
    IVF lists included, each with its own Poisson reference (dotted)."""
    plt = _plt()
    n = out["data"]["n"]
    bal = out["balance"]
    K = out["meta"].get("hist_K", 16)
    fig, axes = plt.subplots(1, 2, figsize=(13, 5.2))
    bins = np.arange(-2, 30, 0.5)
    counters = {}
    for label, b in bal.items():
        s, c = np.asarray(b["size"], float), np.asarray(b["count"], float)
        rho = -np.log2(s / n)
        fam = b["family"]
        i = counters.setdefault(fam, 0)
        counters[fam] += 1
        st = _style(fam, i)
        empty = 100 * (1 - c.sum() / b["cells"])
        lab = f"{label} (empty {empty:.0f} %)"
        if b["cells"] == 2**K:
            axes[0].hist(rho, bins=bins, weights=100 * c / b["cells"], histtype="step",
                         color=st["color"], linestyle=st["linestyle"], lw=1.6, label=lab)
        axes[1].hist(rho - math.log2(b["cells"]), bins=bins - K, weights=100 * c / b["cells"],
                     histtype="step", color=st["color"], linestyle=st["linestyle"], lw=1.4,
                     label=lab)
    for ax, cells_list in ((axes[0], [2**K]), (axes[1], sorted({b["cells"] for b in bal.values()}))):
        for cells in cells_list:
            s, e = _poisson_sizes(n, cells)
            rho = -np.log2(s / n)
            x = rho if ax is axes[0] else rho - math.log2(cells)
            bb = bins if ax is axes[0] else bins - K
            ne, within = poisson_reference(n, cells)
            ax.hist(x, bins=bb, weights=100 * e / cells, histtype="step", color="k",
                    lw=1.0 if ax is axes[1] else 2.0, ls=":" if ax is axes[1] else "-",
                    label=(f"ideal hash, Poisson N/2^{K}={n / cells:.2f} (empty "
                           f"{100 * (1 - ne):.0f} %, {100 * within:.0f} % within ±1)"
                           if ax is axes[0] else f"ideal, {cells} cells"))
    axes[0].axvspan(K - 1, K + 1, color="y", alpha=0.15, label="K ± 1")
    axes[0].set_xlabel("bucket density  -log2(|bucket| / N)")
    axes[0].set_title(f"K={K} hashes, N={n} ({2**K} buckets)")
    axes[1].set_xlabel("density - log2(cells)  (0: bucket of exactly N / cells)")
    axes[1].set_title("all indexes incl. IVF lists")
    for ax in axes:
        ax.set_ylabel("% of cells (non-empty)")
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
    axes[0].set_xlim(0, math.log2(n) + 1)
    axes[1].set_xlim(-12, math.log2(n) - 10)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def plot_all(out, folder):
    os.makedirs(folder, exist_ok=True)
    tag = f"N{out['data']['n']}"
    paths = [pareto_eval(out, os.path.join(folder, f"recall_vs_eval_{tag}.png")),
             pareto_qps(out, os.path.join(folder, f"recall_vs_qps_{tag}.png"))]
    if out.get("balance"):
        paths.append(density_hist(out, os.path.join(folder, f"bucket_density_{tag}.png")))
    return paths


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit("usage: plots.py RESULT.json FOLDER")
    with open(sys.argv[1]) as f:
        for p in plot_all(json.load(f), sys.argv[2]):
            print(p)
