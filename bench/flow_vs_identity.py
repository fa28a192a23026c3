"""The learned flow against its identity start, end to end, in one process (issue 10, section 3).

    python -m bench.flow_vs_identity --n 200000 --json bench/results/flow_vs_identity.json

For each data set (the committed synthetic generator, and a second clustered set with other knobs:
fewer, tighter genres and more distortion), FlowHashIndex is built four ways on the same vectors:

* ``identity``: ``QuantizerConfig(steps=0)``: sign of centred PCA, the flow's start;
* ``gated``: the defaults (200 steps), kept only if it beats the start on held-out pairs;
* ``forced``: the same training with no held-out gate (``heldout=0``): the trained flow in use
  whatever it does, which isolates the flow's own effect;
* ``forced-1500``: ``forced`` with 1,500 steps (the paper trains far longer);

each with and without distorted positives (without: nearest-neighbour pairs). Every index then
searches the same queries at nprobe 4..128 (centroid probing, the default) and in flip order (the
paper's probing) at budgets; recall@1 is against exact inner-product search, eval % is the share of
the database scanned per query. Prints one table and writes JSON.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import subprocess
import time

import faiss
import numpy as np

from faiss_flowhash import FlowHashIndex, QuantizerConfig, SearchParams

from .datasets import SynthParams, exact_top1, make_synthetic

__all__ = ["main"]

SETS = {
    "synth": SynthParams(),
    "synth-tight": SynthParams(n_genres=24, genre_spread=(0.25, 0.6), track_spread=(0.35, 0.7), noise=(0.5, 1.2)),
}
VARIANTS = {
    "identity": dict(steps=0),
    "gated": dict(),
    "forced": dict(heldout=0.0),
    "forced-1500": dict(heldout=0.0, steps=1500),
}


def _git() -> str:
    try:
        return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True,
                              check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def run(n: int, nq: int, nprobes, budgets, sets, variants, positives, seed: int, gates=("probes",)) -> list[dict]:
    rows = []
    for set_name in sets:
        ds = make_synthetic(n, nq, params=SETS[set_name], seed=seed)
        gt = exact_top1(ds)
        for pos, var, gate in [(p, v, g) for p in positives for v in variants for g in gates]:
            cfg = QuantizerConfig(seed=seed, verbose=False, gate=gate, **VARIANTS[var])
            index = FlowHashIndex(ds.x.shape[1], K=16, config=cfg)
            t0 = time.perf_counter()
            index.train(ds.x_train, ds.x_pos if pos else None)
            t_train = time.perf_counter() - t0
            index.add(ds.x)
            rep = index.quantizer.report
            base = dict(set=set_name, positives=bool(pos), variant=var, gate=gate, train_s=round(t_train, 2),
                        kept=rep.kept, heldout_start=rep.heldout_start, heldout_trained=rep.heldout_trained,
                        empty_share=rep.balance["empty_share"], max_over_mean=rep.balance["max_over_mean"])
            for npb in nprobes:
                _, I = index.search(ds.q, 1, params=SearchParams(nprobe=npb))
                st = index.last_search_stats
                rows.append(dict(base, probe="centroid", setting=npb, r1=float((I[:, 0] == gt).mean()),
                                 eval_pct=float(st.eval_percent)))
            for b in budgets:
                _, I = index.search(ds.q, 1, params=SearchParams(probe="flip", budget=b, max_probes=None,
                                                                 r_query=2.0))
                st = index.last_search_stats
                rows.append(dict(base, probe="flip", setting=b, r1=float((I[:, 0] == gt).mean()),
                                 eval_pct=float(st.eval_percent)))
            print(f"{set_name:12s} pos={int(pos)} {var:12s} gate={gate:10s} kept={rep.kept:7s} "
                  + " ".join(f"{r['probe'][0]}{r['setting']}:{r['r1']:.3f}@{r['eval_pct']:.2f}%"
                             for r in rows if r['set'] == set_name and r['variant'] == var
                             and r['positives'] == bool(pos) and r['gate'] == gate), flush=True)
    return rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=200_000, help="database size per set (200000)")
    ap.add_argument("--nq", type=int, default=1000, help="queries (1000)")
    ap.add_argument("--nprobe", default="4,16,64,128", help="centroid-probing nprobe sweep")
    ap.add_argument("--budget", default="200,1000,4000", help="flip-probing candidate budgets")
    ap.add_argument("--sets", default=",".join(SETS), help=f"data sets ({','.join(SETS)})")
    ap.add_argument("--variants", default=",".join(VARIANTS), help=f"({','.join(VARIANTS)})")
    ap.add_argument("--positives", default="1,0", help="with (1) / without (0) positives")
    ap.add_argument("--gates", default="probes", help="QuantizerConfig.gate values to build with (probes,candidates)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", default=None, help="write rows + run info here")
    a = ap.parse_args(argv)
    faiss.omp_set_num_threads(2)
    t0 = time.time()
    info = dict(date=time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), machine=platform.processor() or
                platform.machine(), cores=os.cpu_count(), load_start=os.getloadavg()[0], git=_git(), n=a.n, nq=a.nq)
    rows = run(a.n, a.nq, [int(v) for v in a.nprobe.split(",")], [int(v) for v in a.budget.split(",")],
               a.sets.split(","), a.variants.split(","), [bool(int(v)) for v in a.positives.split(",")], a.seed,
               a.gates.split(","))
    info.update(load_end=os.getloadavg()[0], minutes=round((time.time() - t0) / 60, 1))
    if a.json:
        with open(a.json, "w") as f:
            json.dump(dict(info=info, rows=rows), f, indent=1)
    print(json.dumps(info))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
