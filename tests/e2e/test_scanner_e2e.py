"""A real attack tool and a UDP flood against the daemon on loopback while sipp places legitimate calls
(issue 8): SIPVicious svmap/svwar from 127.0.0.2 are dropped unanswered and their source banned; a
flood of OPTIONS from many 127.x addresses is cut off by the pike-like density check; the carrier's
calls complete; the daemon's memory stays flat."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.e2e.harness import Admin, env_with_path, uac, uas

pytestmark = pytest.mark.e2e

SERVICE = "12025550100"
SCANNER_IP = "127.0.0.2"  # svmap binds here (-b): neither carrier nor PBX, so subject to the flood guard
# svwar 0.3.8 ignores -b and sends from 127.0.0.1:5060: the carrier is configured by exact address and
# port, so svwar shares the carrier's IP but not its exemption (and the carrier survives svwar's ban).


def _tool(name: str) -> str:
    return str(Path(sys.executable).parent / f"sipvicious_{name}")


def _run_tool(tmp: Path, name: str, args: list[str], timeout: float = 40.0) -> str:
    env = env_with_path()
    env["HOME"] = str(tmp)  # svmap/svwar keep session files under ~/.sipvicious
    proc = subprocess.run([_tool(name), *args], capture_output=True, text=True, timeout=timeout, env=env, cwd=tmp)
    return proc.stdout + proc.stderr


def _rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _metrics(admin: Admin) -> dict[str, float]:
    status, text = admin.call("GET", "/metrics")
    assert status == 200
    out: dict[str, float] = {}
    for line in str(text).splitlines():
        if line and not line.startswith("#"):
            name, _, value = line.rpartition(" ")
            out[name.split("{")[0]] = out.get(name.split("{")[0], 0.0) + float(value)
    return out


def test_scanner_sipvicious_banned_while_calls_complete(edge, tmp_path):
    d = edge.start(carrier=[f"127.0.0.1:{edge.carrier_port}"])
    admin = Admin(tmp_path, (tmp_path / "edge.toml").read_text())
    pbx = uas(tmp_path, edge.pbx_a, timeout=90)
    car = uac(tmp_path, edge.port, SERVICE, calls=200, rate=20, port=edge.carrier_port, extra=["-d", "500"], timeout=90)
    d.wait_event("contact_decided", count=10, timeout=20)
    rss_before = _rss_kib(d.proc.pid)
    # svmap: an OPTIONS and an INVITE sweep of a port range around the edge; svwar: extension
    # enumeration by INVITE and by REGISTER. Each bounded by its own options and a subprocess timeout.
    sweep = ["-b", SCANNER_IP, "-p", f"{edge.port - 2}-{edge.port + 2}", "-t", "0.05"]
    svmap = _run_tool(tmp_path, "svmap", [*sweep, "127.0.0.1"])
    svmap_invite = _run_tool(tmp_path, "svmap", [*sweep, "-m", "INVITE", "-e", "100", "127.0.0.1"])
    svwar_invite = _run_tool(tmp_path, "svwar", ["-p", str(edge.port), "-m", "INVITE", "-e", "100-400",
                                                 "-t", "0.05", "--force", "--maximumtime", "5", "127.0.0.1"])
    svwar_register = _run_tool(tmp_path, "svwar", ["-p", str(edge.port), "-e", "1000-1300",
                                                   "-t", "0.05", "--force", "--maximumtime", "5", "127.0.0.1"])
    assert car.wait(90) == 0, car.errors()[-3000:]
    pbx.stop()
    assert (car.count("SuccessfulCall(C)"), car.count("FailedCall(C)")) == (200, 0)
    # The scanners learned nothing: svmap found no device, svwar got no answer and gave up.
    for out in (svmap, svmap_invite):
        assert "found nothing" in out and f"127.0.0.1:{edge.port}" not in out, out
    for out in (svwar_invite, svwar_register):
        assert "found nothing" in out and "Ok SIP device found" not in out, out
    bans = {e["ip"]: e["reason"] for e in d.wait_event("source_banned", count=2, timeout=5)}
    assert bans == {SCANNER_IP: "scanner", "127.0.0.1": "scanner"}
    m = _metrics(admin)
    assert m["edge_flood_dropped_scanner_total"] >= 2
    assert m["edge_flood_dropped_scanner_total"] + m["edge_flood_dropped_banned_total"] >= 4
    assert m["edge_flood_bans_total"] == 2
    # Nothing of the scans reached the SIP core: no decision for them, no 405 for svwar's REGISTER.
    assert d.events("contact_decided") and not [e for e in d.events("contact_decided") if SCANNER_IP in str(e)]
    assert "method not allowed" not in svwar_register
    assert _rss_kib(d.proc.pid) - rss_before < 30_000


def _flood(port: int, sources: int, per_source: int, seconds: float) -> int:
    """OPTIONS from `sources` loopback addresses (127.0.3.x...), `per_source` each, spread over `seconds`."""
    socks = []
    for i in range(sources):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.0.{3 + i // 250}.{1 + i % 250}", 0))
        s.setblocking(False)
        socks.append(s)
    sent = 0
    total = sources * per_source
    start = time.monotonic()
    try:
        for n in range(total):
            s = socks[n % sources]
            msg = (f"OPTIONS sip:{n}@127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP {s.getsockname()[0]}:"
                   f"{s.getsockname()[1]};branch=z9hG4bK{n}\r\nFrom: <sip:x@flood>;tag={n}\r\nTo: <sip:{n}@127.0.0.1>\r\n"
                   f"Call-ID: flood-{n}\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
            try:
                s.sendto(msg, ("127.0.0.1", port))
                sent += 1
            except BlockingIOError:
                pass
            if n % 200 == 0:
                lag = start + seconds * n / total - time.monotonic()
                if lag > 0:
                    time.sleep(lag)
    finally:
        for s in socks:
            s.close()
    return sent


def test_scanner_udp_flood_from_many_sources_banned_calls_complete(edge, tmp_path):
    d = edge.start()
    admin = Admin(tmp_path, (tmp_path / "edge.toml").read_text())
    pbx = uas(tmp_path, edge.pbx_a, timeout=90)
    car = uac(tmp_path, edge.port, SERVICE, calls=150, rate=25, port=edge.carrier_port, extra=["-d", "300"], timeout=90)
    d.wait_event("contact_decided", count=10, timeout=20)
    rss_before = _rss_kib(d.proc.pid)
    # 500 sources x 100 OPTIONS = 50,000 messages in ~5 s (~10,000/s) while the carrier places calls.
    sent = _flood(edge.port, sources=500, per_source=100, seconds=5.0)
    assert car.wait(90) == 0, car.errors()[-3000:]
    pbx.stop()
    assert (car.count("SuccessfulCall(C)"), car.count("FailedCall(C)")) == (150, 0)
    m = _metrics(admin)
    assert m.get("edge_flood_bans_total", 0) >= 400  # nearly every flooding source got banned
    dropped = m.get("edge_flood_dropped_flood_total", 0) + m.get("edge_flood_dropped_banned_total", 0)
    assert dropped >= sent * 0.5
    assert _rss_kib(d.proc.pid) - rss_before < 30_000
    assert os.kill(d.proc.pid, 0) is None  # still running
