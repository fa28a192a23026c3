"""The query service's HTTP application (Flask): identify uploaded snippets or posted paths.

Endpoints (JSON in, JSON out):

    POST /query    the snippet as a multipart file (field ``audio``, or the only file), as the raw body
                   (any content type but JSON and forms), or JSON ``{"path": "/abs/file.wav"}``;
                   options ``top`` and ``min_confidence`` as query-string, form or JSON fields.
                   200: the object ``flowhash query --json`` prints (query, matches, eval_percent,
                   elapsed_ms) plus ``duration_s``, ``n_segments`` and ``request_ms`` (decode included).
    GET  /health   {"status": "ok", "model_id", "index_vectors", "uptime_s"}
    GET  /stats    {"database": FingerprintDB.stats(), "service": request counters and limits}

Bad requests get a 4xx with ``{"error": message, "status": code}``: 400 malformed request or audio that
does not decode, 403 a path outside ``path_root``, 404 a path that does not exist, 413 an upload over
``max_upload_bytes`` or audio longer than ``max_duration_s``, 415 a JSON body without ``path``,
422 audio shorter than one fingerprint window (1 s).

Identification is :meth:`FingerprintDB.query` (the same call as ``flowhash query``); the service adds
decoding of uploads and the limits above. Requests run on the server's worker threads at once: the
fingerprinter is pure inference (``torch.inference_mode``), the index is only read (faiss's scan gets
per-call result buffers and releases the GIL), the track store takes LMDB read transactions (under a
shared lock that only a map resize takes exclusively); the database re-reads its index file when
another process rewrote it. Matches are therefore the same as sequential queries (tests/test_serve.py).
One shared counter is not per call: ``eval_percent`` comes from the index's ``last_search_stats``
and faiss's global ``indexIVF_stats``, so under concurrent requests it may mix two queries' counts.
"""

import os
import tempfile
import threading
import time
from datetime import datetime, timezone

from flask import Flask, jsonify, request
from werkzeug.exceptions import HTTPException

from ..audio.io import AudioDecodeError, audio_duration, load_audio
from .config import ServeConfig, check_confidence, check_top

__all__ = ["create_app"]


class _Reject(Exception):
    """A request the service refuses: HTTP status and message."""

    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def _option(fields: dict, name: str, default, parse):
    """``fields[name]`` parsed (strings from query string / forms, numbers from JSON), else default."""
    raw = fields.get(name)
    if raw is None:
        return default
    try:
        value = parse(raw) if isinstance(raw, str) else raw
        return check_top(value) if name == "top" else check_confidence(value)
    except ValueError as e:
        raise _Reject(400, str(e) if str(e).startswith(name) else f"{name}: expected a number, got {raw!r}") from None


class _Counters:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests = self.queries = self.matched = 0
        self.errors: dict[str, int] = {}
        self.query_ms_total = 0.0

    def add(self, *, status: int, matched: bool = False, ms: float | None = None) -> None:
        with self._lock:
            self.requests += 1
            if status >= 400:
                self.errors[str(status)] = self.errors.get(str(status), 0) + 1
            elif ms is not None:
                self.queries += 1
                self.matched += int(matched)
                self.query_ms_total += ms

    def snapshot(self) -> dict:
        with self._lock:
            return {"requests": self.requests, "queries": self.queries, "matched": self.matched,
                    "errors": dict(self.errors),
                    "mean_query_ms": self.query_ms_total / self.queries if self.queries else 0.0}


def create_app(db, config: ServeConfig | None = None) -> Flask:
    """The Flask application answering for ``db`` (a :class:`~faiss_flowhash.db.FingerprintDB`, kept open)."""
    config = config or ServeConfig()
    if not isinstance(config, ServeConfig):
        raise TypeError(f"config: expected a ServeConfig or None, got {type(config).__name__}")
    app = Flask(__name__)
    app.config["MAX_CONTENT_LENGTH"] = config.max_upload_bytes  # werkzeug answers 413 past it
    app.json.sort_keys = False
    started, started_iso = time.monotonic(), datetime.now(timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    counters = _Counters()
    fp = db.fingerprinter
    path_root = None if config.path_root in (None, "") else os.path.realpath(config.path_root)

    def error(status: int, message: str):
        counters.add(status=status)
        return jsonify({"error": message, "status": status}), status

    def check_duration(seconds: float, name: str) -> None:
        if seconds > config.max_duration_s:
            raise _Reject(413, f"{name}: {seconds:.1f} s of audio; expected at most {config.max_duration_s:g} s")

    def decode_upload(data: bytes, name: str):
        if not data:
            raise _Reject(400, "empty request body: expected an audio file (multipart field 'audio' or the raw body)")
        suffix = os.path.splitext(name)[1] if name and len(os.path.splitext(name)[1]) <= 8 else ""
        with tempfile.NamedTemporaryFile(suffix=suffix) as f:  # one decode path for uploads and files
            f.write(data)
            f.flush()
            try:
                check_duration(audio_duration(f.name), name)
                return load_audio(f.name, sample_rate=fp.sample_rate)
            except AudioDecodeError as e:  # the reason without the temporary file's name
                raise _Reject(400, f"{name}: not audio ({e.reason.replace(repr(f.name), 'the upload')})") from None

    def decode_path(path) -> str:
        if config.path_root == "":
            raise _Reject(403, "path queries are disabled on this server: upload the audio instead")
        if not isinstance(path, str) or not path:
            raise _Reject(400, f"path: expected a file path string, got {path!r}")
        real = os.path.realpath(path)
        if path_root is not None and os.path.commonpath([real, path_root]) != path_root:
            raise _Reject(403, f"path: {path} is outside the served directory {path_root}")
        try:
            check_duration(audio_duration(real), path)
            return load_audio(real, sample_rate=fp.sample_rate)
        except FileNotFoundError:
            raise _Reject(404, f"path: {path}: no such file") from None
        except AudioDecodeError as e:
            raise _Reject(400, f"{path}: not audio ({e.reason})") from None

    def read_request():
        """(wave, name, fields) from the three request forms."""
        ctype = request.mimetype
        if ctype == "application/json":
            body = request.get_json(silent=True)
            if not isinstance(body, dict):
                raise _Reject(400, "expected a JSON object like {\"path\": \"/file.wav\"}")
            if "path" not in body:
                raise _Reject(415, "JSON body without \"path\": upload audio as multipart/form-data or as the raw body")
            return decode_path(body["path"]), body["path"], body
        if ctype in ("multipart/form-data", "application/x-www-form-urlencoded"):
            files = request.files
            upload = files.get("audio") or (next(iter(files.values())) if len(files) == 1 else None)
            if upload is None:
                raise _Reject(400, f"multipart upload: expected one file (field 'audio'), got fields {sorted(files)}")
            name = upload.filename or "upload"
            return decode_upload(upload.read(), name), name, {**request.args, **request.form}
        return decode_upload(request.get_data(cache=False), "upload"), "upload", dict(request.args)

    @app.post("/query")
    def query():
        t0 = time.perf_counter()
        try:
            wave, name, fields = read_request()
            top = _option(fields, "top", config.top, int)
            min_conf = _option(fields, "min_confidence", config.min_confidence, float)
            if len(wave) < fp.window_s * fp.sample_rate:
                raise _Reject(422, f"{name}: {len(wave) / fp.sample_rate:.2f} s of audio; expected at least one "
                                   f"{fp.window_s:g} s window")
        except _Reject as r:
            return error(r.status, r.message)
        res = db.query(wave, top=top, min_confidence=min_conf)
        out = res.to_dict()
        out["query"] = name
        out.update(duration_s=res.duration_s, n_segments=res.n_segments,
                   request_ms=1000 * (time.perf_counter() - t0))
        counters.add(status=200, matched=bool(res.matches), ms=out["request_ms"])
        return jsonify(out)

    @app.get("/health")
    def health():
        index = db.index
        counters.add(status=200)
        return jsonify({"status": "ok", "model_id": fp.model_id, "index_vectors": int(index.ntotal) if index else 0,
                        "uptime_s": time.monotonic() - started})

    @app.get("/stats")
    def stats():
        counters.add(status=200)
        service = {"started": started_iso, "uptime_s": time.monotonic() - started, **counters.snapshot(),
                   "max_upload_bytes": config.max_upload_bytes, "max_duration_s": config.max_duration_s,
                   "path_queries": config.path_root != "", "path_root": path_root}
        return jsonify({"database": db.stats(), "service": service})

    @app.errorhandler(HTTPException)
    def http_error(e: HTTPException):  # 404, 405, 413 from werkzeug: JSON like the rest
        message = e.description
        if e.code == 413:
            message = f"request body too large: expected at most {config.max_upload_bytes} bytes"
        return error(e.code or 500, message)

    @app.errorhandler(Exception)
    def internal_error(e: Exception):
        app.logger.exception("query failed")
        return error(500, f"internal error: {type(e).__name__}: {e}")

    return app
