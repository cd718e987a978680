"""Replay detection for PASSporTs (RFC 8224 §12.1, RFC 8588 §4): a signature is bound to one call.

The same signature seen again with a different Call-ID while it is still fresh is a replay; the same Call-ID
is a retransmission or a forked INVITE and is fine. Entries live until the token could no longer pass the
freshness check anyway (iat + max_age), so the table is bounded by call rate x window, and hard-capped.
"""

from __future__ import annotations

import collections

import msgspec


class _Seen(msgspec.Struct):
    call_id: str
    expires_at: float


class ReplayGuard:
    """Bounded map signature -> (Call-ID, expiry); oldest entries evicted first when full."""

    def __init__(self, max_entries: int, max_age: float) -> None:
        self.max_entries = max(1, max_entries)
        self.max_age = max_age
        self._seen: collections.OrderedDict[str, _Seen] = collections.OrderedDict()
        self.evicted_live = 0  # entries dropped before expiry: replay detection weakened under this load

    def __len__(self) -> int:
        return len(self._seen)

    def _expire(self, now: float) -> None:
        # Insertion order approximates expiry order (fresh tokens only are recorded); stop at the first live one.
        while self._seen:
            first = next(iter(self._seen.values()))
            if first.expires_at >= now:
                break
            self._seen.popitem(last=False)

    def is_replay(self, signature: str, call_id: str, now: float) -> bool:
        self._expire(now)
        seen = self._seen.get(signature)
        return seen is not None and seen.expires_at >= now and seen.call_id != call_id

    def record(self, signature: str, call_id: str, iat: float, now: float) -> None:
        """Remember a verified signature; the first Call-ID to present it owns it."""
        self._expire(now)
        if signature in self._seen:
            return
        self._seen[signature] = _Seen(call_id=call_id, expires_at=iat + self.max_age)
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)
            self.evicted_live += 1
