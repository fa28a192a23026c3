"""Matched spans of a long recording or stream, from its per-segment hits in time order.

:class:`SpanTracker` is fed the hits of consecutive segments (1 s windows every hop) as they are
fingerprinted and searched, and returns each span once it has ended: track, start in the recording,
start in the track, duration, confidence. It holds the last ``history_s`` seconds of hits only, so
memory does not grow with the recording.

- Detection: while no span is open, every ``detect_every`` segments the last ``block_s`` seconds of
  hits (after the previous span) go through :func:`~faiss_flowhash.db.identify.identify`; a track with
  confidence >= ``min_confidence`` opens a span, aligned by the track's best vote cell (track time minus
  recording time). With ``reference`` (the reference windows, as for ``identify``) and the segments'
  fingerprints given to :meth:`SpanTracker.push`, the block is rated by the verified confidence
  (:func:`~faiss_flowhash.db.consensus.verified_confidence`, threshold ``DEFAULT_MIN_CONFIDENCE``), as a
  single query of the database is; without them, by the hits-only confidence (``HITS_MIN_CONFIDENCE``).
- Extent: a segment agrees with the open span when one of its hits is the span's track within
  ``tolerance_s`` of the alignment with a similarity of at least ``edge_ratio`` (0.8) x the median of
  the detection block's agreeing hits (a window half in silence or in the next track still finds its
  track, at a lower similarity: it is no evidence of where the span starts or ends). The start goes
  back through the history to the earliest agreeing segment (gaps < ``gap_s``); the span closes once
  no segment agreed for ``gap_s`` and ends one window after its last agreeing segment; a span shorter than
  ``min_duration_s`` (the detection block) is dropped.

Silent segments (level below ``silence_dbfs``) carry no evidence: every recording's silences look alike, and
match the silences of the reference tracks. They get no hits and, for the verified confidence, a zero
fingerprint (similarity 0 with every window: a block half in silence rates lower, and is detected once it
lies in the music; the start is then found in the history).
"""

from __future__ import annotations

from collections import deque
from dataclasses import asdict, dataclass

import numpy as np

from .consensus import DEFAULT_MIN_CONFIDENCE, HITS_MIN_CONFIDENCE, vote_cells
from .identify import identify

__all__ = ["Span", "SpanTracker"]


@dataclass(frozen=True)
class Span:
    """A part of the recording that is a track.

    Attributes:
        track_id: the track. start_s: where the span starts in the recording, seconds.
        track_start_s: the track time at ``start_s``, seconds. duration_s: span length, seconds.
        confidence: of the track decision on the detection block (see identify).
        path: the track's path (filled in by the database; "" from the tracker).
    """

    track_id: int
    start_s: float
    track_start_s: float
    duration_s: float
    confidence: float
    path: str = ""

    def to_dict(self) -> dict:
        return asdict(self)


class SpanTracker:
    """Turns per-segment hits (in recording order) into :class:`Span` s (see module docstring).

    Args:
        hop_s: segment hop (0.1 s). window_s: segment length (1 s).
        block_s: detection block (3 s). detect_every: segments between detection attempts (5).
        reference: the reference windows (:class:`~faiss_flowhash.db.identify.ReferenceWindows` or any object
            with its ``take``); then every :meth:`push` gives the segments' fingerprints and detection uses the
            verified confidence. None (the default): hits only.
        min_confidence: to open a span (None: ``DEFAULT_MIN_CONFIDENCE`` (0.70) with ``reference``, else
            ``HITS_MIN_CONFIDENCE`` (0.35)). gap_s: a span closes after this long
            without an agreeing segment (2 s). tolerance_s: agreement tolerance (0.1 s).
        history_s: hits kept for finding a span's start (30 s). silence_dbfs: silent segments (-60 dBFS).
        edge_ratio: share of the block's median agreeing similarity a segment needs to extend a span (0.8).
        min_duration_s: shorter spans are dropped (None: ``block_s``; 0: keep all). On real music never
            indexed, the false spans are short (a window across a silence-to-music onset fits any reference's
            onset; bench/results/spans.md).
    """

    def __init__(self, *, hop_s: float = 0.1, window_s: float = 1.0, block_s: float = 3.0, detect_every: int = 5,
                 reference=None, min_confidence: float | None = None, gap_s: float = 2.0, tolerance_s: float = 0.1,
                 history_s: float = 30.0, silence_dbfs: float = -60.0, edge_ratio: float = 0.8,
                 min_duration_s: float | None = None):
        if not 0 < hop_s <= window_s:
            raise ValueError(f"hop_s: expected in (0, window_s={window_s}], got {hop_s}")
        if not block_s >= window_s or not gap_s > 0 or not history_s >= block_s:
            raise ValueError(f"block_s, gap_s, history_s: expected block_s >= window_s, gap_s > 0, history_s >= "
                             f"block_s, got {block_s}, {gap_s}, {history_s}")
        if reference is not None and not callable(getattr(reference, "take", None)):
            raise TypeError(f"reference: expected ReferenceWindows or an object with take(tracks, frames), got "
                            f"{type(reference).__name__}")
        if min_confidence is None:
            min_confidence = HITS_MIN_CONFIDENCE if reference is None else DEFAULT_MIN_CONFIDENCE
        if not 0 <= min_confidence <= 1:
            raise ValueError(f"min_confidence: expected in [0, 1], got {min_confidence}")
        self.hop_s, self.window_s, self.block_s, self.detect_every = hop_s, window_s, block_s, int(detect_every)
        self.min_confidence, self.gap_s, self.tolerance_s = min_confidence, gap_s, tolerance_s
        self.silence_dbfs, self.edge_ratio, self.reference = silence_dbfs, float(edge_ratio), reference
        self.min_duration_s = float(block_s if min_duration_s is None else min_duration_s)
        if not self.min_duration_s >= 0:
            raise ValueError(f"min_duration_s: expected >= 0, got {min_duration_s}")
        # (time, tracks (k,), times (k,), scores (k,), fingerprint (d,) or None)
        self._hist = deque(maxlen=max(1, int(round(history_s / hop_s))))
        self._span = None   # dict: track, align, start, last, confidence
        self._after = -np.inf  # detection looks only at segments after the last span's last agreeing one
        self._since_detect = 0

    def push(self, segment_times, tracks, times, scores, levels=None, *, fingerprints=None) -> list[Span]:
        """Feed consecutive segments (``hop_s`` apart): (n,) start in the recording (s), (n, k) hit tracks /
        track times (s) / scores, optional (n,) levels in dBFS, and (n, d) ``fingerprints`` (required with
        ``reference``, refused without); returns the spans that ended, in order."""
        segment_times = np.asarray(segment_times, np.float64)
        tracks, times, scores = np.asarray(tracks, np.int64), np.asarray(times, np.float64), np.asarray(scores, np.float64)
        if tracks.ndim != 2 or times.shape != tracks.shape or scores.shape != tracks.shape \
                or segment_times.shape != (len(tracks),):
            raise ValueError(f"tracks, times, scores: expected (n, k) each and segment_times (n,), got "
                             f"{tracks.shape}, {times.shape}, {scores.shape}, {segment_times.shape}")
        if (fingerprints is None) != (self.reference is None):
            raise ValueError("fingerprints: expected them exactly when the tracker has reference windows, got "
                             f"fingerprints {'None' if fingerprints is None else 'given'}, reference "
                             f"{'None' if self.reference is None else 'given'}")
        if fingerprints is not None:
            fingerprints = np.asarray(fingerprints, np.float32)
            if fingerprints.ndim != 2 or len(fingerprints) != len(tracks):
                raise ValueError(f"fingerprints: expected shape ({len(tracks)}, d), got {fingerprints.shape}")
        if levels is not None:
            silent = np.asarray(levels, np.float64) < self.silence_dbfs
            tracks = np.where(silent[:, None], -1, tracks)
            if fingerprints is not None:  # nor a fingerprint: zero, it matches no window (similarity 0)
                fingerprints = np.where(silent[:, None], np.float32(0), fingerprints)
        out = []
        for i in range(len(tracks)):
            out += self._step(float(segment_times[i]), tracks[i], times[i], scores[i],
                              None if fingerprints is None else fingerprints[i].copy())
        return out

    @property
    def held_segments(self) -> int:
        """Segments of hits held now (at most ``history_s / hop_s``, whatever the recording's length)."""
        return len(self._hist)

    def finish(self) -> list[Span]:
        """The end of the recording: the open span, if any."""
        return self._close() if self._span is not None else []

    # -- internals --------------------------------------------------------------------------------
    def _agreement(self, r: float, tracks, times, scores) -> float:
        """Best similarity among the segment's hits that agree with the open span (-inf: none)."""
        s = self._span
        ok = (tracks == s["track"]) & (np.abs(times - (r + s["align"])) <= self.tolerance_s)
        return float(scores[ok].max()) if ok.any() else -np.inf

    def _agrees(self, r: float, tracks, times, scores) -> bool:
        return self._agreement(r, tracks, times, scores) >= self._span["floor"]

    def _step(self, r, tracks, times, scores, fingerprint) -> list[Span]:
        self._hist.append((r, tracks, times, scores, fingerprint))
        out = []
        if self._span is not None:
            if self._agrees(r, tracks, times, scores):
                self._span["last"] = r
            elif r - self._span["last"] > self.gap_s:
                out += self._close()
        if self._span is not None:
            self._since_detect += 1
            if self._since_detect >= 2 * self.detect_every:  # the span's confidence: its best block so far
                self._since_detect = 0
                found = self._identify_block()
                if found and found[0].track_id == self._span["track"]:
                    self._span["confidence"] = max(self._span["confidence"], found[0].confidence)
        if self._span is None:
            self._since_detect += 1
            if self._since_detect >= self.detect_every:
                self._since_detect = 0
                self._detect()
        return out

    def _block(self):
        """The last block_s seconds of hits after the previous span: (segment times, tracks, times, scores,
        fingerprints or None)."""
        r_now = self._hist[-1][0]
        block = [h for h in self._hist if h[0] > self._after and h[0] > r_now - self.block_s + 1e-9]
        if len(block) < max(3, int(0.5 * self.block_s / self.hop_s)):
            return None
        fps = None if self.reference is None else np.stack([h[4] for h in block])
        return (np.array([h[0] for h in block]),) + tuple(np.stack([h[j] for h in block]) for j in (1, 2, 3)) + (fps,)

    def _identify_block(self):
        block = self._block()
        if block is None:
            return []
        seg_t, tracks, times, scores, fps = block
        verified = {} if fps is None else {"query": fps, "reference": self.reference, "hop_s": self.hop_s}
        return identify(tracks, times, scores, seg_t - seg_t[0], top=1, min_confidence=self.min_confidence, **verified)

    def _detect(self) -> None:
        found = self._identify_block()
        if not found:
            return
        seg_t, tracks, times, scores, _ = self._block()
        m = found[0]
        # the alignment without clipping at 0 (the block may start before the track): the track's best cell
        cells = vote_cells(np.where(tracks == m.track_id, tracks, -1), times, scores, seg_t)
        best = int(np.lexsort((cells.grid, -cells.support, -cells.votes))[0])
        self._span = {"track": m.track_id, "align": float(cells.offset[best]), "confidence": m.confidence,
                      "floor": -np.inf}
        in_block = [self._agreement(r, t, tm, sc) for r, t, tm, sc in zip(seg_t, tracks, times, scores)]
        in_block = [a for a in in_block if np.isfinite(a)]
        if in_block:
            self._span["floor"] = self.edge_ratio * float(np.median(in_block))
        # the start: back through the history over agreeing segments with gaps shorter than gap_s
        agree = [h[0] for h in self._hist if h[0] > self._after and self._agrees(*h[:4])]
        if not agree:
            self._span = None
            return
        first = last = agree[-1]
        for t in reversed(agree[:-1]):
            if first - t > self.gap_s:
                break
            first = t
        self._span.update(start=first, last=last)

    def _close(self) -> list[Span]:
        s, self._span = self._span, None
        self._after = s["last"]
        self._since_detect = 0
        duration = float(s["last"] + self.window_s - s["start"])
        if duration < self.min_duration_s - 1e-9:
            return []  # the evidence did not outlast its detection block
        # times to the millisecond (segments are hop_s apart; float noise is not information)
        return [Span(track_id=int(s["track"]), start_s=round(float(s["start"]), 3),
                    track_start_s=round(max(0.0, float(s["start"] + s["align"])), 3),
                    duration_s=round(duration, 3), confidence=float(s["confidence"]))]
