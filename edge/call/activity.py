"""The activity record: every INVITE and MESSAGE, with its evidence and verdict."""

from __future__ import annotations

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
    stir_status: str = ""  # 'passed' | 'failed' | 'absent'
    stir_attestation: str = ""
    stir_code: str = ""
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
