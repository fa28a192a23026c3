"""Evaluation and calibration: the paper's Table 1 protocol (``flowhash eval``) and the calibration of
the database's "no match" threshold (``python -m faiss_flowhash.eval.calibrate``).

Both answer every query through the database's own identification path
(:func:`faiss_flowhash.db.identify.identify`), so what they measure is what ``flowhash query`` does.

- :mod:`.conditions`: the distortions (Condition, PAPER_CONDITIONS, EXTRA_CONDITIONS) and the 50 ms tolerance;
- :mod:`.queries`: seeded query specs, rendered through :mod:`faiss_flowhash.audio.distort` (eval split), fingerprinting;
- :mod:`.scoring`: where ids sit, the answer from the hits, the hit criterion (exact repeats included);
- :mod:`.protocol`: run_eval over methods, the summary table;
- :mod:`.command`: the ``flowhash eval DB QUERIES`` shell; :mod:`.calibrate`: the threshold calibration.
"""

from .conditions import EXTRA_CONDITIONS, PAPER_CONDITIONS, QUERY_LENGTHS_S, TOLERANCE_S, Condition
from .protocol import EvalResult, Searcher, format_table, index_searcher, run_eval, summarize
from .queries import (Banks, QuerySet, fingerprint_queries, make_banks, make_queries, query_distortion, query_repeats,
                      render_query)
from .scoring import answer, consensus, exact_repeats, is_hit, locate_from_counts, repeat_near

__all__ = [
    "Condition", "PAPER_CONDITIONS", "EXTRA_CONDITIONS", "QUERY_LENGTHS_S", "TOLERANCE_S", "QuerySet", "Banks",
    "make_queries", "make_banks", "query_distortion", "render_query", "fingerprint_queries", "query_repeats", "consensus", "answer", "is_hit",
    "exact_repeats", "repeat_near", "locate_from_counts", "index_searcher", "Searcher", "run_eval", "EvalResult", "summarize",
    "format_table", "add_eval_arguments", "run_eval_command", "save_reference",
]


def __getattr__(name):
    # the shell (argparse, database, faiss baselines) loads only when asked for
    if name in ("add_eval_arguments", "run_eval_command", "save_reference"):
        from . import command

        return getattr(command, name)
    raise AttributeError(f"module 'faiss_flowhash.eval' has no attribute {name!r}")
