"""The shared 20 ms media clock (RFC 3551 §4.5: ptime 20 ms for G.711).

One `Pacer` serves every session: the adapter runs a single timer that wakes at the
absolute deadline t0 + n*period, asks how many periods are due and sends that many
frames for each session. Lateness never accumulates (no drift from sleep overshoot);
a stall longer than `max_catchup` periods is skipped rather than burst onto the wire.
"""

from __future__ import annotations

import math
from collections import deque

import msgspec

PERIOD = 0.020


class Tick(msgspec.Struct, frozen=True):
    """Periods due at one wake-up: send `frames` frames per session; `skipped` were dropped."""

    frames: int
    skipped: int
    lateness: float


class Pacer:
    """Absolute-schedule ticker; pure arithmetic, the caller supplies `now` (monotonic seconds)."""

    def __init__(self, t0: float, period: float = PERIOD, max_catchup: int = 5, samples: int = 4096) -> None:
        self.t0 = t0
        self.period = period
        self.max_catchup = max_catchup
        self.index = 0  # periods already served
        self.skipped_total = 0
        self._lateness: deque[float] = deque(maxlen=samples)

    @property
    def next_deadline(self) -> float:
        return self.t0 + (self.index + 1) * self.period

    def due(self, now: float) -> Tick:
        """Account for every period whose deadline has passed by `now`."""
        reached = math.floor((now - self.t0) / self.period + 1e-9)
        count = reached - self.index
        if count <= 0:
            return Tick(0, 0, 0.0)
        lateness = now - (self.t0 + (self.index + 1) * self.period)
        self._lateness.append(lateness)
        self.index = reached
        skipped = max(0, count - self.max_catchup)
        self.skipped_total += skipped
        return Tick(count - skipped, skipped, lateness)

    def lateness_percentiles(self, *quantiles: float) -> list[float]:
        """Wake-up lateness (seconds) over the recent window, for metrics and the benchmark."""
        data = sorted(self._lateness)
        if not data:
            return [0.0 for _ in quantiles]
        return [data[min(len(data) - 1, int(q * len(data)))] for q in quantiles]
