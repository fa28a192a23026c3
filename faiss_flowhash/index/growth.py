"""Arrays that grow by appends without a copy each time: a prefix view of a buffer with room.

``buf, cur = append_rows(buf, cur, new)`` returns ``cur`` with ``new``'s rows after it, as a view of
``buf``; when ``buf`` has no room (or ``cur`` is not a view of it) a new buffer is made with room for 1.5 x
the old buffer's rows (at least the rows needed: a first bulk append gets no room it may never use), so a
run of small appends copies each row O(1) times. After a bulk append, :func:`fit_rows` gives the room
back. The index's ids and codes and the list centroids grow this way, and count what they hold with
:func:`held_bytes`. A view pickles as an array of its own: owners drop the buffer from their pickled state.
"""

import numpy as np

__all__ = ["append_rows", "fit_rows", "held_bytes"]


def append_rows(buf: np.ndarray | None, cur: np.ndarray, new: np.ndarray, *, min_rows: int = 1024):
    """(buffer, ``cur`` + ``new`` along axis 0, a view of the buffer). ``min_rows``: smallest buffer made."""
    n0, n1 = len(cur), len(cur) + len(new)
    if buf is None or cur.base is not buf or len(buf) < n1:
        old = 0 if buf is None else len(buf)
        buf = np.empty((max(n1, int(old * 1.5), int(min_rows)),) + cur.shape[1:], cur.dtype)
        buf[:n0] = cur
    buf[n0:n1] = new
    return buf, buf[:n1]


def fit_rows(buf: np.ndarray | None, cur: np.ndarray, *, slack: float = 1.25):
    """(buffer, rows): ``cur`` copied to an array of its own when its buffer holds more than ``slack`` x
    its rows (the buffer is then None), else unchanged."""
    if buf is not None and cur.base is buf and len(buf) > slack * max(len(cur), 1):
        return None, cur.copy()
    return buf, cur


def held_bytes(buf: np.ndarray | None, cur: np.ndarray) -> int:
    """Bytes ``cur`` keeps alive: its buffer's when it is a view of one, else its own."""
    return int(buf.nbytes) if buf is not None and cur.base is buf else int(cur.nbytes)
