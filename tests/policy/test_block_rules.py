from __future__ import annotations

import random

import pytest

from policy_factories import build_facts
from edge.policy.blocking import Match, RuleIndex, RuleValueError, normalise_rule
from edge.policy.facts import Action
from edge.policy.rules import BlockRule, RuleKind, Scope

CALLED = "+13125550111"


def rule(id: str, kind: RuleKind, value: str = "", **kw) -> BlockRule:
    return BlockRule(id=id, kind=kind, value=value, **kw)


@pytest.mark.parametrize(
    ("r", "facts_kw", "hit"),
    [
        (rule("n", RuleKind.NUMBER, "+12025550100"), {"calling": "+12025550100"}, True),
        (rule("n", RuleKind.NUMBER, "+12025550100"), {"calling": "+12025550101"}, False),
        (rule("n-raw", RuleKind.NUMBER, "(202) 555-0100"), {"calling": "+12025550100"}, True),
        (rule("p", RuleKind.PREFIX, "+1900"), {"calling": "+19005551234"}, True),
        (rule("p", RuleKind.PREFIX, "+1900"), {"calling": "+12029005555"}, False),
        (rule("npa-nxx", RuleKind.PREFIX, "+1202555"), {"calling": "+12025559999"}, True),
        (rule("c", RuleKind.CNAM, "Spam Likely"), {"cnam": "SPAM-LIKELY"}, True),
        (rule("c", RuleKind.CNAM, "Spam Likely"), {"cnam": "Spam"}, False),
        (rule("w", RuleKind.CNAM, "*insurance*"), {"cnam": "Health Insurance Co"}, True),
        (rule("w", RuleKind.CNAM, "*insurance*"), {"cnam": "Bob"}, False),
        (rule("a", RuleKind.ANONYMOUS), {"calling": "", "anonymous": True}, True),
        (rule("a", RuleKind.ANONYMOUS), {"calling": "+12025550100"}, False),
        (rule("i", RuleKind.INVALID), {"calling": "+15555555555"}, True),
        (rule("i", RuleKind.INVALID), {"calling": "+12025550100"}, False),
        (rule("i", RuleKind.INVALID), {"calling": "", "anonymous": True}, False),
        (rule("cc", RuleKind.COUNTRY, "ng"), {"calling": "+2348031234567"}, True),
        (rule("cc", RuleKind.COUNTRY, "NG"), {"calling": "+442079460000"}, False),
    ],
    ids=[
        "number-hit",
        "number-miss",
        "number-normalised",
        "prefix-hit",
        "prefix-miss",
        "npa-nxx",
        "cnam-exact-normalised",
        "cnam-exact-miss",
        "cnam-wildcard-hit",
        "cnam-wildcard-miss",
        "anonymous-hit",
        "anonymous-miss",
        "invalid-hit",
        "invalid-miss",
        "invalid-not-for-anonymous",
        "country-hit",
        "country-miss",
    ],
)
def test_rule_index_match_each_kind(r: BlockRule, facts_kw: dict, hit: bool) -> None:
    index = RuleIndex([r])
    m = index.match(build_facts(**facts_kw), now=0.0)
    if hit:
        assert m == Match(index.get(r.id))
    else:
        assert m is None


def test_rule_index_scopes_apply_only_to_their_number_or_customer() -> None:
    index = RuleIndex(
        [
            rule("num", RuleKind.NUMBER, "+12025550100", scope=Scope.NUMBER, scope_value=CALLED),
            rule("cust", RuleKind.NUMBER, "+12025550101", scope=Scope.CUSTOMER, scope_value="acme"),
        ]
    )
    assert index.match(build_facts("+12025550100", CALLED), 0.0).rule.id == "num"
    assert index.match(build_facts("+12025550100", "+13125550112"), 0.0) is None
    assert index.match(build_facts("+12025550101", customer="acme"), 0.0).rule.id == "cust"
    assert index.match(build_facts("+12025550101", customer="other"), 0.0) is None
    assert index.match(build_facts("+12025550101"), 0.0, customer="acme").rule.id == "cust"


@pytest.mark.parametrize(
    ("block_scope", "allow_scope", "winner"),
    [
        (Scope.GLOBAL, Scope.GLOBAL, "allow"),
        (Scope.GLOBAL, Scope.CUSTOMER, "allow"),
        (Scope.GLOBAL, Scope.NUMBER, "allow"),
        (Scope.CUSTOMER, Scope.CUSTOMER, "allow"),
        (Scope.CUSTOMER, Scope.NUMBER, "allow"),
        (Scope.CUSTOMER, Scope.GLOBAL, "block"),
        (Scope.NUMBER, Scope.GLOBAL, "block"),
        (Scope.NUMBER, Scope.CUSTOMER, "block"),
        (Scope.NUMBER, Scope.NUMBER, "allow"),
    ],
)
def test_rule_index_allow_overrides_same_or_wider_scope(block_scope: Scope, allow_scope: Scope, winner: str) -> None:
    values = {Scope.GLOBAL: "", Scope.CUSTOMER: "acme", Scope.NUMBER: CALLED}
    index = RuleIndex(
        [
            # The block is broad (prefix), the allow narrow or broad: specificity never beats scope.
            rule("block", RuleKind.PREFIX, "+1202", scope=block_scope, scope_value=values[block_scope]),
            rule("allow", RuleKind.NUMBER, "+12025550100", scope=allow_scope, scope_value=values[allow_scope], allow=True),
        ]
    )
    m = index.match(build_facts("+12025550100", CALLED, customer="acme"), 0.0)
    assert m is not None and m.rule is not None
    assert m.rule.id == winner


def test_rule_index_most_specific_block_decides_within_scope() -> None:
    index = RuleIndex(
        [
            rule("anon", RuleKind.ANONYMOUS),
            rule("country", RuleKind.COUNTRY, "US", action=Action.VOICEMAIL),
            rule("short", RuleKind.PREFIX, "+1202", action=Action.CAPTCHA),
            rule("long", RuleKind.PREFIX, "+1202555", action=Action.MENU),
            rule("cnam", RuleKind.CNAM, "acme*"),
        ]
    )
    assert index.match(build_facts("+12025550100", cnam="Acme Sales"), 0.0).rule.id == "long"
    assert index.match(build_facts("+12024440100", cnam="Acme Sales"), 0.0).rule.id == "short"
    assert index.match(build_facts("+13125550100", cnam="Acme Sales"), 0.0).rule.id == "cnam"
    assert index.match(build_facts("+13125550100"), 0.0).rule.id == "country"


def test_rule_index_expired_rules_ignored_and_purged_lazily() -> None:
    index = RuleIndex(
        [
            rule("old", RuleKind.NUMBER, "+12025550100", expires_at=100.0),
            rule("oldw", RuleKind.CNAM, "spam*", expires_at=100.0),
            rule("livew", RuleKind.CNAM, "sp*"),
        ]
    )
    assert index.match(build_facts("+12025550100"), now=99.0).rule.id == "old"
    assert index.match(build_facts("+12025550100"), now=100.0) is None
    assert "old" not in index
    # The expired wildcard hides the live one in the compiled alternation: the live one must still decide.
    assert index.match(build_facts("+12025550101", cnam="spammer"), now=150.0).rule.id == "livew"
    assert "oldw" not in index
    assert index.expired_purged == 2


def test_rule_index_purge_expired_sweeps() -> None:
    index = RuleIndex([rule("a", RuleKind.ANONYMOUS, expires_at=10.0), rule("b", RuleKind.INVALID)])
    gone = index.purge_expired(now=20.0)
    assert [r.id for r in gone] == ["a"]
    assert [r.id for r in index] == ["b"]


def test_rule_index_dry_run_rule_reported_not_enforced() -> None:
    index = RuleIndex([rule("try", RuleKind.CNAM, "*offer*", dry_run=True)])
    m = index.match(build_facts(cnam="Special Offer"), 0.0)
    assert m == Match(None, index.get("try"))


def test_rule_index_dry_run_allow_shadows_enforced_block() -> None:
    index = RuleIndex(
        [
            rule("block", RuleKind.PREFIX, "+1202"),
            rule("try-allow", RuleKind.NUMBER, "+12025550100", allow=True, dry_run=True),
        ]
    )
    m = index.match(build_facts("+12025550100"), 0.0)
    assert m.rule.id == "block"
    assert m.would.id == "try-allow"


def test_rule_index_dry_run_block_behind_enforced_rule_is_not_reported() -> None:
    index = RuleIndex(
        [
            rule("enforced", RuleKind.NUMBER, "+12025550100"),
            rule("try", RuleKind.PREFIX, "+1202", dry_run=True),
        ]
    )
    assert index.match(build_facts("+12025550100"), 0.0) == Match(index.get("enforced"))


def test_rule_index_replace_static_keeps_runtime_rules() -> None:
    index = RuleIndex(
        [
            rule("static-1", RuleKind.NUMBER, "+12025550100", source="dialplan:acme.toml"),
            rule("runtime-1", RuleKind.NUMBER, "+12025550101", source="runtime"),
        ]
    )
    index.replace_static([rule("static-2", RuleKind.NUMBER, "+12025550102", source="dialplan:acme.toml")])
    assert sorted(r.id for r in index) == ["runtime-1", "static-2"]
    assert index.match(build_facts("+12025550100"), 0.0) is None
    assert index.match(build_facts("+12025550102"), 0.0).rule.id == "static-2"


def test_rule_index_replace_static_all_or_nothing_on_bad_rule() -> None:
    index = RuleIndex([rule("static-1", RuleKind.NUMBER, "+12025550100", source="dialplan:a.toml")])
    with pytest.raises(RuleValueError):
        index.replace_static([rule("bad", RuleKind.PREFIX, "1900", source="dialplan:a.toml")])
    assert [r.id for r in index] == ["static-1"]


def test_rule_index_add_same_id_replaces_and_remove_deletes() -> None:
    index = RuleIndex()
    index.add(rule("r", RuleKind.NUMBER, "+12025550100"))
    index.add(rule("r", RuleKind.NUMBER, "+12025550101"))
    assert len(index) == 1
    assert index.match(build_facts("+12025550100"), 0.0) is None
    assert index.match(build_facts("+12025550101"), 0.0).rule.id == "r"
    assert index.remove("r").value == "+12025550101"
    assert index.remove("r") is None
    assert index.match(build_facts("+12025550101"), 0.0) is None


@pytest.mark.parametrize(
    ("r", "message"),
    [
        (rule("x", RuleKind.NUMBER, "+1555"), "invalid number '+1555': not a valid telephone number"),
        (rule("x", RuleKind.PREFIX, "1900"), "invalid prefix '1900': expected '+' and 1-15 digits"),
        (rule("x", RuleKind.CNAM, "* *"), "invalid caller-name pattern '* *': matches every name"),
        (rule("x", RuleKind.COUNTRY, "XX"), "invalid country 'XX': expected an ISO 3166 alpha-2 code"),
        (
            rule("x", RuleKind.ANONYMOUS, scope=Scope.NUMBER, scope_value="12"),
            "invalid called number '12': not a valid telephone number",
        ),
        (rule("x", RuleKind.ANONYMOUS, scope=Scope.CUSTOMER), "customer scope needs a customer name"),
    ],
    ids=["number", "prefix", "cnam", "country", "scope-number", "scope-customer"],
)
def test_normalise_rule_rejects_bad_values(r: BlockRule, message: str) -> None:
    with pytest.raises(RuleValueError) as err:
        normalise_rule(r)
    assert str(err.value) == message


def test_rule_index_ten_thousand_rules_exact_answers() -> None:
    rng = random.Random(3)
    numbers = sorted({f"+1202{rng.randrange(2_000_000, 9_999_999):07d}" for _ in range(10_000)})
    index = RuleIndex(rule(f"n{i}", RuleKind.NUMBER, n) for i, n in enumerate(numbers))
    index.add(rule("allow-one", RuleKind.NUMBER, numbers[17], allow=True))
    assert len(index) == len(numbers) + 1
    for i in range(0, len(numbers), 997):
        m = index.match(build_facts(numbers[i]), 0.0)
        assert m.rule.id == ("allow-one" if i == 17 else f"n{i}")
    assert index.match(build_facts(numbers[17]), 0.0).rule.id == "allow-one"
    assert index.match(build_facts("+13125550100"), 0.0) is None
