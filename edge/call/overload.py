"""Overload control before parsing: past capacity, new INVITEs over an admitted rate get `503` + `Retry-After`.

Issue 12 goal 3 (no congestion collapse). A proxy that accepts every INVITE past its capacity makes
every call late: the carrier retransmits, the PBX retransmits, transactions time out and goodput
falls to a few percent. Refusing the excess early and cheaply keeps the admitted calls on time.

The adapter reports measures with `observe(now, ...)`:

- `loop_lag`: how late the event loop ran a timer (everything the process does is behind);
- `queue_delay`: how long the oldest datagram of a UDP read had waited in the socket (its kernel
  receive time against `now`): the delay every message sees before the core even starts on it;
- `pending`: server transactions still awaiting a final answer (calls the edge is working on);
- `peer_backlog`: datagrams from carriers and PBXs read since the UDP socket was last found empty.

An episode of shedding starts when a measure crosses its threshold (`loop_lag` for both delays, the
loop's only after `LAG_RUN` late ticks in a row, so a one-off stall sheds nothing). From then on new
INVITEs pass a token bucket at an admitted rate (rate-based overload control, RFC 7415 style): it
starts at half the rate the core was taking new INVITEs since the load arrived (the best average over
the last 0.3 s or more of the last second, so a quiet spell before a sudden load does not dilute it),
then every `STEP` it is steered by delay, well below the threshold. Over `target_delay` (the smallest
queue delay of the step, so a burst alone does not count, or the loop's lag), or pending over its
threshold (the backlog too, but only when the adapter reports no queue delays: a backlog of full
batches read with no delay is a burst, not a queue), it becomes the rate the core actually took (a
core that got less CPU takes fewer) cut by target/delay, between a tenth and a fifth (at most once per
`DECREASE_GAP`, and not while the queue is still draining from the last cut: the calls admitted before
it still bring their answers, ACKs and BYEs). Under it, while the bucket is what turns INVITEs away:
with an empty queue it climbs by a quarter a step back to `sustained_rate` (what the core took with an
empty queue over the last 0.3-1 s before, decaying slowly, and lowered to the rate in force by a cut
on delay), so a backlog trip with no queue behind it costs a few steps; past that it grows 4 % a
step, 1 % while there is a queue or within a fifth above the rate at which the core last fell behind
(the queue shows late there, so faster probing overshoots).
A small standing queue keeps the core busy through the dips, so the edge settles at its capacity
instead of swinging between all and nothing.
The episode ends when no INVITE was shed for `hold` and no measure is over its target. `max_rate`
(optional) caps the admitted rate at all times, an operator's statement of capacity.

`shed(data, now)` answers a new INVITE over the rate (method INVITE, no To tag: a cheap look at the
raw bytes, no parse) with a 503 built from its own Via, From, To, Call-ID and CSeq lines. Responses,
ACK, BYE, CANCEL, re-INVITEs (To tag) and OPTIONS pass on to the core, and so do retransmissions of
INVITEs admitted earlier (`admitted()` remembers their Call-IDs for one transaction lifetime), so an
established or ringing call is never the one shed. The ACK for a shed INVITE carries the edge's own
To tag and is dropped here (`is_shed_ack`). A carrier that asks for RFC 7339 overload control (`oc` in
its Via) gets the share shed over the last second as the loss value in the 503's top Via.
"""

from __future__ import annotations

import hashlib
import math

import msgspec

from edge.units import parse_duration

__all__ = ["OverloadConfig", "OverloadControl", "SheddingChanged", "validate_overload"]

#: Consecutive loop-lag measures over the threshold that start shedding.
LAG_RUN = 3
#: Control interval: the admitted rate is adjusted at most once per STEP seconds.
STEP = 0.05
#: An episode starts at this share of the rate the core took new INVITEs over the last second (what it
#: read while the socket filled up, more than it can finish once the rest of those calls arrives).
START = 0.5
#: Over the target, at most once per DECREASE_GAP seconds and not while the delay is falling (under
#: DRAINING x the delay at the last cut), the admitted rate becomes the rate the core took times
#: target/delay, kept between DEEPEST and DECREASE.
DECREASE = 0.9
DEEPEST = 0.8
DECREASE_GAP = 0.2
DRAINING = 0.9
#: Under the target while the rate is what sheds, it grows by INCREASE of itself per STEP (at least 1/s),
#: by INCREASE_EMPTY while the delay is under half the target (the queue is empty: the core has room;
#: but see RECOVER and NEAR).
INCREASE = 0.01
INCREASE_EMPTY = 0.04
#: Under the rate the core was last seen to sustain with an empty queue (`sustained`), an empty queue and
#: the rate shedding, the rate grows by RECOVER of itself per STEP, up to that rate: back within ~0.3 s.
RECOVER = 0.25
#: From the rate the core took when it last fell behind (a delay over the target cut the rate) up to NEAR
#: times it, the rate probes by INCREASE even with an empty queue: the queue shows late (the answers of
#: the calls admitted come later), so 4 % a step there overshoots; below it and past it, INCREASE_EMPTY.
NEAR = 1.2
#: `sustained` forgets this share of itself per STEP (half in ~17 s) unless the core shows it again.
SUSTAINED_DECAY = 0.002
#: The onset rate is the highest average over the last ONSET_SLOTS or more slots of the last second: the
#: rate since the load arrived, not diluted by a quiet spell before it.
ONSET_SLOTS = 3
#: The admitted rate never falls below this (new INVITEs per second): an idle-looking edge still learns.
MIN_RATE = 1.0
#: The token bucket holds at most this many seconds of the admitted rate (the adapter reads in batches).
BURST = 0.25
#: The admitted rate is measured over SLOTS slots of SLOT seconds.
SLOT = 0.1
SLOTS = 10

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
    loop_lag: str = "300ms"  # the event loop or the UDP queue this late starts shedding
    pending_transactions: int = 20_000  # requests awaiting a final answer, ringing INVITEs included
    peer_backlog: int = 1000  # carrier/PBX datagrams read since the UDP socket was last empty
    target_delay: str = "50ms"  # while shedding, the admitted rate is steered to keep the delays under this
    max_rate: float = 0.0  # new INVITEs per second admitted at most, always (0: no fixed cap)
    hold: str = "2s"  # shedding stops once no INVITE was shed for this long and every measure is under target
    retry_after: int = 5  # seconds, in the 503's Retry-After
    remember: int = 100_000  # Call-IDs of admitted INVITEs kept (their retransmissions are never shed)


class SheddingChanged(msgspec.Struct, frozen=True):
    """Shedding started (`on`) or stopped; the adapter logs it (`overload_shedding_started/stopped`)."""

    on: bool
    at: float
    reason: str  # the measure that tripped ('loop_lag', 'queue_delay', 'pending', 'peer_backlog', 'max_rate'); '' when stopping
    value: float
    shed: int  # INVITEs shed in the episode that ended (0 when starting)
    rate: float = 0.0  # the admitted rate (INVITEs/s) at the start, or when the episode ended


def validate_overload(cfg: OverloadConfig, prefix: str = "$.overload") -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    for name in ("loop_lag", "hold", "target_delay"):
        try:
            if parse_duration(getattr(cfg, name)) <= 0:
                errors.append((f"{prefix}.{name}", "must be greater than 0s"))
        except ValueError as exc:
            errors.append((f"{prefix}.{name}", str(exc)))
    if not errors and parse_duration(cfg.target_delay) >= parse_duration(cfg.loop_lag):
        errors.append((f"{prefix}.target_delay", f"must be below loop_lag ({cfg.loop_lag}): the rate is steered "
                                                 "under the delay that starts shedding"))
    for name in ("pending_transactions", "peer_backlog", "remember"):
        if getattr(cfg, name) < 1:
            errors.append((f"{prefix}.{name}", "must be at least 1"))
    if not (cfg.max_rate == 0 or MIN_RATE <= cfg.max_rate <= 1e6) or math.isnan(cfg.max_rate):
        errors.append((f"{prefix}.max_rate", f"must be 0 (no cap) or between {MIN_RATE:g} and 1000000 INVITEs per second"))
    if not 1 <= cfg.retry_after <= 3600:
        errors.append((f"{prefix}.retry_after", "must be between 1 and 3600 seconds"))
    return errors


class OverloadStats:
    __slots__ = ("shed_invites", "shed_acks", "episodes", "passed_retransmissions", "admitted_invites",
                 "rate_decreases")

    def __init__(self) -> None:
        for s in self.__slots__:
            setattr(self, s, 0)

    def as_dict(self) -> dict[str, int]:
        return {s: getattr(self, s) for s in self.__slots__}


class OverloadControl:
    """Sans-IO: the adapter reports measures and asks `shed(data, now)` for each message of a known peer
    while `limiting`."""

    __slots__ = ("cfg", "stats", "events", "shedding", "limiting", "rate", "_lag", "_target", "_hold", "_cap",
                 "_stepped", "_decreased", "_cut_delay", "_last_shed", "_tokens", "_refilled", "_admitted", "_retry",
                 "_shed_at_start", "_lag_run", "_loop_lag", "_pending", "_backlog", "_qmin", "_slots", "_shed_slots", "_slot_at",
                 "_slot_i", "_sustained", "_queue_seen", "_queued", "_fell_behind")

    def __init__(self, cfg: OverloadConfig) -> None:
        self.stats = OverloadStats()
        self.events: list[SheddingChanged] = []  # drained by the adapter (bounded: two per episode)
        self.shedding = False  # an episode is on: new INVITEs over `rate` are shed
        self.limiting = False  # `shed()` must see new INVITEs (shedding, or a fixed `max_rate`)
        self.rate = 0.0  # admitted new INVITEs per second while limiting
        self._stepped = -math.inf  # when the control last stepped
        self._decreased = -math.inf
        self._cut_delay = math.inf  # the delay when the rate was last cut
        self._last_shed = -math.inf
        self._tokens = 0.0
        self._refilled = 0.0
        self._shed_at_start = 0
        self._lag_run = 0  # consecutive loop-lag reports over the threshold
        self._loop_lag = 0.0
        self._pending = 0
        self._backlog = 0
        self._qmin = math.inf  # smallest queue delay reported since the last step
        self._slots = [0] * SLOTS  # new INVITEs admitted per SLOT, a ring
        self._shed_slots = [0] * SLOTS  # and shed
        self._slot_at = 0.0  # start of the current slot
        self._slot_i = 0
        self._admitted: dict[bytes, float] = {}  # Call-ID -> when admitted; insertion order is age
        self._sustained = 0.0  # new INVITEs/s the core took with an empty queue and no cut since (decaying)
        self._queued = -math.inf  # when a step last saw a queue (delay over half the target) or a measure over
        self._fell_behind = 0.0  # new INVITEs/s the core took when a delay over the target last cut the rate
        self._queue_seen = False  # the adapter reports queue delays: backlog only starts an episode
        self.configure(cfg)

    def configure(self, cfg: OverloadConfig) -> None:
        errors = validate_overload(cfg)
        if errors:
            raise ValueError("; ".join(f"{p}: {r}" for p, r in errors))
        self.cfg = cfg
        self._lag = parse_duration(cfg.loop_lag)
        self._target = parse_duration(cfg.target_delay)
        self._hold = parse_duration(cfg.hold)
        self._cap = cfg.max_rate if cfg.max_rate > 0 else math.inf
        self._retry = str(cfg.retry_after).encode()
        if not cfg.enabled and self.shedding:
            self._stop(self._stepped if self._stepped > 0 else 0.0)
        self.limiting = cfg.enabled and (self.shedding or cfg.max_rate > 0)
        if self.limiting:
            self.rate = min(self.rate, self._cap) if self.shedding else self._cap

    # -- measures ---------------------------------------------------------------------------------
    def observe(self, now: float, loop_lag: float | None = None, pending: int | None = None,
                peer_backlog: int | None = None, queue_delay: float | None = None) -> None:
        """Report the measures the caller has (None: unchanged since the last report); the control
        steps at most once per STEP."""
        if not self.cfg.enabled:
            return
        if loop_lag is not None:
            self._lag_run = self._lag_run + 1 if loop_lag > self._lag else 0
            self._loop_lag = loop_lag
        if pending is not None:
            self._pending = pending
        if peer_backlog is not None:
            self._backlog = peer_backlog
        if queue_delay is not None:
            self._queue_seen = True
            if queue_delay < self._qmin:
                self._qmin = queue_delay
        if not self.shedding:  # a threshold crossed starts an episode at once
            trip, value = self._trip()
            if trip:
                self._start(now, trip, value, self.onset_rate(now) * START)
                self._qmin = math.inf
                self._stepped = now
                return
        if now - self._stepped >= STEP - 1e-9:
            self._step(now)

    def _trip(self, steering: bool = False) -> tuple[str, float]:
        """The measure over its threshold ('' when none) and its value. `steering`: the backlog counts
        only when no queue delay is reported (a full batch read in a burst is no queue; the delay says)."""
        cfg = self.cfg
        if self._lag_run >= LAG_RUN:
            return "loop_lag", self._loop_lag
        if self._qmin != math.inf and self._qmin > self._lag:
            return "queue_delay", self._qmin
        if self._pending > cfg.pending_transactions:
            return "pending", float(self._pending)
        if self._backlog > cfg.peer_backlog and not (steering and self._queue_seen):
            return "peer_backlog", float(self._backlog)
        return "", 0.0

    def _step(self, now: float) -> None:
        """Steer the admitted rate by the measures of the step that ended."""
        trip, _ = self._trip(steering=True)
        queue = self._qmin if self._qmin != math.inf else 0.0  # no read in the step: the socket was idle
        self._qmin = math.inf
        self._stepped = now
        delay = max(self._loop_lag, queue)
        over = bool(trip) or delay > self._target
        if over or delay >= self._target / 2:
            self._queued = now
        else:  # what the core took since the queue was last seen, it sustained (decaying otherwise)
            self._sustained = max(self._sustained * (1 - SUSTAINED_DECAY), self._rate_since(now, self._queued))
        if not self.shedding:
            return
        if over:
            # No cut while the last one is still draining the queue (the delay fell by a tenth since):
            # the core works off what was admitted before it, so cutting again would overshoot.
            draining = self._cut_delay != math.inf and delay < DRAINING * self._cut_delay
            if now - self._decreased >= DECREASE_GAP - 1e-9 and not draining:
                self._decreased = now
                self._cut_delay = delay
                self.rate = max(MIN_RATE, self._decreased_rate(now, delay))
                if delay > self._target:  # the core fell behind at what it took: only probing goes higher
                    self._fell_behind = min(self.rate / DEEPEST, self.admitted_rate(now))
                    self._sustained = min(self._sustained, self.rate)
                self.stats.rate_decreases += 1
            return
        self._cut_delay = math.inf
        if now - self._last_shed <= STEP + 1e-9:  # the rate, not the offer, is what limits: probe upwards
            if delay < self._target / 2 and self.rate < self._sustained:  # back to what the core sustained
                self.rate = min(self._cap, self._sustained, self.rate * (1 + RECOVER))
            else:  # past it: probe, slowly with a queue or near where the core last fell behind
                fast = delay < self._target / 2 and not self._fell_behind <= self.rate < self._fell_behind * NEAR
                grow = INCREASE_EMPTY if fast else INCREASE
                self.rate = min(self._cap, self.rate + max(1.0, self.rate * grow))
        elif now - self._last_shed >= self._hold - 1e-9:
            self._stop(now)

    def _decreased_rate(self, now: float, delay: float) -> float:
        """Over the target: from what the core actually took (a core that got slower takes fewer than
        the rate allows), cut by the share the delay is over the target, between a tenth and a fifth."""
        cut = self._target / delay if delay > 0 else DECREASE  # over on pending (or backlog, no delays) alone: a tenth
        return min(self.rate, self.admitted_rate(now)) * max(DEEPEST, min(DECREASE, cut))

    def _start(self, now: float, reason: str, value: float, rate: float) -> None:
        self.shedding = self.limiting = True
        self.rate = min(self._cap, max(MIN_RATE, rate))
        self._tokens = 0.0
        self._refilled = now
        self._decreased = now
        self._cut_delay = math.inf
        self._last_shed = now
        self.stats.episodes += 1
        self._shed_at_start = self.stats.shed_invites
        self._push(SheddingChanged(True, now, reason, value, 0, round(self.rate, 1)))

    def _stop(self, now: float) -> None:
        self.shedding = False
        self.limiting = self._cap != math.inf and self.cfg.enabled
        rate = self.rate
        self.rate = self._cap if self.limiting else 0.0
        self._push(SheddingChanged(False, now, "", 0.0, self.stats.shed_invites - self._shed_at_start, round(rate, 1)))

    def _push(self, ev: SheddingChanged) -> None:
        if len(self.events) < 64:
            self.events.append(ev)

    def take_events(self) -> list[SheddingChanged]:
        events, self.events = self.events, []
        return events

    def admitted_rate(self, now: float) -> float:
        """New INVITEs per second that reached the core over the last second (SLOTS x SLOT)."""
        self._advance(now)
        span = (SLOTS - 1) * SLOT + max(0.0, now - self._slot_at)
        return sum(self._slots) / span

    @property
    def sustained_rate(self) -> float:
        """New INVITEs per second the core last took for a while with an empty queue (decaying; lowered to
        the rate in force when a delay over the target cuts it): where recovery after a trip heads fast."""
        return self._sustained

    def onset_rate(self, now: float) -> float:
        """New INVITEs per second that reached the core since the load arrived: the highest average over
        the last ONSET_SLOTS or more slots of the last second (the current slot counted for its elapsed part)."""
        self._advance(now)
        span = max(0.0, now - self._slot_at)
        total = self._slots[self._slot_i]
        best = 0.0
        for k in range(1, SLOTS):
            total += self._slots[(self._slot_i - k) % SLOTS]
            span += SLOT
            if k + 1 >= ONSET_SLOTS:
                best = max(best, total / span)
        return best

    def _rate_since(self, now: float, since: float) -> float:
        """New INVITEs per second over the whole slots that began after `since` and the current one (0 when
        fewer than ONSET_SLOTS)."""
        self._advance(now)
        whole = SLOTS - 1 if self._slot_at - since >= SLOTS * SLOT else int((self._slot_at - since) / SLOT + 1e-9)
        if whole + 1 < ONSET_SLOTS:
            return 0.0
        total = sum(self._slots[(self._slot_i - k) % SLOTS] for k in range(whole + 1))
        return total / (whole * SLOT + max(0.0, now - self._slot_at))

    def shed_share(self, now: float) -> int:
        """Percent of new INVITEs shed over the last second (RFC 7339's loss value)."""
        self._advance(now)
        shed = sum(self._shed_slots)
        total = shed + sum(self._slots)
        return round(100 * shed / total) if total else 0

    def _advance(self, now: float) -> None:
        if now - self._slot_at < SLOT:
            return
        gap = int((now - self._slot_at) / SLOT)
        for _ in range(min(gap, SLOTS)):
            self._slot_i = (self._slot_i + 1) % SLOTS
            self._slots[self._slot_i] = 0
            self._shed_slots[self._slot_i] = 0
        self._slot_at += gap * SLOT

    # -- per message (known peers only) ----------------------------------------------------------
    def admitted(self, data: bytes, now: float) -> None:
        """A message went to the core: a new INVITE is counted, and its retransmissions must reach the
        core too, even once shedding."""
        if not data.startswith(b"INVITE "):
            return
        head = _head(data)
        call_id = _header(head, head.lower(), b"call-id", b"i")
        if call_id is None:
            return
        memo = self._admitted
        if call_id in memo:
            return
        self.stats.admitted_invites += 1
        if now - self._slot_at >= SLOT:
            self._advance(now)
        self._slots[self._slot_i] += 1
        if len(memo) >= self.cfg.remember:
            del memo[next(iter(memo))]
        memo[call_id] = now
        # Forget what is older than an INVITE transaction lives (64*T1 with T1 = 500 ms), oldest first.
        while memo:
            first = next(iter(memo))
            if now - memo[first] <= 32.0:
                break
            del memo[first]

    def shed(self, data: bytes, now: float) -> bytes | None:
        """The 503 to send instead of passing `data` on, or None to pass it on."""
        if not self.limiting or not data.startswith(b"INVITE "):
            return None
        head = _head(data)
        low = head.lower()
        to = _header(head, low, b"to", b"t")
        call_id = _header(head, low, b"call-id", b"i")
        if to is None or call_id is None:
            return None  # the core answers 400
        if _has_tag(to):
            return None  # re-INVITE inside a dialog: never shed
        if call_id in self._admitted:
            self.stats.passed_retransmissions += 1
            return None
        rate = self.rate
        tokens = self._tokens
        if now > self._refilled:
            tokens += (now - self._refilled) * rate
            self._refilled = now
        burst = max(1.0, rate * BURST)
        if tokens > burst:
            tokens = burst
        if tokens >= 1.0:
            self._tokens = tokens - 1.0
            return None  # admitted: within the rate
        self._tokens = tokens
        if now - self._slot_at >= SLOT:
            self._advance(now)
        self._shed_slots[self._slot_i] += 1  # counted first: the 503's RFC 7339 loss value includes it
        out = self._response(head, call_id, now)
        if out is None:
            self._shed_slots[self._slot_i] -= 1
            return None
        if not self.shedding:  # only the fixed max_rate was limiting: an episode starts
            self._start(now, "max_rate", rate, rate)
            self._tokens = tokens
        self.stats.shed_invites += 1
        self._last_shed = now
        return out

    def is_shed_ack(self, data: bytes) -> bool:
        """The ACK for one of our 503s (hop by hop; nothing to forward)."""
        if not data.startswith(b"ACK "):
            return False
        head = _head(data)
        to = _header(head, head.lower(), b"to", b"t")
        if to is not None and b";tag=" + SHED_TAG in to.replace(b" ", b""):
            self.stats.shed_acks += 1
            return True
        return False

    def _response(self, head: bytes, call_id: bytes, now: float) -> bytes | None:
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
            elif canon == b"Via" and canon not in seen and b";oc" in value.lower():
                value = _oc_via(value, self.shed_share(now), now) or value
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


def _header(data: bytes, low: bytes, name: bytes, compact: bytes) -> bytes | None:
    """The first value of a header (long or compact name) in raw bytes (`low`: the same lowercased),
    stripped; no unfolding."""
    for key in (b"\r\n" + name + b":", b"\r\n" + name + b" :", b"\r\n" + compact + b":", b"\r\n" + compact + b" :"):
        i = low.find(key)
        if i >= 0:
            start = i + len(key)
            end = data.find(b"\r\n", start)
            return data[start:end if end >= 0 else len(data)].strip()
    return None


#: RFC 7339 parameters a response's top Via carries back; the client's own are replaced.
_OC_PARAMS = {b"oc", b"oc-algo", b"oc-validity", b"oc-seq"}
OC_VALIDITY_MS = 1000  # how long a carrier should apply the loss value unless a newer one comes


def _oc_via(via: bytes, loss: int, now: float) -> bytes | None:
    """The top Via value with RFC 7339 loss-based overload control parameters, when the carrier asked
    for them (`oc` in its Via) and offers the loss algorithm (or names none: loss is the default);
    None otherwise. Only the first Via of the line is the carrier's."""
    end, quoted = len(via), False
    for i, c in enumerate(via):  # the first comma outside a quoted string ends the top Via
        if c == 34:
            quoted = not quoted
        elif c == 44 and not quoted:
            end = i
            break
    top, rest = via[:end], via[end:]
    sent_by, *params = top.split(b";")
    kept, asked, algos = [], False, None
    for param in params:
        name, _, value = param.partition(b"=")
        key = name.strip().lower()
        if key == b"oc":
            asked = True
        elif key == b"oc-algo":
            algos = [a.strip().lower() for a in value.strip().strip(b'"').split(b",")]
        if key not in _OC_PARAMS:
            kept.append(param)
    if not asked or (algos is not None and b"loss" not in algos):
        return None
    oc = b'oc=%d;oc-algo="loss";oc-validity=%d;oc-seq=%.3f' % (loss, OC_VALIDITY_MS, now)
    return b";".join([sent_by, *kept, oc]) + rest


def _has_tag(to: bytes) -> bool:
    """A tag parameter after the URI (a ';tag=' inside <...> belongs to the URI)."""
    rest = to.rpartition(b">")[2] if b">" in to else to
    return b";tag=" in rest.lower().replace(b" ", b"")
