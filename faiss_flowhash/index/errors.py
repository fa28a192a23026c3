"""Errors shared by the index and its quantizer (own module: neither imports the other for it)."""

__all__ = ["NotTrainedError"]


class NotTrainedError(RuntimeError, ValueError):
    """The index (or quantizer) is used before it was trained."""
