"""A ``flowhash serve`` process for tests, benchmarks and scripts: started on a free port, stopped on exit."""

import os
import signal
import subprocess
import sys
import threading

__all__ = ["ServeProcess"]


class ServeProcess:
    """``python -m faiss_flowhash.cli serve DB --port 0 ARGS...`` as a child process.

    Args:
        db: the database directory.
        *args: more ``serve`` options (``--workers 4``, ``--max-upload-mb 1``, ...).
        host: address to listen on (127.0.0.1).
        exit_after_s: the server stops by itself after this many seconds (600), whatever happens here.
        start_timeout_s: how long to wait for it to listen (240 s: it imports torch and loads the model).

    ``url`` is ``http://HOST:PORT`` once started; ``stop()`` (or leaving the ``with`` block) sends SIGTERM
    and returns the exit status (0 when it shut down cleanly). RuntimeError when it does not start.
    """

    def __init__(self, db, *args: str, host: str = "127.0.0.1", exit_after_s: float = 600.0,
                 start_timeout_s: float = 240.0):
        cmd = [sys.executable, "-m", "faiss_flowhash.cli", "serve", os.fspath(db), "--host", host, "--port", "0",
               "--exit-after", str(exit_after_s), *map(str, args)]
        root = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
        env = {**os.environ, "PYTHONPATH": os.pathsep.join([root, os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)}
        self.proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self._stderr: list[str] = []
        threading.Thread(target=lambda: self._stderr.extend(self.proc.stderr), daemon=True).start()  # never blocks it
        line: list[str] = []
        reader = threading.Thread(target=lambda: line.append(self.proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(timeout=start_timeout_s)
        if not line or not line[0].startswith("serving on http://"):
            self.stop()
            raise RuntimeError(f"flowhash serve did not start: {line!r}; stderr: {''.join(self._stderr)[-2000:]}")
        self.url = line[0].split()[2]

    @property
    def stderr(self) -> str:
        """What the server wrote to stderr so far (its log)."""
        return "".join(self._stderr)

    def stop(self, timeout_s: float = 60.0) -> int:
        """SIGTERM, wait (then SIGKILL past ``timeout_s``); the exit status. Idempotent."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=timeout_s)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> "ServeProcess":
        return self

    def __exit__(self, *exc) -> None:
        self.stop()
