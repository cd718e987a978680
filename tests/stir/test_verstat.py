"""verstat rewriting on PAI/From values (tel-URI parameter: after a tel number, in a SIP URI's user part) and the
Reason header."""

from __future__ import annotations

import pytest

from edge.stir.result import ABSENT, StirResult, StirStatus
from edge.stir.verstat import (
    from_with_verstat,
    pai_from,
    pai_with_verstat,
    reason_header,
    reject_response,
    strip_verstat,
    with_verstat,
)

P = "TN-Validation-Passed"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<tel:+12025550123>", f"<tel:+12025550123;verstat={P}>"),
        ("tel:+12025550123", f"<tel:+12025550123;verstat={P}>"),
        ('"Alice" <sip:+12025550123@carrier.net;user=phone>',
         f'"Alice" <sip:+12025550123;verstat={P}@carrier.net;user=phone>'),
        ("<sip:+12025550123@c.net;verstat=TN-Validation-Passed;user=phone>",
         f"<sip:+12025550123;verstat={P}@c.net;user=phone>"),
        ('"A <b>; c" <tel:+12025550123;verstat=No-TN-Validation>', f'"A <b>; c" <tel:+12025550123;verstat={P}>'),
        ("sip:+12025550123@c.net;user=phone", f"<sip:+12025550123;verstat={P}@c.net;user=phone>"),
        ("<sip:+12025550123@c.net?X-h=1>", f"<sip:+12025550123;verstat={P}@c.net;user=phone?X-h=1>"),
        ("<sip:+12025550123;verstat=TN-Validation-Passed@c.net;user=phone>", f"<sip:+12025550123;verstat={P}@c.net;user=phone>"),
        ("<sips:+1-202-555-0123:secret@c.net:5061;user=phone>", f"<sips:+1-202-555-0123;verstat={P}:secret@c.net:5061;user=phone>"),
        ("<sip:anonymous@anonymous.invalid>", f"<sip:anonymous@anonymous.invalid;verstat={P}>"),
    ],
    ids=["tel-bracketed", "tel-bare", "sip-display-name", "inbound-verstat-replaced", "quoted-name-with-specials",
         "pai-addr-spec-uri-params", "uri-headers-user-phone-added", "inbound-user-part-verstat-replaced",
         "sips-password-port", "not-a-number-uri-param"],
)
def test_verstat_pai_value(value: str, expected: str) -> None:
    assert pai_with_verstat(value, P) == expected


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("<sip:+12025550123@c.net>;tag=abc", f"<sip:+12025550123;verstat={P}@c.net;user=phone>;tag=abc"),
        ("sip:+12025550123@c.net;tag=abc", f"<sip:+12025550123;verstat={P}@c.net;user=phone>;tag=abc"),
        ('"Bob" <tel:+12025550123>;tag=9;verstat=TN-Validation-Passed', f'"Bob" <tel:+12025550123;verstat={P}>;tag=9'),
        ("Bob <sip:+12025550123@c.net;verstat=TN-Validation-Passed>;tag=1", f"Bob <sip:+12025550123;verstat={P}@c.net;user=phone>;tag=1"),
    ],
    ids=["from-tag", "from-addr-spec-tag-is-header-param", "header-param-verstat-removed", "token-display-name"],
)
def test_verstat_from_value(value: str, expected: str) -> None:
    assert from_with_verstat(value, P) == expected


def test_verstat_pai_list_marks_each_number_identity() -> None:
    value = '"A" <sip:+12025550123@c.net;user=phone>, <tel:+12025550123;verstat=TN-Validation-Passed>'
    assert pai_with_verstat(value, "TN-Validation-Failed") == (
        '"A" <sip:+12025550123;verstat=TN-Validation-Failed@c.net;user=phone>, '
        "<tel:+12025550123;verstat=TN-Validation-Failed>"
    )


def test_verstat_strip_only() -> None:
    assert strip_verstat("<tel:+1202;verstat=TN-Validation-Passed>;tag=x") == "<tel:+1202>;tag=x"
    assert with_verstat("<tel:+1202>", None) == "<tel:+1202>"


@pytest.mark.parametrize(
    ("result", "expected"),
    [
        (StirResult(status=StirStatus.FAILED, code="bad_signature", sip_status=438), 'SIP;cause=438;text="Invalid Identity Header"'),
        (StirResult(status=StirStatus.FAILED, code="stale_date", sip_status=403), 'SIP;cause=403;text="Stale Date"'),
        (StirResult(status=StirStatus.FAILED, code="fetch_failed", sip_status=436), 'SIP;cause=436;text="Bad Identity Info"'),
        (StirResult(status=StirStatus.FAILED, code="untrusted_chain", sip_status=437), 'SIP;cause=437;text="Unsupported Credential"'),
        (StirResult(status=StirStatus.ABSENT, code="no_identity", sip_status=428), 'SIP;cause=428;text="Use Identity Header"'),
        (StirResult(status=StirStatus.PASSED, attestation="A"), ""),
        (ABSENT, ""),
    ],
    ids=["438", "403", "436", "437", "428", "passed", "absent-constant"],
)
def test_verstat_reason_header(result: StirResult, expected: str) -> None:
    assert reason_header(result) == expected


def test_verstat_strip_from_user_part() -> None:
    assert strip_verstat("<sip:+1202;verstat=TN-Validation-Passed@c.net;user=phone>;tag=x") == "<sip:+1202@c.net;user=phone>;tag=x"


# -- what a rejected call's final response says (RFC 8224 §6.2.2, §13.2) ------------------------------------


@pytest.mark.parametrize(
    ("result", "status", "phrase", "reason"),
    [
        (StirResult(status=StirStatus.FAILED, code="bad_signature", sip_status=438), 438,
         "Invalid Identity Header", 'SIP;cause=438;text="Invalid Identity Header"'),
        (StirResult(status=StirStatus.FAILED, code="cert_revoked", sip_status=437), 437,
         "Unsupported Credential", 'SIP;cause=437;text="Unsupported Credential"'),
        (StirResult(status=StirStatus.FAILED, code="fetch_failed", sip_status=436), 436,
         "Bad Identity Info", 'SIP;cause=436;text="Bad Identity Info"'),
        (StirResult(status=StirStatus.FAILED, code="stale_date", sip_status=403), 403,
         "Stale Date", 'SIP;cause=403;text="Stale Date"'),
        (StirResult(status=StirStatus.ABSENT, code="no_identity", sip_status=428), 428,
         "Use Identity Header", 'SIP;cause=428;text="Use Identity Header"'),
        (ABSENT, 428, "Use Identity Header", 'SIP;cause=428;text="Use Identity Header"'),
        (StirResult(status=StirStatus.PASSED, attestation="C"), 403,
         None, 'SIP;cause=403;text="attestation C below minimum A"'),
    ],
    ids=["438", "437", "436", "403-stale", "428", "428-absent-constant", "403-low-attestation"],
)
def test_verstat_reject_response(result: StirResult, status: int, phrase: str | None, reason: str) -> None:
    detail = "attestation C below minimum A" if result.status is StirStatus.PASSED else "detail"
    assert reject_response(result, status, detail) == (phrase, reason)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ('"Alice" <sip:+12025550123@c.net>;tag=1', f'"Alice" <sip:+12025550123;verstat={P}@c.net;user=phone>'),
        ("sip:+12025550123@c.net;tag=1", f"<sip:+12025550123;verstat={P}@c.net;user=phone>"),
        ("<tel:+12025550123;verstat=TN-Validation-Passed>;tag=1", f"<tel:+12025550123;verstat={P}>"),
    ],
    ids=["name-addr", "addr-spec-tag-dropped", "tel-inbound-verstat-replaced"],
)
def test_verstat_pai_from_caller_from(value: str, expected: str) -> None:
    assert pai_from(value, P) == expected
