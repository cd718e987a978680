from __future__ import annotations

import random

import pytest

from edge.policy.facts import ALLOW_CLEAN, Action, ContactKind, Decision
from edge.policy.pipeline import PolicyEngine
from edge.policy.plan import NumberPolicy
from edge.policy.rates import RateKey, RateLimit
from edge.policy.rules import BlockRule, RuleKind, Scope
from edge.policy.schema import PolicySettings
from edge.policy.signals import SignalConfig, SignalWeights
from edge.policy.spam import RateRule, SpamConfig, Threshold
from edge.stir.result import StirResult, StirStatus
from policy_factories import build_facts

SPAM = SpamConfig(
    signals=SignalConfig(weights=SignalWeights(stir_absent=0.0)),
    thresholds=(Threshold(80.0, Action.REJECT, "t80"), Threshold(50.0, Action.CAPTCHA, "t50"), Threshold(30.0, Action.VOICEMAIL, "t30")),
)
FULL = NumberPolicy(number="+13125550111", spam=SPAM, captcha="default", menu="main", voicemail="box1")


def engine_with(*rules: BlockRule) -> PolicyEngine:
    engine = PolicyEngine()
    for r in rules:
        engine.rules.add(r)
    return engine


def block(value: str = "+12025550100", **kw) -> BlockRule:
    return BlockRule(id=kw.pop("id", "blk"), kind=kw.pop("kind", RuleKind.NUMBER), value=value, **kw)


def test_policy_engine_clean_call_without_spam_is_allow_clean() -> None:
    assert engine_with().decide(build_facts(), NumberPolicy(), 0.0) is ALLOW_CLEAN


def test_policy_engine_block_rule_rejects_with_rule_status() -> None:
    d = engine_with(block(sip_status=607)).decide(build_facts("+12025550100"), FULL, 0.0)
    assert (d.action, d.rule_id, d.reason, d.sip_status) == (Action.REJECT, "blk", "blocked by number +12025550100", 607)
    assert d.evidence[0].signal == "block"


def test_policy_engine_block_reason_from_rule() -> None:
    d = engine_with(block(reason="robocaller reported by customer")).decide(build_facts("+12025550100"), FULL, 0.0)
    assert d.reason == "robocaller reported by customer"


def test_policy_engine_allow_rule_skips_spam() -> None:
    engine = engine_with(block(allow=True, id="pbx"))
    facts = build_facts("+12025550100", "+12025550199", stir=StirResult(StirStatus.FAILED))  # would score 70
    d = engine.decide(facts, FULL, 0.0)
    assert (d.action, d.rule_id, d.score) == (Action.ALLOW, "pbx", 0.0)


def test_policy_engine_spam_threshold_routes_to_configured_media() -> None:
    facts = build_facts("+12025550100", "+12025550199", stir=StirResult(StirStatus.FAILED))
    d = engine_with().decide(facts, FULL, 0.0)
    assert (d.action, d.rule_id, d.target_ref, d.score) == (Action.CAPTCHA, "t50", "default", 70.0)
    assert [e.signal for e in d.evidence] == ["stir.failed", "neighbour_spoof"]


def test_policy_engine_spam_allow_names_spam_rule() -> None:
    d = engine_with().decide(build_facts(), FULL, 0.0)
    assert (d.action, d.rule_id, d.reason) == (Action.ALLOW, "spam", "spam score 0 below every threshold")


@pytest.mark.parametrize(
    ("action", "plan", "expected", "target"),
    [
        (Action.CAPTCHA, NumberPolicy(), Action.REJECT, ""),
        (Action.CAPTCHA, NumberPolicy(voicemail="box1", media_fallback=Action.VOICEMAIL), Action.VOICEMAIL, "box1"),
        (Action.MENU, NumberPolicy(media_fallback=Action.VOICEMAIL), Action.REJECT, ""),
        (Action.VOICEMAIL, NumberPolicy(media_fallback=Action.ALLOW), Action.ALLOW, ""),
        (Action.MENU, NumberPolicy(menu="main"), Action.MENU, "main"),
    ],
    ids=["default-reject", "to-voicemail", "fallback-missing-too", "to-allow", "configured"],
)
def test_policy_engine_media_action_degrades_to_fallback(action: Action, plan: NumberPolicy, expected: Action, target: str) -> None:
    engine = engine_with(block(action=action))
    d = engine.decide(build_facts("+12025550100"), plan, 0.0)
    assert (d.action, d.target_ref) == (expected, target)
    if expected is not action:
        assert d.reason.endswith(f"; {action.value} not configured, fallback {expected.value}")
        assert engine.stats["media_fallbacks_total"] == 1


@pytest.mark.parametrize(
    ("rule_action", "fax_action", "expected"),
    [
        (Action.CAPTCHA, Action.ALLOW, Action.ALLOW),
        (Action.MENU, Action.ALLOW, Action.ALLOW),
        (Action.VOICEMAIL, Action.ALLOW, Action.ALLOW),
        (Action.CAPTCHA, Action.REJECT, Action.REJECT),
        (Action.REJECT, Action.ALLOW, Action.REJECT),
    ],
    ids=["captcha", "menu", "voicemail", "fax-action-reject", "blocked-stays-blocked"],
)
def test_policy_engine_fax_never_screened(rule_action: Action, fax_action: Action, expected: Action) -> None:
    engine = engine_with(block(action=rule_action))
    plan = NumberPolicy(captcha="c", menu="m", voicemail="v", fax_action=fax_action)
    for facts in (build_facts("+12025550100", kind=ContactKind.FAX), build_facts("+12025550100", has_fax_sdp=True)):
        assert engine.decide(facts, plan, 0.0).action is expected


def test_policy_engine_fax_gets_rates() -> None:
    spam = SpamConfig(rates=(RateRule("fax-rate", RateKey.CALLER, RateLimit(1, 60.0), action=Action.REJECT),), cool_off=0.0)
    engine = engine_with()
    plan = NumberPolicy(spam=spam)
    facts = build_facts("+12025550100", kind=ContactKind.FAX)
    assert [engine.decide(facts, plan, t).action for t in (0.0, 1.0)] == [Action.ALLOW, Action.REJECT]


@pytest.mark.parametrize(
    ("rule_action", "expected"),
    [(Action.REJECT, Action.REJECT), (Action.CAPTCHA, Action.REJECT), (Action.VOICEMAIL, Action.REJECT)],
)
def test_policy_engine_message_blocked_is_rejected(rule_action: Action, expected: Action) -> None:
    d = engine_with(block(action=rule_action)).decide(build_facts("+12025550100", kind=ContactKind.MESSAGE), FULL, 0.0)
    assert (d.action, d.sip_status) == (expected, 603)


def test_policy_engine_message_ignores_call_signals_but_counts_rates() -> None:
    spam = SpamConfig(
        rates=(RateRule("msg-rate", RateKey.CALLER, RateLimit(1, 60.0), weight=60.0),),
        thresholds=(Threshold(50.0, Action.CAPTCHA, "t50"),),
        cool_off=0.0,
    )
    engine = engine_with()
    plan = NumberPolicy(spam=spam, captcha="c")
    facts = build_facts("+15555555555", "+15555555599", kind=ContactKind.MESSAGE, stir=StirResult(StirStatus.FAILED))
    first = engine.decide(facts, plan, 0.0)
    assert (first.action, first.evidence) == (Action.ALLOW, ())
    second = engine.decide(facts, plan, 1.0)
    assert (second.action, second.rule_id) == (Action.REJECT, "t50")
    assert second.reason.endswith("; message: captcha -> reject")


def test_policy_engine_dry_run_rule_records_would_and_allows() -> None:
    engine = engine_with(block(id="try", kind=RuleKind.CNAM, value="*offer*", dry_run=True))
    d = engine.decide(build_facts(cnam="Special Offer"), FULL, 0.0)
    assert d == Decision(
        action=Action.ALLOW,
        rule_id="try",
        reason="dry run: would reject: blocked by cnam *offer*",
        score=0.0,
        evidence=d.evidence,
        dry_run=True,
        would=Action.REJECT,
    )
    assert [e.signal for e in d.evidence] == ["block.dry_run"]
    assert engine.stats["dry_run_total"] == 1


def test_policy_engine_dry_run_rule_with_enforced_spam_keeps_enforced_action() -> None:
    engine = engine_with(block(id="try", dry_run=True, action=Action.VOICEMAIL))
    facts = build_facts("+12025550100", "+12025550199", stir=StirResult(StirStatus.FAILED))
    d = engine.decide(facts, FULL, 0.0)
    assert (d.action, d.rule_id, d.dry_run, d.would) == (Action.CAPTCHA, "t50", True, Action.VOICEMAIL)


def test_policy_engine_dry_run_number_enforces_nothing() -> None:
    engine = engine_with(block())
    plan = NumberPolicy(spam=SPAM, dry_run=True)
    d = engine.decide(build_facts("+12025550100"), plan, 0.0)
    assert (d.action, d.rule_id, d.dry_run, d.would, d.sip_status) == (Action.ALLOW, "blk", True, Action.REJECT, 0)
    assert d.reason == "dry run: would reject: blocked by number +12025550100"


def test_policy_engine_dry_run_spam_records_would() -> None:
    spam = SpamConfig(thresholds=(Threshold(10.0, Action.REJECT, "t10"),), dry_run=True)
    d = engine_with().decide(build_facts("", anonymous=True), NumberPolicy(spam=spam), 0.0)
    assert (d.action, d.rule_id, d.dry_run, d.would) == (Action.ALLOW, "t10", True, Action.REJECT)


def test_policy_engine_customer_scope_from_plan() -> None:
    engine = engine_with(block(scope=Scope.CUSTOMER, scope_value="acme"))
    assert engine.decide(build_facts("+12025550100"), NumberPolicy(customer="acme"), 0.0).action is Action.REJECT
    assert engine.decide(build_facts("+12025550100"), NumberPolicy(customer="other"), 0.0).action is Action.ALLOW


def test_policy_engine_observe_hooks_feed_signals() -> None:
    engine = engine_with()
    caller = "+12025550100"
    for t in range(3):
        engine.observe_call_end(caller, True, 1.0, float(t))
    engine.observe_screening(caller, False, 3.0)
    engine.observe_screening(caller, False, 4.0)
    d = engine.decide(build_facts(caller), FULL, 5.0)
    assert [e.signal for e in d.evidence] == ["short_calls", "failed_screenings"]
    assert (d.action, d.rule_id) == (Action.CAPTCHA, "t50")


def test_policy_engine_released_number_hook() -> None:
    engine = PolicyEngine(is_released={"+13125550111"}.__contains__)
    d = engine.decide(build_facts(), FULL, 0.0)
    assert [e.signal for e in d.evidence] == ["released_number"]


def test_policy_engine_clear_flag_lifts_cool_off() -> None:
    spam = SpamConfig(rates=(RateRule("r", RateKey.CALLER, RateLimit(1, 10.0), action=Action.REJECT),), cool_off=3600.0)
    engine = engine_with()
    plan = NumberPolicy(spam=spam)
    facts = build_facts("+12025550100")
    engine.decide(facts, plan, 0.0)
    assert engine.decide(facts, plan, 1.0).action is Action.REJECT
    assert engine.decide(facts, plan, 100.0).action is Action.REJECT
    assert engine.clear_flag("+12025550100") is True
    assert engine.decide(facts, plan, 200.0).action is Action.ALLOW


def test_policy_engine_stats_count_by_action_and_rule() -> None:
    engine = engine_with(block())
    engine.decide(build_facts("+12025550100"), FULL, 0.0)
    engine.decide(build_facts("+12025550101"), NumberPolicy(), 0.0)
    s = engine.stats
    assert s["decisions_total"] == 2
    assert s["decisions_by_action"]["reject"] == 1 and s["decisions_by_action"]["allow"] == 1
    assert s["decisions_by_rule"] == {"blk": 1, "default": 1}


def test_policy_engine_stats_rule_labels_capped() -> None:
    engine = PolicyEngine(PolicySettings(max_rule_stats=2))
    for i in range(5):
        engine.rules.add(block(f"+1202555010{i}", id=f"r{i}"))
        engine.decide(build_facts(f"+1202555010{i}"), NumberPolicy(), 0.0)
    assert engine.stats["decisions_by_rule"] == {"r0": 1, "r1": 1, "other": 3}


def test_policy_engine_rejects_bad_settings() -> None:
    with pytest.raises(ValueError, match=r"^\$\.policy\.max_flagged: must be at least 1$"):
        PolicyEngine(PolicySettings(max_flagged=0))


def test_policy_engine_random_caller_flood_stays_bounded() -> None:
    settings = PolicySettings(max_rate_keys=500, max_callers=300, max_flagged=200)
    engine = PolicyEngine(settings)
    spam = SpamConfig(
        rates=(
            RateRule("caller", RateKey.CALLER, RateLimit(1, 60.0), weight=90.0),
            RateRule("pair", RateKey.PAIR, RateLimit(1, 60.0), weight=10.0),
            RateRule("cnam", RateKey.CNAM, RateLimit(1, 60.0), weight=10.0),
        ),
    )
    plan = NumberPolicy(spam=spam)
    rng = random.Random(5)
    for i in range(20_000):
        caller = f"+1202{rng.randrange(2_000_000, 9_999_999):07d}"
        facts = build_facts(caller, cnam=f"n{i}")
        engine.decide(facts, plan, i * 0.01)
        engine.decide(facts, plan, i * 0.01)  # second call inside the window: flagged
        engine.observe_call_end(caller, True, 1.0, i * 0.01)
    s = engine.stats
    assert all(n <= 500 for n in s["rate_keys"].values())
    assert s["rate_evictions_total"]["caller"] > 19_000
    assert s["history_callers"] <= 300
    assert s["flagged_callers"] <= 200 and s["flag_evictions_total"] > 0
