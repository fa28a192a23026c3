"""The database's single-writer lock: ``flock`` on a file in the database directory.

Readers never take it (LMDB snapshots and the atomically replaced index file keep them consistent);
ingest, remove and crash repair do. The kernel drops the lock when its holder dies, even by SIGKILL.
"""

import contextlib
import fcntl
import os
import time

__all__ = ["write_lock"]


@contextlib.contextmanager
def write_lock(path, *, timeout_s: float = 60.0, poll_s: float = 0.1, on_wait=None):
    """Hold the exclusive lock on file ``path`` (created if missing) inside the ``with`` block.

    Yields True once held. With ``timeout_s=0`` it does not wait: yields False when another process
    holds the lock. Otherwise TimeoutError after ``timeout_s`` seconds of waiting; ``on_wait()`` is
    called once when the lock is found busy and the wait begins (e.g. to tell the user).
    """
    if timeout_s < 0:
        raise ValueError(f"timeout_s: expected >= 0 seconds, got {timeout_s}")
    fd = os.open(os.fspath(path), os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if on_wait is not None and timeout_s > 0:
                    on_wait()
                    on_wait = None
                if time.monotonic() >= deadline:
                    if timeout_s == 0:
                        yield False
                        return
                    raise TimeoutError(f"{os.fspath(path)}: another process is writing (waited {timeout_s} s)") from None
                time.sleep(poll_s)
        try:
            yield True
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)
