"""Drop the page-cache pages of every file under the given paths (posix_fadvise DONTNEED; no root).

    python bench/evict_cache.py PATH...      (used by bench/startup.sh for its cold runs)
"""

import os
import sys


def evict(path: str) -> int:
    n = 0
    for root, _, files in os.walk(path) if os.path.isdir(path) else [(os.path.dirname(path), [], [os.path.basename(path)])]:
        for f in files:
            try:
                fd = os.open(os.path.join(root, f), os.O_RDONLY)
            except OSError:
                continue
            try:
                os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
                n += 1
            finally:
                os.close(fd)
    return n


if __name__ == "__main__":
    print(sum(evict(p) for p in sys.argv[1:]), "files evicted", file=sys.stderr)
