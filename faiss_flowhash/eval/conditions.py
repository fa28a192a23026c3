"""The distortion conditions of the paper's Table 1 (section 4.4) and the protocol's constants."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

__all__ = ["Condition", "PAPER_CONDITIONS", "QUERY_LENGTHS_S", "TOLERANCE_S"]

QUERY_LENGTHS_S = (1.0, 2.0, 3.0, 5.0)
TOLERANCE_S = 0.05          # a hit needs the offset within 50 ms of the truth (section 4.2)
_NOISE_REVERB_RT60 = 0.5    # noisy reverberant queries: RT60 0.5 s, then noise (section 4.4)


@dataclass(frozen=True)
class Condition:
    """One distortion: ``kind`` "clean", "noise" (``snr_db``), "reverb" (``rt60_s``) or
    "noise+reverb" (both: reverb first, then noise)."""

    kind: str
    snr_db: float | None = None
    rt60_s: float | None = None

    def __post_init__(self):
        need = {"clean": (False, False), "noise": (True, False), "reverb": (False, True),
                "noise+reverb": (True, True)}
        if self.kind not in need:
            raise ValueError(f"kind: expected one of {sorted(need)}, got {self.kind!r}")
        has = (self.snr_db is not None, self.rt60_s is not None)
        if has != need[self.kind]:
            raise ValueError(f"{self.kind}: expected snr_db/rt60_s set = {need[self.kind]}, got {has}")
        if self.rt60_s is not None and not 0.05 <= self.rt60_s <= 5.0:
            raise ValueError(f"rt60_s: expected seconds in [0.05, 5], got {self.rt60_s}")
        if self.snr_db is not None and not np.isfinite(self.snr_db):
            raise ValueError(f"snr_db: expected a finite dB value, got {self.snr_db}")

    @property
    def label(self) -> str:
        if self.kind == "clean":
            return "clean"
        if self.kind == "reverb":
            return f"reverb {self.rt60_s:g}s"
        return f"{self.kind} {self.snr_db:g}dB"


PAPER_CONDITIONS = (
    tuple(Condition("noise", snr_db=s) for s in (0.0, 5.0, 10.0, 15.0, 20.0))
    + tuple(Condition("noise+reverb", snr_db=s, rt60_s=_NOISE_REVERB_RT60) for s in (0.0, 5.0, 10.0, 15.0, 20.0))
    + tuple(Condition("reverb", rt60_s=t) for t in (0.2, 0.4, 0.5, 0.7, 0.8))
)
