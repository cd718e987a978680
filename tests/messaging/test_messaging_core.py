"""Messaging core on a fake clock: text rules, links, campaign sketch, A2P shaping, opt-out, inspector."""

from __future__ import annotations

import time as _t

import pytest

from edge.messaging.a2p import DEFAULT_TIERS, Brand, Campaign, CarrierModel, Shaper, ShaperSettings, ShapeVerdict, tier_for
from edge.messaging.campaign import CampaignSketch
from edge.messaging.links import DomainMemory, LinkInspector, extract_domains
from edge.messaging.optout import Keyword, keyword
from edge.messaging.rules import ContentRules
from edge.messaging.schema import MessagePolicy, MessagingConfig, MessagingPlan, compile_messaging, BrandSpec, CampaignSpec, MessagesSpec
from edge.messaging.service import Messaging, OutboundAction
from edge.messaging.text import TextRule, TextRuleSet, normalise_text_pattern, pattern_problem
from edge.policy.blocking import RuleIndex, RuleValueError
from edge.policy.rules import BlockRule, RuleKind, Scope

T0 = 1_767_000_000.0


def rs(*patterns: str) -> TextRuleSet:
    return TextRuleSet([TextRule(p, normalise_text_pattern(p)) for p in patterns])


@pytest.mark.parametrize(
    "pattern,text,hit",
    [
        ("*gift card*", "Claim your GIFT  CARD now", True),
        ("*gift card*", "g i f t\tc a r d", True),
        ("*gift card*", "ｇｉｆｔ ｃａｒｄ", True),  # fullwidth
        ("*gift card*", "gift cart", False),
        ("*claim*prize*", "claim your prize", True),
        ("*claim*prize*", "prize to claim", False),
        ("win*", "WIN big", True),
        ("win*", "you win", False),
        ("*now", "act now", True),
        ("*now", "now act", False),
        ("stop", " Stop ", True),
        ("*ab*ab*", "xab", False),
        ("*ab*ab*", "xabyab", True),
    ],
)
def test_text_rule_matching(pattern: str, text: str, hit: bool) -> None:
    assert bool(rs(pattern).match(text)) is hit


def test_text_rule_pattern_problems() -> None:
    assert pattern_problem("***") is not None
    assert pattern_problem("  *  ") is not None
    assert pattern_problem("x" * 300) is not None
    assert pattern_problem("*gift*") is None


def test_text_rules_linear_on_adversarial_input() -> None:
    """Many overlapping rules and a pathological body: cost grows linearly with the text."""
    rules = rs(*[f"*{'a' * k}b*" for k in range(1, 40)], "*a*a*a*a*a*a*a*a*c*")

    def cost(n: int) -> float:
        body = "a" * n
        t = _t.process_time()
        for _ in range(5):
            assert rules.match(body) == []
        return _t.process_time() - t

    small, big = cost(2000), cost(16000)
    # 8x the input: a quadratic matcher would take ~64x; allow generous noise around 8x.
    assert big < small * 30 + 0.05


def test_links_count_shorteners_and_new_domains() -> None:
    mem = DomainMemory(cap=10)
    li = LinkInspector(["bit.ly"], ["acme.com"], new_domain_age=86400, memory=mem)
    f = li.inspect("see https://bit.ly/x and www.acme.com/a and http://promo-deals.xyz/win", T0)
    assert f.urls == 3
    assert f.shorteners == ("bit.ly",)
    assert f.new_domains == ("promo-deals.xyz",)
    later = li.inspect("again http://promo-deals.xyz/win", T0 + 2 * 86400)
    assert later.new_domains == ()
    assert extract_domains("no links here. Just text.")[0] == 0


def test_domain_memory_bounded() -> None:
    mem = DomainMemory(cap=100)
    for i in range(1000):
        mem.observe(f"d{i}.com", T0)
    assert len(mem) == 100 and mem.evictions == 900


def test_campaign_sketch_counts_distinct_senders_and_recipients() -> None:
    sk = CampaignSketch(window=600, width=512, depth=4, bloom_bits=1 << 16)
    body = "Your package 1234 is held. Pay fee at http://x.example/p"
    for i in range(10):
        est = sk.observe(body.replace("1234", str(1000 + i)), f"+1202555{i:04d}", f"+1303555{i:04d}", T0 + i)
    assert est.senders >= 10 and est.recipients >= 10
    # One sender repeating to one recipient stays at one of each.
    for _ in range(20):
        one = sk.observe("hello there friend", "+12025550001", "+13035550001", T0 + 20)
    assert (one.senders, one.recipients) == (1, 1)
    # Two windows later the campaign is forgotten.
    assert sk.estimate(body, T0 + 1300).senders == 0


def test_campaign_sketch_memory_fixed() -> None:
    sk = CampaignSketch(window=600, width=256, depth=2, bloom_bits=4096)
    for i in range(5000):
        sk.observe(f"random body {i} {i * 7}", f"s{i}", f"r{i}", T0)
    assert len(sk._cur.senders[0]) == 256  # noqa: SLF001 - the sketch never grows


def test_tiers_follow_use_case_and_trust() -> None:
    assert tier_for(DEFAULT_TIERS, "account_notification", 80).message_class == "A"
    assert tier_for(DEFAULT_TIERS, "marketing", 90).message_class == "B"
    assert tier_for(DEFAULT_TIERS, "customer_care", 60).message_class == "C"
    assert tier_for(DEFAULT_TIERS, "mixed", 70).message_class == "D"
    assert tier_for(DEFAULT_TIERS, "2fa", 20).message_class == "E"
    assert tier_for(DEFAULT_TIERS, "mixed", 66).message_class == "F"  # between ranges: the lowest tier
    assert tier_for(DEFAULT_TIERS, "low_volume", 20).message_class == "T"


def _campaign(per_minute: int = 60, daily: int = 1000, cid: str = "C1", brand: str = "B1") -> Campaign:
    tier = DEFAULT_TIERS[0].__class__("X", DEFAULT_TIERS[0].kind, 0, 100, per_minute, daily)
    return Campaign(cid, Brand(brand, "private_profit", 80), "account_notification", ("+12025550100",), tier)


def test_shaper_token_bucket_paces_a_burst_and_bounds_the_queue() -> None:
    sh = Shaper([CarrierModel("att", per_minute=True)], ShaperSettings(burst=2, queue_size=5, max_wait=20.0))
    c = _campaign(per_minute=60)  # one per second
    out = [sh.admit(c, "+13035550100", T0) for _ in range(9)]
    sends = [o for o in out if o.verdict is ShapeVerdict.SEND]
    assert [round(o.send_at - T0, 6) for o in sends] == [0, 0, 1, 2, 3, 4, 5]
    refused = out[7]
    assert refused.verdict is ShapeVerdict.REFUSE and refused.status == 503 and refused.retry_after >= 1
    # After the queue drained, a message goes at once again.
    later = sh.admit(c, "+13035550100", T0 + 30)
    assert later.verdict is ShapeVerdict.SEND and later.send_at == T0 + 30 and not later.queued


def test_shaper_max_wait_bounds_the_queue_in_time() -> None:
    sh = Shaper([CarrierModel("att")], ShaperSettings(burst=1, queue_size=1000, max_wait=10.0))
    c = _campaign(per_minute=12)  # one per 5 s
    verdicts = [sh.admit(c, "+13035550100", T0).verdict for _ in range(5)]
    assert verdicts == [ShapeVerdict.SEND, ShapeVerdict.SEND, ShapeVerdict.SEND, ShapeVerdict.REFUSE, ShapeVerdict.REFUSE]


def test_shaper_daily_cap_per_brand_resets_at_midnight_pacific() -> None:
    sh = Shaper([CarrierModel("tmobile", prefixes=["+1303"], per_minute=False, daily_cap=True), CarrierModel("other")])
    c1, c2 = _campaign(daily=3, cid="C1"), _campaign(daily=3, cid="C2")
    noon_pt = 1_767_297_600.0  # 2026-01-01 12:00 PST (20:00 UTC)
    got = [sh.admit(c, "+13035550111", noon_pt).verdict for c in (c1, c2, c1, c2)]
    assert got == [ShapeVerdict.SEND] * 3 + [ShapeVerdict.REFUSE]  # shared by the brand's campaigns
    refused = sh.admit(c1, "+13035550111", noon_pt)
    assert refused.retry_after == 12 * 3600 and "daily cap" in refused.reason
    assert sh.admit(c1, "+13035550111", noon_pt + 12 * 3600 + 1).verdict is ShapeVerdict.SEND
    # Another carrier is not capped per day here (per-minute only).
    assert sh.carrier_for("+12125550100") == "other"


@pytest.mark.parametrize(
    "body,kw",
    [("STOP", Keyword.STOP), (" stop! ", Keyword.STOP), ("Unsubscribe", Keyword.STOP), ("opt out", Keyword.STOP),
     ("STOPALL", Keyword.STOP_ALL), ("unstop", Keyword.START), ("START", Keyword.START), ("help", Keyword.HELP),
     ("please stop texting me", None), ("", None)],
)
def test_keywords_are_whole_messages(body: str, kw: Keyword | None) -> None:
    assert keyword(body) is kw


def _plan_files() -> dict[str, object]:
    from edge.dialplan.schema import DialplanFile

    return {
        "acme.toml": DialplanFile(
            customer="acme",
            brand=BrandSpec("B1", "private_profit", 82),
            campaigns=[
                CampaignSpec("C1", "account_notification", ["+12025550100"], help_text="Acme help: call us"),
                CampaignSpec("C2", "marketing", ["+12025550101"]),
            ],
            messages=MessagesSpec(hold_score=30, reject_score=80, hold=["*verify your account*"]),
        )
    }


def test_compile_messaging_derives_tiers_and_reports_errors() -> None:
    plan, errors = compile_messaging(_plan_files(), MessagingConfig())
    assert errors == []
    by_id = {c.id: c for c in plan.campaigns}
    assert by_id["C1"].tier.message_class == "A" and by_id["C2"].tier.message_class == "D"
    from edge.dialplan.schema import DialplanFile

    bad = {"x.toml": DialplanFile(customer="x", campaigns=[CampaignSpec("C9", "mixed", ["+1555"])],
                                  messages=MessagesSpec(hold_score=90, reject_score=50, hold=["**"]))}
    _, errors = compile_messaging(bad, MessagingConfig())
    assert "x.toml: $.campaigns: campaigns need a [brand] section in the same file" in errors
    assert "x.toml: $.campaigns[0].numbers[0]: '+1555' is not a valid E.164 number" in errors
    assert "x.toml: $.messages.hold_score: need 0 < hold_score <= reject_score" in errors
    assert any(e.startswith("x.toml: $.messages.hold[0]: ") for e in errors)


def _messaging(rules: list[BlockRule] | None = None, **cfg: object) -> tuple[Messaging, RuleIndex]:
    plan, errors = compile_messaging(_plan_files(), MessagingConfig(**cfg))  # type: ignore[arg-type]
    assert not errors
    index = RuleIndex(rules or [])
    return Messaging(MessagingConfig(**cfg), plan, index), index  # type: ignore[arg-type]


def test_inbound_text_rule_rejects_and_runtime_rule_applies_next_message() -> None:
    rule = BlockRule("r1", RuleKind.TEXT, "*gift card*", Scope.CUSTOMER, "acme", sip_status=403)
    m, index = _messaging([rule])
    v = m.inbound("Free GIFT card inside", "+13035550111", "+12025550100", "acme", T0).verdict
    assert (v.action.value, v.rule_id, v.status) == ("reject", "r1", 403)
    assert m.inbound("crypto doubling offer", "+13035550111", "+12025550100", "acme", T0).verdict.action.value == "deliver"
    index.add(BlockRule("r2", RuleKind.TEXT, "*crypto*", source="runtime"))
    assert m.inbound("crypto doubling offer", "+13035550111", "+12025550100", "acme", T0).verdict.rule_id == "r2"


def test_content_rules_never_match_calls() -> None:
    from edge.call.facts import build_facts  # noqa: F401 - the call path uses the same index

    index = RuleIndex([BlockRule("t", RuleKind.TEXT, "*x*"), BlockRule("e", RuleKind.EMAIL, "*@spam.test"),
                       BlockRule("i", RuleKind.IP, "203.0.113.0/24")])
    from edge.policy.facts import CallFacts, ContactKind

    facts = CallFacts("c", ContactKind.CALL, T0, "203.0.113.5", 5060, "udp", "c", "", "", "", "+12025550100", "", True)
    assert index.match(facts, T0) is None  # not taken for an anonymous rule
    cr = ContentRules(index)
    assert cr.match(T0, email="Bob@SPAM.test").rule.id == "e"
    assert cr.match(T0, ip="203.0.113.77").rule.id == "i"
    assert cr.match(T0, ip="198.51.100.1") is None
    with pytest.raises(RuleValueError):
        index.add(BlockRule("bad", RuleKind.IP, "300.1.1.1/8"))


def test_inbound_campaign_across_senders_then_held_or_rejected() -> None:
    m, _ = _messaging()
    body = "USPS: your parcel is on hold, pay the fee at http://usps-fee.top/x"
    actions = []
    for i in range(8):
        v = m.inbound(body, f"+1303555{i:04d}", f"+1202555{(100 + i):04d}", "acme", T0 + i).verdict
        actions.append(v.action.value)
    # new domain (20) -> deliver; campaign (60) + new domain after 5 senders/recipients -> reject (>= 80)
    assert actions[:4] == ["deliver"] * 4
    assert actions[-1] == "reject"
    assert any(e.signal == "message.campaign" for e in m.inbound(body, "+13035559999", "+12025550999", "acme", T0 + 9).verdict.evidence)


def test_inbound_hold_pattern() -> None:
    m, _ = _messaging()
    v = m.inbound("Please VERIFY your account today", "+13035550111", "+12025550100", "acme", T0).verdict
    assert (v.action.value, v.status, v.rule_id) == ("hold", 202, "messages.hold[0]")


def test_stop_help_start_cycle() -> None:
    m, _ = _messaging()
    r = m.inbound("HELP", "+13035550111", "+12025550100", "acme", T0)
    assert r.reply is not None and r.reply.body == "Acme help: call us" and r.reply.recipient == "+13035550111"
    assert m.outbound("+12025550100", "+13035550111", T0).action is OutboundAction.SEND
    r = m.inbound("Stop", "+13035550111", "+12025550100", "acme", T0 + 1)
    assert r.keyword == "stop" and "unsubscribed" in r.reply.body  # type: ignore[union-attr]
    assert [c.op for c in m.optout_changes] == ["add"]
    out = m.outbound("+12025550100", "+13035550111", T0 + 2)
    assert (out.action, out.status, out.rule_id) == (OutboundAction.REFUSE, 403, "a2p.opted_out")
    # The other campaign of the brand still may send (per-campaign opt-out) ...
    assert m.outbound("+12025550101", "+13035550111", T0 + 2).action is OutboundAction.SEND
    m.inbound("start", "+13035550111", "+12025550100", "acme", T0 + 3)
    assert m.outbound("+12025550100", "+13035550111", T0 + 60).action is OutboundAction.SEND
    # ... STOPALL covers every campaign of the brand.
    m.inbound("STOPALL", "+13035550111", "+12025550100", "acme", T0 + 4)
    assert m.outbound("+12025550101", "+13035550111", T0 + 120).rule_id == "a2p.opted_out"


def test_outbound_unregistered_number_refused() -> None:
    m, _ = _messaging()
    out = m.outbound("+12025550199", "+13035550111", T0)
    assert (out.action, out.status, out.rule_id) == (OutboundAction.REFUSE, 403, "a2p.unregistered")


@pytest.mark.parametrize("body", ["a." * 8000, "www." + "a." * 8000 + "!", ("a" * 60 + ".") * 260],
                         ids=["dots", "www-dots", "long-labels"])
def test_links_linear_on_crafted_bodies(body: str) -> None:
    """Bodies that make a backtracking URL regex take tens of seconds cost a few milliseconds here."""
    t = _t.process_time()
    for _ in range(10):
        extract_domains(body)
    assert _t.process_time() - t < 1.0


def test_message_text_of_plain_charset_and_cpim() -> None:
    from edge.messaging.text import message_text

    assert message_text("café".encode("latin-1"), "text/plain; charset=ISO-8859-1") == "café"
    assert message_text(b"STOP\r\n", "text/plain") == "STOP\r\n"
    cpim = (b"From: <sip:+13035550111@carrier>\r\nTo: <sip:+12025550100@edge>\r\nDateTime: 2026-01-01T00:00:00Z\r\n\r\n"
            b"Content-Type: text/plain\r\n\r\nStop")
    assert message_text(cpim, "message/CPIM") == "Stop"
    assert keyword(message_text(cpim, "message/cpim")) is Keyword.STOP
    assert message_text(b"x", "text/plain; charset=no-such") == "x"


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=400, deadline=None)
@given(patterns=st.lists(st.text(alphabet="ab*", min_size=1, max_size=7), min_size=1, max_size=5),
       text=st.text(alphabet="abc", max_size=14))
def test_text_rules_agree_with_a_regex_oracle(patterns: list[str], text: str) -> None:
    """The automaton's greedy in-order matching says what a (backtracking) full-match regex says."""
    import re

    patterns = [p for p in patterns if p.replace("*", "")]
    rules = TextRuleSet([TextRule(str(i), normalise_text_pattern(p)) for i, p in enumerate(patterns)])
    got = {r.id for r in rules.match(text)}
    want = {str(i) for i, p in enumerate(patterns)
            if re.fullmatch(".*".join(re.escape(seg) for seg in normalise_text_pattern(p).split("*")), text, re.S)}
    assert got == want


@pytest.mark.parametrize(
    "text,parts",
    [("a" * 160, 1), ("a" * 161, 2), ("a" * 306, 2), ("a" * 307, 3), ("€" * 80, 1), ("€" * 81, 2),
     ("é" * 160, 1), ("ş" * 70, 1), ("ş" * 71, 2), ("😀" * 35, 1), ("😀" * 36, 2)],
)
def test_sms_segments(text: str, parts: int) -> None:
    from edge.messaging.a2p import segments

    assert segments(text) == parts


def test_shaper_counts_segments_against_the_per_minute_rate() -> None:
    sh = Shaper([CarrierModel("att")], ShaperSettings(burst=1, queue_size=100, max_wait=60.0))
    c = _campaign(per_minute=60)
    assert sh.admit(c, "+13035550100", T0, cost=3).send_at == T0
    assert sh.admit(c, "+13035550100", T0, cost=1).send_at == T0 + 3  # waited for the three segments
