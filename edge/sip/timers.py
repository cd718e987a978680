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

    An armed timer is a heap entry `(deadline, seq, name)` and `owner.timers[name] = seq`; the wheel maps
    each live `seq` to its owner. Cancelling forgets the seq, so a finished call is freed by reference
    counting at once even while its cancelled Timer C entry still waits in the heap (no 180 s of retained
    messages); the heap is compacted when cancelled entries outnumber live ones. Heap entries and the
    owners' `timers` dicts hold only numbers and strings, so the cyclic garbage collector stops tracking
    them: at 1,500 calls a second some 100,000 timers wait out their 32 s, and as lists and handles they
    were most of what every collection had to walk.
    """

    __slots__ = ("_heap", "_seq", "_owners")

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, str]] = []
        self._seq = 0
        self._owners: dict[int, Any] = {}  # seq of each live timer -> its owner

    def arm(self, owner: Any, name: str, deadline: float) -> None:
        timers = owner.timers
        old = timers.get(name)
        if old is not None:
            self._owners.pop(old, None)
        self._seq += 1
        seq = self._seq
        timers[name] = seq
        self._owners[seq] = owner
        heapq.heappush(self._heap, (deadline, seq, name))
        if len(self._heap) > 4 * len(self._owners) + 4096:
            self._compact()

    def cancel(self, owner: Any, name: str) -> None:
        seq = owner.timers.pop(name, None)
        if seq is not None:
            self._owners.pop(seq, None)

    def clear(self, owner: Any) -> None:
        """Cancel every timer of `owner` (a transaction terminated, a dialog closed)."""
        owners = self._owners
        for seq in owner.timers.values():
            owners.pop(seq, None)
        owner.timers.clear()

    def next_deadline(self) -> float | None:
        heap = self._heap
        owners = self._owners
        while heap:
            if heap[0][1] in owners:
                return heap[0][0]
            heapq.heappop(heap)
        return None

    def pop_due(self, now: float) -> list[tuple[Any, str]]:
        heap = self._heap
        owners = self._owners
        due: list[tuple[Any, str]] = []
        while heap and heap[0][0] <= now:
            _, seq, name = heapq.heappop(heap)
            owner = owners.pop(seq, None)
            if owner is None:
                continue
            if owner.timers.get(name) == seq:
                del owner.timers[name]
            due.append((owner, name))
        return due

    def _compact(self) -> None:
        owners = self._owners
        self._heap = [e for e in self._heap if e[1] in owners]
        heapq.heapify(self._heap)

    def deadlines(self, owner: Any) -> dict[str, float]:
        """The deadline of each timer `owner` has armed (for inspection: a scan of the heap)."""
        names = {seq: name for name, seq in owner.timers.items()}
        return {names[seq]: deadline for deadline, seq, _ in self._heap if seq in names}

    @property
    def live(self) -> int:
        return len(self._owners)

    def __len__(self) -> int:
        return len(self._heap)
