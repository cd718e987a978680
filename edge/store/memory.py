"""In-memory StateStore: the reference backend for unit tests and a store-less node. Bounded, never persisted."""

from __future__ import annotations

from collections import OrderedDict

import msgspec

from edge.call.activity import Activity
from edge.console.users import ConsoleUser
from edge.lifecycle.record import NumberRecord
from edge.messaging.optout import OptOut
from edge.policy.rules import BlockRule
from edge.store.protocol import (
    ActivityPage,
    ActivityQuery,
    StoreHealth,
    activity_matches,
    clamp_limit,
    make_cursor,
    parse_cursor,
)


def _copy(activity: Activity) -> Activity:
    # Callers keep mutating their live Activity; the store must hold what was written.
    return msgspec.structs.replace(activity, evidence=list(activity.evidence))


class MemoryStore:
    def __init__(
        self,
        max_activities: int = 100_000,
        max_blocks: int = 100_000,
        max_numbers: int = 1_000_000,
        max_captcha: int = 100_000,
    ) -> None:
        self.max_activities = max_activities
        self.max_blocks = max_blocks
        self.max_numbers = max_numbers
        self.max_captcha = max_captcha
        self._activities: OrderedDict[str, Activity] = OrderedDict()
        self._blocks: OrderedDict[str, BlockRule] = OrderedDict()
        self._numbers: OrderedDict[str, NumberRecord] = OrderedDict()
        self._captcha: dict[tuple[str, str], float] = {}
        self._optouts: dict[tuple[str, str], OptOut] = {}
        self._users: dict[str, ConsoleUser] = {}
        self._health = StoreHealth(backend="memory")

    # --- activities ----------------------------------------------------------------------------
    def queue_activity(self, activity: Activity) -> None:
        self._put_activity(activity)

    async def append_activity(self, activity: Activity) -> None:
        self._put_activity(activity)

    async def update_activity(self, activity: Activity) -> None:
        self._put_activity(activity)

    def _put_activity(self, activity: Activity) -> None:
        if activity.id not in self._activities and len(self._activities) >= self.max_activities:
            self._activities.popitem(last=False)
            self._health.evicted += 1
        self._activities[activity.id] = _copy(activity)
        self._health.flushed += 1

    async def get_activity(self, activity_id: str) -> Activity | None:
        a = self._activities.get(activity_id)
        return _copy(a) if a is not None else None

    async def query_activities(self, query: ActivityQuery) -> ActivityPage:
        after = parse_cursor(query.cursor) if query.cursor else None
        limit = clamp_limit(query.limit)
        rows = sorted(
            (a for a in self._activities.values() if activity_matches(a, query)),
            key=lambda a: (a.received_at, a.id),
            reverse=True,
        )
        if after is not None:
            rows = [a for a in rows if (a.received_at, a.id) < after]
        page = rows[:limit]
        more = len(rows) > limit
        cursor = make_cursor(page[-1].received_at, page[-1].id) if more and page else ""
        return ActivityPage(items=[_copy(a) for a in page], next_cursor=cursor)

    async def set_activity_flagged(self, activity_id: str, flagged: bool = True) -> Activity | None:
        a = self._activities.get(activity_id)
        if a is None:
            return None
        a.flagged = flagged
        return _copy(a)

    async def purge_activities(self, before: float) -> int:
        old = [k for k, a in self._activities.items() if a.received_at < before]
        for k in old:
            del self._activities[k]
        self._health.purged += len(old)
        return len(old)

    # --- blocks ----------------------------------------------------------------------------------
    async def list_blocks(self) -> list[BlockRule]:
        return sorted(self._blocks.values(), key=lambda r: (r.created_at, r.id))

    async def get_block(self, rule_id: str) -> BlockRule | None:
        return self._blocks.get(rule_id)

    async def add_block(self, rule: BlockRule) -> None:
        if rule.id not in self._blocks and len(self._blocks) >= self.max_blocks:
            self._blocks.popitem(last=False)
            self._health.evicted += 1
        self._blocks[rule.id] = rule

    async def remove_block(self, rule_id: str) -> bool:
        return self._blocks.pop(rule_id, None) is not None

    async def expire_blocks(self, now: float) -> list[str]:
        gone = [k for k, r in self._blocks.items() if r.expires_at is not None and r.expires_at <= now]
        for k in gone:
            del self._blocks[k]
        return gone

    # --- numbers ---------------------------------------------------------------------------------
    async def get_number(self, number: str) -> NumberRecord | None:
        r = self._numbers.get(number)
        return msgspec.convert(msgspec.to_builtins(r), NumberRecord) if r is not None else None

    async def put_number(self, record: NumberRecord) -> None:
        if record.number not in self._numbers and len(self._numbers) >= self.max_numbers:
            self._numbers.popitem(last=False)
            self._health.evicted += 1
        self._numbers[record.number] = msgspec.convert(msgspec.to_builtins(record), NumberRecord)

    async def list_numbers(self) -> list[NumberRecord]:
        return [msgspec.convert(msgspec.to_builtins(r), NumberRecord) for r in self._numbers.values()]

    # --- captcha passes --------------------------------------------------------------------------
    async def remember_captcha_pass(self, calling: str, scope: str, until: float) -> None:
        key = (calling, scope)
        if key not in self._captcha and len(self._captcha) >= self.max_captcha:
            victim = min(self._captcha, key=self._captcha.__getitem__)  # the pass that ends first
            del self._captcha[victim]
            self._health.evicted += 1
        self._captcha[key] = until

    async def list_captcha_passes(self, now: float, limit: int) -> list[tuple[str, str, float]]:
        """(calling, scope, until) of passes still valid at `now`, the longest-lasting `limit` of them."""
        live = sorted(((c, s, u) for (c, s), u in self._captcha.items() if u > now), key=lambda p: -p[2])
        return live[:limit]

    async def captcha_passed(self, calling: str, scope: str, now: float) -> bool:
        until = self._captcha.get((calling, scope))
        if until is None:
            return False
        if until <= now:
            del self._captcha[(calling, scope)]
            return False
        return True

    async def add_optout(self, optout: OptOut) -> None:
        self._optouts[(optout.campaign, optout.recipient)] = optout

    async def remove_optout(self, campaign: str, recipient: str) -> bool:
        return self._optouts.pop((campaign, recipient), None) is not None

    async def list_optouts(self) -> list[OptOut]:
        return sorted(self._optouts.values(), key=lambda o: (o.at, o.campaign, o.recipient))
    # --- console users ---------------------------------------------------------------------------
    async def put_user(self, user: ConsoleUser) -> None:
        self._users[user.name] = user

    async def get_user(self, name: str) -> ConsoleUser | None:
        return self._users.get(name)

    async def list_users(self) -> list[ConsoleUser]:
        return sorted(self._users.values(), key=lambda u: u.name)

    async def remove_user(self, name: str) -> bool:
        return self._users.pop(name, None) is not None

    async def flush(self) -> None:
        return None

    async def close(self) -> None:
        return None

    def health(self) -> StoreHealth:
        return msgspec.structs.replace(self._health)
