"""Opt-outs made on one node reach the other through Redis (a real redis-server)."""

from __future__ import annotations

import asyncio
import uuid

from edge.messaging.optout import OptOut
from edge.store.redis import RedisStore
from edge.store.sqlite import SqliteStore


async def test_optout_shared_between_nodes(redis_server, tmp_path):  # type: ignore[no-untyped-def]
    prefix = f"t-{uuid.uuid4().hex[:10]}"
    a = await RedisStore.open(redis_server.url, await SqliteStore.open(tmp_path / "a.db", retention=None), prefix=prefix, node="a")
    b = await RedisStore.open(redis_server.url, await SqliteStore.open(tmp_path / "b.db", retention=None), prefix=prefix, node="b")
    seen: list[tuple[OptOut, bool]] = []
    b.on_optout = lambda o, removed: seen.append((o, removed))
    try:
        o = OptOut("C1", "+13035550111", 100.0, "stop")
        await a.add_optout(o)
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.02)
        assert seen == [(o, False)]
        assert await b.local.list_optouts() == [o]
        await a.remove_optout("C1", "+13035550111")
        for _ in range(100):
            if len(seen) == 2:
                break
            await asyncio.sleep(0.02)
        assert seen[1][1] is True and await b.local.list_optouts() == []
    finally:
        await a.close()
        await b.close()
