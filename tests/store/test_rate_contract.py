"""Shared rate buckets behave the same in the reference (FixedBuckets) and in Redis (the Lua script)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest
import pytest_asyncio

from edge.policy.rates import BucketCounts, FixedBuckets, RateHit
from edge.store.memory import MemoryStore
from edge.store.redis import RedisStore

AddHits = Callable[[list[RateHit]], Awaitable[list[BucketCounts]]]


@pytest_asyncio.fixture(params=["memory", "redis"])
async def add_hits(request: pytest.FixtureRequest) -> AsyncIterator[AddHits]:
    if request.param == "memory":
        buckets = FixedBuckets()

        async def add(hits: list[RateHit]) -> list[BucketCounts]:
            return buckets.add(hits)

        yield add
        return
    server = request.getfixturevalue("redis_server")
    store = await RedisStore.open(server.url, MemoryStore(), prefix=f"r-{uuid.uuid4().hex[:10]}")
    yield store.add_rate_hits
    await store.close()


@pytest.mark.parametrize(
    "batches,expected",
    [
        ([[("caller", "+1", 60.0, 10, 1)]], [[(0, 1)]]),
        ([[("caller", "+1", 60.0, 10, 3)], [("caller", "+1", 60.0, 10, 2)]], [[(0, 3)], [(0, 5)]]),
        ([[("caller", "+1", 60.0, 10, 4)], [("caller", "+1", 60.0, 11, 1)]], [[(0, 4)], [(4, 1)]]),
        ([[("caller", "+1", 60.0, 10, 4)], [("caller", "+1", 60.0, 12, 1)]], [[(0, 4)], [(0, 1)]]),
        ([[("caller", "+1", 60.0, 10, 2), ("source", "+1", 60.0, 10, 1), ("caller", "+1", 30.0, 20, 5)]],
         [[(0, 2), (0, 1), (0, 5)]]),
        ([[("caller", "+1", 60.0, 10, 1), ("caller", "+2", 60.0, 10, 1), ("caller", "+1", 60.0, 10, 1)]],
         [[(0, 1), (0, 1), (0, 2)]]),
        ([[("pair", "+1>+2:x y", 60.0, 10, 1)]], [[(0, 1)]]),
    ],
    ids=["first-hit", "accumulates", "previous-bucket", "gap-forgets", "kinds-and-windows-apart", "same-batch-twice",
         "odd-key"],
)
async def test_rate_buckets_count_per_kind_key_window_bucket(add_hits, batches, expected):
    for batch, want in zip(batches, expected):
        got = await add_hits([RateHit(*h) for h in batch])
        assert [(c.prev, c.cur) for c in got] == want


async def test_rate_buckets_two_nodes_see_combined_count(add_hits):
    node_a = [RateHit("caller", "+13035550133", 60.0, 5, 1)] * 3
    node_b = [RateHit("caller", "+13035550133", 60.0, 5, 1)] * 3
    await add_hits(node_a)
    got = await add_hits(node_b)
    assert [c.cur for c in got] == [4, 5, 6]


async def test_rate_buckets_large_batch_is_chunked_in_order(add_hits):
    hits = [RateHit("caller", f"+1{i % 7}", 60.0, 1, 1) for i in range(600)]
    got = await add_hits(hits)
    assert len(got) == 600
    assert got[-1].cur == 600 // 7 + (1 if 599 % 7 < 600 % 7 else 0)
    assert got[6].cur == 1 and got[7].cur == 2
