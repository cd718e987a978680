"""Overload control before parsing: past capacity, new INVITEs get `503` + `Retry-After`, nothing else does.

Issue 12 goal 3 (no congestion collapse). A proxy that accepts every INVITE past its capacity makes
every call late: the carrier retransmits, the PBX retransmits, transactions time out and goodput
falls to a few percent. Refusing the excess early and cheaply keeps the admitted calls on time.

The adapter measures the backlog and reports it with `observe(now, ...)`:

- `loop_lag`: how late the event loop ran a timer (everything the process does is behind); only
  `LAG_RUN` late measures in a row count, so a one-off stall (a first import, a GC pass) sheds nothing;
- `pending`: server transactions still awaiting a final answer (calls the edge is working on);
- `peer_backlog`: datagrams from carriers and PBXs read since the UDP socket was last found empty
  (the adapter reads in batches; consecutive full batches add up).

Any of them above its threshold starts shedding a share of new INVITEs: a quarter, and a quarter more
every 50 ms while a measure stays over (all of them after 0.2 s); once every measure is under its
threshold the share fades to nothing over `hold`. The edge so settles near the share its capacity
allows instead of swinging between shedding everything and admitting everything (loss-based overload
control, as RFC 7339 signals it). `shed(data)` answers a new INVITE it picks (method INVITE, no To
tag: a cheap look at the raw bytes, no parse) with a 503 built from its own Via, From, To, Call-ID
and CSeq lines. Responses, ACK, BYE, CANCEL, re-INVITEs (To tag) and OPTIONS pass on to the
core, and so do retransmissions of INVITEs admitted before shedding started (`admitted()` remembers
their Call-IDs for one transaction lifetime), so an established or ringing call is never the one shed.
The ACK for a shed INVITE carries the edge's own To tag and is dropped here (`is_shed_ack`).
"""

from __future__ import annotations

import hashlib

import msgspec

from edge.units import parse_duration

__all__ = ["OverloadConfig", "OverloadControl", "SheddingChanged", "validate_overload"]

#: Consecutive loop-lag measures over the threshold that start shedding.
LAG_RUN = 3
#: The shed share rises by RAISE every STEP seconds while a measure is over its threshold.
STEP = 0.05
RAISE = 0.25

#: Prefix of the To tag on 503s from here: the ACK for one is recognised without parsing.
SHED_TAG = b"ovl"

_KEEP = {
    b"via": b"Via", b"v": b"Via",
    b"from": b"From", b"f": b"From",
    b"to": b"To", b"t": b"To",
    b"call-id": b"Call-ID", b"i": b"Call-ID",
    b"cseq": b"CSeq",
}


class OverloadConfig(msgspec.Struct, forbid_unknown_fields=True):
    """`[overload]` in config/edge.toml."""

    enabled: bool = True
    loop_lag: str = "300ms"  # the event loop this late starts shedding
    pending_transactions: int = 20_000  # requests awaiting a final answer, ringing INVITEs included
    peer_backlog: int = 1000  # carrier/PBX datagrams read since the UDP socket was last empty
    hold: str = "2s"  # once every measure is under its threshold, the shed share fades from all to none over this
    retry_after: int = 5  # seconds, in the 503's Retry-After
    remember: int = 100_000  # Call-IDs of admitted INVITEs kept (their retransmissions are never shed)


class SheddingChanged(msgspec.Struct, frozen=True):
    """Shedding started (`on`) or stopped; the adapter logs it (`overload_shedding_started/stopped`)."""

    on: bool
    at: float
    reason: str  # the measure that tripped ('loop_lag', 'pending', 'peer_backlog') or '' when stopping
    value: float
    shed: int  # INVITEs shed in the episode that ended (0 when starting)


def validate_overload(cfg: OverloadConfig, prefix: str = "$.overload") -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    for name in ("loop_lag", "hold"):
        try:
            if parse_duration(getattr(cfg, name)) <= 0:
                errors.append((f"{prefix}.{name}", "must be greater than 0s"))
        except ValueError as exc:
            errors.append((f"{prefix}.{name}", str(exc)))
    for name in ("pending_transactions", "peer_backlog", "remember"):
        if getattr(cfg, name) < 1:
            errors.append((f"{prefix}.{name}", "must be at least 1"))
    if not 1 <= cfg.retry_after <= 3600:
        errors.append((f"{prefix}.retry_after", "must be between 1 and 3600 seconds"))
    return errors


class OverloadStats:
    __slots__ = ("shed_invites", "shed_acks", "episodes", "passed_retransmissions")

    def __init__(self) -> None:
        for s in self.__slots__:
            setattr(self, s, 0)

    def as_dict(self) -> dict[str, int]:
        return {s: getattr(self, s) for s in self.__slots__}


class OverloadControl:
    """Sans-IO: the adapter reports measures and asks `shed(data, now)` for each message of a known peer."""

    __slots__ = ("cfg", "stats", "events", "shedding", "loss", "_lag", "_hold", "_stepped", "_admitted", "_retry",
                 "_shed_at_start", "_last", "_lag_run", "_acc")

    def __init__(self, cfg: OverloadConfig) -> None:
        self.stats = OverloadStats()
        self.events: list[SheddingChanged] = []  # drained by the adapter (bounded: two per episode)
        self.shedding = False
        self.loss = 0.0  # share of new INVITEs shed while shedding (0 < loss <= 1)
        self._stepped = 0.0  # when `loss` last changed
        self._acc = 0.0  # spreads the shed share evenly over arriving INVITEs
        self._shed_at_start = 0
        self._last = (0.0, 0.0, 0.0)  # loop lag, pending, peer backlog as last reported
        self._lag_run = 0  # consecutive loop-lag reports over the threshold
        self._admitted: dict[bytes, float] = {}  # Call-ID -> when admitted; insertion order is age
        self.configure(cfg)

    def configure(self, cfg: OverloadConfig) -> None:
        errors = validate_overload(cfg)
        if errors:
            raise ValueError("; ".join(f"{p}: {r}" for p, r in errors))
        self.cfg = cfg
        self._lag = parse_duration(cfg.loop_lag)
        self._hold = parse_duration(cfg.hold)
        self._retry = str(cfg.retry_after).encode()
        if not cfg.enabled and self.shedding:
            self._stop(0.0)

    # -- measures ---------------------------------------------------------------------------------
    def observe(self, now: float, loop_lag: float | None = None, pending: int | None = None,
                peer_backlog: int | None = None) -> None:
        """Report the measures the caller has (None: unchanged since the last report)."""
        if not self.cfg.enabled:
            return
        cfg = self.cfg
        if loop_lag is None:
            loop_lag = self._last[0]
        else:
            self._lag_run = self._lag_run + 1 if loop_lag > self._lag else 0
        if pending is None:
            pending = int(self._last[1])
        if peer_backlog is None:
            peer_backlog = int(self._last[2])
        self._last = (loop_lag, float(pending), float(peer_backlog))
        trip = ""
        value = 0.0
        if self._lag_run >= LAG_RUN:
            trip, value = "loop_lag", loop_lag
        elif pending > cfg.pending_transactions:
            trip, value = "pending", float(pending)
        elif peer_backlog > cfg.peer_backlog:
            trip, value = "peer_backlog", float(peer_backlog)
        if trip:
            if not self.shedding:
                self.shedding = True
                self.loss = RAISE
                self._stepped = now
                self.stats.episodes += 1
                self._shed_at_start = self.stats.shed_invites
                self._push(SheddingChanged(True, now, trip, value, 0))
            elif now - self._stepped >= STEP - 1e-9:
                self._stepped = now
                self.loss = min(1.0, self.loss + RAISE)
        elif self.shedding and now - self._stepped >= STEP - 1e-9:
            # Under every threshold: the share shed fades to nothing over `hold`.
            self.loss -= (now - self._stepped) / self._hold
            self._stepped = now
            if self.loss <= 0.0:
                self._stop(now)

    def _stop(self, now: float) -> None:
        self.shedding = False
        self.loss = 0.0
        self._push(SheddingChanged(False, now, "", 0.0, self.stats.shed_invites - self._shed_at_start))

    def _push(self, ev: SheddingChanged) -> None:
        if len(self.events) < 64:
            self.events.append(ev)

    def take_events(self) -> list[SheddingChanged]:
        events, self.events = self.events, []
        return events

    # -- per message (known peers only) ----------------------------------------------------------
    def admitted(self, data: bytes, now: float) -> None:
        """A new INVITE went to the core: its retransmissions must reach the core too, even once shedding."""
        if not data.startswith(b"INVITE "):
            return
        call_id = _header(_head(data), b"call-id", b"i")
        if call_id is None:
            return
        memo = self._admitted
        if call_id in memo:
            return
        if len(memo) >= self.cfg.remember:
            del memo[next(iter(memo))]
        memo[call_id] = now
        # Forget what is older than an INVITE transaction lives (64*T1 with T1 = 500 ms), oldest first.
        while memo:
            first = next(iter(memo))
            if now - memo[first] <= 32.0:
                break
            del memo[first]

    def shed(self, data: bytes) -> bytes | None:
        """The 503 to send instead of passing `data` on, or None to pass it on."""
        if not self.shedding or not data.startswith(b"INVITE "):
            return None
        head = _head(data)
        to = _header(head, b"to", b"t")
        call_id = _header(head, b"call-id", b"i")
        if to is None or call_id is None:
            return None  # the core answers 400
        if _has_tag(to):
            return None  # re-INVITE inside a dialog: never shed
        if call_id in self._admitted:
            self.stats.passed_retransmissions += 1
            return None
        self._acc += self.loss
        if self._acc < 1.0:
            return None  # admitted: the share not shed
        self._acc -= 1.0
        out = self._response(head, call_id)
        if out is not None:
            self.stats.shed_invites += 1
        return out

    def is_shed_ack(self, data: bytes) -> bool:
        """The ACK for one of our 503s (hop by hop; nothing to forward)."""
        if not data.startswith(b"ACK "):
            return False
        to = _header(_head(data), b"to", b"t")
        if to is not None and b";tag=" + SHED_TAG in to.replace(b" ", b""):
            self.stats.shed_acks += 1
            return True
        return False

    def _response(self, head: bytes, call_id: bytes) -> bytes | None:
        lines = head.split(b"\r\n")
        out = [b"SIP/2.0 503 Service Unavailable: overloaded"]
        seen = set()
        for line in lines[1:]:
            name, sep, value = line.partition(b":")
            canon = _KEEP.get(name.strip().lower())
            if not sep or canon is None:
                continue
            value = value.strip()
            if canon == b"To":
                value += b";tag=" + SHED_TAG + hashlib.blake2s(call_id, digest_size=5).hexdigest().encode()
            seen.add(canon)
            out.append(canon + b": " + value)
        if len(seen) < 5:
            return None
        out.append(b"Retry-After: " + self._retry)
        out.append(b"Server: sip-edge")
        out.append(b"Content-Length: 0")
        return b"\r\n".join(out) + b"\r\n\r\n"

    @property
    def remembered(self) -> int:
        return len(self._admitted)


def _head(data: bytes) -> bytes:
    end = data.find(b"\r\n\r\n")
    return data if end < 0 else data[:end]


def _header(data: bytes, name: bytes, compact: bytes) -> bytes | None:
    """The first value of a header (long or compact name) in raw bytes, stripped; no unfolding."""
    low = data.lower()
    for key in (b"\r\n" + name + b":", b"\r\n" + name + b" :", b"\r\n" + compact + b":", b"\r\n" + compact + b" :"):
        i = low.find(key)
        if i >= 0:
            start = i + len(key)
            end = data.find(b"\r\n", start)
            return data[start:end if end >= 0 else len(data)].strip()
    return None


def _has_tag(to: bytes) -> bool:
    """A tag parameter after the URI (a ';tag=' inside <...> belongs to the URI)."""
    rest = to.rpartition(b">")[2] if b">" in to else to
    return b";tag=" in rest.lower().replace(b" ", b"")
