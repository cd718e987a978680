"""Dialplan and config sections of the policy area, and their compilation into engine objects.

What telecom engineers write (TOML, decoded with msgspec, unknown keys forbidden)::

    [[block]]                      # scope comes from where the list is declared
    number = "+12025550100"        # or cnam = "SPAM*" | prefix = "+1900" | anonymous = true
    action = "reject"              #    | invalid = true | country = "NG"
    status = 603
    dry_run = false

    [[allow]]
    number = "+12025550199"

    [spam]
    cool_off = "1h"
    [spam.signals]
    stir_failed = 50
    [[spam.rate]]
    key = "caller"
    rate = "5/60s"
    weight = 40
    [[spam.threshold]]
    score = 80
    action = "reject"

`compile_*` functions turn specs into engine objects and report every problem as a
`ValidationError(path, reason)` with a JSON path from the file root, so `sip-edge check` can print
`file:line:col: $.path: reason`.
"""

from __future__ import annotations

import re
from collections.abc import Callable

import msgspec
import phonenumbers

from edge.numbers import number_valid
from edge.units import parse_duration
from edge.units import parse_rate as _parse_rate

from edge.policy.blocking import RuleValueError, normalise_rule
from edge.policy.facts import Action
from edge.policy.plan import NumberPolicy
from edge.policy.rates import RateKey, RateLimit
from edge.policy.rules import BlockRule, RuleKind, Scope
from edge.policy.signals import SignalConfig, SignalWeights
from edge.policy.spam import DEFAULT_THRESHOLDS, RateRule, SpamConfig, Threshold

_MEDIA = (Action.CAPTCHA, Action.MENU, Action.VOICEMAIL)


class ValidationError(msgspec.Struct, frozen=True):
    path: str  # JSON path from the file root, e.g. '$.block[2].number'
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


_E164 = re.compile(r"^\+[1-9][0-9]{0,14}$")
_PREFIX = re.compile(r"^\+[0-9]{1,15}$")
_VISUAL = str.maketrans("", "", " -.()")
_TOO = {
    phonenumbers.ValidationResult.TOO_SHORT: "too short",
    phonenumbers.ValidationResult.TOO_LONG: "too long",
    phonenumbers.ValidationResult.INVALID_LENGTH: "wrong length",
}


def number_problem(raw: str) -> str | None:
    """Why `raw` is not a valid E.164 number as written in a file, or None.

    Files name numbers in E.164 ('+', country code, number), checked against phonenumbers' metadata,
    so a short number or a national one is refused instead of being guessed into a country.
    """
    s = raw.translate(_VISUAL)
    if not _E164.match(s):
        return f"{raw!r} is not a valid E.164 number (write '+', the country code and the number, e.g. '+12025550100')"
    if number_valid(s):
        return None
    pn = phonenumbers.parse(s, None)
    if phonenumbers.region_code_for_country_code(pn.country_code) == phonenumbers.UNKNOWN_REGION:
        return f"{raw!r} is not a valid E.164 number (no country has calling code +{pn.country_code})"
    too = _TOO.get(phonenumbers.is_possible_number_with_reason(pn))
    if too:
        return f"{raw!r} is not a valid E.164 number ({too} for country code +{pn.country_code})"
    return f"{raw!r} is not a valid E.164 number (not in an allocated range of country code +{pn.country_code})"


def prefix_problem(raw: str) -> str | None:
    """Why `raw` is not an E.164 prefix ('+', then the country code and leading digits), or None."""
    s = raw.translate(_VISUAL)
    if not _PREFIX.match(s):
        return f"{raw!r} is not an E.164 prefix (write '+' followed by the country code and leading digits, e.g. '+1202')"
    digits = s[1:]
    codes = [str(c) for c in phonenumbers.COUNTRY_CODE_TO_REGION_CODE if c]
    if not any(digits.startswith(c) or c.startswith(digits) for c in codes):
        return f"{raw!r} is not an E.164 prefix (no country calling code starts {s[:4]})"
    return None


def parse_rate(text: str) -> RateLimit:
    """'5/60s' (five per sixty seconds), '100/1h', '10/m' -> RateLimit; raises ValueError.

    The grammar is edge.units.parse_rate's; the Spam Detective bounds its windows to 1s..24h."""
    count, window = _parse_rate(text, min_window=1.0, max_window=86400.0)
    return RateLimit(count, window)


# ---------------------------------------------------------------------------------------------
# Dialplan sections


class BlockRuleSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One `[[block]]` or `[[allow]]` entry: exactly one matcher key."""

    number: str | None = None
    cnam: str | None = None
    prefix: str | None = None
    anonymous: bool = False
    invalid: bool = False
    country: str | None = None
    text: str | None = None  # messages, chats, forms: '*gift card*' (case- and spacing-insensitive)
    email: str | None = None  # chats and forms: address, '@domain' or pattern ('*@mailinator.com')
    ip: str | None = None  # chats and forms: address or CIDR
    action: Action | None = None  # block only; default reject
    status: int | None = None  # SIP status for reject/intercept; default 603
    dry_run: bool = False
    id: str = ""  # stable id for metrics and activities; derived from scope and matcher when empty
    reason: str = ""


class RateSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    key: RateKey
    rate: str  # '<count>/<window>', e.g. '5/60s'
    weight: float = 0.0
    action: Action | None = None  # exceeding the rate forces this action
    id: str = ""


class ThresholdSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    score: float
    action: Action
    id: str = ""


class SpamSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`[spam]`: Spam Detective settings; no `[[spam.threshold]]` means 80 reject, 50 captcha."""

    enabled: bool = True
    dry_run: bool = False
    cool_off: str = "1h"
    short_call_seconds: float = 6.0
    short_call_min_calls: int = 3
    short_call_share: float = 0.6
    failed_screenings: int = 2
    history_window: str = "24h"
    reject_status: int = 603
    signals: SignalWeights = SignalWeights()
    rate: list[RateSpec] = []
    threshold: list[ThresholdSpec] = []


class NumberPolicySpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Per-number (or per-customer) policy switches."""

    dry_run: bool = False
    media_fallback: Action = Action.REJECT
    fax_action: Action = Action.ALLOW
    reject_status: int = 603


# ---------------------------------------------------------------------------------------------
# edge.toml


class PolicySettings(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """`[policy]` in config/edge.toml: memory bounds of the engine (each table evicts its oldest)."""

    max_rate_keys: int = 100_000  # per rate key kind and window
    max_callers: int = 100_000  # callers with call/screening history
    history_per_caller: int = 10
    max_flagged: int = 100_000  # callers under cool-off
    max_rule_stats: int = 10_000  # distinct rule ids counted in stats (rest under 'other')


def validate_settings(settings: PolicySettings, path: str = "$.policy") -> list[ValidationError]:
    errors = []
    for field in settings.__struct_fields__:
        if getattr(settings, field) < 1:
            errors.append(ValidationError(f"{path}.{field}", "must be at least 1"))
    return errors


# ---------------------------------------------------------------------------------------------
# Compilation

_MATCHERS = ("number", "cnam", "prefix", "anonymous", "invalid", "country", "text", "email", "ip")


def _status_error(status: int) -> str | None:
    if not 400 <= status <= 699:
        return f"status {status} is not a SIP rejection code (400-699)"
    return None


def compile_rules(
    specs: list[BlockRuleSpec],
    *,
    allow: bool,
    scope: Scope = Scope.GLOBAL,
    scope_value: str = "",
    source: str = "dialplan",
    path: str = "$.block",
    seen: dict[str, str] | None = None,
    where: Callable[[str], str] = str,
) -> tuple[list[BlockRule], list[ValidationError]]:
    """Specs declared at `path` (scope from where they sit) -> BlockRules, plus errors.

    `seen` (id -> where it was first defined) carries ids across calls and files so duplicates
    between sections and files are reported too; `where` turns a path into that location
    (e.g. 'dialplans/a.toml:12:1 $.block[0]').
    """
    seen = {} if seen is None else seen
    rules: list[BlockRule] = []
    errors: list[ValidationError] = []
    for i, spec in enumerate(specs):
        at = f"{path}[{i}]"
        got = [name for name in _MATCHERS if getattr(spec, name) not in (None, False)]
        if len(got) != 1:
            errors.append(ValidationError(at, f"exactly one of {', '.join(_MATCHERS)} must be set (got {', '.join(got) or 'none'})"))
            continue
        kind = RuleKind(got[0])
        raw = getattr(spec, got[0])
        value = raw if isinstance(raw, str) else ""
        problem = {RuleKind.NUMBER: number_problem, RuleKind.PREFIX: prefix_problem}.get(kind, lambda _: None)(value)
        if problem:
            errors.append(ValidationError(f"{at}.{kind.value}", problem))
            continue
        bad = False
        if allow:
            if spec.action is not None:
                errors.append(ValidationError(f"{at}.action", "an allow entry takes no action"))
                bad = True
            if spec.status is not None:
                errors.append(ValidationError(f"{at}.status", "an allow entry takes no status"))
                bad = True
        elif spec.action is Action.ALLOW:
            errors.append(ValidationError(f"{at}.action", "'allow' is not a block action; use [[allow]]"))
            bad = True
        action = spec.action or Action.REJECT
        if spec.status is not None:
            problem = _status_error(spec.status)
            if problem is None and action not in (Action.REJECT, Action.INTERCEPT):
                problem = f"status only applies to action 'reject' or 'intercept', not {action.value!r}"
            if problem:
                errors.append(ValidationError(f"{at}.status", problem))
                bad = True
        rule = BlockRule(
            id=spec.id,
            kind=kind,
            value=value,
            scope=scope,
            scope_value=scope_value,
            allow=allow,
            action=Action.ALLOW if allow else action,
            sip_status=spec.status or 603,
            dry_run=spec.dry_run,
            source=source,
            reason=spec.reason,
        )
        try:
            rule = normalise_rule(rule)
        except RuleValueError as exc:
            errors.append(ValidationError(f"{at}.{kind.value}" if exc.field == "value" else at, str(exc)))
            continue
        if not spec.id:
            rule = msgspec.structs.replace(rule, id=_derived_id(allow, kind, rule.value, scope, rule.scope_value))
        if rule.id in seen:
            errors.append(ValidationError(f"{at}.id" if spec.id else at, f"duplicate rule id {rule.id!r} (first defined at {seen[rule.id]})"))
            bad = True
        else:
            seen[rule.id] = where(at)
        if not bad:
            rules.append(rule)
    return rules, errors


def _derived_id(allow: bool, kind: RuleKind, value: str, scope: Scope, scope_value: str) -> str:
    where = "" if scope is Scope.GLOBAL else f"{scope_value}/"
    what = f":{value}" if value else ""
    return f"{where}{'allow' if allow else 'block'}:{kind.value}{what}"


def compile_spam(spec: SpamSpec, *, path: str = "$.spam", id: str = "spam") -> tuple[SpamConfig, list[ValidationError]]:
    """`[spam]` -> SpamConfig, plus errors. `id` prefixes derived rule ids (e.g. 'acme.spam')."""
    errors: list[ValidationError] = []

    def duration(field: str) -> float:
        try:
            return parse_duration(getattr(spec, field))
        except ValueError as exc:
            errors.append(ValidationError(f"{path}.{field}", str(exc)))
            return 0.0

    cool_off = duration("cool_off")
    history_window = duration("history_window")
    if spec.short_call_seconds <= 0:
        errors.append(ValidationError(f"{path}.short_call_seconds", "must be greater than 0"))
    if spec.short_call_min_calls < 1:
        errors.append(ValidationError(f"{path}.short_call_min_calls", "must be at least 1"))
    if not 0.0 < spec.short_call_share <= 1.0:
        errors.append(ValidationError(f"{path}.short_call_share", "must be greater than 0 and at most 1"))
    if spec.failed_screenings < 1:
        errors.append(ValidationError(f"{path}.failed_screenings", "must be at least 1"))
    problem = _status_error(spec.reject_status)
    if problem:
        errors.append(ValidationError(f"{path}.reject_status", problem))
    for name in SignalWeights.__struct_fields__:
        if getattr(spec.signals, name) < 0:
            errors.append(ValidationError(f"{path}.signals.{name}", "weight must be >= 0"))

    rates: list[RateRule] = []
    ids: dict[str, str] = {}
    for i, r in enumerate(spec.rate):
        at = f"{path}.rate[{i}]"
        try:
            limit = parse_rate(r.rate)
        except ValueError as exc:
            errors.append(ValidationError(f"{at}.rate", str(exc)))
            continue
        if r.weight < 0:
            errors.append(ValidationError(f"{at}.weight", "weight must be >= 0"))
        if r.action is Action.ALLOW:
            errors.append(ValidationError(f"{at}.action", "a rate action cannot be 'allow'"))
        if r.weight == 0 and r.action is None:
            errors.append(ValidationError(at, "a rate needs a weight or an action to have any effect"))
        rule_id = r.id or f"{id}.rate.{r.key.value}.{limit}"
        if rule_id in ids:
            errors.append(ValidationError(at, f"duplicate rate id {rule_id!r} (first at {ids[rule_id]})"))
        ids[rule_id] = at
        rates.append(RateRule(rule_id, r.key, limit, r.weight, r.action))

    thresholds: list[Threshold] = []
    scores: dict[float, str] = {}
    for i, t in enumerate(spec.threshold):
        at = f"{path}.threshold[{i}]"
        if t.score < 0:
            errors.append(ValidationError(f"{at}.score", "score must be >= 0"))
        if t.score in scores:
            errors.append(ValidationError(f"{at}.score", f"duplicate threshold score {t.score:g} (first at {scores[t.score]})"))
        scores[t.score] = at
        thresholds.append(Threshold(t.score, t.action, t.id or f"{id}.threshold.{t.score:g}"))
    if thresholds:
        compiled = tuple(sorted(thresholds, key=lambda t: t.score, reverse=True))
    else:
        compiled = tuple(msgspec.structs.replace(t, id=f"{id}.threshold.{t.score:g}") for t in DEFAULT_THRESHOLDS)

    config = SpamConfig(
        id=id,
        enabled=spec.enabled,
        rates=tuple(rates),
        thresholds=compiled,
        signals=SignalConfig(
            weights=spec.signals,
            short_call_seconds=spec.short_call_seconds,
            short_call_min_calls=spec.short_call_min_calls,
            short_call_share=spec.short_call_share,
            failed_screenings=spec.failed_screenings,
            history_window=history_window,
        ),
        cool_off=cool_off,
        reject_status=spec.reject_status,
        dry_run=spec.dry_run,
    )
    return config, errors


def compile_number_policy(
    spec: NumberPolicySpec,
    *,
    spam: SpamConfig | None = None,
    number: str = "",
    customer: str | None = None,
    captcha: str = "",
    menu: str = "",
    voicemail: str = "",
    path: str = "$",
) -> tuple[NumberPolicy, list[ValidationError]]:
    """Policy switches + compiled spam + names of the media configured for the number."""
    errors: list[ValidationError] = []
    if spec.fax_action not in (Action.ALLOW, Action.REJECT):
        errors.append(ValidationError(f"{path}.fax_action", f"fax_action must be 'allow' or 'reject', not {spec.fax_action.value!r}"))
    if spec.media_fallback is Action.INTERCEPT:
        errors.append(ValidationError(f"{path}.media_fallback", "media_fallback cannot be 'intercept'"))
    elif spec.media_fallback in _MEDIA and not {Action.CAPTCHA: captcha, Action.MENU: menu, Action.VOICEMAIL: voicemail}[spec.media_fallback]:
        errors.append(ValidationError(f"{path}.media_fallback", f"media_fallback {spec.media_fallback.value!r} is not configured for this number"))
    problem = _status_error(spec.reject_status)
    if problem:
        errors.append(ValidationError(f"{path}.reject_status", problem))
    policy = NumberPolicy(
        number=number,
        customer=customer,
        spam=spam,
        dry_run=spec.dry_run,
        captcha=captcha,
        menu=menu,
        voicemail=voicemail,
        media_fallback=spec.media_fallback,
        fax_action=spec.fax_action,
        reject_status=spec.reject_status,
    )
    return policy, errors
