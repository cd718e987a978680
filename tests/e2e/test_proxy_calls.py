"""Clean-call proxy path end to end: real sipp carrier (UAC) and PBX (UAS) through the daemon on loopback.

Every run is bounded: a handful of calls, sipp timeouts of seconds, the daemon stopped at teardown.
"""

from __future__ import annotations

import signal
import socket
import threading
import time

import pytest

from tests.e2e.harness import expect_final_scenario, uac, uas

pytestmark = pytest.mark.e2e


def _udp_exchange(port: int, data: bytes, src_port: int = 0, timeout: float = 3.0) -> bytes:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", src_port))
    s.settimeout(timeout)
    try:
        s.sendto(data, ("127.0.0.1", port))
        return s.recv(65535)
    finally:
        s.close()


def test_proxy_basic_calls_complete(edge, tmp_path):
    d = edge.start()
    pbx = uas(tmp_path, edge.pbx_a)
    car = uac(tmp_path, edge.port, "12025550100", calls=10, rate=20, port=edge.carrier_port)
    assert car.wait(30) == 0, car.errors()
    pbx.stop()
    assert car.count("SuccessfulCall(C)") == 10
    assert car.count("FailedCall(C)") == 0
    decided = d.wait_event("contact_decided", count=10)
    assert {e["status"] for e in decided} == {200}
    assert {e["target"] for e in decided} == {"pbx-a"}
    # Record-Route with lr and a decremented Max-Forwards reached the PBX.
    msgs = pbx.messages()
    assert f"Record-Route: <sip:127.0.0.1:{edge.port};lr>" in msgs
    assert "Max-Forwards: 69" in msgs


def test_proxy_cancel_before_answer_relays_487(edge, tmp_path):
    edge.start(health_interval="")
    pbx = uas(tmp_path, edge.pbx_a, "uas_ring_cancel.xml", calls=1)
    car = uac(tmp_path, edge.port, "12025550100", "uac_cancel.xml", calls=1, port=edge.carrier_port)
    assert car.wait(20) == 0, car.errors() + car.messages()[-3000:]
    assert pbx.wait(10) == 0, pbx.errors()
    assert "CANCEL sip:" in pbx.messages()


def test_proxy_busy_from_pbx_relayed(edge, tmp_path):
    d = edge.start(health_interval="")
    pbx = uas(tmp_path, edge.pbx_a, "uas_busy.xml", calls=1)
    car = uac(tmp_path, edge.port, "12025550100", expect_final_scenario(tmp_path, 486), port=edge.carrier_port)
    assert car.wait(20) == 0, car.errors()
    assert pbx.wait(10) == 0, pbx.errors()  # the PBX got its ACK (hop by hop from the edge)
    assert d.wait_event("contact_decided")[0]["status"] == 486


def test_proxy_silent_pbx_fails_over_to_second_target(edge, tmp_path):
    # pbx-a swallows everything (bound but never answers); Timer B is 2 s in the test config.
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", edge.pbx_a))
    got: list[bytes] = []

    def swallow() -> None:
        silent.settimeout(0.2)
        end = time.monotonic() + 8
        while time.monotonic() < end:
            try:
                got.append(silent.recv(65535))
            except socket.timeout:
                continue
            except OSError:
                return

    t = threading.Thread(target=swallow, daemon=True)
    t.start()
    try:
        d = edge.start(health_interval="60s")
        pbx_b = uas(tmp_path, edge.pbx_b, name="pbx-b")
        car = uac(tmp_path, edge.port, "12025550100", calls=1, port=edge.carrier_port)
        assert car.wait(20) == 0, car.errors()
        pbx_b.stop()
    finally:
        silent.close()
        t.join(2)
    assert car.count("SuccessfulCall(C)") == 1
    assert any(m.startswith(b"INVITE ") for m in got), "pbx-a never saw the INVITE"
    ev = d.wait_event("contact_decided")[0]
    assert ev["target"] == "pbx-b"
    assert d.events("failover")


def test_proxy_down_target_leaves_rotation(edge, tmp_path):
    # Nothing listens on pbx-a: its OPTIONS pings fail and it leaves rotation; calls go straight to pbx-b
    # (started first, so its own pings are answered from the start).
    pbx_b = uas(tmp_path, edge.pbx_b, name="pbx-b")
    time.sleep(0.3)
    d = edge.start(health_interval="200ms")
    d.wait_event("pbx_target_down", timeout=10)
    assert {e["target"] for e in d.events("pbx_target_down")} == {"pbx-a"}
    car = uac(tmp_path, edge.port, "12025550100", calls=3, rate=10, port=edge.carrier_port)
    assert car.wait(20) == 0, car.errors()
    pbx_b.stop()
    assert {e["target"] for e in d.wait_event("contact_decided", count=3)} == {"pbx-b"}
    assert not d.events("failover")


def test_proxy_reinvite_and_bye_from_pbx_follow_record_route(edge, tmp_path):
    edge.start(health_interval="")
    pbx = uas(tmp_path, edge.pbx_a, "uas_reinvite_bye.xml", calls=1)
    car = uac(tmp_path, edge.port, "12025550100", "uac_answered_by_callee_bye.xml", calls=1, port=edge.carrier_port)
    assert car.wait(20) == 0, car.errors() + car.messages()[-4000:]
    assert pbx.wait(10) == 0, pbx.errors() + pbx.messages()[-4000:]
    # The carrier saw the PBX's re-INVITE and BYE arrive through the edge (Via of the edge on top).
    msgs = car.messages()
    assert msgs.count(f"Via: SIP/2.0/UDP 127.0.0.1:{edge.port};branch=") >= 2


def test_proxy_invite_retransmission_absorbed(edge, tmp_path):
    d = edge.start()
    pbx = uas(tmp_path, edge.pbx_a, "uas_busy.xml")
    invite = (
        "INVITE sip:12025550100@127.0.0.1:{edge} SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:{src};branch=z9hG4bK-retrans-1;rport\r\n"
        "From: <sip:+12025550199@127.0.0.1>;tag=r1\r\n"
        "To: <sip:12025550100@127.0.0.1>\r\n"
        "Call-ID: retrans-1@test\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\n"
        "Contact: <sip:c@127.0.0.1:{src}>\r\nContent-Length: 0\r\n\r\n"
    ).format(edge=edge.port, src=edge.carrier_port).encode()
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", edge.carrier_port))
    s.settimeout(3)
    try:
        for _ in range(3):
            s.sendto(invite, ("127.0.0.1", edge.port))
            time.sleep(0.05)
        statuses = []
        end = time.monotonic() + 3
        while time.monotonic() < end and 486 not in statuses:
            statuses.append(int(s.recv(65535).split(b" ", 2)[1]))
        assert 486 in statuses
        assert statuses.count(100) >= 1
    finally:
        s.close()
    pbx.stop()
    # Exactly one INVITE reached the PBX.
    assert pbx.messages().count("INVITE sip:") == 1
    assert d.wait_event("contact_decided")[0]["status"] == 486


def test_proxy_tcp_carrier_leg(edge, tmp_path):
    d = edge.start()
    pbx = uas(tmp_path, edge.pbx_a)
    car = uac(tmp_path, edge.port, "12025550100", calls=3, rate=10, port=edge.carrier_port, extra=["-t", "t1"])
    assert car.wait(20) == 0, car.errors()
    pbx.stop()
    assert car.count("SuccessfulCall(C)") == 3
    # RFC 5658 double Record-Route: one entry per transport.
    assert f"<sip:127.0.0.1:{edge.port};transport=tcp;lr>" in pbx.messages()
    assert len(d.wait_event("contact_decided", count=3)) == 3


def test_proxy_unknown_number_404(edge, tmp_path):
    d = edge.start()
    car = uac(tmp_path, edge.port, "12025559999", expect_final_scenario(tmp_path, 404), port=edge.carrier_port)
    assert car.wait(20) == 0, car.errors()
    ev = d.wait_event("contact_decided")[0]
    assert ev["status"] == 404 and ev["rule_id"] == "dialplan.unknown_number"


def test_proxy_non_carrier_source_403(edge, tmp_path):
    edge.start()
    pbx = uas(tmp_path, edge.pbx_a)
    car = uac(tmp_path, edge.port, "12025550100", expect_final_scenario(tmp_path, 403), ip="127.0.0.2")
    assert car.wait(20) == 0, car.errors()
    pbx.stop()
    assert "INVITE sip:" not in pbx.messages()


def test_proxy_malformed_invite_400_while_good_call_completes(edge, tmp_path):
    edge.start()
    pbx = uas(tmp_path, edge.pbx_a)
    car = uac(tmp_path, edge.port, "12025550100", calls=5, rate=10, port=edge.carrier_port)
    bad = (
        "INVITE sip:12025550100@127.0.0.1 SIP/2.0\r\n"
        "Via: SIP/2.0/UDP 127.0.0.1:9;branch=z9hG4bK-bad\r\n"
        "From: <sip:a@b>;tag=1\r\nTo: <sip:c@d>\r\nCall-ID: bad-1\r\nCSeq: abc INVITE\r\n"
        "Content-Length: 0\r\n\r\n"
    ).encode()
    reply = _udp_exchange(edge.port, bad)
    assert reply.startswith(b"SIP/2.0 400 Bad CSeq\r\n")
    garbage = _udp_exchange_no_reply(edge.port, b"\x00\xffnot sip at all")
    assert garbage is None
    assert car.wait(20) == 0, car.errors()
    pbx.stop()
    assert car.count("SuccessfulCall(C)") == 5


def _udp_exchange_no_reply(port: int, data: bytes) -> bytes | None:
    try:
        return _udp_exchange(port, data, timeout=0.5)
    except socket.timeout:
        return None


def test_proxy_sighup_with_broken_dialplan_keeps_serving(edge, tmp_path):
    d = edge.start()
    (tmp_path / "dialplans" / "broken.toml").write_text('customer = "x"\n[[numbers]]\nnumber = "not-a-number"\ntargets = ["pbx-a"]\n')
    d.signal(signal.SIGHUP)
    ev = d.wait_event("reload_rejected")[0]
    assert any("broken.toml:3:1: $.numbers[0].number: 'not-a-number' is not a valid E.164 number" in e for e in ev["errors"])
    pbx = uas(tmp_path, edge.pbx_a)
    car = uac(tmp_path, edge.port, "12025550100", calls=2, rate=10, port=edge.carrier_port)
    assert car.wait(20) == 0, car.errors()
    pbx.stop()
    assert car.count("SuccessfulCall(C)") == 2
    # A valid reload afterwards swaps in the new plan: the new number routes.
    (tmp_path / "dialplans" / "broken.toml").write_text('customer = "x"\n[[numbers]]\nnumber = "+12025550155"\ntargets = ["pbx-b"]\n')
    d.signal(signal.SIGHUP)
    d.wait_event("reloaded")
    pbx_b = uas(tmp_path, edge.pbx_b, name="pbx-b")
    car2 = uac(tmp_path, edge.port, "12025550155", calls=1, port=free_port_udp(), name="carrier2")
    assert car2.wait(20) == 0, car2.errors()
    pbx_b.stop()


def free_port_udp() -> int:
    from tests.e2e.harness import free_port

    return free_port()


def test_proxy_sigterm_drains_established_call_and_refuses_new(edge, tmp_path):
    d = edge.start()
    pbx = uas(tmp_path, edge.pbx_a)
    # One long call: sipp's uac holds the call 3 s before its BYE (-d).
    car = uac(tmp_path, edge.port, "12025550100", calls=1, port=edge.carrier_port, extra=["-d", "3000"])
    d.wait_event("contact_decided")
    d.signal(signal.SIGTERM)
    d.wait_event("draining")
    late = uac(tmp_path, edge.port, "12025550100", expect_final_scenario(tmp_path, 503), port=free_port_udp(), name="late")
    assert late.wait(20) == 0, late.errors()
    assert "Retry-After: 7" in late.messages()
    assert car.wait(20) == 0, car.errors()
    assert car.count("SuccessfulCall(C)") == 1
    assert d.proc.wait(15) == 0
    pbx.stop()
    assert d.events("drained")


def test_proxy_hep_capture_exports_every_sip_message(edge, tmp_path):
    collector = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    collector.bind(("127.0.0.1", 0))
    collector.settimeout(0.3)
    port = collector.getsockname()[1]
    try:
        edge.start(extra=f'[hep]\nenabled = true\naddress = "127.0.0.1:{port}"\nagent_id = 7\n', health_interval="")
        pbx = uas(tmp_path, edge.pbx_a)
        car = uac(tmp_path, edge.port, "12025550100", calls=1, port=edge.carrier_port)
        assert car.wait(20) == 0, car.errors()
        pbx.stop()
        packets = []
        end = time.monotonic() + 3
        while time.monotonic() < end:
            try:
                packets.append(collector.recv(65535))
            except socket.timeout:
                if len(packets) >= 13:
                    break
    finally:
        collector.close()
    assert packets and all(p.startswith(b"HEP3") for p in packets)
    # Every message in and out of the edge: 6 received (INVITE, 180, 200, ACK, BYE, 200) and 7 sent (+100 Trying).
    assert len(packets) >= 13
    assert any(b"INVITE sip:12025550100" in p for p in packets)
    assert any(b"SIP/2.0 100 Trying" in p for p in packets)
