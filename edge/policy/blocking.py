"""Block and allow rules: an index answering "which rule decides this contact" in a few dict lookups.

Rules come from dialplan files (static, replaced on reload) and runtime entries (admin API, CLI,
flag-from-activity; persisted by the store). Scopes nest: a called number inside a customer inside
global. An allow entry overrides blocks in its own scope and every wider scope, so the index walks
scopes from the narrowest outwards and stops at the first scope holding an enforced match.

Within a scope the most specific matcher decides: exact number, then the longest prefix, exact CNAM,
wildcard CNAM, country, invalid, anonymous. Dry-run rules are evaluated alongside: when one would
have decided differently it is reported in `Match.would` but never enforced.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator

import msgspec
import phonenumbers
import structlog

from edge.numbers import parse_number
from edge.policy.cnam import MAX_WILDCARDS, WildcardSet, is_wildcard, normalise_cnam, normalise_pattern, wildcard_count
from edge.policy.facts import CallFacts
from edge.messaging.rules import content_value_problem, normalise_content_value
from edge.policy.rules import CONTENT_KINDS, BlockRule, RuleKind, Scope

log = structlog.get_logger()

_PREFIX = re.compile(r"^\+\d{1,15}$", re.ASCII)
_SEPARATORS = str.maketrans("", "", " -.()")


class RuleValueError(ValueError):
    """A rule value that cannot be normalised; `field` is 'value' or 'scope_value'."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(message)
        self.field = field


class Match(msgspec.Struct, frozen=True):
    """`rule` is the enforced allow/block rule that decided (None when only dry-run rules matched);
    `would` is a dry-run rule that would have decided instead, had it been enforced."""

    rule: BlockRule | None
    would: BlockRule | None = None


def normalise_rule(rule: BlockRule) -> BlockRule:
    """Canonical values so lookups are plain dict hits; raises ValueError naming the bad value."""
    value = rule.value
    kind = rule.kind
    if kind is RuleKind.NUMBER:
        value = _e164(value, "number", "value")
    elif kind is RuleKind.PREFIX:
        value = value.translate(_SEPARATORS)
        if not _PREFIX.match(value):
            raise RuleValueError("value", f"invalid prefix {rule.value!r}: expected '+' and 1-15 digits")
    elif kind is RuleKind.CNAM:
        value = normalise_pattern(value)
        if not value.replace("*", ""):
            raise RuleValueError("value", f"invalid caller-name pattern {rule.value!r}: matches every name")
        if wildcard_count(value) > MAX_WILDCARDS:
            raise RuleValueError(
                "value", f"invalid caller-name pattern {rule.value!r}: more than {MAX_WILDCARDS} '*' wildcards"
            )
    elif kind is RuleKind.COUNTRY:
        value = value.strip().upper()
        if value not in phonenumbers.SUPPORTED_REGIONS:
            raise RuleValueError("value", f"invalid country {rule.value!r}: expected an ISO 3166 alpha-2 code")
    elif kind in CONTENT_KINDS:
        problem = content_value_problem(kind.value, value)
        if problem:
            raise RuleValueError("value", problem)
        value = normalise_content_value(kind.value, value)
    else:
        value = ""
    scope_value = rule.scope_value
    if rule.scope is Scope.NUMBER:
        scope_value = _e164(scope_value, "called number", "scope_value")
    elif rule.scope is Scope.CUSTOMER:
        if not scope_value:
            raise RuleValueError("scope_value", "customer scope needs a customer name")
    else:
        scope_value = ""
    if value == rule.value and scope_value == rule.scope_value:
        return rule
    return msgspec.structs.replace(rule, value=value, scope_value=scope_value)


def _e164(raw: str, what: str, field: str) -> str:
    n = parse_number(raw)
    if not n.e164 or not n.valid:
        raise RuleValueError(field, f"invalid {what} {raw!r}: not a valid telephone number")
    return n.e164


def is_static(rule: BlockRule) -> bool:
    """Static rules come from dialplan files and are replaced wholesale on reload."""
    return rule.source.startswith("dialplan")


def _expired(rule: BlockRule, now: float) -> bool:
    return rule.expires_at is not None and rule.expires_at <= now


class _Bucket:
    """All rules of one scope instance, indexed by matcher kind."""

    __slots__ = (
        "numbers",
        "prefixes",
        "prefix_lens",
        "lens_desc",
        "cnam_exact",
        "wild",
        "countries",
        "invalid",
        "anonymous",
        "content",
        "size",
    )

    def __init__(self) -> None:
        self.numbers: dict[str, list[BlockRule]] = {}
        self.prefixes: dict[str, list[BlockRule]] = {}
        self.prefix_lens: dict[int, int] = {}
        self.lens_desc: tuple[int, ...] = ()
        self.cnam_exact: dict[str, list[BlockRule]] = {}
        # One wildcard set per (allow, dry_run) so the first match of each category is found.
        self.wild: dict[tuple[bool, bool], WildcardSet[BlockRule]] = {}
        self.countries: dict[str, list[BlockRule]] = {}
        self.invalid: list[BlockRule] = []
        self.anonymous: list[BlockRule] = []
        self.content: list[BlockRule] = []  # text/email/ip: edge.messaging.rules matches them, calls never do
        self.size = 0

    def add(self, rule: BlockRule) -> None:
        kind = rule.kind
        if kind is RuleKind.NUMBER:
            self.numbers.setdefault(rule.value, []).append(rule)
        elif kind is RuleKind.PREFIX:
            self.prefixes.setdefault(rule.value, []).append(rule)
            n = len(rule.value)
            self.prefix_lens[n] = self.prefix_lens.get(n, 0) + 1
            self.lens_desc = tuple(sorted(self.prefix_lens, reverse=True))
        elif kind is RuleKind.CNAM:
            if is_wildcard(rule.value):
                ws = self.wild.get((rule.allow, rule.dry_run))
                if ws is None:
                    ws = self.wild[(rule.allow, rule.dry_run)] = WildcardSet()
                ws.add(rule.value, rule)
            else:
                self.cnam_exact.setdefault(rule.value, []).append(rule)
        elif kind is RuleKind.COUNTRY:
            self.countries.setdefault(rule.value, []).append(rule)
        elif kind is RuleKind.INVALID:
            self.invalid.append(rule)
        elif kind in CONTENT_KINDS:
            self.content.append(rule)
        else:
            self.anonymous.append(rule)
        self.size += 1

    def remove(self, rule: BlockRule) -> None:
        kind = rule.kind
        if kind is RuleKind.NUMBER:
            _drop(self.numbers, rule.value, rule)
        elif kind is RuleKind.PREFIX:
            _drop(self.prefixes, rule.value, rule)
            n = len(rule.value)
            left = self.prefix_lens[n] - 1
            if left:
                self.prefix_lens[n] = left
            else:
                del self.prefix_lens[n]
            self.lens_desc = tuple(sorted(self.prefix_lens, reverse=True))
        elif kind is RuleKind.CNAM:
            if is_wildcard(rule.value):
                ws = self.wild[(rule.allow, rule.dry_run)]
                ws.remove(rule)
                if not len(ws):
                    del self.wild[(rule.allow, rule.dry_run)]
            else:
                _drop(self.cnam_exact, rule.value, rule)
        elif kind is RuleKind.COUNTRY:
            _drop(self.countries, rule.value, rule)
        elif kind is RuleKind.INVALID:
            self.invalid.remove(rule)
        elif kind in CONTENT_KINDS:
            self.content.remove(rule)
        else:
            self.anonymous.remove(rule)
        self.size -= 1

    def candidates(self, facts: CallFacts, cnam: str, now: float) -> list[Iterable[BlockRule]]:
        """Rule lists that match, most specific first."""
        out: list[Iterable[BlockRule]] = []
        calling = facts.calling_number
        if calling:
            if self.numbers:
                hit = self.numbers.get(calling)
                if hit:
                    out.append(hit)
            if self.lens_desc:
                size = len(calling)
                prefixes = self.prefixes
                for n in self.lens_desc:
                    if n <= size:
                        hit = prefixes.get(calling[:n])
                        if hit:
                            out.append(hit)
        if cnam:
            if self.cnam_exact:
                hit = self.cnam_exact.get(cnam)
                if hit:
                    out.append(hit)
            for ws in self.wild.values():
                first = ws.first(cnam)
                if first is not None:
                    # An expired first match may hide a live one: fall back to the full list.
                    out.append(ws.all(cnam) if _expired(first, now) else (first,))
        if self.countries and facts.calling_country:
            hit = self.countries.get(facts.calling_country)
            if hit:
                out.append(hit)
        if self.invalid and not facts.calling_valid and not facts.anonymous:
            out.append(self.invalid)
        if self.anonymous and facts.anonymous:
            out.append(self.anonymous)
        return out


def _drop(table: dict[str, list[BlockRule]], key: str, rule: BlockRule) -> None:
    rules = table[key]
    rules.remove(rule)
    if not rules:
        del table[key]


class RuleIndex:
    """Every block/allow rule, static and runtime, with O(len(number)) lookups per contact."""

    def __init__(self, rules: Iterable[BlockRule] = ()) -> None:
        self._by_id: dict[str, BlockRule] = {}
        self._global = _Bucket()
        self._customers: dict[str, _Bucket] = {}
        self._numbers: dict[str, _Bucket] = {}
        self.version = 0
        self.expired_purged = 0
        for rule in rules:
            self.add(rule)

    def __len__(self) -> int:
        return len(self._by_id)

    def __contains__(self, rule_id: object) -> bool:
        return rule_id in self._by_id

    def __iter__(self) -> Iterator[BlockRule]:
        return iter(list(self._by_id.values()))

    def get(self, rule_id: str) -> BlockRule | None:
        return self._by_id.get(rule_id)

    def _bucket(self, rule: BlockRule, create: bool) -> _Bucket | None:
        if rule.scope is Scope.GLOBAL:
            return self._global
        table = self._customers if rule.scope is Scope.CUSTOMER else self._numbers
        bucket = table.get(rule.scope_value)
        if bucket is None and create:
            bucket = table[rule.scope_value] = _Bucket()
        return bucket

    def add(self, rule: BlockRule) -> BlockRule:
        """Insert or replace (same id) a rule; returns it normalised. Raises ValueError on bad values."""
        rule = normalise_rule(rule)
        if rule.id in self._by_id:
            self._remove(self._by_id[rule.id])
        self._insert(rule)
        self.version += 1
        return rule

    def _insert(self, rule: BlockRule) -> None:
        self._by_id[rule.id] = rule
        bucket = self._bucket(rule, create=True)
        assert bucket is not None
        bucket.add(rule)

    def _remove(self, rule: BlockRule) -> None:
        del self._by_id[rule.id]
        bucket = self._bucket(rule, create=False)
        assert bucket is not None
        bucket.remove(rule)
        if not bucket.size and rule.scope is not Scope.GLOBAL:
            table = self._customers if rule.scope is Scope.CUSTOMER else self._numbers
            del table[rule.scope_value]

    def remove(self, rule_id: str) -> BlockRule | None:
        """Remove a rule by id; returns it, or None when unknown."""
        rule = self._by_id.get(rule_id)
        if rule is None:
            return None
        self._remove(rule)
        self.version += 1
        return rule

    def replace_static(self, rules: Iterable[BlockRule]) -> int:
        """Swap the dialplan rules (on reload), keeping runtime entries; all-or-nothing on ValueError."""
        fresh = [normalise_rule(r) for r in rules]
        for old in [r for r in self._by_id.values() if is_static(r)]:
            self._remove(old)
        for rule in fresh:
            if rule.id in self._by_id:
                self._remove(self._by_id[rule.id])
            self._insert(rule)
        self.version += 1
        log.info("block_rules_replaced", static=len(fresh), total=len(self._by_id))
        return len(fresh)

    def purge_expired(self, now: float) -> list[BlockRule]:
        """Remove every rule whose expiry has passed (periodic sweep); returns what was removed."""
        gone = [r for r in self._by_id.values() if _expired(r, now)]
        for rule in gone:
            self._remove(rule)
        if gone:
            self.expired_purged += len(gone)
            self.version += 1
        return gone

    def considered(
        self, facts: CallFacts, now: float, cnam: str, customer: str | None = None
    ) -> list[tuple[str, BlockRule]]:
        """Every live rule that fits this contact, as (scope, rule) in the order `match` weighs them:
        called number, customer, global; in each, the most specific matcher first (sip-edge explain)."""
        customer = facts.customer or customer
        scopes = (
            ("number", self._numbers.get(facts.called_number)),
            ("customer", self._customers.get(customer) if customer else None),
            ("global", self._global),
        )
        out: list[tuple[str, BlockRule]] = []
        for name, bucket in scopes:
            if bucket is None or not bucket.size:
                continue
            for rules in bucket.candidates(facts, cnam, now):
                out += [(name, r) for r in rules if not _expired(r, now)]
        return out

    def match(
        self, facts: CallFacts, now: float, cnam: str | None = None, customer: str | None = None
    ) -> Match | None:
        """Which rule decides this contact.

        `cnam` may pass an already normalised caller name; `customer` stands in when the facts carry none.
        """
        if not self._by_id:
            return None
        if cnam is None:
            cnam = normalise_cnam(facts.cnam) if facts.cnam else ""
        customer = facts.customer or customer
        scopes = (
            self._numbers.get(facts.called_number) if self._numbers else None,
            self._customers.get(customer) if customer and self._customers else None,
            self._global,
        )
        enforced: BlockRule | None = None
        would: BlockRule | None = None
        expired: list[BlockRule] = []
        for bucket in scopes:
            if bucket is None or not bucket.size:
                continue
            e_allow = e_block = a_allow = a_block = None
            for rules in bucket.candidates(facts, cnam, now):
                for r in rules:
                    if r.expires_at is not None and r.expires_at <= now:
                        expired.append(r)
                        continue
                    if r.allow:
                        if a_allow is None:
                            a_allow = r
                        if e_allow is None and not r.dry_run:
                            e_allow = r
                    else:
                        if a_block is None:
                            a_block = r
                        if e_block is None and not r.dry_run:
                            e_block = r
            if would is None:
                would = a_allow or a_block
            enforced = e_allow or e_block
            if enforced is not None:
                break
        if expired:
            for rule in dict.fromkeys(expired):
                if rule.id in self._by_id and self._by_id[rule.id] is rule:
                    self._remove(rule)
                    self.expired_purged += 1
            self.version += 1
        if enforced is None and would is None:
            return None
        if would is None or would is enforced:
            return Match(enforced)
        return Match(enforced, would)
