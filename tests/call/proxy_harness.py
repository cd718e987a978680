"""A sans-IO harness around edge.call.proxy.Proxy: config from a dict, a fake clock, a carrier and two PBX stubs."""

from __future__ import annotations

from typing import Any

import msgspec

from edge.call.proxy import Proxy
from edge.config import EdgeConfig
from edge.dialplan.plan import NumberEntry, Plan
from edge.sip.message import SipMessage, parse
from edge.sip.transaction import Destination
from tests.sip.samples import msg

CARRIER = Destination("udp", "192.0.2.5", 5080)
STRANGER = Destination("udp", "198.51.100.66", 5060)
PBX_A = Destination("udp", "10.0.0.1", 5070)
PBX_B = Destination("udp", "10.0.0.2", 5072)
EDGE = ("127.0.0.1", 5060)
CALLED = "+12025550100"
EDGE_URI = f"sip:{CALLED}@127.0.0.1:5060"


def config_dict(**sections: Any) -> dict[str, Any]:
    """Like config/edge.toml: one carrier, two PBXs (health checks off unless asked), overrides per section."""
    cfg: dict[str, Any] = {
        "listen": [
            {"transport": "udp", "address": "127.0.0.1:5060"},
            {"transport": "tcp", "address": "127.0.0.1:5060"},
        ],
        "carriers": [{"name": "carrier-a", "sources": ["192.0.2.0/24"], "outbound": ["sip:192.0.2.5:5080"]}],
        "pbx": [
            {"name": "pbx-a", "uri": "sip:10.0.0.1:5070", "health_check": False},
            {"name": "pbx-b", "uri": "sip:10.0.0.2:5072", "health_check": False},
        ],
        "timers": {"t1": "500ms", "t2": "4s", "t4": "5s", "timer_b": "8s", "timer_c": "180s"},
        "limits": {"dialog_max_age": "1h"},
        "acl": {"unknown_source": "reject"},
        "logging": {"log_calls": False},
        "daemon": {"node": "edge-t"},
    }
    for name, value in sections.items():
        if isinstance(value, dict) and isinstance(cfg.get(name), dict):
            cfg[name] = {**cfg[name], **value}
        else:
            cfg[name] = value
    return cfg


def make_plan(targets: tuple[str, ...] = ("pbx-a", "pbx-b")) -> Plan:
    return Plan([
        NumberEntry(key=CALLED, exact=True, customer="acme", targets=targets, file="acme.toml"),
        NumberEntry(key="+1303555", exact=False, customer="bolt", targets=("pbx-b",), file="bolt.toml"),
    ])


class Harness:
    """Drives one Proxy with a fake clock; `feed` returns what the proxy sent in answer, parsed."""

    def __init__(self, proxy: Proxy | None = None, **sections: Any) -> None:
        cfg = msgspec.convert(config_dict(**sections), EdgeConfig)
        self.proxy = proxy or Proxy(cfg.call_settings(), make_plan())
        self.now = 1000.0
        self.activities: list = []  # every activity record the proxy handed out, in order

    def take(self) -> list[tuple[SipMessage, Destination]]:
        out = [(parse(data), dest) for data, dest in self.proxy.datagrams_to_send()]
        self.activities += self.proxy.activities_to_store()
        return out

    def feed(self, data: bytes, src: Destination = CARRIER) -> list[tuple[SipMessage, Destination]]:
        self.proxy.receive(data, src, self.now)
        return self.take()

    def advance(self, seconds: float) -> list[tuple[SipMessage, Destination]]:
        """Move the clock, firing every due timer in deadline order like the daemon loop."""
        end = self.now + seconds
        while True:
            d = self.proxy.next_deadline()
            if d is None or d > end:
                break
            self.now = max(self.now, d)
            self.proxy.handle_timers(self.now)
        self.now = end
        return self.take()

    def tables(self) -> tuple[int, int, int]:
        p = self.proxy
        return len(p.server_txns), len(p.client_txns), len(p.dialogs)


def answer(request: SipMessage, status: int, reason: str = "R", *, to_tag: str = "pbx-tag",
           extra: tuple[str, ...] = (), body: str = "", contact: str = f"sip:{CALLED}@10.0.0.1:5070") -> bytes:
    """A UAS response to `request` (as a PBX stub would send it): Vias copied, To tag added."""
    to = request.get("to") or ""
    if status > 100 and ";tag=" not in to:
        to = f"{to};tag={to_tag}"
    headers = [f"Via: {v}" for v in request.get_all("via")]
    headers += [f"Record-Route: {r}" for r in request.get_all("record-route")]
    headers += [f"From: {request.get('from')}", f"To: {to}", f"Call-ID: {request.call_id}", f"CSeq: {request.get('cseq')}"]
    if status < 300 and request.method == "INVITE":
        headers.append(f"Contact: <{contact}>")
    headers += list(extra)
    return msg(f"SIP/2.0 {status} {reason}", *headers, body=body)
