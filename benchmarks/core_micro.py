"""CPU cost of the sans-IO proxy core alone: one clean call (INVITE/180/200/ACK/BYE/200) fed as bytes,
no sockets, no event loop, a fresh caller per call. Prints microseconds per call and per message.

    .venv/bin/python -m benchmarks.core_micro [--calls 20000] [--policy] [--cpu]

`--cpu` times with the process CPU clock instead of the wall clock (a shared machine steals wall time);
SIP_EDGE_PURE=1 runs the pure-Python source of the compiled modules (edge/build.py).
"""

from __future__ import annotations

import argparse
import sys
import time

import msgspec

from edge.call.admission import Gatekeeper
from edge.call.proxy import Proxy
from edge.config import EdgeConfig
from edge.daemon.process import tune_gc
from edge.build import build_info
from edge.dialplan.plan import NumberEntry, Plan
from edge.policy.pipeline import PolicyEngine
from edge.sip.transaction import Destination
from edge.stir.schema import StirConfig

CARRIER = Destination("udp", "192.0.2.5", 5080)
PBX = Destination("udp", "10.0.0.1", 5070)

CFG = {
    "listen": [{"transport": "udp", "address": "127.0.0.1:5060"}],
    "carriers": [{"name": "c", "sources": ["192.0.2.0/24"]}],
    "pbx": [{"name": "pbx-a", "uri": "sip:10.0.0.1:5070", "health_check": False}],
    "logging": {"log_calls": False},
}


def invite(i: int) -> bytes:
    return (
        f"INVITE sip:12025550100@127.0.0.1:5060 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.5:5080;branch=z9hG4bK-c{i}\r\n"
        f"From: \"Caller\" <sip:+1303{5550000 + i % 9000000:07d}@192.0.2.5>;tag=f{i}\r\n"
        f"To: <sip:12025550100@127.0.0.1>\r\nCall-ID: call-{i}@192.0.2.5\r\nCSeq: 1 INVITE\r\n"
        f"Contact: <sip:c@192.0.2.5:5080>\r\nMax-Forwards: 70\r\nContent-Type: application/sdp\r\n"
        f"Content-Length: 129\r\n\r\n" + "v=0\r\no=u 1 1 IN IP4 192.0.2.5\r\ns=-\r\nc=IN IP4 192.0.2.5\r\nt=0 0\r\n"
        "m=audio 6000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n" + " " * 35
    ).encode()


def response(fwd: bytes, status: str, to_tag: str, extra: str = "") -> bytes:
    head = fwd.split(b"\r\n\r\n", 1)[0].decode().split("\r\n")
    keep = [h for h in head[1:] if h.split(":", 1)[0].lower() in ("via", "from", "call-id", "cseq", "record-route")]
    to = next(h for h in head if h.lower().startswith("to:"))
    return ("\r\n".join([f"SIP/2.0 {status}", *keep, f"{to};tag={to_tag}", extra, "Content-Length: 0", "", ""])).encode()


def run(calls: int, policy: bool, cpu: bool = False) -> None:
    tune_gc()  # the daemon's collector settings, so the figure matches what runs in production
    cfg = msgspec.convert(CFG, EdgeConfig)
    plan = Plan([NumberEntry("+12025550100", True, "acme", ("pbx-a",), "acme.toml")])
    gate = Gatekeeper(PolicyEngine(), StirConfig(enabled=False)) if policy else None
    proxy = Proxy(cfg.call_settings(), plan, gate)
    now = 1000.0
    messages = 0
    spent = 0.0
    clock = time.process_time if cpu else time.perf_counter
    real_receive = proxy.receive

    def receive(data: bytes, src: Destination, at: float) -> None:
        nonlocal spent
        t = clock()
        real_receive(data, src, at)
        spent += clock() - t

    proxy.receive = receive  # type: ignore[method-assign]  # time the core only, not the byte building
    for i in range(calls):
        proxy.receive(invite(i), CARRIER, now)
        fwd = proxy.datagrams_to_send()[-1][0]
        proxy.receive(response(fwd, "180 Ringing", f"t{i}"), PBX, now)
        proxy.receive(response(fwd, "200 OK", f"t{i}", "Contact: <sip:pbx@10.0.0.1:5070>"), PBX, now)
        proxy.datagrams_to_send()
        ack = (f"ACK sip:pbx@10.0.0.1:5070 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.5:5080;branch=z9hG4bK-a{i}\r\n"
               f"Route: <sip:127.0.0.1:5060;lr>\r\nFrom: <sip:x@y>;tag=f{i}\r\nTo: <sip:12025550100@127.0.0.1>;tag=t{i}\r\n"
               f"Call-ID: call-{i}@192.0.2.5\r\nCSeq: 1 ACK\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()
        proxy.receive(ack, CARRIER, now)
        bye = ack.replace(b"ACK sip", b"BYE sip").replace(b"1 ACK", b"2 BYE").replace(b"-a", b"-b")
        proxy.receive(bye, CARRIER, now)
        fwd_bye = proxy.datagrams_to_send()[-1][0]
        proxy.receive(response(fwd_bye, "200 OK", f"t{i}"), PBX, now)
        proxy.datagrams_to_send()
        proxy.activities_to_store()
        messages += 6
        now += 0.001
        if i % 1000 == 0:
            proxy.handle_timers(now)
    cpu = spent
    sys.stdout.write(f"command: {' '.join(sys.argv)}\n")
    sys.stdout.write(f"build={build_info().label} clock={'cpu' if cpu else 'wall'}\n")
    sys.stdout.write(f"calls={calls} policy={'on' if policy else 'off'} answered={proxy.stats.calls_answered} "
                     f"ended={proxy.stats.calls_ended}\n")
    sys.stdout.write(f"core time in Proxy.receive: {cpu / calls * 1e6:.1f} us/call, {cpu / messages * 1e6:.1f} us/message\n")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--policy", action="store_true", help="admission with the policy engine (no rules)")
    ap.add_argument("--cpu", action="store_true", help="time with the process CPU clock, not the wall clock")
    a = ap.parse_args()
    run(a.calls, a.policy, a.cpu)


if __name__ == "__main__":
    main()
