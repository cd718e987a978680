"""The screening B2BUA's media driver: carries out the media effects of the sans-IO B2BUA
(edge/call/b2bua.py) on the RTP engine and feeds the results and media events back.

All SIP signalling, timers and decisions live in the core; this adapter only opens and closes
RTP sessions, plays prompts, records, bridges, and reports what the sessions saw. `now` for the
core is the wall clock at the moment a result arrives (the same clock the SIP adapter uses).
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Callable

import structlog

from edge.call import b2bua as b2
from edge.io.rtp_udp import MediaEngine, MediaSessionProtocol, NotAcceptable
from edge.media.ports import PoolExhausted
from edge.media.session import MediaEvent
from edge.policy.rules import BlockRule

log = structlog.get_logger("edge.screening")


class MediaDriver:
    """The RTP sessions of every screened call (caller leg `a`, PBX leg `b`), keyed by A-leg Call-ID."""

    def __init__(self, b2bua: b2.B2bua, engine: MediaEngine, flush: Callable[[], None],
                 on_rule: Callable[[BlockRule], None] | None = None,
                 on_pass: Callable[[str, float], None] | None = None) -> None:
        self.b2bua = b2bua
        self.engine = engine
        self.flush = flush  # hand the core's new output to the SIP adapter (which runs this driver again)
        self.on_rule = on_rule  # persist a runtime block rule
        self.on_pass = on_pass  # persist a captcha pass
        self.sessions: dict[str, dict[str, MediaSessionProtocol]] = {}
        self.refused = 0  # caller sessions refused for lack of RTP ports

    def run(self) -> None:
        """Carry out every media effect the core queued (results may queue more)."""
        while True:
            effects = self.b2bua.media_effects()
            if not effects:
                return
            for effect in effects:
                try:
                    self._execute(effect)
                except Exception:  # noqa: BLE001 - one call's media failure must not stop the others
                    log.exception("media_effect_failed", effect=type(effect).__name__)

    def _leg(self, call: str, leg: str) -> MediaSessionProtocol | None:
        return self.sessions.get(call, {}).get(leg)

    def _execute(self, e: b2.MediaEffect) -> None:
        now = time.time()
        if isinstance(e, b2.OpenCallerMedia):
            self.engine.spawn(self._open_caller(e.call, e.offer))
        elif isinstance(e, b2.OpenPbxMedia):
            self.engine.spawn(self._open_pbx(e.call))
        elif isinstance(e, b2.PlayPrompts):
            a = self._leg(e.call, "a")
            if a is not None:
                try:
                    a.play(list(e.items), interrupt=True, playlist_id=e.playlist_id)
                except KeyError as exc:
                    log.error("prompt_missing", call_id=e.call, prompt=str(exc))
                    self.b2bua.prompt_missing(e.call, e.playlist_id, now)
        elif isinstance(e, b2.StopPrompts):
            a = self._leg(e.call, "a")
            if a is not None:
                a.stop_playback()
        elif isinstance(e, b2.RecordCaller):
            a = self._leg(e.call, "a")
            if a is not None:
                Path(e.path).parent.mkdir(parents=True, exist_ok=True)
                a.start_recording(e.path, e.max_seconds, e.silence_seconds or None)
        elif isinstance(e, b2.StopRecording):
            a = self._leg(e.call, "a")
            if a is not None:
                a.stop_recording()
        elif isinstance(e, b2.AcceptCallerAnswer):
            a = self._leg(e.call, "a")
            if a is not None and a.offer is not None:
                try:
                    a.accept_answer(e.sdp)
                except NotAcceptable as exc:
                    self.b2bua.answer_refused(e.call, "caller", str(exc), now)
        elif isinstance(e, b2.ConnectPbx):
            a, b = self._leg(e.call, "a"), self._leg(e.call, "b")
            if b is None:
                return
            try:
                b.accept_answer(e.sdp)
            except NotAcceptable as exc:
                self.b2bua.answer_refused(e.call, "pbx", str(exc), now)
                return
            if a is not None:
                a.bridge(b)
            self.b2bua.bridged(e.call, now)
        elif isinstance(e, b2.DetectFaxTone):
            a = self._leg(e.call, "a")
            if a is not None:
                a.session.detect_fax_tone()
        elif isinstance(e, b2.FeedInfoDtmf):
            a = self._leg(e.call, "a")
            if a is not None:
                a.feed_info_dtmf(e.body, e.content_type)
        elif isinstance(e, b2.CloseMedia):
            for s in self.sessions.pop(e.call, {}).values():
                s.close()
        elif isinstance(e, b2.PersistRule):
            if self.on_rule is not None:
                self.on_rule(e.rule)
        elif isinstance(e, b2.PersistPass):
            if self.on_pass is not None:
                self.on_pass(e.calling_number, e.until)

    async def _open_caller(self, call: str, offer: bytes) -> None:
        try:
            a, answer = await self.engine.open(offer or None, name="caller")
        except NotAcceptable as exc:
            self.b2bua.media_failed(call, exc.status, exc.reason[:80], time.time())
        except PoolExhausted:
            self.refused += 1
            self.b2bua.media_failed(call, 503, "Service Unavailable: no media ports", time.time())
        except Exception:  # noqa: BLE001 - a media failure must answer the caller, not leak the call
            log.exception("screening_media_failed", call_id=call)
            self.b2bua.media_failed(call, 500, "Server Internal Error", time.time())
        else:
            if not self.b2bua.knows(call):
                a.close()  # the caller left while the session opened
                return
            self.sessions.setdefault(call, {})["a"] = a
            a.on_event = lambda ev: self._event(call, ev)
            self.b2bua.media_opened(call, answer, time.time())
        self.flush()

    async def _open_pbx(self, call: str) -> None:
        try:
            b, offer = await self.engine.open_offer(name="pbx")
        except PoolExhausted:
            self.b2bua.pbx_media_failed(call, time.time())
        else:
            if not self.b2bua.knows(call) or call not in self.sessions:
                b.close()
                return
            self.sessions[call]["b"] = b
            self.b2bua.pbx_media_opened(call, offer, time.time())
        self.flush()

    def _event(self, call: str, ev: MediaEvent) -> None:
        self.b2bua.media_event(call, ev, time.time())
        self.flush()


__all__ = ["MediaDriver"]
