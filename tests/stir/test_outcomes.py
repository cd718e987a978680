"""The outcome table: every failure code's response and verstat value, one assertion per row.

Written out here independently of edge.stir.outcomes, so a changed row in the code fails a test that says
which code now tells the PBX something else.
"""

from __future__ import annotations

import pytest

from edge.sip.response import REASONS
from edge.stir.outcomes import FAILURES, SIP_REASONS, verstat_for
from edge.stir.result import StirResult, StirStatus

F, N = "TN-Validation-Failed", "No-TN-Validation"

# code -> (RFC 8224 response, verstat). Failed: the PASSporT was checked and something in it is wrong.
# No-TN-Validation: no validation could be performed.
EXPECTED: dict[str, tuple[int, str]] = {
    "no_identity": (428, N),
    "malformed": (438, N),
    "compact_form": (438, N),
    "bad_base64": (438, N),
    "bad_json": (438, N),
    "missing_info": (436, N),
    "bad_info": (436, N),
    "missing_ppt": (438, N),
    "unsupported_alg": (437, N),
    "alg_mismatch": (438, N),
    "bad_typ": (438, N),
    "unsupported_ppt": (438, N),
    "ppt_mismatch": (438, N),
    "missing_x5u": (436, N),
    "x5u_mismatch": (436, N),
    "bad_attest": (438, N),
    "bad_dest": (438, N),
    "bad_iat": (438, N),
    "bad_orig": (438, N),
    "bad_origid": (438, N),
    "bad_div": (438, N),
    "stale_date": (403, N),
    "no_shaken_passport": (438, N),
    "fetch_failed": (436, N),
    "bad_certificate": (437, N),
    "orig_mismatch": (438, F),
    "dest_mismatch": (438, F),
    "div_mismatch": (438, F),
    "replay": (438, F),
    "bad_key": (437, F),
    "untrusted_chain": (437, F),
    "cert_expired": (437, F),
    "cert_revoked": (437, F),
    "missing_tnauthlist": (437, F),
    "tn_not_authorized": (437, F),
    "bad_signature": (438, F),
}


def test_outcomes_table_has_exactly_the_expected_codes() -> None:
    assert set(FAILURES) == set(EXPECTED)


@pytest.mark.parametrize("code", sorted(EXPECTED))
def test_outcomes_row(code: str) -> None:
    status, verstat = EXPECTED[code]
    kind = FAILURES[code]
    assert (kind.sip_status, kind.verstat) == (status, verstat)
    result = StirResult(status=StirStatus.FAILED, code=code, sip_status=kind.sip_status)
    assert result.verstat == verstat


def test_outcomes_unknown_code_claims_no_validation() -> None:
    assert verstat_for("something_new") == N


@pytest.mark.parametrize("status", [428, 436, 437, 438])
def test_outcomes_own_responses_carry_rfc8224_phrases(status: int) -> None:
    # 403 keeps "Forbidden" in the generic table; a stale-date reject passes "Stale Date" itself.
    assert REASONS[status] == SIP_REASONS[status]
