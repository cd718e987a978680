"""attach_shared_state: another node's changes reach this node's rule index, lifecycle and pass memory."""

from __future__ import annotations

import asyncio
import time
import uuid
from types import SimpleNamespace

from prometheus_client import CollectorRegistry

from edge.call.admission import PassMemory
from edge.daemon.shared_state import attach_shared_state
from edge.lifecycle.manager import Lifecycle
from edge.lifecycle.record import NumberRecord, NumberState
from edge.policy.pipeline import PolicyEngine
from edge.policy.rules import BlockRule, RuleKind
from edge.store.memory import MemoryStore
from edge.store.redis import RedisStore


class FakeDaemon:
    """The attributes of edge.daemon.process.Daemon that shared state touches."""

    def __init__(self, store) -> None:
        self.store = store
        self.engine = PolicyEngine()
        self.lifecycle = Lifecycle()
        self.proxy = SimpleNamespace(gate=SimpleNamespace(passes=PassMemory()))
        self.registry = CollectorRegistry()

    def _rules_changed(self, add, removed_id) -> None:
        if removed_id:
            self.engine.rules.remove(removed_id)
        if add is not None:
            self.engine.rules.add(add)


async def _until(cond, timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not cond():
        await asyncio.sleep(0.01)
    return cond()


async def test_shared_state_applies_other_nodes_changes(redis_server):
    prefix = f"s-{uuid.uuid4().hex[:8]}"
    a = await RedisStore.open(redis_server.url, MemoryStore(), prefix=prefix, node="a")
    b = await RedisStore.open(redis_server.url, MemoryStore(), prefix=prefix, node="b")
    daemon = FakeDaemon(b)
    shared = await attach_shared_state(daemon)
    try:
        assert shared.active and daemon.engine.detective.rates.shared is b.rates
        await a.add_block(BlockRule(id="rt-1", kind=RuleKind.NUMBER, value="+12025550100"))
        await a.put_number(NumberRecord(number="+13125550199", state=NumberState.RELEASED))
        await a.remember_captcha_pass("+12025550111", "", until=time.time() + 600)
        assert await _until(lambda: "rt-1" in daemon.engine.rules and daemon.lifecycle.is_released("+13125550199")
                            and daemon.proxy.gate.passes.passed("+12025550111", time.time()), 1.0)
        # A resync drops runtime rules Redis no longer has and keeps static (dialplan) ones.
        daemon.engine.rules.add(BlockRule(id="gone", kind=RuleKind.NUMBER, value="+12025550102"))
        daemon.engine.rules.add(BlockRule(id="static", kind=RuleKind.ANONYMOUS, source="dialplan:acme.toml"))
        shared.on_resync(await b.list_blocks(), await b.list_numbers())
        assert sorted(r.id for r in daemon.engine.rules) == ["rt-1", "static"]
        await shared.close()
        assert daemon.engine.detective.rates.shared is None
    finally:
        await a.close()
        await b.close()


async def test_shared_state_inactive_without_redis():
    daemon = FakeDaemon(MemoryStore())
    shared = await attach_shared_state(daemon)
    assert shared.active is False and daemon.engine.detective.rates.shared is None
    await shared.close()
