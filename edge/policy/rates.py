"""Sliding-window event rates per key, memory-bounded (the Kamailio pike / Cloudflare approach).

Why two weighted fixed buckets rather than an exact ring of timestamps: a ring costs memory
proportional to the limit for every tracked key and O(limit) to expire, while a flood of random
caller IDs is exactly the case where memory matters. Two buckets cost three numbers per key and O(1)
per event; the estimate `prev * (1 - elapsed/window) + current` assumes events in the previous window
were evenly spread, which over- or under-counts by at most the previous bucket's share - good
enough for a spam signal, and it never forgets a burst that is still inside the window.

Each counter keeps at most `max_keys` keys; the least recently seen key is evicted first (an
OrderedDict gives O(1) move-to-end and pop-oldest), and evictions are counted.
"""

from __future__ import annotations

import enum
from collections import OrderedDict

import msgspec


class RateKey(str, enum.Enum):
    """What a rate is counted per."""

    CALLER = "caller"  # calling number
    SOURCE = "source"  # source IP address
    PAIR = "pair"  # calling + called number
    CALLED = "called"  # called number
    CNAM = "cnam"  # normalised caller name


class RateLimit(msgspec.Struct, frozen=True):
    """At most `count` events per `window` seconds; the next one exceeds it."""

    count: int
    window: float

    def __str__(self) -> str:
        return f"{self.count}/{self.window:g}s"


class SlidingWindowCounter:
    """Approximate events-per-window for many keys, O(1) per event, bounded key count."""

    __slots__ = ("window", "max_keys", "evictions", "_keys")

    def __init__(self, window: float, max_keys: int) -> None:
        if window <= 0 or max_keys < 1:
            raise ValueError("window and max_keys must be positive")
        self.window = window
        self.max_keys = max_keys
        self.evictions = 0
        # key -> [bucket index, previous bucket count, current bucket count]
        self._keys: OrderedDict[str, list[int]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._keys)

    def hit(self, key: str, now: float) -> float:
        """Count one event for `key` and return the estimated events in the window ending now."""
        window = self.window
        idx = int(now // window)
        keys = self._keys
        state = keys.get(key)
        if state is None:
            if len(keys) >= self.max_keys:
                keys.popitem(last=False)
                self.evictions += 1
            keys[key] = [idx, 0, 1]
            return 1.0
        keys.move_to_end(key)
        if idx > state[0]:
            state[1] = state[2] if idx == state[0] + 1 else 0
            state[2] = 0
            state[0] = idx
        state[2] += 1
        return self._estimate(state, now)

    def peek(self, key: str, now: float) -> float:
        """Estimated events in the window ending now, without counting one."""
        state = self._keys.get(key)
        if state is None:
            return 0.0
        idx = int(now // self.window)
        if idx > state[0] + 1:
            return 0.0
        if idx == state[0] + 1:
            return state[2] * (1.0 - (now - idx * self.window) / self.window)
        return self._estimate(state, now)

    def _estimate(self, state: list[int], now: float) -> float:
        window = self.window
        elapsed = now - state[0] * window
        weight = 1.0 - elapsed / window
        if weight < 0.0:
            weight = 0.0
        return state[1] * weight + state[2]


class RateBook:
    """One counter per (key kind, window) in use, created on demand; counters themselves are capped.

    Counters are shared by every dialplan that uses the same key kind and window, so a caller's rate
    is one number however many rules look at it. The number of counters is capped too (reloads can
    change windows over time); the least recently used counter is dropped.
    """

    __slots__ = ("max_keys", "max_counters", "_counters", "dropped_evictions")

    def __init__(self, max_keys: int, max_counters: int = 64) -> None:
        self.max_keys = max_keys
        self.max_counters = max_counters
        self._counters: OrderedDict[tuple[RateKey, float], SlidingWindowCounter] = OrderedDict()
        self.dropped_evictions: dict[str, int] = {}

    def counter(self, key: RateKey, window: float) -> SlidingWindowCounter:
        slot = (key, window)
        c = self._counters.get(slot)
        if c is None:
            if len(self._counters) >= self.max_counters:
                (old_key, _), old = self._counters.popitem(last=False)
                self.dropped_evictions[old_key.value] = self.dropped_evictions.get(old_key.value, 0) + old.evictions
            c = self._counters[slot] = SlidingWindowCounter(window, self.max_keys)
        else:
            self._counters.move_to_end(slot)
        return c

    def evictions(self) -> dict[str, int]:
        """Evicted keys so far, per key kind (for metrics)."""
        out = dict(self.dropped_evictions)
        for (key, _), c in self._counters.items():
            out[key.value] = out.get(key.value, 0) + c.evictions
        return out

    def tracked(self) -> dict[str, int]:
        """Keys currently tracked, per key kind."""
        out: dict[str, int] = {}
        for (key, _), c in self._counters.items():
            out[key.value] = out.get(key.value, 0) + len(c)
        return out
