"""Block rules, Spam Detective rates, flag -> block through the admin API, and the activities log,
end to end: sipp carrier -> daemon -> sipp PBX on loopback."""

from __future__ import annotations

import time

import pytest

from tests.e2e.harness import Admin, call_scenario, expect_final_scenario, free_port, message_scenario, uac, uas, uas_message_scenario

pytestmark = pytest.mark.e2e

POLICY_PLAN = """
customer = "acme"
targets = ["pbx-a"]

[[numbers]]
number = "+12025550100"

[[block]]
number = "+13035550111"
id = "bad-number"

[[block]]
cnam = "SPAM*"
id = "bad-cnam"

[[block]]
prefix = "+1303555012"
id = "bad-block"

[[allow]]
number = "+13035550122"
id = "trusted"

[spam]
[[spam.rate]]
key = "caller"
rate = "3/60s"
action = "reject"
id = "caller-rate"
"""


@pytest.fixture
def policy_edge(edge):
    d = edge.start(dialplan=POLICY_PLAN, health_interval="")
    return edge, d, Admin(edge.tmp, (edge.tmp / "edge.toml").read_text())


def test_policy_blocked_number_and_cnam_get_603_and_never_reach_pbx(policy_edge, tmp_path):
    edge, d, admin = policy_edge
    pbx = uas(tmp_path, edge.pbx_a)
    a = uac(tmp_path, edge.port, "12025550100", expect_final_scenario(tmp_path, 603, caller="+13035550111"), name="c1")
    assert a.wait(20) == 0, a.errors()
    b = uac(tmp_path, edge.port, "12025550100",
            expect_final_scenario(tmp_path, 603, caller="+13035550199", from_name="Spammer Inc."), name="c2")
    assert b.wait(20) == 0, b.errors()
    pbx.stop()
    assert "INVITE sip:" not in pbx.messages()
    acts = {x["calling_number"]: x for x in admin.activities(decision="reject")}
    assert acts["+13035550111"]["rule_id"] == "bad-number"
    assert acts["+13035550199"]["rule_id"] == "bad-cnam"
    assert acts["+13035550199"]["cnam"] == "Spammer Inc."
    assert all(not x["billable"] and x["final_status"] == 603 for x in acts.values())


def test_policy_allow_entry_overrides_prefix_block(policy_edge, tmp_path):
    edge, d, admin = policy_edge
    pbx = uas(tmp_path, edge.pbx_a)
    ok = uac(tmp_path, edge.port, "12025550100", call_scenario(tmp_path, "+13035550122"), name="allowed")
    assert ok.wait(20) == 0, ok.errors()
    blocked = uac(tmp_path, edge.port, "12025550100", expect_final_scenario(tmp_path, 603, caller="+13035550123"),
                  name="blocked")
    assert blocked.wait(20) == 0, blocked.errors()
    pbx.stop()
    allowed = admin.activities(calling="+13035550122")[0]
    assert allowed["decision"] == "allow" and allowed["rule_id"] == "trusted" and allowed["billable"] is True
    assert admin.activities(calling="+13035550123")[0]["rule_id"] == "bad-block"


def test_policy_caller_over_rate_is_rejected_per_dialplan(policy_edge, tmp_path):
    edge, d, admin = policy_edge
    pbx = uas(tmp_path, edge.pbx_a)
    car = uac(tmp_path, edge.port, "12025550100", call_scenario(tmp_path, "+13035550133"), calls=5, rate=10)
    car.wait(30)
    pbx.stop()
    assert car.count("SuccessfulCall(C)") == 3
    assert car.count("FailedCall(C)") == 2
    rejected = admin.activities(calling="+13035550133", decision="reject")
    assert len(rejected) == 2
    assert {x["rule_id"] for x in rejected} == {"caller-rate"}
    assert all(x["final_status"] == 603 and not x["billable"] for x in rejected)


def test_policy_flag_activity_blocks_next_identical_call(policy_edge, tmp_path):
    edge, d, admin = policy_edge
    pbx = uas(tmp_path, edge.pbx_a)
    first = uac(tmp_path, edge.port, "12025550100", call_scenario(tmp_path, "+13035550144"), name="first")
    assert first.wait(20) == 0, first.errors()
    act = admin.activities(calling="+13035550144")[0]
    status, rule = admin.call("POST", f"/activities/{act['id']}/flag", {"by": "number"})
    assert status in (200, 201), rule
    t0 = time.monotonic()
    second = uac(tmp_path, edge.port, "12025550100", expect_final_scenario(tmp_path, 603, caller="+13035550144"),
                 name="second")
    assert second.wait(20) == 0, second.errors()
    assert time.monotonic() - t0 < 5
    pbx.stop()
    assert pbx.messages().count("INVITE sip:") == 1
    blocked = admin.activities(calling="+13035550144", decision="reject")[0]
    assert blocked["rule_id"] == rule["rule"]["id"] if "rule" in rule else rule["id"]
    # Missing token -> 401; unknown activity -> 404; invalid number -> 422.
    assert admin.call("GET", "/activities", token=False)[0] == 401
    assert admin.call("GET", "/activities/nope")[0] == 404
    assert admin.call("POST", "/blocks", {"kind": "number", "value": "12"})[0] == 422


def test_policy_message_from_blocked_number_rejected_and_clean_message_forwarded(policy_edge, tmp_path):
    edge, d, admin = policy_edge
    pbx = uas(tmp_path, edge.pbx_a, uas_message_scenario(tmp_path), calls=1)
    bad = uac(tmp_path, edge.port, "12025550100", message_scenario(tmp_path, "+13035550111", 603), name="bad")
    assert bad.wait(20) == 0, bad.errors()
    good = uac(tmp_path, edge.port, "12025550100", message_scenario(tmp_path, "+13035550155", 200), name="good")
    assert good.wait(20) == 0, good.errors()
    assert pbx.wait(10) == 0, pbx.errors()
    assert pbx.messages().count("MESSAGE sip:") == 1
    msgs = {x["calling_number"]: x for x in admin.activities(called="+12025550100") if x["kind"] == "message"}
    assert msgs["+13035550111"]["decision"] == "reject" and msgs["+13035550111"]["billable"] is False
    assert msgs["+13035550155"]["final_status"] == 200


def test_policy_metrics_expose_decisions(policy_edge, tmp_path):
    edge, d, admin = policy_edge
    a = uac(tmp_path, edge.port, "12025550100", expect_final_scenario(tmp_path, 603, caller="+13035550111"), name="c1")
    assert a.wait(20) == 0, a.errors()
    status, text = admin.call("GET", "/metrics")
    assert status == 200
    assert 'edge_policy_rule_hits_total{rule="bad-number"} 1.0' in text
    assert 'edge_sip_final_responses_total{status="603"} 1.0' in text
