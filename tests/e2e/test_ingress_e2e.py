"""The ingress under load (issues 12 and 13): strangers' TCP connections cannot take carriers' slots
(separate budget, per-source cap, message and idle timeouts), and past capacity new INVITEs get
503 + Retry-After while established calls, responses and OPTIONS are still served."""

from __future__ import annotations

import socket
import ssl
import time

import pytest

from tests.e2e.harness import Admin, free_port, uac, uas
from tests.e2e.test_tls_e2e import make_ca_and_leaf

pytestmark = pytest.mark.e2e

SERVICE = "12025550100"


def _metrics(admin: Admin) -> dict[str, float]:
    status, text = admin.call("GET", "/metrics")
    assert status == 200
    out: dict[str, float] = {}
    for line in str(text).splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name.split("{")[0]] = out.get(name.split("{")[0], 0.0) + float(value)
    return out


def _connect(port: int, ip: str) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    s.bind((ip, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", port))
    return s


def _closed_by_edge(s: socket.socket, within: float) -> bool:
    """True when the edge closes or resets the connection within `within` seconds."""
    s.settimeout(within)
    try:
        return s.recv(1) == b""
    except (ConnectionResetError, BrokenPipeError):
        return True
    except socket.timeout:
        return False


def _options(port: int, n: int, timeout: float = 1.0) -> tuple[str, float]:
    """One OPTIONS from a carrier address over UDP; its status line and how long the answer took."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(timeout)
    local = s.getsockname()
    msg = (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {local[0]}:{local[1]};branch=z9hG4bKopt{n}\r\n"
           f"From: <sip:probe@127.0.0.1>;tag=o{n}\r\nTo: <sip:127.0.0.1:{port}>\r\nCall-ID: opt-{n}@probe\r\n"
           "CSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
    start = time.monotonic()
    try:
        s.sendto(msg, ("127.0.0.1", port))
        data = s.recv(65536)
        return data.split(b"\r\n", 1)[0].decode(), time.monotonic() - start
    except socket.timeout:
        return "", time.monotonic() - start
    finally:
        s.close()


def test_ingress_tcp_idle_strangers_cannot_take_the_carriers_slots(edge, tmp_path):
    """60 idle TCP connections from 60 stranger addresses fill max_tcp_connections = 60 (today: the
    carrier's connection is then reset); strangers have their own budget, so the carrier's call completes."""
    pbx = uas(tmp_path, edge.pbx_a, timeout=30)  # up before the daemon's first health ping
    d = edge.start(extra="[limits]\nmax_tcp_connections = 60\n")
    strangers = [_connect(edge.port, f"127.0.6.{i + 1}") for i in range(60)]
    try:
        time.sleep(0.3)
        assert not any(_closed_by_edge(s, 0.01) for s in strangers)  # accepted, not refused
        car = uac(tmp_path, edge.port, SERVICE, calls=3, rate=10, port=edge.carrier_port, extra=["-t", "t1"], timeout=30)
        assert car.wait(30) == 0, car.errors()[-3000:]
        pbx.stop()
        assert (car.count("SuccessfulCall(C)"), car.count("FailedCall(C)")) == (3, 0)
        m = _metrics(Admin(tmp_path, (tmp_path / "edge.toml").read_text()))
        assert m["edge_intake_tcp_connections_unknown"] == 60
    finally:
        for s in strangers:
            s.close()
    assert d.proc.poll() is None


def test_ingress_tcp_per_source_cap_budget_and_timeouts(edge, tmp_path):
    pbx = uas(tmp_path, edge.pbx_a, timeout=40)  # answering health pings all along: never marked down
    d = edge.start(extra='[limits]\nmax_tcp_unknown = 8\nmax_tcp_per_source = 3\n'
                         'tcp_idle_timeout = "6s"\ntcp_message_timeout = "1s"\n')
    admin = Admin(tmp_path, (tmp_path / "edge.toml").read_text())
    socks: list[socket.socket] = []
    try:
        same = [_connect(edge.port, "127.0.7.1") for _ in range(5)]
        socks += same
        closed = [_closed_by_edge(s, 0.2) for s in same]
        assert closed == [False, False, False, True, True]  # per-source cap 3
        others = [_connect(edge.port, f"127.0.7.{i}") for i in range(2, 9)]
        socks += others
        closed = [_closed_by_edge(s, 0.2) for s in others]
        assert closed.count(True) == 2 and closed[-2:] == [True, True]  # 3 + 5 = the budget of 8
        # Slowloris: half a message on one of the open connections is cut after ~1 s (swept every second).
        slow = others[0]
        slow.sendall(b"OPTIONS sip:127.0.0.1 SIP/2.0\r\nVia: SIP/2.0/TCP 127.0.7.2;branch=z9hG4bKslow\r\n")
        t0 = time.monotonic()
        assert _closed_by_edge(slow, 4.0)
        assert time.monotonic() - t0 < 3.5
        # The idle ones go after tcp_idle_timeout (6 s) + at most one sweep (1 s).
        assert _closed_by_edge(same[0], 8.0)
        assert _closed_by_edge(others[4], 8.0)
        deadline = time.monotonic() + 3
        while (m := _metrics(admin))["edge_intake_tcp_connections_unknown"] and time.monotonic() < deadline:
            time.sleep(0.2)
        assert m["edge_intake_tcp_connections_unknown"] == 0
        assert m["edge_intake_tcp_refused_total"] == 4
        assert m["edge_intake_tcp_message_timeouts_total"] == 1
        assert m["edge_intake_tcp_idle_timeouts_total"] == 7
        # The budget is free again, and the carrier was never in it.
        car = uac(tmp_path, edge.port, SERVICE, calls=2, rate=10, port=edge.carrier_port, extra=["-t", "t1"], timeout=30)
        assert car.wait(30) == 0, car.errors()[-3000:]
        pbx.stop()
        assert car.count("SuccessfulCall(C)") == 2
        late = _connect(edge.port, "127.0.7.1")
        socks.append(late)
        assert not _closed_by_edge(late, 0.3)
    finally:
        for s in socks:
            s.close()
    assert any(e.get("reason") == "max_tcp_per_source" for e in d.events("tcp_connection_refused"))


def test_ingress_tls_handshake_timeout_closes_silent_connection(edge, tmp_path):
    ca, cert, key = make_ca_and_leaf(tmp_path, "edge")
    tls_port = free_port()
    d = edge.start(health_interval="", extra='[limits]\ntls_handshake_timeout = "1s"\n',
                   listen_extra=(f'[[listen]]\ntransport = "tls"\naddress = "127.0.0.1:{tls_port}"\n'
                                 f'tls_cert = "{cert}"\ntls_key = "{key}"\n'))
    silent = _connect(tls_port, "127.0.9.1")  # connects, never says ClientHello
    try:
        t0 = time.monotonic()
        assert _closed_by_edge(silent, 6.0)
        assert 0.8 <= time.monotonic() - t0 < 4.0  # the configured 1 s, not the old fixed 10 s
    finally:
        silent.close()
    ctx = ssl.create_default_context(cafile=str(ca))
    ctx.check_hostname = False
    with ctx.wrap_socket(socket.create_connection(("127.0.0.1", tls_port), timeout=5)) as conn:
        assert conn.version() in ("TLSv1.2", "TLSv1.3")  # a real handshake still completes
    assert d.proc.poll() is None


def test_ingress_overload_sheds_new_invites_with_retry_after_and_recovers(edge, tmp_path):
    """A PBX that rings 1 s keeps every admitted call pending that long; 20 INVITEs/s for 3 s is far past
    `pending_transactions = 3` on any machine, so shedding is certain. Shed INVITEs get 503 with
    Retry-After; every call that was admitted (and a long call set up before the burst) completes."""
    pbx = uas(tmp_path, edge.pbx_a, "uas_slow_answer.xml", timeout=40)
    d = edge.start(extra='[overload]\npending_transactions = 3\nhold = "300ms"\nretry_after = 4\n')
    long_call = uac(tmp_path, edge.port, SERVICE, calls=1, port=free_port(), name="long", extra=["-d", "4000"],
                    timeout=30)
    d.wait_event("contact_decided")
    time.sleep(1.2)  # answered: established before the burst, its BYE comes in the middle of it
    burst = uac(tmp_path, edge.port, SERVICE, "uac_call_or_shed.xml", calls=60, rate=20, port=edge.carrier_port,
                name="burst", timeout=30)
    (started,) = d.wait_event("overload_shedding_started", timeout=10)
    assert started["reason"] == "pending" and started["admitted_rate"] >= 1  # the rate the episode starts at
    status, took = _options(edge.port, 1)  # OPTIONS answered while shedding
    assert status == "SIP/2.0 200 OK" and took < 1.0
    assert burst.wait(40) == 0, burst.errors()[-3000:]
    assert long_call.wait(30) == 0, long_call.errors()[-3000:]
    assert long_call.count("SuccessfulCall(C)") == 1
    assert (burst.count("SuccessfulCall(C)"), burst.count("FailedCall(C)")) == (60, 0)
    msgs = burst.messages()
    shed = msgs.count("SIP/2.0 503 Service Unavailable")
    assert 10 <= shed < 60 and msgs.count("Retry-After: 4") == shed  # some admitted, many shed
    assert d.wait_event("overload_shedding_stopped", timeout=10)
    status, took = _options(edge.port, 2)  # and right after
    assert status == "SIP/2.0 200 OK" and took < 1.0
    after = uac(tmp_path, edge.port, SERVICE, calls=1, port=free_port(), name="after", timeout=20)
    assert after.wait(20) == 0, after.errors()[-3000:]
    pbx.stop()
    m = _metrics(Admin(tmp_path, (tmp_path / "edge.toml").read_text()))
    assert m["edge_overload_shed_invites_total"] >= shed  # retransmitted INVITEs are shed again
    assert m["edge_overload_shed_acks_total"] >= 1
    assert m["edge_overload_episodes_total"] >= 1


def test_ingress_overload_max_rate_admits_that_many_new_invites_a_second(edge, tmp_path):
    """`max_rate = 10`: sipp offers 40 new INVITEs a second for 3 s (120 calls). The token bucket admits
    about 10 a second, on any machine (the bound is wall-clock time, not the edge's speed); the rest get
    503 + Retry-After; every admitted call completes; the episode ends `hold` after the burst."""
    pbx = uas(tmp_path, edge.pbx_a, timeout=40)
    d = edge.start(extra='[overload]\nmax_rate = 10\nhold = "500ms"\nretry_after = 3\n')
    t0 = time.monotonic()
    burst = uac(tmp_path, edge.port, SERVICE, "uac_call_or_shed.xml", calls=120, rate=40, port=edge.carrier_port,
                name="burst", timeout=40)
    (started,) = d.wait_event("overload_shedding_started", timeout=10)
    assert (started["reason"], started["admitted_rate"]) == ("max_rate", 10.0)
    status, took = _options(edge.port, 1)
    assert status == "SIP/2.0 200 OK" and took < 1.0
    assert burst.wait(40) == 0, burst.errors()[-3000:]
    span = time.monotonic() - t0  # the INVITEs were all offered within this
    assert (burst.count("SuccessfulCall(C)"), burst.count("FailedCall(C)")) == (120, 0)
    msgs = burst.messages()
    shed = msgs.count("SIP/2.0 503 Service Unavailable")
    admitted = 120 - shed
    assert msgs.count("Retry-After: 3") == shed
    assert 25 <= admitted <= 10 * span + 3, (admitted, span)  # 3 s of offer at least: ~30
    (stopped,) = d.wait_event("overload_shedding_stopped", timeout=10)
    assert stopped["shed_invites"] == shed
    after = uac(tmp_path, edge.port, SERVICE, calls=1, port=free_port(), name="after", timeout=20)
    assert after.wait(20) == 0, after.errors()[-3000:]
    pbx.stop()
    m = _metrics(Admin(tmp_path, (tmp_path / "edge.toml").read_text()))
    assert m["edge_overload_rate_limit"] == 10 and m["edge_overload_shedding"] == 0
    assert m["edge_overload_shed_invites_total"] == shed and m["edge_overload_admitted_invites_total"] == admitted + 1
