"""Candidate "no match" statistics from the rows of :mod:`bench.nomatch_features` (a study; it changes no
default): per candidate score, the threshold giving <= 1 % false matches and the hit rate there.

Thresholds are chosen on the fit seed(s) (``--fit``) and applied unchanged to the other seeds (held out);
the in-sample threshold on the held-out seeds is printed beside it. Logistic candidates are fitted on the
fit seed only (right positives = 1, negatives = 0; wrong positives left out).

    python -m bench.nomatch_fit bench/results/nomatch_features.json --fit 0
"""

import argparse
import gzip
import json
import sys

import numpy as np


def _nan(x):
    return np.array([np.nan if v is None else v for v in x], np.float64)


def stats(r: dict, floor: float = 0.6) -> dict:
    """Scalar statistics of one row (NaN where undefined)."""
    out = {"conf": r["conf"], "n_seg": r["n_seg"], "top1": r["top1"], "topk": r["topk"]}
    if "a" not in r:
        return out
    a = _nan(r["a"])
    sh = _nan(r["shift_mean"])
    ok = np.isfinite(a)
    A = float(np.mean(a[ok])) if ok.any() else 0.0
    out["A"] = A
    out["A_share"] = float(np.mean(a[ok] >= floor)) if ok.any() else 0.0
    out["A_share_n"] = float(np.sum(a[ok] >= floor) / max(len(a), 3))
    s1 = _nan(r["s1"])
    out["A_minus_s1"] = float(np.mean((a - s1)[ok])) if ok.any() else -1.0
    bg = sh[np.isfinite(sh)]
    if len(bg) >= 3:
        mu, sd = float(bg.mean()), float(bg.std(ddof=1))
        out["bg_mu"], out["bg_sd"], out["bg_max"] = mu, sd, float(bg.max())
        out["A_minus_bg"] = A - mu
        out["z_bg"] = (A - mu) / max(sd, 0.02)
        out["A_minus_bgmax"] = A - float(bg.max())
    for rad in ("0.3", "1", "_track"):
        if f"imp{rad}" not in r:
            continue
        imp = _nan(r[f"imp{rad}"])
        imp = np.where(np.isfinite(imp), imp, 0.0)
        m = np.where(ok, a - imp, 0.0)  # segments past the track's end: no evidence
        n = len(a)
        out[f"M{rad}"] = float(m.mean())
        for c in (0.1, 0.2, 0.3):
            e = np.clip(m / c, 0, 1)
            out[f"Mshare{rad}_{c}"] = float(e.sum() / max(n, 3))
            out[f"Msum{rad}_{c}"] = float(e.sum())
        out[f"logn"] = float(np.log(n))
        for f in (0.5, 0.55, 0.6, 0.65):  # the margin above a similarity floor: low similarities are no evidence
            out[f"Mf{rad}_{f}"] = float(np.where(ok, np.maximum(a, f) - np.maximum(imp, f), 0.0).mean())
    out["runner"] = r.get("runner_mean")
    if out["runner"] is not None:
        out["A_minus_runner"] = A - out["runner"]
    return out


def logistic_fit(X, y, *, l2: float = 1e-3, iters: int = 50):
    """Weights (d + 1,) of p = sigmoid(w0 + X w) by Newton's method (L2 on w, not w0)."""
    X1 = np.c_[np.ones(len(X)), X]
    w = np.zeros(X1.shape[1])
    R = l2 * np.eye(X1.shape[1])
    R[0, 0] = 0
    for _ in range(iters):
        p = 1 / (1 + np.exp(-X1 @ w))
        g = X1.T @ (p - y) + R @ w
        H = (X1 * (p * (1 - p))[:, None]).T @ X1 + R
        w -= np.linalg.solve(H, g)
    return w


def threshold_1pct(score_neg, fm: float = 0.01):
    """The lowest threshold t (among the scores) with mean(score_neg >= t) <= fm."""
    s = np.sort(np.asarray(score_neg))[::-1]
    k = int(np.floor(fm * len(s)))  # at most k negatives may reach it
    return float(np.nextafter(s[k], np.inf)) if k < len(s) else -np.inf


def rates(kinds, right, score, t):
    neg = np.array([k.startswith("ood") for k in kinds])
    fm = float(np.mean(score[neg] >= t))
    hit = float(np.mean(right[~neg] & (score[~neg] >= t)))
    per = {k: float(np.mean(right[kinds == k] & (score[kinds == k] >= t))) for k in ("clean", "noise10", "reverb+noise5")}
    return fm, hit, per


def table(data, fit_seeds, candidates):
    seeds = data["seeds"]
    test_seeds = [s for s in seeds if s not in fit_seeds]
    rows = {s: [stats(r) for r in seeds[s]] for s in seeds}
    raw = {s: seeds[s] for s in seeds}

    def arrays(ss):
        st = [x for s in ss for x in rows[s]]
        kinds = np.array([r["kind"] for s in ss for r in raw[s]])
        right = np.array([r["right"] for s in ss for r in raw[s]])
        return st, kinds, right

    out = []
    fit_st, fit_k, fit_r = arrays(fit_seeds)
    te_st, te_k, te_r = arrays(test_seeds)
    for name, fn in candidates.items():
        if isinstance(fn, tuple):  # logistic on the named statistics
            cols = fn
            Xf = np.array([[x.get(c, 0.0) if x.get(c) is not None else 0.0 for c in cols] for x in fit_st])
            neg = np.array([k.startswith("ood") for k in fit_k])
            use = neg | fit_r
            w = logistic_fit(Xf[use], fit_r[use].astype(float))
            fn = (lambda w, cols: lambda x: float(1 / (1 + np.exp(-(w[0] + sum(
                wi * (x.get(c) if x.get(c) is not None else 0.0) for wi, c in zip(w[1:], cols)))))))(w, cols)
            name = f"{name} w={np.round(w, 3).tolist()}"
        sf = np.array([fn(x) for x in fit_st])
        st_ = np.array([fn(x) for x in te_st])
        t_fit = threshold_1pct(sf[[k.startswith("ood") for k in fit_k]])
        t_in = threshold_1pct(st_[[k.startswith("ood") for k in te_k]])
        fm, hit, per = rates(te_k, te_r, st_, t_fit)
        fm2, hit2, per2 = rates(te_k, te_r, st_, t_in)
        out.append({"candidate": name, "t_fit": round(t_fit, 4), "heldout_fm": round(fm, 4), "heldout_hit": round(hit, 4),
                    "heldout_per_kind": {k: round(v, 3) for k, v in per.items()},
                    "t_in_sample": round(t_in, 4), "in_fm": round(fm2, 4), "in_hit": round(hit2, 4)})
    return out


def candidates():
    return {
        "current confidence": lambda x: x["conf"],
        "aligned mean A": lambda x: x.get("A", 0.0),
        "aligned share >= 0.6": lambda x: x.get("A_share", 0.0),
        "aligned share n>=3": lambda x: x.get("A_share_n", 0.0),
        "A - bg mean": lambda x: x.get("A_minus_bg", -1.0),
        "z vs bg": lambda x: x.get("z_bg", -10.0),
        "A - bg max": lambda x: x.get("A_minus_bgmax", -1.0),
        "A - runner": lambda x: x.get("A_minus_runner", x.get("A", 0.0)),
        "A - s1": lambda x: x.get("A_minus_s1", -1.0),
        "conf * A_share": lambda x: x["conf"] * x.get("A_share", 0.0),
        "logit conf+A": ("conf", "A"),
        "logit conf+A+bg": ("conf", "A", "bg_mu"),
        "logit A+bg+share": ("A", "bg_mu", "A_share"),
        "logit conf+A+bg+share+n": ("conf", "A", "bg_mu", "A_share", "n_seg"),
        "logit A+bgmax+runner": ("A", "bg_max", "runner"),
        **{f"margin {k}": (lambda k: lambda x: x.get(k, -1.0))(k) for k in
           ("M_track", "Mshare_track_0.1", "Mshare_track_0.2", "M0.3", "M1", "Mshare0.3_0.1", "Mshare0.3_0.2", "Mshare0.3_0.3", "Mshare1_0.2", "Msum0.3_0.2", "Msum1_0.2")},
        "logit M+logn": ("M0.3", "logn"),
        "logit Mt+logn": ("M_track", "logn"),
        "logit Mshare_t.2+logn": ("Mshare_track_0.2", "logn"),
        "logit Mshare_t.1+logn": ("Mshare_track_0.1", "logn"),
        "logit conf+Mt+logn": ("conf", "M_track", "logn"),
        "logit A+Mt+logn": ("A", "M_track", "logn"),
        "logit conf+A+Mt+logn": ("conf", "A", "M_track", "logn"),
        "logit conf+A+Mshare_t.2+logn": ("conf", "A", "Mshare_track_0.2", "logn"),
        "logit conf+A+Mshare_t.1+logn": ("conf", "A", "Mshare_track_0.1", "logn"),
        "logit A+Mshare_t.2+logn": ("A", "Mshare_track_0.2", "logn"),
        "logit Mshare.2+logn": ("Mshare0.3_0.2", "logn"),
        "logit conf+logn": ("conf", "logn"),
        "logit conf+Mshare.2+logn": ("conf", "Mshare0.3_0.2", "logn"),
        "logit conf+A+Mshare.2+logn": ("conf", "A", "Mshare0.3_0.2", "logn"),
        "logit conf+A+bg+Mshare.2+logn": ("conf", "A", "bg_mu", "Mshare0.3_0.2", "logn"),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m bench.nomatch_fit")
    p.add_argument("rows")
    p.add_argument("--fit", nargs="+", default=["0"])
    args = p.parse_args(argv)
    with (gzip.open if args.rows.endswith(".gz") else open)(args.rows, "rt") as f:
        data = json.load(f)
    for r in table(data, args.fit, candidates()):
        print(json.dumps(r))
    return 0


if __name__ == "__main__":
    sys.exit(main())
