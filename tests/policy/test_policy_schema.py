from __future__ import annotations

import msgspec
import pytest

from edge.policy.facts import Action
from edge.policy.rates import RateKey, RateLimit
from edge.policy.rules import RuleKind, Scope
from edge.policy.schema import (
    BlockRuleSpec,
    NumberPolicySpec,
    SpamSpec,
    ValidationError,
    compile_number_policy,
    compile_rules,
    compile_spam,
    parse_duration,
    parse_rate,
)


class Section(msgspec.Struct, forbid_unknown_fields=True):
    block: list[BlockRuleSpec] = []
    allow: list[BlockRuleSpec] = []
    spam: SpamSpec = SpamSpec()


def load(text: str) -> Section:
    return msgspec.toml.decode(text.encode(), type=Section)


def errors_of(text: str) -> list[str]:
    s = load(text)
    errors: list[ValidationError] = []
    seen: dict[str, str] = {}
    errors += compile_rules(s.block, allow=False, path="$.block", seen=seen)[1]
    errors += compile_rules(s.allow, allow=True, path="$.allow", seen=seen)[1]
    errors += compile_spam(s.spam)[1]
    return [str(e) for e in errors]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("30s", 30.0), ("5m", 300.0), ("1h", 3600.0), ("250ms", 0.25), ("1.5d", 129600.0), (" 2 s ", 2.0)],
)
def test_parse_duration(text: str, seconds: float) -> None:
    assert parse_duration(text) == seconds


def test_parse_duration_error_text() -> None:
    with pytest.raises(ValueError) as err:
        parse_duration("ten minutes")
    assert str(err.value) == "invalid duration 'ten minutes': expected a number with ms, s, m, h or d (e.g. '30s')"


@pytest.mark.parametrize(
    ("text", "limit"),
    [("5/60s", RateLimit(5, 60.0)), ("100/1h", RateLimit(100, 3600.0)), ("10/m", RateLimit(10, 60.0)), ("3 / 10s", RateLimit(3, 10.0))],
)
def test_parse_rate(text: str, limit: RateLimit) -> None:
    assert parse_rate(text) == limit


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("5 per minute", "invalid rate '5 per minute': expected '<count>/<duration>' such as '5/60s'"),
        ("0/60s", "invalid rate '0/60s': count must be at least 1"),
        ("5/2d", "invalid rate '5/2d': window must be between 1s and 24h"),
        ("5/100ms", "invalid rate '5/100ms': window must be between 1s and 24h"),
    ],
    ids=["syntax", "zero", "too-long", "too-short"],
)
def test_parse_rate_errors(text: str, message: str) -> None:
    with pytest.raises(ValueError) as err:
        parse_rate(text)
    assert str(err.value) == message


def test_compile_rules_every_matcher_kind() -> None:
    s = load(
        """
        [[block]]
        number = "+1 (202) 555-0100"
        [[block]]
        cnam = "SPAM*"
        action = "voicemail"
        [[block]]
        prefix = "+1900"
        status = 607
        [[block]]
        anonymous = true
        dry_run = true
        [[block]]
        invalid = true
        [[block]]
        country = "ng"
        id = "no-nigeria"
        reason = "fraud wave"
        """
    )
    rules, errors = compile_rules(s.block, allow=False, scope=Scope.CUSTOMER, scope_value="acme", source="dialplan:acme.toml")
    assert errors == []
    assert [(r.id, r.kind, r.value, r.action, r.sip_status, r.dry_run) for r in rules] == [
        ("acme/block:number:+12025550100", RuleKind.NUMBER, "+12025550100", Action.REJECT, 603, False),
        ("acme/block:cnam:spam*", RuleKind.CNAM, "spam*", Action.VOICEMAIL, 603, False),
        ("acme/block:prefix:+1900", RuleKind.PREFIX, "+1900", Action.REJECT, 607, False),
        ("acme/block:anonymous", RuleKind.ANONYMOUS, "", Action.REJECT, 603, True),
        ("acme/block:invalid", RuleKind.INVALID, "", Action.REJECT, 603, False),
        ("no-nigeria", RuleKind.COUNTRY, "NG", Action.REJECT, 603, False),
    ]
    assert all(r.scope is Scope.CUSTOMER and r.scope_value == "acme" and r.source == "dialplan:acme.toml" for r in rules)
    assert rules[-1].reason == "fraud wave"


def test_compile_rules_allow_entries() -> None:
    s = load('[[allow]]\nnumber = "+12025550100"\n')
    rules, errors = compile_rules(s.allow, allow=True, scope=Scope.NUMBER, scope_value="+13125550111")
    assert errors == []
    assert (rules[0].id, rules[0].allow, rules[0].action) == ("+13125550111/allow:number:+12025550100", True, Action.ALLOW)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[[block]]\naction = "reject"\n', ["$.block[0]: exactly one of number, cnam, prefix, anonymous, invalid, country, text, email, ip must be set (got none)"]),
        (
            '[[block]]\nnumber = "+12025550100"\ncnam = "x"\n',
            ["$.block[0]: exactly one of number, cnam, prefix, anonymous, invalid, country, text, email, ip must be set (got number, cnam)"],
        ),
        ('[[block]]\nnumber = "+1555"\n', ["$.block[0].number: '+1555' is not a valid E.164 number (too short for country code +1)"]),
        ('[[block]]\nprefix = "1900"\n', ["$.block[0].prefix: '1900' is not an E.164 prefix (write '+' followed by the country code and leading digits, e.g. '+1202')"]),
        ('[[block]]\ncnam = "*"\n', ["$.block[0].cnam: invalid caller-name pattern '*': matches every name"]),
        ('[[block]]\ncountry = "ZZ"\n', ["$.block[0].country: invalid country 'ZZ': expected an ISO 3166 alpha-2 code"]),
        ('[[block]]\nanonymous = true\naction = "allow"\n', ["$.block[0].action: 'allow' is not a block action; use [[allow]]"]),
        ('[[block]]\nanonymous = true\nstatus = 200\n', ["$.block[0].status: status 200 is not a SIP rejection code (400-699)"]),
        (
            '[[block]]\nanonymous = true\naction = "captcha"\nstatus = 603\n',
            ["$.block[0].status: status only applies to action 'reject' or 'intercept', not 'captcha'"],
        ),
        ('[[allow]]\nanonymous = true\naction = "reject"\n', ["$.allow[0].action: an allow entry takes no action"]),
        (
            '[[block]]\nanonymous = true\n[[block]]\nanonymous = true\n',
            ["$.block[1]: duplicate rule id 'block:anonymous' (first defined at $.block[0])"],
        ),
        (
            '[[block]]\nanonymous = true\nid = "x"\n[[allow]]\nnumber = "+12025550100"\nid = "x"\n',
            ["$.allow[0].id: duplicate rule id 'x' (first defined at $.block[0])"],
        ),
    ],
    ids=[
        "no-matcher",
        "two-matchers",
        "bad-number",
        "bad-prefix",
        "cnam-matches-all",
        "bad-country",
        "block-allow-action",
        "status-range",
        "status-media",
        "allow-action",
        "duplicate-derived-id",
        "duplicate-id-across-sections",
    ],
)
def test_compile_rules_errors(text: str, expected: list[str]) -> None:
    assert errors_of(text) == expected


def test_compile_spam_full_section() -> None:
    s = load(
        """
        [spam]
        cool_off = "30m"
        short_call_seconds = 4
        [spam.signals]
        stir_failed = 60
        [[spam.rate]]
        key = "caller"
        rate = "5/60s"
        weight = 40
        [[spam.rate]]
        key = "source"
        rate = "100/1s"
        action = "reject"
        id = "source-flood"
        [[spam.threshold]]
        score = 50
        action = "captcha"
        [[spam.threshold]]
        score = 90
        action = "reject"
        """
    )
    cfg, errors = compile_spam(s.spam, id="acme.spam")
    assert errors == []
    assert cfg.cool_off == 1800.0
    assert cfg.signals.short_call_seconds == 4.0
    assert cfg.signals.weights.stir_failed == 60.0
    assert [(r.id, r.key, r.limit, r.weight, r.action) for r in cfg.rates] == [
        ("acme.spam.rate.caller.5/60s", RateKey.CALLER, RateLimit(5, 60.0), 40.0, None),
        ("source-flood", RateKey.SOURCE, RateLimit(100, 1.0), 0.0, Action.REJECT),
    ]
    assert [(t.score, t.action, t.id) for t in cfg.thresholds] == [
        (90.0, Action.REJECT, "acme.spam.threshold.90"),
        (50.0, Action.CAPTCHA, "acme.spam.threshold.50"),
    ]


def test_compile_spam_default_thresholds() -> None:
    cfg, errors = compile_spam(SpamSpec(), id="x")
    assert errors == []
    assert [(t.score, t.action, t.id) for t in cfg.thresholds] == [(80.0, Action.REJECT, "x.threshold.80"), (50.0, Action.CAPTCHA, "x.threshold.50")]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('[spam]\ncool_off = "soon"\n', ["$.spam.cool_off: invalid duration 'soon': expected a number with ms, s, m, h or d (e.g. '30s')"]),
        ('[[spam.rate]]\nkey = "caller"\nrate = "5/minute"\nweight = 1\n', ["$.spam.rate[0].rate: invalid rate '5/minute': expected '<count>/<duration>' such as '5/60s'"]),
        ('[[spam.rate]]\nkey = "caller"\nrate = "5/60s"\n', ["$.spam.rate[0]: a rate needs a weight or an action to have any effect"]),
        ('[[spam.rate]]\nkey = "caller"\nrate = "5/60s"\naction = "allow"\n', ["$.spam.rate[0].action: a rate action cannot be 'allow'"]),
        (
            '[[spam.threshold]]\nscore = 80\naction = "reject"\n[[spam.threshold]]\nscore = 80\naction = "captcha"\n',
            ["$.spam.threshold[1].score: duplicate threshold score 80 (first at $.spam.threshold[0])"],
        ),
        ('[spam.signals]\nanonymous = -5\n', ["$.spam.signals.anonymous: weight must be >= 0"]),
        ('[spam]\nshort_call_share = 1.5\n', ["$.spam.short_call_share: must be greater than 0 and at most 1"]),
        ('[spam]\nreject_status = 180\n', ["$.spam.reject_status: status 180 is not a SIP rejection code (400-699)"]),
    ],
    ids=["cool-off", "rate-syntax", "rate-no-effect", "rate-allow", "threshold-dup", "negative-weight", "share", "status"],
)
def test_compile_spam_errors(text: str, expected: list[str]) -> None:
    assert errors_of(text) == expected


def test_spam_spec_unknown_key_rejected_by_decoder() -> None:
    with pytest.raises(msgspec.ValidationError, match=r"Object contains unknown field `treshold` - at `\$.spam`"):
        load('[spam]\ntreshold = 3\n')


def test_compile_number_policy() -> None:
    spec = msgspec.toml.decode(b'dry_run = true\nmedia_fallback = "voicemail"\nfax_action = "reject"\n', type=NumberPolicySpec)
    policy, errors = compile_number_policy(spec, number="+13125550111", customer="acme", voicemail="box1")
    assert errors == []
    assert (policy.dry_run, policy.media_fallback, policy.fax_action, policy.voicemail) == (True, Action.VOICEMAIL, Action.REJECT, "box1")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ('fax_action = "captcha"\n', ["$.numbers[0].fax_action: fax_action must be 'allow' or 'reject', not 'captcha'"]),
        ('media_fallback = "menu"\n', ["$.numbers[0].media_fallback: media_fallback 'menu' is not configured for this number"]),
        ('media_fallback = "intercept"\n', ["$.numbers[0].media_fallback: media_fallback cannot be 'intercept'"]),
    ],
    ids=["fax-action", "fallback-missing", "fallback-intercept"],
)
def test_compile_number_policy_errors(text: str, expected: list[str]) -> None:
    spec = msgspec.toml.decode(text.encode(), type=NumberPolicySpec)
    _, errors = compile_number_policy(spec, path="$.numbers[0]")
    assert [str(e) for e in errors] == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [("5/60s", (5, 60.0)), ("10/m", (10, 60.0)), ("1/500ms", (1, 0.5)), ("3 / 10s", (3, 10.0)), ("100/1h", (100, 3600.0))],
)
def test_units_parse_rate_one_grammar_everywhere(text: str, expected: tuple[int, float]) -> None:
    """The flood guard and the Spam Detective read the same rate strings the same way; only the
    Spam Detective's window bounds differ."""
    from edge.units import parse_rate as units_parse_rate

    assert units_parse_rate(text) == expected
    if 1.0 <= expected[1] <= 86400.0:
        assert parse_rate(text) == RateLimit(*expected)
