"""The proxy's MESSAGE hooks on a fake clock: inbound deliver/reject/hold/HELP, outbound shaping and opt-out."""

from __future__ import annotations

from edge.messaging.schema import BrandSpec, CampaignSpec, MessagesSpec, MessagingConfig, compile_messaging
from edge.messaging.service import Messaging
from edge.policy.blocking import RuleIndex
from edge.policy.rules import BlockRule, RuleKind, Scope
from tests.call.proxy_harness import CARRIER, PBX_A, Harness, answer
from tests.sip.samples import msg

CAMPAIGN_NUMBER = "+12025550100"


def _harness(per_minute: int = 60) -> tuple[Harness, Messaging]:
    from edge.dialplan.schema import DialplanFile
    from edge.messaging.a2p import CarrierModel, Tier, UseCaseKind

    cfg = MessagingConfig(tier=[Tier("A", UseCaseKind.DECLARED, 0, 100, per_minute, 1000)],
                          carrier=[CarrierModel("default")], queue_size=10, max_queue_wait="30s")
    files = {"acme.toml": DialplanFile(customer="acme", brand=BrandSpec("B1", "private_profit", 80),
                                       campaigns=[CampaignSpec("C1", "account_notification", [CAMPAIGN_NUMBER],
                                                               help_text="Acme: help text")],
                                       messages=MessagesSpec(hold=["*verify your account*"]))}
    plan, errors = compile_messaging(files, cfg)
    assert not errors
    index = RuleIndex([BlockRule("acme/text", RuleKind.TEXT, "*gift card*", Scope.CUSTOMER, "acme", sip_status=403)])
    h = Harness()
    m = Messaging(cfg, plan, index)
    h.proxy.messaging = m
    return h, m


def message(body: str, *, frm: str = "+13035550111", to: str = CAMPAIGN_NUMBER, branch: str = "z9hG4bKm1",
            call_id: str = "m1@carrier", via: str = "192.0.2.5:5080") -> bytes:
    return msg(
        f"MESSAGE sip:{to}@127.0.0.1:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP {via};branch={branch}",
        "Max-Forwards: 70",
        f"From: <sip:{frm}@carrier.example>;tag=f1",
        f"To: <sip:{to}@edge.example>",
        f"Call-ID: {call_id}",
        "CSeq: 1 MESSAGE",
        "Content-Type: text/plain",
        body=body,
    )


def test_inbound_clean_message_delivered_to_pbx() -> None:
    h, _ = _harness()
    out = h.feed(message("see you at 5"))
    assert [(m.method, d) for m, d in out] == [("MESSAGE", PBX_A)]
    back = h.feed(answer(out[0][0], 200, "OK"), PBX_A)
    assert back[0][0].status == 200
    a = h.proxy.activities[-1]
    assert (a.kind, a.direction, a.decision) == ("message", "inbound", "deliver")


def test_inbound_text_rule_rejected_with_status() -> None:
    h, _ = _harness()
    out = h.feed(message("Your GIFT  card is waiting"))
    assert [m.status for m, _ in out] == [403]
    assert 'text="acme/text"' in (out[0][0].get("reason") or "")
    assert h.proxy.activities[-1].decision == "reject"


def test_inbound_hold_then_release_delivers() -> None:
    h, m = _harness()
    out = h.feed(message("please verify your account"))
    assert [m_.status for m_, _ in out] == [202]
    held = m.held.list()
    assert len(held) == 1 and held[0].body == "please verify your account"
    assert h.proxy.release_held(held[0].id, h.now)
    sent = h.take()
    assert [(x.method, d) for x, d in sent] == [("MESSAGE", PBX_A)]
    assert sent[0][0].body == b"please verify your account"
    assert len(m.held) == 0 and not h.proxy.release_held(held[0].id, h.now)


def test_help_gets_campaign_text_and_stop_refuses_outbound() -> None:
    h, m = _harness()
    out = h.feed(message("HELP"))
    replies = [x for x, d in out if x.method == "MESSAGE" and d == CARRIER]
    assert len(replies) == 1 and replies[0].body == b"Acme: help text"
    assert "+13035550111" in replies[0].uri
    reply = [x for x in h.proxy.activities if x.direction == "outbound"][0]
    assert (reply.decision, reply.rule_id, reply.campaign, reply.called_number) == ("send", "keyword.help.reply", "C1", "+13035550111")
    h.feed(message("STOP", branch="z9hG4bKm2", call_id="m2@carrier"))
    assert [c.op for c in m.optout_changes] == ["add"]
    pbx_out = msg(
        "MESSAGE sip:+13035550111@127.0.0.1:5060 SIP/2.0",
        "Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKo1",
        "Max-Forwards: 70",
        f"From: <sip:{CAMPAIGN_NUMBER}@pbx.example>;tag=p1",
        "To: <sip:+13035550111@edge.example>",
        "Call-ID: o1@pbx",
        "CSeq: 1 MESSAGE",
        body="promo",
    )
    got = h.feed(pbx_out, PBX_A)
    assert [(x.status, x.reason) for x, _ in got] == [(403, "Forbidden: recipient opted out")]
    a = h.proxy.activities[-1]
    assert (a.direction, a.decision, a.rule_id, a.campaign) == ("outbound", "refuse", "a2p.opted_out", "C1")


def _pbx_message(i: int, frm: str = CAMPAIGN_NUMBER) -> bytes:
    return msg(
        "MESSAGE sip:+13035550199@127.0.0.1:5060 SIP/2.0",
        f"Via: SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bKburst{i}",
        "Max-Forwards: 70",
        f"From: <sip:{frm}@pbx.example>;tag=p{i}",
        "To: <sip:+13035550199@edge.example>",
        f"Call-ID: burst{i}@pbx",
        "CSeq: 1 MESSAGE",
        body=f"notice {i}",
    )


def test_outbound_burst_paced_at_the_campaign_rate() -> None:
    h, _ = _harness(per_minute=60)  # one per second
    first: dict[str, float] = {}  # call-id -> when first sent (retransmissions ignored)
    for i in range(5):
        for x, d in h.feed(_pbx_message(i), PBX_A):
            if x.method == "MESSAGE" and d == CARRIER:
                first.setdefault(x.call_id, h.now)
    assert len(first) == 1  # the first at once, the rest queued
    t0 = h.now
    for _ in range(50):
        for x, d in h.advance(0.1):
            if x.method == "MESSAGE" and d == CARRIER:
                first.setdefault(x.call_id, h.now)
    assert [round(t - t0, 1) for t in first.values()] == [0.0, 1.0, 2.0, 3.0, 4.0]


def test_outbound_unregistered_sender_refused() -> None:
    h, _ = _harness()
    got = h.feed(_pbx_message(1, frm="+12025550177"), PBX_A)
    assert [(x.status, x.reason) for x, _ in got] == [(403, "Forbidden: sending number not registered to an A2P campaign")]


def test_outbound_beyond_the_queue_refused_with_retry_after() -> None:
    h, m = _harness(per_minute=12)  # one per 5 s; queue of 10, 30 s wait at most
    answers = []
    for i in range(9):
        answers += [(x.status, x.get("retry-after"), x.reason) for x, d in h.feed(_pbx_message(i), PBX_A) if d == PBX_A]
    # 1 at once, 6 queued (waits 5..30 s), then refused: 35 s would exceed the 30 s wait.
    assert answers == [(503, "5", "Service Unavailable: campaign throughput exceeded")] * 2
    acts = [a for a in h.proxy.activities if a.decision == "refuse"]
    assert len(acts) == 2 and acts[0].rule_id == "a2p.rate" and "12/min" in acts[0].reason
