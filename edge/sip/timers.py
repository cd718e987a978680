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
    """Deadline heap shared by every transaction, dialog and probe.

    Each armed timer is a small handle `[deadline, owner, name]`; `owner.timers[name]` holds the handle.
    Cancelling drops the handle's reference to its owner at once, so a finished call is freed by
    reference counting even while its cancelled Timer C entry still waits in the heap (no 180 s of
    retained messages). The heap is compacted when cancelled entries outnumber live ones.
    """

    __slots__ = ("_heap", "_seq", "_live")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, list]] = []
        self._seq = 0
        self._live = 0

    def arm(self, owner: Any, name: str, deadline: float) -> None:
        old = owner.timers.get(name)
        if old is not None and old[1] is not None:
            old[1] = None
            self._live -= 1
        handle = [deadline, owner, name]
        owner.timers[name] = handle
        self._seq += 1
        self._live += 1
        heapq.heappush(self._heap, (deadline, self._seq, handle))
        if len(self._heap) > 4 * self._live + 4096:
            self._compact()

    def cancel(self, owner: Any, name: str) -> None:
        handle = owner.timers.pop(name, None)
        if handle is not None and handle[1] is not None:
            handle[1] = None
            self._live -= 1

    def clear(self, owner: Any) -> None:
        """Cancel every timer of `owner` (a transaction terminated, a dialog closed)."""
        for handle in owner.timers.values():
            if handle[1] is not None:
                handle[1] = None
                self._live -= 1
        owner.timers.clear()

    def next_deadline(self) -> float | None:
        heap = self._heap
        while heap:
            if heap[0][2][1] is not None:
                return heap[0][0]
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> list[tuple[Any, str]]:
        heap = self._heap
        due: list[tuple[Any, str]] = []
        while heap and heap[0][0] <= now:
            _, _, handle = heapq.heappop(heap)
            owner = handle[1]
            if owner is None:
                continue
            handle[1] = None
            self._live -= 1
            name = handle[2]
            if owner.timers.get(name) is handle:
                del owner.timers[name]
            due.append((owner, name))
        return due

    def _compact(self) -> None:
        self._heap = [e for e in self._heap if e[2][1] is not None]
        heapq.heapify(self._heap)

    @property
    def live(self) -> int:
        return self._live

    def __len__(self) -> int:
        return len(self._heap)
