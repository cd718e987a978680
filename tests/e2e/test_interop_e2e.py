"""Interop with real peers: CANCEL toward a PBX that ignores it (RFC 3261 §9.1, §16.8) and the RFC 5658
double Record-Route between a TLS carrier leg and a UDP PBX leg. sipp PBXs over UDP; the TLS carrier is a
Python ssl client. Short timers (T1 = 100 ms, so 64*T1 = 6.4 s) keep every run bounded in seconds."""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from tests.e2e.harness import free_port, uac, uas
from tests.e2e.test_tls_e2e import make_ca_and_leaf, read_response

pytestmark = pytest.mark.e2e


def test_interop_cancel_ignored_by_pbx_caller_gets_487(edge, tmp_path):
    d = edge.start(health_interval="")
    pbx = uas(tmp_path, edge.pbx_a, "uas_ring_ignore_cancel.xml", calls=1)
    started = time.monotonic()
    car = uac(tmp_path, edge.port, "12025550100", "uac_cancel.xml", calls=1, port=edge.carrier_port)
    assert car.wait(20) == 0, car.errors() + car.messages()[-3000:]
    elapsed = time.monotonic() - started
    assert elapsed >= 6.0  # not before 64*T1 after the CANCEL
    assert pbx.wait(20) == 0, pbx.errors()
    assert pbx.messages().count("CANCEL sip:") >= 2  # retransmitted, never answered
    unanswered = d.wait_event("cancel_unanswered")[0]
    assert (unanswered["status"], unanswered["target"]) == (487, "pbx-a")
    assert d.wait_event("contact_decided")[0]["status"] == 487
    # No INVITE retransmission or second CANCEL transaction after the edge gave up.
    assert pbx.messages().count("INVITE sip:") == 1


def test_interop_timer_c_pbx_ignores_cancel_caller_gets_408(edge, tmp_path):
    d = edge.start(health_interval="", timers='t1 = "100ms"\ntimer_b = "2s"\ntimer_c = "1s"\n')
    pbx = uas(tmp_path, edge.pbx_a, "uas_ring_ignore_cancel.xml", calls=1)
    car = uac(tmp_path, edge.port, "12025550100", "uac_ring_expect_408.xml", calls=1, port=edge.carrier_port)
    assert car.wait(20) == 0, car.errors() + car.messages()[-3000:]
    assert pbx.wait(20) == 0, pbx.errors()
    assert "CANCEL sip:" in pbx.messages()
    assert d.wait_event("cancel_unanswered")[0]["status"] == 408
    assert d.wait_event("contact_decided")[0]["status"] == 408


def _respond(request: bytes, status: int = 200, reason: str = "OK") -> bytes:
    """A UAS response to an in-dialog request: Vias, From, To, Call-ID, CSeq copied (To already tagged)."""
    lines = request.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    keep = [ln for ln in lines[1:] if ln.split(":", 1)[0].strip().lower() in ("via", "v", "from", "f", "to", "t",
                                                                              "call-id", "i", "cseq")]
    return (f"SIP/2.0 {status} {reason}\r\n" + "\r\n".join(keep) + "\r\nContent-Length: 0\r\n\r\n").encode()


def _headers(msg: bytes, name: str) -> list[str]:
    out = []
    for ln in msg.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")[1:]:
        k, _, v = ln.partition(":")
        if k.strip().lower() == name:
            out += [x.strip() for x in v.split(",")]
    return out


def test_interop_tls_carrier_udp_pbx_route_sets_and_in_dialog_transports(edge, tmp_path):
    ca, cert, key = make_ca_and_leaf(tmp_path, "edge")
    tls_port = free_port()
    extra = (f'[[listen]]\ntransport = "tls"\naddress = "127.0.0.1:{tls_port}"\n'
             f'tls_cert = "{cert}"\ntls_key = "{key}"\n')
    edge.start(health_interval="", listen_extra=extra)
    udp_entry = f"<sip:127.0.0.1:{edge.port};lr>"
    tls_entry = f"<sip:127.0.0.1:{tls_port};transport=tls;lr>"
    pbx = uas(tmp_path, edge.pbx_a, "uas_reinvite_bye.xml", calls=1)
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False
    conn = ctx.wrap_socket(socket.create_connection(("127.0.0.1", tls_port), timeout=10))
    local = conn.getsockname()
    buf = bytearray()
    try:
        conn.sendall((
            f"INVITE sip:12025550100@127.0.0.1:{tls_port};transport=tls SIP/2.0\r\n"
            f"Via: SIP/2.0/TLS 127.0.0.1:{local[1]};branch=z9hG4bK-rr-1;rport\r\n"
            "From: <sip:+13035550100@127.0.0.1>;tag=rr1\r\nTo: <sip:12025550100@127.0.0.1>\r\n"
            "Call-ID: rr-call-1@test\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
            f"Contact: <sip:c@127.0.0.1:{local[1]};transport=tls>\r\n"
            "Content-Type: application/sdp\r\nContent-Length: 0\r\n\r\n").encode())
        final = b""
        while not final.startswith(b"SIP/2.0 2"):
            final = read_response(conn, buf)
            assert final.startswith(b"SIP/2.0 1") or final.startswith(b"SIP/2.0 2"), final
        # The carrier's route set is the Record-Route list reversed: the edge's TLS side comes first.
        rr = _headers(final, "record-route")
        assert rr == [udp_entry, tls_entry], rr
        route_set = list(reversed(rr))
        to = [ln for ln in final.decode().split("\r\n") if ln.startswith("To:")][0]
        contact = _headers(final, "contact")[0].strip("<>")
        routes = "".join(f"Route: {r}\r\n" for r in route_set)
        conn.sendall((f"ACK {contact} SIP/2.0\r\nVia: SIP/2.0/TLS 127.0.0.1:{local[1]};branch=z9hG4bK-rr-2\r\n"
                      f"From: <sip:+13035550100@127.0.0.1>;tag=rr1\r\n{to}\r\nCall-ID: rr-call-1@test\r\n"
                      f"CSeq: 1 ACK\r\n{routes}Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode())
        # The PBX follows its route set (top entry first: the edge's UDP side); its re-INVITE and BYE
        # reach the carrier over the TLS connection.
        seen = []
        while "BYE" not in seen:
            req = read_response(conn, buf)
            method = req.split(b" ", 1)[0].decode()
            seen.append(method)
            if method in ("INVITE", "BYE"):
                assert _headers(req, "via")[0].startswith("SIP/2.0/TLS "), req
                conn.sendall(_respond(req))
        assert seen == ["INVITE", "ACK", "BYE"], seen
    finally:
        conn.close()
    assert pbx.wait(15) == 0, pbx.errors()
    msgs = pbx.messages().replace("\r\n", "\n")
    invite = msgs.split("INVITE sip:", 1)[1].split("\n\n", 1)[0]
    rr_lines = [ln.split(":", 1)[1].strip() for ln in invite.splitlines() if ln.startswith("Record-Route:")]
    assert ", ".join(rr_lines).split(", ") == [udp_entry, tls_entry]
    # The carrier's ACK arrived at the PBX over UDP; the PBX's own requests used its route set top-down.
    bye = msgs.split("BYE sip:", 1)[1].split("\n\n", 1)[0]
    route_lines = [ln.split(":", 1)[1].strip() for ln in bye.splitlines() if ln.startswith("Route:")]
    assert ", ".join(route_lines).split(", ") == [udp_entry, tls_entry]


def test_interop_screened_call_logs_contact_decided(edge, tmp_path):
    """A captcha-screened call (here failed) writes its activity and one contact_decided line."""
    from tests.e2e.harness import media_call_scenario
    from tests.e2e.test_media_e2e import CAPTCHA_WAIT_MS, CODE, MEDIA_PLAN, media_extra

    d = edge.start(dialplan=MEDIA_PLAN, extra=media_extra(tmp_path), health_interval="")
    wrong = "".join(str((int(c) + 1) % 10) for c in CODE)
    wrong = wrong if len(set(wrong)) == len(wrong) else "9876"
    pbx = uas(tmp_path, edge.pbx_a)
    car = uac(tmp_path, edge.port, "12025550100",
              media_call_scenario(tmp_path, "+13035550101", wrong, CAPTCHA_WAIT_MS, edge_hangs_up_within=15000),
              timeout=40)
    assert car.wait(45) == 0, car.errors() + car.messages()[-3000:]
    pbx.stop()
    d.wait_event("screening_ended")
    decided = d.events("contact_decided")
    assert len(decided) == 1  # one per contact: the screening B2BUA's, none from the proxy path
    e = decided[0]
    assert (e["decision"], e["screening"], e["called"], e["direction"]) == ("captcha", "answer", "+12025550100", "inbound")
    assert (e["status"], e["calling"]) == (200, "+13035550101")  # answered by the edge for the captcha
