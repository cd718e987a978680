"""The screening B2BUA's SIP half (edge/call/b2bua.py) on the fake clock, without sockets.

The proxy harness feeds a carrier stub's requests and PBX stubs' responses through the core; a
media stub plays the driver's part (sessions open at once, the PBX answer bridges) and records every
media effect the core asks for, so the tests assert them.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from edge.call import b2bua as b2
from edge.call.admission import Gatekeeper
from edge.call.proxy import Proxy
from edge.config import EdgeConfig
from edge.dialplan.load import load_dialplans
from edge.media.events import DtmfReceived, DtmfSource, PlaybackFinished
from edge.policy.pipeline import PolicyEngine
from edge.sip.message import SipMessage, parse
from edge.sip.transaction import Destination
from edge.stir.schema import StirConfig
from tests.call.proxy_harness import CARRIER, PBX_A, PBX_B, Harness, answer, config_dict
from tests.sip.samples import SDP, invite, msg

MENU_NUMBER = "+12025550100"
EARLY_NUMBER = "+12025550101"
CAPTCHA_NUMBER = "+12025550102"
PLAN = """
customer = "acme"
targets = ["pbx-a", "pbx-b"]

[[numbers]]
number = "+12025550100"
action = "menu"

[[numbers]]
number = "+12025550101"
action = "menu"
screening = "early-media"

[[numbers]]
number = "+12025550102"
action = "captcha"

[captcha]
length = 3
seed = 7
pass_memory = "0s"

[menus.main]
greeting = "menu-default"
first_digit_timeout = "60s"
[menus.main.options]
"1" = { forward = "pbx-a" }
"2" = { forward = "pbx-b" }

[voicemail.main]
greeting = "voicemail-greeting"
max_length = "10s"
silence = "0s"
"""
ANSWER_SDP = "v=0\r\no=edge 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0\r\n"
OFFER_SDP = ANSWER_SDP.replace("20000", "20002")
T1 = 0.5  # the harness config's timers


class ScreeningHarness(Harness):
    """A proxy with a gate (so dialplan actions apply) and the B2BUA attached; `effects` are the
    media effects the core emitted, in order; the media stub answers them like the driver would."""

    def __init__(self, tmp_path: Path) -> None:
        (tmp_path / "acme.toml").write_text(PLAN)
        plan, _ = load_dialplans(tmp_path, {"pbx-a", "pbx-b"})
        cfg = msgspec.convert(config_dict(), EdgeConfig)
        proxy = Proxy(cfg.call_settings(), plan, Gatekeeper(PolicyEngine(), StirConfig()))
        self.b2bua = b2.B2bua(proxy, "vm")
        proxy.b2bua = self.b2bua
        self.effects: list[b2.MediaEffect] = []
        self.refuse_pbx_answer = False
        super().__init__(proxy)

    def take(self) -> list[tuple[SipMessage, Destination]]:
        sent: list[tuple[bytes, Destination]] = []
        while True:
            effects = self.b2bua.media_effects()
            for e in effects:
                self.effects.append(e)
                self._media_stub(e)
            out = self.proxy.datagrams_to_send()
            sent += out
            if not effects and not out:
                break
        self.activities += self.proxy.activities_to_store()
        return [(parse(data), dest) for data, dest in sent]

    def _media_stub(self, e: b2.MediaEffect) -> None:
        if isinstance(e, b2.OpenCallerMedia):
            self.b2bua.media_opened(e.call, ANSWER_SDP, self.now)
        elif isinstance(e, b2.OpenPbxMedia):
            self.b2bua.pbx_media_opened(e.call, OFFER_SDP, self.now)
        elif isinstance(e, b2.ConnectPbx):
            if self.refuse_pbx_answer:
                self.b2bua.answer_refused(e.call, "pbx", "no common codec", self.now)
            else:
                self.b2bua.bridged(e.call, self.now)

    def of(self, kind: type) -> list:
        return [e for e in self.effects if isinstance(e, kind)]

    def dtmf(self, call_id: str, digit: str) -> list[tuple[SipMessage, Destination]]:
        self.b2bua.media_event(call_id, DtmfReceived(digit, DtmfSource.RFC4733, self.now), self.now)
        return self.take()


def carrier_invite(number: str = MENU_NUMBER, **kw) -> bytes:
    return invite(f"sip:{number}@127.0.0.1:5060", via_host="192.0.2.5:5080", body=SDP,
                  extra=("Content-Type: application/sdp",), **kw)


def to(out: list[tuple[SipMessage, Destination]], dest: Destination) -> list[SipMessage]:
    return [m for m, d in out if d == dest]


def statuses(out: list[tuple[SipMessage, Destination]], dest: Destination = CARRIER) -> list[int]:
    return [m.status for m in to(out, dest) if m.status]


def ack_for(ok: SipMessage, branch: str = "z9hG4bKack1", body: str = "") -> bytes:
    return msg(f"ACK sip:edge@127.0.0.1:5060 SIP/2.0", f"Via: SIP/2.0/UDP 192.0.2.5:5080;branch={branch};rport",
               f"From: {ok.get('from')}", f"To: {ok.get('to')}", f"Call-ID: {ok.call_id}", "CSeq: 1 ACK",
               "Max-Forwards: 70", body=body)


def caller_request(method: str, ok: SipMessage, cseq: int, branch: str, body: str = "") -> bytes:
    extra = ("Content-Type: application/sdp",) if body else ()
    return msg(f"{method} sip:edge@127.0.0.1:5060 SIP/2.0", f"Via: SIP/2.0/UDP 192.0.2.5:5080;branch={branch};rport",
               f"From: {ok.get('from')}", f"To: {ok.get('to')}", f"Call-ID: {ok.call_id}", f"CSeq: {cseq} {method}",
               "Contact: <sip:+12025550111@192.0.2.5:5080>", "Max-Forwards: 70", *extra, body=body)


def answered(h: ScreeningHarness, ack: bool = True) -> SipMessage:
    """A menu call the edge answered (answer mode); the caller ACKs unless told not to."""
    out = h.feed(carrier_invite())
    assert statuses(out) == [100, 200]
    ok = to(out, CARRIER)[1]
    assert ok.body.decode() == ANSWER_SDP and ok.to_tag
    assert [type(e) for e in h.effects] == [b2.OpenCallerMedia, b2.PlayPrompts]
    assert h.effects[0] == b2.OpenCallerMedia("call-1@carrier", SDP.encode())
    if ack:
        assert h.feed(ack_for(ok)) == []
    return ok


def captcha_passed(h: ScreeningHarness) -> list[tuple[SipMessage, Destination]]:
    """A captcha call answered, its code spoken and keyed: what the edge sent after the last digit."""
    out = h.feed(carrier_invite(CAPTCHA_NUMBER))
    assert statuses(out) == [100, 200]
    h.feed(ack_for(to(out, CARRIER)[1]))
    play = h.of(b2.PlayPrompts)[0]
    code = [item.removeprefix("digit-") for item in play.items if item.startswith("digit-")]
    assert len(code) == 3
    h.b2bua.media_event("call-1@carrier", PlaybackFinished(play.playlist_id, h.now), h.now)
    h.take()
    out = []
    for digit in code:
        out += h.dtmf("call-1@carrier", digit)
    return out


def bridged(h: ScreeningHarness, target: Destination = PBX_A) -> tuple[SipMessage, SipMessage]:
    """Menu option 1 -> the PBX answers 200 -> ACK and bridge; returns (caller's 200, B-leg INVITE)."""
    ok = answered(h)
    out = h.dtmf("call-1@carrier", "1")
    b_invite = to(out, target)[0]
    assert b_invite.method == "INVITE" and b_invite.body.decode() == OFFER_SDP
    assert b_invite.get("x-edge-screening") == "menu=main;option=1"
    out = h.feed(answer(b_invite, 200, body=ANSWER_SDP, contact="sip:pbx@10.0.0.1:5070"), target)
    acks = to(out, target)
    assert [m.method for m in acks] == ["ACK"] and acks[0].uri == "sip:pbx@10.0.0.1:5070"
    assert h.of(b2.ConnectPbx) == [b2.ConnectPbx("call-1@carrier", ANSWER_SDP.encode())]
    return ok, b_invite


# -- answer, 2xx retransmission, ACK -------------------------------------------------------------------

def test_b2bua_answer_retransmits_2xx_until_ack(tmp_path) -> None:
    h = ScreeningHarness(tmp_path)
    ok = answered(h, ack=False)
    assert statuses(h.advance(T1)) == [200]  # T1
    assert statuses(h.advance(2 * T1)) == [200]  # 2*T1
    assert h.feed(ack_for(ok)) == []
    assert statuses(h.advance(60.0)) == []
    assert h.b2bua.active == 1 and not h.of(b2.CloseMedia)


def test_b2bua_ack_never_arrives_bye_at_64_t1(tmp_path) -> None:
    h = ScreeningHarness(tmp_path)
    answered(h, ack=False)
    start = h.now
    out = h.advance(64 * T1 - 0.01)
    retransmits = statuses(out)
    assert set(retransmits) == {200} and len(retransmits) == 10  # T1 doubling to T2: 0.5, 1, 2, then every 4 s
    assert not [m for m in to(out, CARRIER) if m.method == "BYE"]
    out = h.advance(0.02)
    bye = [m for m in to(out, CARRIER) if m.method == "BYE"]
    assert len(bye) == 1 and bye[0].get("reason") == 'SIP;cause=200;text="no ACK for 200 OK"'
    assert h.now - start >= 64 * T1
    assert h.of(b2.CloseMedia) == [b2.CloseMedia("call-1@carrier")]
    assert h.b2bua.active == 0
    a = h.activities[-1]
    assert a.final_status == 200 and a.ended_at == pytest.approx(start + 64 * T1, abs=0.02)


# -- the caller leaves during screening ------------------------------------------------------------------

def test_b2bua_cancel_during_early_media_screening(tmp_path) -> None:
    h = ScreeningHarness(tmp_path)
    out = h.feed(carrier_invite(EARLY_NUMBER))
    assert statuses(out) == [100, 183]
    out = h.feed(invite(f"sip:{EARLY_NUMBER}@127.0.0.1:5060", via_host="192.0.2.5:5080", method="CANCEL"))
    assert statuses(out) == [200, 487]
    assert h.of(b2.CloseMedia) == [b2.CloseMedia("call-1@carrier")]
    a = h.activities[-1]
    assert (a.final_status, a.billable, a.answered_at) == (487, False, None)
    assert "caller cancelled" in a.reason
    assert h.b2bua.active == 0
    assert statuses(h.advance(T1)) == [487]  # the server transaction retransmits until the ACK
    assert h.feed(invite(f"sip:{EARLY_NUMBER}@127.0.0.1:5060", via_host="192.0.2.5:5080", method="ACK")) == []
    assert statuses(h.advance(60.0)) == []  # nothing left armed for the call


def test_b2bua_cancel_while_media_opens(tmp_path) -> None:
    """The CANCEL wins the race with the engine: 487, and the late session result is discarded."""
    h = ScreeningHarness(tmp_path)
    h.proxy.receive(carrier_invite(), CARRIER, h.now)
    assert h.b2bua.media_effects() == [b2.OpenCallerMedia("call-1@carrier", SDP.encode())]
    out = h.feed(invite(via_host="192.0.2.5:5080", method="CANCEL"))
    assert statuses(out) == [100, 200, 487]
    assert not h.b2bua.knows("call-1@carrier")
    h.b2bua.media_opened("call-1@carrier", ANSWER_SDP, h.now)  # the driver closes what it opened
    assert statuses(h.take()) == []


def test_b2bua_caller_bye_during_screening(tmp_path) -> None:
    h = ScreeningHarness(tmp_path)
    ok = answered(h)
    h.now += 7.0
    out = h.feed(caller_request("BYE", ok, 2, "z9hG4bKbye1"))
    assert statuses(out) == [200]
    assert h.of(b2.CloseMedia) == [b2.CloseMedia("call-1@carrier")]
    a = h.activities[-1]
    assert a.final_status == 200 and a.billable and a.duration == pytest.approx(7.0)
    assert h.b2bua.active == 0


# -- the PBX leg ------------------------------------------------------------------------------------------

def test_b2bua_pbx_timeout_fails_over_then_486_falls_back_to_voicemail(tmp_path) -> None:
    h = ScreeningHarness(tmp_path)
    out = captcha_passed(h)
    first = to(out, PBX_A)
    assert [m.method for m in first] == ["INVITE"]
    assert first[0].get("x-edge-screening") == "captcha=passed;attempts=1"
    out = h.advance(8.0)  # timer_b: pbx-a never answers
    second = [m for m in to(out, PBX_B) if m.method == "INVITE"]
    assert len(second) == 1 and second[0].call_id == first[0].call_id and second[0].branch != first[0].branch
    plays_before = len(h.of(b2.PlayPrompts))
    out = h.feed(answer(second[0], 486, "Busy Here"), PBX_B)
    assert [m.method for m in to(out, PBX_B)] == ["ACK"]
    plays = h.of(b2.PlayPrompts)[plays_before:]
    assert plays and plays[0].items[0] == "voicemail-greeting"
    a = h.activities[-1] if h.activities else h.b2bua.calls["call-1@carrier"].activity
    assert "PBX answered 486" in a.reason and a.target == "pbx-b"


def test_b2bua_pbx_503_fails_over_to_next_target(tmp_path) -> None:
    h = ScreeningHarness(tmp_path)
    first = to(captcha_passed(h), PBX_A)[0]
    out = h.feed(answer(first, 503), PBX_A)
    assert [m.method for m in to(out, PBX_A)] == ["ACK"]
    assert [m.method for m in to(out, PBX_B)] == ["INVITE"]


def test_b2bua_bridge_then_pbx_bye_ends_both_legs(tmp_path) -> None:
    h = ScreeningHarness(tmp_path)
    bridged(h)
    call = h.b2bua.calls["call-1@carrier"]
    assert "bridged to PBX" in call.activity.reason
    b_bye = msg("BYE sip:edge@127.0.0.1:5060 SIP/2.0", "Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKpbxbye",
                f"From: <sip:{MENU_NUMBER}@10.0.0.1:5070>;tag=pbx-tag", f"To: {call.b_request.get('from')}",
                f"Call-ID: {call.b_call_id}", "CSeq: 1 BYE", "Max-Forwards: 70")
    out = h.feed(b_bye, PBX_A)
    assert statuses(out, PBX_A) == [200]
    byes = [m for m in to(out, CARRIER) if m.method == "BYE"]
    assert len(byes) == 1 and byes[0].get("reason") == 'SIP;cause=200;text="PBX hung up"'
    assert h.of(b2.CloseMedia) == [b2.CloseMedia("call-1@carrier")]


def test_b2bua_pbx_answer_refused_hangs_up_both_legs(tmp_path) -> None:
    h = ScreeningHarness(tmp_path)
    h.refuse_pbx_answer = True
    ok = answered(h)
    b_invite = to(h.dtmf("call-1@carrier", "2"), PBX_B)[0]
    out = h.feed(answer(b_invite, 200, body=ANSWER_SDP, contact="sip:pbx@10.0.0.2:5072"), PBX_B)
    assert [m.method for m in to(out, PBX_B)] == ["ACK", "BYE"]
    assert [m.method for m in to(out, CARRIER)] == ["BYE"] and ok.call_id == "call-1@carrier"


def test_b2bua_reinvite_after_bridge_answered_with_our_sdp(tmp_path) -> None:
    h = ScreeningHarness(tmp_path)
    ok, _ = bridged(h)
    before = len(h.effects)
    out = h.feed(caller_request("INVITE", ok, 2, "z9hG4bKreinv", body=SDP))
    ok2 = to(out, CARRIER)
    assert [m.status for m in ok2] == [200] and ok2[0].body.decode() == ANSWER_SDP
    assert ok2[0].get("contact") == "<sip:edge@127.0.0.1:5060>"
    assert h.effects[before:] == []  # the media stays as it is
    assert h.b2bua.active == 1


def test_b2bua_prompt_missing_counts_as_played(tmp_path) -> None:
    """A prompt the engine cannot find must not stall the flow: the menu moves on as if it played."""
    h = ScreeningHarness(tmp_path)
    answered(h)
    play = h.of(b2.PlayPrompts)[0]
    h.b2bua.prompt_missing("call-1@carrier", play.playlist_id, h.now)
    h.take()
    timers = h.b2bua.calls["call-1@carrier"].timers
    assert any(name.startswith(b2.FLOW) for name in timers)  # the first-digit timer runs now


def test_b2bua_playback_finished_interrupted_is_not_delivered(tmp_path) -> None:
    h = ScreeningHarness(tmp_path)
    answered(h)
    play = h.of(b2.PlayPrompts)[0]
    h.b2bua.media_event("call-1@carrier", PlaybackFinished(play.playlist_id, h.now, interrupted=True), h.now)
    h.take()
    assert not any(n.startswith(b2.FLOW) for n in h.b2bua.calls["call-1@carrier"].timers)


def test_b2bua_fault_in_one_call_ends_that_call_only(tmp_path, monkeypatch) -> None:
    """A driver result that trips a bug inside a screened call: the caller is let go, nothing leaks."""
    h = ScreeningHarness(tmp_path)
    ok = answered(h)

    def boom(ev, now):
        raise RuntimeError("a bug in the call's code")

    monkeypatch.setattr(h.b2bua.calls["call-1@carrier"], "media_event", boom)
    h.b2bua.media_event("call-1@carrier", DtmfReceived("5"), h.now)
    out = h.take()
    byes = [m for m in to(out, CARRIER) if m.method == "BYE"]
    assert len(byes) == 1 and byes[0].call_id == ok.call_id
    assert h.b2bua.errors == 1 and h.b2bua.active == 0
    assert h.of(b2.CloseMedia) == [b2.CloseMedia("call-1@carrier")]
