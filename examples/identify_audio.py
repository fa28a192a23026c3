"""Identify audio snippets end to end with the shipped fingerprint model (about 10 s on one CPU core).

Synthesises four 15 s tracks, ingests them into a fingerprint database, then asks which track and at
what time for a clean snippet, a noisy snippet and a snippet of audio that was never ingested.

    python examples/identify_audio.py [--keep DIR]

The same with the command line:

    flowhash ingest DB DIR/tracks
    flowhash query DB snippet.wav --top 3 [--json]
    flowhash stats DB
"""

import argparse
import os
import tempfile

import numpy as np
import torch

from faiss_flowhash.audio import add_noise, noise_bank, save_audio, synth
from faiss_flowhash.db import FingerprintDB

SR = 16000


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--keep", default=None, help="write the tracks and the database here (default: a temporary folder)")
    args = p.parse_args()
    torch.set_num_threads(1)
    root = args.keep or tempfile.mkdtemp(prefix="flowhash-example-")
    os.makedirs(os.path.join(root, "tracks"), exist_ok=True)

    tracks = {}
    for i in range(3):
        tracks[f"song{i}.flac"] = synth.synthetic_music(15.0, seed=40 + i)
    tracks["sweep.flac"] = synth.chirp(200.0, 4000.0, 15.0, method="log")
    for name, wave in tracks.items():
        save_audio(os.path.join(root, "tracks", name), np.clip(wave, -1, 1))

    with FingerprintDB(os.path.join(root, "db")) as db:  # the shipped model and its trained flow
        report = db.ingest([os.path.join(root, "tracks")])
        print("ingest:", report.summary())
        s = db.stats()
        print(f"stats: {s['tracks']} tracks, {s['fingerprints']} fingerprints, {s['buckets_used']} buckets used")

        song = tracks["song1.flac"]
        clean = song[int(6.43 * SR) : int(9.43 * SR)]  # 3 s from 6.43 s
        noisy = add_noise(clean, noise_bank(0, 1, split="eval")[0], 10.0)  # babble/traffic/... at 10 dB
        unknown = synth.synthetic_music(3.0, seed=999)  # never ingested
        for label, wave in (("clean 6.43 s", clean), ("noisy 10 dB", noisy), ("not ingested", unknown)):
            res = db.query(wave, top=2)
            if not res.matches:
                print(f"{label:>13}: no match ({res.elapsed_ms:.0f} ms)")
            for m in res.matches:
                print(f"{label:>13}: {os.path.basename(m.path)} at {m.offset_s:.2f} s, score {m.score:.2f}, "
                      f"confidence {m.confidence:.2f} ({res.eval_percent:.1f}% of the database scored, "
                      f"{res.elapsed_ms:.0f} ms)")
    print("database in", os.path.join(root, "db"))


if __name__ == "__main__":
    main()
