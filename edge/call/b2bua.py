"""The screening B2BUA's SIP half, sans-IO: the edge answers the caller as a UAS (RFC 3261 §13.3),
runs a captcha, an IVR menu or a voicemail deposit, and only then places a B-leg INVITE to the PBX
and bridges the two (anchored media).

Signalling goes through the proxy's public UA seam (edge/call/ua.py) and every timer (2xx
retransmission, the flows' timers, early-media fallback) lives on the core's timer wheel. What
needs the RTP engine leaves as typed media effects (`media_effects()`: open a session, play,
record, bridge, close) that the asyncio media driver (edge/io/screening.py) carries out; it feeds
the results back (`media_opened`, `media_event`, `pbx_media_opened`, `answer_refused`, ...). `now`
comes in as an argument everywhere.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Callable, Union

import msgspec
import structlog

from edge.call.activity import log_contact_decided
from edge.call.admission import apply_edits
from edge.call.ua import FAILOVER_STATUSES, UserAgent
from edge.media import flow as fl
from edge.media.captcha import Captcha, CaptchaResult
from edge.media.fax import FaxToneDetected
from edge.media.events import DtmfReceived, MediaTimedOut, PlaybackFinished, PlaybackProgress, RemoteLatched
from edge.media.intercept import Intercept
from edge.media.menus import Menu, MenuResult
from edge.media.recorder import RecordingFinished
from edge.media.schema import ScreeningMode
from edge.media.session import MediaEvent
from edge.media.voicemail import VoicemailDeposit, VoicemailResult
from edge.policy.facts import Action, Evidence
from edge.policy.rules import BlockRule, RuleKind, Scope
from edge.sip.dialog import Dialog
from edge.sip.message import SipMessage
from edge.sip.response import local_tag, make_response
from edge.sip.transaction import ClientTransaction, Destination
from edge.units import parse_duration

if TYPE_CHECKING:
    from edge.call.proxy import InviteContext, Proxy
    from edge.call.routing import Target

log = structlog.get_logger("edge.screening")

SDP = "application/sdp"
ALLOW_IN_DIALOG = "INVITE, ACK, CANCEL, BYE, INFO, OPTIONS, UPDATE"
RETRANSMIT_2XX = "2xx"  # timer names on the wheel; the flows' own timers are prefixed FLOW
FLOW = "flow:"

# ------------------------------------------------------------------------------------ media effects


class OpenCallerMedia(msgspec.Struct, frozen=True):
    """Open the caller's RTP session answering `offer` (empty: the edge offers, delayed offer)."""

    call: str
    offer: bytes


class OpenPbxMedia(msgspec.Struct, frozen=True):
    """Open the PBX leg's RTP session with an offer of the edge's own."""

    call: str


class PlayPrompts(msgspec.Struct, frozen=True):
    call: str
    items: tuple[str, ...]
    playlist_id: str


class StopPrompts(msgspec.Struct, frozen=True):
    call: str


class RecordCaller(msgspec.Struct, frozen=True):
    """Record the caller into `path` (its directory may not exist yet)."""

    call: str
    path: str
    max_seconds: float
    silence_seconds: float


class StopRecording(msgspec.Struct, frozen=True):
    call: str


class AcceptCallerAnswer(msgspec.Struct, frozen=True):
    """The caller's SDP answer arrived in the ACK (delayed offer); ignored when no offer is outstanding."""

    call: str
    sdp: bytes


class ConnectPbx(msgspec.Struct, frozen=True):
    """Apply the PBX's SDP answer and bridge the legs; the driver reports `bridged` or `answer_refused`."""

    call: str
    sdp: bytes


class DetectFaxTone(msgspec.Struct, frozen=True):
    """Listen for a fax machine's CNG tone on the caller's leg (the number has a fax target)."""

    call: str


class FeedInfoDtmf(msgspec.Struct, frozen=True):
    call: str
    body: bytes
    content_type: str


class CloseMedia(msgspec.Struct, frozen=True):
    call: str


class PersistRule(msgspec.Struct, frozen=True):
    """A runtime block rule the store must keep (captcha failure)."""

    rule: BlockRule


class PersistPass(msgspec.Struct, frozen=True):
    calling_number: str
    until: float


MediaEffect = Union[OpenCallerMedia, OpenPbxMedia, PlayPrompts, StopPrompts, RecordCaller, StopRecording,
                    AcceptCallerAnswer, ConnectPbx, DetectFaxTone, FeedInfoDtmf, CloseMedia, PersistRule, PersistPass]


class B2bua:
    """Every screened call; the proxy hands contacts over with `screen` and their in-dialog
    requests with `handle` (by Call-ID of either leg)."""

    def __init__(self, proxy: Proxy, voicemail_dir: str) -> None:
        self.proxy = proxy  # pool (PBX hunt lists) and gate (policy) are read live: reloads apply
        self.ua: UserAgent = proxy.ua
        self.voicemail_dir = voicemail_dir
        self.calls: dict[str, ScreenedCall] = {}  # A-leg and B-leg Call-IDs -> call
        self.started = 0
        self.errors = 0  # faults inside a screened call (each ended that call)
        self.fax_detected = 0  # screened calls sent to a fax target on their CNG tone
        self._effects: list[MediaEffect] = []

    # -- from the proxy ----------------------------------------------------------------------------
    def screen(self, ctx: InviteContext, now: float) -> None:
        call = ScreenedCall(self, ctx)
        self.calls[call.a_call_id] = call
        self.started += 1
        self.emit(OpenCallerMedia(call.a_call_id, ctx.request.body))

    def handle(self, msg: SipMessage, src: Destination, now: float) -> bool:
        call = self.calls.get(msg.call_id)
        if call is None:
            return False
        call.on_request(msg, src, now)
        return True

    @property
    def active(self) -> int:
        return len({id(c) for c in self.calls.values()})

    # -- media effects out, results in ------------------------------------------------------------------
    def emit(self, effect: MediaEffect) -> None:
        self._effects.append(effect)

    def media_effects(self) -> list[MediaEffect]:
        """What the media driver must do, in order, since the last call."""
        out, self._effects = self._effects, []
        return out

    def knows(self, call_id: str) -> bool:
        """The call is still in progress (an engine result for a call that ended is discarded)."""
        return call_id in self.calls

    def _feed(self, call_id: str, now: float, what: Callable[[ScreenedCall], None]) -> None:
        """Hand a driver result to its call; a fault in one call ends that call, never the others."""
        call = self.calls.get(call_id)
        if call is None:
            return
        try:
            what(call)
        except Exception:  # noqa: BLE001 - a bug in one screened call must not leak it or stop the driver
            self.errors += 1
            call.log.exception("screening_core_error")
            call.abort(now)

    def media_opened(self, call_id: str, answer_sdp: str, now: float) -> None:
        self._feed(call_id, now, lambda c: c.media_opened(answer_sdp, now))

    def media_failed(self, call_id: str, status: int, reason: str | None, now: float) -> None:
        """The caller's session could not be opened (offer not acceptable, no ports, engine error)."""
        self._feed(call_id, now, lambda c: c.final(status, reason, now))

    def pbx_media_opened(self, call_id: str, offer_sdp: str, now: float) -> None:
        self._feed(call_id, now, lambda c: c.pbx_media_opened(offer_sdp, now))

    def pbx_media_failed(self, call_id: str, now: float) -> None:
        self._feed(call_id, now, lambda c: c.fallback("no media ports for the PBX leg", now))

    def media_event(self, call_id: str, event: MediaEvent, now: float) -> None:
        self._feed(call_id, now, lambda c: c.media_event(event, now))

    def prompt_missing(self, call_id: str, playlist_id: str, now: float) -> None:
        """A prompt could not be played: the flow hears its playlist as finished and goes on."""
        self._feed(call_id, now, lambda c: c.deliver(PlaybackFinished(playlist_id, now), now))

    def answer_refused(self, call_id: str, leg: str, reason: str, now: float) -> None:
        self._feed(call_id, now, lambda c: c.answer_refused(leg, reason, now))

    def bridged(self, call_id: str, now: float) -> None:
        self._feed(call_id, now, lambda c: c.bridged(now))

    def forget(self, call: ScreenedCall) -> None:
        for cid in (call.a_call_id, call.b_call_id):
            if cid and self.calls.get(cid) is call:
                del self.calls[cid]


class ScreenedCall:
    """Both legs of one screened contact: A (caller, answered by the edge) and B (PBX, after a pass).

    The transaction user of its B-leg INVITE and of its BYEs, and the owner of its timers."""

    def __init__(self, svc: B2bua, ctx: InviteContext) -> None:
        self.svc = svc
        self.ua = svc.ua
        self.ctx = ctx
        self.req = ctx.request
        self.a_call_id = self.req.call_id
        self.b_call_id = ""
        self.entry = ctx.entry
        self.decision = ctx.decision
        self.activity = ctx.activity
        self.to_tag = local_tag(self.req)
        self.a_dialog = Dialog.as_uas(self.req, self.to_tag)
        self.a_dest = ctx.server.source
        self.answer_sdp = ""
        self.a_answered = False
        self.a_acked = False
        self.a_final = False  # a final response (non-2xx) or BYE ended the A-leg
        self.ended = False
        self.flow: fl.Flow | None = None
        self.flows_run: list[str] = []
        self.answer_gate: fl.AnswerGate | None = None  # when the caller is answered (early media)
        self.last_2xx = b""
        self.retx_interval = 0.0
        self.retx_give_up = 0.0
        self.b_targets: list[Target] = []
        self.b_index = -1
        self.b_offer = ""
        self.b_client: ClientTransaction | None = None
        self.b_request: SipMessage | None = None
        self.b_dialog: Dialog | None = None
        self.b_dest: Destination | None = None
        self.b_confirmed = False
        self.screening_value = ""
        self.final_status = 480  # final response when the caller is let go before answer
        self.timers: dict[str, int] = {}  # name -> TimerWheel seq
        self.log = log.bind(call_id=self.a_call_id)

    # -- A leg: answer ------------------------------------------------------------------------------
    def media_opened(self, answer_sdp: str, now: float) -> None:
        self.answer_sdp = answer_sdp
        if self.ctx.cancelled or self.ended:
            self.final(487, None, now)
            return
        if self.decision is not None and self.decision.action is Action.INTERCEPT:
            # Never answered: early media only, then the final response (never billed).
            self.final_status = self.decision.sip_status or 410
            if self.activity is not None:
                self.activity.screening_mode = "early-media"
            self.start_flow(Intercept(log=self.log), now)
            return
        if self.entry is not None and self.entry.fax_target:
            self.svc.emit(DetectFaxTone(self.a_call_id))  # a G.711 fax cannot solve a captcha: listen for its CNG
        media = self.entry.media if self.entry is not None else None
        mode = self.entry.screening if self.entry is not None else ScreeningMode.ANSWER
        fallback = parse_duration(media.early_media_fallback) if media is not None else 3.0
        self.answer_gate = fl.AnswerGate(mode, fallback)
        if self.activity is not None:
            self.activity.screening_mode = mode.value
        self.run(self.answer_gate.start(now), now)
        self.start_flow(self.first_flow(), now)

    def first_flow(self) -> fl.Flow | None:
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

    def start_flow(self, flow: fl.Flow | None, now: float) -> None:
        if flow is None:
            self.log.warning("screening_flow_missing", decision=self.decision.action.value if self.decision else "")
            self.hangup("screening not configured", now)
            return
        self.flow = flow
        self.flows_run.append(getattr(flow, "kind", type(flow).__name__.lower()))
        self.run(flow.start(now), now)

    # -- flow effects --------------------------------------------------------------------------------
    def run(self, effects: list[fl.Effect], now: float) -> None:
        for effect in effects:
            if isinstance(effect, fl.StartTimer):
                if not self.ended:
                    self.ua.arm(self, FLOW + effect.name, effect.at)
                continue
            if isinstance(effect, fl.CancelTimer):
                self.ua.disarm(self, FLOW + effect.name)
                continue
            if self.answer_gate is not None and isinstance(effect, fl.StartRecording):
                self.run(self.answer_gate.admit(effect, now), now)
            self.effect(effect, now)

    def effect(self, e: fl.Effect, now: float) -> None:
        cid = self.a_call_id
        if isinstance(e, fl.Play):
            if not self.ended:
                self.svc.emit(PlayPrompts(cid, tuple(e.items), e.playlist_id))
        elif isinstance(e, fl.StopPlayback):
            if not self.ended:
                self.svc.emit(StopPrompts(cid))
        elif isinstance(e, fl.StartRecording):
            if not self.ended:
                name = self.activity.id if self.activity is not None else self.a_call_id
                path = f"{e.directory or self.svc.voicemail_dir}/{e.box}/{name}.wav"
                self.svc.emit(RecordCaller(cid, path, e.max_seconds, e.silence_seconds))
                if self.activity is not None:
                    self.activity.voicemail_path = path
        elif isinstance(e, fl.StopRecording):
            if not self.ended:
                self.svc.emit(StopRecording(cid))
        elif isinstance(e, fl.SendEarlyMedia):
            self.respond_a(183, now, self.answer_sdp)
        elif isinstance(e, fl.AnswerCall):
            self.answer_a(now)
        elif isinstance(e, fl.Forward):
            self.screening_value = e.screening
            self.forward(e.target_ref, now)
        elif isinstance(e, fl.Hangup):
            self.hangup(e.reason, now)
        elif isinstance(e, fl.Voicemail):
            media = self.entry.media if self.entry is not None else None
            if media is not None and e.box in media.voicemail:
                self.start_flow(VoicemailDeposit(e.box, media.voicemail[e.box], log=self.log), now)
            else:
                self.hangup(f"voicemail box {e.box!r} missing", now)
        elif isinstance(e, fl.BlockCaller):
            self.block(e, now)
        elif isinstance(e, fl.RememberPass):
            gate = self.svc.proxy.gate
            if gate is not None:
                gate.passes.remember(e.calling_number, e.until)
            self.svc.emit(PersistPass(e.calling_number, e.until))

    def on_timer(self, name: str, now: float) -> None:
        if name == RETRANSMIT_2XX:
            self.retransmit_2xx(now)
        elif name.startswith(FLOW):
            fired = fl.TimerFired(name[len(FLOW):])
            if self.answer_gate is not None:
                self.run(self.answer_gate.handle(fired, now), now)
            self.deliver(fired, now)

    def deliver(self, event: fl.Event, now: float) -> None:
        if self.flow is None or self.flow.finished or self.ended:
            return
        self.run(self.flow.handle(event, now), now)
        if self.flow is not None and self.flow.finished:
            self.flow_done(now)

    def media_event(self, ev: MediaEvent, now: float) -> None:
        if isinstance(ev, (DtmfReceived, PlaybackProgress)):
            self.deliver(ev, now)
        elif isinstance(ev, FaxToneDetected):
            self.fax_heard(ev, now)
        elif isinstance(ev, PlaybackFinished):
            if not ev.interrupted:  # a flow hears only of playlists that played out
                self.deliver(ev, now)
        elif isinstance(ev, RemoteLatched):
            if self.answer_gate is not None:
                self.run(self.answer_gate.handle(fl.CallerMediaStarted(now), now), now)
        elif isinstance(ev, MediaTimedOut):
            if self.activity is not None:
                self.activity.reason += "; media timeout"
            if self.b_confirmed:
                self.hangup("media timeout", now)
            else:
                self.deliver(ev, now)
                if not self.ended and (self.flow is None or self.flow.finished):
                    self.hangup("media timeout", now)
        elif isinstance(ev, RecordingFinished):
            self.deliver(fl.RecordingStopped(ev.path, ev.seconds, ev.reason.value), now)

    def flow_done(self, now: float) -> None:
        result = self.flow.result if self.flow is not None else None
        a = self.activity
        if result is None or a is None:
            return
        detail = f"{result.outcome.value}: {result.detail}" if result.detail else result.outcome.value
        a.reason = f"{a.reason}; {self.flows_run[-1]} {detail}"
        gate = self.svc.proxy.gate
        if isinstance(result, CaptchaResult):
            a.evidence = list(a.evidence) + result.evidence()
            if gate is not None and a.calling_number:
                gate.engine.observe_screening(a.calling_number, result.passed, now)
        elif isinstance(result, VoicemailResult) and result.path:
            a.voicemail_path = result.path if not result.empty else ""
        elif isinstance(result, MenuResult):
            if result.selection:
                a.reason += f" (option {result.selection})"
            # A menu is a screening too: a caller who never makes a valid choice feeds failed_screenings,
            # a valid choice counts as a pass; a caller who just hung up says nothing either way.
            if (result.failed or result.selection) and gate is not None and a.calling_number:
                gate.engine.observe_screening(a.calling_number, not result.failed, now)

    def fax_heard(self, ev: FaxToneDetected, now: float) -> None:
        """A fax machine is calling (CNG): it gets no captcha or menu but the number's fax target."""
        target = self.entry.fax_target if self.entry is not None else ""
        if not target or self.ended or self.b_targets:
            return  # no fax target, or already on its way to the PBX
        self.svc.fax_detected += 1
        self.flow = None  # the screening is abandoned: its result is not recorded, its timers go idle
        self.svc.emit(StopPrompts(self.a_call_id))
        a = self.activity
        if a is not None:
            a.kind = "fax"
            a.reason = f"{a.reason}; fax calling tone (CNG) heard: sent to fax target {target}"
            a.evidence = list(a.evidence) + [Evidence("fax.cng", 0.0, f"1100 Hz burst of {ev.burst_ms} ms", "media.fax_cng")]
        self.log.info("fax_detected", target=target, burst_ms=ev.burst_ms, flows=self.flows_run)
        self.screening_value = "fax=cng"
        self.forward(target, now)

    def block(self, e: fl.BlockCaller, now: float) -> None:
        calling = e.calling_number or (self.activity.calling_number if self.activity else "")
        gate = self.svc.proxy.gate
        if not calling or gate is None:
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
        self.svc.emit(PersistRule(gate.engine.rules.add(rule)))

    # -- A leg signalling ------------------------------------------------------------------------------
    def respond_a(self, status: int, now: float, sdp: str = "", reason: str | None = None) -> None:
        extra = [("Contact", self.ua.contact(self.a_dest.transport))]
        extra += [("Record-Route", rr) for rr in self.a_dialog.route_set]
        resp = make_response(self.req, status, reason, extra, sdp.encode() if sdp else b"",
                             SDP if sdp else None, to_tag=self.to_tag)
        data = resp.to_bytes()
        self.ctx.server.respond(status, data, now)
        if status >= 200:
            self.ua.count_status(status)
            self.last_2xx = data

    def answer_a(self, now: float) -> None:
        if self.a_answered or self.a_final:
            return
        self.a_answered = True
        self.respond_a(200, now, self.answer_sdp)
        self.ctx.done = True
        if self.activity is not None:
            self.activity.answered_at = now
            self.activity.billable = True
            self.activity.final_status = 200
        # The UAS core retransmits its 2xx, T1 doubling up to T2, until the ACK arrives; after 64*T1
        # without one it hangs up (RFC 3261 §13.3.1.4).
        t1 = self.ua.tv.t1
        self.retx_interval = t1
        self.retx_give_up = now + 64 * t1
        self.ua.arm(self, RETRANSMIT_2XX, now + t1)

    def retransmit_2xx(self, now: float) -> None:
        if self.a_acked or self.ended:
            return
        if now >= self.retx_give_up:
            self.log.warning("ack_timeout")
            self.hangup("no ACK for 200 OK", now)
            return
        self.ua.send(self.last_2xx, self.a_dest)
        self.retx_interval = min(self.retx_interval * 2, self.ua.tv.t2)
        # Never sleep past the 64*T1 deadline: the give-up check must run on time.
        self.ua.arm(self, RETRANSMIT_2XX, min(now + self.retx_interval, self.retx_give_up))

    def final(self, status: int, reason: str | None, now: float) -> None:
        """End the A-leg before answer: never billed."""
        if self.a_final or self.a_answered:
            return
        self.a_final = True
        self.respond_a(status, now, reason=reason)
        self.ctx.done = True
        self.end(status, now)

    def request_a(self, method: str, now: float, extra: list[tuple[str, str]] | None = None) -> None:
        """An in-dialog request from the edge to the caller (BYE): UAS side of the dialog."""
        via = self.ua.via(self.a_dest.transport, self.ua.new_branch())
        self.ua.start_client(self.a_dialog.request(method, via, extra), self.a_dest, self, now)

    def hangup(self, reason: str, now: float) -> None:
        if self.ended:
            return
        if self.a_answered and not self.a_final:
            self.request_a("BYE", now, [("Reason", f'SIP;cause=200;text="{reason}"')])
        elif not self.a_answered and not self.a_final:
            self.a_final = True
            status = self.final_status if reason != "caller hung up" else 487
            self.respond_a(status, now, reason=None if status != 480 else f"Temporarily Unavailable: {reason}"[:80])
            if self.activity is not None:
                self.activity.final_status = status
        if self.b_confirmed:
            self.request_b("BYE", now)
        self.end(200 if self.a_answered else (self.activity.final_status if self.activity else 480), now)

    def end(self, status: int, now: float) -> None:
        if self.ended:
            return
        self.ended = True
        self.ua.disarm_all(self)
        self.svc.emit(CloseMedia(self.a_call_id))
        a = self.activity
        if a is not None:
            if not a.final_status:
                a.final_status = status
            a.ended_at = now
            if a.answered_at:
                a.duration = round(now - a.answered_at, 3)
            a.billable = a.answered_at is not None
            self.ua.record(a)
            if self.svc.proxy.cfg.log_calls:
                log_contact_decided(self.log, a, a.final_status)
            self.log.info("screening_ended", flows=self.flows_run, status=a.final_status, answered=bool(a.answered_at),
                          duration=a.duration, reason=a.reason)
        self.svc.forget(self)

    def abort(self, now: float) -> None:
        """After a fault: let the caller go (500 before answer, BYE after) and release everything."""
        try:
            self.final_status = 500
            self.hangup("internal error", now)
        finally:
            if not self.ended:
                self.end(500, now)
            self.svc.forget(self)

    # -- requests from either side -----------------------------------------------------------------------
    def on_request(self, msg: SipMessage, src: Destination, now: float) -> None:
        method = msg.method
        from_b = msg.call_id == self.b_call_id and self.b_call_id != ""
        if method == "ACK":
            if not from_b:
                self.a_acked = True
                self.ua.disarm(self, RETRANSMIT_2XX)
                if msg.body:
                    self.svc.emit(AcceptCallerAnswer(self.a_call_id, msg.body))  # delayed offer: the answer is in the ACK
                # ACK for a non-2xx final is absorbed by the server transaction.
                if self.ctx.server.state.value == "completed":
                    self.ctx.server.on_ack(now)
            return
        if method == "CANCEL":
            self.ua.reply(msg, src, 200)
            if not self.a_answered and not self.a_final:
                self.ctx.cancelled = True
                if self.activity is not None:
                    self.activity.reason += "; caller cancelled"
                self.deliver(fl.CallerHungUp(), now)
                self.a_final = True
                self.respond_a(487, now)
                if self.b_client is not None and self.b_client.got_provisional:
                    self.ua.cancel(self.b_client, now)
                self.end(487, now)
            return
        if method == "BYE":
            self.ua.reply(msg, src, 200)
            if from_b:
                self.b_confirmed = False
                self.hangup("PBX hung up", now)
            else:
                self.a_final = True  # the caller ended the call: no BYE back
                self.deliver(fl.CallerHungUp(), now)
                if self.b_confirmed:
                    self.request_b("BYE", now)
                    self.b_confirmed = False
                self.end(200, now)
            return
        if method == "INFO" and not from_b:
            ctype = (msg.get("content-type") or "").lower()
            if msg.body and "dtmf" in ctype:
                self.svc.emit(FeedInfoDtmf(self.a_call_id, msg.body, ctype))
            self.ua.reply(msg, src, 200)
            return
        if method == "INVITE":
            # Session refresh / hold on either leg: keep our media, answer with our current SDP.
            sdp = self.answer_sdp if not from_b else ""
            resp = make_response(msg, 200, None, [("Contact", self.ua.contact(src.transport))],
                                 sdp.encode() if sdp else b"", SDP if sdp else None)
            self.ua.send(resp.to_bytes(), src)
            return
        ok = method in ("OPTIONS", "UPDATE", "NOTIFY")
        self.ua.reply(msg, src, 200 if ok else 405, extra=None if ok else [("Allow", ALLOW_IN_DIALOG)])

    def answer_refused(self, leg: str, reason: str, now: float) -> None:
        """The driver could not apply an SDP answer: the caller's (in the ACK) or the PBX's."""
        if leg == "pbx":
            self.log.warning("pbx_sdp_refused", reason=reason)
            self.b_confirmed = True
            self.hangup("PBX SDP not acceptable", now)
        else:
            self.log.warning("ack_sdp_refused", reason=reason)
            self.hangup("unacceptable SDP in ACK", now)

    # -- B leg ----------------------------------------------------------------------------------------------
    def forward(self, target_ref: str, now: float) -> None:
        if self.entry is None:
            self.hangup("no targets", now)
            return
        names = (target_ref,) if target_ref else self.entry.targets
        self.b_targets = self.svc.proxy.pool.hunt_list(tuple(names))
        if not self.b_targets:
            self.fallback("no PBX target in rotation", now)
            return
        self.svc.emit(OpenPbxMedia(self.a_call_id))

    def pbx_media_opened(self, offer: str, now: float) -> None:
        self.b_offer = offer
        self.b_call_id = f"b-{self.a_call_id}"
        self.svc.calls[self.b_call_id] = self
        self.try_b(now)

    def try_b(self, now: float) -> None:
        self.b_index += 1
        if self.b_index >= len(self.b_targets):
            self.fallback("PBX did not answer", now)
            return
        target = self.b_targets[self.b_index]
        src = self.req.copy()
        apply_edits(src, self.ctx.edits)
        frm = src.get("from") or ""
        gt = frm.rfind(">")
        frm_base = frm if gt < 0 else frm[: gt + 1]
        headers = [
            ("Via", self.ua.via(target.dest.transport, self.ua.new_branch())),
            ("Max-Forwards", "70"),
            ("From", f"{frm_base};tag=b{self.to_tag}"),
            ("To", f"<{target.uri_for(self.ctx.called_user)}>"),
            ("Call-ID", self.b_call_id),
            ("CSeq", "1 INVITE"),
            ("Contact", self.ua.contact(target.dest.transport)),
        ]
        for v in src.get_all("p-asserted-identity"):
            headers.append(("P-Asserted-Identity", v))
        for v in src.get_all("privacy"):
            headers.append(("Privacy", v))
        reason = src.get("reason")
        if reason:
            headers.append(("Reason", reason))
        headers.append(("X-Edge-Screening", self.screening_value or "screened"))
        msg = SipMessage.request("INVITE", target.uri_for(self.ctx.called_user), headers, self.b_offer.encode())
        msg.set("content-type", SDP)
        self.b_request = msg
        self.b_dest = target.dest
        if self.activity is not None:
            self.activity.target = target.name
        self.b_client = self.ua.start_client(msg, target.dest, self, now)

    def on_response(self, ct: ClientTransaction, resp: SipMessage, now: float) -> None:
        if ct is not self.b_client or ct.method != "INVITE":
            return  # our BYE/CANCEL answered
        status = resp.status
        if status < 200:
            return
        if status < 300:
            if self.b_dialog is not None:
                self.ack_b()  # 2xx retransmission: our ACK was lost, send it again
                return
            assert self.b_request is not None
            self.b_dialog = Dialog.as_uac(self.b_request, resp)
            self.ack_b()
            if self.ended:
                self.request_b("BYE", now)
                return
            self.svc.emit(ConnectPbx(self.a_call_id, resp.body))
            return
        if status in FAILOVER_STATUSES and not self.ended:
            self.try_b(now)
        elif not self.ended:
            self.fallback(f"PBX answered {status}", now)

    def bridged(self, now: float) -> None:
        """The driver applied the PBX's answer and bridged the legs."""
        self.b_confirmed = True
        if self.answer_gate is not None:
            self.run(self.answer_gate.bridged(now), now)
        if self.activity is not None:
            self.activity.reason += "; bridged to PBX"
        self.log.info("screening_bridged", target=self.activity.target if self.activity else "")

    def on_failure(self, ct: ClientTransaction, now: float) -> None:
        if ct is self.b_client and not self.b_confirmed and not self.ended:
            self.try_b(now)

    def ack_b(self) -> None:
        assert self.b_dialog is not None and self.b_dest is not None and self.b_request is not None
        via = self.ua.via(self.b_dest.transport, self.ua.new_branch())
        self.ua.send(self.b_dialog.ack(via, self.b_request.cseq_num).to_bytes(), self.b_dest)

    def request_b(self, method: str, now: float) -> None:
        if self.b_dialog is None or self.b_dest is None:
            return
        via = self.ua.via(self.b_dest.transport, self.ua.new_branch())
        self.ua.start_client(self.b_dialog.request(method, via), self.b_dest, self, now)

    def fallback(self, why: str, now: float) -> None:
        """The PBX could not take the call: the number's voicemail when it has one, else goodbye."""
        self.log.info("screening_fallback", reason=why)
        if self.activity is not None:
            self.activity.reason += f"; {why}"
        media = self.entry.media if self.entry is not None else None
        box = self.entry.policy.voicemail if self.entry is not None else ""
        if media is not None and box in media.voicemail and not self.ended:
            self.start_flow(VoicemailDeposit(box, media.voicemail[box], log=self.log), now)
        else:
            self.hangup(why, now)


__all__ = ["B2bua", "MediaEffect", "MediaEvent", "ScreenedCall", "OpenCallerMedia", "OpenPbxMedia", "PlayPrompts",
           "StopPrompts", "RecordCaller", "StopRecording", "AcceptCallerAnswer", "ConnectPbx", "DetectFaxTone", "FeedInfoDtmf",
           "CloseMedia", "PersistRule", "PersistPass"]
