"""Identity header value parsing (RFC 8224 §4.1)."""

from __future__ import annotations

import pytest

from edge.stir.failures import StirFailure
from edge.stir.identity import b64url_decode, parse_identity, split_identity_values


def test_identity_parse_full_form_params() -> None:
    h = parse_identity('aaa.bbb.ccc ; info=<https://x.example/c.pem;a=b> ;alg=ES256; ppt="shaken"')
    assert (h.header_b64, h.payload_b64, h.signature_b64) == ("aaa", "bbb", "ccc")
    assert (h.info, h.alg, h.ppt) == ("https://x.example/c.pem;a=b", "ES256", "shaken")
    assert h.signing_input == b"aaa.bbb"


@pytest.mark.parametrize(
    ("value", "code"),
    [
        ("..ccc;info=<https://x/c>", "compact_form"),
        ("aaa.bbb;info=<https://x/c>", "malformed"),
        ("aaa.bbb.ccc.ddd;info=<https://x/c>", "malformed"),
        ("aaa..ccc;info=<https://x/c>", "malformed"),
        ("aa+.bbb.ccc;info=<https://x/c>", "bad_base64"),
        ("aaa.bbb.ccc;alg=ES256", "missing_info"),
        ("aaa.bbb.ccc;info=https://x/c", "bad_info"),
        ("aaa.bbb.ccc;info=<not a uri>", "bad_info"),
        ("aaa.bbb.ccc;;info=<https://x/c>", "malformed"),
    ],
    ids=["compact", "two-segments", "four-segments", "empty-payload", "plus-sign", "no-info", "no-brackets",
         "spaces-in-uri", "empty-param"],
)
def test_identity_parse_refusals(value: str, code: str) -> None:
    with pytest.raises(StirFailure) as info:
        parse_identity(value)
    assert info.value.code == code


def test_identity_split_combined_header_keeps_uri_commas() -> None:
    assert split_identity_values("a.b.c;info=<https://x/c,1>, d.e.f;info=<https://y/c>") == [
        "a.b.c;info=<https://x/c,1>",
        "d.e.f;info=<https://y/c>",
    ]


def test_identity_b64url_refuses_padding() -> None:
    with pytest.raises(StirFailure):
        b64url_decode("YQ==")
    assert b64url_decode("YQ") == b"a"
