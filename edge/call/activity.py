"""The activity record: every INVITE and MESSAGE, with its evidence and verdict."""

from __future__ import annotations

from typing import Any

import msgspec

from edge.policy.facts import Evidence


class Activity(msgspec.Struct):
    """Mutable while the contact is live (answered/ended filled in later); stored on each change."""

    id: str  # time-ordered unique id (sortable), see new_activity_id()
    call_id: str
    kind: str  # 'call' | 'message' | 'fax' | 'form' | 'chat'
    received_at: float
    calling_number: str
    called_number: str
    cnam: str = ""
    source: str = ""  # 'ip:port'
    transport: str = "udp"
    carrier: str = ""
    customer: str = ""
    stir_status: str = ""  # inbound: 'passed' | 'failed' | 'absent'; outbound: 'signed' | 'unsigned'
    stir_attestation: str = ""  # inbound: verified attestation; outbound: the attestation we signed
    stir_code: str = ""  # inbound: failure code; outbound: why the call was not signed
    stir_reason: str = ""  # inbound: what failed, in words (e.g. 'ES256 signature does not verify ...')
    evidence: list[Evidence] = msgspec.field(default_factory=list)
    score: float = 0.0
    decision: str = ""  # Action value
    rule_id: str = ""
    reason: str = ""
    dry_run: bool = False
    would: str = ""
    screening_mode: str = ""  # '' | 'answer' | 'early-media'
    final_status: int = 0
    answered_at: float | None = None
    ended_at: float | None = None
    duration: float = 0.0
    billable: bool = False
    target: str = ""  # PBX target that took the call
    voicemail_path: str = ""
    flagged: bool = False
    node: str = ""
    direction: str = "inbound"  # 'inbound' (carrier -> PBX) | 'outbound' (PBX -> carrier)
    failovers: int = 0  # next hops tried after the first (PBX targets inbound, carriers outbound)
    campaign: str = ""  # A2P 10DLC campaign of a text message
    email: str = ""  # chats and forms: the address the visitor gave
    page: str = ""  # chats and forms: the page the visitor submitted from


_counter = 0


def new_activity_id(now: float, node: str = "") -> str:
    """Sortable id: microsecond timestamp plus a per-process counter (unique within a node)."""
    global _counter
    _counter = (_counter + 1) % 1_000_000
    prefix = f"{int(now * 1_000_000):016x}{_counter:05x}"
    return f"{prefix}{('-' + node) if node else ''}"


def log_contact_decided(log: Any, a: Activity, status: int) -> None:
    """The one `contact_decided` line per contact (proxied, screened, outbound), call-id bound: what came
    in, what was decided and why, where it went, and the STIR evidence (failure code and detail)."""
    log.info(
        "contact_decided",
        call_id=a.call_id,
        kind=a.kind,
        direction=a.direction,
        calling=a.calling_number,
        called=a.called_number,
        status=status,
        decision=a.decision,
        rule_id=a.rule_id,
        reason=a.reason,
        target=a.target,
        carrier=a.carrier,
        failovers=a.failovers,
        stir_status=a.stir_status,
        stir_attestation=a.stir_attestation,
        stir_code=a.stir_code,
        stir_reason=a.stir_reason,
        screening=a.screening_mode,
    )
