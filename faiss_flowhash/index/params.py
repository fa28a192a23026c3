"""Search settings of a FlowHashIndex, grouped as faiss groups them in ``SearchParameters``.

``SearchParams()`` fields left at :data:`DEFAULT` take the index's own setting; ``None`` switches a
limit off (``SearchParams(budget=None)``: no candidate budget, even if the index has one).
"""

import math
import numbers
from dataclasses import dataclass, fields, replace

__all__ = ["SearchParams", "DEFAULT", "PROBE_MODES", "PLANNERS"]

PROBE_MODES = ("centroid", "flip")
PLANNERS = ("auto", "fused", "reference")


class _Default:
    """Sentinel: 'use the index's setting' (distinct from None, which means 'no limit')."""

    _instance = None

    def __new__(cls):
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "DEFAULT"

    def __reduce__(self):
        return (_Default, ())


DEFAULT = _Default()


def _check_limit(name: str, v) -> None:
    if v is DEFAULT or v is None:
        return
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise ValueError(f"{name}: expected None or an int >= 1, got {v!r}")


@dataclass(frozen=True)
class SearchParams:
    """How a search probes.

    Attributes:
        r_query: probe radius r~ (paper: 1.25): bits with |z_k| < r~ may be flipped; inf = all of the
            ``max_probe_bits`` least certain bits.
        budget: stop once this many stored entries were scanned (faiss's ``max_codes``; the last
            bucket is scanned in part); None: no budget.
        max_probes: probe at most this many buckets, cheapest first; None: no cap.
        max_probe_bits: at most this many flippable bits per query (<= 2^bits probes), in [0, 20].
        probe: "centroid" (every flip of the ``max_probe_bits`` least certain bits is proposed and
            the proposed lists are ranked by their centroid's distance to the query) or "flip" (the
            paper: buckets within radius ``r_query``, cheapest flip cost first).
        nprobe: with probe="centroid", scan at most this many lists, nearest first; None: all proposed.
        planner: with probe="centroid", "fused" (one numba pass per query, :mod:`.planner`),
            "reference" (numpy + faiss kernels, the oracle the fused planner is tested against; also
            used when numba is missing) or "auto" (the index's default: fused for calls of
            ``planner.AUTO_FUSED_MIN_ROWS`` (256) queries or more, or once numba is loaded in the
            process; reference otherwise, so a short process never pays numba's import). Same lists
            up to float ties.
        shortlist: fused planner only: rank the proposed lists first by an estimate from 8-bit codes
            of the centroids (a quarter of their bytes) and compute the exact centroid distance for this
            many (>= nprobe) only; None: exact for every proposed list.
    """

    r_query: float = DEFAULT
    budget: int | None = DEFAULT
    max_probes: int | None = DEFAULT
    max_probe_bits: int = DEFAULT
    probe: str = DEFAULT
    nprobe: int | None = DEFAULT
    planner: str = DEFAULT
    shortlist: int | None = DEFAULT

    def __post_init__(self):
        if self.r_query is not DEFAULT:
            r = self.r_query
            if isinstance(r, bool) or not isinstance(r, numbers.Real) or math.isnan(r) or r < 0:
                raise ValueError(f"r_query: expected a number >= 0 (inf allowed), got {r!r}")
            object.__setattr__(self, "r_query", float(r))
        _check_limit("budget", self.budget)
        _check_limit("max_probes", self.max_probes)
        _check_limit("nprobe", self.nprobe)
        _check_limit("shortlist", self.shortlist)
        if self.probe is not DEFAULT and self.probe not in PROBE_MODES:
            raise ValueError(f"probe: expected one of {PROBE_MODES}, got {self.probe!r}")
        if self.planner is not DEFAULT and self.planner not in PLANNERS:
            raise ValueError(f"planner: expected one of {PLANNERS}, got {self.planner!r}")
        b = self.max_probe_bits
        if b is not DEFAULT and (isinstance(b, bool) or not isinstance(b, numbers.Integral) or not 0 <= b <= 20):
            raise ValueError(f"max_probe_bits: expected an int in [0, 20], got {b!r}")
        for name in ("budget", "max_probes", "max_probe_bits", "nprobe", "shortlist"):  # numpy ints -> int (JSON-able)
            v = getattr(self, name)
            if isinstance(v, numbers.Integral):
                object.__setattr__(self, name, int(v))

    def over(self, base: "SearchParams") -> "SearchParams":
        """These settings where set, ``base``'s elsewhere."""
        return replace(base, **{f.name: getattr(self, f.name) for f in fields(self)
                                if getattr(self, f.name) is not DEFAULT})

    def as_dict(self) -> dict:
        return {f.name: getattr(self, f.name) for f in fields(self)}
