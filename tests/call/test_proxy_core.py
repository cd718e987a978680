"""Proxy core scenarios without sockets (edge.call.proxy): a fake clock, a carrier stub and two PBX stubs."""

from __future__ import annotations

import pytest

from edge.call.proxy import Proxy
from edge.dialplan.plan import Plan
from edge.sip.message import SipMessage, parse
from edge.sip.transaction import Destination, State
from tests.call.proxy_harness import (
    CALLED,
    CARRIER,
    EDGE_URI,
    PBX_A,
    PBX_B,
    STRANGER,
    Harness,
    answer,
    make_plan,
)
from tests.sip.samples import SDP, invite, msg

CARRIER_VIA = "SIP/2.0/UDP 192.0.2.5:5080;branch=z9hG4bKcarrier1;rport"
RR = "<sip:127.0.0.1:5060;lr>"
PBX_CONTACT = f"sip:{CALLED}@10.0.0.1:5070"
CARRIER_CONTACT = "sip:+12025550111@192.0.2.5:5080"


def carrier_invite(uri: str = EDGE_URI, **kw) -> bytes:
    kw.setdefault("via_host", "192.0.2.5:5080")
    return invite(uri, **kw)


def only(out: list[tuple[SipMessage, Destination]], dest: Destination) -> list[SipMessage]:
    return [m for m, d in out if d == dest]


def statuses(out: list[tuple[SipMessage, Destination]], dest: Destination = CARRIER) -> list[int]:
    return [m.status for m in only(out, dest) if m.status]


def start_call(h: Harness, **kw) -> SipMessage:
    """Carrier INVITE in; return the INVITE forwarded to pbx-a."""
    out = h.feed(carrier_invite(body=SDP, extra=("Content-Type: application/sdp",), **kw))
    assert statuses(out) == [100]
    fwd = only(out, PBX_A)
    assert len(fwd) == 1
    return fwd[0]


def answered_call(h: Harness) -> SipMessage:
    """A call up to the carrier's ACK; returns the 200 OK the carrier received."""
    fwd = start_call(h)
    h.feed(answer(fwd, 180), PBX_A)
    out = h.feed(answer(fwd, 200, body=SDP), PBX_A)
    ok = only(out, CARRIER)[0]
    h.feed(carrier_ack(ok), CARRIER)
    return ok


def carrier_ack(ok: SipMessage, branch: str = "z9hG4bKack1") -> bytes:
    routes = [f"Route: {r}" for r in reversed(ok.get_all("record-route"))]
    return msg(
        f"ACK {PBX_CONTACT} SIP/2.0",
        f"Via: SIP/2.0/UDP 192.0.2.5:5080;branch={branch};rport",
        *routes,
        f"From: {ok.get('from')}",
        f"To: {ok.get('to')}",
        f"Call-ID: {ok.call_id}",
        "CSeq: 1 ACK",
        "Max-Forwards: 70",
    )


def in_dialog(method: str, ok: SipMessage, *, from_pbx: bool, cseq: int = 2, branch: str = "z9hG4bKdlg1") -> bytes:
    if from_pbx:
        uri, via, frm, to = CARRIER_CONTACT, f"SIP/2.0/UDP 10.0.0.1:5070;branch={branch}", ok.get("to"), ok.get("from")
        routes = [f"Route: {r}" for r in ok.get_all("record-route")]
    else:
        uri, via, frm, to = PBX_CONTACT, f"SIP/2.0/UDP 192.0.2.5:5080;branch={branch};rport", ok.get("from"), ok.get("to")
        routes = [f"Route: {r}" for r in reversed(ok.get_all("record-route"))]
    return msg(f"{method} {uri} SIP/2.0", f"Via: {via}", *routes, f"From: {frm}", f"To: {to}",
               f"Call-ID: {ok.call_id}", f"CSeq: {cseq} {method}", "Max-Forwards: 70")


# -- initial INVITE -------------------------------------------------------------------------------

def test_proxy_invite_forwarded_to_first_target() -> None:
    h = Harness()
    out = h.feed(carrier_invite(body=SDP, extra=("Content-Type: application/sdp",)))
    trying = only(out, CARRIER)
    assert [m.status for m in trying] == [100]
    assert trying[0].get_all("via") == [CARRIER_VIA]
    assert trying[0].to_tag == ""
    fwd = only(out, PBX_A)[0]
    assert fwd.uri == f"sip:{CALLED}@10.0.0.1:5070"
    top, second = fwd.vias
    assert (top.host, top.port, top.transport) == ("127.0.0.1", 5060, "UDP")
    assert top.branch.startswith("z9hG4bK") and top.branch != "z9hG4bKcarrier1"
    assert second.branch == "z9hG4bKcarrier1" and second.params["rport"] == "5080"
    assert fwd.get_all("record-route") == [RR]
    assert fwd.max_forwards == 69
    assert fwd.body == SDP.encode()
    assert (fwd.call_id, fwd.from_tag, fwd.cseq_num) == ("call-1@carrier", "c1", 1)
    assert h.tables() == (1, 1, 1)
    assert h.proxy.stats.invites == 1


def test_proxy_via_received_added_when_sent_by_differs() -> None:
    h = Harness()
    out = h.feed(carrier_invite(via_host="carrier.example:5080"))
    via = only(out, PBX_A)[0].vias[1]
    assert via.params["received"] == "192.0.2.5"
    assert via.response_address() == ("192.0.2.5", 5080)


def test_proxy_prefix_entry_routes_to_its_target() -> None:
    h = Harness()
    out = h.feed(carrier_invite("sip:+13035550199@127.0.0.1"))
    assert only(out, PBX_B)[0].uri == "sip:+13035550199@10.0.0.2:5072"


def test_proxy_responses_relayed_upstream_without_our_via() -> None:
    h = Harness()
    fwd = start_call(h)
    out = h.feed(answer(fwd, 100), PBX_A)
    assert out == []  # 100 is hop by hop
    out = h.feed(answer(fwd, 180), PBX_A)
    ringing = only(out, CARRIER)
    assert [m.status for m in ringing] == [180]
    assert [v.branch for v in ringing[0].vias] == ["z9hG4bKcarrier1"]
    assert ringing[0].to_tag == "pbx-tag"
    out = h.feed(answer(fwd, 200, body=SDP), PBX_A)
    ok = only(out, CARRIER)[0]
    assert ok.status == 200 and ok.body == SDP.encode()
    assert [v.branch for v in ok.vias] == ["z9hG4bKcarrier1"]
    assert ok.get_all("record-route") == [RR]
    assert h.proxy.stats.calls_answered == 1
    # A 2xx retransmission from the PBX passes through (RFC 6026).
    again = h.feed(answer(fwd, 200, body=SDP), PBX_A)
    assert statuses(again) == [200]


@pytest.mark.parametrize("spacing,relayed", [
    (", ", "SIP/2.0/UDP 192.0.2.5:5080;branch=z9hG4bKcarrier1;rport ,  SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKfirst"),
    (" ,\t", "SIP/2.0/UDP 192.0.2.5:5080;branch=z9hG4bKcarrier1;rport ,  SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKfirst"),
])
def test_proxy_response_with_vias_on_one_line_relayed_byte_exact(spacing: str, relayed: str) -> None:
    """A PBX (or sipp) that echoes every Via on one line: the edge's value is cut out of the received
    bytes; the rest of the line and every other byte go upstream as received."""
    h = Harness()
    fwd = start_call(h)
    ours = fwd.get_all("via")[0]
    raw = msg("SIP/2.0 180 Ringing", f"Via: {ours}{spacing}{relayed}", *[f"Record-Route: {r}" for r in fwd.get_all("record-route")],
              f"From: {fwd.get('from')}", f"To: {fwd.get('to')};tag=pbx-tag", f"Call-ID: {fwd.call_id}", "CSeq:   1 INVITE",
              "X-Odd:  kept  as is")
    h.proxy.receive(raw, PBX_A, h.now)
    sent = [(data, dest) for data, dest in h.proxy.datagrams_to_send() if dest == CARRIER]
    assert len(sent) == 1
    assert sent[0][0] == raw.replace(f"Via: {ours}{spacing}".encode(), b"Via: ")
    assert [v.branch for v in parse(sent[0][0]).vias] == ["z9hG4bKcarrier1", "z9hG4bKfirst"]


def test_proxy_response_with_quoted_comma_in_top_via_still_relayed_without_it() -> None:
    """A comma inside a quoted Via parameter is no value boundary: the general path cuts the top value."""
    h = Harness()
    fwd = start_call(h)
    ours = fwd.get_all("via")[0]
    raw = msg("SIP/2.0 180 Ringing", f'Via: {ours};x="a, b", {CARRIER_VIA}', f"From: {fwd.get('from')}",
              f"To: {fwd.get('to')};tag=pbx-tag", f"Call-ID: {fwd.call_id}", "CSeq: 1 INVITE")
    out = h.feed(raw, PBX_A)
    ringing = only(out, CARRIER)
    assert [v.raw for v in ringing[0].vias] == [CARRIER_VIA]


def test_proxy_ack_for_2xx_follows_route_set() -> None:
    h = Harness()
    fwd = start_call(h)
    ok = only(h.feed(answer(fwd, 200), PBX_A), CARRIER)[0]
    out = h.feed(carrier_ack(ok))
    acks = only(out, PBX_A)
    assert len(acks) == 1 and len(out) == 1
    ack = acks[0]
    assert ack.method == "ACK" and ack.uri == PBX_CONTACT
    assert ack.routes == []  # our own Route entry popped
    assert ack.top_via.host == "127.0.0.1" and ack.vias[1].branch == "z9hG4bKack1"
    assert ack.max_forwards == 69
    assert h.proxy.dialogs["call-1@carrier"].confirmed
    # A retransmitted ACK gets the same stateless branch.
    again = only(h.feed(carrier_ack(ok)), PBX_A)[0]
    assert again.branch == ack.branch


def test_proxy_bye_from_carrier_ends_dialog() -> None:
    h = Harness()
    ok = answered_call(h)
    h.take()
    out = h.feed(in_dialog("BYE", ok, from_pbx=False))
    bye = only(out, PBX_A)[0]
    assert bye.method == "BYE" and bye.uri == PBX_CONTACT and bye.routes == []
    assert bye.top_via.host == "127.0.0.1"
    out = h.feed(answer(bye, 200), PBX_A)
    assert statuses(out) == [200]
    assert only(out, CARRIER)[0].get_all("via")[0].startswith("SIP/2.0/UDP 192.0.2.5:5080;branch=z9hG4bKdlg1")
    assert "call-1@carrier" not in h.proxy.dialogs
    assert h.proxy.stats.calls_ended == 1
    assert h.activities and h.activities[-1].ended_at == h.now


def test_proxy_bye_from_pbx_through_record_route() -> None:
    h = Harness()
    ok = answered_call(h)
    out = h.feed(in_dialog("BYE", ok, from_pbx=True), PBX_A)
    bye = only(out, CARRIER)
    assert len(bye) == 1
    assert bye[0].uri == CARRIER_CONTACT and bye[0].routes == []
    out = h.feed(answer(bye[0], 200), CARRIER)
    assert statuses(out, PBX_A) == [200]
    assert h.proxy.dialogs == {}


def test_proxy_reinvite_from_pbx_relayed_with_100() -> None:
    h = Harness()
    ok = answered_call(h)
    out = h.feed(in_dialog("INVITE", ok, from_pbx=True, branch="z9hG4bKre1"), PBX_A)
    assert statuses(out, PBX_A) == [100]
    reinv = only(out, CARRIER)[0]
    assert reinv.method == "INVITE" and reinv.uri == CARRIER_CONTACT
    out = h.feed(answer(reinv, 200), CARRIER)
    assert statuses(out, PBX_A) == [200]


def test_proxy_in_dialog_request_for_unknown_dialog_481() -> None:
    h = Harness()
    ok = answered_call(h)
    h.take()
    data = in_dialog("BYE", ok, from_pbx=False).replace(b"call-1@carrier", b"other@carrier")
    assert statuses(h.feed(data)) == [481]


# -- rejections ------------------------------------------------------------------------------------

def test_proxy_max_forwards_zero_483() -> None:
    h = Harness()
    out = h.feed(carrier_invite(max_forwards=0))
    assert statuses(out) == [483]
    assert only(out, PBX_A) == []


def test_proxy_options_max_forwards_zero_answered_200() -> None:
    h = Harness()
    out = h.feed(carrier_invite("sip:127.0.0.1:5060", method="OPTIONS", max_forwards=0))
    assert statuses(out) == [200]
    assert "INVITE" in only(out, CARRIER)[0].get("allow")


def test_proxy_options_to_edge_answered_200() -> None:
    h = Harness()
    out = h.feed(carrier_invite("sip:127.0.0.1:5060", method="OPTIONS"))
    assert statuses(out) == [200]


def test_proxy_unknown_number_404_then_ack_absorbed() -> None:
    h = Harness()
    out = h.feed(carrier_invite("sip:+14155550000@127.0.0.1"))
    assert statuses(out) == [100, 404]
    resp = only(out, CARRIER)[1]
    assert resp.to_tag
    a = h.activities[-1]
    assert (a.rule_id, a.final_status) == ("dialplan.unknown_number", 404)
    assert h.proxy.stats.not_found == 1
    ack = msg("ACK sip:+14155550000@127.0.0.1 SIP/2.0", f"Via: {CARRIER_VIA}", f"From: {resp.get('from')}",
              f"To: {resp.get('to')}", "Call-ID: call-1@carrier", "CSeq: 1 ACK", "Max-Forwards: 70")
    assert h.feed(ack) == []
    st = next(iter(h.proxy.server_txns.values()))
    assert st.state is State.CONFIRMED
    h.advance(10)
    assert h.tables() == (0, 0, 0)


@pytest.mark.parametrize(("mode", "expected"), [("reject", [403]), ("drop", [])], ids=["reject", "drop"])
def test_proxy_unknown_source(mode: str, expected: list[int]) -> None:
    h = Harness(acl={"unknown_source": mode})
    out = h.feed(carrier_invite(via_host="198.51.100.66:5060"), STRANGER)
    assert statuses(out, STRANGER) == expected
    assert len(out) == len(expected)
    assert h.proxy.stats.unknown_source == 1
    assert h.tables() == (0, 0, 0)


def test_proxy_unknown_source_403_reason_names_fault() -> None:
    h = Harness()
    out = h.feed(carrier_invite(via_host="198.51.100.66:5060"), STRANGER)
    assert only(out, STRANGER)[0].reason == "Forbidden: unknown source"


def test_proxy_unsupported_method_405() -> None:
    h = Harness()
    out = h.feed(carrier_invite(method="REGISTER"))
    assert statuses(out) == [405]
    assert only(out, CARRIER)[0].get("allow")


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (carrier_invite().replace(b"CSeq: 1 INVITE", b"CSeq: 1 BYE"), "CSeq method mismatch"),
        (carrier_invite().replace(b"Max-Forwards: 70", b"Max-Forwards: 300"), "Bad Max-Forwards"),
        (carrier_invite().replace(b"Content-Length: 0", b"Content-Length: 50"), "Content-Length exceeds body"),
        (carrier_invite().replace(b"INVITE sip:", b"INVITE  sip:"), "Bad request line"),
    ],
    ids=["cseq_mismatch", "max_forwards_range", "short_body", "request_line"],
)
def test_proxy_malformed_400_names_fault(data: bytes, reason: str) -> None:
    h = Harness()
    out = h.feed(data)
    assert statuses(out) == [400]
    assert only(out, CARRIER)[0].reason == reason
    assert h.proxy.stats.parse_errors == 1
    assert h.tables() == (0, 0, 0)


def test_proxy_malformed_without_via_dropped() -> None:
    h = Harness()
    data = b"\r\n".join(line for line in carrier_invite().split(b"\r\n") if not line.startswith(b"Via"))
    assert h.feed(data) == []
    assert h.proxy.stats.dropped == 1


def test_proxy_oversize_513_or_dropped() -> None:
    h = Harness(limits={"max_udp_message": 2000})
    big = carrier_invite(extra=("X-Pad: " + "a" * 1500, "X-Pad2: " + "b" * 1500))
    out = h.feed(big)
    assert statuses(out) == [513]
    assert h.feed(b"\x00" * 3000) == []
    assert h.proxy.stats.oversize == 2


def test_proxy_dialog_cap_503() -> None:
    h = Harness(limits={"max_dialogs": 1, "dialog_max_age": "1h"})
    start_call(h)
    out = h.feed(carrier_invite(call_id="second@carrier", branch="z9hG4bKother"))
    assert statuses(out) == [503]
    assert only(out, CARRIER)[0].get("retry-after") == "5"
    assert only(out, PBX_A) == []


def test_proxy_draining_503_retry_after() -> None:
    h = Harness()
    h.proxy.start_draining()
    out = h.feed(carrier_invite())
    assert statuses(out) == [503]
    assert h.proxy.stats.draining_rejected == 1
    assert only(out, CARRIER)[-1].get("retry-after") == "30"


# -- failover ------------------------------------------------------------------------------------

def test_proxy_failover_on_503() -> None:
    h = Harness()
    fwd = start_call(h)
    h.feed(answer(fwd, 100), PBX_A)
    out = h.feed(answer(fwd, 503, to_tag="a503"), PBX_A)
    ack = only(out, PBX_A)
    assert [m.method for m in ack] == ["ACK"] and ack[0].branch == fwd.branch
    nxt = only(out, PBX_B)
    assert len(nxt) == 1 and nxt[0].uri == f"sip:{CALLED}@10.0.0.2:5072"
    assert nxt[0].branch != fwd.branch
    assert statuses(out) == []
    assert h.proxy.stats.failovers == 1
    out = h.feed(answer(nxt[0], 200), PBX_B)
    assert statuses(out) == [200]
    assert h.activities[-1].target == "pbx-b"


def test_proxy_486_relayed_without_failover() -> None:
    h = Harness()
    fwd = start_call(h)
    out = h.feed(answer(fwd, 486), PBX_A)
    assert statuses(out) == [486]
    assert only(out, PBX_B) == []
    assert "call-1@carrier" not in h.proxy.dialogs


def test_proxy_failover_on_timer_b_then_408() -> None:
    h = Harness()
    fwd = start_call(h)
    out = h.advance(7.9)
    assert len(only(out, PBX_A)) == 4  # Timer A retransmissions at 0.5, 1.5, 3.5, 7.5
    out = h.advance(0.1)  # Timer B = 8 s from config
    nxt = only(out, PBX_B)
    assert len(nxt) == 1 and nxt[0].method == "INVITE"
    assert h.proxy.stats.failovers == 1
    out = h.advance(8.0)
    assert statuses(out) == [408]
    assert h.proxy.dialogs == {}
    assert fwd.call_id == "call-1@carrier"


def test_proxy_all_targets_503_relays_503() -> None:
    h = Harness()
    fwd = start_call(h)
    out = h.feed(answer(fwd, 503), PBX_A)
    nxt = only(out, PBX_B)[0]
    out = h.feed(answer(nxt, 503), PBX_B)
    assert statuses(out) == [503]


def test_proxy_transport_error_fails_over() -> None:
    h = Harness()
    start_call(h)
    h.proxy.transport_error(PBX_A, h.now)
    out = h.take()
    assert [m.method for m in only(out, PBX_B)] == ["INVITE"]


# -- CANCEL -------------------------------------------------------------------------------------------

def carrier_cancel(branch: str = "z9hG4bKcarrier1", call_id: str = "call-1@carrier") -> bytes:
    return msg(f"CANCEL {EDGE_URI} SIP/2.0", f"Via: SIP/2.0/UDP 192.0.2.5:5080;branch={branch};rport",
               'From: "Alice" <sip:+12025550111@carrier.example>;tag=c1', "To: <sip:+12025550100@edge.example>",
               f"Call-ID: {call_id}", "CSeq: 1 CANCEL", "Max-Forwards: 70")


def test_proxy_cancel_after_provisional() -> None:
    h = Harness()
    fwd = start_call(h)
    h.feed(answer(fwd, 180), PBX_A)
    out = h.feed(carrier_cancel())
    assert statuses(out) == [200]
    cancel = only(out, PBX_A)
    assert [m.method for m in cancel] == ["CANCEL"]
    assert cancel[0].branch == fwd.branch and cancel[0].uri == fwd.uri
    out = h.feed(answer(cancel[0], 200), PBX_A)
    assert out == []
    out = h.feed(answer(fwd, 487), PBX_A)
    assert [m.method for m in only(out, PBX_A)] == ["ACK"]
    assert statuses(out) == [487]
    assert h.proxy.dialogs == {}


def test_proxy_cancel_before_provisional_waits_for_it() -> None:
    h = Harness()
    fwd = start_call(h)
    out = h.feed(carrier_cancel())
    assert statuses(out) == [200]
    assert only(out, PBX_A) == []  # RFC 3261 §9.1: no CANCEL before a provisional response
    out = h.feed(answer(fwd, 100), PBX_A)
    assert [m.method for m in only(out, PBX_A)] == ["CANCEL"]
    out = h.feed(answer(fwd, 487), PBX_A)
    assert statuses(out) == [487]


def test_proxy_cancel_before_provisional_silent_pbx_487() -> None:
    h = Harness()
    start_call(h)
    h.feed(carrier_cancel())
    out = h.advance(8.0)  # Timer B: no failover once cancelled
    assert statuses(out) == [487]
    assert only(out, PBX_B) == []


def test_proxy_cancel_unknown_481() -> None:
    h = Harness()
    assert statuses(h.feed(carrier_cancel())) == [481]


def test_proxy_timer_c_cancels_ringing_call() -> None:
    h = Harness()
    fwd = start_call(h)
    h.feed(answer(fwd, 180), PBX_A)
    out = h.advance(180.0)
    assert [m.method for m in only(out, PBX_A)] == ["CANCEL"]
    out = h.feed(answer(fwd, 487), PBX_A)
    assert statuses(out) == [487]


# -- retransmissions, errors, leaks --------------------------------------------------------------------

def test_proxy_invite_retransmission_absorbed() -> None:
    h = Harness()
    start_call(h)
    out = h.feed(carrier_invite(body=SDP, extra=("Content-Type: application/sdp",)))
    assert statuses(out) == [100]
    assert only(out, PBX_A) == []
    assert h.proxy.stats.retransmissions_absorbed == 1
    assert h.proxy.stats.invites == 1


def test_proxy_retransmitted_final_from_pbx_reacked_not_relayed() -> None:
    h = Harness()
    fwd = start_call(h)
    h.feed(answer(fwd, 486), PBX_A)
    out = h.feed(answer(fwd, 486), PBX_A)
    assert [m.method for m in only(out, PBX_A)] == ["ACK"]
    assert statuses(out) == []


class ExplodingPlan(Plan):
    def lookup(self, e164: str):
        if e164 == "+12025550999":
            raise RuntimeError("boom")
        return super().lookup(e164)


def test_proxy_core_error_counted_and_loop_keeps_working() -> None:
    h = Harness()
    h.proxy.plan = ExplodingPlan(make_plan().numbers())
    out = h.feed(carrier_invite("sip:+12025550999@127.0.0.1", call_id="bad@carrier", branch="z9hG4bKbad"))
    assert 500 in statuses(out)
    assert h.proxy.stats.core_errors == 1
    fwd = start_call(h)
    assert fwd.method == "INVITE"


def test_proxy_tables_empty_after_timers_fire() -> None:
    h = Harness()
    ok = answered_call(h)
    bye = only(h.feed(in_dialog("BYE", ok, from_pbx=False)), PBX_A)[0]
    h.feed(answer(bye, 200), PBX_A)
    # A rejected call, a failed-over call, a cancelled call and a stranger, all in the same run.
    h.feed(carrier_invite("sip:+14155550000@127.0.0.1", call_id="nf@c", branch="z9hG4bKnf"))
    fwd = only(h.feed(carrier_invite(call_id="fo@c", branch="z9hG4bKfo")), PBX_A)[0]
    nxt = only(h.feed(answer(fwd, 503), PBX_A), PBX_B)[0]
    h.feed(answer(nxt, 486), PBX_B)
    cfwd = only(h.feed(carrier_invite(call_id="cx@c", branch="z9hG4bKcx")), PBX_A)[0]
    h.feed(answer(cfwd, 180), PBX_A)
    cancel = only(h.feed(carrier_cancel("z9hG4bKcx", "cx@c")), PBX_A)[0]
    h.feed(answer(cancel, 200), PBX_A)
    h.feed(answer(cfwd, 487), PBX_A)
    h.feed(carrier_invite(call_id="silent@c", branch="z9hG4bKsil"))  # both PBXs silent: Timer B twice, 408
    h.feed(carrier_invite(via_host="198.51.100.66:5060", call_id="s@x", branch="z9hG4bKs"), STRANGER)
    assert h.tables() != (0, 0, 0)
    h.advance(200.0)
    assert h.tables() == (0, 0, 0)
    assert h.proxy.next_deadline() is None
    assert h.proxy.drained()


def test_proxy_unanswered_dialog_expires_by_max_age() -> None:
    h = Harness()
    ok = answered_call(h)
    assert ok.status == 200
    h.advance(3599.0)
    assert len(h.proxy.dialogs) == 1
    h.advance(2.0)
    assert h.proxy.dialogs == {}
    assert h.tables() == (0, 0, 0)


def test_proxy_stateless_response_for_unknown_transaction_routed_by_via() -> None:
    h = Harness()
    resp = msg("SIP/2.0 200 OK", "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKgone",
               "Via: SIP/2.0/UDP 192.0.2.5:5080;branch=z9hG4bKorig;rport=5080",
               "From: <sip:a@x>;tag=1", "To: <sip:b@y>;tag=2", "Call-ID: late", "CSeq: 1 INVITE")
    out = h.feed(resp, PBX_A)
    assert statuses(out) == [200]
    foreign = resp.replace(b"127.0.0.1:5060;branch=z9hG4bKgone", b"203.0.113.9:5060;branch=z9hG4bKx")
    assert h.feed(foreign, PBX_A) == []


def test_proxy_health_probe_marks_target_down_and_up() -> None:
    h = Harness(pbx=[
        {"name": "pbx-a", "uri": "sip:10.0.0.1:5070", "health_interval": "10s", "health_timeout": "2s", "down_after": 2},
        {"name": "pbx-b", "uri": "sip:10.0.0.2:5072", "health_check": False},
    ])
    h.proxy.start(h.now)
    pings = only(h.advance(0.0), PBX_A)
    assert [m.method for m in pings] == ["OPTIONS"]
    h.advance(25.0)  # two pings time out
    target = h.proxy.pool.by_name["pbx-a"]
    assert target.up is False
    out = h.feed(carrier_invite())
    assert len(only(out, PBX_B)) == 1 and only(out, PBX_A) == []
    ping = [m for m in only(h.advance(5.5), PBX_A) if m.method == "OPTIONS"][-1]  # ping at +30 s, deadline +32 s
    h.feed(answer(ping, 200), PBX_A)
    assert target.up is True


# -- fixed proxy bugs: response with only our Via, RFC 2543 branchless matching, 505 ---------------


def test_proxy_response_with_only_our_via_not_forwarded() -> None:
    h = Harness()
    fwd = start_call(h)
    resp = msg("SIP/2.0 180 Ringing", f"Via: {fwd.get_all('via')[0]}", f"From: {fwd.get('from')}",
               "To: <sip:x@y>;tag=1", f"Call-ID: {fwd.call_id}", "CSeq: 1 INVITE")
    h.proxy.receive(resp, PBX_A, h.now)
    assert h.proxy.datagrams_to_send() == []



def test_proxy_branchless_invites_of_distinct_calls_both_forwarded() -> None:
    h = Harness()
    h.feed(carrier_invite().replace(b";branch=z9hG4bKcarrier1", b""))
    out = h.feed(carrier_invite(call_id="other-call@c").replace(b";branch=z9hG4bKcarrier1", b""))
    assert len(only(out, PBX_A)) == 1



def test_proxy_unsupported_version_505() -> None:
    h = Harness()
    out = h.feed(carrier_invite().replace(b" SIP/2.0\r\n", b" SIP/7.0\r\n", 1))
    assert statuses(out) == [505]


def test_proxy_core_error_leaves_no_transaction_behind() -> None:
    h = Harness()
    h.proxy.plan = ExplodingPlan(make_plan().numbers())
    h.feed(carrier_invite("sip:+12025550999@127.0.0.1", call_id="bad@carrier", branch="z9hG4bKbad"))
    h.advance(4000.0)
    assert h.tables() == (0, 0, 0)


def test_proxy_per_source_transaction_cap_then_recovery() -> None:
    h = Harness(limits={"dialog_max_age": "1h", "max_transactions_per_source": 2})
    for i in range(2):
        out = h.feed(carrier_invite(call_id=f"cap-{i}@carrier", branch=f"z9hG4bKcap{i}"))
        assert statuses(out) == [100]
    out = h.feed(carrier_invite(call_id="cap-2@carrier", branch="z9hG4bKcap2"))
    assert statuses(out) == [503] and h.proxy.stats.source_limited == 1
    assert h.proxy.txns_by_source == {"192.0.2.5": 2}
    # Once those INVITEs have their final answer (Timer B on both targets -> 408), the source is served again.
    h.advance(20.0)
    assert h.proxy.txns_by_source == {}
    assert statuses(h.feed(carrier_invite(call_id="cap-3@carrier", branch="z9hG4bKcap3"))) == [100]
