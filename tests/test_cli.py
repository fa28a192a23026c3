"""The ``flowhash`` command line: ingest / query (--json schema) / stats / list / remove / train mount, exit
statuses, and crash safety with ingests killed by SIGKILL while a reader queries."""

import json
import os
import signal
import subprocess
import sys
import time

import numpy as np
import pytest

from faiss_flowhash.audio import Fingerprinter, save_audio
from faiss_flowhash.cli import COMMANDS, Command, build_parser, main
from faiss_flowhash.db import FingerprintDB

from test_db import make_corpus, not_ingested, snippet

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    folder = str(tmp_path_factory.mktemp("cli") / "audio")
    waves = make_corpus(folder, seconds=10.0)
    snips = {}
    for i, (path, wave) in enumerate(waves.items()):
        f = os.path.join(os.path.dirname(folder), f"snip{i}.wav")
        save_audio(f, snippet(wave, 1.0 + i, 3.0))
        snips[f] = (path, 1.0 + i)
    ood = os.path.join(os.path.dirname(folder), "not_ingested.wav")
    save_audio(ood, np.clip(not_ingested()[0], -1, 1))
    return {"folder": folder, "waves": waves, "snippets": snips, "ood": ood}


@pytest.fixture(scope="module")
def db(corpus, tmp_path_factory):
    path = str(tmp_path_factory.mktemp("clidb") / "db")
    assert main(["ingest", path, corpus["folder"], "--no-progress"]) == 1  # broken files: status 1
    return path


def _json_lines(out: str) -> list[dict]:
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def test_ingest_summary_and_failures(corpus, tmp_path, capsys):
    path = str(tmp_path / "db")
    good = [p for p in corpus["waves"]][:2]
    assert main(["ingest", path, *good, "--no-progress"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("ingest: 2 added, 0 skipped") and "x real time" in out
    assert main(["ingest", path, corpus["folder"], "--no-progress", "--json"]) == 1
    out, err = capsys.readouterr()
    summary = json.loads(out)
    assert len(summary["added"]) == len(corpus["waves"]) - 2 and sorted(summary["skipped"]) == sorted(good)
    assert {os.path.basename(f["path"]) for f in summary["failed"]} == {"broken.wav", "empty.flac", "short.wav"}
    assert "broken.wav" in err


def test_query_json_schema(db, corpus, capsys):
    snips = list(corpus["snippets"])
    assert main(["query", db, *snips, corpus["ood"], "--json", "--top", "2"]) == 0
    results = _json_lines(capsys.readouterr().out)
    assert len(results) == len(snips) + 1
    for r in results:
        assert set(r) == {"query", "matches", "eval_percent", "elapsed_ms"}
        assert isinstance(r["query"], str) and isinstance(r["matches"], list)
        assert isinstance(r["eval_percent"], float) and isinstance(r["elapsed_ms"], float)
        for m in r["matches"]:
            assert set(m) == {"track_id", "path", "offset_s", "score", "confidence", "alternates"}
            assert isinstance(m["track_id"], int) and isinstance(m["path"], str)
            assert all(isinstance(m[k], float) for k in ("offset_s", "score", "confidence"))
            assert 0 <= m["confidence"] <= 1
    for r in results[:-1]:
        path, start = corpus["snippets"][r["query"]]
        assert r["matches"][0]["path"] == path and abs(r["matches"][0]["offset_s"] - start) <= 0.05
        assert len(r["matches"]) <= 2
    assert results[-1]["query"] == corpus["ood"] and results[-1]["matches"] == []


def test_query_human_output_and_options(db, corpus, capsys):
    snip = next(iter(corpus["snippets"]))
    path, start = corpus["snippets"][snip]
    assert main(["query", db, snip, corpus["ood"], os.path.join(corpus["folder"], "broken.wav")]) == 1
    out, err = capsys.readouterr()
    lines = out.splitlines()
    assert lines[0].startswith(f"{snip}: track ") and path in lines[0] and f"at {start:.2f} s" in lines[0]
    assert lines[1].startswith(f"{corpus['ood']}: no match")
    assert "broken.wav" in err
    assert main(["query", db, corpus["ood"], "--json", "--min-confidence", "0"]) == 0
    assert _json_lines(capsys.readouterr().out)[0]["matches"]  # the threshold is what says "no match"
    assert main(["query", db, snip, "--min-confidence", "1.5"]) != 0


def test_stats_list_remove(db, corpus, capsys, tmp_path):
    import shutil

    path = str(tmp_path / "db")
    shutil.copytree(db, path)
    assert main(["stats", path, "--json"]) == 0
    s = json.loads(capsys.readouterr().out)
    for key in ("tracks", "hours", "fingerprints", "buckets_used", "bucket_max_over_mean", "bytes_on_disk"):
        assert key in s
    assert s["tracks"] == len(corpus["waves"])
    assert main(["stats", path]) == 0
    assert "buckets" in capsys.readouterr().out
    assert main(["list", path, "--json"]) == 0
    rows = _json_lines(capsys.readouterr().out)
    assert sorted(r["path"] for r in rows) == sorted(corpus["waves"])
    first, second = rows[0], rows[1]
    assert main(["remove", path, str(first["track_id"]), second["path"]]) == 0
    assert capsys.readouterr().out.count("removed track") == 2
    assert main(["remove", path, "424242"]) == 1
    assert "no track" in capsys.readouterr().err
    assert main(["list", path]) == 0
    out = capsys.readouterr().out
    assert first["path"] not in out and second["path"] not in out


def test_model_mismatch_and_missing_db(db, tmp_path, capsys):
    other = Fingerprinter(Fingerprinter.load().encoder, quantizer=None)
    model = str(tmp_path / "other.pt")
    other.save(model)
    assert main(["stats", db, "--model", model]) == 2
    assert "fingerprint model" in capsys.readouterr().err
    assert main(["query", str(tmp_path / "nothing"), "x.wav"]) == 2
    assert "no fingerprint database" in capsys.readouterr().err


def test_subcommands_come_from_a_list():
    names = [c.name for c in COMMANDS]
    assert names[:7] == ["ingest", "query", "stats", "list", "remove", "train", "eval"]
    args = build_parser().parse_args(["train", "--out", "m.pt", "--steps", "3"])
    assert args.steps == 3 and args.out == "m.pt"
    extra = Command("demo", "a new subcommand", lambda p: p.add_argument("--n", type=int, default=1), lambda a: a.n)
    args = build_parser(COMMANDS + [extra]).parse_args(["demo", "--n", "7"])
    assert args._run(args) == 7


# -- crash safety, with real processes -------------------------------------------------------------
def _spawn(code: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    return subprocess.Popen([sys.executable, "-c", code], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def _tracks(path) -> list:
    try:
        with FingerprintDB(path, readonly=True) as d:
            return d.tracks()
    except FileNotFoundError:
        return []


def _answers_every_track(path, waves, *, model=None):
    with FingerprintDB(path, model, readonly=True) as d:
        tracks = d.tracks()
        for t in tracks:
            m = d.query(snippet(waves[t.path], 2.0, 3.0)).best
            assert m is not None and m.track_id == t.track_id and abs(m.offset_s - 2.0) <= 0.05
    return tracks


def test_ingest_killed_midway_while_a_reader_queries(corpus, tmp_path):
    """SIGKILL from outside while the writer works (slowed down after each commit); a reader queries meanwhile."""
    path = str(tmp_path / "db")
    code = ("import time, torch; torch.set_num_threads(1)\n"
            "from faiss_flowhash.db import database as d\n"
            "orig = d.FingerprintDB._commit\n"
            "def slow(self, *a):\n    orig(self, *a); time.sleep(0.6)\n"
            "d.FingerprintDB._commit = slow\n"
            "from faiss_flowhash.cli import main\n"
            f"main(['ingest', {path!r}, {corpus['folder']!r}, '--batch-files', '1', '--no-progress'])\n")
    proc = _spawn(code)

    def wait_for(n):
        deadline = time.monotonic() + 60
        while len(_tracks(path)) < n and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.05)
        return _tracks(path)

    try:
        assert wait_for(1), proc.stderr.read() if proc.poll() is not None else "no commit in 60 s"
        with FingerprintDB(path, readonly=True) as reader:  # opened after the first commit ...
            tracks = wait_for(2)  # ... queries while the writer goes on, reloading the index it rewrites
            assert 2 <= len(tracks) < len(corpus["waves"]), proc.stderr.read() if proc.poll() is not None else tracks
            for t in tracks:
                m = reader.query(snippet(corpus["waves"][t.path], 4.0, 2.5)).best
                assert m.track_id == t.track_id and abs(m.offset_s - 4.0) <= 0.05
            proc.send_signal(signal.SIGKILL)
            assert proc.wait(timeout=30) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    committed = _answers_every_track(path, corpus["waves"])
    assert len(committed) >= len(tracks)
    assert main(["ingest", path, corpus["folder"], "--no-progress"]) == 1  # broken files still fail
    done = _answers_every_track(path, corpus["waves"])
    assert sorted(t.path for t in done) == sorted(corpus["waves"])  # each file once


def test_ingest_killed_between_index_and_lmdb_commit(corpus, tmp_path):
    """The worst moment: index file written with a batch whose LMDB transaction never happens."""
    path = str(tmp_path / "db")
    code = ("import os, signal, torch; torch.set_num_threads(1)\n"
            "from faiss_flowhash.db import tracks as t\n"
            "orig, calls = t.TrackStore.commit, []\n"
            "def commit(self, *a, **k):\n"
            "    calls.append(1)\n"
            "    if len(calls) == 3: os.kill(os.getpid(), signal.SIGKILL)\n"
            "    orig(self, *a, **k)\n"
            "t.TrackStore.commit = commit\n"
            "from faiss_flowhash.cli import main\n"
            f"main(['ingest', {path!r}, {corpus['folder']!r}, '--batch-files', '1', '--no-progress'])\n")
    proc = _spawn(code)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == -signal.SIGKILL, err.decode()[-2000:]
    tracks = _answers_every_track(path, corpus["waves"])  # readers ignore the uncommitted ids
    assert len(tracks) == 2
    with FingerprintDB(path) as d:  # the next writer repairs
        assert len(d.last_repair["dropped_index_tracks"]) == 1
        s = d.stats()
        assert s["index_vectors"] == s["fingerprints"]
    assert main(["ingest", path, corpus["folder"], "--no-progress"]) == 1
    done = _answers_every_track(path, corpus["waves"])
    assert sorted(t.path for t in done) == sorted(corpus["waves"])


def test_python_dash_m(monkeypatch, capsys):
    import runpy

    monkeypatch.setattr(sys, "argv", ["python -m faiss_flowhash", "--help"])
    with pytest.raises(SystemExit) as e:
        runpy.run_module("faiss_flowhash", run_name="__main__")
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in ("ingest", "query", "stats", "list", "remove", "train"))


# -- long recordings, messages, start-up ------------------------------------------------------------
def test_query_all_on_a_file_and_on_stdin(db, corpus, tmp_path, capsys, monkeypatch):
    import io

    from test_db import _check_spans, _recording
    from faiss_flowhash.db import Span

    rec, truth = _recording({"corpus": corpus["waves"]})
    f = str(tmp_path / "rec.wav")
    save_audio(f, rec)
    assert main(["query", db, "--all", f, "--json"]) == 0
    lines = _json_lines(capsys.readouterr().out)
    assert all(set(r) == {"query", "track_id", "path", "start_s", "track_start_s", "duration_s", "confidence"}
               for r in lines)
    _check_spans([Span(**{k: v for k, v in r.items() if k != "query"}) for r in lines], truth)
    with open(f, "rb") as fh:  # the same recording as a WAV stream on standard input
        monkeypatch.setattr(sys, "stdin", type("Stdin", (), {"buffer": io.BytesIO(fh.read())})())
    assert main(["query", db, "--all", "-"]) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 3 and all(line.startswith("-: ") and " from " in line and "confidence" in line for line in out)
    assert truth[1][0] in out[1]


def test_repeats_in_the_human_output(db, corpus, tmp_path, capsys):
    import shutil

    from faiss_flowhash.audio import synth

    path = str(tmp_path / "db")
    shutil.copytree(db, path)
    a = synth.synthetic_music(4.0, seed=777)
    track = np.clip(np.concatenate([a, synth.synthetic_music(4.0, seed=778), a]), -1, 1).astype(np.float32)
    save_audio(str(tmp_path / "aba.wav"), track)
    assert main(["ingest", path, str(tmp_path / "aba.wav"), "--no-progress"]) == 0
    save_audio(str(tmp_path / "q.wav"), snippet(track, 0.5, 3.0))
    capsys.readouterr()
    assert main(["query", path, str(tmp_path / "q.wav")]) == 0
    line = capsys.readouterr().out
    assert "aba.wav at " in line and ", also at " in line and ("8.50 s" in line or "8.49 s" in line or "8.51 s" in line)


def test_messages_not_tracebacks(db, corpus, tmp_path, capsys):
    from faiss_flowhash.audio import synth

    f = next(iter(corpus["waves"]))
    assert main(["ingest", f, corpus["folder"], "--no-progress"]) == 2  # DB and PATH swapped
    err = capsys.readouterr().err
    assert "is a file, not a fingerprint database directory" in err and "Traceback" not in err
    short = str(tmp_path / "short.wav")
    save_audio(short, synth.tone(440.0, 0.2))
    assert main(["query", db, short]) == 1
    err = capsys.readouterr().err
    assert "0.20 s of audio is shorter than one 1 s fingerprint window" in err
    assert main(["query", db, short, "--json"]) == 1
    r = _json_lines(capsys.readouterr().out)[0]
    assert r["matches"] == [] and "shorter than one 1 s" in r["error"]


def test_a_waiting_writer_says_so(db, corpus, tmp_path, capsys):
    import shutil
    import threading

    from faiss_flowhash.db import write_lock

    path = str(tmp_path / "db")
    shutil.copytree(db, path)
    held = threading.Event()

    def hold():
        with write_lock(os.path.join(path, "write.lock")):
            held.set()
            threading.Event().wait(1.0)

    holder = threading.Thread(target=hold)
    holder.start()
    held.wait()
    try:
        assert main(["ingest", path, next(iter(corpus["waves"])), "--no-progress"]) == 0
    finally:
        holder.join()
    out, err = capsys.readouterr()
    assert "another process is writing" in err and "waiting for its lock" in err
    assert "after waiting" in out


@pytest.mark.parametrize("argv", [["--help"], ["list", "DB"], ["stats", "DB", "--json"], ["query", "--help"]])
def test_commands_without_a_model_do_not_import_torch(db, tmp_path, argv):
    import shutil

    path = str(tmp_path / "db")
    shutil.copytree(db, path)
    assert main(["remove", path, "0"]) == 0  # a write records the index summary that stats reads
    code = ("import sys\nfrom faiss_flowhash.cli import main\n"
            f"try:\n    status = main({[path if a == 'DB' else a for a in argv]!r})\n"
            "except SystemExit as e:\n    status = e.code\n"
            "print('STATUS', status, 'TORCH', 'torch' in sys.modules)\n")
    proc = _spawn(code)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err.decode()[-2000:]
    assert out.decode().strip().splitlines()[-1] == "STATUS 0 TORCH False", out.decode()[-2000:]
