"""The shell of ``flowhash eval DB QUERIES``: open a database, make or load the query specs, fingerprint
the queries, build the methods, run :func:`faiss_flowhash.eval.protocol.run_eval`, print the table.

DB is a fingerprint database directory (:class:`faiss_flowhash.db.FingerprintDB`: its FlowHashIndex,
the track records in its LMDB store, its model) or a reference .npz written by :func:`save_reference`
(what ``bench/table1.py`` caches). The baselines (exact, IVF, IndexLSH) are built on the same stored
vectors.
"""

import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..db.identify import ReferenceWindows
from .protocol import index_searcher, run_eval
from .queries import QuerySet, fingerprint_queries, make_queries, query_repeats
from .scoring import locate_from_counts

__all__ = ["save_reference", "add_eval_arguments", "run_eval_command"]


@dataclass
class _Reference:
    """What the protocol needs from a database: its vectors and ids, where each id sits, the audio."""

    fingerprints: np.ndarray        # (N, d) stored vectors
    row_ids: np.ndarray             # (N,) the id of each row
    locate: object                  # ids (m,) -> (track position (m,), window (m,)), -1 where unknown
    track_paths: list               # audio file of each track position
    track_samples: np.ndarray       # (tracks,) length of each track in samples
    fingerprinter: object
    windows: ReferenceWindows       # the stored vectors by (track position, frame), for offset refinement
    index: object = None            # the database's own FlowHashIndex, when it has one


def save_reference(path, fingerprints, counts, track_paths, track_samples, *, model_id: str = "") -> None:
    """Write raw reference fingerprints as an .npz ``flowhash eval`` reads: fingerprints (N, d) float32,
    ids 0..N-1 track after track with ``counts[t]`` windows for track t; track_paths / track_samples
    (tracks,) name the audio files queries are cut from and their lengths in samples at 16 kHz."""
    fingerprints = np.ascontiguousarray(fingerprints, dtype=np.float32)
    counts = np.asarray(counts, dtype=np.int64)
    if fingerprints.ndim != 2 or counts.sum() != len(fingerprints):
        raise ValueError(f"counts: expected to sum to the {len(fingerprints)} fingerprint rows, got {counts.sum()}")
    if not len(track_paths) == len(track_samples) == len(counts):
        raise ValueError(f"track_paths, track_samples: expected {len(counts)} entries each, "
                         f"got {len(track_paths)} and {len(track_samples)}")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        np.savez(f, fingerprints=fingerprints, counts=counts, track_paths=np.array([str(p) for p in track_paths]),
                 track_samples=np.asarray(track_samples, np.int64), model_id=np.array(model_id))


def _open_reference(path, model) -> _Reference:
    from ..audio.fingerprinter import Fingerprinter

    path = Path(path)
    if path.is_dir():
        return _open_db(path, model)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: no such database directory or reference file")
    with np.load(path, allow_pickle=False) as z:
        missing = {"fingerprints", "counts", "track_paths", "track_samples"} - set(z.files)
        if missing:
            raise ValueError(f"{path}: not a reference .npz (missing {sorted(missing)})")
        x, counts, paths, samples = z["fingerprints"], z["counts"], [str(p) for p in z["track_paths"]], z["track_samples"]
        model_id = str(z["model_id"]) if "model_id" in z.files else ""
    fingerprinter = Fingerprinter.load(model)
    if model_id and model_id != fingerprinter.model_id:
        raise ValueError(f"model: {path} was fingerprinted with model {model_id}, got {fingerprinter.model_id} (pass --model)")
    windows = ReferenceWindows(x, np.cumsum(counts) - counts, counts)
    return _Reference(x, np.arange(len(x), dtype=np.int64), locate_from_counts(counts), paths, samples, fingerprinter,
                      windows)


def _open_db(path: Path, model) -> _Reference:
    """A FingerprintDB directory: its index (vectors, ids) and its track records, read once."""
    from ..db import FingerprintDB, decode_ids

    with FingerprintDB(path, model=model, readonly=True) as db:
        records = sorted(db.tracks(), key=lambda r: r.track_id)
        index = db.index
        fingerprinter = db.fingerprinter
    if index is None or index.ntotal == 0 or not records:
        raise ValueError(f"{path}: the database holds no fingerprints (ingest audio first)")
    track_ids = np.array([r.track_id for r in records], np.int64)

    def locate(ids):
        t, frame = decode_ids(ids)
        pos = np.minimum(np.searchsorted(track_ids, t), len(track_ids) - 1)
        ok = (t >= 0) & (track_ids[pos] == t)
        return np.where(ok, pos, -1), np.where(ok, frame, -1)

    samples = np.array([int(round(r.duration_s * fingerprinter.sample_rate)) for r in records], np.int64)
    x, row_ids = index.reconstruct_n(0, index.ntotal), index.ids
    # rows of a track are contiguous and in frame order (one add per track); where each track's rows start
    pos, frame = locate(row_ids)
    first = np.full(len(records), len(x), np.int64)
    np.minimum.at(first, pos[pos >= 0], np.flatnonzero(pos >= 0))
    count = np.bincount(pos[pos >= 0], minlength=len(records))
    windows = ReferenceWindows(x, np.where(count > 0, first, 0), count)
    return _Reference(x, row_ids, locate, [r.path for r in records], samples, fingerprinter, windows, index)


def _on_rows(search, row_ids):
    """A searcher over an index of the reference rows, answering with the rows' ids."""
    def by_id(q, k):
        D, I, ev = search(q, k)
        return D, np.where(I >= 0, row_ids[np.maximum(I, 0)], -1), ev
    return by_id


def _build_methods(names, ref: _Reference, *, ivf_nlist: int | None, ivf_nprobe: int, lsh_bits: int):
    import faiss

    x = np.ascontiguousarray(ref.fingerprints, dtype=np.float32)
    N, d = x.shape
    methods = {}
    for name in names:
        if name == "flowhash":
            index = ref.index
            if index is None:
                from ..db.index_settings import new_db_index

                if ref.fingerprinter.quantizer is None:
                    raise ValueError("flowhash: the fingerprint model has no trained quantizer")
                index = new_db_index(d, ref.fingerprinter.quantizer)  # as the database builds it
                index.verbose = False
                index.add_with_ids(x, ref.row_ids)
            from ..db.index_settings import db_search_params

            methods["FlowHash"] = index_searcher(index, params=db_search_params())  # as the database searches
        elif name == "exact":
            flat = faiss.IndexFlatIP(d)
            flat.add(x)
            methods["Exact"] = _on_rows(index_searcher(flat), ref.row_ids)
        elif name == "ivf":
            nlist = ivf_nlist or max(1, min(4096, int(np.sqrt(N)), N // 39))  # >= 39 training points per list
            ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(d), d, nlist, faiss.METRIC_INNER_PRODUCT)
            ivf.train(x)
            ivf.add(x)
            ivf.nprobe = ivf_nprobe
            methods[f"IVFFlat{nlist} np{ivf_nprobe}"] = _on_rows(index_searcher(ivf), ref.row_ids)
        elif name == "lsh":
            lsh = faiss.IndexLSH(d, lsh_bits)
            lsh.train(x)
            lsh.add(x)
            methods[f"IndexLSH{lsh_bits}"] = _on_rows(index_searcher(lsh), ref.row_ids)
        else:
            raise ValueError(f"methods: expected names from flowhash, exact, ivf, lsh, got {name!r}")
    return methods


def add_eval_arguments(parser) -> None:
    """Arguments of ``flowhash eval DB QUERIES`` on an argparse parser."""
    parser.add_argument("db", help="fingerprint database directory, or a reference .npz (save_reference)")
    parser.add_argument("queries", help="query spec file (.npz); created from the database's tracks if missing")
    parser.add_argument("--n-per-cell", type=int, default=100, help="queries per (length, condition) when creating (100)")
    parser.add_argument("--lengths", default="1,2,3,5", help="query lengths in seconds when creating (1,2,3,5)")
    parser.add_argument("--seed", type=int, default=0, help="query seed when creating (0)")
    parser.add_argument("--methods", default="flowhash,exact", help="comma list of flowhash, exact, ivf, lsh (flowhash,exact)")
    parser.add_argument("--k", type=int, default=1, help="hits per segment voting in the offset consensus (1)")
    parser.add_argument("--consensus", choices=("db", "paper"), default="db",
                        help="answer: the database's identification (db.identify) or eq. 12-13 exactly (db)")
    parser.add_argument("--model", default=None,
                        help="fingerprint model file (default: the database's model, else the shipped one)")
    parser.add_argument("--ivf-nlist", type=int, default=None, help="IVF lists (sqrt(N), at most N / 39)")
    parser.add_argument("--ivf-nprobe", type=int, default=8, help="IVF lists probed (8)")
    parser.add_argument("--lsh-bits", type=int, default=64, help="IndexLSH bits (64)")
    parser.add_argument("--min-confidence", type=float, default=0.0,
                        help="answers below this confidence count as 'no match' (0: none, the paper's protocol; "
                             "the database answers with 0.70)")
    parser.add_argument("--repeats", action="store_true",
                        help="an answer on an exact repeat of the true segment (waveform correlation >= 0.95) counts "
                             "as right too (one FFT correlation per query over its track)")
    parser.add_argument("--json", action="store_true", help="print the result table as JSON")


def run_eval_command(args) -> int:
    """``flowhash eval``: run the protocol on a database; prints the table (or JSON). Returns the exit
    status: 0, or 2 for bad input (message on stderr)."""
    from ..audio.io import load_audio

    try:
        ref = _open_reference(args.db, args.model)
        qpath = Path(args.queries)
        if qpath.exists():
            queries = QuerySet.load(qpath)
            where = {p: i for i, p in enumerate(ref.track_paths)}
            missing = [n for n in queries.track_names if n not in where]
            if missing:
                raise ValueError(f"{qpath}: {len(missing)} query tracks are not in the database, e.g. {missing[0]}")
            queries.track = np.array([where[queries.track_names[t]] for t in queries.track], np.int32)
            queries.track_names = tuple(ref.track_paths)
        else:
            lengths = tuple(float(v) for v in str(args.lengths).split(","))
            queries = make_queries(ref.track_samples, track_names=ref.track_paths, lengths_s=lengths,
                                   n_per_cell=args.n_per_cell, seed=args.seed)
            queries.save(qpath)
        names = [m.strip() for m in str(args.methods).split(",") if m.strip()]
        methods = _build_methods(names, ref, ivf_nlist=args.ivf_nlist, ivf_nprobe=args.ivf_nprobe,
                                 lsh_bits=args.lsh_bits)
        fp = ref.fingerprinter
        load = lambda t: load_audio(ref.track_paths[t], sample_rate=queries.sample_rate)  # noqa: E731
        fps = fingerprint_queries(queries, load, fp)
        repeats = query_repeats(queries, load) if args.repeats else None
        result = run_eval(fps, queries, methods, ref.locate, len(ref.fingerprints), k=args.k, hop_s=fp.hop_s,
                          consensus=args.consensus, reference=ref.windows, min_confidence=args.min_confidence,
                          repeats=repeats)
    except (ValueError, TypeError, FileNotFoundError) as e:
        print(f"flowhash eval: error: {e}", file=sys.stderr)
        return 2
    if args.json:
        print(json.dumps({"queries": str(qpath), "n_queries": len(queries), "table": result.table}, indent=1))
    else:
        print(result.markdown())
    return 0
