"""The table of verification outcomes: for each failure code, the check group it belongs to, the RFC 8224
response it maps to (§6.2.2, §13.2) and the verstat value the PBX is told (ATIS-1000074 §5.3.1,
3GPP TS 24.229 §7.2A.20).

verstat has two failure values and they mean different things to the PBX:
- `TN-Validation-Failed`: the PASSporT was checked and something in it is wrong (signature, certificate
  chain, expiry, revocation, TNAuthList, orig/dest not the numbers of the call, a replayed token);
- `No-TN-Validation`: no validation could be performed (no Identity header, a token that cannot be read or
  uses something we do not support, missing claims, stale or future iat, x5u not the `info` URL, the
  certificate could not be fetched or is not a certificate).

Kept apart from `failures` and `result` so both can read it without importing each other.
"""

from __future__ import annotations

import msgspec

PASSED = "TN-Validation-Passed"
FAILED = "TN-Validation-Failed"
NO_VALIDATION = "No-TN-Validation"

SIP_REASONS: dict[int, str] = {
    403: "Stale Date",
    428: "Use Identity Header",
    436: "Bad Identity Info",
    437: "Unsupported Credential",
    438: "Invalid Identity Header",
}


class FailureKind(msgspec.Struct, frozen=True):
    layer: str
    sip_status: int
    verstat: str


_N, _F = NO_VALIDATION, FAILED

# code -> (layer, SIP status, verstat). Stable names: they end up in activity records and metrics labels.
FAILURES: dict[str, FailureKind] = {
    "no_identity": FailureKind("parse", 428, _N),
    "malformed": FailureKind("parse", 438, _N),
    "compact_form": FailureKind("parse", 438, _N),
    "bad_base64": FailureKind("parse", 438, _N),
    "bad_json": FailureKind("parse", 438, _N),
    "missing_info": FailureKind("parse", 436, _N),
    "bad_info": FailureKind("parse", 436, _N),
    "missing_ppt": FailureKind("parse", 438, _N),
    "unsupported_alg": FailureKind("header", 437, _N),
    "alg_mismatch": FailureKind("header", 438, _N),
    "bad_typ": FailureKind("header", 438, _N),
    "unsupported_ppt": FailureKind("header", 438, _N),
    "ppt_mismatch": FailureKind("header", 438, _N),
    "missing_x5u": FailureKind("header", 436, _N),
    "x5u_mismatch": FailureKind("header", 436, _N),
    "bad_attest": FailureKind("claims", 438, _N),
    "bad_dest": FailureKind("claims", 438, _N),
    "bad_iat": FailureKind("claims", 438, _N),
    "bad_orig": FailureKind("claims", 438, _N),
    "bad_origid": FailureKind("claims", 438, _N),
    "bad_div": FailureKind("claims", 438, _N),
    "stale_date": FailureKind("freshness", 403, _N),
    "no_shaken_passport": FailureKind("numbers", 438, _N),
    "orig_mismatch": FailureKind("numbers", 438, _F),
    "dest_mismatch": FailureKind("numbers", 438, _F),
    "div_mismatch": FailureKind("numbers", 438, _F),
    "replay": FailureKind("replay", 438, _F),
    "fetch_failed": FailureKind("certificate", 436, _N),
    "bad_certificate": FailureKind("certificate", 437, _N),
    "bad_key": FailureKind("certificate", 437, _F),
    "untrusted_chain": FailureKind("certificate", 437, _F),
    "cert_expired": FailureKind("certificate", 437, _F),
    "cert_revoked": FailureKind("certificate", 437, _F),
    "missing_tnauthlist": FailureKind("certificate", 437, _F),
    "tn_not_authorized": FailureKind("certificate", 437, _F),
    "bad_signature": FailureKind("signature", 438, _F),
}


def verstat_for(code: str) -> str:
    """verstat for a failure code; an unknown code cannot claim a check was made."""
    kind = FAILURES.get(code)
    return kind.verstat if kind is not None else NO_VALIDATION
