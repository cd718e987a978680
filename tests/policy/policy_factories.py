"""Factories for policy tests: CallFacts built the way the SIP layer builds them."""

from __future__ import annotations

from typing import Any

from edge.numbers import parse_number
from edge.policy.facts import CallFacts, ContactKind


def build_facts(
    calling: str = "+12025550123",
    called: str = "+13125550111",
    *,
    cnam: str = "",
    anonymous: bool = False,
    kind: ContactKind = ContactKind.CALL,
    source_ip: str = "192.0.2.10",
    customer: str | None = None,
    **extra: Any,
) -> CallFacts:
    n = parse_number(calling) if calling else None
    return CallFacts(
        call_id="call-1",
        kind=kind,
        received_at=0.0,
        source_ip=source_ip,
        source_port=5060,
        transport="udp",
        carrier="carrier-a",
        calling_raw=calling,
        calling_number=n.e164 if n else "",
        called_raw=called,
        called_number=called,
        cnam=cnam,
        anonymous=anonymous,
        customer=customer,
        **extra,
    )
