"""edge.call.explain: the decision path of a contact that is not placed, through the real admission code."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.call.admission import Gatekeeper
from edge.call.explain import ExplainRequest, carrier_source, explain, render, validate_request
from edge.call.peers import Peer, PeerDirectory
from edge.config import EdgeConfig
from edge.dialplan.load import load_dialplans
from edge.dialplan.plan import Plan
from edge.policy.pipeline import PolicyEngine
from edge.sip.message import parse
from edge.sip.transaction import Destination
from edge.stir.schema import StirConfig

import msgspec

ROOT = Path(__file__).resolve().parents[2]
SRC = Destination("udp", "192.0.2.10", 5060)
CARRIER = Peer("carrier", "carrier-a")
T0 = 1_000_000.0

PLAN = """\
customer = "acme"
targets = ["pbx-a", "pbx-b"]

[[numbers]]
number = "+12025550100"

[[numbers]]
number = "+12025550101"
targets = ["pbx-b", "pbx-a"]
action = "menu"

[[block]]
cnam = "ROBO*"
[[allow]]
number = "+13035550199"

[spam]
cool_off = "1h"
[[spam.rate]]
key = "caller"
rate = "3/60s"
weight = 90
[[spam.rate]]
key = "source"
rate = "100/1s"
action = "reject"

[menus.main]
greeting = "menu-default"
[menus.main.options]
"1" = { forward = "pbx-a" }
"""


@pytest.fixture
def plan(tmp_path: Path) -> Plan:
    (tmp_path / "acme.toml").write_text(PLAN)
    plan, _ = load_dialplans(tmp_path, {"pbx-a", "pbx-b"})
    return plan


def gatekeeper(plan: Plan) -> Gatekeeper:
    engine = PolicyEngine()
    engine.replace_static_rules(plan.rules)
    return Gatekeeper(engine, StirConfig())


def invite(caller: str, called: str, i: int, name: str = "") -> bytes:
    disp = f'"{name}" ' if name else ""
    return (f"INVITE sip:{called}@edge SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-{i}\r\n"
            f"From: {disp}<sip:{caller}@192.0.2.10>;tag={i}\r\nTo: <sip:{called}@edge>\r\n"
            f"Call-ID: x-{i}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n").encode()


def test_explain_clean_call_path(plan: Plan, tmp_path: Path) -> None:
    e = explain(ExplainRequest(called="+12025550101", calling="+13035550111", name="ACME SALES"), plan, gatekeeper(plan),
                SRC, CARRIER, T0)
    assert (e.found, e.file, e.line, e.col, e.entry) == (True, f"{tmp_path}/acme.toml", 8, 1, "$.numbers[1].number = +12025550101")
    assert (e.customer, e.default_action, e.action, e.rule_id, e.media) == ("acme", "menu", "menu", "dialplan.action", "main")
    assert e.rules == []
    assert [(r.key, r.counted_as, r.count, r.with_contact, r.exceeded, r.aggregate) for r in e.rates] == [
        ("caller", "+13035550111", 0.0, 1.0, False, False), ("source", "192.0.2.10", 0.0, 1.0, False, True)]
    assert [(t.score, t.action, t.reached) for t in e.thresholds] == [(80.0, "reject", False), (50.0, "captcha", False)]
    assert e.spam_consulted and e.counts == "zero"


def test_explain_forwarded_lists_targets_in_hunt_order(plan: Plan) -> None:
    e = explain(ExplainRequest(called="+12025550100", calling="+13035550111"), plan, gatekeeper(plan), SRC, CARRIER, T0)
    assert (e.action, e.targets) == ("allow", ["pbx-a", "pbx-b"])
    assert "targets   pbx-a -> pbx-b (hunt order)" in render(e)


def test_explain_every_fitting_rule_and_the_winner(plan: Plan) -> None:
    e = explain(ExplainRequest(called="+12025550100", calling="+13035550199", name="Robo Caller"), plan, gatekeeper(plan),
                SRC, CARRIER, T0)
    assert [(r.scope, r.id, r.allow, r.outcome) for r in e.rules] == [
        ("customer", "acme/allow:number:+13035550199", True, "decided"),
        ("customer", "acme/block:cnam:robo*", False, "outweighed"),
    ]
    assert (e.action, e.rule_id, e.spam_consulted) == ("allow", "acme/allow:number:+13035550199", False)


def test_explain_changes_nothing_and_agrees_with_the_next_real_call(plan: Plan) -> None:
    """Explain runs the real admission read-only: the verdict it shows is the one the next call gets."""
    gk = gatekeeper(plan)
    entry = plan.lookup("+12025550100")
    req = ExplainRequest(called="+12025550100", calling="+13035550111")
    for i in range(6):
        now = T0 + i
        before = dict(gk.engine.stats)
        shown = explain(req, plan, gk, SRC, CARRIER, now, live=True)
        assert gk.engine.stats == before
        real = gk.admit(parse(invite("+13035550111", "+12025550100", i)), SRC, CARRIER, entry, now).decision
        assert (shown.action, shown.rule_id, shown.score) == (real.action.value, real.rule_id, real.score), i
        assert shown.rates[0].count == pytest.approx(i, abs=0.01)
    assert shown.action == "reject" and shown.cool_off.startswith("reject until ")


def test_explain_unknown_and_released_numbers(plan: Plan) -> None:
    gk = gatekeeper(plan)
    e = explain(ExplainRequest(called="+13125550100"), plan, gk, SRC, CARRIER, T0)
    assert (e.found, e.action, e.sip_status, e.rule_id) == (False, "reject", 404, "dialplan.unknown_number")
    e = explain(ExplainRequest(called="+12025550100"), plan, gk, SRC, CARRIER, T0, is_released={"+12025550100"}.__contains__)
    assert (e.released, e.action, e.rule_id) == (True, "intercept", "lifecycle.released")


def test_explain_request_validation() -> None:
    assert validate_request(ExplainRequest(called="+12025550100")) == []
    assert validate_request(ExplainRequest(called="x", calling="y", stir="maybe", attestation="D", name='a"b')) == [
        "called number 'x' is not a telephone number",
        "calling number 'y' is not a telephone number (leave it empty for anonymous)",
        "stir 'maybe' is not one of absent, passed, failed",
        "attestation 'D' is not A, B or C",
        "caller name may not contain quotes, angle brackets, backslashes or line breaks",
    ]


def test_carrier_source_defaults_and_refusals() -> None:
    cfg = msgspec.convert({"listen": [{}], "carriers": [{"name": "c", "sources": ["192.0.2.0/24"]},
                                                          {"name": "d", "sources": ["198.51.100.7:5070"]}]}, EdgeConfig)
    peers = PeerDirectory(cfg.call_settings())
    srcs = [c.sources for c in cfg.carriers]
    assert carrier_source("", srcs, peers) == (Destination("udp", "192.0.2.1", 5060), Peer("carrier", "c"))
    assert carrier_source("198.51.100.7", srcs, peers) == (Destination("udp", "198.51.100.7", 5070), Peer("carrier", "d"))
    assert carrier_source("203.0.113.1", srcs, peers) == "source 203.0.113.1 is not a carrier (its INVITE would get 403 before any policy)"
    assert carrier_source("nope", srcs, peers) == "source 'nope' is not an IP address"
