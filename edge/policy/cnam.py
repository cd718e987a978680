"""Caller-name (CNAM) normalisation and matching for block rules.

The name is the From/P-Asserted-Identity display name (RFC 3261 §20.20, RFC 3325 §9.1) or a verified
STIR Rich Call Data name. Spammers vary spelling cosmetically ("SPAM LIKELY", "Spam-Likely",
fullwidth letters), so names and patterns are compared in one canonical form: Unicode NFKC,
case-folded, letters and digits only. Patterns may use '*' for any run of characters.

Wildcard matching is linear in the name's length: for '*'-only patterns the leftmost occurrence of
each middle segment is always a valid choice (it leaves the most room for the rest), so a greedy
`str.find` walk is exact and never backtracks. A caller controls the name and anyone with a flag
controls the pattern, so neither may buy super-linear work.
"""

from __future__ import annotations

import re
import unicodedata
from functools import lru_cache
from typing import Generic, TypeVar

MAX_NAME = 128  # rcd names can be long; bounding the input bounds matching cost per call
MAX_WILDCARDS = 8  # '*'s per normalised pattern; rules with more are refused where they are created

T = TypeVar("T")


@lru_cache(maxsize=65536)
def normalise_cnam(name: str) -> str:
    """Canonical form of a caller name: NFKC, case-folded, only letters and digits kept."""
    folded = unicodedata.normalize("NFKC", name[: MAX_NAME * 2]).casefold()
    return "".join(ch for ch in folded if ch.isalnum())[:MAX_NAME]


def normalise_pattern(pattern: str) -> str:
    """Canonical form of a pattern: each literal run normalised like a name, '*' runs collapsed."""
    parts = [normalise_cnam(seg) for seg in pattern.split("*")]
    out = "*".join(parts)
    while "**" in out:
        out = out.replace("**", "*")
    return out


def is_wildcard(pattern: str) -> bool:
    return "*" in pattern


def wildcard_count(pattern: str) -> int:
    """Number of '*' in a normalised pattern (runs are already collapsed)."""
    return pattern.count("*")


def pattern_regex(pattern: str) -> str:
    """Regex source (for fullmatch) of a normalised pattern that cannot backtrack across segments.

    Each middle segment sits in an atomic group searched lazily, so the regex commits to the
    leftmost occurrence exactly like `matches`; only the last segment's `.*` scans back, once.
    """
    segs = pattern.split("*")
    if len(segs) == 1:
        return re.escape(pattern)
    middle = "".join(f"(?>.*?{re.escape(seg)})" for seg in segs[1:-1] if seg)
    return f"{re.escape(segs[0])}{middle}.*{re.escape(segs[-1])}"


def matches(pattern: str, name: str) -> bool:
    """Match one normalised pattern against one normalised name (exact or wildcard), in linear time."""
    if not is_wildcard(pattern):
        return pattern == name
    segs = pattern.split("*")
    head, tail = segs[0], segs[-1]
    if len(name) < len(head) + len(tail) or not name.startswith(head) or not name.endswith(tail):
        return False
    pos, end = len(head), len(name) - len(tail)
    for seg in segs[1:-1]:
        at = name.find(seg, pos, end)
        if at < 0:
            return False
        pos = at + len(seg)
    return True


class WildcardSet(Generic[T]):
    """Many wildcard patterns matched with one compiled (non-backtracking) regex pass per leading character.

    Patterns are grouped by their first literal character ('' when they start with '*'), so a name
    is only tried against the group of its own first character plus the leading-'*' group. Each
    group compiles lazily into one alternation whose matching capture group identifies the item.
    """

    __slots__ = ("_groups", "_compiled", "_size")

    def __init__(self) -> None:
        self._groups: dict[str, list[tuple[str, T]]] = {}
        self._compiled: dict[str, tuple[re.Pattern[str], list[T]]] = {}
        self._size = 0

    def __len__(self) -> int:
        return self._size

    def add(self, pattern: str, item: T) -> None:
        head = "" if pattern.startswith("*") else pattern[0]
        self._groups.setdefault(head, []).append((pattern, item))
        self._compiled.pop(head, None)
        self._size += 1

    def remove(self, item: T) -> bool:
        for head, entries in self._groups.items():
            for i, (_, it) in enumerate(entries):
                if it is item:
                    del entries[i]
                    self._compiled.pop(head, None)
                    if not entries:
                        del self._groups[head]
                    self._size -= 1
                    return True
        return False

    def _group(self, head: str) -> tuple[re.Pattern[str], list[T]] | None:
        got = self._compiled.get(head)
        if got is None:
            entries = self._groups.get(head)
            if not entries:
                return None
            source = "|".join(f"({pattern_regex(p)})" for p, _ in entries)
            got = (re.compile(source, re.DOTALL), [it for _, it in entries])
            self._compiled[head] = got
        return got

    def first(self, name: str) -> T | None:
        """The earliest-added item whose pattern matches `name` (own head group before leading-'*')."""
        if not name or not self._size:
            return None
        for head in (name[0], ""):
            group = self._group(head)
            if group is None:
                continue
            m = group[0].fullmatch(name)
            if m is not None:
                return group[1][m.lastindex - 1]  # type: ignore[operator]
        return None

    def all(self, name: str) -> list[T]:
        """Every item whose pattern matches `name` (slow path, used for diagnostics and tests)."""
        out: list[T] = []
        for head in dict.fromkeys((name[:1], "")):
            for p, it in self._groups.get(head, ()):
                if matches(p, name):
                    out.append(it)
        return out
