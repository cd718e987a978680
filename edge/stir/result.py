"""The outcome of STIR/SHAKEN verification for one call (RFC 8224 §6.2.2, RFC 8588, ATIS-1000074 verstat)."""

from __future__ import annotations

import enum

import msgspec

from edge.stir.outcomes import NO_VALIDATION, PASSED, verstat_for


class StirStatus(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    ABSENT = "absent"


class StirResult(msgspec.Struct, frozen=True):
    """Evidence handed to policy and written into the activity record.

    `code` is a stable failure code (e.g. 'stale_date', 'bad_signature'), `layer` the check group
    that failed ('parse', 'header', 'claims', 'freshness', 'numbers', 'certificate', 'signature', 'replay'),
    `sip_status` the RFC 8224 response code the failure maps to (428/436/437/438/403), 0 when passed/absent.
    """

    status: StirStatus
    attestation: str | None = None  # 'A' | 'B' | 'C'
    code: str = ""
    layer: str = ""
    sip_status: int = 0
    reason: str = ""
    orig_tn: str = ""
    dest_tn: tuple[str, ...] = ()
    origid: str = ""
    rcd_name: str | None = None  # only set when the PASSporT carrying it verified

    @property
    def verstat(self) -> str:
        """The value told to the PBX, from the table in `edge.stir.outcomes` (Failed only when checked)."""
        if self.status is StirStatus.PASSED:
            return PASSED
        if self.status is StirStatus.FAILED:
            return verstat_for(self.code)
        return NO_VALIDATION


ABSENT = StirResult(status=StirStatus.ABSENT)
