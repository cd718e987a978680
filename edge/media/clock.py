"""The shared 20 ms media clock (RFC 3551 §4.5: ptime 20 ms for G.711).

One `Pacer` serves every session: the adapter runs a single timer that wakes at the
absolute deadline t0 + n*period and hands `now` to `PacedSessions.tick`, which returns every
datagram due across all sessions (no per-session timer or task). Lateness never accumulates
(no drift from sleep overshoot); a stall longer than `max_catchup` periods is skipped rather
than burst onto the wire.
"""

from __future__ import annotations

import math
from collections import deque
from typing import Generic, TypeVar

import msgspec

from edge.media.events import Address
from edge.media.session import MediaSession

H = TypeVar("H")
HOUSEKEEPING_PERIODS = 5  # media timeouts and RTCP need 100 ms granularity, not 20 ms

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

    def reset_samples(self) -> None:
        """Forget the lateness window (a benchmark's warm-up)."""
        self._lateness.clear()

    def lateness_percentiles(self, *quantiles: float) -> list[float]:
        """Wake-up lateness (seconds) over the recent window, for metrics and the benchmark."""
        data = sorted(self._lateness)
        if not data:
            return [0.0 for _ in quantiles]
        return [data[min(len(data) - 1, int(q * len(data)))] for q in quantiles]


class TickOutput(msgspec.Struct, Generic[H]):
    """What one wake-up asks the adapter to do; `H` is the adapter's opaque per-session handle.

    `rtp` and `rtcp` are (handle, datagram, destination) in send order; `events` are the handles
    whose sessions queued events (drain them after sending, so callbacks never delay the burst).
    """

    frames: int
    skipped: int
    lateness: float
    rtp: list[tuple[H, bytes, Address]]
    rtcp: list[tuple[H, bytes, Address]]
    events: list[H]


class PacedSessions(Generic[H]):
    """Every open session on one shared Pacer: one pass per wake-up builds the whole burst.

    With `slots` > 1 the 20 ms period is split into that many phases (the Pacer then ticks every
    20 ms / slots) and each session is pinned to one phase, so a wake-up sends 1/slots of the
    packets: a stall or a long burst delays fewer streams, each still at exactly one packet per
    20 ms. The first `skipped` sub-periods of a stalled wake-up advance their phase's media clock
    without packets (`MediaSession.skip_periods`).
    """

    def __init__(self, pacer: Pacer, slots: int = 1) -> None:
        if slots < 1:
            raise ValueError("slots must be >= 1")
        self.pacer = pacer
        self.slots = slots
        self._phases: list[dict[int, tuple[MediaSession, H]]] = [{} for _ in range(slots)]
        self._phase_of: dict[int, int] = {}

    def __len__(self) -> int:
        return len(self._phase_of)

    def add(self, session: MediaSession, handle: H) -> None:
        """Pin the session to the least-loaded phase (keeps bursts even as calls come and go)."""
        port = session.local_port
        phase = self._phase_of.get(port)
        if phase is None:
            phase = min(range(self.slots), key=lambda k: len(self._phases[k]))
            self._phase_of[port] = phase
        self._phases[phase][port] = (session, handle)

    def remove(self, session: MediaSession) -> None:
        phase = self._phase_of.pop(session.local_port, None)
        if phase is not None:
            self._phases[phase].pop(session.local_port, None)

    @property
    def next_deadline(self) -> float:
        return self.pacer.next_deadline

    def tick(self, now: float, wall: float) -> TickOutput[H]:
        """Every frame due by `now`, phase by phase; each phase's timers and RTCP every 100 ms."""
        pacer = self.pacer
        slots = self.slots
        before = pacer.index
        due = pacer.due(now)
        first_sent = pacer.index - due.frames + 1
        for sub in range(before + 1, first_sent):  # dropped sub-periods: the clock moves on
            for session, _ in self._phases[sub % slots].values():
                session.skip_periods(1)
        rtp: list[tuple[H, bytes, Address]] = []
        rtcp: list[tuple[H, bytes, Address]] = []
        events: list[H] = []
        send = rtp.append
        for sub in range(first_sent, pacer.index + 1):
            housekeeping = (sub // slots) % HOUSEKEEPING_PERIODS == 0
            for session, handle in self._phases[sub % slots].values():
                data = session.next_packet(now)
                if data is not None:
                    send((handle, data, session.remote))  # type: ignore[arg-type]  # set whenever data is
                if housekeeping:
                    session.on_tick(now)
                    report = session.rtcp_due(now, wall)
                    if report is not None and session.remote_rtcp is not None:
                        rtcp.append((handle, report, session.remote_rtcp))
                if session.has_events:
                    events.append(handle)
        return TickOutput(due.frames, due.skipped, due.lateness, rtp, rtcp, events)
