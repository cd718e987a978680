"""OverloadControl on a fake clock: thresholds, hold, and 503s built from raw bytes for new INVITEs only."""

from __future__ import annotations

import pytest

from edge.call.overload import OverloadConfig, OverloadControl, validate_overload
from edge.sip.message import parse


def invite(call_id: str = "a1@198.51.100.7", to_tag: str = "", method: str = "INVITE", compact: bool = False) -> bytes:
    to = f"<sip:+12025550100@192.0.2.1>{';tag=' + to_tag if to_tag else ''}"
    names = ("v", "f", "t", "i") if compact else ("Via", "From", "To", "Call-ID")
    return (f"{method} sip:+12025550100@192.0.2.1 SIP/2.0\r\n"
            f"{names[0]}: SIP/2.0/UDP 198.51.100.7:5060;branch=z9hG4bK77\r\n"
            f"{names[0]}: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK66\r\n"
            f"{names[1]}: \"Alice\" <sip:+13035550100@198.51.100.7>;tag=f1\r\n{names[2]}: {to}\r\n"
            f"{names[3]}: {call_id}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n"
            f"Content-Length: 4\r\n\r\nv=0\n").encode()


def shedding(**kw) -> OverloadControl:
    """Over a threshold for 0.15 s: the shed share has risen to every new INVITE."""
    ovl = OverloadControl(OverloadConfig(**kw))
    for i in range(4):
        ovl.observe(1.0 + i * 0.05, pending=10**6)
    assert ovl.shedding and ovl.loss == 1.0
    return ovl


def test_overload_pending_over_threshold_sheds_new_invite_with_retry_after():
    ovl = shedding(retry_after=9)
    out = ovl.shed(invite())
    assert out is not None
    msg = parse(out)
    assert msg.status == 503
    assert msg.get("retry-after") == "9"
    assert [v.branch for v in msg.vias] == ["z9hG4bK77", "z9hG4bK66"]
    assert msg.call_id == "a1@198.51.100.7" and msg.cseq_method == "INVITE" and msg.from_tag == "f1"
    assert msg.to_tag.startswith("ovl")
    assert ovl.shed(invite()) == out  # a retransmission gets the same answer (same To tag)
    assert ovl.stats.shed_invites == 2


def test_overload_compact_headers_shed():
    msg = parse(shedding().shed(invite(compact=True)))
    assert msg.status == 503 and msg.get("to").endswith(msg.to_tag) and msg.call_id == "a1@198.51.100.7"


@pytest.mark.parametrize("data", [
    invite(to_tag="pbx1"),  # re-INVITE in a dialog
    invite(method="ACK"),
    invite(method="BYE"),
    invite(method="OPTIONS"),
    invite(method="CANCEL"),
    b"SIP/2.0 200 OK\r\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bK1\r\nContent-Length: 0\r\n\r\n",
], ids=["reinvite", "ack", "bye", "options", "cancel", "response"])
def test_overload_never_sheds_anything_but_new_invites(data):
    assert shedding().shed(data) is None


def test_overload_retransmission_of_admitted_invite_passes():
    ovl = OverloadControl(OverloadConfig())
    ovl.admitted(invite("early@x"), 1.0)
    for i in range(4):
        ovl.observe(1.1 + i * 0.05, pending=10**6)
    assert ovl.shed(invite("early@x")) is None and ovl.stats.passed_retransmissions == 1
    assert ovl.shed(invite("late@x")) is not None


def test_overload_admitted_memory_bounded_and_aged():
    ovl = OverloadControl(OverloadConfig(remember=10))
    for i in range(25):
        ovl.admitted(invite(f"c{i}@x"), 1.0)
    assert ovl.remembered == 10
    ovl.admitted(invite("new@x"), 100.0)  # everything older than a transaction lifetime is forgotten
    assert ovl.remembered == 1


def test_overload_ack_to_shed_503_dropped():
    ovl = shedding()
    tag = parse(ovl.shed(invite())).to_tag
    assert ovl.is_shed_ack(invite(method="ACK", to_tag=tag))
    assert not ovl.is_shed_ack(invite(method="ACK", to_tag="pbx-tag"))


def test_overload_share_rises_while_over_and_fades_over_hold():
    ovl = OverloadControl(OverloadConfig(pending_transactions=10, hold="2s"))
    ovl.observe(1.0, pending=5)
    assert not ovl.shedding and ovl.take_events() == []
    ovl.observe(2.0, pending=11)
    assert ovl.shedding and ovl.loss == 0.25
    answers = [ovl.shed(invite(f"q{i}@x")) for i in range(8)]
    assert sum(a is not None for a in answers) == 2  # a quarter, spread evenly
    for t in (2.05, 2.10, 2.15, 2.16):  # a step per 50 ms, not per report
        ovl.observe(t, pending=11)
    assert ovl.loss == 1.0
    assert all(ovl.shed(invite(f"r{i}@x")) is not None for i in range(4))
    ovl.observe(3.15, pending=3)  # under: fades by 1/hold per second
    assert ovl.shedding and ovl.loss == pytest.approx(0.5)
    ovl.observe(4.0, peer_backlog=1)  # other measures report in between; pending stays as last reported
    assert ovl.shedding and ovl.loss == pytest.approx(0.075)
    ovl.observe(4.2, peer_backlog=1)
    assert not ovl.shedding and ovl.loss == 0.0 and ovl.shed(invite("s@x")) is None
    start, stop = ovl.take_events()
    assert (start.on, start.reason, start.value) == (True, "pending", 11.0)
    assert (stop.on, stop.shed) == (False, 6)
    assert ovl.stats.episodes == 1 and ovl.stats.shed_invites == 6


def test_overload_one_late_tick_is_not_overload():
    ovl = OverloadControl(OverloadConfig(loop_lag="100ms"))
    ovl.observe(1.0, loop_lag=0.5)  # a one-off stall
    ovl.observe(1.1, loop_lag=0.0)
    ovl.observe(1.2, loop_lag=0.5)
    ovl.observe(1.3, loop_lag=0.5)
    assert not ovl.shedding
    ovl.observe(1.4, loop_lag=0.5)
    assert ovl.shedding and ovl.take_events()[0].reason == "loop_lag"
    ovl.observe(1.45, loop_lag=0.5)
    assert ovl.loss == 0.5


def test_overload_peer_backlog_trips():
    ovl = OverloadControl(OverloadConfig(peer_backlog=100))
    ovl.observe(1.0, peer_backlog=101)
    assert ovl.shedding


def test_overload_disabled_never_sheds():
    ovl = OverloadControl(OverloadConfig(enabled=False))
    ovl.observe(1.0, pending=10**9, peer_backlog=10**9)
    assert not ovl.shedding and ovl.shed(invite()) is None


def test_overload_unanswerable_invite_left_to_the_core():
    assert shedding().shed(b"INVITE sip:x SIP/2.0\r\nVia: SIP/2.0/UDP a;branch=z9hG4bK1\r\n\r\n") is None


@pytest.mark.parametrize("field,value,reason", [
    ("loop_lag", "0s", "greater than 0s"),
    ("hold", "soon", "invalid"),
    ("pending_transactions", 0, "at least 1"),
    ("peer_backlog", 0, "at least 1"),
    ("retry_after", 0, "between 1 and 3600"),
])
def test_overload_validate(field, value, reason):
    errors = validate_overload(OverloadConfig(**{field: value}))
    assert errors and errors[0][0] == f"$.overload.{field}" and reason in errors[0][1]
