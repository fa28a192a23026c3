"""Where a fresh ``flowhash query`` process spends its time: imports, model, index, first answer.

    OPENBLAS_NUM_THREADS=1 python -m bench.startup_phases DB SNIPPET     (run from the checkout's root)

Prints one JSON line: seconds since interpreter start (``time.perf_counter`` from the first line of this
script; the interpreter's own start-up, ~20-40 ms, is not in it) after each phase, and whether torch got
imported.
"""

import time

T0 = time.perf_counter()

import json  # noqa: E402
import sys  # noqa: E402


def main() -> int:
    db_path, snippet = sys.argv[1], sys.argv[2]
    marks = {}
    from faiss_flowhash.db import FingerprintDB

    marks["import_db"] = time.perf_counter() - T0
    db = FingerprintDB(db_path, readonly=True)
    marks["open_db"] = time.perf_counter() - T0
    fp = db.fingerprinter
    marks["model"] = time.perf_counter() - T0
    db.index  # noqa: B018 - read the index file
    marks["index"] = time.perf_counter() - T0
    res = db.query(snippet)
    marks["first_answer"] = time.perf_counter() - T0
    db.query(snippet)
    marks["second_answer"] = time.perf_counter() - T0
    top = res.matches[0] if res.matches else None
    print(json.dumps({**{k: round(v, 3) for k, v in marks.items()}, "backend": fp.backend,
                      "torch_imported": "torch" in sys.modules,
                      "answer": None if top is None else [top.track_id, round(top.offset_s, 2), round(top.confidence, 2)]}))
    db.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
