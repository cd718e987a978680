"""Redis beyond one instance (issue 13): Sentinel with a forced failover while blocks and rates are written,
a 3-primary Cluster, and captcha passes made before a node started. Real servers on loopback, started here
(Debian redis-server, `redis-server --sentinel`, `redis-cli --cluster create`); bounded in seconds."""

from __future__ import annotations

import asyncio
import time
import uuid

import pytest
import redis.asyncio as aioredis

from edge.call.admission import PassMemory
from edge.daemon.shared_state import attach_shared_state
from edge.lifecycle.record import NumberRecord, NumberState
from edge.policy.rates import RateHit
from edge.policy.rules import BlockRule, RuleKind
from edge.store.memory import MemoryStore
from edge.store.redis import RedisStore
from tests.redis_server import RedisServer, SentinelServer, redis_cli
from tests.store.test_shared_state import FakeDaemon

WINDOW = 3600.0


async def _until(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return True
        await asyncio.sleep(0.02)
    return cond()


@pytest.fixture
def sentinel_group(tmp_path):
    """A primary, its replica (in sync) and one Sentinel watching them."""
    primary = RedisServer(tmp_path / "primary")
    primary.start()
    replica = RedisServer(tmp_path / "replica", args=("--replicaof", "127.0.0.1", str(primary.port)))
    replica.start()
    deadline = time.monotonic() + 10
    while "master_link_status:up" not in redis_cli(replica.port, "INFO", "replication"):
        assert time.monotonic() < deadline, "replica never synced"
        time.sleep(0.05)
    sentinel = SentinelServer(tmp_path / "sentinel", primary.port)
    sentinel.start()
    yield primary, replica, sentinel
    sentinel.stop()
    replica.stop()
    primary.stop()


async def test_sentinel_failover_mid_run_loses_no_block_or_rate(sentinel_group):
    primary, replica, sentinel = sentinel_group
    prefix = f"sent-{uuid.uuid4().hex[:8]}"
    store = await RedisStore.open(sentinel.url, MemoryStore(), prefix=prefix, node="a", rate_batch=0.01)
    assert store.up
    written: list[str] = []
    hits_queued = 0
    stop = asyncio.Event()

    async def writer() -> None:
        nonlocal hits_queued
        n = 0
        while not stop.is_set():
            rule = BlockRule(id=f"rt-{n}", kind=RuleKind.NUMBER, value=f"+1202555{n:04d}", created_at=float(n))
            await store.add_block(rule)
            written.append(rule.id)
            for _ in range(3):
                if store.rates.available:  # hits made during the outage count locally only (by design)
                    hits_queued += 1
                store.rates.record("caller", "+13035550111", WINDOW, time.time())
            n += 1
            await asyncio.sleep(0.005)

    task = asyncio.create_task(writer())
    try:
        assert await _until(lambda: len(written) >= 30, 10)
        old = sentinel.primary()
        await asyncio.to_thread(sentinel.failover)
        assert await _until(lambda: sentinel.primary() != old, 15), "sentinel did not fail over"
        assert await _until(lambda: store.up, 15), f"store never reconnected: {store.last_error}"
        before = len(written)
        assert await _until(lambda: len(written) >= before + 30, 10)  # writes keep flowing to the new primary
    finally:
        stop.set()
        await task
    await store.flush()
    assert await _until(lambda: store.up and not store.redis_stats()["queued_writes"] and not store.rates.pending, 15)

    host, port = sentinel.primary()
    assert port == replica.port  # the replica was promoted
    direct = aioredis.Redis(host=host, port=port)
    try:
        ids = {i.decode() for i in await direct.zrange(f"{prefix}:blocks", 0, -1)}
        missing = [i for i in written if i not in ids]
        assert missing == [], f"{len(missing)} blocks lost in the failover: {missing[:10]}"
        assert all(await direct.mget([f"{prefix}:block:{i}" for i in written]))
        counted = 0
        async for key in direct.scan_iter(match=f"{prefix}:rate:caller:3600:*:+13035550111"):
            counted += int(await direct.get(key) or 0)
    finally:
        await direct.aclose()
    assert counted >= hits_queued, f"rate hits lost in the failover: {hits_queued - counted} of {hits_queued}"
    stats = store.redis_stats()
    assert stats["outages"] >= 1 and stats["resyncs"] >= 2
    await store.close()


async def test_cluster_store_contract_round_trip_across_two_nodes(redis_cluster):
    cluster = redis_cluster
    prefix = f"cl-{uuid.uuid4().hex[:8]}"
    a = await RedisStore.open(cluster.url, MemoryStore(), prefix=prefix, cluster=True, node="a")
    b = await RedisStore.open(cluster.url, MemoryStore(), prefix=prefix, cluster=True, node="b")
    seen: list[tuple[str | None, str | None]] = []
    passes: list[tuple[str, str, float]] = []
    b.on_block = lambda add, removed: seen.append((add.id if add else None, removed))
    b.on_captcha = lambda c, s, u: passes.append((c, s, u))
    try:
        assert a.up and b.up
        rule = BlockRule(id="rt-1", kind=RuleKind.CNAM, value="spam*", created_at=1.0)
        await a.add_block(rule)
        assert await a.get_block("rt-1") == rule and await b.get_block("rt-1") == rule
        assert [r.id for r in await b.list_blocks()] == ["rt-1"]
        assert await _until(lambda: ("rt-1", None) in seen, 2), "block change not published across the cluster"
        record = NumberRecord(number="+13125550199", state=NumberState.RELEASED, released_at=5.0)
        await a.put_number(record)
        assert await b.get_number(record.number) == record and await b.list_numbers() == [record]
        until = time.time() + 600
        await a.remember_captcha_pass("+12025550111", "", until)
        assert await b.captcha_passed("+12025550111", "", time.time()) is True
        assert await b.captcha_passed("+12025550111", "acme", time.time()) is False
        assert await _until(lambda: passes == [("+12025550111", "", until)], 2)
        idx = int(time.time() // WINDOW)
        hits = [RateHit("caller", "+13035550111", WINDOW, idx, 2), RateHit("source", "192.0.2.1", WINDOW, idx, 1)]
        assert [(c.prev, c.cur) for c in await a.add_rate_hits(hits)] == [(0, 2), (0, 1)]
        assert [(c.prev, c.cur) for c in await b.add_rate_hits(hits)] == [(0, 4), (0, 2)]
        assert await a.remove_block("rt-1") is True
        assert await b.list_blocks() == []
        assert await _until(lambda: (None, "rt-1") in seen, 2)
    finally:
        await a.close()
        await b.close()


async def test_captcha_passes_made_before_a_node_started_are_loaded_into_it(redis_server):
    prefix = f"cp-{uuid.uuid4().hex[:8]}"
    a = await RedisStore.open(redis_server.url, MemoryStore(), prefix=prefix, node="a")
    now = time.time()
    await a.remember_captcha_pass("+12025550111", "", now + 600)
    await a.remember_captcha_pass("+12025550122", "acme", now + 600)
    await a.remember_captcha_pass("+12025550133", "", now + 0.05)  # expires before the next node starts
    await asyncio.sleep(0.1)
    b = await RedisStore.open(redis_server.url, MemoryStore(), prefix=prefix, node="b")
    daemon = FakeDaemon(b)
    shared = await attach_shared_state(daemon)
    try:
        gate_passes: PassMemory = daemon.proxy.gate.passes
        assert gate_passes.passed("+12025550111", time.time())  # loaded at attach, no pub/sub message needed
        assert not gate_passes.passed("+12025550133", time.time())
        assert await b.local.captcha_passed("+12025550122", "acme", time.time())  # the fallback copy has it too
        assert sorted(p[:2] for p in b.synced_passes(time.time())) == [("+12025550111", ""), ("+12025550122", "acme")]
    finally:
        await shared.close()
        await a.close()
        await b.close()
