"""RuleIndex against a brute-force reading of the scope / allow / specificity rules."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from edge.policy.blocking import RuleIndex
from edge.policy.cnam import matches, normalise_cnam
from edge.policy.facts import CallFacts
from edge.policy.rules import BlockRule, RuleKind, Scope
from policy_factories import build_facts

CALLED = "+13125550111"
CALLERS = ["+12025550100", "+12025550101", "+12024440100", "+15555555555", "+2348031234567", ""]
NAMES = ["", "Spam Likely", "Special Offer", "Bob"]
SCOPE_VALUES = {Scope.GLOBAL: "", Scope.CUSTOMER: "acme", Scope.NUMBER: CALLED}
RANK = {RuleKind.NUMBER: 0, RuleKind.PREFIX: 1, RuleKind.CNAM: 2, RuleKind.COUNTRY: 4, RuleKind.INVALID: 5, RuleKind.ANONYMOUS: 6}

matchers = st.sampled_from(
    [
        (RuleKind.NUMBER, "+12025550100"),
        (RuleKind.NUMBER, "+12025550101"),
        (RuleKind.PREFIX, "+1202"),
        (RuleKind.PREFIX, "+1202555"),
        (RuleKind.PREFIX, "+234"),
        (RuleKind.CNAM, "spamlikely"),
        (RuleKind.CNAM, "spam*"),
        (RuleKind.CNAM, "*offer"),
        (RuleKind.COUNTRY, "US"),
        (RuleKind.COUNTRY, "NG"),
        (RuleKind.INVALID, ""),
        (RuleKind.ANONYMOUS, ""),
    ]
)
rules_st = st.lists(
    st.tuples(matchers, st.sampled_from(list(Scope)), st.booleans(), st.booleans(), st.sampled_from([None, 50.0, 150.0])),
    max_size=25,
)


def rank(r: BlockRule) -> tuple[int, int]:
    if r.kind is RuleKind.PREFIX:
        return (1, -len(r.value))
    if r.kind is RuleKind.CNAM and "*" in r.value:
        return (3, 0)
    return (RANK[r.kind], 0)


def hits(r: BlockRule, f: CallFacts, cnam: str) -> bool:
    k = r.kind
    if k is RuleKind.NUMBER:
        return bool(f.calling_number) and f.calling_number == r.value
    if k is RuleKind.PREFIX:
        return bool(f.calling_number) and f.calling_number.startswith(r.value)
    if k is RuleKind.CNAM:
        return bool(cnam) and matches(r.value, cnam)
    if k is RuleKind.COUNTRY:
        return f.calling_country == r.value
    if k is RuleKind.INVALID:
        return not f.calling_valid and not f.anonymous
    return f.anonymous


def oracle(rules: list[BlockRule], f: CallFacts, now: float) -> tuple[tuple | None, tuple | None]:
    cnam = normalise_cnam(f.cnam)
    live = [r for r in rules if (r.expires_at is None or r.expires_at > now) and hits(r, f, cnam)]

    def pick(pool: list[BlockRule]) -> tuple | None:
        for scope in (Scope.NUMBER, Scope.CUSTOMER, Scope.GLOBAL):
            here = [r for r in pool if r.scope is scope]
            allows = [r for r in here if r.allow]
            chosen = min(allows or here, key=rank, default=None)
            if chosen is not None:
                return (chosen.allow, chosen.dry_run, rank(chosen), scope)
        return None

    return pick([r for r in live if not r.dry_run]), pick(live)


def sig(r: BlockRule | None) -> tuple | None:
    return None if r is None else (r.allow, r.dry_run, rank(r), r.scope)


@settings(max_examples=150, deadline=None)
@given(specs=rules_st, caller=st.sampled_from(CALLERS), name=st.sampled_from(NAMES), now=st.sampled_from([0.0, 100.0, 200.0]))
def test_rule_index_agrees_with_brute_force(specs: list, caller: str, name: str, now: float) -> None:
    rules = [
        BlockRule(
            id=f"r{i}",
            kind=kind,
            value=value,
            scope=scope,
            scope_value=SCOPE_VALUES[scope],
            allow=allow,
            dry_run=dry,
            expires_at=exp,
        )
        for i, ((kind, value), scope, allow, dry, exp) in enumerate(specs)
    ]
    index = RuleIndex(rules)
    facts = build_facts(caller, CALLED, cnam=name, anonymous=not caller, customer="acme")
    enforced, would = oracle(rules, facts, now)
    m = index.match(facts, now)
    if enforced is None and would is None:
        assert m is None
        return
    assert m is not None
    assert sig(m.rule) == enforced
    # `would` is reported only when a dry-run rule would have decided instead.
    assert sig(m.would) == (would if would != enforced else None)
    assert all(r.expires_at is None or r.expires_at > now for r in [m.rule, m.would] if r is not None)
