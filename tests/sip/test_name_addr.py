"""A quoted display name may hold '<', '>' and escaped quotes: the URI and the name are still found."""

from __future__ import annotations

import pytest

from edge.call.facts import display_name
from edge.sip.message import addr_start, uri_of

CASES = [
    ("plain", "<sip:+12025550100@x>;tag=1", "sip:+12025550100@x", ""),
    ("token_name", "Alice <sip:a@x>", "sip:a@x", "Alice"),
    ("quoted", '"Bob" <sip:b@x>;tag=2', "sip:b@x", "Bob"),
    ("lt_in_name", '"<script>alert(1)</script>" <sip:+14155550123@x>;tag=3', "sip:+14155550123@x",
     "<script>alert(1)</script>"),
    ("escaped_quote_and_lt", '"a \\"<b>\\" c" <sip:c@x>', "sip:c@x", 'a "<b>" c'),
    ("quote_in_uri_param", '<sip:d@x;p="v">', 'sip:d@x;p="v"', ""),
    ("addr_spec", "sip:e@x;tag=4", "sip:e@x", ""),
    ("unterminated_quote_read_leniently", '"<sip:f@x>', "sip:f@x", '"'),
]


@pytest.mark.parametrize("value,uri,name", [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_name_addr_quoted_display_name(value: str, uri: str, name: str) -> None:
    assert uri_of(value) == uri
    assert display_name(value) == name


def test_addr_start_is_linear_on_a_long_quoted_name() -> None:
    value = '"' + "\\<" * 50_000 + '" <sip:g@x>'
    assert value[addr_start(value)] == "<" and uri_of(value) == "sip:g@x"
