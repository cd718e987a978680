"""Content rules: `text`, `email` and `ip` block/allow entries (dialplan `[[block]]`/`[[allow]]`,
runtime rules from the admin API and flag-from-activity) matched against messages, chats and forms.

They share the one rule shape and index with call rules (edge.policy.blocking keeps them apart so a
call never matches them); this module compiles the content ones per scope into automatons, rebuilt
when the index's version changes. Precedence is the call rules': the narrowest scope holding an
enforced match decides (number, then customer, then global), an allow beats a block within it,
and dry-run rules are reported as `would`.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable

import msgspec

from edge.messaging.text import TextRule, TextRuleSet, normalise_text, normalise_text_pattern, pattern_problem
from edge.policy.rules import BlockRule

_MAX_EMAIL = 254


def content_value_problem(kind: str, value: str) -> str | None:
    """Why a text/email/ip rule value is unusable, or None."""
    if kind == "text":
        return pattern_problem(value)
    if kind == "email":
        v = value.strip()
        if not v or len(v) > _MAX_EMAIL:
            return f"invalid e-mail rule {value!r}: expected an address, '@domain' or a pattern like '*@example.com'"
        if not v.replace("*", "").strip("@."):
            return f"invalid e-mail rule {value!r}: matches every address"
        if "@" not in v:
            return f"invalid e-mail rule {value!r}: expected an address, '@domain' or a pattern with '@'"
        return None
    if kind == "ip":
        try:
            ipaddress.ip_network(value.strip(), strict=False)
        except ValueError:
            return f"invalid ip rule {value!r}: expected an address or CIDR such as '203.0.113.0/24'"
        return None
    return f"unknown content rule kind {kind!r}"


def normalise_content_value(kind: str, value: str) -> str:
    if kind == "text":
        return normalise_text_pattern(value)
    if kind == "email":
        v = value.strip().lower()
        return f"*{v}" if v.startswith("@") else v
    return str(ipaddress.ip_network(value.strip(), strict=False))


def normalise_email(email: str) -> str:
    return email.strip().lower()[:_MAX_EMAIL]


class ContentMatch(msgspec.Struct, frozen=True):
    """`rule` decided (None when only dry-run rules matched); `would` a dry-run rule that would have."""

    rule: BlockRule | None
    would: BlockRule | None = None
    field: str = ""  # 'text' | 'email' | 'ip'


class _Group:
    __slots__ = ("text", "email", "ips", "ip_lens")

    def __init__(self, rules: list[BlockRule]) -> None:
        self.text = TextRuleSet([TextRule(r.id, r.value, r) for r in rules if r.kind.value == "text"])
        self.email = TextRuleSet([TextRule(r.id, r.value, r) for r in rules if r.kind.value == "email"])
        self.ips: dict[str, list[BlockRule]] = {}
        for r in rules:
            if r.kind.value == "ip":
                self.ips.setdefault(r.value, []).append(r)
        self.ip_lens = sorted({(ipaddress.ip_network(k).version, ipaddress.ip_network(k).prefixlen) for k in self.ips},
                              key=lambda x: -x[1])

    def candidates(self, text: str, email: str, ip: str) -> list[tuple[str, BlockRule]]:
        out: list[tuple[str, BlockRule]] = []
        if email and len(self.email):
            out += [("email", t.ref) for t in self.email.match(email, normalised=True)]
        if ip and self.ips:
            try:
                addr = ipaddress.ip_address(ip)
            except ValueError:
                addr = None
            if addr is not None:
                for version, n in self.ip_lens:
                    if version != addr.version:
                        continue
                    hit = self.ips.get(str(ipaddress.ip_network(f"{addr}/{n}", strict=False)))
                    if hit:
                        out += [("ip", r) for r in hit]
        if text and len(self.text):
            out += [("text", t.ref) for t in self.text.match(text, normalised=True)]
        return out


class ContentRules:
    """Compiled view of the content rules of a rule index (anything iterable with a `version`)."""

    def __init__(self, index: Iterable[BlockRule]) -> None:
        self.index = index
        self._version = -1
        self._groups: dict[tuple[str, str], _Group] = {}

    def _refresh(self) -> None:
        version = getattr(self.index, "version", 0)
        if version == self._version:
            return
        by_scope: dict[tuple[str, str], list[BlockRule]] = {}
        for r in self.index:
            if r.kind.value in ("text", "email", "ip"):
                by_scope.setdefault((r.scope.value, r.scope_value), []).append(r)
        self._groups = {k: _Group(v) for k, v in by_scope.items()}
        self._version = version

    def __len__(self) -> int:
        self._refresh()
        return sum(len(g.text) + len(g.email) + sum(len(v) for v in g.ips.values()) for g in self._groups.values())

    def match(self, now: float, *, customer: str = "", called: str = "", text: str = "", email: str = "",
              ip: str = "") -> ContentMatch | None:
        self._refresh()
        if not self._groups:
            return None
        t = normalise_text(text) if text else ""
        e = normalise_email(email) if email else ""
        would: BlockRule | None = None
        would_field = ""
        for key in (("number", called), ("customer", customer), ("global", "")):
            if not key[1] and key[0] != "global":
                continue
            g = self._groups.get(key)
            if g is None:
                continue
            allow: tuple[str, BlockRule] | None = None
            block: tuple[str, BlockRule] | None = None
            for fld, r in g.candidates(t, e, ip):
                if r.expires_at is not None and r.expires_at <= now:
                    continue
                if r.dry_run:
                    if would is None:
                        would, would_field = r, fld
                    continue
                if r.allow:
                    allow = allow or (fld, r)
                else:
                    block = block or (fld, r)
            hit = allow or block
            if hit is not None:
                return ContentMatch(hit[1], would if would is not hit[1] else None, hit[0])
        if would is not None:
            return ContentMatch(None, would, would_field)
        return None

