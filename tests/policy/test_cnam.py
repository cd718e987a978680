from __future__ import annotations

import pytest

from edge.policy.cnam import WildcardSet, matches, normalise_cnam, normalise_pattern


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("SPAM LIKELY", "spamlikely"),
        ("Spam-Likely", "spamlikely"),
        ("  spam.likely!! ", "spamlikely"),
        ("ＳＰＡＭ　Ｌｉｋｅｌｙ", "spamlikely"),  # fullwidth forms fold under NFKC
        ("STRAßE", "strasse"),  # casefold, not lower
        ("Dr. O'Neil (Office)", "droneiloffice"),
        ("", ""),
        ("x" * 500, "x" * 128),
    ],
    ids=["upper-space", "hyphen", "punctuation", "fullwidth", "eszett", "mixed", "empty", "bounded"],
)
def test_normalise_cnam_folds_cosmetic_variants(raw: str, expected: str) -> None:
    assert normalise_cnam(raw) == expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [("SPAM*", "spam*"), ("*Health  Ins*", "*healthins*"), ("A**B", "a*b"), ("Bob Smith", "bobsmith")],
    ids=["prefix", "contains", "collapse", "exact"],
)
def test_normalise_pattern_keeps_wildcards(pattern: str, expected: str) -> None:
    assert normalise_pattern(pattern) == expected


@pytest.mark.parametrize(
    ("pattern", "name", "hit"),
    [
        ("spam*", "spamlikely", True),
        ("spam*", "notspam", False),
        ("*likely", "spamlikely", True),
        ("*ins*", "healthinsurance", True),
        ("a*b*c", "axxbyyc", True),
        ("a*b*c", "axxbyy", False),
        ("bobsmith", "bobsmith", True),
        ("bobsmith", "bobsmithjr", False),
        ("a.b", "a.b", True),  # regex metacharacters in literals stay literal
        ("a.b", "axb", False),
    ],
)
def test_matches_exact_and_wildcard(pattern: str, name: str, hit: bool) -> None:
    assert matches(pattern, name) is hit


def test_wildcard_set_first_prefers_own_head_group_then_leading_star() -> None:
    ws: WildcardSet[str] = WildcardSet()
    ws.add("*offer", "star")
    ws.add("spam*", "spam")
    ws.add("sp*", "sp")
    assert ws.first("spamoffer") == "spam"
    assert ws.first("specialoffer") == "sp"
    assert ws.first("bigoffer") == "star"
    assert ws.first("nothing") is None
    assert sorted(ws.all("spamoffer")) == ["sp", "spam", "star"]


def test_wildcard_set_remove_recompiles() -> None:
    ws: WildcardSet[str] = WildcardSet()
    a, b = "rule-a", "rule-b"
    ws.add("spam*", a)
    ws.add("spa*", b)
    assert ws.first("spammer") is a
    assert ws.remove(a) is True
    assert ws.first("spammer") is b
    assert ws.remove(a) is False
    assert len(ws) == 1
