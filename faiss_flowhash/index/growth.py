"""Arrays that grow by appends without a copy each time: a prefix view of a buffer with room.

``buf, cur = append_rows(buf, cur, new)`` returns ``cur`` with ``new``'s rows after it, as a view of
``buf``; when ``buf`` has no room (or ``cur`` is not a view of it) a new buffer of 1.5 x the rows is made,
so a run of small appends copies each row O(1) times. The index's ids and codes and the list centroids
grow this way. A view pickles as an array of its own: owners drop the buffer from their pickled state.
"""

import numpy as np

__all__ = ["append_rows"]


def append_rows(buf: np.ndarray | None, cur: np.ndarray, new: np.ndarray, *, min_rows: int = 1024):
    """(buffer, ``cur`` + ``new`` along axis 0, a view of the buffer). ``min_rows``: smallest buffer made."""
    n0, n1 = len(cur), len(cur) + len(new)
    if buf is None or cur.base is not buf or len(buf) < n1:
        buf = np.empty((max(int(n1 * 1.5), int(min_rows)),) + cur.shape[1:], cur.dtype)
        buf[:n0] = cur
    buf[n0:n1] = new
    return buf, buf[:n1]
