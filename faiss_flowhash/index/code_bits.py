"""How many code bits K a FlowHashIndex uses when none is given: chosen from the training set's size.

The index ranks the lists of the proposed buckets by their centroids, so a list should be small enough
that its centroid stands for its vectors, and the buckets few enough that a few hundred proposals
reach the query's neighbours. Measured on real fingerprints (N = 101k, bench/results/fingerprints.md,
"K from N"): K = 10-12 (buckets of 25-100 vectors, IVF-sized) lose badly (R@1 0.71-0.87 at 0.9 %
evaluated, where IndexIVFFlat(1024) has 0.955: a sign cell is no Voronoi cell, its centroid ranks
poorly); K = 14 (~8 vectors per bucket) reaches R@1 0.95 with 512 proposals where K = 16 needs 4,096.
Above ~500k vectors the rule gives the paper's K = 16 (bench/results/scale.md: K = 20 and 24 lose at 10M).
"""

import math
import numbers

__all__ = ["auto_K", "VECTORS_PER_BUCKET", "K_MIN", "K_MAX"]

VECTORS_PER_BUCKET = 8  # the bucket size the rule aims at (ntotal / 2^K)
K_MIN, K_MAX = 2, 16


def auto_K(n: int) -> int:
    """K = round(log2(n / 8)), clipped to [2, 16]: 14 at 100k vectors, 16 from ~500k on.

    Args:
        n: training vectors (the index assumes the database is about this large; pass K when it is not).
    """
    if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1:
        raise ValueError(f"n: expected an int >= 1, got {n!r}")
    return int(min(K_MAX, max(K_MIN, round(math.log2(int(n) / VECTORS_PER_BUCKET)))))
