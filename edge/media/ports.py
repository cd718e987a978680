"""RTP port pool (RFC 3550 §11: RTP on an even port, RTCP on the next odd one).

Exhaustion raises PoolExhausted, which the call layer answers with 503; the adapter
quarantines ports the OS refused to bind so they are not handed out again at once.
"""

from __future__ import annotations

from collections import deque


class PoolExhausted(RuntimeError):
    """No free RTP port pair: answer the INVITE with 503 Service Unavailable."""


class PortPool:
    def __init__(self, first: int, last: int) -> None:
        if first % 2:
            first += 1
        if first < 1024 or last > 65535 or last <= first:
            raise ValueError(f"bad RTP port range {first}-{last}")
        self._free: deque[int] = deque(range(first, last, 2))  # last pair needs port+1 <= last
        self._in_use: set[int] = set()
        self.capacity = len(self._free)
        self.exhausted_total = 0

    @property
    def in_use(self) -> int:
        return len(self._in_use)

    @property
    def available(self) -> int:
        return len(self._free)

    def allocate(self) -> int:
        """Least-recently released even port first, so a late packet for an old call misses."""
        if not self._free:
            self.exhausted_total += 1
            raise PoolExhausted(f"all {self.capacity} RTP port pairs in use")
        port = self._free.popleft()
        self._in_use.add(port)
        return port

    def release(self, port: int) -> None:
        if port in self._in_use:
            self._in_use.discard(port)
            self._free.append(port)

    def quarantine(self, port: int) -> None:
        """The OS refused to bind it: move it to the back of the queue instead of the front."""
        self.release(port)
