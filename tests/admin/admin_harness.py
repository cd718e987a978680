from __future__ import annotations

from collections.abc import AsyncIterator

import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client import CollectorRegistry, Counter

from edge.call.activity import Activity
from edge.daemon.admin import AdminContext, make_admin_app
from edge.lifecycle.manager import DAY, Lifecycle
from edge.policy.pipeline import PolicyEngine
from edge.store.memory import MemoryStore

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
T0 = 19_000 * DAY + 3600.0


class Harness:
    def __init__(self) -> None:
        self.now = T0
        self.store = MemoryStore()
        self.lifecycle = Lifecycle()
        self.changes: list[tuple[object, object]] = []
        self.daemon_ok = True
        self.registry = CollectorRegistry()
        self.engine = PolicyEngine()
        Counter("edge_invites", "INVITEs received", registry=self.registry).inc(3)
        self.ctx = AdminContext(
            store=self.store,
            lifecycle=self.lifecycle,
            token=TOKEN,
            on_rules_changed=self._changed,
            health=lambda: {"ok": self.daemon_ok, "active_calls": 2},
            registry=self.registry,
            clock=lambda: self.now,
            cool_offs=self.engine,
        )

    async def _changed(self, add, removed) -> None:
        self.changes.append((add, removed))

    async def seed(self, **kw) -> Activity:
        a = Activity(
            id=kw.pop("id"),
            call_id=kw.pop("call_id", "c@x"),
            kind="call",
            received_at=kw.pop("received_at", T0),
            calling_number=kw.pop("calling_number", "+12025550100"),
            called_number=kw.pop("called_number", "+13125550199"),
            **kw,
        )
        await self.store.append_activity(a)
        return a


@pytest_asyncio.fixture
async def admin() -> AsyncIterator[tuple[Harness, TestClient]]:
    h = Harness()
    client = TestClient(TestServer(make_admin_app(h.ctx)))
    await client.start_server()
    try:
        yield h, client
    finally:
        await client.close()
