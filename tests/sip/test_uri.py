"""SIP/tel URI helpers (edge.sip.uri): parse_uri fields and errors, uri_user on the hot path."""

from __future__ import annotations

import pytest

from edge.sip.uri import parse_uri, uri_user

PARSED = [
    ("sip_user_host_port", "sip:+12025550100@10.0.0.1:5070", ("sip", "+12025550100", "10.0.0.1", 5070, {})),
    ("params", "sip:pbx.example;transport=TCP;lr", ("sip", "", "pbx.example", 0, {"transport": "TCP", "lr": ""})),
    ("ipv6", "sip:alice@[2001:db8::1]:5062", ("sip", "alice", "2001:db8::1", 5062, {})),
    ("user_params_dropped", "sip:+12025550100;npdi;rn=+1202@h.example", ("sip", "+12025550100", "h.example", 0, {})),
    ("headers_dropped", "sip:a@h.example?subject=x", ("sip", "a", "h.example", 0, {})),
    ("sips", "sips:a@H.Example", ("sips", "a", "h.example", 0, {})),
    ("tel", "tel:+12025550100;phone-context=example.com", ("tel", "+12025550100", "", 0, {"phone-context": "example.com"})),
    ("angle_brackets", "<sip:b@h>", ("sip", "b", "h", 0, {})),
]


@pytest.mark.parametrize(("text", "fields"), [p[1:] for p in PARSED], ids=[p[0] for p in PARSED])
def test_parse_uri_fields(text: str, fields: tuple) -> None:
    u = parse_uri(text)
    assert (u.scheme, u.user, u.host, u.port, u.params) == fields


def test_parse_uri_transport_and_hostport() -> None:
    assert parse_uri("sips:h").transport == "tls"
    assert parse_uri("sip:h;transport=TCP").transport == "tcp"
    assert parse_uri("sip:h").transport == "udp"
    assert parse_uri("sip:[2001:db8::1]:5070").hostport() == "[2001:db8::1]:5070"
    assert parse_uri("sip:h.example").hostport() == "h.example"


BAD = [
    ("http", "http://x", "unsupported URI 'http://x': expected sip:, sips: or tel:"),
    ("no_host", "sip:user@", "invalid URI 'sip:user@': no host"),
    ("bad_port", "sip:h:abc", "invalid URI 'sip:h:abc': bad port"),
    ("port_range", "sip:h:70000", "invalid URI 'sip:h:70000': bad port"),
    ("ipv6_open", "sip:[2001:db8::1", "invalid URI 'sip:[2001:db8::1': unterminated IPv6 reference"),
]


@pytest.mark.parametrize(("text", "reason"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_parse_uri_errors(text: str, reason: str) -> None:
    with pytest.raises(ValueError) as ei:
        parse_uri(text)
    assert str(ei.value) == reason


USERS = [
    ("sip", "sip:+12025550100@127.0.0.1", "+12025550100"),
    ("user_params", "sip:+12025550100;npdi@h", "+12025550100"),
    ("tel", "tel:+12025550100;ext=1", "+12025550100"),
    ("no_user", "sip:127.0.0.1:5060", ""),
    ("not_a_uri", "garbage", ""),
    ("escaped_plus", "sip:%2B12025550100@127.0.0.1", "+12025550100"),
    ("escaped_digits", "sip:%2b1%32025550100@h", "+12025550100"),
    ("escaped_non_number_kept", "sip:user%40host@h", "user%40host"),
    ("at_in_password", "sip:alice:pw@h", "alice:pw"),
]


@pytest.mark.parametrize(("text", "user"), [u[1:] for u in USERS], ids=[u[0] for u in USERS])
def test_uri_user(text: str, user: str) -> None:
    assert uri_user(text) == user
