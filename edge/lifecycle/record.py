"""The persisted record of one number's lifecycle and the status derived from it."""

from __future__ import annotations

import enum

import msgspec

MAX_OVERRIDES = 16  # forced assignments remembered per number (newest kept)


class NumberState(str, enum.Enum):
    ASSIGNED = "assigned"  # in service (a dialplan routes it)
    RELEASED = "released"  # in quarantine: intercepted, traffic monitored
    ELIGIBLE = "eligible"  # released, quarantine elapsed and quiet: may be assigned again (derived, never stored)
    REASSIGNED = "reassigned"  # given to a customer after quarantine


class Override(msgspec.Struct, frozen=True):
    """A forced assignment before eligibility: who got it, when and why (kept for audit)."""

    at: float
    customer: str
    reason: str
    refused_because: str


class NumberRecord(msgspec.Struct):
    number: str  # E.164
    state: NumberState
    customer: str = ""  # current (assigned/reassigned) or last (released) customer
    released_at: float | None = None
    assigned_at: float | None = None
    daily: dict[int, int] = msgspec.field(default_factory=dict)  # day index (unix // 86400) -> contacts
    total_residual: int = 0
    overrides: list[Override] = msgspec.field(default_factory=list)
    updated_at: float = 0.0


class NumberStatus(msgspec.Struct, frozen=True):
    """What an operator sees: the effective state and when (and why not yet) the number can be reassigned."""

    number: str
    state: NumberState
    customer: str
    released_at: float | None
    days_in_quarantine: int
    residual_per_day: dict[str, int]  # 'YYYY-MM-DD' -> contacts, trailing quiet window
    total_residual: int
    eligible_at: float | None  # earliest time assuming no further traffic; None when not released
    reason: str  # why not eligible yet ('' when eligible or not released)
    overrides: list[Override] = msgspec.field(default_factory=list)
