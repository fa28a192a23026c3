"""Calibration of the "no match" threshold on synthetic audio (reproducible; seeds fixed).

Reference set: ``n_tracks`` tracks of ``track_s`` seconds (synthetic music, espeak-ng speech when
present, chirps), fingerprinted with the model and added to a FlowHashIndex with the model's quantizer.
Positives: snippets of 1-5 s cut at random offsets from the references, clean, with eval-split noise
at 10 dB, or reverberated (eval-split rooms) with noise at 5 dB, rendered by the package's one distortion
protocol (:func:`faiss_flowhash.audio.distort.condition` / ``render``). Negatives: snippets of the same
lengths from audio that is NOT in the index (music of other seeds, other sentences, pure noise), clean
or with noise. Each snippet goes through the steps of :meth:`FingerprintDB.query
<faiss_flowhash.db.FingerprintDB.query>` (fingerprints every 100 ms, top-5 hits per segment from the
index, :func:`faiss_flowhash.db.identify.identify` with offset refinement); a positive counts as a hit when
the top track is right and the offset within 50 ms *and* its confidence reaches the threshold; a
negative counts as a false match when its confidence reaches the threshold.

Run: ``python -m faiss_flowhash.eval.calibrate --seed 0`` (about 30 s on one core; seeds 0 and 1 are
recorded). The numbers behind
``DEFAULT_MIN_CONFIDENCE`` are recorded in :mod:`faiss_flowhash.db.database`. (Before the move to
:mod:`faiss_flowhash.eval` this was ``faiss_flowhash.db.calibrate``.)
"""

import argparse
import json
import sys

import numpy as np

from ..db.consensus import DEFAULT_SIM_CEIL, DEFAULT_SIM_FLOOR
from ..db.identify import ReferenceWindows, identify
from ..db.ids import decode_ids, encode_ids

__all__ = ["calibration_hits", "score_hits", "sweep", "main"]

# Reference and not-ingested speech use disjoint words and voices: the same word said by the same
# voice IS the same audio, and a fingerprint system is right to match it.
_WORDS = ("river mountain signal window quiet orange table seven green paper morning station silver "
          "garden music yellow ocean winter finger candle market engine silent forest pocket number").split()
_OTHER_WORDS = ("bicycle thunder marble velvet harbour lantern puzzle cactus meadow rocket saddle tunnel "
                "walnut blanket compass dolphin feather glacier hammer island jacket kettle ladder needle").split()
_VOICES = (("en", "de", "fr", "en-us"), ("es+f3", "it+m3", "nl+f2", "pt+m2"))


def _sentence(rng: np.random.Generator, words, n: int = 30) -> str:
    return " ".join(rng.choice(words, n))


def _sources(n: int, seconds: float, seed: int, rng: np.random.Generator, *, other: bool = False,
             chirps: bool = True) -> list[np.ndarray]:
    """n signals of ``seconds``: music, speech (when espeak-ng is present) and chirps, by seed."""
    from ..audio import synth

    out = []
    words, voices = (_OTHER_WORDS, _VOICES[1]) if other else (_WORDS, _VOICES[0])
    for i in range(n):
        kind = i % 5
        if kind in (1, 3) and synth.espeak_available():
            x = synth.speech(_sentence(rng, words, 60), voice=voices[i % 4], speed_wpm=140 + 10 * (i % 5))
            x = np.tile(x, int(np.ceil(seconds * 16000 / len(x))))[: int(seconds * 16000)]
        elif kind == 4 and chirps:
            f0, f1 = float(rng.uniform(100, 1500)), float(rng.uniform(2000, 6000))
            x = synth.chirp(f0, f1, seconds, method="log") if i % 2 else synth.chirp(f1, f0, seconds)
        else:
            x = synth.synthetic_music(seconds, seed=seed + i)
        out.append(np.asarray(x, np.float32))
    return out


_N_NOISES, _N_ROOMS = 8, 6  # eval-split noise clips and rooms the snippets draw from


def _distorted(wave, start: int, length: int, kind: str, rng, seed: int):
    """The snippet ``wave[start:start + length]`` under ``kind``, rendered by the package's one distortion
    protocol (:mod:`faiss_flowhash.audio.distort`, eval split): clean, noise 10 dB, or room + noise 5 dB
    (the room hears the audio before the snippet too)."""
    from ..audio import distort

    if kind == "clean":
        return np.asarray(wave[start:start + length], np.float32)
    name, snr = ("noise", 10.0) if kind == "noise10" else ("noise+reverb", 5.0)
    d = distort.condition(name, rng, snr_db=snr, bank_seed=seed, n_noises=_N_NOISES, n_rooms=_N_ROOMS)
    return distort.render(wave, d, start=start, length=length)


def calibration_hits(fp, *, n_tracks: int = 15, track_s: float = 20.0, n_queries: int = 400, seed: int = 0,
                     top_k: int = 5) -> list[dict]:
    """Per-segment hits for positive and negative snippets (see module docstring).

    Returns a list of dicts: kind ("clean", "noise10", "reverb+noise5", "ood-clean", "ood-noise"),
    track (true track or -1), offset_s, tracks/times/scores (n_seg, top_k), segment_times (n_seg,),
    query (n_seg, d), references (the reference tracks' fingerprints, one shared
    :class:`~faiss_flowhash.db.identify.ReferenceWindows`) and hop_s for the offset refinement.
    """
    from ..db.index_settings import new_db_index
    from ..audio.distort import noise_clip

    rng = np.random.default_rng(seed)
    refs = _sources(n_tracks, track_s, 10_000 + seed, rng)
    # never indexed; no chirps (a chirp is a time-shifted piece of any other chirp of the same rate)
    others = _sources(n_tracks, track_s, 20_000 + seed, rng, other=True, chirps=False)
    index = new_db_index(fp.dim, fp.quantizer)  # as the database builds and searches it
    ref_emb = [fp.fingerprint(x) for x in refs]
    for t, e in enumerate(ref_emb):
        index.add_with_ids(e, encode_ids(t, len(e)))
    windows = ReferenceWindows.from_tracks(ref_emb)
    out = []
    kinds = ("clean", "noise10", "reverb+noise5", "ood-clean", "ood-noise")
    for q in range(n_queries):
        kind = kinds[q % len(kinds)]
        length = float(rng.uniform(1.0, 5.0))
        src = others if kind.startswith("ood") else refs
        t = int(rng.integers(len(src)))
        start = float(rng.uniform(0, track_s - length))
        s0, n = int(round(start * 16000)), int(round(length * 16000))
        x = _distorted(src[t], s0, n, "noise10" if kind == "ood-noise" else "clean" if kind == "ood-clean" else kind,
                       rng, seed)
        if kind == "ood-clean" and q % 10 == 3:  # some pure noise
            x = noise_clip(seed, int(rng.integers(_N_NOISES)), "eval")[: len(x)] * 0.1
        e = fp.fingerprint(np.asarray(x, np.float32))
        D, I = index.search(e, top_k)
        tr, fr = decode_ids(I)
        out.append({"kind": kind, "track": -1 if kind.startswith("ood") else t, "offset_s": start,
                    "tracks": tr, "times": fr * fp.hop_s, "scores": D,
                    "segment_times": np.arange(len(e)) * fp.hop_s, "query": e, "references": windows,
                    "hop_s": fp.hop_s})
    return out


def score_hits(hits: list[dict], **conf) -> list[tuple[str, bool, float]]:
    """(kind, correct track and offset within 50 ms, confidence) per snippet, answered by
    :func:`~faiss_flowhash.db.identify.identify` as the database does; ``conf`` goes to it (sim_floor,
    sim_ceil, margin_weight, min_segments)."""
    rows = []
    kw = {k: conf[k] for k in ("sim_floor", "sim_ceil", "margin_weight", "min_segments") if k in conf}
    for h in hits:
        refine = {"query": h["query"], "reference": h["references"], "hop_s": h["hop_s"]} if "query" in h else {}
        found = identify(h["tracks"], h["times"], h["scores"], h["segment_times"], **refine, **kw)
        if not found:
            rows.append((h["kind"], False, 0.0))
            continue
        m = found[0]
        ok = m.track_id == h["track"] and abs(m.offset_s - h["offset_s"]) <= 0.05
        rows.append((h["kind"], ok, m.confidence))
    return rows


def sweep(rows, thresholds) -> list[dict]:
    """Per threshold: hit rate per positive kind and overall, no-match rate on negatives."""
    out = []
    for th in thresholds:
        r = {"min_confidence": float(th)}
        pos = [(k, ok and c >= th) for k, ok, c in rows if not k.startswith("ood")]
        neg = [c < th for k, _, c in rows if k.startswith("ood")]
        for kind in sorted({k for k, _ in pos}):
            r[f"hit_{kind}"] = float(np.mean([v for k, v in pos if k == kind]))
        r["hit_all"] = float(np.mean([v for _, v in pos]))
        r["no_match_ood"] = float(np.mean(neg))
        out.append(r)
    return out


def main(argv=None) -> int:
    import torch

    from ..audio import Fingerprinter

    p = argparse.ArgumentParser(prog="python -m faiss_flowhash.eval.calibrate", description=__doc__.split("\n")[0])
    p.add_argument("--model", default=None, help="model file (default: the shipped model)")
    p.add_argument("--queries", type=int, default=400, help="snippets, 3/5 positive and 2/5 negative (400)")
    p.add_argument("--tracks", type=int, default=15, help="reference tracks (15)")
    p.add_argument("--seed", type=int, default=0, help="seed (0)")
    p.add_argument("--sim-floor", type=float, default=DEFAULT_SIM_FLOOR)
    p.add_argument("--sim-ceil", type=float, default=DEFAULT_SIM_CEIL)
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    fp = Fingerprinter.load(args.model)
    hits = calibration_hits(fp, n_tracks=args.tracks, n_queries=args.queries, seed=args.seed)
    rows = score_hits(hits, sim_floor=args.sim_floor, sim_ceil=args.sim_ceil)
    for r in sweep(rows, np.round(np.arange(0.0, 0.61, 0.05), 2)):
        print(json.dumps({k: round(v, 3) for k, v in r.items()}))
    neg = sorted((c for k, _, c in rows if k.startswith("ood")), reverse=True)
    print(json.dumps({"model_id": fp.model_id, "negatives": len(neg), "largest_negative_confidences": [round(c, 3) for c in neg[:3]]}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
