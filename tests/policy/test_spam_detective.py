from __future__ import annotations

import pytest

from edge.policy.facts import Action
from edge.policy.rates import RateKey, RateLimit
from edge.policy.signals import SignalConfig, SignalWeights
from edge.policy.spam import FlagTable, Flag, RateRule, SpamConfig, SpamDetective, Threshold
from edge.stir.result import StirResult, StirStatus
from policy_factories import build_facts

QUIET = SignalConfig(weights=SignalWeights(stir_absent=0.0))
THRESHOLDS = (
    Threshold(80.0, Action.REJECT, "t80"),
    Threshold(50.0, Action.CAPTCHA, "t50"),
    Threshold(30.0, Action.VOICEMAIL, "t30"),
)


def config(**kw) -> SpamConfig:
    kw.setdefault("signals", QUIET)
    kw.setdefault("thresholds", THRESHOLDS)
    return SpamConfig(**kw)


@pytest.mark.parametrize(
    ("facts_kw", "action", "rule_id", "score"),
    [
        ({"calling": "+12025550100"}, Action.ALLOW, "", 0.0),
        ({"calling": "", "anonymous": True}, Action.ALLOW, "", 20.0),
        ({"calling": "+15555555555"}, Action.VOICEMAIL, "t30", 30.0),
        ({"calling": "+12025550100", "called": "+12025550199", "anonymous": False, "stir": StirResult(StirStatus.FAILED)}, Action.CAPTCHA, "t50", 30.0),
        ({"calling": "+15555555555", "called": "+15555555599", "stir": StirResult(StirStatus.FAILED)}, Action.REJECT, "t80", 30.0),
    ],
    ids=["clean", "anonymous-below", "invalid-30", "neighbour+stir-50", "all-80"],
)
def test_spam_detective_threshold_maps_score(facts_kw: dict, action: Action, rule_id: str, score: float) -> None:
    from edge.policy.signals import stir_evidence

    facts = build_facts(**facts_kw)
    cfg = config()
    extra = stir_evidence(facts, cfg.signals.weights)
    v = SpamDetective().assess(facts, cfg, 0.0, "", extra=extra)
    assert v.action is action
    assert v.rule_id == rule_id
    assert v.score >= score


def test_spam_detective_threshold_reason_lists_signals() -> None:
    v = SpamDetective().assess(build_facts("+15555555555"), config(), 0.0, "")
    assert v.reason == "spam score 30 >= 30 (invalid)"


def test_spam_detective_rate_exceeded_adds_weight_and_evidence() -> None:
    rule = RateRule("caller-rate", RateKey.CALLER, RateLimit(2, 60.0), weight=50.0)
    cfg = config(rates=(rule,))
    d = SpamDetective()
    facts = build_facts("+12025550100")
    assert [d.assess(facts, cfg, t, "").action for t in (0.0, 1.0)] == [Action.ALLOW, Action.ALLOW]
    v = d.assess(facts, cfg, 2.0, "")
    assert v.action is Action.CAPTCHA
    assert [(e.signal, e.rule_id, e.detail) for e in v.evidence] == [("rate.caller", "caller-rate", "3.0 per 60s > 2")]


@pytest.mark.parametrize(
    ("key", "vary", "same"),
    [
        (RateKey.SOURCE, {"calling": "+12025550101"}, {"source_ip": "192.0.2.10"}),
        (RateKey.CALLED, {"calling": "+12025550102"}, {"called": "+13125550111"}),
        (RateKey.PAIR, {}, {"calling": "+12025550100", "called": "+13125550111"}),
    ],
    ids=["source", "called", "pair"],
)
def test_spam_detective_rate_keys(key: RateKey, vary: dict, same: dict) -> None:
    rule = RateRule("r", key, RateLimit(1, 60.0), action=Action.REJECT)
    cfg = config(rates=(rule,), cool_off=0.0)
    d = SpamDetective()
    first = d.assess(build_facts(**{**same, **vary}), cfg, 0.0, "")
    second = d.assess(build_facts(**same), cfg, 1.0, "")
    assert (first.action, second.action) == (Action.ALLOW, Action.REJECT)


def test_spam_detective_cnam_rate_uses_normalised_name() -> None:
    rule = RateRule("r", RateKey.CNAM, RateLimit(1, 60.0), action=Action.VOICEMAIL)
    cfg = config(rates=(rule,), cool_off=0.0)
    d = SpamDetective()
    assert d.assess(build_facts("+12025550100"), cfg, 0.0, "acmeoffers").action is Action.ALLOW
    assert d.assess(build_facts("+12025550101"), cfg, 1.0, "acmeoffers").action is Action.VOICEMAIL
    assert d.assess(build_facts("+12025550102"), cfg, 2.0, "").action is Action.ALLOW  # no name, no key


def test_spam_detective_rate_action_most_severe_wins() -> None:
    rules = (
        RateRule("soft", RateKey.CALLER, RateLimit(1, 60.0), action=Action.MENU),
        RateRule("hard", RateKey.CALLER, RateLimit(2, 60.0), action=Action.REJECT),
    )
    cfg = config(rates=rules, cool_off=0.0)
    d = SpamDetective()
    facts = build_facts("+12025550100")
    got = [(v.action, v.rule_id) for v in (d.assess(facts, cfg, float(t), "") for t in range(3))]
    assert got == [(Action.ALLOW, ""), (Action.MENU, "soft"), (Action.REJECT, "hard")]
    assert d.rates.tracked() == {"caller": 1}  # one counter for both rules: same key and window


def test_spam_detective_rate_action_does_not_lower_threshold_action() -> None:
    rule = RateRule("r", RateKey.CALLER, RateLimit(1, 60.0), weight=0.0, action=Action.MENU)
    cfg = config(rates=(rule,), cool_off=0.0)
    d = SpamDetective()
    facts = build_facts("+15555555555")  # invalid: 30 -> voicemail
    d.assess(facts, cfg, 0.0, "")
    v = d.assess(facts, cfg, 1.0, "")
    assert (v.action, v.rule_id) == (Action.VOICEMAIL, "t30")


def test_spam_detective_flag_holds_through_cool_off() -> None:
    rule = RateRule("burst", RateKey.CALLER, RateLimit(1, 10.0), weight=90.0)
    cfg = config(rates=(rule,), cool_off=600.0)
    d = SpamDetective()
    facts = build_facts("+12025550100")
    d.assess(facts, cfg, 0.0, "")
    assert d.assess(facts, cfg, 1.0, "").action is Action.REJECT
    later = d.assess(facts, cfg, 300.0, "")  # rate is clean again, flag is not
    assert (later.action, later.rule_id, later.flagged) == (Action.REJECT, "t80", True)
    assert later.reason == "caller flagged for cool-off: spam score 90 >= 80 (rate.caller)"
    assert [e.signal for e in later.evidence] == ["spam.flagged"]
    # A verdict caused by the flag alone does not extend it.
    assert d.assess(facts, cfg, 601.5, "").action is Action.ALLOW
    assert len(d.flags) == 0


def test_spam_detective_flag_maps_through_the_current_plan() -> None:
    strict = config(rates=(RateRule("burst", RateKey.CALLER, RateLimit(1, 10.0), weight=60.0),), cool_off=600.0)
    lenient = config(thresholds=(Threshold(95.0, Action.REJECT, "l95"),))
    d = SpamDetective()
    facts = build_facts("+12025550100")
    d.assess(facts, strict, 0.0, "")
    assert d.assess(facts, strict, 1.0, "").action is Action.CAPTCHA
    v = d.assess(facts, lenient, 2.0, "")
    assert v.action is Action.CAPTCHA  # flagged action carries over even where the score would not
    assert v.score == 60.0


def test_spam_detective_dry_run_does_not_flag() -> None:
    cfg = config(rates=(RateRule("burst", RateKey.CALLER, RateLimit(1, 10.0), weight=90.0),), dry_run=True)
    d = SpamDetective()
    facts = build_facts("+12025550100")
    d.assess(facts, cfg, 0.0, "")
    assert d.assess(facts, cfg, 1.0, "").action is Action.REJECT
    assert len(d.flags) == 0


def test_spam_detective_message_counts_rates_only() -> None:
    cfg = config(rates=(RateRule("r", RateKey.CALLER, RateLimit(5, 60.0), weight=40.0),))
    v = SpamDetective().assess(build_facts("+15555555555", "+15555555599"), cfg, 0.0, "", message=True)
    assert (v.action, v.evidence) == (Action.ALLOW, ())


def test_spam_detective_reject_carries_status() -> None:
    v = SpamDetective().assess(build_facts("+15555555555"), config(thresholds=(Threshold(10.0, Action.REJECT, "t"),), reject_status=607), 0.0, "")
    assert (v.action, v.sip_status) == (Action.REJECT, 607)


def test_flag_table_bounded_and_expiring() -> None:
    table = FlagTable(max_entries=2)
    for i, caller in enumerate(("a", "b", "c")):
        table.set(caller, Flag(100.0 + i, 90.0, Action.REJECT, "r", "why"))
    assert len(table) == 2 and table.evictions == 1
    assert table.get("a", 0.0) is None
    assert table.get("b", 50.0) is not None
    assert table.get("b", 101.0) is None
    assert len(table) == 1
    assert table.clear("c") is True and table.clear("c") is False


@pytest.mark.parametrize("key", [RateKey.SOURCE, RateKey.CALLED, RateKey.CNAM], ids=lambda k: k.value)
def test_spam_detective_aggregate_rate_refuses_but_never_flags(key: RateKey) -> None:
    """A rate shared by many callers is about the traffic: it acts on the contact, no caller is cooled off."""
    cfg = config(rates=(RateRule("agg", key, RateLimit(1, 10.0), action=Action.REJECT),), cool_off=3600.0)
    d = SpamDetective()
    assert d.assess(build_facts("+12025550100"), cfg, 0.0, "ACME").action is Action.ALLOW
    v = d.assess(build_facts("+12025550101"), cfg, 1.0, "ACME")
    assert (v.action, v.rule_id, v.sip_status) == (Action.REJECT, "agg", 603)
    assert len(d.flags) == 0
    assert d.assess(build_facts("+12025550101"), cfg, 20.0, "ACME").action is Action.ALLOW


def test_spam_detective_caller_evidence_alongside_aggregate_flags_only_its_own_score() -> None:
    rules = (RateRule("src", RateKey.SOURCE, RateLimit(1, 10.0), weight=60.0),
             RateRule("me", RateKey.CALLER, RateLimit(1, 10.0), weight=50.0))
    cfg = config(rates=rules, cool_off=3600.0)
    d = SpamDetective()
    facts = build_facts("+12025550100")
    d.assess(facts, cfg, 0.0, "")
    v = d.assess(facts, cfg, 1.0, "")
    assert (v.action, v.score) == (Action.REJECT, 110.0)  # the contact: both rates
    flag = d.flags.get("+12025550100", 1.0)
    assert flag is not None and (flag.score, flag.action, flag.rule_id) == (50.0, Action.CAPTCHA, "t50")  # the caller: its own
