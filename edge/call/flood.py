"""Flood guard before parsing cost: per-source request density, a temporary ban list and scanner drops.

DESIGN §3.5 "no state for strangers": this runs on the raw bytes of every datagram (or framed stream
message) from a source that is not a configured carrier or PBX, before the SIP parser or any
transaction exists. It answers nothing - a dropped message gets no response, so a scanner learns
nothing and a flood costs one dict lookup per message.

Density is Kamailio pike's two-bucket estimate: per source IP, the count of the current window plus
the previous window's count weighted by the part of it still inside a sliding window,

    estimate = previous * (1 - elapsed / window) + current

and a source whose estimate exceeds `rate` (e.g. "30/2s") is banned for `ban`. Scanners are found
by a substring of the User-Agent header or the From header (display name or URI) on the raw bytes,
matched case-insensitively against `scanner_user_agents`; they are dropped and banned at once.

The default scanner list names tools that only attackers run (sources: the SIPVicious suite's
defaults 'friendly-scanner' / From "sipvicious", and the User-Agents seen in SIP honeypot reports:
sipcli, sip-scan/sipscan, iWar, sundayddr, VaxSIPUserAgent, pplsip, SiVuS, SIP Army Knife).
Names a real device or a legitimate test tool also sends (sipsak, sipp, Asterisk, Cisco,
PortSIP SDKs) are deliberately absent: carriers and PBXs are exempt anyway, but a false positive on
an unknown real caller would silently lose calls.

Methods an edge does not serve (REGISTER, SUBSCRIBE, PUBLISH) are answered 405 by the proxy core;
`drop_methods` can instead drop them here without an answer (a REGISTER flood then costs nothing).

Aggregate stranger load (issue 13): a spread-out flood - hundreds of sources, each under `rate` -
still costs a full parse and a 403 per message. All non-exempt sources together share one budget,
`strangers_rate`; while it is exceeded, or while the adapter reports the edge busy (socket backlog,
loop lag), strangers' messages are dropped unparsed and unanswered (`[acl] unknown_source` behaves as
"drop") and every stranger is held to the much lower `busy_rate`, so the sources of a spread-out
flood are banned within a few messages each. Carriers and PBXs are never in this budget.

Every table is bounded: sources (LRU, `max_sources`), bans (oldest first, `max_bans`), the
exempt-network memo, and the queue of ban events the adapter logs.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from collections.abc import Callable

import msgspec

from edge.units import parse_duration, parse_rate

__all__ = [
    "DEFAULT_SCANNERS",
    "Ban",
    "FloodConfig",
    "FloodGuard",
    "FloodStats",
    "SourceBanned",
    "Verdict",
    "scanner_pattern",
    "validate_flood",
]

DEFAULT_SCANNERS: tuple[str, ...] = (
    "friendly-scanner",  # SIPVicious svmap/svwar/svcrack default User-Agent
    "sipvicious",  # SIPVicious default From display name
    "sipcli",
    "sip-scan",
    "sipscan",
    "iwar",
    "sundayddr",
    "vaxsipuseragent",
    "pplsip",
    "sivus",
    "siparmyknife",
)

#: SIP methods; a message starting with none of these (plus SIP/2.0) is left for the parser to reject.
_SIP_TOKEN = re.compile(rb"[A-Za-z]{2,16}")


class FloodConfig(msgspec.Struct, forbid_unknown_fields=True):
    """`[flood]` in config/edge.toml."""

    enabled: bool = True
    rate: str = "30/2s"  # messages per source IP over a sliding window; more bans the source
    ban: str = "300s"  # how long a banned source stays dropped
    max_sources: int = 100_000  # sources tracked for density (least recently seen evicted)
    max_bans: int = 100_000  # active bans (the oldest evicted beyond this)
    ban_scanners: bool = True  # a scanner User-Agent / From bans its source (else: only that message dropped)
    scanner_user_agents: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_SCANNERS))
    extra_scanner_user_agents: list[str] = []  # added to the list above (keeps the defaults)
    drop_methods: list[str] = []  # e.g. ["REGISTER"]: dropped unanswered instead of the core's 405
    exempt_sources: list[str] = []  # CIDRs or addresses never counted, banned or scanned (carriers/PBXs already are)
    strangers_rate: str = "200/1s"  # all unknown sources together; beyond it strangers are dropped unparsed
    busy_rate: str = "4/2s"  # per-source limit while strangers are over budget or the edge is busy


class Verdict(enum.Enum):
    ADMIT = "admit"
    DROP_BANNED = "drop_banned"
    DROP_FLOOD = "drop_flood"
    DROP_SCANNER = "drop_scanner"
    DROP_METHOD = "drop_method"
    DROP_LOAD = "drop_load"  # a stranger while the stranger budget is spent or the edge is busy


class Ban(msgspec.Struct, frozen=True):
    ip: str
    until: float
    reason: str  # 'flood' | 'scanner'
    since: float


class SourceBanned(msgspec.Struct, frozen=True):
    """A source was put on the ban list; the adapter logs it (`source_banned`)."""

    ip: str
    port: int
    reason: str
    until: float
    detail: str  # the estimate that tripped, or the scanner name matched


class FloodStats:
    """Plain counters; the daemon exports them as edge_flood_* metrics."""

    __slots__ = (
        "admitted",
        "exempt",
        "dropped_banned",
        "dropped_flood",
        "dropped_scanner",
        "dropped_method",
        "dropped_load",
        "bans",
        "bans_evicted",
        "sources_evicted",
        "events_dropped",
    )

    def __init__(self) -> None:
        for s in self.__slots__:
            setattr(self, s, 0)

    def as_dict(self) -> dict[str, int]:
        return {s: getattr(self, s) for s in self.__slots__}


def scanner_pattern(names: list[str] | tuple[str, ...]) -> re.Pattern[bytes] | None:
    """One regex over the header lines that matter: User-Agent and From (long or compact form)."""
    alts = b"|".join(re.escape(n.strip().lower().encode()) for n in names if n.strip())
    if not alts:
        return None
    return re.compile(rb"^(?:user-agent|from|f)[ \t]*:[^\r\n]*?(" + alts + rb")", re.IGNORECASE | re.MULTILINE)


def validate_flood(cfg: FloodConfig, prefix: str = "$.flood") -> list[tuple[str, str]]:
    """(json-path, reason) for every invalid setting."""
    errors: list[tuple[str, str]] = []
    try:
        count, _ = parse_rate(cfg.rate)
        if count < 1:
            errors.append((f"{prefix}.rate", "count must be at least 1"))
    except ValueError as exc:
        errors.append((f"{prefix}.rate", str(exc)))
    for name in ("strangers_rate", "busy_rate"):
        try:
            count, _ = parse_rate(getattr(cfg, name))
            if count < 1:
                errors.append((f"{prefix}.{name}", "count must be at least 1"))
        except ValueError as exc:
            errors.append((f"{prefix}.{name}", str(exc)))
    try:
        if parse_duration(cfg.ban) <= 0:
            errors.append((f"{prefix}.ban", "must be greater than 0s"))
    except ValueError as exc:
        errors.append((f"{prefix}.ban", str(exc)))
    for name in ("max_sources", "max_bans"):
        if getattr(cfg, name) < 1:
            errors.append((f"{prefix}.{name}", "must be at least 1"))
    for field in ("scanner_user_agents", "extra_scanner_user_agents"):
        for i, ua in enumerate(getattr(cfg, field)):
            if not ua.strip():
                errors.append((f"{prefix}.{field}[{i}]", "must not be empty"))
            elif not ua.isascii():
                errors.append((f"{prefix}.{field}[{i}]", f"{ua!r} is not ASCII (SIP header values are matched as bytes)"))
            elif len(ua.strip()) < 4:
                errors.append((f"{prefix}.{field}[{i}]", f"{ua!r} is too short: it would match real User-Agents"))
    for i, m in enumerate(cfg.drop_methods):
        if not (m.isascii() and m.isalpha() and m.isupper()):
            errors.append((f"{prefix}.drop_methods[{i}]", f"{m!r} is not a SIP method name (upper-case letters)"))
        elif m in ("INVITE", "ACK", "BYE", "CANCEL"):
            errors.append((f"{prefix}.drop_methods[{i}]", f"{m} carries calls and cannot be dropped"))
    for i, src in enumerate(cfg.exempt_sources):
        try:
            ipaddress.ip_network(src, strict=False)
        except ValueError as exc:
            errors.append((f"{prefix}.exempt_sources[{i}]", f"invalid network {src!r}: {exc}"))
    return errors


class FloodGuard:
    """`admit(data, ip, port, now)` once per received message; drop it unless the verdict is ADMIT.

    `is_exempt(ip, port)` says whether the source is a configured carrier or PBX (their traffic is
    never counted, banned or scanned). Construct once; `configure()` applies a reloaded config and
    keeps the tables.
    """

    __slots__ = (
        "cfg",
        "is_exempt",
        "stats",
        "events",
        "max_events",
        "_limit",
        "_window",
        "_ban_for",
        "_scanner",
        "_drop_methods",
        "_nets",
        "_net_memo",
        "_sources",
        "_bans",
        "_busy_limit",
        "_strangers_limit",
        "_strangers_window",
        "_strangers",
    )

    def __init__(self, cfg: FloodConfig, is_exempt: Callable[[str, int], bool] | None = None, max_events: int = 1024) -> None:
        self.is_exempt = is_exempt or (lambda ip, port: False)
        self.stats = FloodStats()
        self.events: list[SourceBanned] = []  # drained by the adapter
        self.max_events = max_events
        #: ip -> [window start, previous count, current count]; insertion order is recency (LRU).
        self._sources: dict[str, list[float]] = {}
        #: ip -> Ban; insertion order is ban time (the oldest evicted first).
        self._bans: dict[str, Ban] = {}
        self._net_memo: dict[str, bool] = {}
        #: all strangers together: [window start, previous count, current count]
        self._strangers: list[float] = [0.0, 0.0, 0.0]
        self.configure(cfg)

    def configure(self, cfg: FloodConfig) -> None:
        errors = validate_flood(cfg)
        if errors:
            raise ValueError("; ".join(f"{p}: {r}" for p, r in errors))
        self.cfg = cfg
        self._limit, self._window = parse_rate(cfg.rate)
        self._ban_for = parse_duration(cfg.ban)
        self._strangers_limit, self._strangers_window = parse_rate(cfg.strangers_rate)
        busy_count, busy_window = parse_rate(cfg.busy_rate)
        # The same rate over `rate`'s window, and never above `rate` itself.
        self._busy_limit = min(float(self._limit), busy_count * self._window / busy_window)
        self._scanner = scanner_pattern(list(cfg.scanner_user_agents) + list(cfg.extra_scanner_user_agents))
        self._drop_methods = frozenset(m.encode() for m in cfg.drop_methods)
        self._nets = [ipaddress.ip_network(s, strict=False) for s in cfg.exempt_sources]
        self._net_memo.clear()

    # -- the per-message check -------------------------------------------------------------------
    def admit(self, data: bytes, ip: str, port: int, now: float, busy: bool = False) -> Verdict:
        """`busy`: the adapter sees a backlog (socket queue, loop lag); strangers then cost nothing."""
        if not self.cfg.enabled:
            self.stats.admitted += 1
            return Verdict.ADMIT
        if self.is_exempt(ip, port) or (self._nets and self._in_exempt_net(ip)):
            self.stats.exempt += 1
            return Verdict.ADMIT
        return self.admit_stranger(data, ip, port, now, busy)

    def admit_stranger(self, data: bytes, ip: str, port: int, now: float, busy: bool = False) -> Verdict:
        """`admit` for a source the caller already classified as neither carrier nor PBX."""
        stats = self.stats
        if not self.cfg.enabled:
            stats.admitted += 1
            return Verdict.ADMIT
        if self._nets and self._in_exempt_net(ip):
            stats.exempt += 1
            return Verdict.ADMIT
        ban = self._bans.get(ip)
        if ban is not None:
            if ban.until > now:
                stats.dropped_banned += 1
                return Verdict.DROP_BANNED
            del self._bans[ip]
        if self._strangers_over(now) or busy:
            # Over budget: no scanner search, no parse, no answer; a low per-source limit bans fast.
            verdict = self._count(ip, port, now, Verdict.DROP_LOAD, self._busy_limit)
            if verdict is Verdict.DROP_LOAD:
                stats.dropped_load += 1
            return verdict
        if self._scanner is not None:
            head_end = data.find(b"\r\n\r\n")
            m = self._scanner.search(data if head_end < 0 else data[:head_end])
            if m is not None:
                stats.dropped_scanner += 1
                if self.cfg.ban_scanners:
                    self._ban(ip, port, "scanner", now, m.group(1).decode("ascii", "replace").lower())
                return Verdict.DROP_SCANNER
        if self._drop_methods:
            token = _SIP_TOKEN.match(data)
            if token is not None and token.group(0) in self._drop_methods and data[token.end():token.end() + 1] == b" ":
                stats.dropped_method += 1
                return self._count(ip, port, now, Verdict.DROP_METHOD, self._limit)
        return self._count(ip, port, now, Verdict.ADMIT, self._limit)

    def _strangers_over(self, now: float) -> bool:
        """Count one stranger message in the shared budget; True while the budget is exceeded."""
        st = self._strangers
        window = self._strangers_window
        elapsed = now - st[0]
        if elapsed >= window:
            steps = int(elapsed // window)
            st[1] = st[2] if steps == 1 else 0.0
            st[2] = 0.0
            st[0] += steps * window
        st[2] += 1
        return st[1] * (1.0 - (now - st[0]) / window) + st[2] > self._strangers_limit

    def strangers_over_budget(self, now: float) -> bool:
        """Whether the shared stranger budget is spent right now (read-only; for logs and health)."""
        st = self._strangers
        window = self._strangers_window
        elapsed = now - st[0]
        if elapsed >= 2 * window:
            return False
        if elapsed >= window:
            return st[2] * (1.0 - (elapsed - window) / window) > self._strangers_limit
        return st[1] * (1.0 - elapsed / window) + st[2] > self._strangers_limit

    def _count(self, ip: str, port: int, now: float, verdict: Verdict, limit: float) -> Verdict:
        """Add one message to the source's density; a source over the limit is banned (DROP_FLOOD)."""
        sources = self._sources
        st = sources.pop(ip, None)
        window = self._window
        if st is None:
            if len(sources) >= self.cfg.max_sources:
                del sources[next(iter(sources))]
                self.stats.sources_evicted += 1
            st = [now, 0.0, 0.0]
        else:
            elapsed = now - st[0]
            if elapsed >= window:
                # Roll the window: one step keeps the count as "previous", two or more forget it.
                steps = int(elapsed // window)
                st[1] = st[2] if steps == 1 else 0.0
                st[2] = 0.0
                st[0] += steps * window
        st[2] += 1
        weight = 1.0 - (now - st[0]) / window
        estimate = st[1] * weight + st[2]
        if estimate > limit:
            self.stats.dropped_flood += 1
            rate = self.cfg.rate if limit == self._limit else f"{self.cfg.busy_rate} under load"
            self._ban(ip, port, "flood", now, f"{estimate:.1f}/{rate}")
            return Verdict.DROP_FLOOD
        sources[ip] = st
        if verdict is Verdict.ADMIT:
            self.stats.admitted += 1
        return verdict

    def _in_exempt_net(self, ip: str) -> bool:
        memo = self._net_memo
        hit = memo.get(ip)
        if hit is None:
            try:
                addr = ipaddress.ip_address(ip)
                hit = any(addr.version == n.version and addr in n for n in self._nets)
            except ValueError:
                hit = False
            if len(memo) >= self.cfg.max_sources:
                del memo[next(iter(memo))]
            memo[ip] = hit
        return hit

    def _ban(self, ip: str, port: int, reason: str, now: float, detail: str) -> None:
        bans = self._bans
        bans.pop(ip, None)
        if len(bans) >= self.cfg.max_bans:
            del bans[next(iter(bans))]
            self.stats.bans_evicted += 1
        until = now + self._ban_for
        bans[ip] = Ban(ip, until, reason, now)
        self._sources.pop(ip, None)  # a banned source needs no density state
        self.stats.bans += 1
        if len(self.events) < self.max_events:
            self.events.append(SourceBanned(ip, port, reason, until, detail))
        else:
            self.stats.events_dropped += 1

    # -- operator views --------------------------------------------------------------------------
    def banned(self, now: float) -> list[Ban]:
        """Active bans, oldest first (expired ones are purged on the way)."""
        self.expire(now)
        return list(self._bans.values())

    def is_banned(self, ip: str, now: float) -> bool:
        ban = self._bans.get(ip)
        return ban is not None and ban.until > now

    def unban(self, ip: str) -> bool:
        return self._bans.pop(ip, None) is not None

    def expire(self, now: float) -> int:
        """Drop expired bans (housekeeping; admit() also drops them lazily). Returns how many."""
        gone = [ip for ip, b in self._bans.items() if b.until <= now]
        for ip in gone:
            del self._bans[ip]
        return len(gone)

    def take_events(self) -> list[SourceBanned]:
        events, self.events = self.events, []
        return events

    @property
    def sources(self) -> int:
        return len(self._sources)

    @property
    def active_bans(self) -> int:
        return len(self._bans)
