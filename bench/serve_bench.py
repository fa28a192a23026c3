"""Query service benchmark: requests/s and latency of ``flowhash serve`` at several client concurrencies,
against the simplest alternatives on the same database and snippets: one ``flowhash query`` process per
snippet (what a client did before the service), and FingerprintDB.query called in this process (no HTTP).

    python -m bench.serve_bench                                   # 24 tracks x 30 s, 64 requests a level
    python -m bench.serve_bench --tracks 48 --requests 128 --concurrency 1 4 16 --workers 4 --json out.json

The database (synthetic music, seeds 0..tracks-1) is built once under --work (default
/tmp/flowhash-serve-bench). Each request uploads a 3 s WAV snippet (16-bit, 16 kHz) of a random
track at a random offset as the raw body; latency is the client's (send to JSON parsed). The server
runs with torch at 1 thread per worker and OMP_WAIT_POLICY=PASSIVE.
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse
import io
import json
import platform
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import requests
import soundfile as sf

from faiss_flowhash.audio import Fingerprinter, save_audio, synth
from faiss_flowhash.db import FingerprintDB
from faiss_flowhash.serve import ServeProcess

SR = 16000


def _load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def build_db(work: str, tracks: int, seconds: float) -> str:
    audio, db_path = os.path.join(work, "audio"), os.path.join(work, f"db-{tracks}x{seconds:g}")
    os.makedirs(audio, exist_ok=True)
    if os.path.isdir(db_path):
        return db_path
    for i in range(tracks):
        save_audio(os.path.join(audio, f"t{i:03d}.wav"), np.clip(synth.synthetic_music(seconds, seed=i), -1, 1).astype(np.float32))
    with FingerprintDB(db_path, Fingerprinter.load()) as db:
        print(f"built {db_path}: {db.ingest([audio]).summary()}", file=sys.stderr)
    return db_path


def snippets(work: str, n: int, tracks: int, seconds: float, seed: int = 0):
    """(track, offset_s, wav bytes) of n 3 s snippets."""
    rng = np.random.default_rng(seed)
    out = []
    for _ in range(n):
        t = int(rng.integers(tracks))
        x, _ = sf.read(os.path.join(work, "audio", f"t{t:03d}.wav"), dtype="float32")
        off = float(rng.uniform(0, seconds - 3.5))
        buf = io.BytesIO()
        sf.write(buf, x[int(off * SR) : int((off + 3) * SR)], SR, format="WAV", subtype="PCM_16")
        out.append((t, off, buf.getvalue()))
    return out


def percentiles(ms: list[float]) -> dict:
    a = np.asarray(ms)
    return {"p50_ms": float(np.percentile(a, 50)), "p99_ms": float(np.percentile(a, 99)), "mean_ms": float(a.mean())}


def run_level(url: str, snips, concurrency: int, n_requests: int) -> dict:
    session_by_thread: dict = {}

    def post(i):
        s = session_by_thread.setdefault(__import__("threading").get_ident(), requests.Session())
        t, off, body = snips[i % len(snips)]
        t0 = time.perf_counter()
        r = s.post(url + "/query", data=body, headers={"Content-Type": "audio/wav"}, timeout=600)
        res = r.json()
        ms = 1000 * (time.perf_counter() - t0)
        hit = r.status_code == 200 and bool(res["matches"]) and res["matches"][0]["track_id"] == t \
            and abs(res["matches"][0]["offset_s"] - off) <= 0.05
        return ms, r.status_code, hit

    t0 = time.perf_counter()
    with ThreadPoolExecutor(concurrency) as pool:
        results = list(pool.map(post, range(n_requests)))
    wall = time.perf_counter() - t0
    ms = [r[0] for r in results]
    return {"concurrency": concurrency, "requests": n_requests, "wall_s": wall, "rps": n_requests / wall,
            **percentiles(ms), "errors": sum(r[1] != 200 for r in results), "hit_rate": float(np.mean([r[2] for r in results]))}


def cli_baseline(db_path: str, snips, n: int) -> dict:
    """One ``flowhash query --json`` process per snippet."""
    ms = []
    with tempfile.TemporaryDirectory() as tmp:
        for i in range(n):
            p = os.path.join(tmp, f"q{i}.wav")
            with open(p, "wb") as f:
                f.write(snips[i][2])
            t0 = time.perf_counter()
            r = subprocess.run([sys.executable, "-m", "faiss_flowhash.cli", "query", db_path, p, "--json"],
                               capture_output=True, text=True)
            if r.returncode != 0:
                raise RuntimeError(f"flowhash query {p} exited {r.returncode}: {r.stderr[-2000:]}")
            ms.append(1000 * (time.perf_counter() - t0))
    return {"requests": n, **percentiles(ms), "rps": 1000 / float(np.mean(ms))}


def in_process(db_path: str, snips, n: int) -> dict:
    """FingerprintDB.query on the decoded snippets, sequentially, in this process (no HTTP, no decode)."""
    import torch

    torch.set_num_threads(1)
    with FingerprintDB(db_path, readonly=True) as db:
        waves = [sf.read(io.BytesIO(s[2]), dtype="float32")[0] for s in snips[:n]]
        db.query(waves[0])
        ms = []
        for w in waves:
            t0 = time.perf_counter()
            db.query(w)
            ms.append(1000 * (time.perf_counter() - t0))
    return {"requests": n, **percentiles(ms), "rps": 1000 / float(np.mean(ms))}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--work", default=os.path.join(tempfile.gettempdir(), "flowhash-serve-bench"))
    ap.add_argument("--tracks", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--requests", type=int, default=64, help="requests per concurrency level")
    ap.add_argument("--concurrency", type=int, nargs="+", default=[1, 4, 16])
    ap.add_argument("--workers", type=int, default=4, help="server worker threads")
    ap.add_argument("--cli-runs", type=int, default=4, help="flowhash query processes for the baseline")
    ap.add_argument("--json", default=None, help="also write the results here")
    args = ap.parse_args(argv)

    db_path = build_db(args.work, args.tracks, args.seconds)
    snips = snippets(args.work, 64, args.tracks, args.seconds)
    out = {"machine": f"{platform.node()} {os.cpu_count()} cpus", "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
           "load_before": _load(), "tracks": args.tracks, "seconds": args.seconds, "workers": args.workers,
           "command": "python -m bench.serve_bench " + " ".join(argv if argv is not None else sys.argv[1:])}
    out["in_process"] = in_process(db_path, snips, 32)
    t0 = time.perf_counter()
    with ServeProcess(db_path, "--workers", args.workers, exit_after_s=3600) as server:
        out["startup_s"] = time.perf_counter() - t0  # process start, imports, model and index loaded
        run_level(server.url, snips, 1, 4)  # warm-up
        out["levels"] = [run_level(server.url, snips, c, args.requests) for c in args.concurrency]
        out["server_stats"] = requests.get(server.url + "/stats", timeout=60).json()["service"]
    if args.json:  # the HTTP numbers are kept whatever the baseline does
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    out["cli_per_query"] = cli_baseline(db_path, snips, args.cli_runs)
    out["load_after"] = _load()

    print(f"# serve bench: {args.tracks} tracks x {args.seconds:g} s, 3 s snippets, {args.workers} server workers, "
          f"load {out['load_before']} -> {out['load_after']}")
    print(f"server start-up (imports, model, index): {out['startup_s']:.1f} s")
    print("| client | concurrency | requests/s | p50 ms | p99 ms | hit@1 |")
    print("|---|---:|---:|---:|---:|---:|")
    for lv in out["levels"]:
        print(f"| HTTP (flowhash serve) | {lv['concurrency']} | {lv['rps']:.1f} | {lv['p50_ms']:.0f} | {lv['p99_ms']:.0f} | "
              f"{lv['hit_rate']:.2f} |")
    ip, cli = out["in_process"], out["cli_per_query"]
    print(f"| FingerprintDB.query in process (no HTTP) | 1 | {ip['rps']:.1f} | {ip['p50_ms']:.0f} | {ip['p99_ms']:.0f} | |")
    print(f"| one `flowhash query` process per snippet | 1 | {cli['rps']:.2f} | {cli['p50_ms']:.0f} | {cli['p99_ms']:.0f} | |")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(out, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
