"""Transaction timer values (RFC 3261 §17 and Table 4, RFC 6026 timers L and M) and a timer wheel.

One heap serves every transaction: the adapter arms a single loop timer at `next_deadline()`,
instead of one asyncio handle per SIP timer.
"""

from __future__ import annotations

import heapq
from typing import Any

import msgspec


class TimerValues(msgspec.Struct, frozen=True):
    """Seconds. Derived timers default to their RFC 3261 multiple of T1 when left at 0."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0
    timer_b: float = 0.0  # INVITE client timeout (64*T1); a shorter value fails over sooner
    timer_c: float = 180.0  # proxy INVITE timer (§16.6 step 11), > 3 min per RFC; ring timeout
    timer_d: float = 32.0  # ACK retransmission absorption, UDP
    timer_f: float = 0.0  # non-INVITE client timeout (64*T1)
    timer_h: float = 0.0  # wait for ACK (64*T1)
    timer_j: float = 0.0  # non-INVITE server absorb (64*T1, UDP)
    timer_l: float = 0.0  # RFC 6026 accepted state, server (64*T1)
    timer_m: float = 0.0  # RFC 6026 accepted state, client (64*T1)

    def _d(self, v: float) -> float:
        return v if v > 0 else 64 * self.t1

    @property
    def b(self) -> float:
        return self._d(self.timer_b)

    @property
    def f(self) -> float:
        return self._d(self.timer_f)

    @property
    def h(self) -> float:
        return self._d(self.timer_h)

    @property
    def j(self) -> float:
        return self._d(self.timer_j)

    @property
    def l(self) -> float:  # noqa: E743 - RFC 6026 name
        return self._d(self.timer_l)

    @property
    def m(self) -> float:
        return self._d(self.timer_m)


class TimerWheel:
    """Deadline heap with lazy cancellation: an entry fires only if its owner still holds that deadline."""

    __slots__ = ("_heap", "_seq")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Any, str]] = []
        self._seq = 0

    def arm(self, owner: Any, name: str, deadline: float) -> None:
        owner.timers[name] = deadline
        self._seq += 1
        heapq.heappush(self._heap, (deadline, self._seq, owner, name))

    @staticmethod
    def cancel(owner: Any, name: str) -> None:
        owner.timers.pop(name, None)

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            deadline, _, owner, name = heap[0]
            if owner.timers.get(name) == deadline:
                return deadline
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> list[tuple[Any, str]]:
        heap = self._heap
        due: list[tuple[Any, str]] = []
        while heap and heap[0][0] <= now:
            deadline, _, owner, name = heapq.heappop(heap)
            if owner.timers.get(name) == deadline:
                del owner.timers[name]
                due.append((owner, name))
        return due

    def __len__(self) -> int:
        return len(self._heap)
