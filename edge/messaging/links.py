"""Link signals of a message body: how many URLs, which go through a URL shortener, which domains the
edge has not seen before.

URLs are found in one linear pass: the text is split on spaces and delimiters, and a token is a
URL when it has a scheme, starts with `www.`, or is a bare host with a common top-level domain and a
path (no regex that could backtrack on a crafted body); hosts are lower-cased and stripped of `www.`. "Newly seen"
means a domain absent from the bounded memory of domains seen in earlier messages (oldest
forgotten first), first seen less than `new_domain_age` ago counts as new as well.
"""

from __future__ import annotations

import re
from collections import OrderedDict

import msgspec

MAX_URLS = 50  # URLs examined per message

_BARE_TLDS = frozenset({"com", "net", "org", "info", "biz", "io", "co", "ly", "me", "gl", "gd", "us", "xyz", "top",
                        "link", "click", "site", "online", "shop", "app", "cc", "to", "ru", "cn"})
_SPLIT = re.compile(r"[\s<>\"'()\[\]{},;|]+")  # one character class: linear, no backtracking
_HOST_END = re.compile(r"[/?#:]")
_LABEL_OK = frozenset("abcdefghijklmnopqrstuvwxyz0123456789-")
MAX_TOKEN = 2048


def _host(token: str) -> str | None:
    """The host a URL-looking token points at, or None. Linear in the token."""
    t = token.lower()
    scheme = t.startswith("http://") or t.startswith("https://")
    if scheme:
        t = t.split("://", 1)[1]
    m = _HOST_END.search(t)
    host = (t[: m.start()] if m else t).rstrip(".")
    has_path = m is not None and t[m.start()] == "/"
    if "@" in host:
        host = host.rsplit("@", 1)[1]
    labels = host.split(".")
    if len(labels) < 2 or any(not lb or len(lb) > 63 or not set(lb) <= _LABEL_OK for lb in labels):
        return None
    tld = labels[-1]
    if not tld.isalpha() or not 2 <= len(tld) <= 24:
        return None
    if scheme or host.startswith("www.") or (has_path and tld in _BARE_TLDS):
        return host
    return None


class LinkFacts(msgspec.Struct, frozen=True):
    urls: int
    domains: tuple[str, ...]  # distinct, in order of appearance
    shorteners: tuple[str, ...]
    new_domains: tuple[str, ...]


def extract_domains(body: str) -> tuple[int, list[str]]:
    """(URL count, distinct domains in order) of a body (first MAX_URLS URLs)."""
    count = 0
    seen: dict[str, None] = {}
    for token in _SPLIT.split(body):
        if len(token) < 4 or len(token) > MAX_TOKEN or "." not in token:
            continue
        host = _host(token.rstrip(".!?"))
        if host is None:
            continue
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
