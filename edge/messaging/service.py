"""The messaging side of the edge, sans-IO: what to do with one inbound or outbound MESSAGE.

The proxy asks, does the SIP, and leaves `optout_changes` for the daemon to store and share.
Inbound, a whole-message keyword written to a campaign's sending number records an opt-out or
opt-in, or answers HELP with the campaign's help text; any other text is inspected for content.
Outbound, the sending number must belong to a registered campaign, the recipient must not have
opted out of it, and the campaign's throughput toward the recipient's carrier shapes the send.
"""

from __future__ import annotations

import enum

import msgspec

from edge.messaging.a2p import Campaign, CampaignRegistry, Shaper, ShaperSettings, ShapeVerdict, Throughput, segments
from edge.messaging.campaign import CampaignSketch
from edge.messaging.inbound import HeldMessages, MessageAction, MessageInspector, MessageVerdict
from edge.messaging.links import DomainMemory, LinkInspector
from edge.messaging.optout import Keyword, OptOut, OptOutBook, keyword
from edge.messaging.rules import ContentRules
from edge.messaging.schema import MessagingConfig, MessagingPlan
from edge.policy.facts import Evidence
from edge.units import parse_duration

DEFAULT_STOP_TEXT = "You are unsubscribed from {brand} messages and will receive no more. Reply START to resubscribe."
DEFAULT_START_TEXT = "You are subscribed to {brand} messages again. Reply STOP to unsubscribe, HELP for help."
DEFAULT_HELP_TEXT = "{brand}: reply STOP to unsubscribe."


class AutoReply(msgspec.Struct, frozen=True):
    """A message the edge sends back on its own (HELP text, opt-out/opt-in confirmation)."""

    sender: str  # the campaign's number
    recipient: str
    body: str
    campaign: str


class Inbound(msgspec.Struct, frozen=True):
    verdict: MessageVerdict
    campaign: str = ""
    keyword: str = ""
    reply: AutoReply | None = None


class OutboundAction(str, enum.Enum):
    SEND = "send"
    REFUSE = "refuse"


class Outbound(msgspec.Struct, frozen=True):
    action: OutboundAction
    rule_id: str
    reason: str
    campaign: str = ""
    carrier: str = ""
    send_at: float = 0.0
    queued: bool = False
    status: int = 0
    retry_after: int = 0
    throughput: Throughput | None = None
    evidence: tuple[Evidence, ...] = ()


class OptOutChange(msgspec.Struct, frozen=True):
    op: str  # 'add' | 'remove'
    optout: OptOut


class Messaging:
    def __init__(self, cfg: MessagingConfig, plan: MessagingPlan, rule_index: object) -> None:
        self.cfg = cfg
        self.book = OptOutBook(cfg.max_optouts)
        self.rules = ContentRules(rule_index)
        self.inspector = MessageInspector(
            CampaignSketch(parse_duration(cfg.campaign_window), cfg.sketch_width, cfg.sketch_depth, cfg.bloom_bits),
            LinkInspector(cfg.shorteners, cfg.trusted_domains, parse_duration(cfg.new_domain_age), DomainMemory(cfg.max_domains)),
            self.rules,
        )
        self.shaper = Shaper(cfg.carrier, ShaperSettings(cfg.burst, cfg.queue_size, parse_duration(cfg.max_queue_wait),
                                                         cfg.daily_reset_tz))
        self.held = HeldMessages(cfg.max_held, parse_duration(cfg.hold_for))
        self.optout_changes: list[OptOutChange] = []
        self.outbound_by_action: dict[str, int] = {"send": 0, "queued": 0, "refuse": 0}
        self.keywords: dict[str, int] = {k.value: 0 for k in Keyword}
        self.set_plan(plan)

    def set_plan(self, plan: MessagingPlan) -> None:
        """Dialplan reload: campaigns and policies swap; opt-outs, buckets and sketches stay."""
        self.plan = plan
        self.registry = CampaignRegistry(list(plan.campaigns))

    # -- opt-outs (store and other nodes) ----------------------------------------------------------
    def load_optouts(self, optouts: list[OptOut]) -> None:
        for o in optouts:
            self.book.add(o)

    def apply_change(self, change: OptOutChange) -> None:
        """A change another node made (shared through Redis)."""
        if change.op == "add":
            self.book.add(change.optout)
        else:
            self.book.remove(change.optout.campaign, change.optout.recipient)

    def _record(self, op: str, o: OptOut) -> None:
        self.apply_change(OptOutChange(op, o))
        self.optout_changes.append(OptOutChange(op, o))

    # -- inbound -----------------------------------------------------------------------------------
    def inbound(self, body: str, sender: str, recipient: str, customer: str, now: float) -> Inbound:
        campaign = self.registry.for_number(recipient)
        kw = keyword(body) if campaign is not None and sender else None
        if campaign is not None and kw is not None:
            return self._keyword(kw, campaign, sender, now)
        verdict = self.inspector.inspect(body, sender, recipient, customer, self.plan.policy(customer), now)
        return Inbound(verdict, campaign.id if campaign else "")

    def _keyword(self, kw: Keyword, campaign: Campaign, sender: str, now: float) -> Inbound:
        self.keywords[kw.value] += 1
        brand = campaign.brand.id
        if kw in (Keyword.STOP, Keyword.STOP_ALL):
            targets = self.registry.brand_campaigns(brand) if kw is Keyword.STOP_ALL else [campaign]
            for c in targets:
                self._record("add", OptOut(c.id, sender, now, kw.value))
            text = (campaign.stop_text or DEFAULT_STOP_TEXT).format(brand=brand)
            what = f"opted out of {', '.join(c.id for c in targets)}"
        elif kw is Keyword.START:
            for c in [campaign]:
                if self.book.opted_out(c.id, sender) is not None:
                    self._record("remove", OptOut(c.id, sender, now, kw.value))
            text = (campaign.start_text or DEFAULT_START_TEXT).format(brand=brand)
            what = f"opted in to {campaign.id}"
        else:
            text = (campaign.help_text or DEFAULT_HELP_TEXT).format(brand=brand)
            what = f"help text of {campaign.id} sent"
        ev = Evidence(f"message.keyword.{kw.value}", 0.0, what, campaign.id)
        verdict = MessageVerdict(MessageAction.DELIVER, f"keyword.{kw.value}", what, evidence=(ev,))
        self.inspector.by_action[MessageAction.DELIVER.value] += 1
        return Inbound(verdict, campaign.id, kw.value, AutoReply(campaign.numbers[0] if campaign.numbers else "", sender,
                                                                  text, campaign.id))

    # -- outbound ----------------------------------------------------------------------------------
    def outbound(self, sender: str, recipient: str, now: float, text: str = "") -> Outbound:
        campaign = self.registry.for_number(sender)
        if campaign is None:
            self.outbound_by_action["refuse"] += 1
            return Outbound(OutboundAction.REFUSE, "a2p.unregistered",
                            f"sending number {sender or '(none)'} is in no registered A2P campaign", status=403)
        o = self.book.opted_out(campaign.id, recipient)
        if o is not None:
            self.outbound_by_action["refuse"] += 1
            return Outbound(OutboundAction.REFUSE, "a2p.opted_out",
                            f"recipient opted out of campaign {campaign.id} ({o.keyword})", campaign.id, status=403,
                            evidence=(Evidence("message.opted_out", 0.0, f"{o.keyword} at {o.at:.0f}", campaign.id),))
        carrier = self.shaper.carrier_for(recipient)
        parts = segments(text) if text else 1
        s = self.shaper.admit(campaign, recipient, now, parts)
        tp = s.throughput
        detail = f"class {campaign.tier.message_class}: {tp.per_minute}/min, {tp.daily_cap}/day at {carrier}" if tp else ""
        if parts > 1:
            detail += f"; {parts} segments"
        ev = (Evidence("a2p.throughput", 0.0, detail, campaign.id),)
        if s.verdict is ShapeVerdict.REFUSE:
            self.outbound_by_action["refuse"] += 1
            rule = "a2p.daily_cap" if "daily cap" in s.reason else "a2p.rate"
            return Outbound(OutboundAction.REFUSE, rule, s.reason, campaign.id, carrier, status=s.status,
                            retry_after=s.retry_after, throughput=tp, evidence=ev)
        self.outbound_by_action["queued" if s.queued else "send"] += 1
        reason = f"queued {s.send_at - now:.3f}s to stay within {detail}" if s.queued else f"within {detail}"
        return Outbound(OutboundAction.SEND, "a2p.queued" if s.queued else "a2p.send", reason, campaign.id, carrier,
                        s.send_at, s.queued, throughput=tp, evidence=ev)

    def stats(self) -> dict[str, object]:
        return {
            "inbound_by_decision": dict(self.inspector.by_action),
            "outbound_by_action": dict(self.outbound_by_action),
            "keywords": dict(self.keywords),
            "optouts": len(self.book),
            "optout_overflow": self.book.overflow,
            "held": len(self.held),
            "held_dropped_full": self.held.dropped_full,
            "campaigns": len(self.registry),
            "domains_tracked": len(self.inspector.links.memory),
        }
