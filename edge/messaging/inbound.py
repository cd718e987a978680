"""Inbound text messages (RFC 3428 MESSAGE): content signals and rules -> deliver, reject or hold.

Runs after the contact pipeline (ACL, STIR, block/allow rules, rate windows) allowed the message.
Detectors report evidence; the customer's `[messages]` section turns the summed score into a
decision: `reject_score` or a `text` block rule rejects (a SIP status carriers understand),
`hold_score` or a `hold` pattern holds the message for review (the carrier gets 202 Accepted,
RFC 3428 §7), anything else is delivered.
"""

from __future__ import annotations

import enum
from collections import OrderedDict

import msgspec

from edge.messaging.campaign import CampaignSketch
from edge.messaging.links import LinkInspector
from edge.messaging.rules import ContentRules
from edge.messaging.schema import MessagePolicy
from edge.messaging.text import TextRule, TextRuleSet, normalise_text
from edge.policy.facts import Evidence


class MessageAction(str, enum.Enum):
    DELIVER = "deliver"
    REJECT = "reject"
    HOLD = "hold"


class MessageVerdict(msgspec.Struct, frozen=True):
    action: MessageAction
    rule_id: str
    reason: str
    status: int = 0  # reject: the final response; hold: 202
    score: float = 0.0
    evidence: tuple[Evidence, ...] = ()
    dry_run: bool = False
    would: str = ""


class MessageInspector:
    def __init__(self, sketch: CampaignSketch, links: LinkInspector, rules: ContentRules) -> None:
        self.sketch = sketch
        self.links = links
        self.rules = rules
        self._hold_sets: dict[tuple[str, ...], TextRuleSet] = {}
        self.by_action = {a.value: 0 for a in MessageAction}

    def _hold_set(self, patterns: tuple[str, ...]) -> TextRuleSet:
        rs = self._hold_sets.get(patterns)
        if rs is None:
            rs = self._hold_sets[patterns] = TextRuleSet([TextRule(f"messages.hold[{i}]", p) for i, p in enumerate(patterns)])
        return rs

    def inspect(self, body: str, sender: str, recipient: str, customer: str, policy: MessagePolicy,
                now: float) -> MessageVerdict:
        v = self._inspect(body, sender, recipient, customer, policy, now)
        self.by_action[v.action.value] += 1
        return v

    def _inspect(self, body: str, sender: str, recipient: str, customer: str, policy: MessagePolicy,
                 now: float) -> MessageVerdict:
        evidence: list[Evidence] = []
        w = policy.weights
        score = 0.0
        # Signals are observed before rules decide, so a rejected copy still counts toward its campaign.
        est = self.sketch.observe(body, sender, recipient, now)
        if est.senders >= policy.campaign_senders and est.recipients >= policy.campaign_recipients:
            evidence.append(Evidence("message.campaign", w.campaign,
                                     f"same text from ~{est.senders} senders to ~{est.recipients} recipients"))
            score += w.campaign
        lf = self.links.inspect(body, now)
        if lf.urls >= policy.many_urls:
            evidence.append(Evidence("message.urls", w.many_urls, f"{lf.urls} links"))
            score += w.many_urls
        if lf.shorteners:
            evidence.append(Evidence("message.shortener", w.shortener, ", ".join(lf.shorteners)))
            score += w.shortener
        if lf.new_domains:
            evidence.append(Evidence("message.new_domain", w.new_domain, ", ".join(lf.new_domains)))
            score += w.new_domain
        norm = normalise_text(body)
        m = self.rules.match(now, customer=customer, called=recipient, text=norm)
        would = ""
        dry = False
        if m is not None:
            if m.would is not None:
                r = m.would
                dry = True
                would = MessageAction.DELIVER.value if r.allow else MessageAction.REJECT.value
                evidence.append(Evidence("text.dry_run", 0.0, f"text rule {r.value!r}", r.id))
            r = m.rule
            if r is not None:
                if r.allow:
                    evidence.append(Evidence("allow", 0.0, f"text rule {r.value!r}", r.id))
                    return MessageVerdict(MessageAction.DELIVER, r.id, "allowed by text rule", 0, score,
                                          tuple(evidence), dry, would)
                evidence.append(Evidence("block", 0.0, f"text rule {r.value!r}", r.id))
                return MessageVerdict(MessageAction.REJECT, r.id, r.reason or f"blocked by text {r.value}",
                                      r.sip_status or policy.reject_status, score, tuple(evidence), dry, would)
        if score >= policy.reject_score:
            return MessageVerdict(MessageAction.REJECT, "messages.reject_score",
                                  f"message score {score:g} >= {policy.reject_score:g}", policy.reject_status, score,
                                  tuple(evidence), dry, would)
        if policy.hold:
            hits = self._hold_set(policy.hold).match(norm, normalised=True)
            if hits:
                evidence.append(Evidence("message.hold_pattern", 0.0, hits[0].pattern, hits[0].id))
                return MessageVerdict(MessageAction.HOLD, hits[0].id, f"text matches hold pattern {hits[0].pattern!r}",
                                      202, score, tuple(evidence), dry, would)
        if score >= policy.hold_score:
            return MessageVerdict(MessageAction.HOLD, "messages.hold_score", f"message score {score:g} >= {policy.hold_score:g}",
                                  202, score, tuple(evidence), dry, would)
        return MessageVerdict(MessageAction.DELIVER, "messages.clean", f"message score {score:g} below every threshold",
                              0, score, tuple(evidence), dry, would)


class HeldMessage(msgspec.Struct):
    """A message held for review: the request as received, released by re-sending it to the PBX."""

    id: str  # the activity id
    customer: str
    sender: str
    recipient: str
    received_at: float
    reason: str
    body: str  # text shown to the reviewer (first 1,000 characters)
    raw: bytes = b""


class HeldMessages:
    """Held messages in arrival order; bounded (oldest dropped, counted) and aged out after `hold_for`."""

    def __init__(self, cap: int, hold_for: float) -> None:
        self.cap = cap
        self.hold_for = hold_for
        self._items: OrderedDict[str, HeldMessage] = OrderedDict()
        self.dropped_full = 0
        self.expired = 0

    def add(self, h: HeldMessage) -> None:
        self._items[h.id] = h
        while len(self._items) > self.cap:
            self._items.popitem(last=False)
            self.dropped_full += 1

    def expire(self, now: float) -> int:
        n = 0
        while self._items:
            first = next(iter(self._items.values()))
            if now - first.received_at < self.hold_for:
                break
            self._items.popitem(last=False)
            n += 1
        self.expired += n
        return n

    def take(self, id: str) -> HeldMessage | None:
        return self._items.pop(id, None)

    def get(self, id: str) -> HeldMessage | None:
        return self._items.get(id)

    def list(self, customer: str = "") -> list[HeldMessage]:
        return [h for h in self._items.values() if not customer or h.customer == customer]

    def __len__(self) -> int:
        return len(self._items)
