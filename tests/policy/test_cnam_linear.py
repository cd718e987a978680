"""Caller-name wildcards cost linear time (issue 13 item 1): the caller picks the name, a flag picks the pattern."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.policy.blocking import RuleValueError, normalise_rule
from edge.policy.cnam import MAX_WILDCARDS, WildcardSet, matches, normalise_pattern
from edge.policy.rules import BlockRule, RuleKind

# Seven segments: the former backtracking `.*a.*a...` fullmatch took minutes per name of 128 'a's.
_RULE = "*a*a*a*a*a*a*a*b"
_PROBE = f"""
import time
from edge.policy.cnam import WildcardSet, matches
name = "a" * 128
ws = WildcardSet()
ws.add({_RULE!r}, "rule")
t = time.perf_counter()
for _ in range(200):
    assert not matches({_RULE!r}, name)
    assert ws.first(name) is None
print(time.perf_counter() - t)
"""


def test_pathological_pattern_against_pathological_name_finishes() -> None:
    """400 matches of the worst pattern the cap allows against the longest name, in a child with a deadline.

    The deadline only separates 'linear' (milliseconds) from 'exponential' (minutes per match); the child
    process keeps a regression from hanging the suite.
    """
    try:
        out = subprocess.run([sys.executable, "-c", _PROBE], capture_output=True, text=True, timeout=60, check=True)
    except subprocess.TimeoutExpired:
        pytest.fail("wildcard matching backtracks: 400 matches did not finish in 60 s")
    assert float(out.stdout) < 60


def _fnmatch_regex(pattern: str) -> str:
    return ".*".join(re.escape(seg) for seg in pattern.split("*"))


_ALPHA = st.text(alphabet="ab", max_size=10)
_PATTERN = st.lists(st.text(alphabet="ab", max_size=3), min_size=1, max_size=5).map("*".join)


@settings(max_examples=400, deadline=None)
@given(pattern=_PATTERN, name=_ALPHA)
def test_greedy_match_agrees_with_backtracking_semantics(pattern: str, name: str) -> None:
    pattern = normalise_pattern(pattern)
    expected = re.fullmatch(_fnmatch_regex(pattern), name) is not None
    assert matches(pattern, name) is expected
    ws: WildcardSet[str] = WildcardSet()
    if "*" in pattern and name:
        ws.add(pattern, "it")
        assert (ws.first(name) == "it") is expected


@settings(max_examples=200, deadline=None)
@given(patterns=st.lists(_PATTERN, min_size=1, max_size=6), name=_ALPHA.filter(bool))
def test_wildcard_set_first_is_earliest_matching_pattern(patterns: list[str], name: str) -> None:
    ws: WildcardSet[int] = WildcardSet()
    wild = [(i, p) for i, p in enumerate(normalise_pattern(p) for p in patterns) if "*" in p]
    for i, p in wild:
        ws.add(p, i)
    hits = [i for i, p in wild if matches(p, name)]
    own = [i for i, p in wild if matches(p, name) and not p.startswith("*")]
    star = [i for i, p in wild if matches(p, name) and p.startswith("*")]
    assert ws.first(name) == (own or star or [None])[0]
    assert sorted(ws.all(name)) == sorted(hits)


def test_rule_with_too_many_wildcards_is_refused() -> None:
    ok = "*".join("ab"[i % 2] for i in range(MAX_WILDCARDS + 1))  # exactly MAX_WILDCARDS stars
    assert normalise_rule(BlockRule(id="ok", kind=RuleKind.CNAM, value=ok)).value == ok
    with pytest.raises(RuleValueError, match=f"more than {MAX_WILDCARDS} '\\*' wildcards"):
        normalise_rule(BlockRule(id="x", kind=RuleKind.CNAM, value="*a" * MAX_WILDCARDS + "*b"))
