"""FlowHash in five minutes, on built-in data: train, add, search, compare with exact search, save, load.

    python examples/quickstart.py            # under a minute on 2 CPU cores
    python examples/quickstart.py --json     # the summary as one JSON object
"""

import argparse
import json
import tempfile
import time
from pathlib import Path

import faiss
import numpy as np

import faiss_flowhash as ffh


def make_data(n: int, d: int = 64, *, seed: int = 0):
    """Clustered unit vectors, distorted positives for training, and noisy queries of known origin."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((200, d))
    x = centers[rng.integers(0, 200, n)] + 0.7 * rng.standard_normal((n, d))
    x /= np.linalg.norm(x, axis=1, keepdims=True)

    def distort(v):  # noise of norm ~0.5 on unit vectors
        v = v + 0.5 / np.sqrt(d) * rng.standard_normal(v.shape)
        return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)

    truth = rng.choice(n, 1000, replace=False)
    return x.astype(np.float32), distort(x), distort(x[truth]), truth


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", type=int, default=20_000, help="database size (default 20,000)")
    parser.add_argument("--K", type=int, default=10, help="code bits (default 10: ~20 vectors a bucket at 20k)")
    parser.add_argument("--steps", type=int, default=200, help="flow training steps (default 200)")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    args = parser.parse_args()

    x, x_pos, queries, truth = make_data(args.n)
    index = ffh.FlowHashIndex(x.shape[1], K=args.K, config=ffh.QuantizerConfig(steps=args.steps, verbose=not args.json))
    t0 = time.perf_counter()
    index.train(x, x_pos)
    train_s = time.perf_counter() - t0
    index.add(x)
    t0 = time.perf_counter()
    D, I = index.search(queries, 1)
    qps = len(queries) / (time.perf_counter() - t0)
    stats = index.last_search_stats

    exact = faiss.IndexFlatIP(x.shape[1])
    exact.add(x)
    _, Ie = exact.search(queries, 1)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "quickstart.flowhash"
        ffh.write_index(index, path)
        size = path.stat().st_size
        _, I2 = ffh.read_index(path).search(queries, 1)
    summary = {
        "ntotal": index.ntotal, "K": index.K, "train_s": round(train_s, 1),
        "recall_at_1_vs_exact": float((I[:, 0] == Ie[:, 0]).mean()),
        "hit_rate_true_neighbour": float((I[:, 0] == truth).mean()),
        "exact_hit_rate_true_neighbour": float((Ie[:, 0] == truth).mean()),
        "eval_percent": round(stats.eval_percent, 3), "buckets_probed": round(stats.buckets_probed, 1),
        "queries_per_s": round(qps), "file_bytes": size, "reload_identical": bool((I2 == I).all()),
        "balance": {k: round(v, 3) for k, v in index.balance().items()},
    }
    if args.json:
        print(json.dumps(summary))
    else:
        print(f"{index}")
        for k, v in summary.items():
            print(f"  {k:32s} {v}")


if __name__ == "__main__":
    main()
