"""The ANN benchmark on real fingerprints: the Table 1 corpus fingerprinted once by the shipped model,
distorted 1 s query windows with a known true (track, frame), every method of bench/ann_bench.py in one
process, plus FlowHash with the shipped model's own quantizer (what the database builds).

    python -m bench.fingerprint_ann --json bench/data/fingerprint_ann/ann.json \\
        --md bench/results/fingerprints.md --plots bench/plots

Data (written once under --out-dir, git-ignored, reused when present):

- ``vectors.npy`` (N, d): every 1 s window (100 ms hop) of every corpus track (bench/table1.py's
  reference cache, so Table 1 and this bench search the same fingerprints);
- ``queries.npy`` (nq, d), ``truth.npy`` (nq,): one window each, cut at a random frame of a random
  track and degraded by one eval-split condition of :mod:`faiss_flowhash.audio.distort` (steady noise
  0-20 dB, a room RT60 0.2-0.8 s, both, bursty cafe noise 0-20 dB, phone playback), in turn; truth =
  the id of that frame;
- ``positives.npy`` (N, d): row i = window i of its track after a train-split ``distort.draw`` of the
  whole track (codec part dropped: libsndfile crashes encoding minutes of audio in memory) (for the methods that learn from positives: FlowHash's flow);
- ``meta.json``: model id, corpus, conditions per query.

Then ``bench.ann_bench.run`` on those files (recall@1 vs exact, hit@1 vs truth, % evaluated, batch and
single-query QPS, bytes per vector, build time) and the floor of issue 10: FlowHash's QPS at R@1 >= 0.95
against IndexIVFFlat's best QPS at R@1 >= 0.95.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
import time
from types import SimpleNamespace

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))

__all__ = ["main", "build_data", "qps_floor", "QUERY_CONDITIONS"]

QUERY_CONDITIONS = ("noise", "reverb", "noise+reverb", "bursty", "phone")


def log(msg):
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def build_data(args, fp):
    """Write (or reuse) vectors / queries / truth / positives .npy under ``args.out_dir``; returns their paths."""
    from faiss_flowhash.audio import distort

    from bench.table1 import corpus_tracks, reference

    os.makedirs(args.out_dir, exist_ok=True)
    paths = {k: os.path.join(args.out_dir, f"{k}.npy") for k in ("vectors", "queries", "truth", "positives")}
    meta_path = os.path.join(args.out_dir, "meta.json")
    if all(os.path.exists(p) for p in paths.values()) and os.path.exists(meta_path):
        meta = json.load(open(meta_path))
        if meta.get("model_id") == fp.model_id and meta.get("nq") == args.nq and meta.get("seed") == args.seed:
            log(f"fingerprint data from {args.out_dir}")
            return paths, meta
    targs = SimpleNamespace(corpus=args.corpus, quick=False, max_hours=None, cache_dir=args.cache_dir)
    names, load = corpus_tracks(targs)
    x, counts, samples, ingest, ref_path = reference(targs, names, load, fp)
    first = np.cumsum(counts) - counts
    rng = np.random.default_rng(np.random.SeedSequence([args.seed, 0x616E6E]))
    # queries: tracks in proportion to their windows, a uniform frame, conditions in turn
    t_q = rng.choice(len(counts), size=args.nq, p=counts / counts.sum())
    f_q = rng.integers(0, counts[t_q])
    conds = [QUERY_CONDITIONS[i % len(QUERY_CONDITIONS)] for i in range(args.nq)]
    hop = int(round(fp.hop_s * fp.sample_rate))
    win = int(round(fp.window_s * fp.sample_rate))
    q = np.zeros((args.nq, x.shape[1]), np.float32)
    pos = np.zeros_like(x)
    specs = []
    t0 = time.perf_counter()
    for t in range(len(counts)):
        wave = load(t)
        for i in np.flatnonzero(t_q == t):
            d = distort.condition(conds[i], rng, snr_db=float(rng.uniform(0, 20)), split="eval")
            e = fp.fingerprint(distort.render(wave, d, start=int(f_q[i]) * hop, length=win))
            q[i] = e[0]
            specs.append((int(i), d.describe()))
        # no codec on a whole track: libsndfile's in-memory MP3/Opus write segfaults on minutes of audio
        dp = dataclasses.replace(distort.draw(rng, "train"), codec=None)
        ep = fp.fingerprint(distort.render(wave, dp, start=0, length=len(wave)))
        if len(ep) != counts[t]:
            raise RuntimeError(f"track {t}: {len(ep)} positive windows for {counts[t]} reference windows")
        pos[first[t]:first[t] + counts[t]] = ep
        if (t + 1) % 10 == 0:
            log(f"queries and positives of {t + 1}/{len(counts)} tracks ({time.perf_counter() - t0:.0f} s)")
    np.save(paths["vectors"], x)
    np.save(paths["queries"], q)
    np.save(paths["truth"], (first[t_q] + f_q).astype(np.int64))
    np.save(paths["positives"], pos)
    meta = {"model_id": fp.model_id, "nq": args.nq, "seed": args.seed, "n": int(len(x)), "d": int(x.shape[1]),
            "n_tracks": len(names), "audio_h": float(samples.sum() / fp.sample_rate / 3600),
            "corpus": os.path.relpath(args.corpus, os.path.dirname(HERE)), "reference_cache": ref_path,
            "query_conditions": list(QUERY_CONDITIONS), "queries_by_condition": {c: conds.count(c) for c in QUERY_CONDITIONS},
            "render_s": time.perf_counter() - t0, "ingest": ingest,
            "query_specs": [s for _, s in sorted(specs)]}
    json.dump(meta, open(meta_path, "w"), indent=1, default=float)
    log(f"fingerprint data: N={len(x)} d={x.shape[1]}, {args.nq} queries -> {args.out_dir}")
    return paths, meta


class ShippedFlowHash:
    """FlowHashIndex with the shipped model's own quantizer (no training here), at the index defaults
    otherwise: what ``FingerprintDB`` builds. Same interface as bench.baselines.FlowHash (default mode)."""

    family = "FlowHash"

    def __init__(self, quantizer, nprobes=(1, 2, 4, 8, 16, 32, 64, 128, 256, 512), max_probe_bits=None,
                 max_probes=None):
        from bench.baselines import FlowHash

        self._fh = FlowHash(0, nprobes=nprobes)  # d is read from the data at build time
        self.quantizer = quantizer
        # None: the index's defaults; else the proposal set (bits that may flip, proposals ranked)
        self.kw = {k: v for k, v in (("max_probe_bits", max_probe_bits), ("max_probes", max_probes)) if v is not None}

    def builds(self, ds):
        import faiss_flowhash as ffh

        from bench.baselines import _f32

        index = ffh.FlowHashIndex(ds.x.shape[1], quantizer=self.quantizer, **self.kw)
        index.verbose = False
        self._fh.index = index
        t1 = time.perf_counter()
        index.add(_f32(ds.x))
        add_s = time.perf_counter() - t1
        tag = "".join(f" {'bits' if k == 'max_probe_bits' else 'props'}{v}" for k, v in self.kw.items())
        yield dict(label=f"FlowHash K{index.K} shipped flow{tag}", params=dict(K=index.K, quantizer="shipped", **self.kw),
                   train_s=0.0, add_s=add_s, extra=self._fh._diagnostics(ds))

    def bucket_sizes(self):
        return self._fh.bucket_sizes()

    def search_grid(self):
        return self._fh.search_grid()

    def search(self, q, k, **sp):
        return self._fh.search(q, k, **sp)

    def memory_bytes(self):
        return self._fh.memory_bytes()


def qps_floor(rows, target=0.95, ratio=0.5):
    """Issue 10's floor on these rows: FlowHash's best QPS (any FlowHash build, default probing) at
    R@1 >= ``target`` against IndexIVFFlat's best at the same recall, batch and single-query.
    Returns {"batch"/"single": {"flowhash", "ivf", "ratio", "met", "flowhash_setting", "ivf_setting"}}."""
    out = {}
    for key, name in (("qps", "batch"), ("qps_single", "single")):
        def best(fam):
            ok = [r for r in rows if r["family"] == fam and r["r1"] >= target]
            return max(ok, key=lambda r: r[key]) if ok else None
        f, v = best("FlowHash"), best("IVFFlat")
        res = {"flowhash": f[key] if f else None, "ivf": v[key] if v else None,
               "flowhash_setting": (f["label"], f["search"], f["r1"], f["eval_pct"]) if f else None,
               "ivf_setting": (v["label"], v["search"], v["r1"], v["eval_pct"]) if v else None}
        res["ratio"] = (f[key] / v[key]) if f and v else None
        res["met"] = bool(res["ratio"] is not None and res["ratio"] >= ratio)
        out[name] = res
    return out


def floor_lines(floor, target=0.95):
    lines = [f"**Floor (issue 10): FlowHash QPS at R@1 >= {target} >= 0.5x IndexIVFFlat's best on real fingerprints**", ""]
    for name, r in floor.items():
        if r["flowhash"] is None or r["ivf"] is None:
            who = "FlowHash" if r["flowhash"] is None else "IVFFlat"
            lines.append(f"- {name}: **not met** ({who} never reaches R@1 {target})")
            continue
        fl, iv = r["flowhash_setting"], r["ivf_setting"]
        lines.append(f"- {name}: FlowHash {r['flowhash']:,.0f} q/s ({fl[0]}, {fl[1]}, R@1 {fl[2]:.3f}, eval {fl[3]:.3f} %) vs "
                     f"IVFFlat {r['ivf']:,.0f} q/s ({iv[0]}, {iv[1]}, R@1 {iv[2]:.3f}, eval {iv[3]:.3f} %): "
                     f"{r['ratio']:.2f}x -> **{'met' if r['met'] else 'not met'}**")
    return lines


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--corpus", default=os.path.join(HERE, "data", "corpus"))
    p.add_argument("--cache-dir", default=os.path.join(HERE, "data", "table1"), help="reference fingerprints cache (shared with table1)")
    p.add_argument("--out-dir", default=os.path.join(HERE, "data", "fingerprint_ann"), help="the .npy data set")
    p.add_argument("--model", default=None, help="fingerprint model (default: the shipped model)")
    p.add_argument("--nq", type=int, default=2000)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--n-single", type=int, default=200)
    p.add_argument("--min-time", type=float, default=0.3)
    p.add_argument("--nlists", default="64,256,1024,4096")
    p.add_argument("--fh-K", default="16", help="FlowHash code bits trained here, comma list ('auto': K=None, "
                   "chosen from the training set)")
    p.add_argument("--fh-proposals", default="default", help="FlowHash proposal sets bits:probes (bench.ann_bench)")
    p.add_argument("--fh-nprobes", default=None, help="FlowHash nprobe sweep (bench.ann_bench)")
    p.add_argument("--fh-small-budgets", default="", help="FlowHash cells scanning this many vectors (bench.ann_bench)")
    p.add_argument("--fh-rq", default="0.5,1.0,1.25,1.5,2.0", help="paper mode: query radii r~")
    p.add_argument("--methods", default=None, help="comma list of ann_bench families (exact always runs)")
    p.add_argument("--no-shipped", action="store_true", help="skip FlowHash with the shipped model's quantizer")
    p.add_argument("--shipped-variants", default="16:4096",
                   help="more shipped-flow builds, comma list of max_probe_bits:max_probes ('' for none); "
                        "the index defaults always run")
    p.add_argument("--data-only", action="store_true", help="write the .npy files and stop")
    p.add_argument("--json", default=None)
    p.add_argument("--md", default=None, help="write/replace the section '## ANN benchmark on real fingerprints'")
    p.add_argument("--plots", default=None, help="folder: recall_vs_qps_fingerprints.png, fingerprints_recall_vs_eval.png")
    p.add_argument("--replot", default=None, metavar="JSON",
                   help="draw the --plots from this saved run (its --json) and stop: no data, no search")
    p.add_argument("--plot-only", default=None, metavar="REGEX",
                   help="plot only the indexes whose label matches this regular expression (the JSON keeps all)")
    return p.parse_args(argv)


def _draw(out, args, plots, log):
    """The two figures of a run into args.plots, keeping the labels that match args.plot_only."""
    if args.plot_only:
        keep = re.compile(args.plot_only)
        out = dict(out, rows=[r for r in out["rows"] if keep.search(r["label"])])
    os.makedirs(args.plots, exist_ok=True)
    for f, name in ((plots.pareto_qps, "recall_vs_qps_fingerprints.png"),
                    (plots.pareto_eval, "fingerprints_recall_vs_eval.png")):
        log(f"wrote {f(out, os.path.join(args.plots, name))}")


def main(argv=None):
    args = parse_args(argv)
    if args.replot:
        from bench import plots

        if not args.plots:
            raise SystemExit("--replot needs --plots FOLDER")
        with open(args.replot) as f:
            _draw(json.load(f), args, plots, log)
        return 0
    import faiss
    import torch

    from faiss_flowhash.audio import Fingerprinter

    from bench import ann_bench, plots

    torch.set_num_threads(1)
    faiss.omp_set_num_threads(args.threads)
    fp = Fingerprinter.load(args.model)
    paths, meta = build_data(args, fp)
    if args.data_only:
        return 0
    ann_argv = ["--vectors", paths["vectors"], "--queries", paths["queries"], "--truth", paths["truth"],
                "--positives", paths["positives"], "--nlists", args.nlists, "--fh-K", args.fh_K,
                "--fh-r", "1.0", "--fh-rq", args.fh_rq, "--fh-budget", "", "--threads", str(args.threads),
                "--n-single", str(args.n_single), "--min-time", str(args.min_time), "--seed", str(args.seed),
                "--keep-going"]
    if args.methods:
        ann_argv += ["--methods", args.methods]
    ann_argv += ["--fh-proposals", args.fh_proposals] + (["--fh-nprobes", args.fh_nprobes] if args.fh_nprobes else [])
    ann_argv += ["--fh-small-budgets", args.fh_small_budgets] if args.fh_small_budgets else []
    aargs = ann_bench.parse_args(ann_argv)
    extra = []
    if not args.no_shipped:
        extra.append(("FlowHash", lambda: ShippedFlowHash(fp.quantizer)))
        for v in filter(None, args.shipped_variants.split(",")):
            b, m = (int(t) for t in v.split(":"))
            extra.append(("FlowHash", lambda b=b, m=m: ShippedFlowHash(fp.quantizer, max_probe_bits=b, max_probes=m)))
    out = ann_bench.run(aargs, extra_specs=extra)
    cmd = "python -m bench.fingerprint_ann " + " ".join(sys.argv[1:] if argv is None else argv)
    out["meta"]["command"] = cmd
    out["data"]["name"] = (f"real fingerprints: {meta['n_tracks']} tracks ({meta['audio_h']:.2f} h) of {meta['corpus']}, "
                           f"model {meta['model_id']}; queries = 1 s windows under "
                           + ", ".join(f"{c} ({n})" for c, n in meta["queries_by_condition"].items()))
    out["fingerprint_meta"] = {k: v for k, v in meta.items() if k != "query_specs"}
    out["floor"] = qps_floor(out["rows"])
    print(ann_bench.headline(out["rows"]))
    for line in floor_lines(out["floor"]):
        log(line)
    if args.json:
        ann_bench._dump(out, args.json)
        log(f"wrote {args.json}")
    if args.plots:
        _draw(out, args, plots, log)
    if args.md:
        body = "\n".join(floor_lines(out["floor"]) + ["", ann_bench.markdown(out)])
        ann_bench.write_md_section(args.md, body, heading="## ANN benchmark on real fingerprints")
        log(f"wrote section '## ANN benchmark on real fingerprints' of {args.md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
