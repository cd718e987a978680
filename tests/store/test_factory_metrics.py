from __future__ import annotations

import pytest
from prometheus_client import CollectorRegistry, generate_latest

from edge.lifecycle.record import NumberRecord, NumberState
from edge.policy.rules import BlockRule, RuleKind
from edge.store.factory import open_store
from edge.store.memory import MemoryStore
from edge.store.metrics import StoreCollector
from edge.store.schema import StoreConfig
from edge.store.sqlite import SqliteStore


@pytest.mark.parametrize("backend,cls", [("memory", MemoryStore), ("sqlite", SqliteStore)], ids=["memory", "sqlite"])
async def test_open_store_builds_configured_backend(tmp_path, backend, cls):
    store = await open_store(StoreConfig(backend=backend, path="var/edge.db"), base_dir=tmp_path)
    try:
        assert isinstance(store, cls)
    finally:
        await store.close()
    assert (tmp_path / "var" / "edge.db").exists() is (backend == "sqlite")


async def test_open_store_invalid_config_raises_with_path():
    with pytest.raises(ValueError, match=r"\$\.store\.backend: unknown backend 'mongo'"):
        await open_store(StoreConfig(backend="mongo"))


async def test_open_store_builds_redis_over_local_sqlite(tmp_path, redis_server):
    from edge.store.redis import RedisStore

    cfg = StoreConfig(backend="redis", path="var/edge.db", redis_url=redis_server.url, redis_prefix="factory",
                      redis_rate_batch="5ms", on_redis_down="closed", redis_nodes=3)
    store = await open_store(cfg, base_dir=tmp_path, node="edge-1")
    try:
        assert isinstance(store, RedisStore) and isinstance(store.local, SqliteStore)
        assert store.up and store.node.startswith("edge-1-") and store.rate_batch == 0.005
        assert store.rates.fail_closed is True and store.rates.nodes == 3
    finally:
        await store.close()
    assert (tmp_path / "var" / "edge.db").exists()


async def test_store_collector_exports_health(make_activity):
    store = MemoryStore(max_activities=2)
    for i in range(3):
        await store.append_activity(make_activity(float(i)))
    registry = CollectorRegistry()
    registry.register(StoreCollector(store))
    text = generate_latest(registry).decode()
    assert 'edge_store_evicted_records_total{backend="memory"} 1.0' in text
    assert 'edge_store_degraded{backend="memory"} 0.0' in text


async def test_memory_store_caps_evict_oldest():
    store = MemoryStore(max_activities=2, max_blocks=2, max_numbers=2, max_captcha=2)
    for i in range(3):
        await store.add_block(BlockRule(id=f"r{i}", kind=RuleKind.ANONYMOUS, created_at=float(i)))
        await store.put_number(NumberRecord(number=f"+1312555010{i}", state=NumberState.RELEASED))
        await store.remember_captcha_pass(f"+1202555010{i}", "acme", until=100.0 - i)
    assert [r.id for r in await store.list_blocks()] == ["r1", "r2"]
    assert [r.number for r in await store.list_numbers()] == ["+13125550101", "+13125550102"]
    # The pass that ends first is the one evicted.
    assert await store.captcha_passed("+12025550100", "acme", now=0.0) is True
    assert await store.captcha_passed("+12025550101", "acme", now=0.0) is False
    assert store.health().evicted == 3
