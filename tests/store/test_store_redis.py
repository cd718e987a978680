"""Redis backend specifics against a real redis-server: pub/sub propagation, TTLs, shared rates,
outage (kill the server: nothing raises, writes queue and replay, state resyncs), stream, metrics."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Callable

import pytest
import redis.asyncio as aioredis
from prometheus_client import CollectorRegistry, generate_latest

from edge.lifecycle.record import NumberRecord, NumberState
from edge.policy.rates import RateBook, RateKey, SharedRates
from edge.policy.rules import BlockRule, RuleKind
from edge.store.memory import MemoryStore
from edge.store.redis import BLOCK_GRACE, CAPTCHA_GRACE, RedisCollector, RedisStore, mask_url
from edge.store.sqlite import SqliteStore


def _prefix() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def _rule(rule_id: str, value: str = "+12025550100", **kw) -> BlockRule:
    return BlockRule(id=rule_id, kind=RuleKind.NUMBER, value=value, **kw)


async def _until(cond: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.01)
    return cond()


class Recorder:
    """Collects the callbacks a node receives."""

    def __init__(self, store: RedisStore) -> None:
        self.blocks: list[tuple[str | None, str | None]] = []
        self.numbers: list[NumberRecord] = []
        self.passes: list[tuple[str, str, float]] = []
        self.resyncs: list[list[str]] = []
        store.on_block = lambda add, removed: self.blocks.append((add.id if add else None, removed))
        store.on_number = self.numbers.append
        store.on_captcha = lambda c, s, u: self.passes.append((c, s, u))
        store.on_resync = lambda blocks, numbers: self.resyncs.append([b.id for b in blocks])


@pytest.fixture
async def pair(redis_server):
    prefix = _prefix()
    a = await RedisStore.open(redis_server.url, MemoryStore(), prefix=prefix, node="a")
    b = await RedisStore.open(redis_server.url, MemoryStore(), prefix=prefix, node="b")
    yield a, b
    await a.close()
    await b.close()


async def test_redis_block_added_on_one_node_reaches_other_within_a_second(pair):
    a, b = pair
    seen_a, seen_b = Recorder(a), Recorder(b)
    await a.add_block(_rule("rt-1"))
    assert await _until(lambda: ("rt-1", None) in seen_b.blocks, 1.0)
    assert await b.local.get_block("rt-1") == _rule("rt-1")  # the fallback copy follows
    assert await a.remove_block("rt-1") is True
    assert await _until(lambda: (None, "rt-1") in seen_b.blocks, 1.0)
    assert await b.local.get_block("rt-1") is None
    assert seen_a.blocks == []  # a node skips its own messages


async def test_redis_number_and_captcha_pass_reach_other_node(pair):
    a, b = pair
    seen = Recorder(b)
    rec = NumberRecord(number="+13125550199", state=NumberState.RELEASED, released_at=5.0)
    await a.put_number(rec)
    await a.remember_captcha_pass("+12025550100", "", until=time.time() + 600)
    assert await _until(lambda: seen.numbers and seen.passes, 1.0)
    assert seen.numbers == [rec]
    assert seen.passes[0][:2] == ("+12025550100", "")
    assert await b.local.get_number(rec.number) == rec
    assert await b.captcha_passed("+12025550100", "", now=time.time()) is True


async def test_redis_keys_carry_ttls(redis_server):
    prefix = _prefix()
    store = await RedisStore.open(redis_server.url, MemoryStore(), prefix=prefix)
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        now = time.time()
        await store.add_block(_rule("timed", expires_at=now + 100))
        await store.add_block(_rule("forever", value="+12025550101"))
        await store.remember_captcha_pass("+12025550100", "acme", until=now + 30)
        await store.put_number(NumberRecord(number="+13125550199", state=NumberState.RELEASED))
        store.rates.record("caller", "+12025550100", 60.0, now)
        await store.flush()
        timed = await raw.pttl(f"{prefix}:block:timed")
        assert (100 + BLOCK_GRACE - 5) * 1000 < timed <= (100 + BLOCK_GRACE) * 1000
        assert await raw.pttl(f"{prefix}:block:forever") == -1
        captcha = await raw.pttl(f"{prefix}:captcha:acme:+12025550100")
        assert (30 + CAPTCHA_GRACE - 5) * 1000 < captcha <= (30 + CAPTCHA_GRACE) * 1000
        assert await raw.pttl(f"{prefix}:num:+13125550199") == -1  # lifecycle records are kept
        rate = await raw.pttl(f"{prefix}:rate:caller:60:{int(now // 60)}:+12025550100")
        assert 115_000 < rate <= 120_000  # two windows
        assert await raw.zrange(f"{prefix}:blocks", 0, -1) == [b"forever", b"timed"]  # equal scores: by id
    finally:
        await raw.aclose()
        await store.close()


async def test_redis_expired_key_dropped_from_block_list(redis_server):
    prefix = _prefix()
    store = await RedisStore.open(redis_server.url, MemoryStore(), prefix=prefix)
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        await store.add_block(_rule("gone"))
        await raw.delete(f"{prefix}:block:gone")  # as a TTL would
        assert await store.list_blocks() == []
        assert await raw.zcard(f"{prefix}:blocks") == 0
    finally:
        await raw.aclose()
        await store.close()


async def test_redis_shared_rates_count_a_caller_spread_over_two_nodes(redis_server):
    prefix = _prefix()
    books = []
    stores = []
    for node in ("a", "b"):
        rates = SharedRates()
        store = await RedisStore.open(redis_server.url, MemoryStore(), prefix=prefix, node=node, rates=rates,
                                      rate_batch=3600.0)  # batches sent by flush() only: deterministic
        stores.append(store)
        books.append(RateBook(1000, shared=rates))
    a, b = books
    now = time.time()
    try:
        local_a = [a.hit(RateKey.CALLER, 60.0, "+13035550133", now) for _ in range(3)]
        assert local_a == [1.0, 2.0, 3.0]
        await stores[0].flush()
        first_b = b.hit(RateKey.CALLER, 60.0, "+13035550133", now)
        assert first_b == 1.0  # B has not heard of the caller yet: one batch of lag
        await stores[1].flush()
        second_b = b.hit(RateKey.CALLER, 60.0, "+13035550133", now)
        assert second_b >= 5.0  # 3 from A + 2 from B
        assert a.hit(RateKey.CALLER, 60.0, "+13035550133", now) >= 4.0  # A's view: its own unsent hit + last known
        await stores[0].flush()
        # Redis: 3 + 1 from A, 1 sent by B (its second hit is still unsent); plus this hit.
        assert a.hit(RateKey.CALLER, 60.0, "+13035550133", now) == 6.0
    finally:
        for s in stores:
            await s.close()


async def test_redis_outage_keeps_serving_queues_and_replays(own_redis, tmp_path, capsys):
    prefix = _prefix()
    local = await SqliteStore.open(tmp_path / "a.db", batch_interval=0.02, retention=None)
    a = await RedisStore.open(own_redis.url, local, prefix=prefix, node="a", timeout=0.3)
    b = await RedisStore.open(own_redis.url, MemoryStore(), prefix=prefix, node="b", timeout=0.3)
    seen_b = Recorder(b)
    try:
        await a.add_block(_rule("before"))
        assert await _until(lambda: ("before", None) in seen_b.blocks, 1.0)
        own_redis.kill()
        # Nothing raises; reads come from the local copy; writes queue.
        await a.add_block(_rule("during", value="+12025550102", created_at=1.0))
        await a.remember_captcha_pass("+12025550100", "", until=time.time() + 600)
        await a.put_number(NumberRecord(number="+13125550199", state=NumberState.RELEASED))
        assert not a.up
        assert [r.id for r in await a.list_blocks()] == ["before", "during"]
        assert await a.captcha_passed("+12025550100", "", now=time.time()) is True
        assert [r.number for r in await a.list_numbers()] == ["+13125550199"]
        h = a.health()
        assert h.degraded is True and h.retry_queue == 3 and h.backend == "redis"
        assert a.rates.available is False
        assert await _until(lambda: not b.up, 3.0)
        assert await b.list_blocks() == [_rule("before")]  # B keeps its last known blocks
        own_redis.start()  # comes back empty (no persistence)
        assert await _until(lambda: a.up and b.up and len(seen_b.resyncs) >= 1, 12.0)
        # A replayed (and re-seeded) its writes; B learns the block made during the outage.
        assert await _until(lambda: ("during", None) in seen_b.blocks or "during" in seen_b.resyncs[-1], 2.0)
        assert sorted(r.id for r in await b.list_blocks()) == ["before", "during"]
        assert await b.captcha_passed("+12025550100", "", now=time.time()) is True
        assert a.health().degraded is False and a.health().retry_queue == 0
        assert a.stats["outages"] == 1 and a.stats["replayed_writes"] >= 3
    finally:
        await a.close()
        await b.close()
    out = capsys.readouterr().out
    assert out.count("redis_unavailable") >= 1


async def test_redis_down_at_start_serves_local_then_syncs(tmp_path):
    from tests.redis_server import RedisServer

    server = RedisServer(tmp_path / "redis")  # not started yet
    local = MemoryStore()
    await local.add_block(_rule("local-only"))
    store = await RedisStore.open(server.url, local, prefix=_prefix(), timeout=0.2)
    try:
        assert store.up is False
        assert [r.id for r in await store.list_blocks()] == ["local-only"]
        await store.add_block(_rule("queued", value="+12025550109", created_at=1.0))
        server.start()
        assert await _until(lambda: store.up, 12.0)
        # The first node on an empty Redis seeds it with what it has.
        assert [r.id for r in await store.list_blocks()] == ["local-only", "queued"]
    finally:
        await store.close()
        server.stop()


async def test_redis_resync_drops_local_rules_deleted_elsewhere(redis_server):
    prefix = _prefix()
    store = await RedisStore.open(redis_server.url, MemoryStore(), prefix=prefix, node="a")
    seen = Recorder(store)
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        await store.add_block(_rule("stale"))
        await raw.delete(f"{prefix}:block:stale")
        await raw.zrem(f"{prefix}:blocks", "stale")  # removed while this node missed the message
        await raw.client_kill_filter(_type="pubsub")  # drop the node's subscription: it reconnects
        assert await _until(lambda: len(seen.resyncs) >= 1, 5.0)
        assert seen.resyncs[-1] == []
        assert await store.local.list_blocks() == []
    finally:
        await raw.aclose()
        await store.close()


async def test_redis_activity_stream_gets_finished_activities(redis_server, tmp_path, make_activity):
    prefix = _prefix()
    local = await SqliteStore.open(tmp_path / "a.db", batch_interval=0.02, retention=None)
    store = await RedisStore.open(redis_server.url, local, prefix=prefix, activity_stream=True)
    raw = aioredis.Redis.from_url(redis_server.url)
    try:
        live = make_activity(time.time())
        done = make_activity(time.time(), final_status=603)
        store.queue_activity(live)
        store.queue_activity(done)
        await store.flush()
        entries = await raw.xrange(f"{prefix}:activities")
        assert [e[1][b"id"].decode() for e in entries] == [done.id]
        assert await store.get_activity(live.id) == live  # activities stay local
    finally:
        await raw.aclose()
        await store.close()


async def test_redis_collector_exports_connection_state(pair):
    a, _ = pair
    registry = CollectorRegistry()
    registry.register(RedisCollector(a))
    await a.add_block(_rule("x"))
    text = generate_latest(registry).decode()
    assert f'edge_redis_up{{node="{a.node}"}} 1.0' in text
    assert f'edge_redis_outages_total{{node="{a.node}"}} 0.0' in text


@pytest.mark.parametrize(
    "url,expected",
    [("redis://:s3cret@h:6379/0", "redis://:***@h:6379/0"), ("redis://h:6379/0", "redis://h:6379/0")],
    ids=["password", "none"],
)
def test_redis_mask_url_hides_password(url, expected):
    assert mask_url(url) == expected


@pytest.mark.parametrize("fail_closed,expected", [(False, [1.0, 2.0]), (True, [2.0, 4.0])], ids=["open", "closed"])
async def test_redis_down_rates_follow_on_redis_down(own_redis, fail_closed, expected):
    rates = SharedRates(fail_closed=fail_closed, nodes=2)
    store = await RedisStore.open(own_redis.url, MemoryStore(), prefix=_prefix(), rates=rates, timeout=0.2)
    book = RateBook(100, shared=rates)
    try:
        own_redis.kill()
        await store.add_block(_rule("x"))  # the first failing command notices the outage
        assert store.up is False
        now = time.time()
        assert [book.hit(RateKey.CALLER, 60.0, "+1", now) for _ in range(2)] == expected
    finally:
        await store.close()
