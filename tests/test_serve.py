"""``flowhash serve`` as a client sees it: real HTTP requests to a server process on 127.0.0.1 (a free
port; it stops on SIGTERM and by itself after a bounded time). Answers equal FingerprintDB.query's,
also under concurrent requests; bad uploads get clear 4xx answers."""

import io
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest

if not os.environ.get("CI"):  # in CI the test extra installs the serve extra: these tests must run there
    for _name in ("flask", "waitress", "requests"):
        pytest.importorskip(_name)
import requests  # noqa: E402
import soundfile as sf  # noqa: E402

from faiss_flowhash.audio import Fingerprinter, save_audio, synth  # noqa: E402
from faiss_flowhash.db import FingerprintDB  # noqa: E402
from faiss_flowhash.serve import ServeProcess  # noqa: E402

SR = 16000
MAX_UPLOAD_MB = 0.5  # ~16 s of 16-bit PCM: "too large" needs little data
MAX_DURATION_S = 12.0


def _wav_bytes(wave, subtype="PCM_16") -> bytes:
    buf = io.BytesIO()
    sf.write(buf, wave, SR, format="WAV", subtype=subtype)
    return buf.getvalue()


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    audio = root / "audio"
    os.makedirs(audio)
    waves = {}
    for i in range(5):
        w = np.clip(synth.synthetic_music(10.0, seed=600 + i), -1, 1).astype(np.float32)
        save_audio(str(audio / f"t{i}.wav"), w)
        waves[i] = w
    # outside the path root; a steady tone compresses well: a small upload holding long audio
    sf.write(str(root / "long.flac"), 0.1 * np.asarray(synth.tone(440.0, MAX_DURATION_S + 2), np.float32), SR,
             subtype="PCM_16")
    model = Fingerprinter.load()
    db_path = str(root / "db")
    with FingerprintDB(db_path, model) as db:
        assert db.ingest([str(audio)]).ok
    server = ServeProcess(db_path, "--workers", 4, "--max-upload-mb", MAX_UPLOAD_MB, "--max-duration", MAX_DURATION_S,
                          "--path-root", str(audio))
    db = FingerprintDB(db_path, model, readonly=True)
    try:
        yield {"url": server.url, "db": db, "waves": waves, "audio": audio, "root": root}
    finally:
        db.close()
        assert server.stop() == 0, server.stderr  # SIGTERM: running requests finish, exit status 0


def _snippet(served, track: int, start_s: float, length_s: float = 3.0) -> np.ndarray:
    w = served["waves"][track]
    return w[int(start_s * SR) : int((start_s + length_s) * SR)]


def _expected(served, wave, **kw) -> list[dict]:
    """What FingerprintDB.query answers in this process for the wave the server decodes from the upload."""
    decoded, _ = sf.read(io.BytesIO(_wav_bytes(wave)), dtype="float32")
    return served["db"].query(decoded, **kw).to_dict()["matches"]


def _same_matches(got: list[dict], want: list[dict]) -> bool:
    return ([(m["track_id"], m["path"]) for m in got] == [(m["track_id"], m["path"]) for m in want]
            and all(np.isclose(g[k], w[k], atol=1e-5) for g, w in zip(got, want)
                    for k in ("offset_s", "score", "confidence")))


def test_health_and_stats(served):
    h = requests.get(served["url"] + "/health", timeout=60)
    assert h.status_code == 200 and h.headers["Content-Type"] == "application/json"
    body = h.json()
    assert body["status"] == "ok" and body["model_id"] == served["db"].fingerprinter.model_id
    assert body["index_vectors"] == served["db"].index.ntotal > 0
    s = requests.get(served["url"] + "/stats", timeout=60).json()
    assert s["database"] == {**served["db"].stats(), "bytes_on_disk": s["database"]["bytes_on_disk"]}
    assert s["service"]["max_upload_bytes"] == int(MAX_UPLOAD_MB * 2**20)
    assert s["service"]["requests"] >= 1


def test_multipart_raw_and_path_queries_answer_like_the_database(served):
    snip = _snippet(served, 2, 4.0)
    data = _wav_bytes(snip)
    multipart = requests.post(served["url"] + "/query", files={"audio": ("snip.wav", data, "audio/wav")}, timeout=120)
    assert multipart.status_code == 200
    got = multipart.json()
    assert got["query"] == "snip.wav" and set(got) >= {"matches", "eval_percent", "elapsed_ms", "request_ms"}
    assert got["matches"][0]["track_id"] == 2 and abs(got["matches"][0]["offset_s"] - 4.0) <= 0.05
    assert _same_matches(got["matches"], _expected(served, snip))
    assert got["duration_s"] == pytest.approx(3.0) and got["n_segments"] == 21

    raw = requests.post(served["url"] + "/query", data=data, headers={"Content-Type": "audio/wav"},
                        params={"top": 3, "min_confidence": 0.0}, timeout=120).json()
    assert _same_matches(raw["matches"], _expected(served, snip, top=3, min_confidence=0.0))
    assert len(raw["matches"]) >= 1 and raw["matches"][0]["track_id"] == 2

    path = str(served["audio"] / "t4.wav")
    by_path = requests.post(served["url"] + "/query", json={"path": path, "top": 2}, timeout=120).json()
    want = served["db"].query(path, top=2).to_dict()
    assert by_path["query"] == want["query"] == path
    assert _same_matches(by_path["matches"], want["matches"]) and by_path["matches"][0]["track_id"] == 4


def test_concurrent_requests_answer_as_sequential_ones(served):
    cases = [(t, s) for t in range(5) for s in (1.0, 5.5)]
    bodies = [_wav_bytes(_snippet(served, t, s)) for t, s in cases]
    before = requests.get(served["url"] + "/stats", timeout=60).json()["service"]["queries"]

    def post(i):
        r = requests.post(served["url"] + "/query", data=bodies[i % len(bodies)], timeout=300)
        return i % len(bodies), r.status_code, r.json()

    with ThreadPoolExecutor(8) as pool:  # 20 requests, 8 at a time against 4 server threads
        answers = list(pool.map(post, range(2 * len(bodies))))
    sequential = {i: requests.post(served["url"] + "/query", data=b, timeout=300).json()["matches"]
                  for i, b in enumerate(bodies)}
    for i, status, body in answers:
        assert status == 200
        assert _same_matches(body["matches"], sequential[i])
        assert body["matches"][0]["track_id"] == cases[i][0]
        assert abs(body["matches"][0]["offset_s"] - cases[i][1]) <= 0.05
    after = requests.get(served["url"] + "/stats", timeout=60).json()["service"]["queries"]
    assert after - before == 3 * len(bodies)


def _error(resp, status: int, *words):
    assert resp.status_code == status, resp.text
    body = resp.json()
    assert body["status"] == status and all(w in body["error"] for w in words), body
    return body


def test_bad_uploads_get_clear_4xx(served):
    url = served["url"] + "/query"
    _error(requests.post(url, data=b"RIFF\x24\x00\x00\x00WAVEnot really audio", timeout=60), 400, "not audio")
    body = _error(requests.post(url, files={"audio": ("notes.txt", b"plain text, no audio")}, timeout=60), 400,
                  "notes.txt", "not audio")
    assert "/tmp" not in body["error"]  # the server's temporary file is not named
    _error(requests.post(url, data=b"", timeout=60), 400, "empty")
    _error(requests.post(url, data=_wav_bytes(_snippet(served, 0, 1.0, 0.5)), timeout=60), 422, "0.50 s", "1 s window")
    big = _wav_bytes(np.zeros(int(MAX_UPLOAD_MB * 2**20 / 2) + SR, np.float32))  # PCM_16: 2 bytes a sample
    _error(requests.post(url, data=big, timeout=60), 413, "too large")
    _error(requests.post(url, files={"audio": ("big.wav", big)}, timeout=60), 413, "too large")
    with open(served["root"] / "long.flac", "rb") as f:  # a small file holding more seconds than allowed
        long_flac = f.read()
    assert len(long_flac) < MAX_UPLOAD_MB * 2**20
    _error(requests.post(url, files={"audio": ("long.flac", long_flac)}, timeout=60), 413, "14.0 s", "at most 12 s")
    _error(requests.post(url, files={"other": ("a.wav", b"x"), "more": ("b.wav", b"y")}, timeout=60), 400, "'audio'")
    good = _wav_bytes(_snippet(served, 0, 1.0))
    _error(requests.post(url, data=good, params={"top": "abc"}, timeout=60), 400, "top")
    _error(requests.post(url, data=good, params={"top": "0"}, timeout=60), 400, "top: expected an int >= 1")
    _error(requests.post(url, data=good, params={"min_confidence": "2"}, timeout=60), 400, "min_confidence")


def test_bad_path_queries_and_routes(served):
    url = served["url"] + "/query"
    _error(requests.post(url, json={"path": str(served["audio"] / "missing.wav")}, timeout=60), 404, "no such file")
    _error(requests.post(url, json={"path": str(served["root"] / "long.flac")}, timeout=60), 403, "outside")
    _error(requests.post(url, json={"path": str(served["audio"] / ".." / "long.flac")}, timeout=60), 403, "outside")
    _error(requests.post(url, json={"track": 1}, timeout=60), 415, "path")
    _error(requests.post(url, data="[1, 2]", headers={"Content-Type": "application/json"}, timeout=60), 400, "JSON")
    _error(requests.post(url, json={"path": 7}, timeout=60), 400, "path")
    _error(requests.get(url, timeout=60), 405, "not allowed")
    _error(requests.get(served["url"] + "/nothing", timeout=60), 404, "not found")
    errors = requests.get(served["url"] + "/stats", timeout=60).json()["service"]["errors"]
    assert errors["403"] >= 2 and errors["405"] >= 1
