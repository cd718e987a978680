"""Interop details of the proxy path, sans-IO on a fake clock: RFC 5658 Record-Route order, CANCEL toward a
PBX that never answers it (RFC 3261 §9.1, §16.8), and the carrier's From restored in responses when the
edge wrote verstat into From."""

from __future__ import annotations

import msgspec
import pytest

from edge.call.admission import Gatekeeper
from edge.call.proxy import Proxy
from edge.config import EdgeConfig
from edge.policy.pipeline import PolicyEngine
from edge.sip.transaction import Destination
from edge.stir.certs import TrustStore
from edge.stir.verifier import Verifier
from tests.call.proxy_harness import CARRIER, EDGE_URI, PBX_A, Harness, answer, config_dict, make_plan
from tests.call.test_proxy_core import carrier_cancel, carrier_invite, only, start_call, statuses
from tests.sip.samples import SDP, msg

CARRIER_TCP = Destination("tcp", "192.0.2.5", 5080, 7)
EDGE_UDP_RR = "<sip:127.0.0.1:5060;lr>"
EDGE_TCP_RR = "<sip:127.0.0.1:5060;transport=tcp;lr>"
KAMAILIO_RR = "<sip:192.0.2.5:5080;transport=tcp;lr>"


# -- RFC 5658: the entry facing the next hop on top -------------------------------------------------------


def test_interop_double_record_route_next_hop_entry_on_top() -> None:
    h = Harness()
    out = h.feed(carrier_invite(extra=(f"Record-Route: {KAMAILIO_RR}",), body=SDP), CARRIER_TCP)
    fwd = only(out, PBX_A)[0]
    # The PBX (UAS) uses the list top-down: first the edge's UDP side, the one it can reach.
    assert fwd.get_all("record-route") == [EDGE_UDP_RR, EDGE_TCP_RR, KAMAILIO_RR]
    # Relayed 200: the carrier (UAC) reverses the list: Kamailio, then the edge's TCP side.
    ok = only(h.feed(answer(fwd, 200, body=SDP), PBX_A), CARRIER_TCP)[0]
    carrier_route_set = list(reversed(ok.get_all("record-route")))
    assert carrier_route_set == [KAMAILIO_RR, EDGE_TCP_RR, EDGE_UDP_RR]


def test_interop_in_dialog_transports_follow_route_sets() -> None:
    h = Harness()
    out = h.feed(carrier_invite(extra=(f"Record-Route: {KAMAILIO_RR}",), body=SDP), CARRIER_TCP)
    fwd = only(out, PBX_A)[0]
    ok = only(h.feed(answer(fwd, 200, body=SDP), PBX_A), CARRIER_TCP)[0]
    rr = ok.get_all("record-route")
    # PBX -> carrier: BYE with the PBX's route set (top-down) leaves toward Kamailio over TCP.
    bye = msg(f"BYE sip:+12025550111@192.0.2.5:5080;transport=tcp SIP/2.0",
              "Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKpbxbye", *[f"Route: {r}" for r in rr],
              f"From: {ok.get('to')}", f"To: {ok.get('from')}", f"Call-ID: {ok.call_id}", "CSeq: 2 BYE",
              "Max-Forwards: 70")
    out = h.feed(bye, PBX_A)
    sent = [(m, d) for m, d in out if m.method == "BYE"]
    assert len(sent) == 1
    m, d = sent[0]
    assert d.transport == "tcp" and (d.host, d.port) == ("192.0.2.5", 5080)
    assert m.get_all("route") == [KAMAILIO_RR]
    assert m.vias[0].transport == "TCP"


# -- CANCEL toward a PBX that never answers it --------------------------------------------------------------


def test_interop_cancel_ignored_by_pbx_487_after_64_t1() -> None:
    h = Harness()
    fwd = start_call(h)
    h.feed(answer(fwd, 180), PBX_A)
    out = h.feed(carrier_cancel())
    assert statuses(out) == [200]
    assert [m.method for m in only(out, PBX_A)] == ["CANCEL"]
    out = h.advance(31.9)  # 64*T1 = 32 s: the CANCEL is retransmitted, nothing final yet
    assert statuses(out) == []
    assert {m.method for m in only(out, PBX_A)} <= {"CANCEL"}
    out = h.advance(0.2)
    assert statuses(out) == [487]
    assert h.proxy.stats.cancels_unanswered == 1
    assert h.proxy.dialogs == {}
    assert not any(k[1] == "INVITE" for k in h.proxy.client_txns)
    # Nothing is sent toward the PBX any more once the CANCEL transaction has timed out too.
    h.advance(40.0)
    assert h.advance(200.0) == []
    assert h.tables() == (0, 0, 0)


def test_interop_timer_c_with_provisional_ignored_cancel_408() -> None:
    h = Harness(timers={"timer_c": "20s"})
    fwd = start_call(h)
    h.feed(answer(fwd, 180), PBX_A)
    out = h.advance(20.0)
    assert [m.method for m in only(out, PBX_A)] == ["CANCEL"]
    h.feed(answer(fwd, 183), PBX_A)  # still ringing: Timer C is re-armed, but no second CANCEL follows
    out = h.advance(32.0)
    assert statuses(out) == [408]
    assert h.proxy.dialogs == {}


def test_interop_caller_cancel_then_timer_c_does_not_resend_cancel() -> None:
    h = Harness(timers={"timer_c": "10s"})
    fwd = start_call(h)
    h.feed(answer(fwd, 180), PBX_A)
    h.feed(carrier_cancel())
    out = h.advance(9.9)
    cancels = [m for m in only(out, PBX_A) if m.method == "CANCEL"]
    out = h.advance(0.2)  # Timer C fires: the CANCEL already sent is not restarted
    assert [m for m in only(out, PBX_A) if m.method == "CANCEL"] == []
    assert cancels  # retransmissions before Timer C
    assert statuses(h.advance(22.0)) == [487]


# -- verstat in From: the carrier gets its own From back -----------------------------------------------------


@pytest.fixture(scope="module")
def pki():
    from tests.stir.pki import build_pki

    return build_pki()


def _stir_proxy(pki_root_pem: bytes) -> Harness:
    cfg = msgspec.convert(config_dict(), EdgeConfig)
    gate = Gatekeeper(PolicyEngine(), cfg.stir, Verifier(TrustStore.from_blobs([pki_root_pem])))
    return Harness(Proxy(cfg, make_plan(), gate))


def test_interop_from_with_verstat_not_relayed_upstream(pki) -> None:
    from tests.stir.pki import pem

    h = _stir_proxy(pem(pki.root))
    original_from = '"Alice" <sip:+12025550111@carrier.example>;tag=c1'
    out = h.feed(carrier_invite(EDGE_URI, body=SDP))
    fwd = only(out, PBX_A)[0]
    assert fwd.get("from") == '"Alice" <sip:+12025550111;verstat=No-TN-Validation@carrier.example;user=phone>;tag=c1'
    ringing = only(h.feed(answer(fwd, 180), PBX_A), CARRIER)[0]
    assert (ringing.status, ringing.get("from")) == (180, original_from)
    ok = only(h.feed(answer(fwd, 200, body=SDP), PBX_A), CARRIER)[0]
    assert (ok.status, ok.get("from")) == (200, original_from)
    assert [v.host for v in ok.vias] == ["192.0.2.5"]


def test_interop_from_restored_on_final_error_too(pki) -> None:
    from tests.stir.pki import pem

    h = _stir_proxy(pem(pki.root))
    fwd = only(h.feed(carrier_invite(EDGE_URI, body=SDP)), PBX_A)[0]
    busy = only(h.feed(answer(fwd, 486), PBX_A), CARRIER)
    assert [(m.status, m.get("from")) for m in busy] == [(486, '"Alice" <sip:+12025550111@carrier.example>;tag=c1')]


def test_interop_verstat_without_pai_as_added_pai(pki) -> None:
    from tests.stir.pki import pem

    cfg = msgspec.convert(config_dict(stir={"verstat_without_pai": "pai"}), EdgeConfig)
    gate = Gatekeeper(PolicyEngine(), cfg.stir, Verifier(TrustStore.from_blobs([pem(pki.root)])))
    h = Harness(Proxy(cfg, make_plan(), gate))
    fwd = only(h.feed(carrier_invite(EDGE_URI, body=SDP)), PBX_A)[0]
    assert fwd.get("from") == '"Alice" <sip:+12025550111@carrier.example>;tag=c1'
    assert fwd.get("p-asserted-identity") == '"Alice" <sip:+12025550111;verstat=No-TN-Validation@carrier.example;user=phone>'
    ringing = only(h.feed(answer(fwd, 180), PBX_A), CARRIER)[0]
    assert ringing.get("from") == '"Alice" <sip:+12025550111@carrier.example>;tag=c1'


def test_interop_from_restored_when_pbx_reformats_it(pki) -> None:
    from tests.stir.pki import pem

    h = _stir_proxy(pem(pki.root))
    fwd = only(h.feed(carrier_invite(EDGE_URI, body=SDP)), PBX_A)[0]
    reformatted = answer(fwd, 180).replace(f"From: {fwd.get('from')}".encode(),
                                           b"f:   " + (fwd.get("from") or "").replace(";tag=", "; tag=").encode())
    ringing = only(h.feed(reformatted, PBX_A), CARRIER)[0]
    assert ringing.get("from") == '"Alice" <sip:+12025550111@carrier.example>;tag=c1'
