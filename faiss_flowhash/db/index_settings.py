"""The database's FlowHash settings: one place for the database, the calibration and the evaluation.

A query snippet is many 1 s segments, and each segment's top hits vote, so a segment whose nearest
reference window the index misses costs an answer. The index's own defaults (12 flip bits, 1,024
proposals, 64 lists) miss it on real music: on the shipped model's fingerprints of 2.8 h of music
nobody trained on, one query window in ten has its nearest neighbour behind one of the 4 *most*
certain bits, and R@1 stops at 0.87. The wider proposal set below reaches R@1 0.954 on the same data,
and on the paper's Table 1 protocol 77.9 / 86.8 / 90.2 % at 1 / 2 / 3 s, against 71.3 / 84.8 / 89.2 % for
the defaults and 80.3 / 87.0 / 90.5 % for exact search. It scans about 1.1 % of the database, against
0.28 %, and its search takes about 2x as long, tens of milliseconds for a 3 s query
(bench/results/fingerprints.md, bench/results/planner.md).

Plain values here: importing the index (faiss) is left to the callers that search.
"""

from __future__ import annotations

__all__ = ["DB_INDEX_SETTINGS", "db_search_params", "new_db_index"]

#: FlowHashIndex keyword arguments of the database's index (its search settings).
DB_INDEX_SETTINGS = {"max_probe_bits": 16, "max_probes": 4096, "nprobe": 256}


def db_search_params():
    """:class:`~faiss_flowhash.index.SearchParams` of :data:`DB_INDEX_SETTINGS`, passed at every search, so a
    database whose index file was written with other settings searches the same way."""
    from ..index import SearchParams

    return SearchParams(**DB_INDEX_SETTINGS)


def new_db_index(d: int, quantizer):
    """An empty FlowHashIndex of dimension ``d`` over a trained ``quantizer``, with the database's settings."""
    from ..index import FlowHashIndex

    return FlowHashIndex(d, quantizer=quantizer, **DB_INDEX_SETTINGS)
