"""Texts, chats and forms end to end: the real daemon, sipp carriers and PBXs on loopback, the admin
and screening APIs over HTTP. Every run is bounded in messages and seconds."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import time
import urllib.error
import urllib.request
from datetime import datetime
from pathlib import Path

import pytest

from tests.e2e.harness import Admin, Sipp, free_port, uac, uas, uas_message_scenario

pytestmark = pytest.mark.e2e

CAMPAIGN_NUMBER = "+12025550100"
HELP_TEXT = "Acme alerts: reply STOP to opt out"
PER_MINUTE = 120  # the derived limit the burst test measures (one message every 0.5 s)
API_KEY = "acme-test-key-0123456789"

DIALPLAN = f"""
customer = "acme"
targets = ["pbx-a"]
[[numbers]]
prefix = "+1202555"

[brand]
id = "BACME01"
entity_type = "private_profit"
trust_score = 80

[[campaigns]]
id = "CACME01"
use_case = "account_notification"
numbers = ["{CAMPAIGN_NUMBER}"]
help_text = "{HELP_TEXT}"

[messages]
campaign_senders = 4
campaign_recipients = 4
hold_score = 50
reject_score = 60
"""


def _extra(api_port: int) -> str:
    return f"""
[messaging]
queue_size = 40
max_queue_wait = "20s"
[[messaging.tier]]
message_class = "A"
kind = "declared"
min_trust = 0
max_trust = 100
per_minute = {PER_MINUTE}
daily_cap = 100000
[[messaging.carrier]]
name = "default"
per_minute = true
daily_cap = true
[messaging.screening_api]
enabled = true
listen = "127.0.0.1:{api_port}"
max_body = 2048
[[messaging.screening_api.clients]]
customer = "acme"
key_sha256 = "{hashlib.sha256(API_KEY.encode()).hexdigest()}"
"""


@pytest.fixture
def msg_edge(edge):
    edge.api_port = free_port(also=None)
    carrier_in = free_port()
    edge.carrier_in = carrier_in
    import socket

    edge.api_port = free_port(socket.SOCK_STREAM, None)
    d = edge.start(dialplan=DIALPLAN, health_interval="", extra=_extra(edge.api_port),
                   outbound=[f"sip:127.0.0.1:{carrier_in}"])
    return edge, d, Admin(edge.tmp, (edge.tmp / "edge.toml").read_text())


def _message_scenario(tmp: Path, name: str, body: str, *, frm: str, to: str, expect: tuple[int, ...]) -> str:
    """A UAC sending one MESSAGE per call from `frm` to `to` (numbers, or [field0]/[field1] of an -inf file)."""
    recvs = "".join(f'  <recv response="{c}" optional="true" next="1"/>\n' for c in expect[:-1])
    recvs += f'  <recv response="{expect[-1]}"/>\n  <label id="1"/>\n'
    text = f"""<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="{name}">
  <send retrans="500"><![CDATA[
MESSAGE sip:{to}@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:{frm}@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:{to}@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 MESSAGE
Max-Forwards: 70
Content-Type: text/plain
Content-Length: [len]

{body}
]]></send>
  <recv response="100" optional="true"/>
{recvs}</scenario>
"""
    p = tmp / f"{name}.xml"
    p.write_text(text)
    return str(p)


def _sender(tmp: Path, edge_port: int, name: str, scenario: str, calls: int, *, port: int | None = None,
            inf: Path | None = None, service: str = CAMPAIGN_NUMBER, rate: float = 10) -> Sipp:
    extra = ["-inf", str(inf)] if inf else []
    return uac(tmp, edge_port, service, scenario, calls=calls, rate=rate, port=port, name=name, extra=extra, timeout=40)


def _received(s: Sipp) -> list[tuple[float, str, str]]:
    """(timestamp, request line, body) of every request sipp received, from its message log."""
    out = []
    for block in re.split(r"^-{10,} ", s.messages(), flags=re.M)[1:]:
        head, _, rest = block.partition("\n")
        if "message received" not in rest.split("\n", 1)[0]:
            continue
        msg = rest.split("\n", 2)[2] if rest.count("\n") >= 2 else ""
        start = msg.lstrip("\n").split("\n", 1)[0].strip()
        if start.startswith("SIP/2.0"):
            continue
        call_id = re.search(r"^Call-ID:\s*(\S+)", msg, re.M | re.I)
        body = msg.split("\n\n", 1)[1].strip() if "\n\n" in msg else ""
        ts = datetime.strptime(head.strip().replace("\t", " "), "%Y-%m-%d %H:%M:%S.%f").timestamp()
        out.append((ts, f"{start} {call_id.group(1) if call_id else ''}", body))
    return out


def test_messages_inbound_campaign_across_senders_detected(msg_edge, tmp_path):
    edge, d, admin = msg_edge
    pbx = uas(tmp_path, edge.pbx_a, uas_message_scenario(tmp_path))
    inf = tmp_path / "senders.csv"
    inf.write_text("SEQUENTIAL\n" + "".join(f"+1303555{1200 + i};+1202555{(110 + i):04d}\n" for i in range(8)))
    body = "FINAL NOTICE: your parcel fee is unpaid, reply now to avoid return"
    s = _sender(tmp_path, edge.port, "campaign", _message_scenario(tmp_path, "campaign", body, frm="[field0]",
                                                                   to="[field1]", expect=(200, 403)), calls=8, inf=inf, rate=20)
    assert s.wait(30) == 0, s.errors()
    pbx.stop()
    delivered = [r for r in _received(pbx) if r[1].startswith("MESSAGE")]
    assert len(delivered) == 3  # the 4th sender makes it a campaign (4 senders, 4 recipients)
    acts = [a for a in admin.activities(decision="reject") if a["kind"] == "message"]
    assert len(acts) == 5
    for a in acts:
        assert a["final_status"] == 403 and a["direction"] == "inbound"
        assert any(e["signal"] == "message.campaign" for e in a["evidence"])
    assert len(admin.activities(decision="deliver")) == 3
    # Decisions are logged (call-id bound) and counted.
    assert {e["decision"] for e in d.events("contact_decided") if e.get("kind") == "message"} == {"deliver", "reject"}
    status, text = admin.call("GET", "/metrics")
    assert status == 200 and 'edge_messages_inbound_total{decision="reject"} 5.0' in text


def test_messages_outbound_burst_shaped_to_the_derived_rate(msg_edge, tmp_path):
    edge, d, admin = msg_edge
    n = 13
    carrier = uas(tmp_path, edge.carrier_in, uas_message_scenario(tmp_path), name="carrier-in")
    pbx = _sender(tmp_path, edge.port, "burst", _message_scenario(tmp_path, "burst", "Your code is ready",
                                                                   frm=CAMPAIGN_NUMBER, to="+13035550199", expect=(200,)),
                  calls=n, port=edge.pbx_b, rate=200)
    assert pbx.wait(40) == 0, pbx.errors()
    carrier.stop()
    got = {}
    for ts, line, _ in _received(carrier):
        if line.startswith("MESSAGE"):
            got.setdefault(line.split()[-1], ts)
    times = sorted(got.values())
    assert len(times) == n
    rate = (n - 1) / (times[-1] - times[0]) * 60  # messages per minute over sipp's receive timestamps
    assert abs(rate - PER_MINUTE) / PER_MINUTE < 0.05, (rate, times)
    acts = admin.activities(decision="queued")
    assert len(acts) == n - 1 and all(a["campaign"] == "CACME01" and a["direction"] == "outbound" for a in acts)
    print(f"outbound burst: {n} messages, measured {rate:.2f}/min against the derived {PER_MINUTE}/min")
