"""Spam Detective: rates and signals combined into a score, the score mapped to an action.

Detectors report evidence, the dialplan decides (DESIGN §3.3, as Kamailio's pike leaves the verdict
to the script): each exceeded rate and each raised signal adds its weight; the first threshold
(highest score first) the total reaches names the action. A rate rule may also name an action of its
own. When several apply, the most severe wins (reject > intercept > voicemail > captcha > menu > allow).

A caller whose own evidence drew a non-allow verdict stays flagged for the dialplan's cool-off: while
flagged, its score is at least the flagged score and its action at least the flagged action. Only
evidence about that caller counts towards a flag: aggregate rates (per source, called number or caller
name) are shared by every caller of a carrier trunk, so a legitimate burst may be refused while it
lasts, but it never puts the innocent callers in it under cool-off. Flags are bounded (oldest evicted,
counted) and are not extended by verdicts the flag itself caused, so a caller whose own behaviour has
become clean is released when the cool-off ends.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

import msgspec

from edge.policy.facts import Action, CallFacts, Evidence
from edge.policy.rates import RateBook, RateKey, RateLimit
from edge.policy.signals import SignalConfig, SignalState

SEVERITY: dict[Action, int] = {
    Action.ALLOW: 0,
    Action.MENU: 1,
    Action.CAPTCHA: 2,
    Action.VOICEMAIL: 3,
    Action.INTERCEPT: 4,
    Action.REJECT: 5,
}


#: Rates counted over many callers: evidence about traffic, never about one caller (no cool-off).
AGGREGATE_RATES = frozenset({RateKey.SOURCE, RateKey.CALLED, RateKey.CNAM})


class RateRule(msgspec.Struct, frozen=True):
    """Compiled `[[spam.rate]]`: exceeding `limit` adds `weight` and, when set, forces `action`."""

    id: str
    key: RateKey
    limit: RateLimit
    weight: float = 0.0
    action: Action | None = None


class Threshold(msgspec.Struct, frozen=True):
    """Compiled `[[spam.threshold]]`: a score at or above `score` maps to `action`."""

    score: float
    action: Action
    id: str


DEFAULT_THRESHOLDS = (
    Threshold(80.0, Action.REJECT, "spam.threshold.80"),
    Threshold(50.0, Action.CAPTCHA, "spam.threshold.50"),
)


class SpamConfig(msgspec.Struct, frozen=True):
    """Compiled `[spam]` section of one dialplan (see schema.SpamSpec)."""

    id: str = "spam"
    enabled: bool = True
    rates: tuple[RateRule, ...] = ()
    thresholds: tuple[Threshold, ...] = DEFAULT_THRESHOLDS  # highest score first
    signals: SignalConfig = SignalConfig()
    cool_off: float = 3600.0
    reject_status: int = 603
    dry_run: bool = False


class Flag(msgspec.Struct, frozen=True):
    until: float
    score: float
    action: Action
    rule_id: str
    reason: str


class FlagTable:
    """Callers under cool-off, bounded: the earliest flagged caller is evicted first."""

    __slots__ = ("max_entries", "evictions", "_flags")

    def __init__(self, max_entries: int) -> None:
        self.max_entries = max_entries
        self.evictions = 0
        self._flags: OrderedDict[str, Flag] = OrderedDict()

    def __len__(self) -> int:
        return len(self._flags)

    def get(self, caller: str, now: float) -> Flag | None:
        flag = self._flags.get(caller)
        if flag is not None and flag.until <= now:
            del self._flags[caller]
            return None
        return flag

    def set(self, caller: str, flag: Flag) -> None:
        flags = self._flags
        if caller in flags:
            del flags[caller]
        elif len(flags) >= self.max_entries:
            flags.popitem(last=False)
            self.evictions += 1
        flags[caller] = flag

    def clear(self, caller: str) -> bool:
        """Lift a flag (operator override); True when one was set."""
        return self._flags.pop(caller, None) is not None


class SpamVerdict(msgspec.Struct, frozen=True):
    action: Action
    rule_id: str
    reason: str
    score: float
    evidence: tuple[Evidence, ...]
    sip_status: int = 0
    flagged: bool = False  # True when the cool-off flag decided


def caller_key(facts: CallFacts) -> str:
    """Who the caller is for rates, history and flags: E.164, else the raw user part unless withheld."""
    if facts.calling_number:
        return facts.calling_number
    return "" if facts.anonymous else facts.calling_raw


class SpamDetective:
    """Stateful across calls (rates, history, flags); the per-number config comes with each call."""

    def __init__(
        self,
        max_rate_keys: int = 100_000,
        max_callers: int = 100_000,
        history_per_caller: int = 10,
        max_flagged: int = 100_000,
    ) -> None:
        self.rates = RateBook(max_rate_keys)
        self.signals = SignalState(max_callers, history_per_caller)
        self.flags = FlagTable(max_flagged)

    def rate_key(self, key: RateKey, facts: CallFacts, caller: str, cnam: str) -> str:
        """What a rate of kind `key` counts this contact under ('' when it has no such key)."""
        if key is RateKey.CALLER:
            return caller
        if key is RateKey.SOURCE:
            return facts.source_ip
        called = facts.called_number or facts.called_raw
        if key is RateKey.CALLED:
            return called
        if key is RateKey.PAIR:
            return f"{caller}>{called}" if caller and called else ""
        return cnam

    def assess(
        self,
        facts: CallFacts,
        cfg: SpamConfig,
        now: float,
        cnam: str,
        *,
        message: bool = False,
        is_released: Callable[[str], bool] | None = None,
        extra: list[Evidence] | tuple[Evidence, ...] = (),
        probe: bool = False,
    ) -> SpamVerdict:
        """Count this contact in the rates, gather evidence and map it to an action.

        `message=True` (SIP MESSAGE): only rates count, per-call signals do not apply.
        `extra` is evidence from earlier stages (STIR) that counts towards the score.
        `probe=True` (sip-edge explain): the same verdict for a contact that is not happening: rates are
        read as if it were counted, nothing is counted and no caller is flagged.
        """
        caller = caller_key(facts)
        evidence: list[Evidence] = list(extra)
        aggregate: list[Evidence] = []  # also in `evidence`; left out of the caller's own verdict
        forced: tuple[Action, str, str] | None = None
        own_forced: tuple[Action, str, str] | None = None
        if cfg.rates:
            seen: dict[tuple[RateKey, float], float] = {}
            for rule in cfg.rates:
                slot = (rule.key, rule.limit.window)
                est = seen.get(slot)
                if est is None:
                    key = self.rate_key(rule.key, facts, caller, cnam)
                    if not key:
                        est = 0.0
                    elif probe:
                        est = self.rates.peek(rule.key, rule.limit.window, key, now)
                    else:
                        est = self.rates.hit(rule.key, rule.limit.window, key, now)
                    seen[slot] = est
                if est > rule.limit.count:
                    detail = f"{est:.1f} per {rule.limit.window:g}s > {rule.limit.count}"
                    e = Evidence(f"rate.{rule.key.value}", rule.weight, detail, rule.id)
                    evidence.append(e)
                    shared = rule.key in AGGREGATE_RATES
                    if shared:
                        aggregate.append(e)
                    if rule.action is not None:
                        hit = (rule.action, rule.id, f"rate {rule.key.value} {detail}")
                        if forced is None or SEVERITY[rule.action] > SEVERITY[forced[0]]:
                            forced = hit
                        if not shared and (own_forced is None or SEVERITY[rule.action] > SEVERITY[own_forced[0]]):
                            own_forced = hit
        if not message:
            evidence.extend(self.signals.evidence(facts, cfg.signals, now, is_released))
        score = 0.0
        for e in evidence:
            score += e.weight

        action, rule_id, reason = self._threshold(cfg, score, evidence)
        if forced is not None and SEVERITY[forced[0]] > SEVERITY[action]:
            action, rule_id, reason = forced
        # The caller's own verdict (what a cool-off may remember): the same, without aggregate evidence.
        own = [e for e in evidence if not any(e is a for a in aggregate)] if aggregate else evidence
        own_score = score - sum(e.weight for e in aggregate)
        own_action, own_rule, own_reason = self._threshold(cfg, own_score, own)
        if own_forced is not None and SEVERITY[own_forced[0]] > SEVERITY[own_action]:
            own_action, own_rule, own_reason = own_forced

        flagged = False
        flag = self.flags.get(caller, now) if caller else None
        if flag is not None:
            evidence.append(Evidence("spam.flagged", 0.0, f"{flag.reason} (cool-off {flag.until - now:.0f}s left)", flag.rule_id))
            if flag.score > score:
                score = flag.score
            f_action, f_rule, f_reason = self._threshold(cfg, flag.score, ())
            if SEVERITY[flag.action] > SEVERITY[f_action]:
                f_action = flag.action
            if SEVERITY[f_action] > SEVERITY[action]:
                action, rule_id, flagged = f_action, flag.rule_id, True
                reason = f"caller flagged for cool-off: {flag.reason}"

        if own_action is not Action.ALLOW and not cfg.dry_run and caller and cfg.cool_off > 0 and not probe:
            self.flags.set(caller, Flag(now + cfg.cool_off, own_score, own_action, own_rule, own_reason))
        status = cfg.reject_status if action is Action.REJECT else 0
        return SpamVerdict(action, rule_id, reason, score, tuple(evidence), status, flagged)

    @staticmethod
    def _threshold(cfg: SpamConfig, score: float, evidence: list[Evidence] | tuple[()]) -> tuple[Action, str, str]:
        for t in cfg.thresholds:
            if score >= t.score:
                signals = ", ".join(e.signal for e in evidence)
                tail = f" ({signals})" if signals else ""
                return t.action, t.id, f"spam score {score:g} >= {t.score:g}{tail}"
        return Action.ALLOW, "", ""

    def record_call_end(self, calling_number: str, answered: bool, duration: float, now: float) -> None:
        self.signals.record_call_end(calling_number, answered, duration, now)

    def record_screening(self, calling_number: str, passed: bool, now: float) -> None:
        self.signals.record_screening(calling_number, passed, now)
