"""``flowhash serve DB``: the query service on waitress (a pure-Python threaded WSGI server).

One process holds the fingerprint model and the index (opened read-only, re-read when a writer
replaces the index file) and answers on ``--threads`` worker threads; see :mod:`.app` for the endpoints.
It listens on 127.0.0.1 unless ``--host`` says otherwise, prints one line ``serving on http://HOST:PORT``
(``--port 0``: a free port) and stops on Ctrl-C / SIGTERM or after ``--exit-after`` seconds.
"""

import _thread
import argparse
import signal
import sys
import threading

from .config import ServeConfig

__all__ = ["make_server", "add_serve_arguments", "run_serve"]


def make_server(app, *, host: str = "127.0.0.1", port: int = 0, threads: int = 4, max_body_bytes: int = 32 << 20):
    """A waitress server bound to (host, port) (port 0: a free one; ``server.effective_port`` tells).

    waitress buffers a request's whole body before the application sees it: ``max_body_bytes`` bounds
    that buffer (a larger body is refused with a plain 413 and the connection closed); the application's
    own, smaller limit answers 413 in JSON below it."""
    from waitress.server import create_server

    if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
        raise ValueError(f"threads: expected an int >= 1, got {threads!r}")
    if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
        raise ValueError(f"port: expected an int in [0, 65535], got {port!r}")
    # channel_timeout bounds idle keep-alive connections
    return create_server(app, host=host, port=port, threads=threads, channel_timeout=30,
                         max_request_body_size=int(max_body_bytes), ident="flowhash")


def add_serve_arguments(p: argparse.ArgumentParser) -> None:
    from ..cli import _db_arguments

    _db_arguments(p)
    d = ServeConfig()
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1: this machine only)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free port, printed)")
    p.add_argument("--workers", type=int, default=4, help="worker threads answering requests at once (default 4)")
    p.add_argument("--max-upload-mb", type=float, default=d.max_upload_bytes / 2**20,
                   help=f"largest upload, MiB (default {d.max_upload_bytes / 2**20:g}); larger: 413")
    p.add_argument("--max-duration", type=float, default=d.max_duration_s,
                   help=f"longest snippet, seconds (default {d.max_duration_s:g}); longer: 413")
    p.add_argument("--path-root", default=None,
                   help="JSON {\"path\": ...} queries only under this directory (default: any readable file; "
                        "'' turns path queries off)")
    p.add_argument("--exit-after", type=float, default=None, help="stop after this many seconds (default: never)")


def run_serve(args) -> int:
    from ..cli import _open
    from .app import create_app

    config = ServeConfig(max_upload_bytes=max(1, int(args.max_upload_mb * 2**20)), max_duration_s=args.max_duration,
                         path_root=args.path_root)
    with _open(args, readonly=True) as db:
        server = make_server(create_app(db, config), host=args.host, port=args.port, threads=args.workers,
                             max_body_bytes=2 * config.max_upload_bytes + (1 << 16))
        print(f"serving on http://{server.effective_host}:{server.effective_port} ({args.workers} workers, "
              f"{db.index.ntotal if db.index is not None else 0} fingerprints)", flush=True)
        # SIGTERM and --exit-after end the loop like Ctrl-C: waitress then lets running requests finish.
        # A shell starts background jobs with SIGINT ignored, and interrupt_main() then does nothing:
        # restore Python's KeyboardInterrupt handler first.
        signal.signal(signal.SIGINT, signal.default_int_handler)
        # a long-lived process: load the index's numba planner in the background (seconds), so requests
        # plan with it once it is there (planner="auto" plans with numpy until then)
        from ..index.planner import jit_kernels
        threading.Thread(target=jit_kernels, name="flowhash-jit-warmup", daemon=True).start()
        signal.signal(signal.SIGTERM, lambda *_: _thread.interrupt_main())
        if args.exit_after is not None:
            timer = threading.Timer(args.exit_after, _thread.interrupt_main)
            timer.daemon = True
            timer.start()
        try:
            server.run()  # returns on KeyboardInterrupt (waitress catches it and shuts its threads down)
        finally:
            server.close()
        print("flowhash serve: stopped", file=sys.stderr, flush=True)
    return 0
