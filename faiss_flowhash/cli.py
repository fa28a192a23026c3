"""The ``flowhash`` command line: ingest audio, identify snippets, inspect and edit a fingerprint database.

    flowhash ingest DB PATH...          files, folders (recursive) or globs
    flowhash query DB SNIPPET... [--top N] [--json] [--min-confidence C]
    flowhash query DB --all RECORDING|- [--json]   every matched span of a long recording or stream
    flowhash stats DB [--json]
    flowhash list DB [--json]
    flowhash remove DB TRACK...         track ids or paths
    flowhash compact DB [--json]        rewrite the index's base file, dropping its segments
    flowhash train --out MODEL ...      see faiss_flowhash.audio.train
    flowhash eval DB QUERIES ...        see faiss_flowhash.eval.command
    flowhash serve DB [--port N]        HTTP query service, see faiss_flowhash.serve

Subcommands come from ``COMMANDS``: adding one (e.g. ``flowhash eval``) is one ``Command(...)`` line
there. Exit status: 0 success; 1 some inputs failed (files not ingested, snippets not decoded, unknown
tracks); 2 usage errors and databases that cannot be used (missing, other format or model).
"""

import argparse
import json
import os
import sys
from dataclasses import dataclass
from typing import Callable

__all__ = ["Command", "COMMANDS", "build_parser", "main"]


@dataclass(frozen=True)
class Command:
    """A subcommand: ``add_arguments(parser)`` fills its parser, ``run(args) -> exit status`` runs it."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], object]
    run: Callable[[argparse.Namespace], int]


def _eprint(*a) -> None:
    print(*a, file=sys.stderr, flush=True)


def _db_arguments(p: argparse.ArgumentParser) -> None:
    p.add_argument("db", metavar="DB", help="database directory")
    p.add_argument("--model", default=None,
                   help="fingerprint model file (default: the database's model, else the shipped one)")
    p.add_argument("--threads", type=int, default=1,
                   help="CPU threads for fingerprinting: numpy's BLAS (OPENBLAS_NUM_THREADS unless set) or torch "
                        "(default 1: fingerprinting small batches is fastest on one thread, and far faster than 2+ "
                        "threads on a loaded machine; raise it on an idle many-core one)")


def _lock_wait_message(args):
    return lambda: _eprint(f"flowhash {args.command}: another process is writing {args.db}; waiting for its lock "
                           "(up to 60 s) ...")


def _open(args, *, readonly: bool, create: bool = False, model: bool = False, **kw):
    """The database of ``args.db``. The model fingerprints on numpy (torch is never imported for it: see
    ``Fingerprinter.load``); where torch is loaded already, its threads follow ``--threads``."""
    from .db import FingerprintDB

    if args.threads < 1:
        raise ValueError(f"--threads: expected an int >= 1, got {args.threads}")
    if "torch" in sys.modules:
        sys.modules["torch"].set_num_threads(args.threads)
    if not readonly:
        kw.setdefault("on_lock_wait", _lock_wait_message(args))
    return FingerprintDB(args.db, model=args.model, readonly=readonly, create=create, **kw)


# -- ingest ---------------------------------------------------------------------------------------
def _ingest_arguments(p):
    _db_arguments(p)
    p.add_argument("paths", nargs="+", metavar="PATH", help="audio files, folders (searched recursively) or globs")
    p.add_argument("--batch-files", type=int, default=16, help="files per commit (default 16)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def _ingest(args) -> int:
    with _open(args, readonly=False, create=True, model=True, batch_files=args.batch_files) as db:
        report = db.ingest(args.paths, progress=not args.no_progress)
    for path, reason in report.failed:
        _eprint(f"flowhash ingest: skipped {path}: {reason}")
    if args.json:
        print(json.dumps({"added": [r.track_id for r in report.added], "skipped": [p for p, _ in report.skipped],
                          "failed": [{"path": p, "reason": r} for p, r in report.failed],
                          "audio_s": report.audio_s, "elapsed_s": report.elapsed_s}))
    else:
        print(f"ingest: {report.summary()}")
    return 0 if report.ok else 1


# -- query ----------------------------------------------------------------------------------------
def _query_arguments(p):
    from .db.consensus import DEFAULT_MIN_CONFIDENCE

    _db_arguments(p)
    p.add_argument("snippets", nargs="+", metavar="SNIPPET",
                   help="audio files to identify; '-' reads standard input (WAV, or raw 16 kHz mono s16le)")
    p.add_argument("--all", action="store_true",
                   help="long recordings and streams: every matched span (track, start in the recording, start in "
                        "the track, duration, confidence), printed as each one ends; memory stays bounded")
    p.add_argument("--top", type=int, default=1, help="tracks to report per snippet (default 1)")
    p.add_argument("--min-confidence", type=float, default=DEFAULT_MIN_CONFIDENCE,
                   help=f"answer 'no match' below this confidence in [0, 1] (default {DEFAULT_MIN_CONFIDENCE}, "
                        "calibrated on real music: see faiss_flowhash.db.consensus; --all rates each span's "
                        "detection block the same way)")
    p.add_argument("--json", action="store_true", help="one JSON object per snippet (--all: per span), one per line")


def _query(args) -> int:
    if args.top < 1:
        _eprint(f"flowhash query: error: --top: expected an int >= 1, got {args.top}")
        return 2
    if not 0 <= args.min_confidence <= 1:
        _eprint(f"flowhash query: error: --min-confidence: expected a number in [0, 1], got {args.min_confidence}")
        return 2
    if args.snippets.count("-") > 1:
        _eprint("flowhash query: error: '-' (standard input) can be given once")
        return 2
    status = 0
    with _open(args, readonly=True, model=True) as db:
        for snippet in args.snippets:
            status = max(status, (_scan_one if args.all else _query_one)(db, snippet, args))
    return status


def _query_error(snippet: str, e: Exception, args, **empty) -> int:
    _eprint(f"flowhash query: {e}")
    if args.json:
        print(json.dumps({"query": snippet, **empty, "error": str(e)}), flush=True)
    return 1


def _query_one(db, snippet: str, args) -> int:
    """One snippet, one answer (best tracks, each with its repeats)."""
    from .audio.io import AudioDecodeError
    from .db import SnippetTooShortError

    try:
        source = _stdin_wave(db) if snippet == "-" else snippet
        res = db.query(source, top=args.top, min_confidence=args.min_confidence)
    except (AudioDecodeError, FileNotFoundError, SnippetTooShortError) as e:
        return _query_error(snippet, e, args, matches=[], eval_percent=0.0, elapsed_ms=0.0)
    if snippet == "-":
        res.query = "-"
    if args.json:
        print(json.dumps(res.to_dict()), flush=True)
        return 0
    tail = f"[{res.n_segments} segments, {res.eval_percent:.2f}% evaluated, {res.elapsed_ms:.0f} ms]"
    if not res.matches:
        print(f"{snippet}: no match {tail}", flush=True)
    for i, m in enumerate(res.matches):
        head = f"{snippet}:" if i == 0 else " " * len(snippet) + f" #{i + 1}"
        also = ", also at " + ", ".join(f"{o:.2f} s" for o, _ in m.alternates) if m.alternates else ""
        print(f"{head} track {m.track_id} {m.path} at {m.offset_s:.2f} s{also} "
              f"(score {m.score:.3f}, confidence {m.confidence:.2f})" + (f" {tail}" if i == 0 else ""), flush=True)
    return 0


def _stdin_wave(db):
    """Standard input (WAV or raw 16 kHz s16le) as one wave, for a plain query."""
    import numpy as np

    from .audio.stream import audio_chunks

    return np.concatenate([np.zeros(0, np.float32), *audio_chunks(sys.stdin.buffer, sample_rate=db.fingerprinter.sample_rate)])


def _scan_one(db, snippet: str, args) -> int:
    """``--all``: every matched span of a recording (or of standard input), printed as each one ends."""
    from .audio.io import AudioDecodeError

    found = 0
    try:
        for span in db.scan(sys.stdin.buffer if snippet == "-" else snippet, min_confidence=args.min_confidence):
            found += 1
            if args.json:
                print(json.dumps({"query": snippet, **span.to_dict()}), flush=True)
            else:
                print(f"{snippet}: {span.start_s:.2f}-{span.start_s + span.duration_s:.2f} s: track {span.track_id} "
                      f"{span.path} from {span.track_start_s:.2f} s ({span.duration_s:.1f} s, confidence "
                      f"{span.confidence:.2f})", flush=True)
    except (AudioDecodeError, FileNotFoundError) as e:
        return _query_error(snippet, e, args)
    if not found and not args.json:
        print(f"{snippet}: no match", flush=True)
    return 0


# -- stats, list, remove --------------------------------------------------------------------------
def _json_flag(p):
    p.add_argument("--json", action="store_true", help="JSON output")


def _stats(args) -> int:
    with _open(args, readonly=True) as db:
        s = db.stats()
    if args.json:
        print(json.dumps(s))
        return 0
    print(f"database      {s['path']} (format {s['format_version']}, created {s['created']})")
    print(f"model         {s['model_id']}")
    print(f"tracks        {s['tracks']}")
    print(f"hours         {s['hours']:.3f}")
    print(f"fingerprints  {s['fingerprints']} ({s['index_vectors']} in the index)")
    print(f"buckets       {s['buckets_used']} of 2^{s['K']} used ({100 * (1 - s['bucket_empty_share']):.2f}%), "
          f"largest / mean {s['bucket_max_over_mean']:.1f}, within K+-1 {100 * s['bucket_within_k1_share']:.1f}%")
    print(f"memory        {s['index_memory_bytes'] / 2**20:.2f} MiB (index)")
    print(f"on disk       {s['bytes_on_disk'] / 2**20:.2f} MiB")
    return 0


def _list(args) -> int:
    with _open(args, readonly=True) as db:
        records = db.tracks()
    if args.json:
        for r in records:
            print(json.dumps({"track_id": r.track_id, "path": r.path, "duration_s": r.duration_s,
                              "fingerprints": r.n_fingerprints, "content_hash": r.content_hash, "added": r.added}))
        return 0
    print(f"{'id':>6}  {'duration':>9}  {'fprints':>7}  path")
    for r in records:
        print(f"{r.track_id:>6}  {r.duration_s:>8.1f}s  {r.n_fingerprints:>7}  {r.path}")
    return 0


def _remove_arguments(p):
    _db_arguments(p)
    p.add_argument("tracks", nargs="+", metavar="TRACK", help="track ids (see flowhash list) or paths")


def _remove(args) -> int:
    status = 0
    with _open(args, readonly=False) as db:
        for t in args.tracks:
            key = int(t) if t.isdigit() and not os.path.exists(t) else t
            try:
                for r in db.remove(key):
                    print(f"removed track {r.track_id} {r.path}")
            except KeyError as e:
                status = 1
                _eprint(f"flowhash remove: {e.args[0]}")
    return status


def _compact(args) -> int:
    with _open(args, readonly=False) as db:
        c = db.compact()
    if args.json:
        print(json.dumps(c))
    elif c["segments"]:
        print(f"compacted {c['segments']} segments ({c['delta_rows']} rows and removed ids) into the base: "
              f"{c['ntotal']} vectors, {c['base_bytes'] / 2**20:.2f} MiB, {c['seconds']:.1f} s")
    else:
        print("nothing to compact")
    return 0


def _lazy(module: str, name: str):
    """``faiss_flowhash.<module>.<name>``, imported when the subcommand is used."""
    import importlib

    return getattr(importlib.import_module(f".{module}", __package__), name)


# -- train ----------------------------------------------------------------------------------------
def _train_arguments(p):
    from .audio.train import add_train_arguments

    add_train_arguments(p)


def _train(args) -> int:
    from .audio.train import run_train

    return run_train(args)


COMMANDS: list[Command] = [
    Command("ingest", "fingerprint audio files and add them to a database", _ingest_arguments, _ingest),
    Command("query", "identify snippets: track, offset, confidence (or no match)", _query_arguments, _query),
    Command("stats", "tracks, hours, fingerprints, bucket balance, bytes on disk",
            lambda p: (_db_arguments(p), _json_flag(p)), _stats),
    Command("list", "list the tracks", lambda p: (_db_arguments(p), _json_flag(p)), _list),
    Command("remove", "remove tracks by id or path", _remove_arguments, _remove),
    Command("train", "train a fingerprint model (encoder + flow)", _train_arguments, _train),
    Command("eval", "the paper's Table 1 protocol on a database (faiss_flowhash.eval.command)",
            lambda p: _lazy("eval.command", "add_eval_arguments")(p), lambda a: _lazy("eval.command", "run_eval_command")(a)),
    Command("serve", "answer queries over HTTP with the model and index kept loaded (faiss_flowhash.serve)",
            lambda p: _lazy("serve", "add_serve_arguments")(p), lambda a: _lazy("serve", "run_serve")(a)),
    Command("compact", "rewrite the index's base file with every commit (readers keep answering)",
            lambda p: (_db_arguments(p), _json_flag(p)), _compact),
]


def build_parser(commands: list[Command] | None = None, *, only: str | None = None) -> argparse.ArgumentParser:
    """The ``flowhash`` parser with one subparser per command (``COMMANDS`` by default).

    ``only``: fill in the arguments of that command alone (what :func:`main` does with the command named
    on the command line: the others' argument builders may import heavy modules, e.g. train's torch)."""
    parser = argparse.ArgumentParser(prog="flowhash", description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for c in COMMANDS if commands is None else commands:
        p = sub.add_parser(c.name, help=c.help, description=c.help)
        if only is None or c.name == only:
            c.add_arguments(p)
        p.set_defaults(_run=c.run)
    return parser


_FINGERPRINTING = ("ingest", "query", "serve")  # commands whose --threads sets the fingerprinting threads


def _blas_threads(argv: list[str]) -> str:
    """The ``--threads`` value of a command line ("1" when absent or not a positive int): what main sets as
    OPENBLAS_NUM_THREADS (unless set) before numpy loads. numpy fingerprints on one BLAS thread by
    default: several times faster than two on a loaded 2-core machine (bench/results/startup.md)."""
    n = "1"
    for i, a in enumerate(argv):
        if a == "--threads" and i + 1 < len(argv):
            n = argv[i + 1]
        elif a.startswith("--threads="):
            n = a.split("=", 1)[1]
    return n if n.isdigit() and int(n) >= 1 else "1"


def main(argv=None) -> int:
    """Entry point of ``flowhash`` and ``python -m faiss_flowhash``; returns the exit status."""
    argv = sys.argv[1:] if argv is None else [str(a) for a in argv]
    names = {c.name for c in COMMANDS}
    named = next((a for a in argv if a in names), "")  # the subcommand: only its arguments are built
    if named in _FINGERPRINTING and "numpy" not in sys.modules:
        os.environ.setdefault("OPENBLAS_NUM_THREADS", _blas_threads(argv))
    from .db import DatabaseMismatchError

    args = build_parser(only=named).parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except (DatabaseMismatchError, FileNotFoundError, NotADirectoryError, TimeoutError) as e:
        hint = ""
        if isinstance(e, NotADirectoryError) and args.command == "ingest":
            hint = " (usage: flowhash ingest DB PATH...: the first argument is the database directory)"
        _eprint(f"flowhash {args.command}: error: {e}{hint}")
        return 2
    except OSError as e:  # permissions, a full disk, ...: a message, not a traceback
        _eprint(f"flowhash {args.command}: error: {type(e).__name__}: {e}")
        return 2
    except ValueError as e:  # a database file that does not read (corrupted index, ...)
        _eprint(f"flowhash {args.command}: error: {e}")
        return 2


if __name__ == "__main__":
    sys.exit(main())
