"""The policy pipeline for one INVITE or MESSAGE: block/allow rules -> STIR -> Spam Detective -> Decision.

Sans-IO and synchronous (DESIGN §3.1): facts and the number's compiled policy in, one Decision out.

How an action is shaped by what the contact is and what the number has:
- MESSAGE (RFC 3428): only block rules and rates apply; the outcome is allow or reject.
- Fax (T.38 `m=image` or fax SDP): never sent to captcha, menu or voicemail; those become the
  number's `fax_action` (allow by default - a fax machine cannot solve a captcha). Rejects stay.
- Calls: a captcha/menu/voicemail the number has not configured degrades to `media_fallback`
  (default reject); a fallback that is itself not configured becomes reject.
- Dry run: a dry-run rule that would have decided is recorded in `Decision.would` and not enforced;
  a dry-run number or spam section enforces nothing (action allow, `would` = the verdict).
"""

from __future__ import annotations

from collections.abc import Callable

from edge.policy.blocking import RuleIndex
from edge.policy.cnam import normalise_cnam
from edge.policy.facts import ALLOW_CLEAN, Action, CallFacts, ContactKind, Decision, Evidence
from edge.policy.plan import NumberPolicy
from edge.policy.rules import BlockRule
from edge.policy.schema import PolicySettings, validate_settings
from edge.policy.signals import stir_evidence
from edge.policy.spam import Flag, SpamDetective

_MEDIA = frozenset((Action.CAPTCHA, Action.MENU, Action.VOICEMAIL))


class PolicyStats:
    """Plain counters for the metrics exporter; rule ids beyond the cap are counted as 'other'."""

    def __init__(self, max_rules: int) -> None:
        self.max_rules = max_rules
        self.decisions = 0
        self.by_action: dict[str, int] = {a.value: 0 for a in Action}
        self.by_rule: dict[str, int] = {}
        self.dry_run = 0
        self.media_fallbacks = 0
        self.fax_substitutions = 0
        self.flags_cleared = 0  # cool-offs lifted by an operator

    def count(self, d: Decision) -> None:
        self.decisions += 1
        self.by_action[d.action.value] += 1
        by_rule = self.by_rule
        key = d.rule_id if d.rule_id in by_rule or len(by_rule) < self.max_rules else "other"
        by_rule[key] = by_rule.get(key, 0) + 1
        if d.dry_run:
            self.dry_run += 1


def _rule_reason(rule: BlockRule) -> str:
    if rule.reason:
        return rule.reason
    what = f"{rule.kind.value} {rule.value}" if rule.value else rule.kind.value
    return f"{'allowed' if rule.allow else 'blocked'} by {what}"


class PolicyEngine:
    """Owns the rule index and the Spam Detective state; one per daemon."""

    def __init__(
        self,
        config: PolicySettings | None = None,
        *,
        is_released: Callable[[str], bool] | None = None,
    ) -> None:
        config = config or PolicySettings()
        errors = validate_settings(config)
        if errors:
            raise ValueError("; ".join(str(e) for e in errors))
        self.config = config
        self.rules = RuleIndex()
        self.detective = SpamDetective(
            max_rate_keys=config.max_rate_keys,
            max_callers=config.max_callers,
            history_per_caller=config.history_per_caller,
            max_flagged=config.max_flagged,
        )
        self.counters = PolicyStats(config.max_rule_stats)
        self.is_released = is_released  # lifecycle hook: called number -> released?

    # -- decisions --------------------------------------------------------------------------

    def probe(self, facts: CallFacts, plan: NumberPolicy, now: float) -> Decision:
        """What `decide` would answer now, changing nothing: no rate counted, no flag, no counter (explain)."""
        counters, self.counters = self.counters, PolicyStats(1)
        try:
            return self.decide(facts, plan, now, probe=True)
        finally:
            self.counters = counters

    def decide(self, facts: CallFacts, plan: NumberPolicy, now: float, *, probe: bool = False) -> Decision:
        message = facts.kind is ContactKind.MESSAGE
        fax = facts.kind is ContactKind.FAX or facts.has_fax_sdp
        cnam = normalise_cnam(facts.cnam) if facts.cnam else ""
        evidence: list[Evidence] = []
        would: tuple[Action, str, str] | None = None

        # 1. block / allow rules
        m = self.rules.match(facts, now, cnam, plan.customer)
        if m is not None:
            if m.would is not None:
                w = m.would
                reason = _rule_reason(w)
                would = (Action.ALLOW if w.allow else w.action, w.id, reason)
                evidence.append(Evidence("allow.dry_run" if w.allow else "block.dry_run", 0.0, reason, w.id))
            r = m.rule
            if r is not None:
                reason = _rule_reason(r)
                evidence.append(Evidence("allow" if r.allow else "block", 0.0, reason, r.id))
                if r.allow:
                    return self._finish(Action.ALLOW, r.id, reason, 0, 0.0, evidence, would, plan, fax, message)
                return self._finish(r.action, r.id, reason, r.sip_status, 0.0, evidence, would, plan, fax, message)

        spam = plan.spam
        if spam is None or not spam.enabled:
            if would is None:
                self.counters.count(ALLOW_CLEAN)
                return ALLOW_CLEAN
            return self._finish(Action.ALLOW, ALLOW_CLEAN.rule_id, ALLOW_CLEAN.reason, 0, 0.0, evidence, would, plan, fax, message)

        # 2. STIR/SHAKEN: evidence only (verification happened in edge.stir)
        stir = () if message else stir_evidence(facts, spam.signals.weights)

        # 3. Spam Detective
        v = self.detective.assess(facts, spam, now, cnam, message=message, is_released=self.is_released, extra=stir,
                                  probe=probe)
        evidence.extend(v.evidence)
        if v.action is Action.ALLOW:
            reason = f"spam score {v.score:g} below every threshold"
            return self._finish(Action.ALLOW, spam.id, reason, 0, v.score, evidence, would, plan, fax, message)
        if spam.dry_run:
            if would is None:
                would = (v.action, v.rule_id, v.reason)
            return self._finish(Action.ALLOW, spam.id, "spam dry run", 0, v.score, evidence, would, plan, fax, message)
        return self._finish(v.action, v.rule_id, v.reason, v.sip_status, v.score, evidence, would, plan, fax, message)

    def _shape(self, action: Action, reason: str, plan: NumberPolicy, fax: bool, message: bool) -> tuple[Action, str]:
        """Fit an action to the contact kind and to the media the number has."""
        if message:
            if action is not Action.ALLOW and action is not Action.REJECT:
                return Action.REJECT, f"{reason}; message: {action.value} -> reject"
            return action, reason
        if action not in _MEDIA:
            return action, reason
        if fax:
            self.counters.fax_substitutions += 1
            return plan.fax_action, f"{reason}; fax: {action.value} -> {plan.fax_action.value}"
        if plan.media_target(action) is not None:
            return action, reason
        self.counters.media_fallbacks += 1
        fallback = plan.media_fallback
        if fallback in _MEDIA and plan.media_target(fallback) is None:
            fallback = Action.REJECT
        return fallback, f"{reason}; {action.value} not configured, fallback {fallback.value}"

    def _finish(
        self,
        action: Action,
        rule_id: str,
        reason: str,
        status: int,
        score: float,
        evidence: list[Evidence],
        would: tuple[Action, str, str] | None,
        plan: NumberPolicy,
        fax: bool,
        message: bool,
    ) -> Decision:
        action, reason = self._shape(action, reason, plan, fax, message)
        if would is not None:
            w_action, w_rule, w_reason = would
            w_action, w_reason = self._shape(w_action, w_reason, plan, fax, message)
            would = (w_action, w_rule, w_reason)
        if plan.dry_run and action is not Action.ALLOW:
            would = (action, rule_id, reason)
            action, status = Action.ALLOW, 0
        dry_run = would is not None
        if dry_run and action is Action.ALLOW:
            # Nothing enforced: the activity names the rule that would have acted.
            rule_id = would[1]  # type: ignore[index]
            reason = f"dry run: would {would[0].value}: {would[2]}"  # type: ignore[index]
        if action in (Action.REJECT, Action.INTERCEPT):
            status = status or plan.reject_status
        else:
            status = 0
        target = plan.media_target(action) or ""
        d = Decision(
            action=action,
            rule_id=rule_id,
            reason=reason,
            sip_status=status,
            score=score,
            evidence=tuple(evidence),
            dry_run=dry_run,
            would=would[0] if would is not None else None,
            target_ref=target,
        )
        self.counters.count(d)
        return d

    # -- feedback from the call and media layers ---------------------------------------------

    def observe_call_end(self, calling_number: str, answered: bool, duration: float, now: float) -> None:
        """A call ended: feeds the short-call history (duration in seconds since answer)."""
        self.detective.record_call_end(calling_number, answered, duration, now)

    def observe_screening(self, calling_number: str, passed: bool, now: float) -> None:
        """A captcha or menu screening finished: feeds the failed-screenings signal."""
        self.detective.record_screening(calling_number, passed, now)

    def observe_released_call(self, calling_number: str, now: float) -> None:
        """A contact to a released number: feeds the honeypot signal for this caller's next calls."""
        self.detective.signals.record_released_call(calling_number, now)

    def flag(self, calling_number: str, now: float) -> Flag | None:
        """The caller's Spam Detective cool-off, if one is in force."""
        return self.detective.flags.get(calling_number, now)

    def clear_flag(self, calling_number: str) -> bool:
        """Lift a caller's spam cool-off (operator override); True when one was in force."""
        cleared = self.detective.flags.clear(calling_number)
        self.counters.flags_cleared += cleared
        return cleared

    def replace_static_rules(self, rules: list[BlockRule]) -> int:
        """Dialplan reload: swap static rules, keep runtime ones."""
        return self.rules.replace_static(rules)

    # -- metrics -----------------------------------------------------------------------------

    @property
    def stats(self) -> dict[str, object]:
        """Counters and gauges as plain ints and dicts (the daemon exports them to Prometheus)."""
        c = self.counters
        d = self.detective
        return {
            "decisions_total": c.decisions,
            "decisions_by_action": dict(c.by_action),
            "decisions_by_rule": dict(c.by_rule),
            "dry_run_total": c.dry_run,
            "media_fallbacks_total": c.media_fallbacks,
            "fax_substitutions_total": c.fax_substitutions,
            "rules": len(self.rules),
            "rules_expired_purged_total": self.rules.expired_purged,
            "rate_keys": d.rates.tracked(),
            "rate_evictions_total": d.rates.evictions(),
            "history_callers": len(d.signals.calls),
            "history_evictions_total": d.signals.calls.evictions + d.signals.screenings.evictions,
            "flagged_callers": len(d.flags),
            "flag_evictions_total": d.flags.evictions,
            "flags_cleared_total": c.flags_cleared,
        }
