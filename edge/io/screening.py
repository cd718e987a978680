"""The screening path: the edge answers the caller as a UAS (RFC 3261 §13.3), runs a captcha, an IVR
menu or a voicemail deposit over its own RTP session, and only then places a B-leg INVITE to the PBX
and relays RTP between the legs (anchored media, a B2BUA).

The flows (edge/media/menus.py, captcha.py, voicemail.py) are sans-IO state machines; this adapter
feeds them media events and timers and carries out their effects: prompts, recordings, SIP
signalling on both legs, activity updates. It uses the proxy's transaction layer for every message.
"""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import TYPE_CHECKING

import structlog

from edge.media import flow as fl
from edge.media.captcha import Captcha, CaptchaResult
from edge.media.dtmf import DtmfReceived as MediaDtmf
from edge.media.fax import FaxToneDetected
from edge.media.intercept import Intercept
from edge.media.menus import Menu, MenuResult
from edge.media.ports import PoolExhausted
from edge.media.recorder import RecordingFinished
from edge.media.schema import ScreeningMode
from edge.media.session import MediaTimedOut as MediaTimeout
from edge.media.session import PlaybackFinished as MediaPlaybackFinished
from edge.media.session import PlaybackProgress as MediaPlaybackProgress
from edge.media.session import RemoteLatched
from edge.media.voicemail import VoicemailDeposit, VoicemailResult
from edge.call.activity import log_contact_decided
from edge.call.admission import apply_edits
from edge.io.rtp_udp import MediaEngine, MediaSessionProtocol, NotAcceptable
from edge.policy.facts import Action, Evidence
from edge.policy.rules import BlockRule, RuleKind, Scope
from edge.sip.message import SipMessage, split_list, uri_of
from edge.sip.response import local_tag, make_response
from edge.sip.transaction import ClientTransaction, Destination
from edge.units import parse_duration

if TYPE_CHECKING:
    from edge.call.proxy import InviteContext, Proxy
    from edge.call.routing import Target
    from edge.io.sip_transport import SipHub

log = structlog.get_logger("edge.screening")

FAILOVER = frozenset({408, 500, 503})
SDP = "application/sdp"


class ScreeningService:
    """Owns every screened call; the proxy hands contacts over through `screen` and routes their
    in-dialog requests here by Call-ID."""

    def __init__(self, proxy: Proxy, hub: SipHub, engine: MediaEngine, on_rule=None, on_pass=None) -> None:
        self.proxy = proxy
        self.hub = hub
        self.engine = engine
        self.calls: dict[str, ScreenedCall] = {}  # A-leg and B-leg Call-IDs -> call
        self.on_rule = on_rule  # BlockCaller: persist the temporary rule
        self.on_pass = on_pass  # RememberPass: persist the captcha pass
        self.started = 0
        self.refused = 0
        self.fax_detected = 0  # screened calls sent to a fax target on their CNG tone

    def screen(self, ctx: InviteContext, now: float) -> None:
        call = ScreenedCall(self, ctx)
        self.calls[ctx.request.call_id] = call
        self.started += 1
        self.engine.spawn(call.start())

    def handle(self, msg: SipMessage, src: Destination, now: float) -> bool:
        """An in-dialog request, ACK or CANCEL for a screened call: True when it was ours."""
        call = self.calls.get(msg.call_id)
        if call is None:
            return False
        call.on_request(msg, src, now)
        return True

    def forget(self, call: ScreenedCall) -> None:
        for cid in (call.a_call_id, call.b_call_id):
            if cid and self.calls.get(cid) is call:
                del self.calls[cid]


class ScreenedCall:
    """Both legs of one screened contact: A (caller, answered by the edge) and B (PBX, after a pass)."""

    def __init__(self, svc: ScreeningService, ctx: InviteContext) -> None:
        self.svc = svc
        self.proxy = svc.proxy
        self.ctx = ctx
        self.req = ctx.request
        self.a_call_id = self.req.call_id
        self.b_call_id = ""
        self.entry = ctx.entry
        self.decision = ctx.decision
        self.activity = ctx.activity
        self.to_tag = local_tag(self.req)
        self.a: MediaSessionProtocol | None = None
        self.b: MediaSessionProtocol | None = None
        self.answer_sdp = ""
        self.a_answered = False
        self.a_acked = False
        self.a_final = False  # a final response (non-2xx) or BYE ended the A-leg
        self.ended = False
        self.local_cseq = 1
        self.flow: fl.Flow | None = None
        self.flows_run: list[str] = []
        self.timers = fl.TimerTable()
        self._flow_timer: asyncio.TimerHandle | None = None  # the flows' next deadline
        self._retx_timer: asyncio.TimerHandle | None = None  # 2xx retransmission until the ACK
        self.gate: fl.ScreeningGate | None = None
        self.playlists: dict[int, str] = {}  # engine playback id -> flow playlist id
        self.b_targets: list[Target] = []
        self.b_index = -1
        self.b_client: ClientTransaction | None = None
        self.b_request: SipMessage | None = None
        self.b_to_tag = ""
        self.b_route: list[str] = []
        self.b_remote = ""
        self.b_dest: Destination | None = None
        self.b_confirmed = False
        self.screening_value = ""
        self.log = log.bind(call_id=self.a_call_id)
        contact = self.req.get("contact")
        self.a_remote = uri_of(split_list(contact)[0]) if contact else ""
        self.a_routes = self.req.get_all("record-route")
        self.a_dest = ctx.server.source
        self.final_status = 480  # final response when the caller is let go before answer

    # -- A leg: answer -------------------------------------------------------------------------
    async def start(self) -> None:
        offer = self.req.body or None
        try:
            self.a, self.answer_sdp = await self.svc.engine.open(offer, name="caller")
        except NotAcceptable as exc:
            self._final(exc.status, exc.reason[:80])
            return
        except PoolExhausted:
            self.svc.refused += 1
            self._final(503, "Service Unavailable: no media ports")
            return
        except Exception:  # noqa: BLE001 - a media failure must answer the caller, not leak the call
            self.log.exception("screening_media_failed")
            self._final(500, "Server Internal Error")
            return
        if self.ctx.cancelled or self.ended:
            self._final(487, None)
            return
        self.a.on_event = self._media_event
        if self.decision is not None and self.decision.action is Action.INTERCEPT:
            # Never answered: early media only, then the final response (never billed).
            self.final_status = self.decision.sip_status or 410
            if self.activity is not None:
                self.activity.screening_mode = "early-media"
            now = time.time()
            self._start_flow(Intercept(log=self.log), now)
            self.svc.hub.flush()
            return
        if self.entry is not None and self.entry.fax_target:
            self.a.session.detect_fax_tone()  # a G.711 fax cannot solve a captcha: listen for its CNG
        media = self.entry.media if self.entry is not None else None
        mode = self.entry.screening if self.entry is not None else ScreeningMode.ANSWER
        fallback = parse_duration(media.early_media_fallback) if media is not None else 3.0
        self.gate = fl.ScreeningGate(mode, fallback)
        if self.activity is not None:
            self.activity.screening_mode = mode.value
        now = time.time()
        self._run(self.gate.start(now))
        self._start_flow(self._first_flow(), now)
        self.svc.hub.flush()

    def _first_flow(self) -> fl.Flow | None:
        d = self.decision
        media = self.entry.media if self.entry is not None else None
        if d is None or media is None:
            return None
        calling = self.activity.calling_number if self.activity is not None else ""
        if d.action is Action.CAPTCHA and media.captcha is not None:
            rng = random.Random(media.captcha.seed) if media.captcha.seed is not None else None
            return Captcha(media.captcha, calling, rng, log=self.log)
        if d.action is Action.MENU and media.menus:
            name = d.target_ref if d.target_ref in media.menus else next(iter(media.menus))
            return Menu(media.menus, name, max_transitions=media.max_menu_transitions, log=self.log)
        if d.action is Action.VOICEMAIL and media.voicemail:
            box = d.target_ref if d.target_ref in media.voicemail else next(iter(media.voicemail))
            return VoicemailDeposit(box, media.voicemail[box], log=self.log)
        return None

    def _start_flow(self, flow: fl.Flow | None, now: float) -> None:
        if flow is None:
            self.log.warning("screening_flow_missing", decision=self.decision.action.value if self.decision else "")
            self._hangup("screening not configured", now)
            return
        self.flow = flow
        self.flows_run.append(getattr(flow, "kind", type(flow).__name__.lower()))
        self._run(flow.start(now))

    # -- effects ---------------------------------------------------------------------------------
    def _run(self, effects: list) -> None:
        now = time.time()
        for effect in self.timers.apply(list(effects)):
            if self.gate is not None and isinstance(effect, fl.StartRecording):
                self._run(self.gate.admit(effect, now))
            self._effect(effect, now)
        self._arm_timers()

    def _effect(self, e: object, now: float) -> None:
        a = self.a
        if isinstance(e, fl.Play):
            if a is not None and not self.ended:
                try:
                    pid = a.play(list(e.items), interrupt=True)
                except KeyError as exc:
                    self.log.error("prompt_missing", prompt=str(exc))
                    self._deliver(fl.PlaybackFinished(e.playlist_id))
                    return
                self.playlists[pid] = e.playlist_id
        elif isinstance(e, fl.StopPlayback):
            if a is not None:
                a.stop_playback()
        elif isinstance(e, fl.StartRecording):
            if a is not None:
                directory = Path(e.directory or self.svc.engine.config.voicemail_dir) / e.box
                directory.mkdir(parents=True, exist_ok=True)
                name = f"{self.activity.id if self.activity else self.a_call_id}.wav"
                path = a.start_recording(str(directory / name), e.max_seconds, e.silence_seconds or None)
                if self.activity is not None:
                    self.activity.voicemail_path = path
        elif isinstance(e, fl.StopRecording):
            if a is not None:
                a.stop_recording()
        elif isinstance(e, fl.SendEarlyMedia):
            self._respond_a(183, self.answer_sdp)
        elif isinstance(e, fl.AnswerCall):
            self._answer_a(now)
        elif isinstance(e, fl.Forward):
            self.screening_value = e.screening
            self._forward(e.target_ref, now)
        elif isinstance(e, fl.Hangup):
            self._hangup(e.reason, now)
        elif isinstance(e, fl.Voicemail):
            media = self.entry.media if self.entry is not None else None
            if media is not None and e.box in media.voicemail:
                self._start_flow(VoicemailDeposit(e.box, media.voicemail[e.box], log=self.log), now)
            else:
                self._hangup(f"voicemail box {e.box!r} missing", now)
        elif isinstance(e, fl.BlockCaller):
            self._block(e, now)
        elif isinstance(e, fl.RememberPass):
            if self.proxy.gate is not None:
                self.proxy.gate.passes.remember(e.calling_number, e.until)
            if self.svc.on_pass is not None:
                self.svc.on_pass(e.calling_number, e.until)

    def _arm_timers(self) -> None:
        loop = self.svc.engine.loop
        if self._flow_timer is not None:
            self._flow_timer.cancel()
            self._flow_timer = None
        at = self.timers.next_at()
        if at is not None and not self.ended:
            self._flow_timer = loop.call_at(loop.time() + max(0.0, at - time.time()), self._timers_due)

    def _timers_due(self) -> None:
        now = time.time()
        for fired in self.timers.due(now):
            if self.gate is not None:
                self._run(self.gate.handle(fired, now))
            self._deliver(fired)
        self._arm_timers()
        self.svc.hub.flush()

    def _deliver(self, event: object) -> None:
        if self.flow is None or self.flow.finished or self.ended:
            return
        now = time.time()
        self._run(self.flow.handle(event, now))  # type: ignore[arg-type]
        if self.flow is not None and self.flow.finished:
            self._flow_done(now)

    def _media_event(self, ev: object) -> None:
        now = time.time()
        if isinstance(ev, MediaDtmf):
            self._deliver(fl.DtmfReceived(ev.digit, now, ev.source.value))
        elif isinstance(ev, FaxToneDetected):
            self._fax_heard(ev, now)
        elif isinstance(ev, MediaPlaybackFinished):
            pid = self.playlists.pop(ev.playback_id, None)
            if pid is not None and not ev.interrupted:
                self._deliver(fl.PlaybackFinished(pid))
        elif isinstance(ev, MediaPlaybackProgress):
            pid = self.playlists.get(ev.playback_id)
            if pid is not None:
                self._deliver(fl.PlaybackProgress(pid, ev.item_index))
        elif isinstance(ev, RemoteLatched):
            if self.gate is not None:
                self._run(self.gate.handle(fl.CallerMediaStarted(now), now))
        elif isinstance(ev, MediaTimeout):
            if self.activity is not None:
                self.activity.reason += "; media timeout"
            if self.b_confirmed:
                self._hangup("media timeout", now)
            else:
                self._deliver(fl.MediaTimedOut())
                if not self.ended and (self.flow is None or self.flow.finished):
                    self._hangup("media timeout", now)
        elif isinstance(ev, RecordingFinished):
            self._deliver(fl.RecordingStopped(ev.path, ev.seconds, ev.reason.value))
        self.svc.hub.flush()

    def _flow_done(self, now: float) -> None:
        result = self.flow.result if self.flow is not None else None
        a = self.activity
        if result is None or a is None:
            return
        detail = f"{result.outcome.value}: {result.detail}" if result.detail else result.outcome.value
        a.reason = f"{a.reason}; {self.flows_run[-1]} {detail}"
        if isinstance(result, CaptchaResult):
            a.evidence = list(a.evidence) + result.evidence()
            if self.proxy.gate is not None and a.calling_number:
                self.proxy.gate.engine.observe_screening(a.calling_number, result.passed, now)
        elif isinstance(result, VoicemailResult) and result.path:
            a.voicemail_path = result.path if not result.empty else ""
        elif isinstance(result, MenuResult):
            if result.selection:
                a.reason += f" (option {result.selection})"
            # A menu is a screening too: a caller who never makes a valid choice feeds failed_screenings,
            # a valid choice counts as a pass; a caller who just hung up says nothing either way.
            if (result.failed or result.selection) and self.proxy.gate is not None and a.calling_number:
                self.proxy.gate.engine.observe_screening(a.calling_number, not result.failed, now)

    def _fax_heard(self, ev: FaxToneDetected, now: float) -> None:
        """A fax machine is calling (CNG): it gets no captcha or menu but the number's fax target."""
        target = self.entry.fax_target if self.entry is not None else ""
        if not target or self.ended or self.b_targets:
            return  # no fax target, or already on its way to the PBX
        self.svc.fax_detected += 1
        self.flow = None  # the screening is abandoned: its result is not recorded, its timers go idle
        if self.a is not None:
            self.a.stop_playback()
        a = self.activity
        if a is not None:
            a.kind = "fax"
            a.reason = f"{a.reason}; fax calling tone (CNG) heard: sent to fax target {target}"
            a.evidence = list(a.evidence) + [Evidence("fax.cng", 0.0, f"1100 Hz burst of {ev.burst_ms} ms", "media.fax_cng")]
        self.log.info("fax_detected", target=target, burst_ms=ev.burst_ms, flows=self.flows_run)
        self.screening_value = "fax=cng"
        self._forward(target, now)

    def _block(self, e: fl.BlockCaller, now: float) -> None:
        calling = e.calling_number or (self.activity.calling_number if self.activity else "")
        if not calling or self.proxy.gate is None:
            return
        a = self.activity
        scope, scope_value = Scope.GLOBAL, ""
        if e.scope != "global":  # one customer's failed captcha must not block the caller for every customer
            if a is not None and a.customer:
                scope, scope_value = Scope.CUSTOMER, a.customer
            elif a is not None and a.called_number:
                scope, scope_value = Scope.NUMBER, a.called_number
        rule = BlockRule(
            id=f"captcha-fail:{scope_value or 'global'}:{calling}",
            kind=RuleKind.NUMBER,
            value=calling,
            scope=scope,
            scope_value=scope_value,
            expires_at=now + e.duration_s,
            source="runtime",
            created_at=now,
            created_by="captcha",
            reason=e.reason,
            activity_id=self.activity.id if self.activity else "",
        )
        rule = self.proxy.gate.engine.rules.add(rule)
        if self.svc.on_rule is not None:
            self.svc.on_rule(rule)

    # -- A leg signalling ---------------------------------------------------------------------------
    def _respond_a(self, status: int, sdp: str = "", reason: str | None = None) -> None:
        extra = [("Contact", self._contact(self.a_dest.transport))]
        extra += [("Record-Route", rr) for rr in self.a_routes]
        resp = make_response(self.req, status, reason, extra, sdp.encode() if sdp else b"",
                             SDP if sdp else None, to_tag=self.to_tag)
        data = resp.to_bytes()
        self.ctx.server.respond(status, data, time.time())
        if status >= 200:
            self.proxy._count_status(status)
            self._last_2xx = data

    def _answer_a(self, now: float) -> None:
        if self.a_answered or self.a_final:
            return
        self.a_answered = True
        self._respond_a(200, self.answer_sdp)
        self.ctx.done = True
        if self.activity is not None:
            self.activity.answered_at = now
            self.activity.billable = True
            self.activity.final_status = 200
        self._retransmit_2xx(self.proxy.tv.t1, now + 64 * self.proxy.tv.t1)

    def _retransmit_2xx(self, interval: float, give_up: float) -> None:
        """The UAS core retransmits its 2xx, T1 doubling up to T2, until the ACK arrives; after 64*T1
        without one it hangs up (RFC 3261 §13.3.1.4)."""

        def again() -> None:
            self._retx_timer = None
            if self.a_acked or self.ended:
                return
            if time.time() >= give_up:
                self.log.warning("ack_timeout")
                self._hangup("no ACK for 200 OK", time.time())
                self.svc.hub.flush()
                return
            self.proxy._send(self._last_2xx, self.a_dest)
            self.svc.hub.flush()
            self._retransmit_2xx(min(interval * 2, self.proxy.tv.t2), give_up)

        # Never sleep past the 64*T1 deadline: the give-up check must run on time.
        self._retx_timer = self.svc.engine.loop.call_later(min(interval, max(0.0, give_up - time.time())), again)

    def _final(self, status: int, reason: str | None) -> None:
        """End the A-leg before answer: never billed."""
        if self.a_final or self.a_answered:
            return
        self.a_final = True
        self._respond_a(status, reason=reason)
        self.ctx.done = True
        self._end(status, time.time())
        self.svc.hub.flush()

    def _contact(self, transport: str) -> str:
        host, port = self.proxy.local.get(transport) or next(iter(self.proxy.local.values()))
        tp = "" if transport == "udp" else f";transport={transport}"
        return f"<sip:edge@{host}:{port}{tp}>"

    def _request_a(self, method: str, extra: list[tuple[str, str]] | None = None, body: bytes = b"") -> None:
        """An in-dialog request from the edge to the caller (BYE): UAS side of the dialog."""
        self.local_cseq += 1
        branch = self.proxy._new_branch()
        headers = [("Via", self.proxy._via(self.a_dest.transport, branch))]
        headers += [("Route", r) for r in self.a_routes]
        to = self.req.get("from") or ""
        frm = f"{self.req.get('to') or ''};tag={self.to_tag}"
        headers += [("Max-Forwards", "70"), ("From", frm), ("To", to), ("Call-ID", self.a_call_id),
                    ("CSeq", f"{self.local_cseq} {method}")]
        headers += extra or []
        msg = SipMessage.request(method, self.a_remote or self.req.uri, headers, body)
        ct = ClientTransaction(branch, msg, self.a_dest, self.proxy.wheel, self.proxy.tv, self.proxy._send)
        ct.owner = self
        self.proxy.client_txns[(branch, method)] = ct
        ct.start(time.time())

    def _hangup(self, reason: str, now: float) -> None:
        if self.ended:
            return
        if self.a_answered and not self.a_final:
            self._request_a("BYE", [("Reason", f'SIP;cause=200;text="{reason}"')])
        elif not self.a_answered and not self.a_final:
            self.a_final = True
            status = self.final_status if reason != "caller hung up" else 487
            self._respond_a(status, reason=None if status != 480 else f"Temporarily Unavailable: {reason}"[:80])
            if self.activity is not None:
                self.activity.final_status = status
        if self.b_confirmed:
            self._request_b("BYE")
        self._end(200 if self.a_answered else (self.activity.final_status if self.activity else 480), now)

    def _end(self, status: int, now: float) -> None:
        if self.ended:
            return
        self.ended = True
        for h in (self._flow_timer, self._retx_timer):
            if h is not None:
                h.cancel()
        self._flow_timer = self._retx_timer = None
        for s in (self.a, self.b):
            if s is not None:
                s.close()
        a = self.activity
        if a is not None:
            if not a.final_status:
                a.final_status = status
            a.ended_at = now
            if a.answered_at:
                a.duration = round(now - a.answered_at, 3)
            a.billable = a.answered_at is not None
            self.proxy.activities.append(a)
            if self.proxy.cfg.logging.log_calls:
                log_contact_decided(self.log, a, a.final_status)
            self.log.info("screening_ended", flows=self.flows_run, status=a.final_status, answered=bool(a.answered_at),
                          duration=a.duration, reason=a.reason)
        self.svc.forget(self)

    # -- requests from either side ------------------------------------------------------------------
    def on_request(self, msg: SipMessage, src: Destination, now: float) -> None:
        method = msg.method
        from_b = msg.call_id == self.b_call_id and self.b_call_id != ""
        if method == "ACK":
            if not from_b:
                self.a_acked = True
                if self._retx_timer is not None:
                    self._retx_timer.cancel()
                    self._retx_timer = None
                if msg.body and self.a is not None and self.a.offer is not None:
                    try:
                        self.a.accept_answer(msg.body)  # delayed offer: the answer is in the ACK
                    except NotAcceptable as exc:
                        self.log.warning("ack_sdp_refused", reason=str(exc))
                        self._hangup("unacceptable SDP in ACK", now)
                # ACK for a non-2xx final is absorbed by the server transaction.
                if self.ctx.server.state.value == "completed":
                    self.ctx.server.on_ack(now)
            return
        if method == "CANCEL":
            self.proxy._reply(msg, src, 200)
            if not self.a_answered and not self.a_final:
                self.ctx.cancelled = True
                if self.activity is not None:
                    self.activity.reason += "; caller cancelled"
                self._deliver(fl.CallerHungUp())
                self.a_final = True
                self._respond_a(487)
                if self.b_client is not None and self.b_client.got_provisional:
                    self.proxy._send_cancel(self.b_client, now)
                self._end(487, now)
            return
        if method == "BYE":
            self.proxy._reply(msg, src, 200)
            if from_b:
                self.b_confirmed = False
                self._hangup("PBX hung up", now)
            else:
                self.a_final = True  # the caller ended the call: no BYE back
                self._deliver(fl.CallerHungUp())
                if self.b_confirmed:
                    self._request_b("BYE")
                    self.b_confirmed = False
                self._end(200, now)
            return
        if method == "INFO" and not from_b:
            ctype = (msg.get("content-type") or "").lower()
            if self.a is not None and msg.body and "dtmf" in ctype:
                self.a.feed_info_dtmf(msg.body, ctype)
            self.proxy._reply(msg, src, 200)
            return
        if method == "INVITE":
            # Session refresh / hold on either leg: keep our media, answer with our current SDP.
            sdp = self.answer_sdp if not from_b else ""
            resp = make_response(msg, 200, None, [("Contact", self._contact(src.transport))],
                                 sdp.encode() if sdp else b"", SDP if sdp else None)
            self.proxy._send(resp.to_bytes(), src)
            return
        self.proxy._reply(msg, src, 200 if method in ("OPTIONS", "UPDATE", "NOTIFY") else 405,
                          extra=None if method in ("OPTIONS", "UPDATE", "NOTIFY") else [("Allow", "INVITE, ACK, CANCEL, BYE, INFO, OPTIONS, UPDATE")])

    # -- B leg ------------------------------------------------------------------------------------------
    def _forward(self, target_ref: str, now: float) -> None:
        if self.entry is None:
            self._hangup("no targets", now)
            return
        names = (target_ref,) if target_ref else self.entry.targets
        self.b_targets = self.proxy.pool.hunt_list(tuple(names))
        if not self.b_targets:
            self._fallback("no PBX target in rotation", now)
            return
        self.svc.engine.spawn(self._open_b())

    async def _open_b(self) -> None:
        try:
            self.b, offer = await self.svc.engine.open_offer(name="pbx")
        except PoolExhausted:
            self._fallback("no media ports for the PBX leg", time.time())
            self.svc.hub.flush()
            return
        self.b_offer = offer
        self.b_call_id = f"b-{self.a_call_id}"
        self.svc.calls[self.b_call_id] = self
        self._try_b(time.time())
        self.svc.hub.flush()

    def _try_b(self, now: float) -> None:
        self.b_index += 1
        if self.b_index >= len(self.b_targets):
            self._fallback("PBX did not answer", now)
            return
        target = self.b_targets[self.b_index]
        src = self.req.copy()
        apply_edits(src, self.ctx.edits)
        branch = self.proxy._new_branch()
        host, port = self.proxy.local.get(target.dest.transport) or next(iter(self.proxy.local.values()))
        frm = src.get("from") or ""
        gt = frm.rfind(">")
        frm_base = frm if gt < 0 else frm[: gt + 1]
        headers = [
            ("Via", self.proxy._via(target.dest.transport, branch)),
            ("Max-Forwards", "70"),
            ("From", f"{frm_base};tag=b{self.to_tag}"),
            ("To", f"<{target.uri_for(self.ctx.called_user)}>"),
            ("Call-ID", self.b_call_id),
            ("CSeq", "1 INVITE"),
            ("Contact", f"<sip:edge@{host}:{port}>"),
        ]
        for name in ("p-asserted-identity", "privacy", "reason"):
            for v in src.get_all(name) if name != "reason" else ([src.get("reason")] if src.get("reason") else []):
                headers.append((name.title() if name != "p-asserted-identity" else "P-Asserted-Identity", v))
        headers.append(("X-Edge-Screening", self.screening_value or "screened"))
        msg = SipMessage.request("INVITE", target.uri_for(self.ctx.called_user), headers, self.b_offer.encode())
        msg.set("content-type", SDP)
        self.b_request = msg
        ct = ClientTransaction(branch, msg, target.dest, self.proxy.wheel, self.proxy.tv, self.proxy._send)
        ct.owner = self
        self.b_client = ct
        self.b_dest = target.dest
        self.proxy.client_txns[(branch, "INVITE")] = ct
        if self.activity is not None:
            self.activity.target = target.name
        ct.start(now)

    def on_response(self, ct: ClientTransaction, resp: SipMessage, now: float) -> None:
        if ct is not self.b_client or ct.method != "INVITE":
            return  # our BYE/CANCEL answered
        status = resp.status
        if status < 200:
            return
        if status < 300:
            if self.b_confirmed:
                self._ack_b()  # 2xx retransmission: our ACK was lost, send it again
                return
            self.b_to_tag = resp.to_tag
            contact = resp.get("contact")
            self.b_remote = uri_of(split_list(contact)[0]) if contact else self.b_request.uri
            self.b_route = list(reversed(resp.get_all("record-route")))
            self._ack_b()
            if self.ended:
                self._request_b("BYE")
                return
            try:
                if self.b is not None:
                    self.b.accept_answer(resp.body)
            except NotAcceptable as exc:
                self.log.warning("pbx_sdp_refused", reason=str(exc))
                self.b_confirmed = True
                self._hangup("PBX SDP not acceptable", now)
                return
            self.b_confirmed = True
            if self.a is not None and self.b is not None:
                self.a.bridge(self.b)
            if self.gate is not None:
                self._run(self.gate.bridged(now))
            if self.activity is not None:
                self.activity.reason += "; bridged to PBX"
            self.log.info("screening_bridged", target=self.activity.target if self.activity else "")
            return
        if status in FAILOVER and not self.ended:
            self._try_b(now)
        elif not self.ended:
            self._fallback(f"PBX answered {status}", now)

    def on_failure(self, ct: ClientTransaction, now: float) -> None:
        if ct is self.b_client and not self.b_confirmed and not self.ended:
            self._try_b(now)

    def _ack_b(self) -> None:
        assert self.b_request is not None and self.b_dest is not None
        branch = self.proxy._new_branch()
        headers = [("Via", self.proxy._via(self.b_dest.transport, branch))]
        headers += [("Route", r) for r in self.b_route]
        headers += [("Max-Forwards", "70"), ("From", self.b_request.get("from") or ""),
                    ("To", f"{self.b_request.get('to')};tag={self.b_to_tag}"), ("Call-ID", self.b_call_id),
                    ("CSeq", "1 ACK")]
        ack = SipMessage.request("ACK", self.b_remote, headers)
        self.proxy._send(ack.to_bytes(), self.b_dest)

    def _request_b(self, method: str) -> None:
        if self.b_request is None or self.b_dest is None:
            return
        branch = self.proxy._new_branch()
        headers = [("Via", self.proxy._via(self.b_dest.transport, branch))]
        headers += [("Route", r) for r in self.b_route]
        headers += [("Max-Forwards", "70"), ("From", self.b_request.get("from") or ""),
                    ("To", f"{self.b_request.get('to')};tag={self.b_to_tag}"), ("Call-ID", self.b_call_id),
                    ("CSeq", f"2 {method}")]
        msg = SipMessage.request(method, self.b_remote, headers)
        ct = ClientTransaction(branch, msg, self.b_dest, self.proxy.wheel, self.proxy.tv, self.proxy._send)
        ct.owner = self
        self.proxy.client_txns[(branch, method)] = ct
        ct.start(time.time())

    def _fallback(self, why: str, now: float) -> None:
        """The PBX could not take the call: the number's voicemail when it has one, else goodbye."""
        self.log.info("screening_fallback", reason=why)
        if self.activity is not None:
            self.activity.reason += f"; {why}"
        media = self.entry.media if self.entry is not None else None
        box = self.entry.policy.voicemail if self.entry is not None else ""
        if media is not None and box in media.voicemail and not self.ended:
            self._start_flow(VoicemailDeposit(box, media.voicemail[box], log=self.log), now)
        else:
            self._hangup(why, now)

__all__ = ["ScreeningService", "ScreenedCall"]
