"""Failure codes of the STIR verification service and the RFC 8224 §13.2 responses they map to.

RFC 8224 §6.2.2 names four responses: 428 Use Identity Header (required but absent), 436 Bad Identity Info
(the credential could not be dereferenced), 437 Unsupported Credential (the credential is not acceptable),
438 Invalid Identity Header (the PASSporT does not verify), plus 403 Stale Date (§6.2.1) for freshness.
The table (code -> layer, response, verstat) lives in `edge.stir.outcomes`.
"""

from __future__ import annotations

from edge.stir.outcomes import FAILURES, SIP_REASONS, FailureKind
from edge.stir.result import StirResult, StirStatus

__all__ = ["FAILURES", "SIP_REASONS", "FailureKind", "StirFailure"]


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
