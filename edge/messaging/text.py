"""Message text in one canonical form, and `[[block]] text = "*gift card*"` rules matched in linear time.

Spammers vary spacing and case ("GIFT  card", "g i f t card", fullwidth letters), so texts and
patterns are compared after Unicode NFKC, case folding and removal of every whitespace and
zero-width character. A pattern is literal runs joined by '*'; a leading or trailing literal run
anchors to the start or end of the text. All literal runs of all rules go into one Aho-Corasick
automaton (pyahocorasick), so one pass over the text finds every run; each rule then advances
greedily through its runs in order. Cost: the text length plus the occurrences found, with no
backtracking whatever a sender writes.
"""

from __future__ import annotations

import unicodedata

import ahocorasick
import msgspec

MAX_TEXT = 4096  # characters of a body considered; the rest cannot change a verdict's cost
MAX_PATTERN = 256

_DROP = {ord(c): None for c in " \t\r\n\v\f\u00a0\u1680\u2000\u2001\u2002\u2003\u2004\u2005\u2006\u2007\u2008\u2009\u200a\u200b\u200c\u200d\u2028\u2029\u202f\u205f\u2060\u3000\ufeff"}


def message_text(body: bytes, content_type: str) -> str:
    """The text a person reads in a MESSAGE body: text/* in its charset (UTF-8 by default), the
    content of a message/cpim wrapper (RFC 3862: headers, blank line, MIME headers, blank line, text)."""
    ctype = content_type.split(";", 1)[0].strip().lower()
    data = body[: MAX_TEXT * 4]
    if ctype == "message/cpim":
        parts = data.replace(b"\r\n", b"\n").split(b"\n\n", 2)
        data = parts[2] if len(parts) == 3 else data
    charset = "utf-8"
    for param in content_type.split(";")[1:]:
        k, _, v = param.partition("=")
        if k.strip().lower() == "charset" and v.strip().strip('"'):
            charset = v.strip().strip('"')
    try:
        return data.decode(charset, "replace")
    except LookupError:
        return data.decode("utf-8", "replace")


def normalise_text(text: str) -> str:
    """NFKC, case-folded, without whitespace or zero-width characters."""
    return unicodedata.normalize("NFKC", text[:MAX_TEXT]).casefold().translate(_DROP)


def normalise_text_pattern(pattern: str) -> str:
    """A pattern's canonical form: each literal run normalised like a text, '*' runs collapsed."""
    out = "*".join(normalise_text(seg) for seg in pattern.split("*"))
    while "**" in out:
        out = out.replace("**", "*")
    return out


def pattern_problem(pattern: str) -> str | None:
    """Why a text pattern cannot be used, or None."""
    if len(pattern) > MAX_PATTERN:
        return f"text pattern longer than {MAX_PATTERN} characters"
    if not normalise_text_pattern(pattern).replace("*", ""):
        return f"text pattern {pattern!r} matches every message"
    return None


class TextRule(msgspec.Struct, frozen=True):
    """One compiled text rule; `ref` is whatever the owner wants back on a match (rule id, ...)."""

    id: str
    pattern: str  # normalised
    ref: object = None


class _Compiled:
    __slots__ = ("rule", "runs", "anchored_start", "anchored_end")

    def __init__(self, rule: TextRule) -> None:
        p = rule.pattern
        self.rule = rule
        self.anchored_start = not p.startswith("*")
        self.anchored_end = not p.endswith("*")
        self.runs = [r for r in p.split("*") if r]


class TextRuleSet:
    """Many text rules, one automaton; `match(text)` returns the rules that match, in insertion order."""

    def __init__(self, rules: list[TextRule]) -> None:
        self._rules = [_Compiled(r) for r in rules]
        self._auto = ahocorasick.Automaton()
        self._waiting: dict[str, list[tuple[int, int]]] = {}  # run -> (rule index, run index)
        for i, c in enumerate(self._rules):
            for j, run in enumerate(c.runs):
                self._waiting.setdefault(run, []).append((i, j))
        for run in self._waiting:
            self._auto.add_word(run, run)
        if self._waiting:
            self._auto.make_automaton()

    def __len__(self) -> int:
        return len(self._rules)

    def match(self, text: str, normalised: bool = False) -> list[TextRule]:
        if not self._rules:
            return []
        t = text if normalised else normalise_text(text)
        n = len(t)
        progress = [0] * len(self._rules)  # next run index per rule
        last_end = [-1] * len(self._rules)  # end index of the run matched last
        for end, run in self._auto.iter(t):
            start = end - len(run) + 1
            for i, j in self._waiting[run]:
                if progress[i] != j or start <= last_end[i]:
                    continue
                c = self._rules[i]
                if j == 0 and c.anchored_start and start != 0:
                    continue
                if j == len(c.runs) - 1 and c.anchored_end and end != n - 1:
                    continue
                progress[i] = j + 1
                last_end[i] = end
        return [c.rule for i, c in enumerate(self._rules) if c.runs and progress[i] == len(c.runs)]
