"""Offset error under reverb on real music (a study, issue 11): is the start wrong by a bias or by noise,
and does a finer offset estimate help?

    python -m bench.scratch.reverb_offsets --corpus bench/data/corpus --condition reverb --queries 60

The first ``--tracks`` test-split files of the corpus (90 s each) are fingerprinted with the shipped model
and searched exactly (IndexFlatIP, top 5). Each query is a 3 s snippet at a random sample-level start,
rendered by ``audio.distort.condition`` on the eval split. It is answered by ``db.identify`` with the
reference windows (the database's refinement). It is also answered by a 10 ms matched filter: query
windows every 10 ms, each aligned exactly to a reference frame, mean similarity maximised over +-150 ms
around the identify answer, with a parabola on the 10 ms grid. Prints the share within 50 ms and the
sorted errors (ms) of both.
"""

import argparse
import json

import faiss
import numpy as np

from faiss_flowhash.audio import distort
from faiss_flowhash.audio.fingerprinter import Fingerprinter
from faiss_flowhash.audio.io import load_audio
from faiss_flowhash.db.identify import ReferenceWindows, identify

SR = 16000


def fine_offset(qf, reference, track, c0, *, fine_hop=0.01, hop=0.1, span=0.15):
    """argmax over c in c0 +- span (fine_hop grid) of mean_f <qf(f * hop - c), ref(f)>, parabola-refined."""
    n = len(qf)
    cands = c0 + np.arange(-round(span / fine_hop), round(span / fine_hop) + 1) * fine_hop
    fr = np.arange(max(0, int(np.floor(cands.min() / hop))), int(np.ceil((cands.max() + (n - 1) * fine_hop) / hop)) + 1)
    R = reference.take(np.full(len(fr), track), fr)
    score = []
    for c in cands:
        j = np.round((fr * hop - c) / fine_hop).astype(int)
        ok = (j >= 0) & (j < n) & ~np.isnan(R).any(1)
        score.append(float(np.mean(np.sum(qf[j[ok]] * R[ok], 1))) if ok.sum() >= 3 else -9.0)
    score = np.array(score)
    i = int(np.argmax(score))
    step = 0.0
    if 0 < i < len(score) - 1:
        a, b, c = score[i - 1], score[i], score[i + 1]
        den = a - 2 * b + c
        step = 0.5 * (a - c) / den if den < 0 else 0.0
    return max(0.0, float(cands[i] + step * fine_hop))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", required=True, help="a bench.audio_corpus directory (manifest.json)")
    ap.add_argument("--condition", default="reverb", help="a distort.condition name (reverb)")
    ap.add_argument("--tracks", type=int, default=12)
    ap.add_argument("--queries", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args(argv)
    faiss.omp_set_num_threads(1)
    fp = Fingerprinter.load()
    files = [f for f in json.load(open(f"{a.corpus}/manifest.json"))["files"] if f["split"] == "test"][: a.tracks]
    tracks = [np.asarray(load_audio(f"{a.corpus}/{f['file']}"), np.float32)[: 90 * SR] for f in files]
    refs = [fp.fingerprint(w) for w in tracks]
    reference = ReferenceWindows.from_tracks(refs)
    tid = np.concatenate([np.full(len(r), t) for t, r in enumerate(refs)])
    frame = np.concatenate([np.arange(len(r)) for r in refs])
    flat = faiss.IndexFlatIP(reference.vectors.shape[1])
    flat.add(reference.vectors.astype(np.float32))
    rng = np.random.default_rng(a.seed)
    err_id, err_fine = [], []
    for _ in range(a.queries):
        t = int(rng.integers(len(tracks)))
        start = int(rng.integers(0, len(tracks[t]) - 4 * SR))
        snip = distort.render(tracks[t], distort.condition(a.condition, rng), start=start, length=3 * SR)
        q = fp.fingerprint(snip)
        D, I = flat.search(q.astype(np.float32), 5)
        m = identify(tid[I], frame[I] * 0.1, D, np.arange(len(q)) * 0.1, query=q, reference=reference, top=1)
        if m and m[0].track_id == t:
            err_id.append(m[0].offset_s - start / SR)
            err_fine.append(fine_offset(fp.fingerprint(snip, hop_s=0.01), reference, t, m[0].offset_s) - start / SR)
        else:
            err_id.append(np.nan), err_fine.append(np.nan)
    for name, e in (("identify", np.array(err_id)), ("10 ms matched filter", np.array(err_fine))):
        ok = e[np.isfinite(e)]
        print(json.dumps({"condition": a.condition, "answer": name, "right_track": float(np.isfinite(e).mean()),
                          "within_50ms": float((np.abs(e) <= 0.05).mean()), "median_error_ms": round(float(np.median(ok)) * 1000, 1),
                          "errors_ms": np.round(np.sort(ok) * 1000).astype(int).tolist()}))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
