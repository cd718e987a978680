"""Sliding-window event rates per key, memory-bounded (the Kamailio pike / Cloudflare approach).

Why two weighted fixed buckets rather than an exact ring of timestamps: a ring costs memory
proportional to the limit for every tracked key and O(limit) to expire, while a flood of random
caller IDs is exactly the case where memory matters. Two buckets cost three numbers per key and O(1)
per event; the estimate `prev * (1 - elapsed/window) + current` assumes events in the previous window
were evenly spread, which over- or under-counts by at most the previous bucket's share - good
enough for a spam signal, and it never forgets a burst that is still inside the window.

Each counter keeps at most `max_keys` keys; the least recently seen key is evicted first (an
OrderedDict gives O(1) move-to-end and pop-oldest), and evictions are counted.

Several nodes (DESIGN §6): a `SharedRates` attached to the RateBook adds what the other nodes counted.
The SIP core stays synchronous, so no network round trip sits in front of a decision: hits are
recorded locally and queued; an adapter (edge.store.redis) sends the queue in one batch every few
milliseconds and feeds back each key's fixed-bucket counts over all nodes; the count a limit sees is
max(local, shared), with shared = all nodes' buckets as of the last batch plus this node's unsent
hits. `FixedBuckets` is the reference of the shared bucket semantics (the Redis Lua script does the
same), so the backends can be tested against one another.
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

    __slots__ = ("max_keys", "max_counters", "_counters", "dropped_evictions", "shared")

    def __init__(self, max_keys: int, max_counters: int = 64, shared: SharedRates | None = None) -> None:
        self.max_keys = max_keys
        self.max_counters = max_counters
        self._counters: OrderedDict[tuple[RateKey, float], SlidingWindowCounter] = OrderedDict()
        self.dropped_evictions: dict[str, int] = {}
        self.shared = shared  # set when several nodes share rates (edge.daemon.shared_state)

    def hit(self, kind: RateKey, window: float, key: str, now: float) -> float:
        """Count one event and return the estimate a limit compares against (all nodes when shared)."""
        local = self.counter(kind, window).hit(key, now)
        shared = self.shared
        if shared is None:
            return local
        shared.record(kind.value, key, window, now)
        return shared.estimate(kind.value, key, window, now, local)

    def peek(self, kind: RateKey, window: float, key: str, now: float) -> float:
        """The estimate `hit` would return for one more event, counting nothing (for `sip-edge explain`)."""
        c = self._counters.get((kind, window))
        local = (c.peek(key, now) if c is not None else 0.0) + 1.0
        shared = self.shared
        return local if shared is None else shared.estimate(kind.value, key, window, now, local)

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


def bucket_estimate(idx: int, prev: int, cur: int, window: float, now: float) -> float:
    """The two-bucket estimate at `now` from bucket `idx` counts (same formula as SlidingWindowCounter)."""
    now_idx = int(now // window)
    if now_idx == idx + 1:
        prev, cur = cur, 0
    elif now_idx != idx:
        return 0.0 if now_idx > idx else float(cur)
    weight = 1.0 - (now - now_idx * window) / window
    return prev * (weight if weight > 0.0 else 0.0) + cur


class RateHit(msgspec.Struct, frozen=True, array_like=True):
    """`count` events for one key in fixed bucket `idx` (= int(time // window)) of a window."""

    kind: str
    key: str
    window: float
    idx: int
    count: int


class BucketCounts(msgspec.Struct, frozen=True, array_like=True):
    """Counts over all nodes of a hit's bucket and the one before it, right after the hit was added."""

    prev: int
    cur: int


class FixedBuckets:
    """Reference shared counter: INCR the hit's bucket, read it and the previous one (what the Lua
    script in edge.store.redis does atomically). Buckets older than two windows are dropped, as the
    Redis keys expire; the bucket table is capped (oldest bucket evicted first)."""

    def __init__(self, max_buckets: int = 200_000) -> None:
        self.max_buckets = max_buckets
        self.evictions = 0
        self._buckets: OrderedDict[tuple[str, float, str, int], int] = OrderedDict()

    def add(self, hits: list[RateHit]) -> list[BucketCounts]:
        out: list[BucketCounts] = []
        buckets = self._buckets
        for h in hits:
            slot = (h.kind, h.window, h.key, h.idx)
            n = buckets.get(slot)
            if n is None:
                while len(buckets) >= self.max_buckets:
                    buckets.popitem(last=False)
                    self.evictions += 1
                n = 0
            buckets[slot] = n + h.count
            out.append(BucketCounts(buckets.get((h.kind, h.window, h.key, h.idx - 1), 0), n + h.count))
        return out

    def expire(self, now: float) -> int:
        """Drop buckets older than two windows (the Redis TTL); returns how many."""
        old = [s for s in self._buckets if int(now // s[1]) - s[3] >= 2]
        for s in old:
            del self._buckets[s]
        return len(old)


class SharedRates:
    """Sans-IO bridge between a RateBook and shared counters: queues this node's hits, keeps the last
    known all-node bucket counts per key (bounded, least recently used evicted).

    `available` is set by the adapter while the shared counters answer. While they do not:
    fail open (`fail_closed=False`) counts locally only; fail closed assumes the caller is spread
    evenly over `nodes` nodes and scales the local estimate by that, so each node enforces its share
    of every limit until the shared counts are back.
    """

    def __init__(self, max_keys: int = 100_000, max_pending: int = 50_000, *, fail_closed: bool = False,
                 nodes: int = 1) -> None:
        if max_keys < 1 or max_pending < 1 or nodes < 1:
            raise ValueError("max_keys, max_pending and nodes must be positive")
        self.max_keys = max_keys
        self.max_pending = max_pending
        self.fail_closed = fail_closed
        self.nodes = nodes
        self.available = False
        self.evictions = 0  # remote entries evicted by the cap
        self.dropped = 0  # hits not shared because the queue was full
        self._remote: OrderedDict[tuple[str, float, str], tuple[int, int, int]] = OrderedDict()
        self._pending: dict[tuple[str, float, str, int], int] = {}

    def __len__(self) -> int:
        return len(self._remote)

    @property
    def pending(self) -> int:
        return len(self._pending)

    def record(self, kind: str, key: str, window: float, now: float) -> None:
        if not self.available:
            return
        slot = (kind, window, key, int(now // window))
        n = self._pending.get(slot)
        if n is not None:
            self._pending[slot] = n + 1
        elif len(self._pending) < self.max_pending:
            self._pending[slot] = 1
        else:
            self.dropped += 1

    def estimate(self, kind: str, key: str, window: float, now: float, local: float) -> float:
        """The count a limit compares against: max(local, all nodes), or the outage rule."""
        if not self.available:
            return local * self.nodes if self.fail_closed else local
        remote = self._remote.get((kind, window, key))
        now_idx = int(now // window)
        unsent = self._pending.get((kind, window, key, now_idx), 0)
        if remote is None:
            return local
        idx, prev, cur = remote
        if idx == now_idx:
            cur += unsent
        elif idx == now_idx - 1:
            idx, prev, cur = now_idx, cur, unsent
        else:
            return local
        shared = bucket_estimate(idx, prev, cur, window, now)
        return shared if shared > local else local

    def take(self) -> list[RateHit]:
        """Hand the queued hits to the adapter (one batch)."""
        if not self._pending:
            return []
        pending, self._pending = self._pending, {}
        return [RateHit(kind, key, window, idx, n) for (kind, window, key, idx), n in pending.items()]

    def apply(self, hits: list[RateHit], counts: list[BucketCounts]) -> None:
        """Adopt the all-node counts the shared store answered for a batch."""
        remote = self._remote
        for h, c in zip(hits, counts):
            slot = (h.kind, h.window, h.key)
            old = remote.get(slot)
            if old is not None:
                if old[0] > h.idx:
                    continue
                remote.move_to_end(slot)
            else:
                while len(remote) >= self.max_keys:
                    remote.popitem(last=False)
                    self.evictions += 1
            remote[slot] = (h.idx, c.prev, c.cur)

    def restore(self, hits: list[RateHit]) -> None:
        """Put back a batch the shared store did not (durably) take, to be sent again after reconnecting."""
        pending = self._pending
        for h in hits:
            slot = (h.kind, h.window, h.key, h.idx)
            n = pending.get(slot)
            if n is not None:
                pending[slot] = n + h.count
            elif len(pending) < self.max_pending:
                pending[slot] = h.count
            else:
                self.dropped += h.count

    def set_available(self, up: bool) -> None:
        """The adapter lost or regained the shared counters; stale remote counts are dropped either way.

        Hits queued while the counters were up stay queued (bounded by `max_pending`) and go out after the
        reconnect, so a failover loses none of them; hits made during the outage count locally only."""
        self.available = up
        self._remote.clear()
