"""The "no match" threshold on real music (issue 11: "no match" >= 98 % with false matches <= 1 %,
calibrated on real music): the calibration protocol of :mod:`faiss_flowhash.eval.calibrate` with its
synthetic references and not-ingested audio replaced by tracks of a real-music corpus
(``python -m bench.audio_corpus``: Debian game-music packages, 16 kHz FLAC + manifest.json).

Per seed the corpus files are shuffled; ``--refs`` of them are fingerprinted into a FlowHashIndex with
the model's quantizer (the reference collection), the others are never indexed. Snippets of 1-5 s:
positives cut from references (clean, noise 10 dB, room + noise 5 dB; eval-split banks, the package's
one distortion protocol), negatives cut from the other tracks (clean, noise 10 dB). Each snippet is
answered by :func:`faiss_flowhash.db.identify.identify` exactly as ``calibrate.score_hits`` does (top-5
hits per segment, offset refinement on the reference windows). Rows (kind, right, confidence) go to JSON.

    OMP_WAIT_POLICY=PASSIVE OPENBLAS_NUM_THREADS=1 nice -n 10 python -m bench.threshold_real \
        --corpus bench/data/corpus --seeds 0 1 2 --queries 1000 --out bench/results/threshold_real_rows.json
"""

import argparse
import json
import sys
import time
from pathlib import Path

import numpy as np


def main(argv=None) -> int:
    from faiss_flowhash import FlowHashIndex
    from faiss_flowhash.audio import Fingerprinter
    from faiss_flowhash.audio.io import load_audio
    from faiss_flowhash.db.identify import ReferenceWindows
    from faiss_flowhash.db.ids import decode_ids, encode_ids
    from faiss_flowhash.eval.calibrate import _distorted, score_hits, sweep

    p = argparse.ArgumentParser(prog="python -m bench.threshold_real")
    p.add_argument("--corpus", type=Path, required=True)
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--queries", type=int, default=1000)
    p.add_argument("--refs", type=int, default=30, help="reference tracks per seed (the rest are never indexed)")
    p.add_argument("--max-track-s", type=float, default=240.0, help="cut longer tracks (ingest time)")
    p.add_argument("--model", default=None)
    p.add_argument("--out", required=True)
    args = p.parse_args(argv)
    fp = Fingerprinter.load(args.model)
    files = json.loads((args.corpus / "manifest.json").read_text())["files"]
    cut = int(args.max_track_s * 16000)
    waves = [load_audio(args.corpus / f["file"], sample_rate=16000)[:cut] for f in files]
    names = [f["file"] for f in files]
    result = {"model_id": fp.model_id, "backend": fp.backend, "files": names, "queries": args.queries,
              "refs": args.refs, "seeds": {}}
    for seed in args.seeds:
        t0 = time.time()
        rng = np.random.default_rng(seed)
        order = rng.permutation(len(waves))
        refs, others = [waves[i] for i in order[: args.refs]], [waves[i] for i in order[args.refs:]]
        index = FlowHashIndex(fp.dim, quantizer=fp.quantizer)
        ref_emb = [fp.fingerprint(x) for x in refs]
        for t, e in enumerate(ref_emb):
            index.add_with_ids(e, encode_ids(t, len(e)))
        windows = ReferenceWindows.from_tracks(ref_emb)
        kinds = ("clean", "noise10", "reverb+noise5", "ood-clean", "ood-noise")
        hits = []
        for q in range(args.queries):
            kind = kinds[q % len(kinds)]
            length = float(rng.uniform(1.0, 5.0))
            src = others if kind.startswith("ood") else refs
            t = int(rng.integers(len(src)))
            start = float(rng.uniform(0, len(src[t]) / 16000 - length))
            s0, n = int(round(start * 16000)), int(round(length * 16000))
            render = "noise10" if kind == "ood-noise" else "clean" if kind == "ood-clean" else kind
            x = _distorted(src[t], s0, n, render, rng, seed)
            e = fp.fingerprint(np.asarray(x, np.float32))
            D, I = index.search(e, 5)
            tr, fr = decode_ids(I)
            hits.append({"kind": kind, "track": -1 if kind.startswith("ood") else t, "offset_s": start, "tracks": tr,
                         "times": fr * fp.hop_s, "scores": D, "segment_times": np.arange(len(e)) * fp.hop_s,
                         "query": e, "references": windows, "hop_s": fp.hop_s})
        rows = [(k, bool(ok), float(c)) for k, ok, c in score_hits(hits)]
        result["seeds"][str(seed)] = {"refs": [names[i] for i in order[: args.refs]], "rows": rows}
        neg = sorted((c for k, _, c in rows if k.startswith("ood")), reverse=True)
        print(json.dumps({"seed": seed, "seconds": round(time.time() - t0, 1), "ref_hours":
                          round(sum(len(x) for x in refs) / 16000 / 3600, 2), "largest_negatives": [round(c, 3) for c in neg[:6]]}),
              flush=True)
        for r in sweep(rows, [0.0, 0.3, 0.35, 0.4, 0.45, 0.5]):
            print(json.dumps({k: round(v, 4) for k, v in r.items()}), flush=True)
        with open(args.out, "w") as f:
            json.dump(result, f)
    return 0


if __name__ == "__main__":
    sys.exit(main())
