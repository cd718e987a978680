"""The clean-call path: a transaction-stateful, record-routing proxy (RFC 3261 §16), sans-IO.

`Proxy.receive(data, source, now)` and `Proxy.handle_timers(now)` queue what must leave the core;
the asyncio adapters drain it (`datagrams_to_send()`, `activities_to_store()`, `certificate_fetches()`,
`released_hits()`). Nothing here awaits or touches a socket or the clock. The SIP plumbing (branches,
Via, replies, client transactions, timers) is the public seam in edge/call/ua.py, which the
screening B2BUA (edge/call/b2bua.py) uses too.

Per initial INVITE: carrier ACL -> parse -> retransmission absorbed by the server transaction ->
Max-Forwards -> dialplan lookup (404) -> policy decision (reject before answer) -> 100 Trying ->
forward to the number's PBX targets in order, failing over on 408/500/503, transport error or
Timer B. In-dialog requests follow the route set the edge recorded; ACKs for 2xx pass statelessly.
"""

from __future__ import annotations

import hashlib
import os
from bisect import bisect_left
from typing import Callable, Protocol

import structlog

from edge.call.activity import Activity, log_contact_decided, new_activity_id
from edge.call.admission import Gatekeeper, apply_edits
from edge.call.facts import CallerId, caller_id
from edge.call.peers import Peer, PeerDirectory
from edge.call.routing import Target, TargetPool
from edge.call.settings import CallSettings, host_port
from edge.call.ua import FAILOVER_STATUSES, TimerUser, UserAgent
from edge.dialplan.plan import NumberEntry, Plan
from edge.messaging.inbound import HeldMessage, MessageAction
from edge.messaging.service import Messaging, OutboundAction
from edge.messaging.text import message_text
from edge.numbers import parse_number
from edge.policy.facts import Action, Decision
from edge.stir.verifier import NeedCertificate
from edge.sip.dialog import contact_uri
from edge.stir.verstat import reject_response
from edge.sip.errors import SipParseError
from edge.sip.message import MAGIC_COOKIE, SipMessage, Via, parse, split_list, uri_of
from edge.sip.response import make_response
from edge.sip.transaction import ClientTransaction, Destination, ServerTransaction, State
from edge.sip.uri import parse_uri, uri_user
from edge.units import parse_duration

log = structlog.get_logger("edge.proxy")

ALLOW = "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, PRACK, MESSAGE, NOTIFY, REFER"


class Screening(Protocol):
    """The screening B2BUA (edge.call.b2bua.B2bua) as the proxy sees it."""

    def screen(self, ctx: InviteContext, now: float) -> None:
        """Take over a contact the policy sent to captcha, menu, voicemail or an intercept."""

    def handle(self, msg: SipMessage, src: Destination, now: float) -> bool:
        """An in-dialog request, ACK or CANCEL of a screened call: True when it was one."""

    @property
    def active(self) -> int:
        """Screened calls in progress (draining waits for them)."""


class Stats:
    """Plain counters; the daemon exports them to Prometheus."""

    __slots__ = (
        "received",
        "requests",
        "responses",
        "parse_errors",
        "dropped",
        "retransmissions_absorbed",
        "invites",
        "rejected",
        "unknown_source",
        "not_found",
        "failovers",
        "core_errors",
        "oversize",
        "draining_rejected",
        "calls_answered",
        "calls_ended",
        "released_hits",
        "source_limited",
        "cancels_unanswered",
        "outbound",
        "by_status",
    )

    def __init__(self) -> None:
        for s in self.__slots__:
            setattr(self, s, 0)
        self.by_status: dict[int, int] = {}

    def as_dict(self) -> dict[str, object]:
        return {s: getattr(self, s) for s in self.__slots__}


class Histogram:
    """Fixed-bucket latency histogram (seconds); observe() is a few comparisons, scraped by metrics."""

    __slots__ = ("bounds", "counts", "count", "total")

    def __init__(self, bounds: tuple[float, ...] = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)) -> None:
        self.bounds = bounds
        self.counts = [0] * len(bounds)
        self.count = 0
        self.total = 0.0

    def observe(self, value: float) -> None:
        self.count += 1
        self.total += value
        i = bisect_left(self.bounds, value)
        if i < len(self.counts):
            self.counts[i] += 1

    def cumulative(self) -> list[int]:
        out, acc = [], 0
        for c in self.counts:
            acc += c
            out.append(acc)
        return out


class ProxiedDialog:
    """A dialog the edge record-routes: enough to authorise and route in-dialog requests and count
    active calls. The proxy is no party to it (a UA's dialog state is edge/sip/dialog.py:Dialog)."""

    __slots__ = (
        "call_id",
        "confirmed",
        "caller",
        "callee",
        "activity",
        "timers",
        "created",
        "answered_at",
        "caller_contact",
        "callee_contact",
        "proxy",
    )

    def __init__(self, call_id: str, caller: Destination, activity: Activity | None, now: float, proxy: Proxy) -> None:
        self.proxy = proxy
        self.call_id = call_id
        self.confirmed = False
        self.caller = caller
        self.callee: Destination | None = None
        self.activity = activity
        self.timers: dict[str, int] = {}  # name -> TimerWheel seq
        self.created = now
        self.answered_at = 0.0
        self.caller_contact = ""  # remote targets, for UAs that send in-dialog requests to the edge
        self.callee_contact = ""  # without a Route set (R-URI = edge)

    def on_timer(self, name: str, now: float) -> None:
        if name == "max_age":
            log.warning("dialog_expired", call_id=self.call_id)
            self.proxy.end_dialog(self, now)


class InviteContext:
    """One proxied INVITE (initial or re-INVITE) or other relayed request and its hunt over targets."""

    __slots__ = (
        "server",
        "request",
        "targets",
        "index",
        "client",
        "cancelled",
        "done",
        "best",
        "activity",
        "dialog",
        "initial",
        "timers",
        "called_user",
        "decision",
        "entry",
        "peer",
        "edits",
        "caller",
        "responded",
        "proxy",
        "from_edited",
        "cancel_sent",
        "cancel_final",
    )

    def __init__(self, server: ServerTransaction, request: SipMessage, proxy: Proxy) -> None:
        self.proxy = proxy
        self.server = server
        self.request = request
        self.targets: list[Target] = []
        self.index = -1
        self.client: ClientTransaction | None = None
        self.cancelled = False
        self.done = False
        self.best: SipMessage | None = None
        self.activity: Activity | None = None
        self.dialog: ProxiedDialog | None = None
        self.initial = False
        self.timers: dict[str, int] = {}  # name -> TimerWheel seq
        self.called_user = ""
        self.decision: Decision | None = None
        self.entry: NumberEntry | None = None
        self.peer: Peer | None = None
        self.edits: list[tuple[str, str | None]] = []  # header edits on every forwarded copy (verstat, Identity)
        self.caller: CallerId | None = None  # the caller's identity, read once
        self.responded = False  # first response (other than 100) seen, for the latency histogram
        self.from_edited = False  # verstat written into From: responses upstream get the original back
        self.cancel_sent = False  # a CANCEL went to the current target (once: Timer C does not repeat it)
        self.cancel_final = 487  # our answer if that target never answers the CANCEL: 487, or 408 after Timer C

    # The transaction user of the context's client transactions and of its Timer C.
    def on_response(self, ct: ClientTransaction, resp: SipMessage, now: float) -> None:
        self.proxy.context_response(self, ct, resp, now)

    def on_failure(self, ct: ClientTransaction, now: float) -> None:
        self.proxy.context_failed(self, ct, ct.failed_with or 408, now)

    def on_timer(self, name: str, now: float) -> None:
        self.proxy.context_timer(self, name, now)


class Proxy:
    def __init__(self, cfg: CallSettings, plan: Plan, gate: Gatekeeper | None = None) -> None:
        if not isinstance(cfg, CallSettings):
            raise TypeError(f"Proxy takes CallSettings (EdgeConfig.call_settings()), not {type(cfg).__name__}")
        self.cfg = cfg  # the call layer's slice of config/edge.toml (EdgeConfig.call_settings())
        self.plan = plan
        self.gate = gate
        self.b2bua: Screening | None = None  # the screening B2BUA: captcha/menu/voicemail contacts and their dialogs
        self.messaging: Messaging | None = None  # texts: content screening, A2P shaping, opt-outs
        self.is_released: Callable[[str], bool] | None = None  # number lifecycle: quarantined numbers
        self.released_status = 410
        self.released_intercept = False  # play the not-in-service intercept before the final response
        self._released_hits: list[tuple[str, str]] = []  # (called, calling) for the lifecycle monitor
        self.parked: dict[str, list[InviteContext]] = {}  # x5u URL -> contacts waiting for it
        self._cert_fetches: list[str] = []  # URLs the adapter must fetch
        self.tv = cfg.timers.values()
        self.limits = cfg.limits
        self.dialog_max_age = parse_duration(cfg.limits.dialog_max_age)
        self.peers = PeerDirectory(cfg)
        self.server_txns: dict[tuple, ServerTransaction] = {}
        self.txns_by_source: dict[str, int] = {}  # server transactions awaiting a final answer, per source
        self.dialogs: dict[str, ProxiedDialog] = {}
        self.stats = Stats()
        self.latency = Histogram()
        self.draining = False
        self.node = cfg.node
        local: dict[str, tuple[str, int]] = {}
        ours: set[tuple[str, int]] = set()
        for ls in cfg.listen:
            host, port = host_port(ls.advertise or ls.address)
            local.setdefault(ls.transport, (host, port))
            ours.add((host, port))
            ours.add(host_port(ls.address))
        self.ua = ua = UserAgent(local, ours, self.tv)
        self.wheel = ua.wheel
        self.client_txns = ua.client_txns
        self.local = ua.local
        self.stats.by_status = ua.by_status
        # The shared plumbing under the names the proxy's hot path uses (bound once).
        self._send = ua.send
        self._new_branch = ua.new_branch
        self._via = ua.via
        self._record_route = ua.record_route
        self._reply = ua.reply
        self._count_status = ua.count_status
        self._ours = ours
        # Record-Route values exactly as the edge writes them: in-dialog requests bring them back as Routes.
        self._own_routes = frozenset(ua.record_route(t) for t in local)
        self.pool = TargetPool(cfg, self.wheel, self.tv, self._send, self._new_branch, self.local)

    # -- what leaves the core (drained by the adapters) -------------------------------------------
    def datagrams_to_send(self) -> list[tuple[bytes, Destination]]:
        """SIP messages to send, in order, since the last call."""
        return self.ua.datagrams_to_send()

    def activities_to_store(self) -> list[Activity]:
        """Activity records created or changed since the last call."""
        return self.ua.activities_to_store()

    def certificate_fetches(self) -> list[str]:
        """x5u URLs a parked contact waits for: fetch each, then call `certificate_fetched`."""
        out, self._cert_fetches = self._cert_fetches, []
        return out

    def released_hits(self) -> list[tuple[str, str]]:
        """(called, calling) of contacts to released numbers since the last call (lifecycle monitor)."""
        out, self._released_hits = self._released_hits, []
        return out

    def start(self, now: float) -> None:
        """Begin OPTIONS health probing of the PBX targets."""
        self.pool.start(self.client_txns, now)

    def set_plan(self, plan: Plan) -> None:
        """Swap in a reloaded dialplan; calls in progress keep the entry they were routed with."""
        self.plan = plan

    def reconfigure(self, cfg: CallSettings, plan: Plan, now: float) -> None:
        """A reload (SIGHUP): new peers, PBX targets and dialplan. Targets that survive keep their
        health state; probes of the old pool stop; calls in progress keep what they were routed with."""
        self.cfg = cfg
        self.peers = PeerDirectory(cfg)
        self.set_plan(plan)
        old = self.pool
        old.stopped = True
        self.pool = TargetPool(cfg, self.wheel, self.tv, self._send, self._new_branch, self.local)
        for name, t in self.pool.by_name.items():
            prev = old.by_name.get(name)
            if prev is not None and prev.dest == t.dest:
                t.up, t.failures = prev.up, prev.failures
        self.pool.start(self.client_txns, now)

    def next_deadline(self) -> float | None:
        return self.wheel.next_deadline()

    @property
    def active_calls(self) -> int:
        return len(self.dialogs)

    # -- entry points --------------------------------------------------------------------
    def receive(self, data: bytes, src: Destination, now: float) -> None:
        """One datagram or one framed stream message from `src`."""
        st = self.stats
        st.received += 1
        limit = self.limits.max_udp_message if src.transport == "udp" else self.limits.max_tcp_message
        if len(data) > limit:
            st.oversize += 1
            self._oversize(data, src)
            return
        try:
            msg = parse(data, max_headers=self.limits.max_headers, max_header_length=self.limits.max_header_length)
        except SipParseError as exc:
            st.parse_errors += 1
            log.debug("sip_parse_error", reason=str(exc), source=f"{src.host}:{src.port}", head=data[:80].decode("latin-1"))
            self._bad_request(data, src, str(exc))
            return
        try:
            if msg.status:
                st.responses += 1
                self._on_response(msg, src, now)
            else:
                st.requests += 1
                self._on_request(msg, src, now)
        except SipParseError as exc:
            st.parse_errors += 1
            if not msg.status and msg.method != "ACK":
                self._reply_safe(msg, src, 400, str(exc))
        except Exception:  # noqa: BLE001 - one bad message must never stop the loop
            st.core_errors += 1
            log.exception("core_error", call_id=msg.get("call-id") or "", transport=src.transport, source=f"{src.host}:{src.port}")
            if not msg.status and msg.method != "ACK":
                self._drop_server_txn(msg)
                self._reply_safe(msg, src, 500, "Server Internal Error")

    def handle_timers(self, now: float) -> None:
        for owner, name in self.wheel.pop_due(now):
            try:
                self._on_timer(owner, name, now)
            except Exception:  # noqa: BLE001
                self.stats.core_errors += 1
                log.exception("timer_error", timer=name)

    # -- bad input -------------------------------------------------------------------------
    def _reply_safe(self, msg: SipMessage, src: Destination, status: int, reason: str) -> None:
        try:
            self._reply(msg, src, status, reason)
        except SipParseError:
            self.stats.dropped += 1

    def _bad_request(self, data: bytes, src: Destination, reason: str) -> None:
        """Answer 400 naming the fault when a Via, Call-ID, CSeq, From and To can be read; else drop."""
        try:
            head = data.split(b"\r\n\r\n", 1)[0].decode("utf-8", "replace")
            lines = head.split("\r\n")
            if not lines or lines[0].startswith("SIP/") or lines[0].startswith("ACK "):
                raise ValueError
            keep: list[tuple[str, str]] = []
            for line in lines[1:]:
                name, sep, value = line.partition(":")
                lname = name.strip().lower()
                lname = {"v": "via", "i": "call-id", "f": "from", "t": "to"}.get(lname, lname)
                if sep and lname in ("via", "call-id", "cseq", "from", "to"):
                    keep.append((lname, value.strip()))
            names = {k for k, _ in keep}
            if not {"via", "call-id", "from", "to", "cseq"} <= names:
                raise ValueError
            vias = split_list(next(v for k, v in keep if k == "via"))
            if not vias or not vias[0]:
                raise ValueError
            Via(vias[0])
            req = SipMessage.request("X", "sip:x", [(k, v) for k, v in keep])
            if reason == "Version Not Supported":
                self._reply(req, src, 505)  # RFC 3261 §8.2.2 / §21.5.7
            else:
                self._reply(req, src, 400, reason[:100])
        except (ValueError, SipParseError, StopIteration):
            self.stats.dropped += 1

    def _oversize(self, data: bytes, src: Destination) -> None:
        """513 when the headers can be read (RFC 3261 §21.5.11), else drop."""
        self._bad_request_status(data[:8192], src, 513, "Message Too Large")

    def _bad_request_status(self, head: bytes, src: Destination, status: int, reason: str) -> None:
        try:
            msg = parse(head.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n")
            if msg.status or msg.method == "ACK":
                raise SipParseError("not answerable")
            self._reply(msg, src, status, reason)
        except SipParseError:
            self.stats.dropped += 1

    # -- requests ---------------------------------------------------------------------------
    def _on_request(self, msg: SipMessage, src: Destination, now: float) -> None:
        via = msg.top_via
        if msg.via_count() > self.limits.max_via:
            raise SipParseError("Too many Via headers")
        method = msg.method
        sent_by = (via.host, via.port)
        branch = self._branch_key(msg, via)
        b2bua = self.b2bua
        if b2bua is not None and (msg.to_tag or method in ("ACK", "CANCEL")) and b2bua.handle(msg, src, now):
            return
        if method == "ACK":
            st = self.server_txns.get((branch, sent_by, "INVITE"))
            if st is not None and st.state in (State.COMPLETED, State.CONFIRMED):
                st.on_ack(now)  # ACK for a non-2xx: hop by hop, absorbed
                return
            self._forward_ack(msg, src, now)
            return
        key = (branch, sent_by, method)
        st = self.server_txns.get(key)
        if st is not None:
            self.stats.retransmissions_absorbed += 1
            st.on_retransmission(now)
            return
        if method == "CANCEL":
            self._on_cancel(msg, src, key, now)
            return
        mf = msg.max_forwards
        if mf is not None and mf <= 0:
            if method == "OPTIONS" and not msg.to_tag:
                self._reply(msg, src, 200, extra=[("Allow", ALLOW), ("Accept", "application/sdp")])
            else:
                self._reply(msg, src, 483)
            return
        if msg.to_tag:
            self._on_in_dialog(msg, src, key, now)
            return
        peer = self.peers.classify(src.host, src.port)
        if peer is None:
            self.stats.unknown_source += 1
            if self.cfg.acl.unknown_source == "reject":
                self._reply(msg, src, 403, "Forbidden: unknown source")
            else:
                self.stats.dropped += 1
            return
        if method == "OPTIONS" and (peer.kind == "carrier" or self._addressed_to_edge(msg)):
            # A carrier's OPTIONS, whatever number it names, is a keep-alive: no policy, no activity.
            self._reply(msg, src, 200, extra=[("Allow", ALLOW), ("Accept", "application/sdp")])
            return
        if method not in ("INVITE", "MESSAGE", "OPTIONS"):
            self._reply(msg, src, 405, extra=[("Allow", ALLOW)])
            return
        self._on_initial(msg, src, key, peer, now)

    def _add_server_txn(self, key: tuple, st: ServerTransaction) -> None:
        self.server_txns[key] = st
        host = st.source.host
        self.txns_by_source[host] = self.txns_by_source.get(host, 0) + 1
        st.on_final = self._uncount  # whoever answers (proxy, screening, CANCEL), the count follows

    def _uncount(self, st: ServerTransaction) -> None:
        """The transaction has its final answer (or is gone): it no longer counts as pending."""
        host = st.source.host
        n = self.txns_by_source.get(host, 1) - 1
        if n > 0:
            self.txns_by_source[host] = n
        else:
            self.txns_by_source.pop(host, None)

    def _forget_server_txn(self, st: ServerTransaction) -> None:
        if st.on_final is not None:  # never answered: still counted
            st.on_final = None
            self._uncount(st)
        if self.server_txns.get(st.key) is st:
            del self.server_txns[st.key]

    def _open_server(self, key: tuple, msg: SipMessage, src: Destination, now: float) -> InviteContext | None:
        """Server transaction + context for a request the edge will forward; 100 Trying for an INVITE
        (RFC 3261 §16.2). None when the source already has too many requests pending."""
        if self._refuse_source_over_limit(msg, src):
            return None
        server = ServerTransaction(key, msg, src, self.wheel, self.tv, self._send, now)
        self._add_server_txn(key, server)
        ctx = InviteContext(server, msg, self)
        server.owner = ctx
        if msg.method == "INVITE":
            server.respond(100, make_response(msg, 100).to_bytes(), now)
        return ctx

    def _refuse_source_over_limit(self, msg: SipMessage, src: Destination) -> bool:
        """503 when one source already has too many requests awaiting a final answer."""
        if self.txns_by_source.get(src.host, 0) < self.limits.max_transactions_per_source:
            return False
        self.stats.source_limited += 1
        self._reply(msg, src, 503, "Service Unavailable: too many transactions from this source", [("Retry-After", "5")])
        return True

    @staticmethod
    def _branch_key(msg: SipMessage, via: Via) -> str:
        """Transaction id of a request: its branch, or for an RFC 2543 peer (no magic cookie) the
        request's identity (RFC 3261 §17.2.3)."""
        branch = via.branch
        if branch.startswith(MAGIC_COOKIE):
            return branch
        return f"2543|{msg.call_id}|{msg.from_tag}|{msg.cseq_num}|{via.raw}"

    def _drop_server_txn(self, msg: SipMessage) -> None:
        """After a core error: forget the transaction the failed request may have created (no leak)."""
        try:
            via = msg.top_via
            key = (self._branch_key(msg, via), (via.host, via.port), msg.method)
        except SipParseError:
            return
        st = self.server_txns.get(key)
        if st is not None:
            self._forget_server_txn(st)
            st.terminate()

    def _addressed_to_edge(self, msg: SipMessage) -> bool:
        user = uri_user(msg.uri)
        if not user:
            return True
        try:
            u = parse_uri(msg.uri)
        except ValueError:
            return False
        return (u.host, u.port or 5060) in self._ours and not any(c.isdigit() for c in user)

    def _on_initial(self, msg: SipMessage, src: Destination, key: tuple, peer: Peer, now: float) -> None:
        st = self.stats
        if msg.method == "INVITE":
            st.invites += 1
        if self.draining:
            st.draining_rejected += 1
            self._reply(msg, src, 503, "Service Unavailable: draining", [("Retry-After", str(self.cfg.retry_after))])
            return
        if len(self.server_txns) >= self.limits.max_transactions or len(self.dialogs) >= self.limits.max_dialogs:
            self._reply(msg, src, 503, "Service Unavailable: overloaded", [("Retry-After", "5")])
            return
        ctx = self._open_server(key, msg, src, now)
        if ctx is None:
            return
        ctx.initial = True
        ctx.peer = peer
        if peer.kind == "pbx":
            self._route_outbound(ctx, now)
            return
        called_user = uri_user(msg.uri)
        ctx.called_user = called_user
        called = parse_number(called_user).e164 if called_user else ""
        entry = self.plan.lookup(called)
        ctx.caller = caller_id(msg)  # read once: activity, STIR and policy facts all use it
        activity = self._new_activity(msg, src, peer, called or called_user, ctx.caller, now)
        ctx.activity = activity
        if self.is_released is not None and called and self.is_released(called):
            # Released numbers win over a stale dialplan entry (`sip-edge check` reports that conflict).
            st.released_hits += 1
            self._released_hits.append((called, activity.calling_number))
            activity.decision = Action.INTERCEPT.value
            activity.rule_id = "lifecycle.released"
            activity.reason = "called number is released (in quarantine)"
            status = self.released_status
            if self.released_intercept and self.b2bua is not None and msg.method == "INVITE":
                # SIT tones and the announcement as early media, then `status`: never answered.
                ctx.decision = Decision(Action.INTERCEPT, "lifecycle.released", activity.reason, sip_status=status)
                self.b2bua.screen(ctx, now)
                return
            self._final_local(ctx, status, None, now, [("Reason", f'SIP;cause={status};text="number not in service"')])
            return
        if entry is None:
            st.not_found += 1
            activity.decision = Action.REJECT.value
            activity.rule_id = "dialplan.unknown_number"
            activity.reason = "called number is not in any dialplan"
            self._final_local(ctx, 404, "Not Found", now)
            return
        ctx.entry = entry
        activity.customer = entry.customer
        self._admit(ctx, now)

    def _admit(self, ctx: InviteContext, now: float) -> None:
        """Run admission (STIR, rules, Spam Detective); park the contact while a certificate is fetched."""
        entry = ctx.entry
        activity = ctx.activity
        assert entry is not None and activity is not None and ctx.peer is not None
        if self.gate is None:
            activity.decision = Action.ALLOW.value
            activity.rule_id = "default"
            self._forward_initial(ctx, now)
            return
        out = self.gate.admit(ctx.request, ctx.server.source, ctx.peer, entry, now, ctx.caller)
        if isinstance(out, NeedCertificate):
            waiting = self.parked.setdefault(out.url, [])
            if not waiting:
                self._cert_fetches.append(out.url)
            if len(waiting) < self.limits.max_parked:
                waiting.append(ctx)
            else:
                self._final_local(ctx, 503, "Service Unavailable: certificate fetch backlog", now, [("Retry-After", "5")])
            return
        decision = out.decision
        ctx.decision = decision
        facts = out.facts
        activity.kind = facts.kind.value
        activity.cnam = facts.cnam  # a verified rcd name replaces the display name
        activity.stir_status = out.stir.status.value
        activity.stir_attestation = out.stir.attestation or ""
        activity.stir_code = out.stir.code
        activity.stir_reason = out.stir.reason
        activity.decision = decision.action.value
        activity.rule_id = decision.rule_id
        activity.reason = decision.reason
        activity.score = decision.score
        activity.evidence = list(decision.evidence)
        activity.dry_run = decision.dry_run
        activity.would = decision.would.value if decision.would else ""
        action = decision.action
        if action is Action.ALLOW:
            ctx.edits = out.edits
            ctx.from_edited = any(name == "from" for name, _ in out.edits)
            self._forward_initial(ctx, now)
            return
        if action in (Action.REJECT, Action.INTERCEPT):
            self.stats.rejected += 1
            status = decision.sip_status or 603
            phrase: str | None = None
            reason = f'SIP;cause={status};text="{decision.rule_id}"'
            if decision.rule_id.startswith("stir."):  # RFC 8224 phrase and Reason; the detail stays in the log
                phrase, reason = reject_response(out.stir, status, decision.reason)
            self._final_local(ctx, status, phrase, now, [("Reason", reason)])
            return
        # captcha / menu / voicemail: the screening B2BUA answers the caller (media path).
        if self.b2bua is None or ctx.request.method != "INVITE":
            self.stats.rejected += 1
            activity.reason += "; screening unavailable"
            self._final_local(ctx, 480, "Temporarily Unavailable: screening unavailable", now)
            return
        ctx.edits = out.edits
        self.b2bua.screen(ctx, now)

    def certificate_fetched(self, url: str, body: bytes | None, cache_control: str | None, error: str, now: float) -> None:
        """Feed an x5u fetch result and resume every contact parked on it."""
        if self.gate is not None and self.gate.verifier is not None:
            self.gate.verifier.certificate_fetched(url, body, cache_control, error, now)
        for ctx in self.parked.pop(url, []):
            if not ctx.done and not ctx.cancelled:
                try:
                    self._admit(ctx, now)
                except Exception:  # noqa: BLE001 - one contact must not stop the others
                    self.stats.core_errors += 1
                    log.exception("core_error", call_id=ctx.request.call_id)
                    self._final_local(ctx, 500, None, now)

    def _forward_initial(self, ctx: InviteContext, now: float) -> None:
        entry = ctx.entry
        assert entry is not None
        if self.messaging is not None and ctx.request.method == "MESSAGE" and not self._message_inbound(ctx, now):
            return  # rejected or held
        ctx.targets = self.pool.hunt_list(entry.targets)
        if not ctx.targets:
            if ctx.activity is not None:
                ctx.activity.reason = "no PBX target in rotation"
            self._final_local(ctx, 503, "Service Unavailable: no PBX available", now, [("Retry-After", "10")])
            return
        self._open_dialog(ctx, ctx.server.source, now)
        self._try_next(ctx, now)

    def _route_outbound(self, ctx: InviteContext, now: float) -> None:
        """A call or message the PBX sends out: to the carriers' outbound targets in order, recorded as an
        outbound activity (attestation signed or why none, carrier chosen, failovers, final status)."""
        msg = ctx.request
        ctx.called_user = uri_user(msg.uri)
        ctx.caller = caller_id(msg)
        assert ctx.peer is not None
        a = ctx.activity = self._outbound_activity(ctx, now)
        self.stats.outbound += 1
        ctx.targets = self.pool.outbound_list()
        if not ctx.targets:
            a.decision, a.rule_id, a.reason = Action.REJECT.value, "outbound.no_carrier", "no outbound carrier"
            self._final_local(ctx, 403, "Forbidden: no outbound carrier", now)
            return
        a.decision, a.rule_id = Action.ALLOW.value, "outbound"
        if self.gate is not None:
            signing = self.gate.sign_outbound_request(msg, ctx.peer, self.plan, now)
            if signing.identity:
                ctx.edits = [("identity", signing.identity)]  # replaces any Identity the PBX sent
            a.stir_status = "signed" if signing.identity else "unsigned"
            a.stir_attestation = signing.attestation
            a.stir_code = signing.unsigned_reason
        else:
            a.stir_status, a.stir_code = "unsigned", "signing disabled"
        if self.messaging is not None and msg.method == "MESSAGE" and not self._message_outbound(ctx, now):
            return
        self._open_dialog(ctx, ctx.server.source, now)
        self._try_next(ctx, now)

    def _outbound_activity(self, ctx: InviteContext, now: float) -> Activity:
        """The activity of an outbound contact: calling is the PBX's caller, called the Request-URI user."""
        assert ctx.peer is not None and ctx.caller is not None
        msg = ctx.request
        called = parse_number(ctx.called_user).e164 if ctx.called_user else ""
        a = self._new_activity(msg, ctx.server.source, ctx.peer, called or ctx.called_user, ctx.caller, now)
        a.direction = "outbound"
        owner = self.plan.lookup(ctx.caller.e164) if ctx.caller.e164 else None
        a.customer = owner.customer if owner is not None else ""
        return a

    def _open_dialog(self, ctx: InviteContext, src: Destination, now: float) -> None:
        if ctx.request.method != "INVITE":
            return
        call_id = ctx.request.call_id
        dlg = ProxiedDialog(call_id, src, ctx.activity, now, self)
        dlg.caller_contact = contact_uri(ctx.request)
        self.dialogs[call_id] = dlg
        ctx.dialog = dlg
        self.wheel.arm(dlg, "max_age", now + self.dialog_max_age)

    def _new_activity(self, msg: SipMessage, src: Destination, peer: Peer, called: str, caller: CallerId,
                      now: float) -> Activity:
        return Activity(
            id=new_activity_id(now, self.node),
            call_id=msg.call_id,
            kind="message" if msg.method == "MESSAGE" else "call",
            received_at=now,
            calling_number=caller.e164 or caller.user,
            called_number=called,
            cnam=caller.cnam,
            source=f"{src.host}:{src.port}",
            transport=src.transport,
            carrier=peer.name if peer.kind == "carrier" else "",
            node=self.node,
        )

    def _final_local(self, ctx: InviteContext, status: int, reason: str | None, now: float,
                     extra: list[tuple[str, str]] | None = None) -> None:
        """A final response the edge generates itself for an INVITE/MESSAGE context (before answer)."""
        data = make_response(ctx.request, status, reason, extra).to_bytes()
        self._count_status(status)
        ctx.server.respond(status, data, now)
        ctx.done = True
        self._finish(ctx, status, now)
        self._release(ctx)

    def _release(self, ctx: InviteContext) -> None:
        """The context has its final answer: its transactions only absorb retransmissions from now on,
        so they let go of it (no cycles left; the call's memory is freed at once)."""
        ctx.server.owner = None
        if ctx.client is not None:
            ctx.client.owner = None
        if ctx.timers:
            self.wheel.clear(ctx)  # Timer C, cancel_wait

    def _finish(self, ctx: InviteContext, status: int, now: float) -> None:
        self._first_response(ctx, now)
        a = ctx.activity
        if a is not None and ctx.initial:
            a.final_status = status
            if status >= 300 or (ctx.request.method == "MESSAGE"):
                a.ended_at = now
                a.billable = status < 300
            self.ua.record(a)
            if self.cfg.log_calls:
                log_contact_decided(log, a, status)
        if status >= 300 and ctx.dialog is not None and not ctx.dialog.confirmed:
            self._close_dialog(ctx.dialog)

    def _close_dialog(self, dlg: ProxiedDialog) -> None:
        if self.dialogs.get(dlg.call_id) is dlg:
            del self.dialogs[dlg.call_id]
        self.wheel.clear(dlg)

    # -- messages (edge.messaging decides; the proxy does the SIP) ------------------------------
    def _message_inbound(self, ctx: InviteContext, now: float) -> bool:
        """Content screening of a MESSAGE the contact pipeline allowed; True: forward it now."""
        assert self.messaging is not None and ctx.activity is not None
        a = ctx.activity
        msg = ctx.request
        body = message_text(msg.body, msg.get("content-type") or "")
        res = self.messaging.inbound(body, a.calling_number, a.called_number, a.customer, now)
        v = res.verdict
        a.direction = "inbound"
        a.campaign = res.campaign
        a.decision = v.action.value
        a.rule_id, a.reason = v.rule_id, v.reason
        a.score = max(a.score, v.score)
        a.evidence = list(a.evidence) + list(v.evidence)
        if v.dry_run:
            a.dry_run, a.would = True, v.would
        if res.reply is not None:
            r = res.reply
            sent = self.originate_message(r.sender, r.recipient, r.body, now)
            # The automatic reply is an outbound message too: its own activity.
            self.ua.record(Activity(
                id=new_activity_id(now, self.node), call_id="", kind="message", received_at=now,
                calling_number=r.sender, called_number=r.recipient, customer=a.customer, node=self.node,
                direction="outbound", campaign=r.campaign, decision="send" if sent else "refuse",
                rule_id=f"{v.rule_id}.reply", reason=f"automatic reply to {res.keyword.upper()}"
                + ("" if sent else ": no outbound carrier"), ended_at=now))
        if v.action is MessageAction.DELIVER:
            return True
        if v.action is MessageAction.HOLD:
            self.messaging.held.add(HeldMessage(a.id, a.customer, a.calling_number, a.called_number, now, v.reason,
                                                body[:1000], msg.to_bytes()))
            self._final_local(ctx, 202, "Accepted: held for review", now)
            return False
        self.stats.rejected += 1
        self._final_local(ctx, v.status, None, now, [("Reason", f'SIP;cause={v.status};text="{v.rule_id}"')])
        return False

    def _message_outbound(self, ctx: InviteContext, now: float) -> bool:
        """A2P 10DLC checks and shaping of a MESSAGE the PBX sends out; True: send it now."""
        assert self.messaging is not None
        msg = ctx.request
        caller = caller_id(msg)
        called = parse_number(ctx.called_user).e164 or ctx.called_user
        peer = ctx.peer
        a = ctx.activity  # the outbound activity _route_outbound opened (signing, carrier, final status)
        if a is None and peer is not None:
            a = ctx.activity = self._new_activity(msg, ctx.server.source, peer, called, caller, now)
        out = self.messaging.outbound(caller.e164 or caller.user, called, now,
                                      message_text(msg.body, msg.get("content-type") or ""))
        if a is not None:
            a.direction = "outbound"
            a.campaign = out.campaign
            a.decision = "send" if out.action is OutboundAction.SEND else "refuse"
            a.rule_id, a.reason = out.rule_id, out.reason
            a.evidence = list(out.evidence)
        if out.action is OutboundAction.REFUSE:
            self.stats.rejected += 1
            extra = [("Reason", f'SIP;cause={out.status};text="{out.rule_id}"')]
            if out.retry_after:
                extra.append(("Retry-After", str(out.retry_after)))
            self._final_local(ctx, out.status, _REFUSAL_PHRASE.get(out.rule_id), now, extra)
            return False
        if out.queued:
            if a is not None:
                a.decision = "queued"
            self.wheel.arm(ctx, "a2p", out.send_at)
            return False
        return True

    def originate_message(self, sender: str, recipient: str, body: str, now: float) -> bool:
        """A MESSAGE from the edge itself (HELP text, opt-out confirmation) to the first outbound carrier."""
        targets = self.pool.outbound_list()
        if not targets or not recipient:
            return False
        t = targets[0]
        branch = self._new_branch()
        host, port = self.ua.local_address(t.dest.transport)
        headers = [
            ("Via", self._via(t.dest.transport, branch)),
            ("Max-Forwards", "70"),
            ("From", f"<sip:{sender}@{host}:{port}>;tag={os.urandom(6).hex()}"),
            ("To", f"<sip:{recipient}@{t.dest.host}>"),
            ("Call-ID", f"{os.urandom(10).hex()}@{host}"),
            ("CSeq", "1 MESSAGE"),
            ("Content-Type", "text/plain;charset=UTF-8"),
        ]
        req = SipMessage.request("MESSAGE", t.uri_for(recipient), headers, body.encode("utf-8"))
        ct = ClientTransaction(branch, req, t.dest, self.wheel, self.tv, self._send)
        ct.owner = None  # fire and forget: the response is absorbed
        self.client_txns[(branch, "MESSAGE")] = ct
        ct.start(now)
        return True

    def release_held(self, held_id: str, now: float) -> bool:
        """Deliver a held message to its number's PBX (operator release); False when unknown or no target."""
        if self.messaging is None:
            return False
        h = self.messaging.held.get(held_id)
        if h is None:
            return False
        entry = self.plan.lookup(h.recipient)
        targets = self.pool.hunt_list(entry.targets) if entry is not None else []
        if not targets:
            return False
        self.messaging.held.take(held_id)
        req = parse(h.raw)
        t = targets[0]
        via = req.top_via
        src = Destination(via.transport.lower(), via.host, via.port or 5060)  # as received: no Via fix-up
        fwd = self._prepare_forward(req, src, t.uri_for(uri_user(req.uri)), t.dest, False, routes=[])
        ct = ClientTransaction(fwd.branch, fwd, t.dest, self.wheel, self.tv, self._send)
        ct.owner = None
        self.client_txns[(fwd.branch, "MESSAGE")] = ct
        ct.start(now)
        return True

    # -- forwarding ---------------------------------------------------------------------------
    def _try_next(self, ctx: InviteContext, now: float) -> None:
        if ctx.client is not None and ctx.client.state is State.COMPLETED:
            ctx.client.owner = None  # the failed target only absorbs retransmissions now
        while True:
            ctx.index += 1
            if ctx.index >= len(ctx.targets) or ctx.cancelled:
                self._give_up(ctx, now)
                return
            target = ctx.targets[ctx.index]
            if ctx.index > 0:
                self.stats.failovers += 1
                if ctx.activity is not None:
                    ctx.activity.failovers += 1
            branch = self._new_branch()  # known here: the copy's Via is not parsed back to learn it
            fwd = self._prepare_forward(ctx.request, ctx.server.source, target.uri_for(ctx.called_user), target.dest, True,
                                        ctx.edits, branch=branch)
            ct = ClientTransaction(branch, fwd, target.dest, self.wheel, self.tv, self._send)
            ct.owner = ctx
            ct.index = ctx.index
            ctx.client = ct
            self.client_txns[(branch, fwd.method)] = ct
            if ctx.dialog is not None:
                ctx.dialog.callee = target.dest
            if ctx.activity is not None:
                ctx.activity.target = target.name
                if ctx.activity.direction == "outbound":
                    ctx.activity.carrier = target.name.split("#", 1)[0]
            ct.start(now)
            return

    def _give_up(self, ctx: InviteContext, now: float) -> None:
        """No target left: relay the best final response seen, or 408/487/503 of our own."""
        if ctx.done:
            return
        if ctx.cancelled:
            self._final_local(ctx, ctx.cancel_final, None, now)
        elif ctx.best is not None:
            self._relay_final(ctx, ctx.best, now)
        else:
            self._final_local(ctx, 408 if ctx.targets else 503, None, now)

    def _prepare_forward(self, req: SipMessage, src: Destination, new_uri: str | None,
                         dest: Destination, record_route: bool,
                         edits: list[tuple[str, str | None]] | None = None,
                         routes: list[str] | None = None, branch: str = "") -> SipMessage:
        """The copy of `req` sent to `dest` (RFC 3261 §16.6), built in one pass over the headers:
        our Via on top, received/rport on the previous one (RFC 3581), Max-Forwards decremented,
        Record-Route for initial requests (preloaded Routes dropped), or the remaining route set."""
        fwd = req.copy()
        if edits:
            apply_edits(fwd, edits)
        via = fwd.top_via
        fix_via = via.host != src.host or "rport" in via.params
        mf = req.max_forwards
        out: list[list] = [["via", "Via", self._via(dest.transport, branch or self._new_branch()), None]]
        if record_route:
            # RFC 5658 double Record-Route when the transports differ: the entry facing the next hop on top
            # (the callee's route set starts there), the entry facing the previous hop below it (the
            # caller's reversed route set reaches the edge through it).
            out.append(["record-route", "Record-Route", self._record_route(dest.transport), None])
            if dest.transport != src.transport:
                out.append(["record-route", "Record-Route", self._record_route(src.transport), None])
        elif routes:
            out.extend(["route", "Route", r, None] for r in routes)
        first_via = True
        for h in fwd.headers:
            name = h[0]
            if name == "via" and first_via:
                first_via = False
                if fix_via:
                    values = split_list(h[2])
                    top = values[0]
                    if via.host != src.host:
                        top += f";received={src.host}"
                    if "rport" in via.params:
                        top = _set_rport(top, src.port)
                    out.append(["via", h[1], ", ".join([top, *values[1:]]), None])
                    continue
            elif name == "max-forwards":
                continue
            elif name == "route" and (record_route or routes is not None):
                continue  # initial: preloaded routes never choose our next hop; in-dialog: replaced
            out.append(h)
        out.append(["max-forwards", "Max-Forwards", str((mf if mf is not None else 70) - 1), None])
        fwd.replace_headers(out)
        if new_uri is not None:
            fwd.set_uri(new_uri)
        return fwd

    def _upstream(self, ctx: InviteContext, resp: SipMessage) -> bytes:
        """A response as relayed upstream (RFC 3261 §16.7 step 3). When the edge wrote verstat into From
        (no PAI), the caller gets the From it sent back (§8.2.6.2: a response copies the request's From)."""
        data = _without_top_via(resp)
        if not ctx.from_edited:
            return data
        got = resp.get("from") or ""
        original = ctx.request.get("from") or ""
        if got == original:
            return data
        # Splice the value in the header bytes (the hot path); re-serialise only if the PBX reformatted it.
        needle = got.encode("utf-8", "surrogateescape")
        i = data.find(needle, 0, data.find(b"\r\n\r\n"))
        if needle and i >= 0:
            return data[:i] + original.encode("utf-8", "surrogateescape") + data[i + len(needle):]
        out = resp.copy()
        out.pop_first_value("via")
        out.set("from", original)
        return out.to_bytes()

    def _relay_final(self, ctx: InviteContext, resp: SipMessage, now: float) -> None:
        ctx.server.respond(resp.status, self._upstream(ctx, resp), now)
        self._count_status(resp.status)
        ctx.done = True
        self._finish(ctx, resp.status, now)
        self._release(ctx)

    def _on_cancel(self, msg: SipMessage, src: Destination, key: tuple, now: float) -> None:
        inv_key = (key[0], key[1], "INVITE")
        st = self.server_txns.get(inv_key)
        if st is None or st.terminated:
            self._reply(msg, src, 481)
            return
        cancel_st = ServerTransaction(key, msg, src, self.wheel, self.tv, self._send, now)
        self._add_server_txn(key, cancel_st)
        cancel_st.respond(200, make_response(msg, 200).to_bytes(), now)
        ctx = st.owner
        if not isinstance(ctx, InviteContext) or ctx.done:
            return
        ctx.cancelled = True
        ct = ctx.client
        if ct is None or ct.terminated:
            self._final_local(ctx, 487, None, now)
            return
        if ct.got_provisional:
            self._send_cancel(ct, now)
        else:
            ct.cancel_pending = True  # RFC 3261 §9.1: CANCEL only after a provisional response

    def _send_cancel(self, ct: ClientTransaction, now: float) -> None:
        """CANCEL the INVITE a context forwarded, once; RFC 3261 §9.1: with no final response 64*T1
        after the CANCEL, the INVITE transaction is considered cancelled and destroyed, and the caller
        gets our own final response."""
        ctx = ct.owner
        if isinstance(ctx, InviteContext):
            if ctx.cancel_sent:
                return
            ctx.cancel_sent = True
            self.wheel.arm(ctx, "cancel_wait", now + 64 * self.tv.t1)
        self.ua.cancel(ct, now)

    def _on_in_dialog(self, msg: SipMessage, src: Destination, key: tuple, now: float) -> None:
        dlg = self.dialogs.get(msg.call_id)
        if dlg is None:
            self._reply(msg, src, 481)
            return
        if not self._dialog_member(dlg, src):
            self.stats.unknown_source += 1
            self._reply(msg, src, 403, "Forbidden: not a party to this dialog")
            return
        branch = self._new_branch()
        fwd, dest = self._route_in_dialog(msg, src, dlg, branch=branch)
        if fwd is None or dest is None:
            self._reply(msg, src, 404, "Not Found: no route")
            return
        ctx = self._open_server(key, msg, src, now)
        if ctx is None:
            return
        ctx.dialog = dlg
        ct = ClientTransaction(branch, fwd, dest, self.wheel, self.tv, self._send)
        ct.owner = ctx
        ctx.client = ct
        ctx.index = 0
        ctx.targets = []
        self.client_txns[(branch, fwd.method)] = ct
        ct.start(now)

    def _dialog_member(self, dlg: ProxiedDialog, src: Destination) -> bool:
        """In-dialog requests come from the dialog's parties or from configured carriers/PBXs."""
        if src.host == dlg.caller.host or (dlg.callee is not None and src.host == dlg.callee.host):
            return True
        return self.peers.classify(src.host, src.port) is not None

    def _route_in_dialog(self, msg: SipMessage, src: Destination, dlg: ProxiedDialog,
                         branch: str = "") -> tuple[SipMessage | None, Destination | None]:
        """Loose routing (RFC 3261 §16.4, §16.12): pop our Route entries, send to the next Route or the R-URI."""
        routes = msg.routes
        own = self._own_routes
        while routes and routes[0] in own:  # the Record-Route values the edge wrote: no URI parse
            routes = routes[1:]
        while routes:
            try:
                u = parse_uri(uri_of(routes[0]))
            except ValueError:
                break
            if (u.host, u.port or 5060) not in self._ours:
                break
            routes = routes[1:]
        from_callee = dlg.callee is not None and (src.host, src.port) == (dlg.callee.host, dlg.callee.port)
        new_uri: str | None = None
        try:
            nxt = parse_uri(uri_of(routes[0])) if routes else parse_uri(msg.uri)
            if not routes and (nxt.host, nxt.port or 5060) in self._ours:
                # The UA addressed the edge itself with no route set: use the other side's Contact.
                new_uri = dlg.caller_contact if from_callee else dlg.callee_contact
                if not new_uri:
                    return None, None
                nxt = parse_uri(new_uri)
        except ValueError:
            return None, None
        if nxt.scheme == "tel" or not nxt.host:
            return None, None
        transport = nxt.transport
        dest = Destination(transport, nxt.host, nxt.port or (5061 if transport == "tls" else 5060))
        if (dest.host, dest.port) in self._ours:
            return None, None  # would loop back to the edge
        # Toward a stream peer, reuse the connection that peer opened (its Contact port is not where it listens).
        other = dlg.caller if from_callee else dlg.callee
        if other is not None and other.transport != "udp" and other.conn_id and other.host == dest.host:
            dest = other
        return self._prepare_forward(msg, src, new_uri, dest, False, routes=routes, branch=branch), dest

    def _forward_ack(self, msg: SipMessage, src: Destination, now: float) -> None:
        """ACK for a 2xx is end to end: forwarded statelessly along the route set (RFC 3261 §16.11)."""
        dlg = self.dialogs.get(msg.call_id)
        if dlg is None or not self._dialog_member(dlg, src):
            self.stats.dropped += 1
            return
        # Stateless forwarding needs a branch that is the same for every retransmission of this ACK.
        digest = hashlib.blake2s(f"{msg.branch}|{msg.call_id}".encode(), digest_size=8).hexdigest()
        fwd, dest = self._route_in_dialog(msg, src, dlg, branch=f"{MAGIC_COOKIE}a{digest}")
        if fwd is None or dest is None:
            self.stats.dropped += 1
            return
        self._send(fwd.to_bytes(), dest)
        if not dlg.confirmed:
            dlg.confirmed = True

    # -- responses ------------------------------------------------------------------------------
    def _on_response(self, msg: SipMessage, src: Destination, now: float) -> None:
        via = msg.top_via
        ct = self.client_txns.get((via.branch, msg.cseq_method))
        if ct is None:
            self._forward_stateless_response(msg, via)
            return
        if ct.owner is None:
            # Our own CANCEL, or a call already set up: a 2xx retransmission passes statelessly (RFC 6026).
            if ct.on_response(msg, now) and ct.method == "INVITE" and 200 <= msg.status < 300:
                self._forward_stateless_response(msg, via)
            return
        owner = ct.owner
        if isinstance(owner, InviteContext) and msg.via_count() < 2:
            self.stats.dropped += 1  # only our Via: nobody upstream to relay to (RFC 3261 §16.7 step 3)
            return
        if not ct.on_response(msg, now):
            self.stats.retransmissions_absorbed += 1
            return
        owner.on_response(ct, msg, now)  # a proxy context, a health probe or a screened call's leg

    def _forward_stateless_response(self, msg: SipMessage, via: Via) -> None:
        """A response no transaction knows (e.g. a late 2xx after Timer B): route it by its Via (§16.7)."""
        if (via.host, via.port or 5060) not in self._ours:
            self.stats.dropped += 1
            return
        out = msg.copy()
        out.pop_first_value("via")
        vias = out.vias
        if not vias:
            self.stats.dropped += 1
            return
        host, port = vias[0].response_address()
        self._send(out.to_bytes(), Destination(vias[0].transport.lower(), host, port))

    def context_response(self, ctx: InviteContext, ct: ClientTransaction, resp: SipMessage, now: float) -> None:
        """A response to a request the context forwarded: relay it, or fail over on a final one."""
        if ct is not ctx.client:
            # A response from a target we already moved on from (late): 2xx still goes upstream.
            if 200 <= resp.status < 300:
                self._relay_provisional_or_2xx(ctx, resp, now)
            return
        status = resp.status
        if status < 200:
            if ct.cancel_pending:
                ct.cancel_pending = False
                self._send_cancel(ct, now)
            if ctx.initial and ct.method == "INVITE":
                self.wheel.arm(ctx, "C", now + self.tv.timer_c)
            if status == 100:
                return
            self._relay_provisional_or_2xx(ctx, resp, now)
            return
        self.wheel.cancel(ctx, "C")
        if status < 300:
            self._relay_provisional_or_2xx(ctx, resp, now)
            return
        # Final non-2xx: fail over or relay.
        if ctx.best is None or _better(resp.status, ctx.best.status):
            ctx.best = resp
        if ctx.initial and status in FAILOVER_STATUSES and not ctx.cancelled and ctx.index + 1 < len(ctx.targets):
            log.info("failover", call_id=resp.get("call-id") or "", status=status, target=ctx.targets[ctx.index].name)
            self._try_next(ctx, now)
            return
        self._relay_final(ctx, resp, now)
        if ctx.request.method == "BYE" and ctx.dialog is not None:
            self.end_dialog(ctx.dialog, now)

    def _first_response(self, ctx: InviteContext, now: float) -> None:
        if not ctx.responded and ctx.initial:
            ctx.responded = True
            self.latency.observe(now - ctx.server.created)

    def _relay_provisional_or_2xx(self, ctx: InviteContext, resp: SipMessage, now: float) -> None:
        self._first_response(ctx, now)
        status = resp.status
        first_final = status >= 200 and not ctx.done
        ctx.server.respond(status, self._upstream(ctx, resp), now)
        if status < 200:
            return
        if first_final:
            self._count_status(status)
        if ctx.done:
            return
        ctx.done = True
        method = ctx.request.method
        dlg = ctx.dialog
        if ctx.initial and method == "INVITE":
            self.stats.calls_answered += 1
            if dlg is not None:
                dlg.answered_at = now
                dlg.callee_contact = contact_uri(resp)
            a = ctx.activity
            if a is not None:
                a.answered_at = now
                a.billable = True
            self._finish(ctx, status, now)
        elif ctx.initial:
            self._finish(ctx, status, now)
        elif method == "BYE" and dlg is not None:
            self.end_dialog(dlg, now)
        self._release(ctx)

    def end_dialog(self, dlg: ProxiedDialog, now: float) -> None:
        """The call is over (BYE answered, or it outlived `dialog_max_age`): count it and store its activity."""
        if self.dialogs.get(dlg.call_id) is not dlg:
            return
        self._close_dialog(dlg)
        self.stats.calls_ended += 1
        a = dlg.activity
        if a is not None:
            a.ended_at = now
            if a.answered_at:
                a.duration = round(now - a.answered_at, 3)
            self.ua.record(a)
            if self.gate is not None and a.calling_number and a.direction == "inbound":
                # Short-call history for Spam Detective (robocalls hang up within seconds of answer).
                self.gate.engine.observe_call_end(a.calling_number, bool(a.answered_at), a.duration, now)

    # -- timers -------------------------------------------------------------------------------
    def _on_timer(self, owner: ServerTransaction | ClientTransaction | TimerUser, name: str, now: float) -> None:
        """Transactions' RFC 3261 timers are followed up here (their tables); every other owner
        (a context's Timer C, a dialog's age limit, a probe, a screened call) handles its own."""
        if isinstance(owner, ServerTransaction):
            owner.on_timer(name, now)
            if owner.terminated:
                self._forget_server_txn(owner)
                owner.owner = None  # break the context <-> transaction cycle: freed without the GC
            return
        if isinstance(owner, ClientTransaction):
            event = owner.on_timer(name, now)
            if owner.terminated:
                k = (owner.branch, owner.method)
                if self.client_txns.get(k) is owner:
                    del self.client_txns[k]
            if event == "timeout" and owner.owner is not None:
                owner.owner.on_failure(owner, now)
            if owner.terminated:
                owner.owner = None
            return
        owner.on_timer(name, now)

    def context_timer(self, ctx: InviteContext, name: str, now: float) -> None:
        """A context's own timers: its turn for a shaped outbound MESSAGE, Timer C, the CANCEL wait."""
        if name == "a2p":
            if not ctx.done:
                self._try_next(ctx, now)  # a shaped outbound MESSAGE whose turn has come
            return
        if name == "C" and not ctx.done and ctx.client is not None:
            if ctx.client.got_provisional:
                # RFC 3261 §16.8: CANCEL the ringing target; if it never answers, 408 (§16.7 step 6:
                # no final response in the context), not 487: the caller asked for nothing.
                if not ctx.cancelled:
                    ctx.cancel_final = 408
                ctx.cancelled = True
                self._send_cancel(ctx.client, now)
            else:
                ctx.client.terminate()
                ctx.client.failed_with = 408
                self.context_failed(ctx, ctx.client, 408, now)
        elif name == "cancel_wait" and not ctx.done and ctx.client is not None:
            self._cancel_unanswered(ctx, now)

    def _cancel_unanswered(self, ctx: InviteContext, now: float) -> None:
        """64*T1 after our CANCEL the target still sent no final response: destroy the INVITE client
        transaction (§9.1) and answer the caller ourselves."""
        ct = ctx.client
        assert ct is not None
        log.warning("cancel_unanswered", call_id=ctx.request.call_id, status=ctx.cancel_final,
                    target=ctx.targets[ctx.index].name if 0 <= ctx.index < len(ctx.targets) else "")
        self.stats.cancels_unanswered += 1
        ct.terminate()
        k = (ct.branch, ct.method)
        if self.client_txns.get(k) is ct:
            del self.client_txns[k]
        ct.owner = None
        self._final_local(ctx, ctx.cancel_final, None, now)

    def context_failed(self, ctx: InviteContext, ct: ClientTransaction, status: int, now: float) -> None:
        """Timer B/F/C fired or the transport failed: fail over to the next target, or answer ourselves."""
        if ct is not ctx.client or ctx.done:
            return
        if ctx.initial and not ctx.cancelled and ctx.index + 1 < len(ctx.targets):
            log.info("failover", call_id=ctx.request.call_id, status=status, target=ctx.targets[ctx.index].name)
            self._try_next(ctx, now)
            return
        if ctx.best is not None and not ctx.cancelled:
            self._relay_final(ctx, ctx.best, now)
        else:
            self._final_local(ctx, ctx.cancel_final if ctx.cancelled else status, None, now)
        if ctx.request.method == "BYE" and ctx.dialog is not None:
            self.end_dialog(ctx.dialog, now)

    def transport_error(self, dest: Destination, now: float) -> None:
        """The adapter could not deliver to `dest` (ICMP unreachable, connect refused): fail those transactions."""
        for ct in list(self.client_txns.values()):
            if ct.dest[:3] == dest[:3] and not ct.terminated and ct.state in (State.CALLING, State.TRYING):
                ct.on_transport_error()
                k = (ct.branch, ct.method)
                if self.client_txns.get(k) is ct:
                    del self.client_txns[k]
                if ct.owner is not None:
                    ct.owner.on_failure(ct, now)

    # -- lifecycle ------------------------------------------------------------------------------
    def start_draining(self) -> None:
        self.draining = True

    def drained(self) -> bool:
        if self.b2bua is not None and self.b2bua.active:
            return False
        return not self.dialogs and not any(
            isinstance(st.owner, InviteContext) and not st.owner.done for st in self.server_txns.values()
        )


_REFUSAL_PHRASE = {
    "a2p.unregistered": "Forbidden: sending number not registered to an A2P campaign",
    "a2p.opted_out": "Forbidden: recipient opted out",
    "a2p.rate": "Service Unavailable: campaign throughput exceeded",
    "a2p.daily_cap": "Service Unavailable: daily cap reached",
}


def _better(a: int, b: int) -> bool:
    """RFC 3261 §16.7 step 6 (simplified): prefer 6xx, then the lowest class, 503 last."""
    def rank(s: int) -> tuple[int, int]:
        if s >= 600:
            return (0, s)
        if s == 503:
            return (9, s)
        return (s // 100, s)
    return rank(a) < rank(b)


def _without_top_via(resp: SipMessage) -> bytes:
    """The response minus its top Via value, cut out of the received bytes (RFC 3261 §16.7 step 3).
    Also when the Via values share one line (`Via: ours, theirs`, as sipp and some PBXs send it): the
    top value ends at the line's first comma unless a quote or '<' comes before it, so the cut needs no
    scan of the whole list and no re-serialisation of the message."""
    for h in resp.headers:
        if h[0] != "via":
            continue
        line = h[3]
        if line is None or "," not in h[2] or "\n" in line:
            break
        colon = line.find(":")
        comma = line.find(",", colon + 1)
        rest = line[comma + 1:].lstrip(" \t")
        top = line[colon + 1:comma]
        if colon <= 0 or comma < 0 or '"' in top or "<" in top or not rest or rest[0] == ",":
            break
        data = resp.to_bytes()
        old = b"\n" + line.encode("utf-8", "surrogateescape") + b"\r\n"
        i = data.find(old, 0, data.find(b"\r\n\r\n") + 2)
        if i < 0:
            break
        new = b"\n" + f"{line[:colon]}: {rest}".encode("utf-8", "surrogateescape") + b"\r\n"
        return data[:i] + new + data[i + len(old):]
    return resp.bytes_without_top_via()


def _set_rport(via: str, port: int) -> str:
    parts = via.split(";")
    for i, p in enumerate(parts):
        if p.strip().lower().split("=", 1)[0] == "rport":
            parts[i] = f"rport={port}"
    return ";".join(parts)


__all__ = ["Proxy", "Stats", "ProxiedDialog", "InviteContext"]
