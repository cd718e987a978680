"""Hostile input against the running daemon (issue 13 items 1, 5, 6, 7): a caller name built to make
wildcard matching backtrack, an unterminated display name, a 5,000-digit Content-Length on TCP, and a
carrier's OPTIONS to a DID. Raw datagrams and a raw TCP socket on loopback; bounded in messages and seconds."""

from __future__ import annotations

import socket
import time

import pytest

from edge.sip.message import parse

pytestmark = pytest.mark.e2e

CALLED = "+12025550100"
# Eight '*' (the cap): with the former backtracking matcher each INVITE below held the loop for minutes.
HOSTILE_PLAN = f"""
customer = "acme"
targets = ["pbx-a"]

[[numbers]]
number = "{CALLED}"

[[block]]
cnam = "*a*a*a*a*a*a*a*b"
id = "odd-cnam"

[[block]]
number = "+13035550188"
id = "bad-number"
"""


def _request(method: str, port: int, sport: int, n: int, name: str = "", from_value: str = "",
             extra: str = "") -> bytes:
    display = f'"{name}" ' if name else ""
    frm = from_value or f"{display}<sip:+13035550188@127.0.0.1:{sport}>;tag=h{n}"
    lines = [
        f"{method} sip:{CALLED}@127.0.0.1:{port} SIP/2.0",
        f"Via: SIP/2.0/UDP 127.0.0.1:{sport};branch=z9hG4bKhostile{n};rport",
        f"From: {frm}",
        f"To: <sip:{CALLED}@127.0.0.1:{port}>",
        f"Call-ID: hostile-{n}@127.0.0.1",
        f"CSeq: 1 {method}",
        "Max-Forwards: 70",
        f"Contact: <sip:c@127.0.0.1:{sport}>",
    ]
    if name:
        lines.append(f'P-Asserted-Identity: "{name}" <sip:+13035550188@127.0.0.1>')
    if extra:
        lines.append(extra)
    return ("\r\n".join([*lines, "Content-Length: 0", "", ""])).encode()


def _finals(sock: socket.socket, want: set[str], deadline: float) -> dict[str, tuple[int, float]]:
    """Call-ID -> (final status, arrival time) for each wanted Call-ID, until all arrive or the deadline."""
    got: dict[str, tuple[int, float]] = {}
    while set(got) != want and time.monotonic() < deadline:
        sock.settimeout(max(0.05, deadline - time.monotonic()))
        try:
            data = sock.recv(65535)
        except socket.timeout:
            break
        m = parse(data)
        if m.status >= 200 and m.call_id in want:
            got.setdefault(m.call_id, (m.status, time.monotonic()))
    return got


def test_hostile_caller_names_do_not_delay_a_carriers_options(edge):
    """Ten INVITEs named 128 'a's against an 8-wildcard rule, then a carrier OPTIONS to the DID: the OPTIONS
    is answered 200 as a keep-alive within seconds (linear matching costs microseconds per name; the
    backtracking matcher cost minutes per INVITE), and every INVITE still gets its 603."""
    d = edge.start(dialplan=HOSTILE_PLAN, health_interval="")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sport = sock.getsockname()[1]
    try:
        t0 = time.monotonic()
        for n in range(10):
            sock.sendto(_request("INVITE", edge.port, sport, n, name="a" * 128), ("127.0.0.1", edge.port))
        sock.sendto(_request("OPTIONS", edge.port, sport, 99), ("127.0.0.1", edge.port))
        want = {f"hostile-{n}@127.0.0.1" for n in [*range(10), 99]}
        got = _finals(sock, want, t0 + 20)
        for n in range(10):  # ACK the 603s so the daemon's transactions close cleanly
            sock.sendto(_request("ACK", edge.port, sport, n).replace(b"To: <sip:+12025550100@127.0.0.1:"
                        + str(edge.port).encode() + b">", b"To: <sip:+12025550100@127.0.0.1>;tag=x"),
                        ("127.0.0.1", edge.port))
    finally:
        sock.close()
    assert set(got) == want, f"missing answers: {sorted(want - set(got))}"
    status, at = got["hostile-99@127.0.0.1"]
    assert status == 200
    assert at - t0 < 5.0, f"carrier OPTIONS waited {at - t0:.2f}s behind hostile INVITEs"
    assert {got[f"hostile-{n}@127.0.0.1"][0] for n in range(10)} == {603}
    decided = d.wait_event("contact_decided", count=10)
    assert all(e.get("call_id") != "hostile-99@127.0.0.1" for e in decided)  # no activity for the keep-alive


def test_unterminated_display_name_answered_400(edge):
    edge.start(dialplan=HOSTILE_PLAN, health_interval="")
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sport = sock.getsockname()[1]
    try:
        bad = _request("INVITE", edge.port, sport, 1, from_value='"Torture <sip:+13035550188@127.0.0.1>;tag=x')
        sock.sendto(bad, ("127.0.0.1", edge.port))
        sock.settimeout(5)
        reply = sock.recv(65535)
    finally:
        sock.close()
    # The 400 echoes the malformed From (RFC 3261 §8.2.6.2), so read only its status line.
    assert reply.split(b"\r\n", 1)[0] == b"SIP/2.0 400 Bad From header"


def test_tcp_content_length_of_5000_digits_closes_the_connection_with_a_log(edge):
    d = edge.start(dialplan=HOSTILE_PLAN, health_interval="")
    conn = socket.create_connection(("127.0.0.1", edge.port), timeout=5)
    try:
        sport = conn.getsockname()[1]
        data = _request("OPTIONS", edge.port, sport, 7).replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP")
        conn.sendall(data.replace(b"Content-Length: 0", b"Content-Length: " + b"9" * 5000))
        assert conn.recv(65535) == b""  # closed by the edge, not left hanging
    finally:
        conn.close()
    [ev] = d.wait_event("tcp_framing_error")
    assert ev["error"] == "Message too large"
    # The daemon still serves the same port afterwards, and its transport never died.
    conn = socket.create_connection(("127.0.0.1", edge.port), timeout=5)
    try:
        sport = conn.getsockname()[1]
        conn.sendall(_request("OPTIONS", edge.port, sport, 8).replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP"))
        assert parse(conn.recv(65535)).status == 200
    finally:
        conn.close()
    assert "Fatal error on transport" not in d.log()
