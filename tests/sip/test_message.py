"""Lean parser (edge.sip.message): round trips, compact forms, whitespace, list values, errors, edits."""

from __future__ import annotations

import pytest

from edge.sip.errors import SipParseError
from edge.sip.message import SipMessage, Via, param, parse, split_list, uri_of
from tests.sip.samples import SDP, invite, msg

BASE_HEADERS = (
    "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa1;rport",
    "From: <sip:alice@example.com>;tag=f1",
    "To: <sip:bob@example.net>",
    "Call-ID: abc@192.0.2.1",
    "CSeq: 7 INVITE",
    "Max-Forwards: 70",
)


def req(*headers: str, start: str = "INVITE sip:bob@example.net SIP/2.0", body: str = "", clen: bool = True) -> bytes:
    return msg(start, *headers, body=body, clen=clen)


# -- byte-exact round trips ---------------------------------------------------------------------

ROUND_TRIPS = {
    "invite_with_sdp": invite(body=SDP, extra=("Content-Type: application/sdp",)),
    "response_180": msg(
        "SIP/2.0 180 Ringing",
        "Via: SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKa1;received=198.51.100.7;rport=5062",
        "From: <sip:alice@example.com>;tag=f1",
        "To: <sip:bob@example.net>;tag=t9",
        "Call-ID: abc@192.0.2.1",
        "CSeq: 7 INVITE",
    ),
    "compact_forms": msg(
        "OPTIONS sip:bob@example.net SIP/2.0",
        "v: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKc",
        "f: <sip:a@example.com>;tag=1",
        "t: sip:bob@example.net",
        "i: compact@x",
        "CSeq: 1 OPTIONS",
        "k: timer",
        clen=False,
    ),
    "folded_and_tabs": (
        b"INVITE sip:bob@example.net SIP/2.0\r\n"
        b"Via:\tSIP/2.0/UDP 192.0.2.1;branch=z9hG4bKf\r\n"
        b"From  :  <sip:a@example.com>\r\n ;tag=1\r\n"
        b"To: <sip:bob@example.net>\r\n"
        b"Subject: first\r\n\tsecond\r\n"
        b"Call-ID: fold@x\r\nCSeq: 1 INVITE\r\nContent-Length: 0\r\n\r\n"
    ),
    "bare_lf": (
        b"BYE sip:bob@example.net SIP/2.0\nVia: SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKl\n"
        b"From: <sip:a@x>;tag=1\nTo: <sip:b@y>;tag=2\nCall-ID: lf\nCSeq: 2 BYE\nContent-Length: 0\n\n"
    ),
    "leading_crlfs": b"\r\n\r\n" + invite(),
    "non_utf8_header": invite(extra=("X-Raw: caf\xe9",)).replace(b"caf\xc3\xa9", b"caf\xe9"),
}


@pytest.mark.parametrize("data", ROUND_TRIPS.values(), ids=ROUND_TRIPS.keys())
def test_parse_round_trip_byte_exact(data: bytes) -> None:
    m = parse(data)
    assert m.to_bytes() == data
    assert m.copy().to_bytes() == data


def test_parse_round_trip_after_edit_keeps_untouched_lines() -> None:
    data = ROUND_TRIPS["folded_and_tabs"]
    m = parse(data)
    m.set("max-forwards", "69")
    out = m.to_bytes()
    assert b"From  :  <sip:a@example.com>\r\n ;tag=1\r\n" in out
    assert b"Via:\tSIP/2.0/UDP 192.0.2.1;branch=z9hG4bKf\r\n" in out
    assert out.endswith(b"Content-Length: 0\r\nMax-Forwards: 69\r\n\r\n")
    assert parse(out).max_forwards == 69


# -- compact forms ------------------------------------------------------------------------------

COMPACT = [
    ("i", "call-id", "cid@x"),
    ("m", "contact", "<sip:a@192.0.2.1>"),
    ("f", "from", "<sip:a@x>;tag=9"),
    ("t", "to", "<sip:b@y>"),
    ("v", "via", "SIP/2.0/UDP 192.0.2.9;branch=z9hG4bKv"),
    ("l", "content-length", "0"),
    ("c", "content-type", "application/sdp"),
    ("k", "supported", "100rel"),
    ("s", "subject", "hello"),
    ("y", "identity", "eyJ.a.b;info=<https://x/c.pem>"),
    ("e", "content-encoding", "gzip"),
    ("o", "event", "refer"),
    ("r", "refer-to", "<sip:c@z>"),
    ("b", "referred-by", "<sip:d@z>"),
    ("x", "session-expires", "1800"),
    ("u", "allow-events", "talk"),
    ("a", "accept-contact", "*;audio"),
]


@pytest.mark.parametrize(("short", "lname", "value"), COMPACT, ids=[c[0] for c in COMPACT])
def test_parse_compact_form_maps_to_full_name(short: str, lname: str, value: str) -> None:
    headers = [h for h in BASE_HEADERS if not h.lower().startswith(lname + ":")]
    m = parse(req(*headers, f"{short}: {value}", clen=lname != "content-length"))
    assert m.get(lname) == value


def test_parse_compact_mandatory_headers_are_enough() -> None:
    m = parse(ROUND_TRIPS["compact_forms"])
    assert m.call_id == "compact@x"
    assert m.top_via.transport == "TCP"
    assert m.from_tag == "1"
    assert m.to_tag == ""


# -- whitespace -----------------------------------------------------------------------------

def test_parse_folded_header_joined_with_single_space() -> None:
    m = parse(ROUND_TRIPS["folded_and_tabs"])
    assert m.get("from") == "<sip:a@example.com> ;tag=1"
    assert m.from_tag == "1"
    assert m.get("subject") == "first second"


WHITESPACE_VIAS = [
    ("tab_after_protocol", "SIP/2.0/UDP\t192.0.2.1:5060;branch=z9hG4bKw", "UDP", "192.0.2.1", 5060),
    ("spaces_around_slashes", "SIP / 2.0 / TCP 192.0.2.1;branch=z9hG4bKw", "TCP", "192.0.2.1", 0),
    ("spaces_around_semicolons", "SIP/2.0/UDP 192.0.2.1:5062 ; branch = z9hG4bKw ; rport", "UDP", "192.0.2.1", 5062),
    ("lowercase_transport", "SIP/2.0/udp host.example", "UDP", "host.example", 0),
    ("unknown_transport", "SIP/2.0/SCTP-X 192.0.2.1;branch=z9hG4bKw", "SCTP-X", "192.0.2.1", 0),
]


@pytest.mark.parametrize(("raw", "transport", "host", "port"), [w[1:] for w in WHITESPACE_VIAS], ids=[w[0] for w in WHITESPACE_VIAS])
def test_via_odd_whitespace(raw: str, transport: str, host: str, port: int) -> None:
    v = Via(raw)
    assert (v.transport, v.host, v.port) == (transport, host, port)


def test_parse_space_before_colon_and_mixed_case_names() -> None:
    m = parse(req("VIA   : SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKx", "fRoM: <sip:a@x>;tag=3", "To:<sip:b@y>",
                  "call-id :  spaced  ", "cseq: 7 INVITE"))
    assert m.branch == "z9hG4bKx"
    assert m.call_id == "spaced"
    assert m.from_tag == "3"
    assert m.cseq_num == 7


# -- multiple values --------------------------------------------------------------------------

def test_parse_vias_in_one_line_and_across_lines_keep_order() -> None:
    m = parse(req(
        "Via: SIP/2.0/UDP a.example;branch=z9hG4bK1, SIP/2.0/TCP b.example:5070;branch=z9hG4bK2",
        "Via: SIP/2.0/UDP [2001:db8::1]:5062;branch=z9hG4bK3",
        *BASE_HEADERS[1:],
    ))
    assert [(v.host, v.port, v.branch) for v in m.vias] == [
        ("a.example", 0, "z9hG4bK1"),
        ("b.example", 5070, "z9hG4bK2"),
        ("[2001:db8::1]", 5062, "z9hG4bK3"),
    ]
    assert m.branch == "z9hG4bK1"


def test_parse_route_values_with_commas_inside_brackets_and_quotes() -> None:
    m = parse(req(
        *BASE_HEADERS,
        'Route: "Proxy, One" <sip:p1.example;lr>, <sip:p2.example;lr;x="a,b">',
        "Route: <sip:p3.example;lr?h=a,b>",
        "Record-Route: <sip:r1;lr>,<sip:r2;lr>",
    ))
    assert m.routes == ['"Proxy, One" <sip:p1.example;lr>', '<sip:p2.example;lr;x="a,b">', "<sip:p3.example;lr?h=a,b>"]
    assert m.get_all("record-route") == ["<sip:r1;lr>", "<sip:r2;lr>"]


def test_get_all_does_not_split_single_value_headers() -> None:
    m = parse(req(*BASE_HEADERS, "Subject: one, two", "Date: Sat, 13 Nov 2010 23:29:00 GMT"))
    assert m.get_all("subject") == ["one, two"]
    assert m.get_all("date") == ["Sat, 13 Nov 2010 23:29:00 GMT"]


SPLITS = [
    ("plain", "a, b ,c", ["a", "b", "c"]),
    ("quoted_comma", '"x, y" <sip:a>, <sip:b>', ['"x, y" <sip:a>', "<sip:b>"]),
    ("escaped_quote", r'"x \", y" <sip:a>, <sip:b>', [r'"x \", y" <sip:a>', "<sip:b>"]),
    ("angle_comma", "<sip:a;p=1,2>, <sip:b>", ["<sip:a;p=1,2>", "<sip:b>"]),
    ("empty_items", " , a,, ", ["a"]),
    ("no_comma", "  single  ", ["single"]),
]


@pytest.mark.parametrize(("value", "expected"), [s[1:] for s in SPLITS], ids=[s[0] for s in SPLITS])
def test_split_list(value: str, expected: list[str]) -> None:
    assert split_list(value) == expected


# -- header value edge cases -------------------------------------------------------------------

PARAMS = [
    ("tag_after_bracket", "<sip:a@x;tag=inuri>;tag=real", "tag", "real"),
    ("tag_only_in_uri", "<sip:a@x;tag=inuri>", "tag", None),
    ("quoted_value", '<sip:a@x>;tag="quo"', "tag", "quo"),
    ("case_insensitive_name", "<sip:a@x>;TAG=Up", "tag", "Up"),
    ("flag_param", "SIP/2.0/UDP h;rport;branch=z9hG4bK1", "rport", ""),
    ("spaces", "<sip:a@x> ; tag = s1 ", "tag", "s1"),
    ("display_name_with_gt", '"a>b" <sip:a@x>;tag=t', "tag", "t"),
    ("absent", "<sip:a@x>", "tag", None),
]


@pytest.mark.parametrize(("value", "name", "expected"), [p[1:] for p in PARAMS], ids=[p[0] for p in PARAMS])
def test_param(value: str, name: str, expected: str | None) -> None:
    assert param(value, name) == expected


URIS = [
    ("name_addr", '"Bob" <sip:bob@example.net;transport=tcp>;tag=1', "sip:bob@example.net;transport=tcp"),
    ("addr_spec", "sip:bob@example.net;tag=1", "sip:bob@example.net"),
    ("escaped_quote_display", r'"A \"B\" C" <sip:c@x>', "sip:c@x"),
    ("unterminated", "<sip:d@x", "sip:d@x"),
]


@pytest.mark.parametrize(("value", "expected"), [u[1:] for u in URIS], ids=[u[0] for u in URIS])
def test_uri_of(value: str, expected: str) -> None:
    assert uri_of(value) == expected


VIAS = [
    ("rport_flag", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bK1;rport", ("192.0.2.1", 5060)),
    ("rport_and_received", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bK1;rport=40000;received=198.51.100.2", ("198.51.100.2", 40000)),
    ("received_only", "SIP/2.0/UDP 10.0.0.1:5070;branch=z9hG4bK1;received=198.51.100.2", ("198.51.100.2", 5070)),
    ("default_port", "SIP/2.0/UDP host.example;branch=z9hG4bK1", ("host.example", 5060)),
    ("tls_default_port", "SIP/2.0/TLS host.example;branch=z9hG4bK1", ("host.example", 5061)),
    ("ipv6", "SIP/2.0/UDP [2001:db8::9]:5070;branch=z9hG4bK1", ("[2001:db8::9]", 5070)),
    ("ipv6_no_port", "SIP/2.0/UDP [2001:db8::9];branch=z9hG4bK1", ("[2001:db8::9]", 5060)),
    ("bad_rport_value", "SIP/2.0/UDP 10.0.0.1:5070;rport=abc", ("10.0.0.1", 5070)),
]


@pytest.mark.parametrize(("raw", "addr"), [v[1:] for v in VIAS], ids=[v[0] for v in VIAS])
def test_via_response_address(raw: str, addr: tuple[str, int]) -> None:
    assert Via(raw).response_address() == addr


BAD_VIAS = [
    ("no_sent_by", "SIP/2.0/UDP", "Bad Via header"),
    ("two_part_protocol", "SIP/2.0 192.0.2.1", "Bad Via protocol"),
    ("not_sip", "HTTP/1.1/TCP 192.0.2.1", "Bad Via protocol"),
    ("empty_host", "SIP/2.0/UDP :5060", "Bad Via sent-by"),
    ("port_not_number", "SIP/2.0/UDP host:abc", "Bad Via port"),
    ("port_too_big", "SIP/2.0/UDP host:70000", "Bad Via port"),
]


@pytest.mark.parametrize(("raw", "reason"), [v[1:] for v in BAD_VIAS], ids=[v[0] for v in BAD_VIAS])
def test_via_rejects(raw: str, reason: str) -> None:
    with pytest.raises(SipParseError) as ei:
        Via(raw)
    assert str(ei.value) == reason


def test_parse_display_name_with_escaped_quotes_keeps_tag() -> None:
    m = parse(req(*[h for h in BASE_HEADERS if not h.startswith("From")], r'From: "Al \"Boss\", Jr" <sip:a@x>;tag=esc'))
    assert m.from_tag == "esc"


# -- body and Content-Length ------------------------------------------------------------------

def test_parse_truncates_bytes_beyond_content_length() -> None:
    data = req(*BASE_HEADERS, body="abc")
    m = parse(data + b"garbage")
    assert m.body == b"abc"
    assert m.to_bytes() == data


def test_parse_truncation_after_leading_crlf_keeps_raw_exact() -> None:
    data = req(*BASE_HEADERS, body="abc")
    m = parse(b"\r\n" + data + b"zz")
    assert m.to_bytes() == b"\r\n" + data


def test_parse_without_content_length_takes_whole_datagram() -> None:
    m = parse(req(*BASE_HEADERS, body="v=0\r\n", clen=False))
    assert m.body == b"v=0\r\n"


def test_parse_without_blank_line_is_headers_only() -> None:
    data = req(*BASE_HEADERS, clen=False).rstrip(b"\r\n")
    m = parse(data)
    assert m.call_id == "abc@192.0.2.1"
    assert m.body == b""


ERRORS = [
    ("empty", b"", "Empty message"),
    ("only_crlf", b"\r\n\r\n", "Empty message"),
    ("body_shorter", req(*BASE_HEADERS, body="abc").replace(b"Content-Length: 3", b"Content-Length: 9"), "Content-Length exceeds body"),
    ("negative_clen", req(*BASE_HEADERS, "Content-Length: -1", clen=False), "Bad Content-Length"),
    ("alpha_clen", req(*BASE_HEADERS, "Content-Length: ten", clen=False), "Bad Content-Length"),
    ("missing_via", req(*BASE_HEADERS[1:]), "Missing Via"),
    ("missing_from", req(*[h for h in BASE_HEADERS if not h.startswith("From")]), "Missing From"),
    ("missing_to", req(*[h for h in BASE_HEADERS if not h.startswith("To")]), "Missing To"),
    ("missing_call_id", req(*[h for h in BASE_HEADERS if not h.startswith("Call-ID")]), "Missing Call-ID"),
    ("empty_call_id", req(*BASE_HEADERS[:3], "Call-ID:   ", *BASE_HEADERS[4:]), "Missing Call-ID"),
    ("missing_cseq", req(*[h for h in BASE_HEADERS if not h.startswith("CSeq")]), "Missing CSeq"),
    ("cseq_mismatch", req(*BASE_HEADERS, start="BYE sip:bob@example.net SIP/2.0"), "CSeq method mismatch"),
    ("cseq_not_number", req(*BASE_HEADERS[:4], "CSeq: x INVITE"), "Bad CSeq"),
    ("cseq_no_method", req(*BASE_HEADERS[:4], "CSeq: 7"), "Bad CSeq"),
    ("cseq_too_big", req(*BASE_HEADERS[:4], "CSeq: 4294967296 INVITE"), "Bad CSeq"),
    ("duplicate_call_id", req(*BASE_HEADERS, "Call-ID: again"), "Duplicate header"),
    ("duplicate_content_length", req(*BASE_HEADERS, "l: 0"), "Duplicate header"),
    ("duplicate_to", req(*BASE_HEADERS, "t: <sip:c@z>"), "Duplicate header"),
    ("status_not_number", msg("SIP/2.0 abc OK", *BASE_HEADERS), "Bad status code"),
    ("status_too_big", msg("SIP/2.0 4294967301 Big", *BASE_HEADERS), "Bad status code"),
    ("status_two_digits", msg("SIP/2.0 99 Low", *BASE_HEADERS), "Bad status code"),
    ("status_wrong_version", msg("SIP/1.0 200 OK", *BASE_HEADERS), "Bad status line"),
    ("status_no_code", msg("SIP/2.0", *BASE_HEADERS), "Bad status line"),
    ("request_two_parts", req(*BASE_HEADERS, start="INVITE sip:bob@example.net"), "Bad request line"),
    ("request_double_space", req(*BASE_HEADERS, start="INVITE  sip:bob@example.net SIP/2.0"), "Bad request line"),
    ("request_version", req(*BASE_HEADERS, start="INVITE sip:bob@example.net SIP/7.0"), "Version Not Supported"),
    ("request_not_sip", req(*BASE_HEADERS, start="INVITE sip:bob@example.net HTTP/1.1"), "Bad request line"),
    ("method_bad_char", req(*BASE_HEADERS, start="INV(TE sip:bob@example.net SIP/2.0"), "Bad method"),
    ("uri_without_scheme", req(*BASE_HEADERS, start="INVITE bob SIP/2.0"), "Bad Request-URI"),
    ("uri_in_brackets", req(*BASE_HEADERS, start="INVITE <sip:bob@example.net> SIP/2.0"), "Bad Request-URI"),
    ("header_without_colon", req(*BASE_HEADERS, "NoColonHere"), "Bad header line"),
    ("header_name_with_space", req(*BASE_HEADERS, "X Bad: 1"), "Bad header name"),
    ("empty_header_name", req(*BASE_HEADERS, ": value"), "Bad header name"),
    ("fold_before_any_header", b"INVITE sip:b@x SIP/2.0\r\n folded\r\n\r\n", "Bad header folding"),
]


@pytest.mark.parametrize(("data", "reason"), [e[1:] for e in ERRORS], ids=[e[0] for e in ERRORS])
def test_parse_error_text(data: bytes, reason: str) -> None:
    with pytest.raises(SipParseError) as ei:
        parse(data)
    assert str(ei.value) == reason


def test_parse_limits_header_count_and_length() -> None:
    many = req(*BASE_HEADERS, *[f"X-H{i}: {i}" for i in range(10)])
    assert parse(many, max_headers=20).get("x-h9") == "9"
    with pytest.raises(SipParseError, match="^Too many headers$"):
        parse(many, max_headers=10)
    with pytest.raises(SipParseError, match="^Header too long$"):
        parse(req(*BASE_HEADERS, "X-Long: " + "a" * 200), max_header_length=100)


LAZY_ERRORS = [
    ("max_forwards_alpha", "Max-Forwards: ten", "max_forwards", "Bad Max-Forwards"),
    ("max_forwards_too_big", "Max-Forwards: 300", "max_forwards", "Bad Max-Forwards"),
    ("max_forwards_negative", "Max-Forwards: -1", "max_forwards", "Bad Max-Forwards"),
]


@pytest.mark.parametrize(("header", "attr", "reason"), [e[1:] for e in LAZY_ERRORS], ids=[e[0] for e in LAZY_ERRORS])
def test_envelope_lazy_errors(header: str, attr: str, reason: str) -> None:
    m = parse(req(*BASE_HEADERS[:5], header))
    with pytest.raises(SipParseError) as ei:
        getattr(m, attr)
    assert str(ei.value) == reason


def test_parse_unusual_method_token_with_digits() -> None:
    method = "!interesting-Method0123456789_*+`.%indeed'~"
    m = parse(req(*BASE_HEADERS[:4], f"CSeq: 3 {method}", start=f"{method} sip:b@x SIP/2.0"))
    assert m.method == method
    assert m.cseq_method == method


def test_parse_response_envelope() -> None:
    m = parse(ROUND_TRIPS["response_180"])
    assert (m.status, m.reason, m.is_request) == (180, "Ringing", False)
    assert m.to_tag == "t9"
    assert m.top_via.response_address() == ("198.51.100.7", 5062)


def test_parse_response_empty_reason_phrase() -> None:
    m = parse(msg("SIP/2.0 100 ", *BASE_HEADERS))
    assert (m.status, m.reason) == (100, "")


# -- edits ------------------------------------------------------------------------------------

def test_prepend_via_goes_on_top_and_round_trips() -> None:
    m = parse(invite())
    m.prepend("via", "SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnew")
    out = parse(m.to_bytes())
    assert [v.branch for v in out.vias] == ["z9hG4bKnew", "z9hG4bKcarrier1"]
    assert out.to_bytes().split(b"\r\n")[1] == b"Via: SIP/2.0/UDP 10.0.0.1:5060;branch=z9hG4bKnew"


def test_prepend_record_route_without_any_appends() -> None:
    m = parse(invite())
    m.prepend("record-route", "<sip:edge;lr>")
    assert m.headers[-1][:3] == ["record-route", "Record-Route", "<sip:edge;lr>"]


def test_pop_first_value_from_multi_value_line() -> None:
    m = parse(req("Via: SIP/2.0/UDP a;branch=z9hG4bK1, SIP/2.0/UDP b;branch=z9hG4bK2", *BASE_HEADERS[1:]))
    assert m.pop_first_value("via") == "SIP/2.0/UDP a;branch=z9hG4bK1"
    assert [v.branch for v in m.vias] == ["z9hG4bK2"]
    assert m.pop_first_value("via") == "SIP/2.0/UDP b;branch=z9hG4bK2"
    assert m.vias == []
    assert m.pop_first_value("via") is None
    with pytest.raises(SipParseError, match="^Missing Via$"):
        m.top_via


def test_pop_first_value_removes_whole_single_line() -> None:
    m = parse(req(*BASE_HEADERS, "Route: <sip:r1;lr>", "Route: <sip:r2;lr>"))
    assert m.pop_first_value("route") == "<sip:r1;lr>"
    assert m.routes == ["<sip:r2;lr>"]
    assert m.count("route") == 1


def test_set_uri_rewrites_start_line_only() -> None:
    m = parse(invite())
    m.set_uri("sip:+12025550100@10.0.0.5:5070")
    out = m.to_bytes()
    assert out.startswith(b"INVITE sip:+12025550100@10.0.0.5:5070 SIP/2.0\r\n")
    assert parse(out).uri == "sip:+12025550100@10.0.0.5:5070"


def test_set_replaces_first_and_drops_duplicates_keeping_name() -> None:
    m = parse(req(*BASE_HEADERS, "x-dup: 1", "X-Other: o", "X-Dup: 2"))
    m.set("x-dup", "3")
    assert m.get_all("x-dup") == ["3"]
    assert b"x-dup: 3\r\n" in m.to_bytes()
    m.set("x-new-one", "n")
    assert b"X-New-One: n\r\n" in m.to_bytes()


def test_set_invalidates_envelope_cache() -> None:
    m = parse(invite())
    assert m.cseq_num == 1
    m.set("cseq", "5 INVITE")
    assert m.cseq_num == 5


def test_remove_drops_every_line_of_that_name() -> None:
    m = parse(req(*BASE_HEADERS, "Route: <sip:a;lr>", "route: <sip:b;lr>"))
    m.remove("route")
    assert m.routes == []
    assert b"oute" not in m.to_bytes()


@pytest.mark.parametrize(("body", "ctype"), [(b"", None), (SDP.encode(), "application/sdp"), (b"x" * 3000, "text/plain")],
                         ids=["empty", "sdp", "large"])
def test_set_body_rewrites_content_length(body: bytes, ctype: str | None) -> None:
    m = parse(invite(body="old body", extra=("Content-Type: text/old",)))
    m.set_body(body, ctype)
    out = parse(m.to_bytes())
    assert out.body == body
    assert out.get("content-length") == str(len(body))
    assert out.count("content-length") == 1
    assert out.get("content-type") == (ctype or "text/old")


def test_to_bytes_fixes_stale_content_length_after_body_change() -> None:
    m = parse(invite(body="abc"))
    m.body = b"abcdef"
    m.set("x-touch", "1")
    assert parse(m.to_bytes()).body == b"abcdef"


def test_to_bytes_adds_missing_content_length() -> None:
    m = parse(req(*BASE_HEADERS, clen=False))
    m.set("max-forwards", "1")
    assert parse(m.to_bytes()).get("content-length") == "0"


def test_built_request_and_response_parse_back() -> None:
    r = SipMessage.request("OPTIONS", "sip:x@y", [("Via", "SIP/2.0/UDP h;branch=z9hG4bKb"), ("From", "<sip:a@b>;tag=1"),
                                                   ("To", "<sip:x@y>"), ("Call-ID", "c"), ("CSeq", "1 OPTIONS")])
    p = parse(r.to_bytes())
    assert (p.method, p.uri, p.cseq_method) == ("OPTIONS", "sip:x@y", "OPTIONS")
    s = SipMessage.response(486, "Busy Here", [(n, v) for n, v in (("Via", "SIP/2.0/UDP h;branch=z9hG4bKb"),
                            ("From", "<sip:a@b>;tag=1"), ("To", "<sip:x@y>;tag=2"), ("Call-ID", "c"), ("CSeq", "1 INVITE"))])
    q = parse(s.to_bytes())
    assert (q.status, q.reason, q.to_tag) == (486, "Busy Here", "2")


def test_copy_is_independent() -> None:
    m = parse(invite())
    c = m.copy()
    c.set("max-forwards", "1")
    c.pop_first_value("via")
    assert m.max_forwards == 70
    assert m.branch == "z9hG4bKcarrier1"
    assert m.to_bytes() == invite()


def test_message_empty_via_list_is_a_parse_error_not_a_crash() -> None:
    """`Via: ,` splits to no value at all (found by the fuzzer): a clear parse error, never IndexError."""
    raw = (b"INVITE sip:a@b SIP/2.0\r\nVia: ,\r\nFrom: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\n"
           b"Call-ID: x\r\nCSeq: 1 INVITE\r\n\r\n")
    with pytest.raises(SipParseError, match="Missing Via"):
        parse(raw).top_via
