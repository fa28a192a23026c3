"""Start-up (issue 11 part 4): ``flowhash query`` answers without importing torch, and answers as the torch
path does; the model file, the index file and a database open torch-free."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from faiss_flowhash.audio import Fingerprinter, save_audio, synth
from faiss_flowhash.cli import _blas_threads, main
from faiss_flowhash.db import FingerprintDB

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SR = 16000


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    """A database of 3 synthetic tracks of 10 s (fingerprinted on torch, in this process) and 3 s snippets."""
    root = tmp_path_factory.mktemp("startup")
    audio, snips = root / "audio", {}
    audio.mkdir()
    rng = np.random.default_rng(2)
    for i in range(3):
        w = np.asarray(synth.synthetic_music(10.0, seed=600 + i), np.float32)
        save_audio(audio / f"t{i}.wav", w)
        s = w[int((2.0 + i) * SR): int((5.0 + i) * SR)] + 0.02 * rng.standard_normal(3 * SR).astype(np.float32)
        save_audio(root / f"snip{i}.wav", np.clip(s, -1, 1))
        snips[str(root / f"snip{i}.wav")] = (str(audio / f"t{i}.wav"), 2.0 + i)
    db = str(root / "db")
    assert main(["ingest", db, str(audio), "--no-progress"]) == 0
    return {"db": db, "snippets": snips}


def _run(code: str) -> str:
    env = {**os.environ, "PYTHONPATH": ROOT + os.pathsep + os.environ.get("PYTHONPATH", "")}
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, timeout=180)
    assert proc.returncode == 0, proc.stderr.decode()[-3000:]
    return proc.stdout.decode()


def test_query_does_not_import_torch_and_answers_as_the_torch_path(corpus):
    snips = sorted(corpus["snippets"])
    code = ("import sys\nfrom faiss_flowhash.cli import main\n"
            f"status = main(['query', {corpus['db']!r}, *{snips!r}, '--json', '--top', '2'])\n"
            "print('STATUS', status, 'TORCH', 'torch' in sys.modules, 'NUMBA', 'numba' in sys.modules)\n")
    out = _run(code).strip().splitlines()
    assert out[-1] == "STATUS 0 TORCH False NUMBA False", out  # numba's import alone would cost seconds
    numpy_answers = {r["query"]: r for r in map(json.loads, out[:-1])}
    with FingerprintDB(corpus["db"], model=Fingerprinter.load(backend="torch"), readonly=True) as db:
        assert db.fingerprinter.backend == "torch"
        torch_answers = {s: db.query(s, top=2).to_dict() for s in snips}
    for s, (path, start) in corpus["snippets"].items():
        a, b = numpy_answers[s]["matches"], torch_answers[s]["matches"]
        assert a and a[0]["path"] == path and abs(a[0]["offset_s"] - start) <= 0.05
        assert [m["track_id"] for m in a] == [m["track_id"] for m in b]
        for x, y in zip(a, b):
            assert x["offset_s"] == pytest.approx(y["offset_s"], abs=1e-6)
            assert x["score"] == pytest.approx(y["score"], abs=2e-3)
            assert x["confidence"] == pytest.approx(y["confidence"], abs=0.02)


def test_query_all_does_not_import_torch(corpus):
    snip = sorted(corpus["snippets"])[0]
    code = ("import sys\nfrom faiss_flowhash.cli import main\n"
            f"status = main(['query', {corpus['db']!r}, '--all', {snip!r}, '--json'])\n"
            "print('STATUS', status, 'TORCH', 'torch' in sys.modules)\n")
    out = _run(code).strip().splitlines()
    assert out[-1] == "STATUS 0 TORCH False", out
    assert any(json.loads(line)["path"] == corpus["snippets"][snip][0] for line in out[:-1])


def test_model_and_index_load_and_encode_without_torch(corpus):
    code = ("import sys, numpy as np\n"
            "from faiss_flowhash.audio import Fingerprinter\n"
            "from faiss_flowhash import read_index\n"
            "fp = Fingerprinter.load()\n"
            f"index = read_index({os.path.join(corpus['db'], 'index.flowhash')!r})\n"
            "e = fp.fingerprint(np.zeros(20000, np.float32) + 0.01)\n"
            "D, I = index.search(e, 3)\n"
            "print(fp.backend, fp.model_id, I.shape, 'TORCH', 'torch' in sys.modules)\n")
    out = _run(code).strip().splitlines()[-1]
    assert out == f"numpy {Fingerprinter.load().model_id} (3, 3) TORCH False", out


def test_auto_backend_follows_torch_being_loaded():
    """In a process that has torch already (tests, training) 'auto' keeps the torch module: the fingerprints
    there are bit-identical to before; a fresh process (the CLI) gets numpy."""
    assert "torch" in sys.modules and Fingerprinter.load().backend == "torch"
    assert Fingerprinter.load(backend="numpy").backend == "numpy"


@pytest.mark.parametrize("argv,threads", [([], "1"), (["query", "DB", "--threads", "3"], "3"),
                                          (["--threads=2"], "2"), (["--threads", "0"], "1"), (["--threads", "x"], "1")])
def test_threads_flag_gives_the_blas_threads(argv, threads):
    assert _blas_threads(argv) == threads


def test_remove_and_ingest_with_the_models_quantizer_do_not_import_torch(corpus, tmp_path):
    import shutil

    path = str(tmp_path / "db")
    shutil.copytree(corpus["db"], path)
    track = sorted(corpus["snippets"].values())[0][0]
    code = ("import sys\nfrom faiss_flowhash.cli import main\n"
            f"a = main(['remove', {path!r}, '0'])\n"
            f"b = main(['ingest', {path!r}, {track!r}, '--no-progress'])\n"
            "print('STATUS', a, b, 'TORCH', 'torch' in sys.modules)\n")
    out = _run(code).strip().splitlines()
    assert out[-1] == "STATUS 0 0 TORCH False", out
    with FingerprintDB(path, readonly=True) as db:
        assert sorted(r.path for r in db.tracks()) == sorted(p for p, _ in corpus["snippets"].values())
