"""``python -m faiss_flowhash``: the ``flowhash`` command line (see :mod:`faiss_flowhash.cli`)."""

import sys

from .cli import main

__all__: list[str] = []

if __name__ == "__main__":
    sys.exit(main())
