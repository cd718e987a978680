"""Lifecycle state survives a restart: records go through the SQLite store and load back into the index."""

from __future__ import annotations

from edge.lifecycle.manager import DAY, Lifecycle
from edge.lifecycle.record import NumberState
from edge.store.sqlite import SqliteStore

N = "+13125550199"
T0 = 19_000 * DAY


async def test_lifecycle_state_survives_restart_through_sqlite(tmp_path):
    path = tmp_path / "edge.db"
    store = await SqliteStore.open(path, retention=None)
    lc = Lifecycle()
    await store.put_number(lc.release(N, T0, customer="acme"))
    for i in range(4):
        await store.put_number(lc.record_traffic(N, T0 + 80 * DAY + i))
    await store.close()

    store = await SqliteStore.open(path, retention=None)
    try:
        fresh = Lifecycle()
        fresh.load(await store.list_numbers())
        assert fresh.is_released(N)
        status = fresh.status(N, T0 + 90 * DAY)
        assert status.state is NumberState.RELEASED
        assert status.total_residual == 4
        assert status.eligible_at == (int((T0 + 80 * DAY) // DAY) + 14) * DAY
    finally:
        await store.close()
