"""The distortion conditions of the paper's Table 1 (section 4.4), the issue-11 extras (bursty cafe-like
noise, phone playback) and the protocol's constants. Every condition is rendered by the one distortion
protocol, :mod:`faiss_flowhash.audio.distort` (see :func:`faiss_flowhash.eval.queries.query_distortion`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Condition", "PAPER_CONDITIONS", "EXTRA_CONDITIONS", "QUERY_LENGTHS_S", "TOLERANCE_S"]

QUERY_LENGTHS_S = (1.0, 2.0, 3.0, 5.0)
TOLERANCE_S = 0.05          # a hit needs the offset within 50 ms of the truth (section 4.2)
_NOISE_REVERB_RT60 = 0.5    # noisy reverberant queries: RT60 0.5 s, then noise (section 4.4)

# kind -> (needs snr_db, needs rt60_s); the kinds are names of faiss_flowhash.audio.distort.CONDITIONS
_NEEDS = {"clean": (False, False), "noise": (True, False), "reverb": (False, True), "noise+reverb": (True, True),
          "bursty": (True, False), "phone": (False, False)}


@dataclass(frozen=True)
class Condition:
    """One distortion: ``kind`` "clean", "noise" (steady noise at ``snr_db``), "reverb" (a room of
    ``rt60_s``), "noise+reverb" (both: the room first, then noise), "bursty" (cafe-like bursts of noise,
    ``snr_db`` during the bursts) or "phone" (played through a phone band, 300-3400 Hz or a phone
    loudspeaker's, jittered, plus 20 dB noise: ``distort.condition("phone")``)."""

    kind: str
    snr_db: float | None = None
    rt60_s: float | None = None

    def __post_init__(self):
        if self.kind not in _NEEDS:
            raise ValueError(f"kind: expected one of {sorted(_NEEDS)}, got {self.kind!r}")
        has = (self.snr_db is not None, self.rt60_s is not None)
        if has != _NEEDS[self.kind]:
            raise ValueError(f"{self.kind}: expected snr_db/rt60_s set = {_NEEDS[self.kind]}, got {has}")
        if self.rt60_s is not None and not 0.05 <= self.rt60_s <= 5.0:
            raise ValueError(f"rt60_s: expected seconds in [0.05, 5], got {self.rt60_s}")
        if self.snr_db is not None and not np.isfinite(self.snr_db):
            raise ValueError(f"snr_db: expected a finite dB value, got {self.snr_db}")

    @property
    def label(self) -> str:
        if self.kind in ("clean", "phone"):
            return self.kind
        if self.kind == "reverb":
            return f"reverb {self.rt60_s:g}s"
        return f"{self.kind} {self.snr_db:g}dB"


PAPER_CONDITIONS = (
    tuple(Condition("noise", snr_db=s) for s in (0.0, 5.0, 10.0, 15.0, 20.0))
    + tuple(Condition("noise+reverb", snr_db=s, rt60_s=_NOISE_REVERB_RT60) for s in (0.0, 5.0, 10.0, 15.0, 20.0))
    + tuple(Condition("reverb", rt60_s=t) for t in (0.2, 0.4, 0.5, 0.7, 0.8))
)

EXTRA_CONDITIONS = (Condition("bursty", snr_db=0.0), Condition("bursty", snr_db=10.0), Condition("phone"))
"""The issue-11 additions to the paper's protocol: bursty cafe-like noise and band-limited phone playback."""
