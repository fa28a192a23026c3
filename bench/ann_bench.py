"""ANN benchmark: FlowHash against FAISS baselines on the same vectors, in one process.

Examples::

    python -m bench.ann_bench --quick --json bench/out/quick.json
    python -m bench.ann_bench --n 200000 --nq 1000 --json bench/out/ann_200k.json \\
        --plots bench/plots --md bench/RESULTS.md
    python -m bench.ann_bench --vectors fp.npy [--queries q.npy --truth t.npy] [--positives p.npy]

Metrics per configuration (means over the queries):
  R@1      exact search's top-1 is returned at rank 1
  R@10     exact search's top-1 is among the 10 returned (FAISS's 1-recall@10)
  hit@1    the known true neighbour (source of the distorted query) is at rank 1
  eval%    unique database vectors with a distance computed / N (the paper's eval);
           IndexLSH computes a Hamming distance to every code, so it is 100 %
  cand     vectors scored exactly per query (HNSW: distance computations)
  probes   buckets / inverted lists probed (HNSW: graph hops)
  QPS      batch (all queries in one call, --threads threads) and single (one query per
           call, one thread); best of repeated runs (the machine may be shared)
  B/vec    index memory / N (vectors + structure)
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import platform
import subprocess
import sys
import time

import numpy as np

import faiss

from bench import baselines as B
from bench import datasets

__all__ = ["main", "run"]

# --- configuration of the sweeps ------------------------------------------------------


def method_specs(args, d, n):
    """List of (family, constructor) to run, in order."""
    quick = args.quick
    specs = [("Exact", lambda: B.Exact(d))]
    for nb in ([64, 256] if quick else [64, 128, 256, 512]):
        specs.append(("IndexLSH", lambda nb=nb: B.FaissLSH(d, nb)))
    lsh_k = [12] if quick else [16]
    lsh_l = [1, 4] if quick else [1, 4, 8]
    for K in lsh_k:
        for L in lsh_l:
            specs.append(("MP-LSH", lambda K=K, L=L: B.MultiProbeLSH(d, K, L, "random")))
    for K in (lsh_k if quick else [16, 20]):
        specs.append(("PCA-sign", lambda K=K: B.MultiProbeLSH(d, K, 1, "pca")))
    nlists = [256] if quick else [int(v) for v in args.nlists.split(",")]
    for nl in nlists:
        specs.append(("IVFFlat", lambda nl=nl: B.IVFFlat(d, nl)))
    specs.append(("HNSWFlat", lambda: B.HNSWFlat(d, M=16 if quick else 32,
                                                 efs=(16, 64, 256) if quick else
                                                 (16, 32, 64, 128, 256, 512))))
    Ks = [None if v == "auto" else int(v) for v in args.fh_K.split(",")]  # "auto": K from the training set
    rs = [float(v) for v in args.fh_r.split(",")]
    rqs = [float(v) for v in args.fh_rq.split(",")]
    budgets = [None] + [int(float(f) * n) for f in args.fh_budget.split(",") if f]
    cfg = dict(seed=args.seed)
    if args.fh_steps:
        cfg["steps"] = args.fh_steps
    if args.fh_config:
        cfg.update(json.loads(args.fh_config))
    for K in Ks:
        planners = tuple(v for v in args.fh_planners.split(",") if v)
        # "all" probes every code of the bits (max_probes=None) / keeps every proposed list (nprobe=None):
        # "16:all" with nprobe "all" is exact search by construction
        proposals = tuple(None if v == "default" else tuple(t if t == "all" else int(t) for t in v.split(":"))
                          for v in args.fh_proposals.split(",") if v)
        nprobes = {} if not args.fh_nprobes else dict(nprobes=tuple(None if v == "all" else int(v)
                                                                    for v in args.fh_nprobes.split(",")))
        small = tuple(int(v) for v in args.fh_small_budgets.split(",") if v)
        specs.append(("FlowHash", lambda K=K: B.FlowHash(d, K, config_kw=cfg, seed=args.seed, planners=planners,
                                                         proposals=proposals, small_budgets=small, **nprobes)))
        if not args.no_paper and (K is not None or len(Ks) == 1):
            specs.append(("FlowHash-paper", lambda K=K: B.FlowHash(d, K, rs=rs, r_queries=rqs, budgets=budgets,
                                                                   config_kw=cfg, seed=args.seed, mode="paper")))
    order = ["Exact", "IVFFlat", "HNSWFlat", "FlowHash", "FlowHash-paper", "MP-LSH", "PCA-sign", "IndexLSH"]
    specs.sort(key=lambda s: order.index(s[0]))      # stable: the key comparisons first
    if args.methods:
        keep = {m.strip().lower() for m in args.methods.split(",")}
        specs = [s for s in specs if s[0].lower() in keep or s[0] == "Exact"]
    return specs


# --- measurement ----------------------------------------------------------------------


def recall_metrics(I, gt, truth):
    """I: (nq, k) results; gt: (nq, >=1) exact ids; truth: (nq,) known true ids (-1 none)."""
    r1 = float(np.mean(I[:, 0] == gt[:, 0]))
    r10 = float(np.mean((I[:, :10] == gt[:, :1]).any(1)))
    inter10 = float(np.mean([len(np.intersect1d(a[:10], b[:10])) / 10 for a, b in zip(I, gt)]))
    ok = truth >= 0
    hit1 = float(np.mean(I[ok, 0] == truth[ok])) if ok.any() else float("nan")
    hit10 = float(np.mean((I[ok, :10] == truth[ok, None]).any(1))) if ok.any() else float("nan")
    return dict(r1=r1, r10=r10, inter10=inter10, hit1=hit1, hit10=hit10)


def _best_time(fn, min_time, first=None, max_runs=5):
    """Best wall time of fn() over repeats (at least one, more until min_time is spent):
    the best run is the least disturbed by the other processes of a shared machine."""
    best, total, runs = first if first is not None else float("inf"), first or 0.0, int(first is not None)
    while runs < 1 or (total < min_time and runs < max_runs):
        t0 = time.perf_counter()
        fn()
        dt = time.perf_counter() - t0
        best, total, runs = min(best, dt), total + dt, runs + 1
    return best


@contextlib.contextmanager
def one_thread(threads):
    """Single-query timing runs on one thread (faiss OpenMP, torch, BLAS): latency per
    core, as when a server answers concurrent requests; restores `threads` after."""
    import torch
    faiss.omp_set_num_threads(1)
    torch.set_num_threads(1)
    try:
        from threadpoolctl import threadpool_limits
        lim = threadpool_limits(1)
    except ImportError:  # optional: BLAS keeps its threads
        lim = None
    try:
        yield
    finally:
        if lim is not None:
            lim.restore_original_limits()
        faiss.omp_set_num_threads(threads)
        torch.set_num_threads(threads)


def timed_search(m, q, k, sp, n_single, min_time=0.5, threads=2):
    """Search all queries (results + batch QPS, `threads` threads), then n_single queries
    one per call on one thread (single-query QPS)."""
    t0 = time.perf_counter()
    D, I, st = m.search(q, k, **sp)
    dt = _best_time(lambda: m.search(q, k, **sp), min_time, first=time.perf_counter() - t0)
    ns = min(n_single, q.shape[0])

    def single():
        for i in range(ns):
            m.search(q[i:i + 1], k, **sp)
    with one_thread(threads):
        ds = _best_time(single, min_time) if ns else float("nan")
    return D, I, st, q.shape[0] / dt, ns / ds


def size_hist(sizes):
    """Compact histogram of bucket sizes: {"size": [...], "count": [...]}."""
    s, c = np.unique(np.asarray(sizes, dtype=np.int64), return_counts=True)
    return dict(size=s.tolist(), count=c.tolist())


def run(args, extra_specs=()):
    """All methods of ``method_specs`` (then ``extra_specs``: more (family, constructor) pairs) on one
    data set, in this process."""
    faiss.omp_set_num_threads(args.threads)
    try:
        import torch
        torch.set_num_threads(args.threads)
    except ImportError:
        pass
    t_start = time.time()
    load0 = os.getloadavg()
    if args.vectors:
        ds = datasets.load_vectors(args.vectors, args.queries, args.truth,
                                   positives=args.positives, nq=args.nq,
                                   n_train=args.n_train, seed=args.seed)
    else:
        ds = datasets.make_synthetic(args.n, args.nq, n_train=args.n_train, seed=args.seed)
    n, d = ds.x.shape
    log(f"data {ds.name}: N={n} d={d} nq={ds.q.shape[0]} train={ds.x_train.shape[0]} "
        f"({time.time() - t_start:.1f} s)")
    k = 10
    gt_index = faiss.IndexFlatIP(d)
    gt_index.add(ds.x)
    _, gt = gt_index.search(ds.q, k)
    del gt_index
    exact_hit = recall_metrics(gt, gt, ds.truth)
    log(f"exact search: hit@1 {exact_hit['hit1']:.3f} hit@10 {exact_hit['hit10']:.3f} "
        f"(known true neighbour)")

    ok_fh, why_fh = B.flowhash_available()
    rows, builds, skipped, balance = [], [], [], {}
    for family, make in method_specs(args, d, n) + list(extra_specs):
        if family.startswith("FlowHash") and not ok_fh:
            skipped.append(dict(family=family, reason=why_fh))
            log(f"FlowHash skipped: {why_fh}")
            continue
        m = make()
        try:
            for b in m.builds(ds):
                mem = m.memory_bytes()
                binfo = dict(family=family, label=b["label"], params=b["params"],
                             train_s=b["train_s"], add_s=b["add_s"], bytes_per_vec=mem / n,
                             extra=b.get("extra", {}))
                builds.append(binfo)
                log(f"built {b['label']}: train {b['train_s']:.1f} s, add {b['add_s']:.1f} s, "
                    f"{mem / n:.0f} B/vec")
                _collect_balance(m, family, b, balance, args.hist_K)
                for sp in m.search_grid():
                    D, I, st, qps, qps1 = timed_search(m, ds.q, k, sp, args.n_single,
                                                       args.min_time, args.threads)
                    label = b["label"] + (m.variant_label(sp) if hasattr(m, "variant_label") else "")
                    row = dict(family=family, label=label, build=b["params"], search=sp,
                               **recall_metrics(I, gt, ds.truth),
                               eval_pct=100.0 * st["touched"] / n,
                               exact_pct=100.0 * st["candidates"] / n,
                               candidates=st["candidates"], probes=st["probes"],
                               qps=qps, qps_single=qps1, train_s=b["train_s"],
                               add_s=b["add_s"], bytes_per_vec=mem / n)
                    rows.append(row)
                    log("  " + fmt_row(row))
        except Exception as e:  # a broken method must not hide the others' results
            if not args.keep_going:
                raise
            skipped.append(dict(family=family, reason=f"{type(e).__name__}: {e}"))
            log(f"{family} FAILED: {type(e).__name__}: {e}")
        del m
        if args.json:  # checkpoint: a long run killed later still leaves its results
            _dump(_result(args, ds, rows, builds, skipped, balance, exact_hit, t_start, load0),
                  args.json + ".partial")
    return _result(args, ds, rows, builds, skipped, balance, exact_hit, t_start, load0)


def _dump(out, path):
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w") as f:
        json.dump(out, f, indent=1, default=float)


def _result(args, ds, rows, builds, skipped, balance, exact_hit, t_start, load0):
    n, d = ds.x.shape
    out = dict(
        meta=dict(date=datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
                  command="python -m bench.ann_bench " + " ".join(sys.argv[1:]), machine=machine_info(),
                  threads=args.threads, hist_K=args.hist_K, loadavg_start=load0, loadavg_end=os.getloadavg(),
                  seconds=time.time() - t_start, git=git_rev()),
        data=dict(name=ds.name, n=n, d=d, nq=int(ds.q.shape[0]), n_train=int(ds.x_train.shape[0]),
                  info=ds.info, exact_hit1=exact_hit["hit1"], exact_hit10=exact_hit["hit10"]),
        methods=sorted({r["family"] for r in rows}), skipped=skipped,
        builds=builds, rows=rows, balance=balance,
    )
    return out


def _collect_balance(m, family, b, balance, hist_K):
    """Bucket / list sizes of the build, for the density histogram (K=hist_K hashes, IVF)."""
    try:
        if family in ("FlowHash", "PCA-sign", "MP-LSH"):
            if b["params"].get("K") != hist_K or b["label"] in balance:
                return
            if family == "MP-LSH" and b["params"].get("L") != 1:
                return
            if family == "FlowHash-paper":
                return
            sizes, cells = m.bucket_sizes(), 2**hist_K
        elif family == "IVFFlat":
            sizes, cells = m.list_sizes(), b["params"]["nlist"]
        else:
            return
        balance[b["label"]] = dict(family=family, cells=cells, **size_hist(sizes))
    except Exception as e:  # balance is a side product; report and go on
        log(f"balance of {b['label']} unavailable: {type(e).__name__}: {e}")


# --- reporting ------------------------------------------------------------------------


def log(msg):
    print(msg, file=sys.stderr, flush=True)


def fmt_sp(sp):
    return " ".join(f"{k}={'-' if v is None else v}" for k, v in sp.items()) or "-"


HEADER = ("| method | search params | R@1 | R@10 | hit@1 | eval % | cand/q | probes/q | QPS batch "
          "| QPS single | B/vec | train s | add s |")


def fmt_row(r):
    return (f"{r['label']:<22} {fmt_sp(r['search']):<24} R@1 {r['r1']:.3f} R@10 {r['r10']:.3f} "
            f"hit@1 {r['hit1']:.3f} eval {r['eval_pct']:.3f}% cand {r['candidates']:.0f} "
            f"probes {r['probes']:.0f} QPS {r['qps']:.0f}/{r['qps_single']:.0f}")


def md_row(r):
    return (f"| {r['label']} | {fmt_sp(r['search'])} | {r['r1']:.3f} | {r['r10']:.3f} | "
            f"{r['hit1']:.3f} | {r['eval_pct']:.3f} | {r['candidates']:.0f} | {r['probes']:.0f} | "
            f"{r['qps']:.0f} | {r['qps_single']:.0f} | {r['bytes_per_vec']:.0f} | "
            f"{r['train_s']:.1f} | {r['add_s']:.1f} |")


def table(rows):
    lines = [HEADER, "|" + "|".join(["---"] * (HEADER.count("|") - 1)) + "|"]
    lines += [md_row(r) for r in rows]
    return "\n".join(lines)


def best_at(rows, target, key="r1"):
    """Per build label: the row with the smallest eval% and the row with the largest batch
    QPS among rows with recall >= target. Returns {label: (row_min_eval, row_max_qps)}."""
    out = {}
    for r in rows:
        if r[key] < target:
            continue
        a, b = out.get(r["label"], (None, None))
        if a is None or r["eval_pct"] < a["eval_pct"]:
            a = r
        if b is None or r["qps"] > b["qps"]:
            b = r
        out[r["label"]] = (a, b)
    return out


def headline(rows, targets=(0.9, 0.95, 0.99)):
    lines = []
    for t in targets:
        best = best_at(rows, t)
        lines.append(f"\n**R@1 >= {t}** (per index: fewest vectors evaluated / fastest batch "
                     f"setting; '—' = never reached)\n")
        lines.append("| method | setting (min eval) | eval % | R@1 | hit@1 | setting (max QPS) "
                     "| QPS batch | QPS single | B/vec | build s |")
        lines.append("|" + "|".join(["---"] * 10) + "|")
        for label in dict.fromkeys(r["label"] for r in rows):
            if label not in best:
                fam = next(r for r in rows if r["label"] == label)
                top = max((r for r in rows if r["label"] == label), key=lambda r: r["r1"])
                lines.append(f"| {label} | — (best R@1 {top['r1']:.3f} at eval "
                             f"{top['eval_pct']:.3f} %) | | | | | | | "
                             f"{fam['bytes_per_vec']:.0f} | "
                             f"{fam['train_s'] + fam['add_s']:.1f} |")
                continue
            a, b = best[label]
            lines.append(f"| {label} | {fmt_sp(a['search'])} | {a['eval_pct']:.3f} | {a['r1']:.3f} "
                         f"| {a['hit1']:.3f} | {fmt_sp(b['search'])} | {b['qps']:.0f} | "
                         f"{b['qps_single']:.0f} | {a['bytes_per_vec']:.0f} | "
                         f"{a['train_s'] + a['add_s']:.1f} |")
    return "\n".join(lines)


def balance_table(balance, n):
    lines = ["| index | cells | non-empty % | within ±1 of ideal density (% of cells) | "
             "max / mean | largest bucket (% of N) |", "|---|---|---|---|---|---|"]
    for label, b in balance.items():
        s, c = np.asarray(b["size"]), np.asarray(b["count"])
        cells = b["cells"]
        mean = n / cells
        within = c[(s >= mean / 2) & (s <= 2 * mean)].sum() / cells
        lines.append(f"| {label} | {cells} | {100 * c.sum() / cells:.1f} | {100 * within:.1f} | "
                     f"{s.max() / mean:.1f} | {100 * s.max() / n:.3f} |")
    # ideal: Poisson(N / cells) occupancy for each distinct cell count
    from bench.plots import poisson_reference
    for cells in sorted({b["cells"] for b in balance.values()}):
        ne, within = poisson_reference(n, cells)
        lines.append(f"| ideal (Poisson, N/cells={n / cells:.2f}) | {cells} | {100 * ne:.1f} | "
                     f"{100 * within:.1f} | — | — |")
    return "\n".join(lines)


def flowhash_table(builds):
    rows = [b for b in builds if b["family"].startswith("FlowHash")]
    if not rows:
        return ""
    lines = ["| build | train s | add s | B/vec | table entries / vector | empty buckets % "
             "| within K±1 % (ideal) | max/mean | encode µs/query batch / single |",
             "|" + "|".join(["---"] * 9) + "|"]
    for b in rows:
        e = b.get("extra", {})
        bal = e.get("balance", {})
        lines.append(
            f"| {b['label']} | {b['train_s']:.1f} | {b['add_s']:.1f} | {b['bytes_per_vec']:.0f} | "
            f"{e.get('entries_per_vec', float('nan')):.2f} | "
            f"{100 * bal.get('empty_share', float('nan')):.1f} | "
            f"{100 * bal.get('within_k1_share', float('nan')):.1f} "
            f"({100 * bal.get('within_k1_share_ideal', float('nan')):.1f}) | "
            f"{bal.get('max_over_mean', float('nan')):.1f} | "
            f"{e.get('encode_us_batch', float('nan')):.0f} / "
            f"{e.get('encode_us_single', float('nan')):.0f} |")
    return "\n".join(lines)


METHOD_NOTES = """\
How to read (definitions in `bench/ann_bench.py`):
* **R@1** = exact search's top-1 returned at rank 1; **R@10** = it is among the 10 returned
  (FAISS 1-recall@10); **hit@1** = the known source of the distorted query at rank 1 (the
  paper's top-1 recall; exact search's own hit@1 is the ceiling).
* **eval %** = unique database vectors with a distance computed / N, per query (the paper's
  eval). IndexLSH computes a Hamming distance to every code, so it is 100 % whatever its
  re-ranking depth; HNSW counts graph distance computations; IVF counts the vectors of the
  probed lists (the nlist centroid distances are extra); hash indexes count de-duplicated
  candidates.
* **probes/q** = buckets looked up (hash indexes: tables x probes), lists (IVF), hops (HNSW).
* **QPS batch** = all queries in one call, 2 threads; **QPS single** = one query per call on
  one thread (faiss, torch and BLAS limited to 1 thread). Best of repeated runs.
* **B/vec** = whole index (vectors + structure) / N; all indexes here keep float32 vectors
  (IndexLSH without re-ranking keeps codes only, but its rows with re-ranking need them).
* **build s** = train + add. FlowHash trains its quantizer once per K; each r is a re-add.
* Baselines: `IndexLSH` (faiss, random rotation, nbits sweep, re-rank depth sweep);
  `MP-LSH` (random-hyperplane K-bit codes in L hash tables, multi-probe by flip cost,
  exact re-ranking: the bucketed LSH the paper compares against, numpy tables);
  `PCA-sign` (sign of the top-K principal components, one table, same probing: FlowHash
  without the learned projection and flow); `IVFFlat` (faiss k-means on the database;
  nlist > 8192 by two-level k-means with an HNSW coarse quantizer); `HNSWFlat` (M=32,
  efConstruction=40). MP-LSH, PCA-sign and FlowHash run numpy/torch code around faiss
  kernels; IVF, HNSW and IndexLSH run entirely in faiss C++.
"""


def markdown(out, notes=None):
    m, dta = out["meta"], out["data"]
    s = [f"Run {m['date']} on {m['machine']}, {m['threads']} threads "
         f"(load average {m['loadavg_start'][0]:.1f} at start, {m['loadavg_end'][0]:.1f} at end on "
         f"{os.cpu_count()} cores: the machine is shared, so absolute QPS and build times are "
         f"noisy and slower than on an idle machine; compare methods within a run), git {m['git']}, "
         f"{m['seconds'] / 60:.1f} min in all.", "",
         f"Command: `{m['command']}`", "",
         f"Data: {dta['name']}, N={dta['n']}, d={dta['d']}, {dta['nq']} queries, "
         f"{dta['n_train']} training vectors. Exact search finds the known true neighbour "
         f"at rank 1 for {100 * dta['exact_hit1']:.1f} % of the queries "
         f"(top 10: {100 * dta['exact_hit10']:.1f} %).", ""]
    s += [METHOD_NOTES, ""]
    if out["skipped"]:
        s += ["Skipped: " + "; ".join(f"{x['family']} ({x['reason']})" for x in out["skipped"]), ""]
    s += ["### Headline: each index at its best setting for a recall target", "",
          headline(out["rows"]), ""]
    if notes:
        s += [open(notes).read().rstrip(), ""]
    fh = flowhash_table(out["builds"])
    if fh:
        s += ["### FlowHash builds", "", fh, ""]
    s += [
          "### Bucket balance (primary assignment)", "", balance_table(out["balance"], dta["n"]),
          "", "### All configurations", "", table(out["rows"]), ""]
    return "\n".join(s)


def write_md_section(path, body, heading="## ANN benchmark"):
    """Replace (or append) the section `heading` of `path`, keeping everything else."""
    text = open(path).read() if os.path.exists(path) else "# Results\n"
    lines = text.splitlines()
    start = next((i for i, l in enumerate(lines) if l.strip() == heading), None)
    new = [heading, "", *body.splitlines()]
    if start is None:
        lines += ["", *new]
    else:
        end = next((i for i in range(start + 1, len(lines)) if lines[i].startswith("## ")),
                   len(lines))
        lines = lines[:start] + new + ([""] if end < len(lines) else []) + lines[end:]
    with open(path, "w") as f:
        f.write("\n".join(lines).rstrip() + "\n")


def machine_info():
    cpu = platform.processor() or ""
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    import torch  # noqa: F401  (version only)
    return (f"{cpu}, {os.cpu_count()} cores, {platform.system()} {platform.release()}, "
            f"Python {platform.python_version()}, faiss {faiss.__version__}, "
            f"numpy {np.__version__}, torch {sys.modules['torch'].__version__}")


def git_rev():
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True,
                              text=True, cwd=os.path.dirname(os.path.abspath(__file__)),
                              timeout=10).stdout.strip() or "?"
    except Exception:
        return "?"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="small run (N=20k, few settings) that finishes in < 2 min on 2 cores")
    p.add_argument("--n", type=int, default=200_000, help="database size (synthetic)")
    p.add_argument("--nq", type=int, default=1000, help="number of queries")
    p.add_argument("--n-train", type=int, default=None, help="training vectors (default min(N, 100k))")
    p.add_argument("--n-single", type=int, default=200, help="queries timed one at a time")
    p.add_argument("--vectors", help="database .npy (N, d) instead of synthetic data")
    p.add_argument("--queries", help="queries .npy (nq, d)")
    p.add_argument("--truth", help="known true neighbour id per query .npy (nq,)")
    p.add_argument("--positives", help="positives .npy (N, d), row i a distorted view of row i")
    p.add_argument("--methods", help="comma list of families to run (exact always runs): "
                   "IndexLSH,MP-LSH,PCA-sign,IVFFlat,HNSWFlat,FlowHash")
    p.add_argument("--nlists", default="1024,4096,16384,65536")
    p.add_argument("--fh-K", default="16,20,24", help="FlowHash code bits, comma list; 'auto' = K=None (chosen "
                   "from the training set's size)")
    p.add_argument("--no-paper", action="store_true", help="skip FlowHash's paper mode (radius copies, r~ probing)")
    p.add_argument("--fh-r", default="0.5,1.0", help="multi-assignment radii (re-add per value)")
    p.add_argument("--fh-rq", default="0.5,1.0,1.25,1.5,2.0", help="query radii r~")
    p.add_argument("--fh-planners", default="fused",
                   help="FlowHash planners swept on the same build: fused (default), reference (the "
                        "numpy planner, same lists: before/after in one process)")
    p.add_argument("--fh-proposals", default="default",
                   help="FlowHash proposal sets bits:probes (e.g. default,14:4096,16:4096; 16:all = every code)")
    p.add_argument("--fh-nprobes", default=None,
                   help="FlowHash nprobe sweep, comma list (default: 1, 2, 4, ..., 1024; all = every proposed list)")
    p.add_argument("--fh-small-budgets", default="",
                   help="default mode: extra cells that scan only this many vectors (budget=, nprobe 4), comma "
                        "list, e.g. 1,2,3: fewer than one list holds, where finer hashes would otherwise win")
    p.add_argument("--fh-budget", default="0.002,0.01",
                   help="candidate budgets as fractions of N (plus no budget)")
    p.add_argument("--fh-steps", type=int, default=None, help="QuantizerConfig.steps")
    p.add_argument("--fh-config", default=None, help="extra QuantizerConfig fields, JSON")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--min-time", type=float, default=0.5,
                   help="seconds of repeated timing per configuration (best run kept)")
    p.add_argument("--hist-K", type=int, default=16,
                   help="code length whose buckets go in the density histogram")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--json", help="write all results to this JSON file")
    p.add_argument("--plots", help="write PNG plots to this folder")
    p.add_argument("--md", help="write/replace the '## ANN benchmark' section of this file")
    p.add_argument("--from-json", help="re-render tables / plots / markdown of a saved run (comma list: merge runs "
                        "made on the same data)")
    p.add_argument("--notes", help="markdown file inserted after the headline (findings)")
    p.add_argument("--keep-going", action="store_true",
                   help="record a failing method as skipped instead of stopping")
    a = p.parse_args(argv)
    if a.quick:
        a.n = min(a.n, 20_000) if "--n" in (argv or sys.argv) else 20_000
        a.nq = min(a.nq, 200)
        a.n_single = min(a.n_single, 30)
        a.fh_K = a.fh_K if "--fh-K" in (argv or sys.argv) else "12"
        a.fh_r = a.fh_r if "--fh-r" in (argv or sys.argv) else "1.0"
        a.fh_rq = a.fh_rq if "--fh-rq" in (argv or sys.argv) else "1.0,1.5"
        a.fh_budget = a.fh_budget if "--fh-budget" in (argv or sys.argv) else "0.01"
        a.fh_steps = a.fh_steps or 100
        a.fh_config = a.fh_config or '{"projection_steps": 50, "batch_size": 1024}'
        a.min_time = min(a.min_time, 0.1)
        a.hist_K = 12
        a.keep_going = True
    return a


def merge_results(paths):
    """Load one saved run, or merge several runs on the same data (same generator, N, seed:
    identical vectors) into one result: rows, builds and balance are concatenated."""
    outs = []
    for p in paths:
        with open(p) as f:
            outs.append(json.load(f))
    out = outs[0]
    for o in outs[1:]:
        if (o["data"]["name"], o["data"]["n"], o["data"]["info"].get("seed")) != (
                out["data"]["name"], out["data"]["n"], out["data"]["info"].get("seed")):
            raise ValueError(f"cannot merge runs on different data: {paths}")
        have = {b["label"] for b in out["builds"]}   # first run wins (e.g. the Exact row)
        out["rows"] += [r for r in o["rows"] if r["label"] not in have]
        out["builds"] += [b for b in o["builds"] if b["label"] not in have]
        for key, val in o["balance"].items():
            out["balance"].setdefault(key, val)
        out["skipped"] += o["skipped"]
        m, mo = out["meta"], o["meta"]
        m["command"] += " ; then " + mo["command"]
        m["seconds"] += mo["seconds"]
        m["loadavg_end"] = mo["loadavg_end"]
        m["date"] += " + " + mo["date"]
    out["methods"] = sorted({r["family"] for r in out["rows"]})
    out["skipped"] = [s for s in out["skipped"] if s["family"] not in out["methods"]]
    return out


def main(argv=None):
    args = parse_args(argv)
    if args.from_json:
        out = merge_results(args.from_json.split(","))
    else:
        out = run(args)
    print(table(out["rows"]))
    print(headline(out["rows"]))
    if args.json:
        _dump(out, args.json)
    if args.plots:
        from bench import plots
        for path in plots.plot_all(out, args.plots):
            log(f"wrote {path}")
    if args.md:
        write_md_section(args.md, markdown(out, args.notes))
        log(f"wrote section '## ANN benchmark' of {args.md}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
