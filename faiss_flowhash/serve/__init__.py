"""The query service: ``flowhash serve DB`` answers identification requests over HTTP.

Needs the ``serve`` extra (Flask, waitress): ``pip install "faiss-flowhash[serve]"``.
"""

from .config import ServeConfig
from .process import ServeProcess
from .server import add_serve_arguments, make_server, run_serve

__all__ = ["ServeConfig", "ServeProcess", "create_app", "make_server", "add_serve_arguments", "run_serve"]


def __getattr__(name):
    if name == "create_app":  # imports Flask: only when the application is built
        from .app import create_app

        return create_app
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
