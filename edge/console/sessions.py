"""Console sessions and the login throttle (sans-IO: every call takes `now`).

Sessions live in the daemon's memory (a restart logs everyone out), capped in number; each holds the
CSRF token the pages send back in `X-CSRF-Token` on every state-changing request. The throttle
counts failed logins per remote address and per user name in a sliding window, so neither a single
guesser nor a spread-out one can try more than `max_failures` secrets per window for one account.
"""

from __future__ import annotations

import collections
import secrets

import msgspec

from edge.console.access import Principal


class Session(msgspec.Struct):
    id: str
    csrf: str
    principal: Principal
    created_at: float
    expires_at: float
    last_seen: float
    secret_hash: str = ""  # the user's hash at login: a changed password ends the session


class SessionTable:
    def __init__(self, ttl: float = 12 * 3600.0, idle: float = 3600.0, max_sessions: int = 10_000) -> None:
        self.ttl = ttl
        self.idle = idle
        self.max_sessions = max_sessions
        self._sessions: collections.OrderedDict[str, Session] = collections.OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def create(self, principal: Principal, now: float, secret_hash: str = "") -> Session:
        self.expire(now)
        while len(self._sessions) >= self.max_sessions:
            self._sessions.popitem(last=False)  # the least recently used session goes first
        s = Session(id=secrets.token_urlsafe(32), csrf=secrets.token_urlsafe(32), principal=principal,
                    created_at=now, expires_at=now + self.ttl, last_seen=now, secret_hash=secret_hash)
        self._sessions[s.id] = s
        return s

    def get(self, session_id: str, now: float) -> Session | None:
        s = self._sessions.get(session_id)
        if s is None:
            return None
        if now >= s.expires_at or now - s.last_seen >= self.idle:
            del self._sessions[session_id]
            return None
        s.last_seen = now
        self._sessions.move_to_end(session_id)
        return s

    def end(self, session_id: str) -> bool:
        return self._sessions.pop(session_id, None) is not None

    def end_user(self, name: str) -> int:
        """Log a removed (or re-keyed) user out everywhere."""
        gone = [k for k, s in self._sessions.items() if s.principal.name == name]
        for k in gone:
            del self._sessions[k]
        return len(gone)

    def expire(self, now: float) -> None:
        gone = [k for k, s in self._sessions.items() if now >= s.expires_at or now - s.last_seen >= self.idle]
        for k in gone:
            del self._sessions[k]


class LoginThrottle:
    """At most `max_failures` failed logins per key (remote address, user name) per `window` seconds."""

    def __init__(self, max_failures: int = 5, window: float = 300.0, max_keys: int = 10_000) -> None:
        self.max_failures = max_failures
        self.window = window
        self.max_keys = max_keys
        self._failures: collections.OrderedDict[str, collections.deque[float]] = collections.OrderedDict()
        self.refused = 0

    def _recent(self, key: str, now: float) -> collections.deque[float] | None:
        q = self._failures.get(key)
        if q is None:
            return None
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._failures[key]
            return None
        return q

    def retry_after(self, keys: list[str], now: float) -> float:
        """Seconds until a login for these keys may be tried again; 0 when it may be tried now."""
        wait = 0.0
        for key in keys:
            q = self._recent(key, now)
            if q is not None and len(q) >= self.max_failures:
                wait = max(wait, q[0] + self.window - now)
        if wait:
            self.refused += 1
        return wait

    def failed(self, keys: list[str], now: float) -> None:
        for key in keys:
            q = self._recent(key, now)
            if q is None:
                while len(self._failures) >= self.max_keys:
                    self._failures.popitem(last=False)
                q = self._failures[key] = collections.deque(maxlen=self.max_failures)
            q.append(now)
            self._failures.move_to_end(key)

    def succeeded(self, keys: list[str]) -> None:
        for key in keys:
            self._failures.pop(key, None)
