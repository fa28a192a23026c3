"""Running the protocol: every query's fingerprints searched with each method, answered and scored;
one row per (method, query), summarised per (method, length, condition) like the paper's Table 1."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Callable, Mapping, Sequence

import numpy as np

from .conditions import PAPER_CONDITIONS, TOLERANCE_S, Condition
from .queries import QuerySet
from .scoring import answer, is_hit

__all__ = ["Searcher", "index_searcher", "run_eval", "EvalResult", "summarize", "format_table"]


Searcher = Callable[[np.ndarray, int], tuple]  # (q (m, d), k) -> (D (m, k), I (m, k), evaluated per row)


def index_searcher(index, *, params=None) -> Searcher:
    """Wrap an index as a searcher ``(q, k) -> (D, I, evaluated)``; ``evaluated`` = mean database
    vectors scored per query row: FlowHashIndex's ``last_search_stats.candidates``; IndexIVF*: faiss's
    distance counter; any other faiss index (flat, IndexLSH's Hamming scan): ``ntotal``. ``params``
    (None: the index's own): passed as ``index.search(q, k, params=params)`` (a FlowHashIndex
    ``SearchParams``, a faiss ``SearchParameters``)."""
    import faiss

    is_ivf = isinstance(index, faiss.IndexIVF)

    def search(q, k):
        q = np.ascontiguousarray(q, dtype=np.float32)
        if is_ivf:
            faiss.cvar.indexIVF_stats.reset()
        D, I = index.search(q, k) if params is None else index.search(q, k, params=params)
        if hasattr(index, "last_search_stats"):
            ev = index.last_search_stats.candidates
        elif is_ivf:
            ev = faiss.cvar.indexIVF_stats.ndis / max(len(q), 1)
        else:
            ev = float(index.ntotal)
        return D, I, float(ev)

    return search


def run_eval(
    query_fps: Sequence[np.ndarray],
    queries: QuerySet,
    methods: Mapping[str, Searcher],
    locate: Callable[[np.ndarray], tuple[np.ndarray, np.ndarray]],
    ntotal: int,
    *,
    k: int = 1,
    hop_s: float = 0.1,
    tolerance_s: float = TOLERANCE_S,
    consensus: str = "db",
    reference=None,
    min_confidence: float = 0.0,
    repeats: Sequence[Sequence[float]] | None = None,
    batch_rows: int = 0,
    keep_hits: bool = False,
    progress: Callable[[str], None] | None = None,
) -> "EvalResult":
    """Search every query with every method; one result row per (method, query).

    Args:
        query_fps: per query, its fingerprints (O_i, d) (1 s windows every ``hop_s``).
        queries: the specs (truth: ``track``, ``start``).
        methods: name -> searcher (see :func:`index_searcher`); each query is one search call.
        locate: database ids (m,) -> (track (m,), window (m,)) (e.g. :func:`locate_from_counts`).
        ntotal: database size N (for eval % = 100 * evaluated / N).
        k: hits per segment that vote (1: the paper).
        consensus: "db" (the database's identification, :func:`faiss_flowhash.db.identify.identify`: eq.
            12-13 over every hit with a 50 ms tolerance, score-weighted, repeats, confidence) or "paper"
            (:func:`~faiss_flowhash.eval.scoring.consensus`: eq. 12-13 exactly, offsets on the hop grid).
        reference: :class:`~faiss_flowhash.db.identify.ReferenceWindows` of the database in ``locate``'s
            track numbering: offsets are refined against it as the database does (None: the vote's).
        min_confidence: answers below it are "no match" (track -1), as the database's threshold (0: none).
        repeats: per query, the exact repeats of its true segment (seconds,
            :func:`~faiss_flowhash.eval.scoring.exact_repeats`): an answer there is a hit too.
        batch_rows: 0 (default): one search call per query (search_ms is that query's latency); > 0:
            the segments of a whole (length, condition) cell in calls of at most this many rows
            (much faster on large runs; search_ms and eval_pct are then the cell's means).
        keep_hits: also store each segment's top-1 id in the rows (``hits``, a list) for diagnostics.

    Returns:
        :class:`EvalResult`: ``rows`` per (method, query): method, query, length_s, condition, hit
        (bool), track_right (bool: the right track, whatever the offset), track, start_s (the answer),
        votes, confidence, alternates (the answer's other occurrences, seconds), eval_pct (mean over the query's segments), search_ms (search + consensus); ``table`` =
        :func:`summarize` of the rows.
    """
    if len(query_fps) != len(queries):
        raise ValueError(f"query_fps: expected {len(queries)} arrays (one per query), got {len(query_fps)}")
    if ntotal < 1:
        raise ValueError(f"ntotal: expected >= 1, got {ntotal}")
    if consensus not in ("db", "paper"):
        raise ValueError(f"consensus: expected 'db' or 'paper', got {consensus!r}")
    if isinstance(batch_rows, bool) or not isinstance(batch_rows, int) or batch_rows < 0:
        raise ValueError(f"batch_rows: expected an int >= 0, got {batch_rows!r}")
    if not 0 <= min_confidence <= 1:
        raise ValueError(f"min_confidence: expected in [0, 1], got {min_confidence}")
    if repeats is not None and len(repeats) != len(queries):
        raise ValueError(f"repeats: expected {len(queries)} lists (one per query), got {len(repeats)}")
    truth = (queries.track.astype(np.int64), queries.start_s)
    rows = []
    for name, search in methods.items():
        t_all = time.perf_counter()
        if batch_rows:
            answers = _search_batched(query_fps, queries, search, k, batch_rows)
        else:
            answers = _search_per_query(query_fps, search, k)
        for i, (D, I, ev, ms) in enumerate(answers):
            t0 = time.perf_counter()
            if I is not None and I.size:
                tr, sg = locate(I)
                a = answer(np.where(I >= 0, tr, -1), sg, D, hop_s=hop_s, how=consensus, tolerance_s=tolerance_s,
                           query=query_fps[i], reference=reference)
            else:
                a = {"track": -1, "start_s": 0.0, "votes": 0, "confidence": 0.0, "alternates": []}
            if a["confidence"] < min_confidence:
                a = {**a, "track": -1, "start_s": 0.0, "alternates": []}
            ms += 1000.0 * (time.perf_counter() - t0)
            track, start_s = a["track"], a["start_s"]
            rows.append({
                "method": name, "query": i, "length_s": float(queries.length_s[i]),
                "condition": queries.conditions[int(queries.cond[i])].label, "track": track,
                "start_s": start_s, "votes": a["votes"], "confidence": a["confidence"], "alternates": a["alternates"],
                "eval_pct": 100.0 * ev / ntotal, "search_ms": ms, "track_right": bool(track == truth[0][i]),
                "hit": bool(is_hit(track, start_s, truth[0][i], float(truth[1][i]), tolerance_s=tolerance_s,
                                   repeats=() if repeats is None else repeats[i])),
            })
            if keep_hits:
                rows[-1]["hits"] = I[:, 0].tolist() if I is not None else []
        if progress is not None:
            progress(f"{name}: {len(query_fps)} queries in {time.perf_counter() - t_all:.1f} s")
    return EvalResult(rows=rows, table=summarize(rows), conditions=tuple(queries.conditions))


def _search_per_query(query_fps, search, k):
    """One search call per query: (D, I, evaluated per row, ms) per query."""
    for q in query_fps:
        t0 = time.perf_counter()
        D, I, ev = search(q, k) if len(q) else (None, None, 0.0)
        yield D, I, ev, 1000.0 * (time.perf_counter() - t0)


def _search_batched(query_fps, queries, search, k, batch_rows):
    """The segments of all queries of one (length, condition) cell in calls of <= batch_rows rows:
    per query its (D, I) slice, the cell's mean evaluated per row, and the cell's time per query."""
    out = [None] * len(query_fps)
    cells = np.stack([queries.length, queries.cond], 1)
    for cell in np.unique(cells, axis=0):
        idx = np.flatnonzero((cells == cell).all(1))
        sizes = np.array([len(query_fps[i]) for i in idx])
        q = np.concatenate([query_fps[i] for i in idx])
        t0 = time.perf_counter()
        D, I, evs = [], [], 0.0
        for lo in range(0, len(q), batch_rows):
            d_, i_, e_ = search(q[lo:lo + batch_rows], k)
            D.append(d_), I.append(i_)
            evs += e_ * len(i_)
        ms = 1000.0 * (time.perf_counter() - t0) / len(idx)
        D, I = np.concatenate(D), np.concatenate(I)
        ends = np.cumsum(sizes)
        for j, i in enumerate(idx):
            out[i] = (D[ends[j] - sizes[j]:ends[j]], I[ends[j] - sizes[j]:ends[j]], evs / max(len(q), 1), ms)
    return out


@dataclass
class EvalResult:
    """``rows``: one dict per (method, query); ``table``: one per (method, length, condition)."""

    rows: list
    table: list
    conditions: tuple = PAPER_CONDITIONS

    def markdown(self) -> str:
        return format_table(self.table, conditions=self.conditions)


def summarize(rows: Sequence[dict]) -> list[dict]:
    """Per (method, length_s, condition): n, hit_rate (%), track_rate (% right track, any offset),
    eval_pct (mean), search_ms (mean), in first-seen order."""
    groups: dict = {}
    for r in rows:
        groups.setdefault((r["method"], r["length_s"], r["condition"]), []).append(r)
    out = []
    for (m, L, c), g in groups.items():
        out.append({"method": m, "length_s": L, "condition": c, "n": len(g),
                    "hit_rate": 100.0 * float(np.mean([r["hit"] for r in g])),
                    "track_rate": 100.0 * float(np.mean([r.get("track_right", r["hit"]) for r in g])),
                    "eval_pct": float(np.mean([r["eval_pct"] for r in g])),
                    "search_ms": float(np.mean([r["search_ms"] for r in g]))})
    return out


def format_table(summary: Sequence[dict], *, conditions: Sequence[Condition] = PAPER_CONDITIONS) -> str:
    """Markdown table shaped like the paper's Table 1: rows = query length x method, columns =
    the conditions' hit rates (%), then eval % and search ms per query (means over the row)."""
    labels = [c.label for c in conditions]
    cell = {(s["method"], s["length_s"], s["condition"]): s for s in summary}
    methods = list(dict.fromkeys(s["method"] for s in summary))
    lengths = sorted({s["length_s"] for s in summary})
    head = ["query", "method"] + [lb.replace("noise+reverb", "N+R").replace("reverb ", "rev ") for lb in labels]
    lines = ["| " + " | ".join(head + ["eval %", "ms/query"]) + " |", "|" + "---|" * (len(head) + 2)]
    for L in lengths:
        for m in methods:
            got = [cell.get((m, L, lb)) for lb in labels]
            if not any(got):
                continue
            vals = [f"{g['hit_rate']:.1f}" if g else "" for g in got]
            present = [g for g in got if g]
            ev = np.mean([g["eval_pct"] for g in present])
            ms = np.mean([g["search_ms"] for g in present])
            lines.append("| " + " | ".join([f"{L:g}s", m] + vals + [f"{ev:.3g}", f"{ms:.2f}"]) + " |")
    return "\n".join(lines)
