"""Failure codes of the STIR verification service and the RFC 8224 §13.2 responses they map to.

RFC 8224 §6.2.2 names four responses: 428 Use Identity Header (required but absent), 436 Bad Identity Info
(the credential could not be dereferenced), 437 Unsupported Credential (the credential is not acceptable),
438 Invalid Identity Header (the PASSporT does not verify), plus 403 Stale Date (§6.2.1) for freshness.
"""

from __future__ import annotations

import msgspec

from edge.stir.result import StirResult, StirStatus

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


# code -> (layer, SIP status). Stable names: they end up in activity records and metrics labels.
FAILURES: dict[str, FailureKind] = {
    "no_identity": FailureKind("parse", 428),
    "malformed": FailureKind("parse", 438),
    "compact_form": FailureKind("parse", 438),
    "bad_base64": FailureKind("parse", 438),
    "bad_json": FailureKind("parse", 438),
    "missing_info": FailureKind("parse", 436),
    "bad_info": FailureKind("parse", 436),
    "missing_ppt": FailureKind("parse", 438),
    "unsupported_alg": FailureKind("header", 437),
    "alg_mismatch": FailureKind("header", 438),
    "bad_typ": FailureKind("header", 438),
    "unsupported_ppt": FailureKind("header", 438),
    "ppt_mismatch": FailureKind("header", 438),
    "missing_x5u": FailureKind("header", 436),
    "x5u_mismatch": FailureKind("header", 436),
    "bad_attest": FailureKind("claims", 438),
    "bad_dest": FailureKind("claims", 438),
    "bad_iat": FailureKind("claims", 438),
    "bad_orig": FailureKind("claims", 438),
    "bad_origid": FailureKind("claims", 438),
    "bad_div": FailureKind("claims", 438),
    "stale_date": FailureKind("freshness", 403),
    "orig_mismatch": FailureKind("numbers", 438),
    "dest_mismatch": FailureKind("numbers", 438),
    "div_mismatch": FailureKind("numbers", 438),
    "no_shaken_passport": FailureKind("numbers", 438),
    "fetch_failed": FailureKind("certificate", 436),
    "bad_certificate": FailureKind("certificate", 437),
    "untrusted_chain": FailureKind("certificate", 437),
    "cert_expired": FailureKind("certificate", 437),
    "cert_revoked": FailureKind("certificate", 437),
    "missing_tnauthlist": FailureKind("certificate", 437),
    "bad_signature": FailureKind("signature", 438),
    "replay": FailureKind("replay", 438),
}


class StirFailure(Exception):
    """A check failed: carries the stable code and a human reason; layer and status come from FAILURES."""

    def __init__(self, code: str, reason: str) -> None:
        super().__init__(f"{code}: {reason}")
        self.code = code
        self.reason = reason

    @property
    def kind(self) -> FailureKind:
        return FAILURES[self.code]

    def result(self, **fields: object) -> StirResult:
        kind = self.kind
        status = StirStatus.ABSENT if self.code == "no_identity" else StirStatus.FAILED
        return StirResult(
            status=status,
            code=self.code,
            layer=kind.layer,
            sip_status=kind.sip_status,
            reason=self.reason,
            **fields,  # type: ignore[arg-type]
        )
