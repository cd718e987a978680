"""Torture messages written after RFC 4475 (tests/vectors/{valid,invalid}/*.sip).

Valid ones parse and the proxy forwards or answers them sensibly; invalid ones raise SipParseError
naming the fault (at parse time or when the envelope is read) and the proxy answers 400 with that
reason, 505 for an unknown version, or drops them when no Via can be read.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.sip.errors import SipParseError
from edge.sip.message import parse
from tests.call.proxy_harness import CARRIER, PBX_A, Harness

VECTORS = Path(__file__).resolve().parent.parent / "vectors"

#: name -> (statuses answered to the carrier, INVITEs forwarded to pbx-a)
VALID = {
    "wsinv": ([100], 1),
    "intmeth": ([405], 0),
    "escapes": ([100], 1),
    "token_display": ([100], 1),
    "long_values": ([100], 1),
    "semicolon_user": ([100], 1),
    "transports": ([100], 1),
    "multipart": ([100], 1),
    "reason_utf8": ([], 0),  # a response for no transaction of ours: dropped
    "no_reason": ([], 0),
    "compact_no_clen": ([100], 1),
    "ipv6": ([100], 1),
    "leading_crlf": ([100], 1),
    "mixed_case_names": ([100], 1),
    "quoted_commas": ([100], 1),
    "options_mf0": ([200], 0),
    "bare_lf": ([100], 1),
    "trailing_bytes": ([100], 1),
    "empty_values": ([100], 1),
}

#: name -> (stage the fault shows at, reason, status answered or None when dropped)
INVALID = {
    "binary_garbage": ("parse", "Bad request line", None),
    "bracketed_uri": ("parse", "Bad Request-URI", 400),
    "clen_exceeds_body": ("parse", "Content-Length exceeds body", 400),
    "clen_not_number": ("parse", "Bad Content-Length", 400),
    "cseq_method_mismatch": ("parse", "CSeq method mismatch", 400),
    "cseq_overflow": ("parse", "Bad CSeq", 400),
    "duplicate_single_headers": ("parse", "Duplicate header", 400),
    "empty_header_name": ("parse", "Bad header name", 400),
    "header_too_long": ("parse", "Header too long", 400),
    "header_without_colon": ("parse", "Bad header line", 400),
    "huge_status": ("parse", "Bad status code", None),
    "max_forwards_overflow": ("envelope", "Bad Max-Forwards", 400),
    "missing_headers": ("parse", "Missing Call-ID", None),
    "multiple_sp_request_line": ("parse", "Bad request line", 400),
    "negative_clen": ("parse", "Bad Content-Length", 400),
    "no_via": ("parse", "Missing Via", None),
    "space_in_uri": ("parse", "Bad request line", 400),
    "status_not_number": ("parse", "Bad status code", None),
    "too_many_vias": ("proxy", "Too many Via headers", 400),
    "unknown_method_mismatch": ("parse", "CSeq method mismatch", 400),
    "version_7": ("parse", "Version Not Supported", 505),
    "via_not_sip": ("envelope", "Bad Via protocol", None),
    "via_port_range": ("envelope", "Bad Via port", None),
    # RFC 4475 §3.1.2.6 and its neighbours: identity headers the proxy rewrites must be well-formed.
    "unterminated_quote_from": ("parse", "Bad From header", 400),
    "unterminated_quote_pai": ("parse", "Bad P-Asserted-Identity header", 400),
    "unclosed_angle_to": ("parse", "Bad To header", 400),
    "quote_in_from_uri": ("parse", "Bad From header", 400),
    "contact_only_commas": ("parse", "Bad Contact header", 400),  # found by `make fuzz`: IndexError in the proxy
    "from_only_commas": ("parse", "Bad From header", 400),  # found by `make fuzz`: IndexError reading the name
    "via_branch_not_utf8": ("parse", "Bad Via header", 400),  # found by `make fuzz`: UnicodeEncodeError hashing an ACK
    # Numbers in ASCII digits only: int() would read '²' as an error and '١' as 1.
    "clen_superscript": ("parse", "Bad Content-Length", 400),
    "cseq_arabic_indic_digits": ("parse", "Bad CSeq", 400),
}


def read(kind: str, name: str) -> bytes:
    return (VECTORS / kind / f"{name}.sip").read_bytes()


def envelope(data: bytes) -> None:
    """Read every envelope field the proxy relies on (lazy parts of the parser)."""
    m = parse(data)
    _ = (m.vias, m.branch, m.call_id, m.cseq_num, m.cseq_method, m.from_tag, m.to_tag, m.max_forwards, m.routes)


def test_vectors_every_file_has_an_expectation() -> None:
    assert {p.stem for p in (VECTORS / "valid").glob("*.sip")} == set(VALID)
    assert {p.stem for p in (VECTORS / "invalid").glob("*.sip")} == set(INVALID)


@pytest.mark.parametrize("name", sorted(VALID))
def test_vectors_valid_parse_and_round_trip(name: str) -> None:
    data = read("valid", name)
    envelope(data)
    m = parse(data)
    out = m.to_bytes()
    assert data.startswith(out)  # byte-exact; only bytes beyond Content-Length are cut
    assert len(data) - len(out) == (len(b"garbage after the declared body") if name == "trailing_bytes" else 0)


@pytest.mark.parametrize("name", sorted(VALID))
def test_vectors_valid_proxy_answers_sensibly(name: str) -> None:
    answered, forwarded = VALID[name]
    h = Harness()
    h.proxy.receive(read("valid", name), CARRIER, h.now)
    sent = list(h.proxy.outbox)
    to_carrier = [parse(d) for d, dest in sent if dest == CARRIER]
    to_pbx = [parse(d) for d, dest in sent if dest == PBX_A]
    assert [m.status for m in to_carrier] == answered
    assert len(to_pbx) == forwarded
    assert len(sent) == len(to_carrier) + len(to_pbx)
    assert h.proxy.stats.core_errors == 0 and h.proxy.stats.parse_errors == 0
    original = parse(read("valid", name))
    for fwd in to_pbx:
        assert fwd.top_via.host == "127.0.0.1"
        assert [v.branch for v in fwd.vias[1:]] == [v.branch for v in original.vias]
        assert fwd.body == original.body
        assert fwd.max_forwards == (original.max_forwards if original.max_forwards is not None else 70) - 1


@pytest.mark.parametrize("name", sorted(INVALID))
def test_vectors_invalid_fault_named(name: str) -> None:
    stage, reason, _ = INVALID[name]
    data = read("invalid", name)
    if stage == "proxy":
        envelope(data)
        return
    with pytest.raises(SipParseError) as ei:
        parse(data) if stage == "parse" else envelope(data)
    assert str(ei.value) == reason
    if stage == "envelope":
        parse(data)  # the cheap split succeeds; the fault shows when the envelope is read


@pytest.mark.parametrize("name", sorted(INVALID))
def test_vectors_invalid_proxy_answers_or_drops(name: str) -> None:
    _, reason, status = INVALID[name]
    h = Harness()
    h.proxy.receive(read("invalid", name), CARRIER, h.now)
    sent = h.proxy.outbox
    assert h.proxy.stats.core_errors == 0
    assert h.tables() == (0, 0, 0)
    if status is None:
        assert sent == []
        assert h.proxy.stats.dropped == 1
        return
    assert len(sent) == 1
    data, dest = sent[0]
    assert dest == CARRIER
    start = data.split(b"\r\n", 1)[0].decode()
    expected_reason = reason if status == 400 else "Version Not Supported"
    assert start == f"SIP/2.0 {status} {expected_reason}"
