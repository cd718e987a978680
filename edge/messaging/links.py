"""Link signals of a message body: how many URLs, which go through a URL shortener, which domains the
edge has not seen before.

URLs are found with one linear regex (scheme or `www.` followed by a host, or a bare host with a
known top-level domain and a path); hosts are lower-cased and stripped of `www.`. "Newly seen"
means a domain absent from the bounded memory of domains seen in earlier messages (oldest
forgotten first), first seen less than `new_domain_age` ago counts as new as well.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import msgspec

MAX_URLS = 50  # URLs examined per message

_URL = re.compile(
    r"(?:(?:https?://)|(?:www\.))([a-z0-9](?:[a-z0-9-]{0,62}\.)+[a-z]{2,24})"
    r"|\b([a-z0-9](?:[a-z0-9-]{0,62}\.)+(?:com|net|org|info|biz|io|co|ly|me|gl|gd|us|xyz|top|link|click|site|online|shop|app|cc|to|ru|cn)(?=/))",
    re.IGNORECASE,
)


class LinkFacts(msgspec.Struct, frozen=True):
    urls: int
    domains: tuple[str, ...]  # distinct, in order of appearance
    shorteners: tuple[str, ...]
    new_domains: tuple[str, ...]


def extract_domains(body: str) -> tuple[int, list[str]]:
    """(URL count, distinct domains in order) of a body (first MAX_URLS URLs)."""
    count = 0
    seen: dict[str, None] = {}
    for m in _URL.finditer(body):
        host = (m.group(1) or m.group(2) or "").lower().rstrip(".")
        if host.startswith("www."):
            host = host[4:]
        count += 1
        seen.setdefault(host, None)
        if count >= MAX_URLS:
            break
    return count, list(seen)


def _registered_part(host: str, known: frozenset[str]) -> str | None:
    """The listed domain `host` belongs to (itself or a parent), or None."""
    parts = host.split(".")
    for i in range(len(parts) - 1):
        cand = ".".join(parts[i:])
        if cand in known:
            return cand
    return None


class DomainMemory:
    """Domains seen in earlier messages and when first seen (bounded, least recently seen forgotten)."""

    def __init__(self, cap: int = 100_000) -> None:
        self.cap = cap
        self._first: OrderedDict[str, float] = OrderedDict()
        self.evictions = 0

    def observe(self, domain: str, now: float) -> float | None:
        """Record a sighting; returns when the domain was first seen before now (None: never)."""
        first = self._first.get(domain)
        if first is None:
            self._first[domain] = now
            if len(self._first) > self.cap:
                self._first.popitem(last=False)
                self.evictions += 1
        else:
            self._first.move_to_end(domain)
        return first

    def __len__(self) -> int:
        return len(self._first)


class LinkInspector:
    def __init__(self, shorteners: list[str], trusted: list[str], new_domain_age: float, memory: DomainMemory) -> None:
        self.shorteners = frozenset(d.lower() for d in shorteners)
        self.trusted = frozenset(d.lower() for d in trusted)
        self.new_domain_age = new_domain_age
        self.memory = memory

    def inspect(self, body: str, now: float) -> LinkFacts:
        count, domains = extract_domains(body)
        short: list[str] = []
        new: list[str] = []
        for d in domains:
            if _registered_part(d, self.shorteners):
                short.append(d)
            first = self.memory.observe(d, now)
            if _registered_part(d, self.trusted) or _registered_part(d, self.shorteners):
                continue
            if first is None or now - first < self.new_domain_age:
                new.append(d)
        return LinkFacts(count, tuple(domains), tuple(short), tuple(new))
