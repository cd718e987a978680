"""What the policy pipeline knows about one contact, and what it concludes.

Detectors report `Evidence`; the number's dialplan turns evidence into one `Decision`
(DESIGN §3.3). Every decision names its rule id and reason.
"""

from __future__ import annotations

import enum

import msgspec

from edge.numbers import number_country, number_valid
from edge.stir.result import ABSENT, StirResult


class ContactKind(str, enum.Enum):
    CALL = "call"
    MESSAGE = "message"
    FAX = "fax"


class Action(str, enum.Enum):
    ALLOW = "allow"  # forward to the PBX (proxy path)
    REJECT = "reject"  # final response before answer, never billed
    CAPTCHA = "captcha"
    MENU = "menu"
    VOICEMAIL = "voicemail"
    INTERCEPT = "intercept"  # released / not-in-service number


class CallFacts(msgspec.Struct, frozen=True):
    """Facts extracted from an INVITE or MESSAGE before any decision."""

    call_id: str
    kind: ContactKind
    received_at: float  # unix seconds
    source_ip: str
    source_port: int
    transport: str  # 'udp' | 'tcp' | 'tls'
    carrier: str | None  # configured carrier name, None when the source is not a carrier
    calling_raw: str  # user part of PAI (else From) as received
    calling_number: str  # E.164 ('+...'), '' when not a number
    called_raw: str
    called_number: str  # E.164 of the Request-URI user part
    cnam: str  # caller display name ('' when none); a verified rcd name wins
    anonymous: bool  # Privacy: id, anonymous URI or no number
    customer: str | None = None  # customer owning the called number (dialplan)
    user_agent: str = ""
    stir: StirResult = ABSENT
    has_fax_sdp: bool = False

    @property
    def calling_country(self) -> str:
        """ISO region of the caller number, looked up only by country rules."""
        return number_country(self.calling_number)

    @property
    def calling_valid(self) -> bool:
        """Whether the caller number is allocated; evaluated only by the rules and signals that ask."""
        return number_valid(self.calling_number)


class Evidence(msgspec.Struct, frozen=True):
    """One detector's finding: `signal` is a stable name ('rate.caller', 'stir.failed', ...)."""

    signal: str
    weight: float
    detail: str = ""
    rule_id: str = ""


class Decision(msgspec.Struct, frozen=True):
    action: Action
    rule_id: str
    reason: str
    sip_status: int = 0  # for REJECT/INTERCEPT: the final response code
    score: float = 0.0
    evidence: tuple[Evidence, ...] = ()
    dry_run: bool = False  # True: `would` is what would have happened, `action` is what did
    would: Action | None = None
    target_ref: str = ""  # menu / voicemail box / captcha profile name for media actions


ALLOW_CLEAN = Decision(action=Action.ALLOW, rule_id="default", reason="no rule matched")
