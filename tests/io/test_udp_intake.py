"""The UDP intake on a real loopback socket: a batch that does not empty the socket makes strangers
cost nothing (no parse, no answer) while the carrier's INVITE in the same backlog is served."""

from __future__ import annotations

import asyncio
import socket
import time

import msgspec

from edge.call.flood import FloodGuard
from edge.call.overload import OverloadControl
from edge.call.proxy import Proxy
from edge.config import EdgeConfig
from edge.io.sip_transport import SipHub
from tests.call.proxy_harness import config_dict, make_plan


def _free_udp_port() -> int:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


def _request(method: str, port: int, src: socket.socket, n: int) -> bytes:
    host, sport = src.getsockname()
    return (f"{method} sip:+12025550100@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {host}:{sport};branch=z9hG4bK{method.lower()}{n}\r\n"
            f"From: <sip:+13035550100@{host}>;tag=t{n}\r\nTo: <sip:+12025550100@127.0.0.1>\r\n"
            f"Call-ID: {method.lower()}-{n}@{host}\r\nCSeq: 1 {method}\r\nMax-Forwards: 70\r\n"
            "Content-Length: 0\r\n\r\n").encode()


async def test_udp_intake_backlog_drops_strangers_unparsed_and_serves_the_carrier():
    port, pbx_port = _free_udp_port(), _free_udp_port()
    cfg = msgspec.convert(config_dict(
        listen=[{"transport": "udp", "address": f"127.0.0.1:{port}"}],
        carriers=[{"name": "carrier-a", "sources": ["127.0.0.1/32"]}],
        pbx=[{"name": "pbx-a", "uri": f"sip:127.0.0.1:{pbx_port}", "health_check": False}],
    ), EdgeConfig)
    proxy = Proxy(cfg.call_settings(), make_plan(("pbx-a",)))
    hub = SipHub(proxy, cfg)
    hub.guard = FloodGuard(cfg.flood, lambda ip, p: proxy.peers.classify(ip, p) is not None)
    hub.overload = OverloadControl(cfg.overload)
    pbx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    pbx.bind(("127.0.0.1", pbx_port))
    carrier = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    carrier.bind(("127.0.0.1", 0))
    carrier.settimeout(2)
    strangers = []
    for i in range(10):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((f"127.0.11.{i + 1}", 0))
        strangers.append(s)
    await hub.start()
    assert hub.udp is not None
    hub.udp.batch = 32  # small, so the backlog below fits any receive buffer
    try:
        # Queued before the loop reads once: 40 stranger OPTIONS, the carrier's INVITE, 40 more.
        for n in range(40):
            strangers[n % 10].sendto(_request("OPTIONS", port, strangers[n % 10], n), ("127.0.0.1", port))
        carrier.sendto(_request("INVITE", port, carrier, 0), ("127.0.0.1", port))
        for n in range(40, 80):
            strangers[n % 10].sendto(_request("OPTIONS", port, strangers[n % 10], n), ("127.0.0.1", port))
        loop = asyncio.get_running_loop()
        trying = await asyncio.wait_for(loop.run_in_executor(None, carrier.recv, 65536), 3)
        assert trying.startswith(b"SIP/2.0 100 Trying")
        pbx.settimeout(2)
        forwarded = await loop.run_in_executor(None, pbx.recv, 65536)
        assert forwarded.startswith(b"INVITE sip:")
        await asyncio.sleep(0.1)
        assert proxy.stats.received == 1  # none of the 80 stranger messages was parsed
        stats = hub.guard.stats
        assert stats.admitted == 0 and stats.dropped_load >= 10 and stats.bans >= 8
        assert hub.intake.udp_full_batches >= 1 and hub.intake.udp_peer_datagrams == 1
        for s in strangers:
            s.setblocking(False)
            try:
                s.recv(65536)
                raise AssertionError("a stranger got an answer")
            except BlockingIOError:
                pass
    finally:
        await hub.close()
        for s in (pbx, carrier, *strangers):
            s.close()


async def test_udp_intake_queue_delay_from_kernel_receive_times_starts_shedding():
    """INVITEs that waited 400 ms in the socket (the loop was blocked) are a queue delay over `loop_lag`
    (300 ms): the read that finds them starts an episode at the floor rate and answers them 503 + Retry-After
    from their raw bytes, before the core sees them."""
    port, pbx_port = _free_udp_port(), _free_udp_port()
    cfg = msgspec.convert(config_dict(
        listen=[{"transport": "udp", "address": f"127.0.0.1:{port}"}],
        carriers=[{"name": "carrier-a", "sources": ["127.0.0.1/32"]}],
        pbx=[{"name": "pbx-a", "uri": f"sip:127.0.0.1:{pbx_port}", "health_check": False}],
        overload={"retry_after": 7},
    ), EdgeConfig)
    proxy = Proxy(cfg.call_settings(), make_plan(("pbx-a",)))
    hub = SipHub(proxy, cfg)
    hub.overload = OverloadControl(cfg.overload)
    carrier = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    carrier.bind(("127.0.0.1", 0))
    carrier.settimeout(2)
    await hub.start()
    assert hub.udp is not None and hub.udp.stamped
    try:
        for n in range(5):
            carrier.sendto(_request("INVITE", port, carrier, n), ("127.0.0.1", port))
        time.sleep(0.4)  # the loop is blocked: the INVITEs wait in the socket
        loop = asyncio.get_running_loop()
        answers = [await asyncio.wait_for(loop.run_in_executor(None, carrier.recv, 65536), 3) for _ in range(5)]
        assert all(a.startswith(b"SIP/2.0 503 ") and b"\r\nRetry-After: 7\r\n" in a for a in answers)
        assert proxy.stats.received == 0  # answered from the raw bytes
        ovl = hub.overload
        assert ovl.shedding and ovl.stats.shed_invites == 5 and ovl.stats.episodes == 1
        m = hub.intake_metrics()
        assert m["overload_shedding"] == 1 and m["overload_rate_limit"] == 1.0 and m["overload_shed_invites_total"] == 5
    finally:
        await hub.close()
        carrier.close()
