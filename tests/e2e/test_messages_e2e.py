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
hold = ["*verify your account*"]
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


def test_messages_held_for_review_then_released_to_pbx(msg_edge, tmp_path):
    edge, d, admin = msg_edge
    pbx = uas(tmp_path, edge.pbx_a, uas_message_scenario(tmp_path))
    body = "Bank notice: please VERIFY your  account today"
    s = _sender(tmp_path, edge.port, "held", _message_scenario(tmp_path, "held", body, frm="+13035550144",
                                                              to="+12025550150", expect=(202,)), calls=1)
    assert s.wait(20) == 0, s.errors()
    status, held = admin.call("GET", "/messages/held")
    assert status == 200 and [(m["sender"], m["body"].strip()) for m in held["held"]] == [("+13035550144", body)]
    time.sleep(0.5)
    assert not [r for r in _received(pbx) if r[1].startswith("MESSAGE")]  # nothing reached the PBX while held
    held_id = held["held"][0]["id"]
    assert admin.call("GET", f"/activities/{held_id}")[1]["decision"] == "hold"
    status, _ = admin.call("POST", f"/messages/held/{held_id}/release")
    assert status == 200
    d.wait_event("held_message_released")
    deadline = time.monotonic() + 5
    while not [r for r in _received(pbx) if r[1].startswith("MESSAGE")] and time.monotonic() < deadline:
        time.sleep(0.05)
    pbx.stop()
    assert [b for _, line, b in _received(pbx) if line.startswith("MESSAGE")] == [body]
    act = admin.call("GET", f"/activities/{held_id}")[1]
    assert (act["decision"], act["rule_id"]) == ("deliver", "review.released")
    assert admin.call("GET", "/messages/held")[1]["held"] == []


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


def test_messages_help_reply_then_stop_refuses_outbound(msg_edge, tmp_path):
    edge, d, admin = msg_edge
    consumer = "+13035550111"
    carrier = uas(tmp_path, edge.carrier_in, uas_message_scenario(tmp_path), name="carrier-in")
    pbx = uas(tmp_path, edge.pbx_a, uas_message_scenario(tmp_path))
    for word in ("HELP", "STOP"):
        s = _sender(tmp_path, edge.port, f"kw-{word}", _message_scenario(tmp_path, f"kw-{word}", word, frm=consumer,
                                                                        to=CAMPAIGN_NUMBER, expect=(200,)), calls=1)
        assert s.wait(20) == 0, s.errors()
    out = _sender(tmp_path, edge.port, "after-stop", _message_scenario(tmp_path, "after-stop", "Weekly offers inside",
                                                                      frm=CAMPAIGN_NUMBER, to=consumer, expect=(403,)),
                  calls=1, port=edge.pbx_b)
    assert out.wait(20) == 0, out.errors()
    d.wait_event("optout_recorded")
    carrier.stop()
    pbx.stop()
    replies = [(line, body) for _, line, body in _received(carrier) if line.startswith("MESSAGE")]
    assert len(replies) == 2  # the help text and one opt-out confirmation; the refused offer never left
    assert replies[0][0].startswith(f"MESSAGE sip:{consumer}@") and replies[0][1] == HELP_TEXT
    assert "unsubscribed" in replies[1][1]
    assert sorted(b for _, _, b in _received(pbx)) == ["HELP", "STOP"]  # the business still sees them
    refused = admin.activities(decision="refuse")
    assert len(refused) == 1 and refused[0]["rule_id"] == "a2p.opted_out" and refused[0]["final_status"] == 403
    status, body = admin.call("GET", "/optouts")
    assert status == 200 and [(o["campaign"], o["recipient"]) for o in body["optouts"]] == [("CACME01", consumer)]


def _post(port: int, body: bytes, key: str | None = API_KEY) -> tuple[int, dict, float]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}/v1/screen", data=body, method="POST")
    req.add_header("Content-Type", "application/json")
    if key is not None:
        req.add_header("Authorization", f"Bearer {key}")
    t0 = time.perf_counter()
    try:
        with urllib.request.urlopen(req, timeout=5) as resp:
            status, raw = resp.status, resp.read()
    except urllib.error.HTTPError as exc:
        status, raw = exc.code, exc.read()
    return status, json.loads(raw), time.perf_counter() - t0


def _forms(admin: Admin) -> list[dict]:
    status, body = admin.call("GET", "/activities?limit=1000")
    assert status == 200
    return [a for a in body["items"] if a["kind"] in ("form", "chat")]


def test_screening_api_bad_requests_refused_and_nothing_stored(msg_edge):
    edge, d, admin = msg_edge
    port = edge.api_port
    cases = [
        (b'{"channel": "form", "phone": "+12025550123"', API_KEY, 400, "invalid JSON"),
        (json.dumps({"channel": "form", "text": "x" * 4000}).encode(), API_KEY, 413, "body larger than 2048 bytes"),
        (b'{"channel": "form", "phone": "+12025550123", "fax": "1"}', API_KEY, 422, "unknown field"),
        (b'{"channel": "sms", "phone": "+12025550123"}', API_KEY, 422, "Invalid enum value 'sms'"),
        (b'{"channel": "form"}', API_KEY, 422, "nothing to screen"),
        (b'{"channel": "form", "phone": "+12025550123"}', "wrong-key", 401, "missing or unknown API key"),
        (b'{"channel": "form", "phone": "+12025550123"}', None, 401, "missing or unknown API key"),
    ]
    for body, key, status, reason in cases:
        got, answer, _ = _post(port, body, key)
        assert (got, reason in answer["error"]) == (status, True), (got, answer)
    time.sleep(0.3)  # activity writes are batched every 20 ms
    assert _forms(admin) == []
    # The admin listener does not serve the screening route, and the screening listener no admin route.
    assert admin.call("POST", "/v1/screen", {"channel": "form"})[0] == 404


def test_screening_api_load_p99_and_flag_blocks_next_submission(msg_edge):
    edge, d, admin = msg_edge
    port = edge.api_port
    total, workers = 400, 4
    lat: list[float] = []
    decisions: list[str] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        for i in range(total // workers):
            form = {"channel": "form", "phone": f"+1202555{(1000 + (w * 100 + i) % 900):04d}", "name": f"Visitor {i}",
                    "email": f"v{w}-{i}@example.com", "ip": f"198.51.100.{1 + w}", "text": "Please call me back",
                    "page": "/contact"}
            status, answer, seconds = _post(port, json.dumps(form).encode())
            with lock:
                assert status == 200, answer
                lat.append(seconds)
                decisions.append(answer["decision"])

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    t0 = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    wall = time.perf_counter() - t0
    assert len(lat) == total
    lat.sort()
    p50, p99 = lat[total // 2], lat[int(total * 0.99) - 1]
    # 100 submissions per IP inside the window: past 20 each IP is challenged (rate.ip), never rejected.
    assert decisions.count("allow") == 4 * 20 and set(decisions) == {"allow", "challenge"}
    print(f"screening API: {total} requests, {workers} clients, {total / wall:.0f}/s, p50 {p50 * 1000:.2f} ms, p99 {p99 * 1000:.2f} ms")

    form = {"channel": "form", "phone": "+12025550188", "name": "Mallory", "email": "mallory@example.org",
            "ip": "192.0.2.77", "text": "Great deals on your website traffic", "page": "/quote"}
    status, first, _ = _post(port, json.dumps(form).encode())
    assert status == 200 and first["decision"] == "allow"
    deadline = time.monotonic() + 5
    while admin.call("GET", f"/activities/{first['activity_id']}")[0] != 200 and time.monotonic() < deadline:
        time.sleep(0.05)
    status, flagged = admin.call("POST", f"/activities/{first['activity_id']}/flag", {"by": "email", "scope": "customer"})
    assert status in (200, 201), flagged
    rule_id = flagged["rule"]["id"]
    # The next submission with that address (another phone, IP and name) is rejected by the new rule.
    again = dict(form, phone="+12025550177", ip="192.0.2.78", name="M.")
    status, second, _ = _post(port, json.dumps(again).encode())
    assert (status, second["decision"]) == (200, "reject")
    time.sleep(0.2)
    status, act = admin.call("GET", f"/activities/{second['activity_id']}")
    assert status == 200 and act["rule_id"] == rule_id and act["kind"] == "form"
    # Flag by IP works the same way.
    status, flagged_ip = admin.call("POST", f"/activities/{second['activity_id']}/flag", {"by": "ip"})
    assert status in (200, 201) and flagged_ip["rule"]["kind"] == "ip", flagged_ip
    status, third, _ = _post(port, json.dumps(dict(form, email="other@example.net", ip="192.0.2.78")).encode())
    assert third["decision"] == "reject"


def test_messages_optout_on_one_node_refuses_on_the_other(tmp_path):
    """Two daemons sharing one real redis-server: STOP received by node A, the campaign's next text to
    that recipient refused by node B."""
    import socket
    import uuid

    from tests.e2e.harness import Daemon, write_config, write_dialplan
    from tests.redis_server import RedisServer

    server = RedisServer(tmp_path / "redis")
    server.start()
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    pbx_a, pbx_b, carrier_in = free_port(), free_port(), free_port()
    nodes: list[tuple[Daemon, int]] = []
    try:
        for name in ("a", "b"):
            home = tmp_path / name
            home.mkdir()
            port = free_port()
            extra = "\n".join([
                "[store]", 'backend = "redis"', f'path = "{home / "var" / "edge.db"}"', 'batch_interval = "20ms"',
                f'redis_url = "{server.url}"', f'redis_prefix = "{prefix}"', 'redis_timeout = "300ms"',
            ]) + _extra(free_port(socket.SOCK_STREAM, None))
            cfg = write_config(home, port, ["127.0.0.1/32"], [("pbx-a", pbx_a), ("pbx-b", pbx_b)], extra=extra,
                               health_interval="", outbound=[f"sip:127.0.0.1:{carrier_in}"])
            nodes.append((Daemon(cfg, write_dialplan(home, DIALPLAN), home / "daemon.log"), port))
        for d, _ in nodes:
            d.wait_ready()
        (node_a, port_a), (node_b, port_b) = nodes
        carrier = uas(tmp_path, carrier_in, uas_message_scenario(tmp_path), name="carrier-in")
        pbx = uas(tmp_path, pbx_a, uas_message_scenario(tmp_path))
        consumer = "+13035550166"
        stop = _sender(tmp_path, port_a, "stop-a", _message_scenario(tmp_path, "stop-a", "Stop", frm=consumer,
                                                                    to=CAMPAIGN_NUMBER, expect=(200,)), calls=1)
        assert stop.wait(20) == 0, stop.errors()
        node_a.wait_event("optout_recorded")
        node_b.wait_event("optout_shared")
        offer = _sender(tmp_path, port_b, "offer-b", _message_scenario(tmp_path, "offer-b", "New offers", frm=CAMPAIGN_NUMBER,
                                                                      to=consumer, expect=(403,)), calls=1, port=pbx_b)
        assert offer.wait(20) == 0, offer.errors()
        carrier.stop()
        pbx.stop()
        refused = [e for e in node_b.events("contact_decided") if e.get("rule_id") == "a2p.opted_out"]
        assert len(refused) == 1 and refused[0]["status"] == 403
    finally:
        for d, _ in nodes:
            d.stop()
        server.stop()
