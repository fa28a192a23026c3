"""Limits and defaults of the query service (no web framework imported here: the CLI builds its parser
from this module without the ``serve`` extra installed)."""

from dataclasses import dataclass

from ..db.consensus import DEFAULT_MIN_CONFIDENCE

__all__ = ["ServeConfig", "check_top", "check_confidence"]


def check_top(top) -> int:
    if isinstance(top, bool) or not isinstance(top, int) or top < 1:
        raise ValueError(f"top: expected an int >= 1, got {top!r}")
    return top


def check_confidence(c) -> float:
    if isinstance(c, bool) or not isinstance(c, (int, float)) or not 0 <= c <= 1:
        raise ValueError(f"min_confidence: expected a number in [0, 1], got {c!r}")
    return float(c)


@dataclass(frozen=True)
class ServeConfig:
    """Limits and defaults of the service.

    Args:
        max_upload_bytes: largest request body, bytes (16 MiB: ~8 min of 16 kHz 16-bit WAV); larger is 413.
        max_duration_s: longest snippet decoded, seconds (120); longer is 413 (a small compressed file
            can hold hours).
        path_root: JSON ``{"path": ...}`` queries may only name files under this directory; None: any
            file the server can read; "" disables path queries (uploads only).
        top: matches per snippet when the request does not say (1).
        min_confidence: threshold when the request does not say (the calibrated default, 0.70).
    """

    max_upload_bytes: int = 16 << 20
    max_duration_s: float = 120.0
    path_root: str | None = None
    top: int = 1
    min_confidence: float = DEFAULT_MIN_CONFIDENCE

    def __post_init__(self):
        if isinstance(self.max_upload_bytes, bool) or not isinstance(self.max_upload_bytes, int) or self.max_upload_bytes < 1:
            raise ValueError(f"max_upload_bytes: expected an int >= 1, got {self.max_upload_bytes!r}")
        if not self.max_duration_s > 0:
            raise ValueError(f"max_duration_s: expected seconds > 0, got {self.max_duration_s!r}")
        check_top(self.top)
        check_confidence(self.min_confidence)
