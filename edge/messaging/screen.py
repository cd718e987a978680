"""Chats and forms screening (the `POST /v1/screen` API's core), sans-IO.

One submission -> allow, challenge (e.g. a CAPTCHA on the page) or reject, with a score and the
reasons. The same rules as calls and texts apply: number/prefix/country/invalid/CNAM rules on the
phone and name (edge.policy.blocking), `text`, `email` and `ip` rules on the rest
(edge.messaging.rules); a block decides at once, an allow entry lets the submission through.
Signals add to the score: an invalid or unassigned phone number (phonenumbers), a disposable e-mail
domain (the disposable-email-domains list), a malformed address, rate windows per phone, e-mail and
IP, and links through URL shorteners in the text.
"""

from __future__ import annotations

import ipaddress
from typing import Literal

import msgspec

from edge.call.activity import Activity
from edge.messaging.links import extract_domains
from edge.messaging.rules import ContentRules
from edge.messaging.schema import ScreeningApiConfig
from edge.numbers import parse_number
from edge.policy.blocking import RuleIndex
from edge.policy.facts import CallFacts, ContactKind, Evidence
from edge.policy.rates import SlidingWindowCounter
from edge.units import parse_rate

LIMITS = {"phone": 32, "name": 128, "email": 254, "ip": 45, "text": 5000, "page": 2048}

WEIGHTS = {
    "phone.invalid": 40.0,
    "email.disposable": 45.0,
    "email.invalid": 30.0,
    "rate.phone": 50.0,
    "rate.email": 50.0,
    "rate.ip": 40.0,
    "text.shortener": 25.0,
}


class ScreenRequest(msgspec.Struct, forbid_unknown_fields=True):
    channel: Literal["form", "chat"]
    phone: str = ""
    name: str = ""
    email: str = ""
    ip: str = ""
    text: str = ""
    page: str = ""


class ScreenResult(msgspec.Struct):
    decision: str  # 'allow' | 'challenge' | 'reject'
    score: float
    reasons: list[str]
    activity_id: str


def request_problem(req: ScreenRequest) -> str | None:
    """Why a decoded request is refused (422), or None."""
    for field, cap in LIMITS.items():
        if len(getattr(req, field)) > cap:
            return f"{field} longer than {cap} characters"
    if req.ip:
        try:
            ipaddress.ip_address(req.ip)
        except ValueError:
            return f"ip {req.ip!r} is not an IP address"
    if not any((req.phone, req.name, req.email, req.ip, req.text)):
        return "nothing to screen: give at least one of phone, name, email, ip, text"
    return None


def _email_parts(email: str) -> tuple[str, str] | None:
    local, at, domain = email.strip().lower().rpartition("@")
    if not at or not local or "." not in domain or domain.startswith(".") or " " in email.strip():
        return None
    return local, domain


class Screener:
    def __init__(self, cfg: ScreeningApiConfig, rules: RuleIndex, content: ContentRules, disposable: frozenset[str],
                 shorteners: frozenset[str], node: str = "") -> None:
        self.cfg = cfg
        self.rules = rules
        self.content = content
        self.disposable = disposable
        self.shorteners = shorteners
        self.node = node
        self.rates: dict[str, tuple[SlidingWindowCounter, int]] = {}
        for key in ("phone", "email", "ip"):
            count, window = parse_rate(getattr(cfg, f"rate_{key}"))
            self.rates[key] = (SlidingWindowCounter(window, cfg.max_rate_keys), count)
        self.by_decision = {"allow": 0, "challenge": 0, "reject": 0}

    def screen(self, req: ScreenRequest, customer: str, activity_id: str, now: float) -> tuple[ScreenResult, Activity]:
        phone = parse_number(req.phone) if req.phone else None
        e164 = phone.e164 if phone is not None else ""
        email = req.email.strip().lower()
        a = Activity(id=activity_id, call_id="", kind=req.channel, received_at=now, calling_number=e164 or req.phone,
                     called_number="", cnam=req.name, source=req.ip, transport="https", customer=customer,
                     node=self.node, email=email, page=req.page, direction="inbound")
        evidence: list[Evidence] = []
        decision, rule_id, reason = self._rules(req, e164, email, customer, now, evidence)
        score = 0.0
        # Windows count every submission, decided by a rule or not: a flood stays visible.
        for key, value in (("phone", e164 or req.phone), ("email", email), ("ip", req.ip)):
            if not value:
                continue
            counter, limit = self.rates[key]
            seen = counter.hit(f"{customer}|{value}", now)
            if seen > limit:
                evidence.append(Evidence(f"rate.{key}", WEIGHTS[f"rate.{key}"], f"{seen:.0f} > {limit} per window"))
        if req.phone and (phone is None or not e164 or not phone.valid):
            evidence.append(Evidence("phone.invalid", WEIGHTS["phone.invalid"], f"{req.phone!r} is not an assigned number"))
        if email:
            parts = _email_parts(email)
            if parts is None:
                evidence.append(Evidence("email.invalid", WEIGHTS["email.invalid"], f"{email!r} is not an e-mail address"))
            elif self._disposable(parts[1]):
                evidence.append(Evidence("email.disposable", WEIGHTS["email.disposable"], parts[1]))
        if req.text:
            _, domains = extract_domains(req.text)
            short = [d for d in domains if d in self.shorteners]
            if short:
                evidence.append(Evidence("text.shortener", WEIGHTS["text.shortener"], ", ".join(short)))
        score = sum(e.weight for e in evidence)
        if decision is None:
            if score >= self.cfg.reject_score:
                decision, rule_id, reason = "reject", "screen.reject_score", f"score {score:g} >= {self.cfg.reject_score:g}"
            elif score >= self.cfg.challenge_score:
                decision, rule_id, reason = "challenge", "screen.challenge_score", f"score {score:g} >= {self.cfg.challenge_score:g}"
            else:
                decision, rule_id, reason = "allow", "screen.clean", f"score {score:g} below every threshold"
        self.by_decision[decision] += 1
        a.decision, a.rule_id, a.reason, a.score, a.evidence = decision, rule_id, reason, score, evidence
        reasons = [e.signal if not e.detail else f"{e.signal}: {e.detail}" for e in evidence] or [reason]
        return ScreenResult(decision, score, reasons, activity_id), a

    def _disposable(self, domain: str) -> bool:
        parts = domain.split(".")
        return any(".".join(parts[i:]) in self.disposable for i in range(len(parts) - 1))

    def _rules(self, req: ScreenRequest, e164: str, email: str, customer: str, now: float,
               evidence: list[Evidence]) -> tuple[str | None, str, str]:
        """A block or allow rule that decides, as (decision, rule id, reason); (None, '', '') when none."""
        m = self.content.match(now, customer=customer, text=req.text, email=email, ip=req.ip)
        if m is not None and m.rule is not None:
            r = m.rule
            evidence.append(Evidence("allow" if r.allow else "block", 0.0, f"{m.field} rule {r.value!r}", r.id))
            if not r.allow:
                return "reject", r.id, r.reason or f"blocked by {m.field} {r.value}"
            return "allow", r.id, r.reason or f"allowed by {m.field} {r.value}"
        if e164 or req.name:
            facts = CallFacts(call_id="", kind=ContactKind.MESSAGE, received_at=now, source_ip=req.ip, source_port=0,
                              transport="https", carrier=None, calling_raw=req.phone, calling_number=e164,
                              called_raw="", called_number="", cnam=req.name, anonymous=False, customer=customer or None)
            hit = self.rules.match(facts, now)
            usable = hit is not None and hit.rule is not None and hit.rule.kind.value != "anonymous"
            if usable and hit.rule.kind.value == "invalid" and not e164:
                usable = False  # no phone given: nothing to call invalid
            if usable:
                r = hit.rule
                evidence.append(Evidence("allow" if r.allow else "block", 0.0, f"{r.kind.value} rule {r.value!r}", r.id))
                if not r.allow:
                    return "reject", r.id, r.reason or f"blocked by {r.kind.value} {r.value}"
                return "allow", r.id, r.reason or f"allowed by {r.kind.value} {r.value}"
        return None, "", ""
