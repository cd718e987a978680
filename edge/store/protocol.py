"""The StateStore interface (DESIGN §6): one contract, several backends (memory, sqlite; redis later).

Every method is async so a networked backend (redis) fits the same shape; the daemon awaits them
off the per-packet path. Writes never raise into callers on storage failure: backends log, count
and queue them for retry, and report it through `health()`.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import msgspec

from edge.call.activity import Activity
from edge.console.users import ConsoleUser
from edge.lifecycle.record import NumberRecord
from edge.messaging.optout import OptOut
from edge.policy.rules import BlockRule

DEFAULT_PAGE = 100
MAX_PAGE = 1000


class ActivityQuery(msgspec.Struct, frozen=True):
    """Filters AND together; `number` matches either side. Results are newest first."""

    since: float | None = None  # received_at >= since
    until: float | None = None  # received_at < until
    number: str = ""
    calling: str = ""
    called: str = ""
    decision: str = ""
    flagged: bool | None = None
    voicemail: bool = False  # only contacts that left a voicemail message
    customer: str = ""  # only this customer's contacts (console users are scoped by it)
    limit: int = DEFAULT_PAGE
    cursor: str = ""  # from the previous page's next_cursor


class ActivityPage(msgspec.Struct):
    items: list[Activity]
    next_cursor: str = ""  # '' when this is the last page


class StoreHealth(msgspec.Struct):
    backend: str
    degraded: bool = False
    last_error: str = ""
    write_errors: int = 0  # failed write attempts
    dropped_writes: int = 0  # writes lost because the retry queue was full
    retry_queue: int = 0  # writes waiting for the storage to come back
    pending: int = 0  # writes batched but not yet flushed
    flushed: int = 0  # records written since start
    evicted: int = 0  # records evicted by a size cap (memory backend)
    purged: int = 0  # activities deleted by retention


def make_cursor(received_at: float, activity_id: str) -> str:
    return f"{received_at!r}:{activity_id}"


def parse_cursor(cursor: str) -> tuple[float, str]:
    """Raises ValueError on a cursor this store did not hand out."""
    ts, sep, activity_id = cursor.partition(":")
    try:
        received_at = float(ts)
    except ValueError:
        received_at = None
    if received_at is None or not sep or not activity_id:
        raise ValueError(f"invalid cursor {cursor!r}")
    return received_at, activity_id


def clamp_limit(limit: int) -> int:
    return max(1, min(limit, MAX_PAGE))


def activity_matches(a: Activity, q: ActivityQuery) -> bool:
    """Reference semantics of ActivityQuery, used by the memory backend and checked by the contract tests."""
    if q.since is not None and a.received_at < q.since:
        return False
    if q.until is not None and a.received_at >= q.until:
        return False
    if q.number and q.number not in (a.calling_number, a.called_number):
        return False
    if q.calling and a.calling_number != q.calling:
        return False
    if q.called and a.called_number != q.called:
        return False
    if q.decision and a.decision != q.decision:
        return False
    if q.flagged is not None and a.flagged != q.flagged:
        return False
    if q.voicemail and not a.voicemail_path:
        return False
    if q.customer and a.customer != q.customer:
        return False
    return True


@runtime_checkable
class StateStore(Protocol):
    # activities (batched; visible to get_activity at once, to query_activities after the next flush)
    def queue_activity(self, activity: Activity) -> None:
        """Queue a new or changed activity from the call path: never blocks, never raises for I/O."""
        ...

    async def append_activity(self, activity: Activity) -> None: ...
    async def update_activity(self, activity: Activity) -> None: ...
    async def get_activity(self, activity_id: str) -> Activity | None: ...
    async def query_activities(self, query: ActivityQuery) -> ActivityPage: ...
    async def set_activity_flagged(self, activity_id: str, flagged: bool = True) -> Activity | None: ...
    async def purge_activities(self, before: float) -> int: ...

    # runtime block/allow rules
    async def list_blocks(self) -> list[BlockRule]: ...
    async def get_block(self, rule_id: str) -> BlockRule | None: ...
    async def add_block(self, rule: BlockRule) -> None: ...
    async def remove_block(self, rule_id: str) -> bool: ...
    async def expire_blocks(self, now: float) -> list[str]: ...

    # number lifecycle records
    async def get_number(self, number: str) -> NumberRecord | None: ...
    async def put_number(self, record: NumberRecord) -> None: ...
    async def list_numbers(self) -> list[NumberRecord]: ...

    # captcha-pass memory: a caller who passed is let through until `until`
    async def remember_captcha_pass(self, calling: str, scope: str, until: float) -> None: ...
    async def captcha_passed(self, calling: str, scope: str, now: float) -> bool: ...
    async def list_captcha_passes(self, now: float, limit: int) -> list[tuple[str, str, float]]: ...

    # text-message opt-outs (per campaign and recipient), shared between nodes
    async def add_optout(self, optout: OptOut) -> None: ...
    async def remove_optout(self, campaign: str, recipient: str) -> bool: ...
    async def list_optouts(self) -> list[OptOut]: ...
    # console users (edge.console): local to the node that serves the console
    async def put_user(self, user: ConsoleUser) -> None: ...
    async def get_user(self, name: str) -> ConsoleUser | None: ...
    async def list_users(self) -> list[ConsoleUser]: ...
    async def remove_user(self, name: str) -> bool: ...

    async def flush(self) -> None: ...
    async def close(self) -> None: ...
    def health(self) -> StoreHealth: ...
