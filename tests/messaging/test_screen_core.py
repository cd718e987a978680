"""Chats-and-forms screening core on a fake clock."""

from __future__ import annotations

import msgspec
import pytest
from disposable_email_domains import blocklist

from edge.messaging.rules import ContentRules
from edge.messaging.schema import ScreeningApiConfig
from edge.messaging.screen import ScreenRequest, Screener, request_problem
from edge.policy.blocking import RuleIndex
from edge.policy.rules import BlockRule, RuleKind, Scope

T0 = 1_767_000_000.0


def screener(rules: list[BlockRule] | None = None, **cfg: object) -> tuple[Screener, RuleIndex]:
    index = RuleIndex(rules or [])
    s = Screener(ScreeningApiConfig(**cfg), index, ContentRules(index), frozenset(blocklist), frozenset({"bit.ly"}))  # type: ignore[arg-type]
    return s, index


def req(**kw: str) -> ScreenRequest:
    return ScreenRequest(channel=kw.pop("channel", "form"), **kw)  # type: ignore[arg-type]


def test_clean_submission_allowed() -> None:
    s, _ = screener()
    r, a = s.screen(req(phone="+12025550123", name="Ann Lee", email="ann@example.com", ip="198.51.100.7",
                        text="Please call me about the quote"), "acme", "id1", T0)
    assert (r.decision, r.score) == ("allow", 0.0)
    assert (a.kind, a.calling_number, a.email, a.source, a.customer, a.decision) == (
        "form", "+12025550123", "ann@example.com", "198.51.100.7", "acme", "allow")


def test_disposable_email_and_invalid_phone_reject() -> None:
    s, _ = screener()
    r, _ = s.screen(req(phone="+1555", email="x@mailinator.com", text="hi"), "acme", "id2", T0)
    assert r.decision == "reject" and r.score == 85.0
    assert any(x.startswith("email.disposable") for x in r.reasons) and any(x.startswith("phone.invalid") for x in r.reasons)
    r, _ = s.screen(req(email="y@sub.mailinator.com"), "acme", "id3", T0)
    assert r.decision == "challenge"


@pytest.mark.parametrize(
    "rule,submission",
    [
        (BlockRule("e", RuleKind.EMAIL, "*@spam.test", Scope.CUSTOMER, "acme"), {"email": "Bob@Spam.Test"}),
        (BlockRule("i", RuleKind.IP, "203.0.113.0/24"), {"ip": "203.0.113.9"}),
        (BlockRule("t", RuleKind.TEXT, "*crypto*"), {"text": "Invest in CRYPTO"}),
        (BlockRule("n", RuleKind.NUMBER, "+12025550123", Scope.CUSTOMER, "acme"), {"phone": "(202) 555-0123"}),
        (BlockRule("c", RuleKind.CNAM, "*spammer*"), {"name": "Joe Spammer"}),
    ],
    ids=["email", "ip", "text", "phone", "name"],
)
def test_rules_reject(rule: BlockRule, submission: dict[str, str]) -> None:
    s, _ = screener([rule])
    r, a = s.screen(req(**submission), "acme", "id", T0)
    assert (r.decision, a.rule_id) == ("reject", rule.id)


def test_rule_of_another_customer_does_not_apply() -> None:
    s, _ = screener([BlockRule("e", RuleKind.EMAIL, "*@spam.test", Scope.CUSTOMER, "globex")])
    assert s.screen(req(email="bob@spam.test"), "acme", "id", T0)[0].decision == "allow"


def test_invalid_rule_needs_a_phone() -> None:
    s, _ = screener([BlockRule("inv", RuleKind.INVALID)])
    assert s.screen(req(name="Ann"), "acme", "id", T0)[0].decision == "allow"
    assert s.screen(req(phone="+1555"), "acme", "id", T0)[0].decision == "reject"


def test_rate_window_per_ip_challenges() -> None:
    s, _ = screener(rate_ip="3/60s")
    decisions = [s.screen(req(ip="198.51.100.7", text=f"m{i}"), "acme", f"id{i}", T0 + i)[0].decision for i in range(5)]
    assert decisions == ["allow", "allow", "allow", "challenge", "challenge"]
    assert s.screen(req(ip="198.51.100.7", text="later"), "acme", "x", T0 + 200)[0].decision == "allow"


def test_request_problems() -> None:
    assert request_problem(req(ip="not-an-ip")) == "ip 'not-an-ip' is not an IP address"
    assert request_problem(req(text="x" * 5001)) == "text longer than 5000 characters"
    assert request_problem(req()) is not None
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.json.decode(b'{"channel": "form", "phone": "1", "fax": "x"}', type=ScreenRequest)
    with pytest.raises(msgspec.ValidationError):
        msgspec.json.decode(b'{"channel": "sms"}', type=ScreenRequest)
