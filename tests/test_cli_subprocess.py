"""The real ``flowhash`` command as a subprocess: ingest / query --json / stats / list, and bad database paths
(exit status, one-line message, never a traceback).

The command is the installed console script when it runs the code under test (CI: ``pip install -e .``),
else ``python -m faiss_flowhash.cli`` from the repository root. Each call starts a fresh interpreter
(torch import, model load: seconds), so the calls are few and the independent ones run side by side.
"""

import json
import os
import shutil
import subprocess
import sys

import numpy as np
import pytest

from faiss_flowhash.audio import save_audio, synth

from conftest import CI

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR = 16000


def _console_script() -> list[str] | None:
    """["flowhash"] when the console script on PATH imports faiss_flowhash from ROOT, else None."""
    exe = shutil.which("flowhash")
    if exe is None:
        return None
    with open(exe, "rb") as f:
        first = f.readline().decode(errors="replace").strip()
    if not first.startswith("#!"):
        return None
    where = "import importlib.util, os; print(os.path.realpath(importlib.util.find_spec('faiss_flowhash').origin))"
    probe = subprocess.run([*first[2:].split(), "-c", where], capture_output=True, text=True, cwd="/", timeout=60)
    return [exe] if probe.stdout.strip().startswith(os.path.realpath(ROOT) + os.sep) else None


COMMAND = _console_script() or [sys.executable, "-m", "faiss_flowhash.cli"]


def _env():
    env = dict(os.environ, OMP_NUM_THREADS="1", OMP_WAIT_POLICY="PASSIVE")
    env.pop("PYTHONPATH", None)
    return env


def start(*args) -> subprocess.Popen:
    return subprocess.Popen([*COMMAND, *map(str, args)], cwd=ROOT, env=_env(), stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True)


def finish(proc: subprocess.Popen) -> tuple[int, str, str]:
    out, err = proc.communicate(timeout=300)
    assert "Traceback" not in err, err[-3000:]
    return proc.returncode, out, err


def flowhash(*args) -> tuple[int, str, str]:
    return finish(start(*args))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("clisub")
    audio = root / "audio"
    audio.mkdir()
    waves = {}
    for i, w in enumerate([synth.synthetic_music(8.0, seed=610 + i) for i in range(3)]
                          + [synth.chirp(200.0, 4000.0, 8.0, method="log")]):
        path = audio / f"t{i}.flac"
        save_audio(path, np.clip(w, -1, 1))
        waves[str(path)] = np.clip(w, -1, 1).astype(np.float32)
    (audio / "broken.wav").write_bytes(b"RIFF\x24\x00\x00\x00WAVEnot really audio")
    snippets = {}
    for i, (path, w) in enumerate(waves.items()):
        snip = root / f"snip{i}.wav"
        save_audio(snip, w[int((1.5 + i) * SR): int((4.5 + i) * SR)])
        snippets[str(snip)] = (path, 1.5 + i)
    unknown = root / "unknown.wav"
    save_audio(unknown, synth.synthetic_music(3.0, seed=999))
    return {"root": root, "audio": audio, "waves": waves, "snippets": snippets, "unknown": str(unknown)}


@pytest.fixture(scope="module")
def db(corpus):
    path = corpus["root"] / "db"
    rc, out, err = flowhash("ingest", path, corpus["audio"], "--no-progress")
    assert rc == 1, (out, err)  # one broken file: status 1, the rest ingested
    assert out.startswith("ingest: 4 added, 0 skipped (already ingested), 1 failed")
    assert [line for line in err.splitlines() if line] == [line for line in err.splitlines() if "broken.wav" in line]
    assert f"flowhash ingest: skipped {corpus['audio'] / 'broken.wav'}:" in err
    return path


def test_console_script_is_the_code_under_test():
    if CI:  # .ci/run installs the package (pip install -e .): the entry point must run the code under test
        assert COMMAND == [shutil.which("flowhash")], COMMAND
    assert COMMAND[0] == shutil.which("flowhash") or COMMAND[1:] == ["-m", "faiss_flowhash.cli"]


def test_query_json_and_stats(db, corpus):
    snippets = sorted(corpus["snippets"])
    missing = corpus["root"] / "missing.wav"
    procs = [start("query", db, *snippets, corpus["unknown"], missing, "--json"), start("stats", db, "--json")]
    (rc, out, err), (rc_s, out_s, err_s) = [finish(p) for p in procs]

    assert rc == 1  # the missing snippet
    lines = [json.loads(line) for line in out.splitlines()]
    assert [r["query"] for r in lines] == [*snippets, corpus["unknown"], str(missing)]
    for r in lines[: len(snippets)]:
        path, start_s = corpus["snippets"][r["query"]]
        assert len(r["matches"]) == 1, r
        m = r["matches"][0]
        assert m["path"] == path and abs(m["offset_s"] - start_s) <= 0.05
        assert 0 <= m["confidence"] <= 1 and 0 < r["eval_percent"] <= 100
    assert lines[-2]["matches"] == []  # not ingested: no match
    assert lines[-1]["matches"] == [] and "error" in lines[-1]
    assert str(missing) in err and len(err.splitlines()) == 1

    assert rc_s == 0 and err_s == ""
    stats = json.loads(out_s)
    assert stats["tracks"] == 4 and stats["fingerprints"] == stats["index_vectors"] > 0
    assert stats["hours"] == pytest.approx(4 * 8.0 / 3600)


# Several command lines through faiss_flowhash.cli.main in one interpreter (each start costs ~5 s of CPU):
# status (SystemExit included) and stderr per line, "traceback" when an exception escaped main.
_DRIVER = """
import contextlib, io, json, sys, traceback
from faiss_flowhash.cli import main
for args in json.loads(sys.argv[1]):
    err = io.StringIO()
    with contextlib.redirect_stderr(err):
        try:
            rc = main(args)
        except SystemExit as e:
            rc = e.code
        except BaseException:
            rc = "traceback"
            traceback.print_exc(file=err)
    print(json.dumps({"rc": rc, "err": err.getvalue()}), flush=True)
"""


def _check_error(name, command, rc, err, needle):
    assert rc == 2 and "Traceback" not in err, (name, rc, err)
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"flowhash {command}: error: "), (name, err)
    assert needle in lines[0], (name, err)


def test_bad_database_paths_exit_2_with_a_message(db, corpus, tmp_path):
    a_file = tmp_path / "a_file"
    a_file.write_text("not a database")
    corrupt = tmp_path / "corrupt"
    shutil.copytree(db, corrupt)
    (corrupt / "index.flowhash").write_bytes(b"FLOWHASH\x01\x00\x00\x00garbage")
    nowhere = tmp_path / "nowhere"
    cases = {  # name: (command line, what the message must name)
        "stats on a file": (["stats", str(a_file)], str(a_file)),
        "list on a folder that is no database": (["list", str(tmp_path)], str(tmp_path)),
        "ingest below a file": (["ingest", str(a_file / "db"), str(corpus["audio"]), "--no-progress"], str(a_file)),
        "ingest into a file": (["ingest", str(a_file), str(corpus["audio"]), "--no-progress"], str(a_file)),
        "stats on a corrupted index": (["stats", str(corrupt)], "index.flowhash"),
    }
    real = start("query", nowhere, corpus["unknown"])  # the real entry point, side by side with the driver
    driver = subprocess.Popen([sys.executable, "-c", _DRIVER, json.dumps([args for args, _ in cases.values()])],
                              cwd=ROOT, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    out, err = real.communicate(timeout=300)
    _check_error("query on no database", "query", real.returncode, err, str(nowhere))
    out_d, err_d = driver.communicate(timeout=300)
    results = [json.loads(line) for line in out_d.splitlines()]
    assert len(results) == len(cases), err_d[-3000:]
    for (name, (args, needle)), r in zip(cases.items(), results):
        _check_error(name, args[0], r["rc"], r["err"], needle)
    assert not nowhere.exists()  # a query does not create a database
