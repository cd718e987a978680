"""Numbers in ASCII digits only and well-formed identity headers (issue 13 items 5 and 6)."""

from __future__ import annotations

import pytest

from edge.sip.errors import FramingError, SipParseError
from edge.sip.framing import StreamFramer
from edge.sip.message import check_name_addr, parse
from tests.sip.samples import invite


def test_framer_refuses_a_five_thousand_digit_content_length_with_a_framing_error() -> None:
    data = invite().replace(b"Content-Length: 0", b"Content-Length: " + b"9" * 5000)
    with pytest.raises(FramingError, match="Message too large"):
        StreamFramer().feed(data)


@pytest.mark.parametrize("value", ["\u00b2", "\uff15", "\u0661"], ids=["superscript", "fullwidth", "arabic-indic"])
def test_framer_reads_only_ascii_content_length(value: str) -> None:
    data = invite().replace(b"Content-Length: 0", b"Content-Length: " + value.encode())
    with pytest.raises(FramingError, match="Missing Content-Length"):
        StreamFramer().feed(data)


@pytest.mark.parametrize(
    ("header", "value"),
    [("Max-Forwards", "\u0667\u0660"), ("Max-Forwards", "1_0"), ("Content-Length", " +0"), ("Content-Length", "9" * 4000)],
    ids=["arabic-indic-mf", "underscore-mf", "signed-clen", "huge-clen"],
)
def test_parser_refuses_numbers_int_would_accept_or_choke_on(header: str, value: str) -> None:
    base = invite()
    old = b"Max-Forwards: 70" if header == "Max-Forwards" else b"Content-Length: 0"
    data = base.replace(old, f"{header}: {value}".encode())
    with pytest.raises(SipParseError, match=f"Bad {header}"):
        m = parse(data)
        _ = m.max_forwards


@pytest.mark.parametrize(
    "value",
    [
        '"Alice \\"the\\" <boss>" <sip:+12025550111@carrier.example>;tag=1',
        "Bob <sip:+12025550111@carrier.example>;tag=1",
        "<sip:+12025550111@carrier.example;user=phone>;tag=1",
        "sip:+12025550111@carrier.example;tag=1",
        '<sip:a@b>;tag=1;note="x;y"',
    ],
)
def test_name_addr_well_formed(value: str) -> None:
    assert check_name_addr(value)


@pytest.mark.parametrize(
    "value",
    [
        '"Torture <sip:+13035550188@host>;tag=x',
        "<sip:a@b;tag=x",
        "sip:a@b>;tag=x",
        "<sip:a@b> <sip:c@d>",
        '<sip:a"b@c>',
        '"x" sip:a@b',
        'A "B" C <sip:a@b>',
    ],
    ids=["unterminated-quote", "unclosed-angle", "stray-close", "two-uris", "quote-in-uri", "quoted-addr-spec", "mid-quote"],
)
def test_name_addr_malformed(value: str) -> None:
    assert not check_name_addr(value)


@pytest.mark.parametrize(
    "raw",
    ["+\uff11\uff12\uff10\uff12\uff15\uff15\uff15\uff10\uff11\uff10\uff10", "+\u0661\u0662\u0660\u0662\u0665\u0665\u0665\u0660\u0661\u0660\u0660",
     "\uff11\uff12\uff10\uff12\uff15\uff15\uff15\uff10\uff11\uff10\uff10", "+1" + "2" * 5000],
    ids=["fullwidth-e164", "arabic-indic-e164", "fullwidth-national", "5000-digits"],
)
def test_parse_number_refuses_non_ascii_digits(raw: str) -> None:
    from edge.numbers import canonical_tn, parse_number

    assert parse_number(raw).e164 == ""
    assert parse_number("+12025550100").e164 == "+12025550100"
    assert canonical_tn("\uff11\uff12") == ""
