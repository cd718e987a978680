"""SQLite backend specifics: persistence across restarts, batching, storage failures, schema versions, crash durability."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import subprocess
import sys
import textwrap

import pytest

from edge.lifecycle.record import NumberRecord, NumberState
from edge.policy.rules import BlockRule, RuleKind
from edge.store.protocol import ActivityQuery
from edge.store.sqlite import SCHEMA_VERSION, SchemaTooNew, SqliteStore

DISK_FULL = "database or disk is full"
SLOW = 3600.0  # batch interval long enough that only batch_max, flush() or close() write


class FailingConnection:
    """Wraps the real connection; executemany raises like a full disk while `failing` is set."""

    def __init__(self, real: sqlite3.Connection) -> None:
        self.real = real
        self.failing = True

    def executemany(self, sql, rows):
        if self.failing:
            raise sqlite3.OperationalError(DISK_FULL)
        return self.real.executemany(sql, rows)

    def __getattr__(self, name):
        return getattr(self.real, name)


async def _wait_for(predicate, tries: int = 200) -> None:
    for _ in range(tries):
        if predicate():
            return
        await asyncio.sleep(0.01)


async def test_sqlite_state_persists_across_restart(tmp_path, make_activity):
    path = tmp_path / "edge.db"
    s = await SqliteStore.open(path, batch_interval=SLOW, retention=None)
    a = make_activity(100.0, decision="reject")
    await s.append_activity(a)
    rule = BlockRule(id="rt-1", kind=RuleKind.NUMBER, value="+12025550100", created_at=5.0)
    await s.add_block(rule)
    rec = NumberRecord(number="+13125550199", state=NumberState.RELEASED, released_at=10.0, daily={3: 2})
    await s.put_number(rec)
    await s.remember_captcha_pass("+12025550100", "acme", until=1e12)
    await s.close()

    s2 = await SqliteStore.open(path, batch_interval=SLOW, retention=None)
    try:
        assert await s2.get_activity(a.id) == a
        assert await s2.list_blocks() == [rule]
        assert await s2.list_numbers() == [rec]
        assert await s2.captcha_passed("+12025550100", "acme", now=1000.0) is True
    finally:
        await s2.close()


async def test_sqlite_close_flushes_pending_batch(tmp_path, make_activity):
    path = tmp_path / "edge.db"
    s = await SqliteStore.open(path, batch_interval=SLOW, retention=None)
    for i in range(7):
        await s.append_activity(make_activity(float(i)))
    assert s.health().pending == 7
    await s.close()
    conn = sqlite3.connect(path)
    assert conn.execute("SELECT count(*) FROM activities").fetchone()[0] == 7
    conn.close()


async def test_sqlite_batch_max_triggers_flush_without_waiting_interval(tmp_path, make_activity):
    s = await SqliteStore.open(tmp_path / "edge.db", batch_interval=SLOW, batch_max=5, retention=None)
    try:
        for i in range(5):
            await s.append_activity(make_activity(float(i)))
        await _wait_for(lambda: s.health().flushed >= 5)
        assert s.health().flushed == 5
        assert s.health().pending == 0
    finally:
        await s.close()


async def test_sqlite_disk_full_counts_errors_and_append_never_raises(tmp_path, make_activity):
    s = await SqliteStore.open(tmp_path / "edge.db", batch_interval=SLOW, retention=None, retry_max=100)
    failing = FailingConnection(s._conn)
    s._conn = failing
    try:
        for i in range(3):
            await s.append_activity(make_activity(float(i)))
        await s.flush()
        h = s.health()
        assert h.degraded is True
        assert h.write_errors == 1
        assert h.retry_queue == 3
        assert h.last_error == DISK_FULL
        await s.add_block(BlockRule(id="rt-9", kind=RuleKind.NUMBER, value="+12025550100"))
        assert s.health().write_errors == 2
        assert s.health().retry_queue == 4

        failing.failing = False
        await s.flush()
        h = s.health()
        assert (h.degraded, h.retry_queue, h.dropped_writes) == (False, 0, 0)
        page = await s.query_activities(ActivityQuery())
        assert len(page.items) == 3
        assert [r.id for r in await s.list_blocks()] == ["rt-9"]
    finally:
        s._conn = failing.real
        await s.close()


async def test_sqlite_retry_queue_full_drops_oldest_and_counts(tmp_path, make_activity):
    s = await SqliteStore.open(tmp_path / "edge.db", batch_interval=SLOW, retention=None, retry_max=5)
    failing = FailingConnection(s._conn)
    s._conn = failing
    try:
        for round_ in range(3):
            for i in range(3):
                await s.append_activity(make_activity(float(round_ * 10 + i)))
            await s.flush()
        h = s.health()
        assert h.retry_queue <= 5
        assert h.dropped_writes == 9 - h.retry_queue
        failing.failing = False
        await s.flush()
        page = await s.query_activities(ActivityQuery())
        # The newest writes survive; the oldest were the ones dropped.
        assert min(a.received_at for a in page.items) >= 20.0
    finally:
        s._conn = failing.real
        await s.close()


async def test_sqlite_pending_cap_drops_new_writes_when_writer_stalls(tmp_path, make_activity):
    s = await SqliteStore.open(tmp_path / "edge.db", batch_interval=SLOW, batch_max=1000, retention=None, retry_max=4)
    try:
        for i in range(6):
            await s.append_activity(make_activity(float(i)))
        assert s.health().pending == 4
        assert s.health().dropped_writes == 2
    finally:
        await s.close()


async def test_sqlite_schema_version_set_and_wal_enabled(tmp_path):
    path = tmp_path / "edge.db"
    s = await SqliteStore.open(path, retention=None)
    await s.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
    assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    conn.close()


async def test_sqlite_newer_schema_refused(tmp_path):
    path = tmp_path / "edge.db"
    conn = sqlite3.connect(path)
    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION + 1}")
    conn.close()
    with pytest.raises(SchemaTooNew, match=f"version {SCHEMA_VERSION + 1} is newer"):
        await SqliteStore.open(path, retention=None)


async def test_sqlite_version_3_database_migrates_customer_to_an_indexed_column(tmp_path, make_activity):
    """A database written before schema 4 keeps its activities; the customer moves out of the JSON document
    into a column whose index answers the console's per-customer query (no json_extract per write)."""
    from edge.store.sqlite import MIGRATIONS
    import msgspec

    path = tmp_path / "edge.db"
    conn = sqlite3.connect(path, isolation_level=None)
    for statement in ";".join(MIGRATIONS[:3]).split(";"):
        if statement.strip():
            conn.execute(statement)
    conn.execute("PRAGMA user_version = 3")
    for at, customer in ((10.0, "acme"), (11.0, "globex"), (12.0, "")):
        a = make_activity(at, customer=customer)
        conn.execute("INSERT INTO activities (id, received_at, calling, called, decision, flagged, doc) VALUES (?, ?, ?, ?, ?, ?, ?)",
                     (a.id, a.received_at, a.calling_number, a.called_number, a.decision, 0, msgspec.json.encode(a)))
    conn.close()
    s = await SqliteStore.open(path, retention=None)
    try:
        page = await s.query_activities(ActivityQuery(customer="acme"))
        assert [a.received_at for a in page.items] == [10.0]
        assert len((await s.query_activities(ActivityQuery())).items) == 3
    finally:
        await s.close()
    conn = sqlite3.connect(path)
    assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION >= 4
    plan = " ".join(r[-1] for r in conn.execute(
        "EXPLAIN QUERY PLAN SELECT doc FROM activities WHERE customer = ? ORDER BY received_at DESC", ("acme",)))
    assert "activities_by_customer" in plan
    indexes = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'index'")}
    assert "activities_customer" not in indexes  # the expression index every write used to evaluate
    # A schema-3 daemon still running on the migrated file writes rows without the column: the customer
    # comes from the document, so its calls stay in the per-customer view.
    late = make_activity(13.0, customer="initech")
    conn.execute("INSERT OR REPLACE INTO activities (id, received_at, calling, called, decision, flagged, doc) VALUES (?, ?, ?, ?, ?, ?, ?)",
                 (late.id, late.received_at, late.calling_number, late.called_number, late.decision, 0, msgspec.json.encode(late)))
    conn.commit()
    conn.close()
    s = await SqliteStore.open(path, retention=None)
    try:
        assert [a.id for a in (await s.query_activities(ActivityQuery(customer="initech"))).items] == [late.id]
        assert len((await s.query_activities(ActivityQuery(customer="acme"))).items) == 1
    finally:
        await s.close()


async def test_sqlite_activity_written_twice_is_one_row_with_the_last_state(tmp_path, make_activity):
    """Answered, then ended in a later batch: the upsert leaves one row whose columns and document
    follow the second write; the pending copy is a snapshot (later edits of the object are not in it)."""
    s = await SqliteStore.open(tmp_path / "edge.db", batch_interval=SLOW, retention=None)
    try:
        a = make_activity(10.0, customer="acme", decision="allow")
        s.queue_activity(a)
        await s.flush()
        a.ended_at = 12.5
        a.decision = "reject"
        a.customer = "globex"
        s.queue_activity(a)
        a.reason = "edited after queueing"
        pending = await s.get_activity(a.id)
        assert pending is not None and pending.ended_at == 12.5 and pending.reason == ""
        await s.flush()
        got = await s.get_activity(a.id)
        assert got is not None and got.ended_at == 12.5 and got.decision == "reject" and got.reason == ""
        assert [x.id for x in (await s.query_activities(ActivityQuery(customer="globex"))).items] == [a.id]
        assert (await s.query_activities(ActivityQuery(customer="acme"))).items == []
        assert [x.id for x in (await s.query_activities(ActivityQuery(decision="reject"))).items] == [a.id]
    finally:
        await s.close()


async def test_sqlite_retention_purges_old_activities_in_background(tmp_path, make_activity):
    now = [100 * 86400.0]
    s = await SqliteStore.open(tmp_path / "edge.db", batch_interval=0.01, retention=90 * 86400.0, clock=lambda: now[0], retention_every=0.0)
    try:
        await s.append_activity(make_activity(5 * 86400.0))  # 95 days old
        await s.append_activity(make_activity(50 * 86400.0))  # 50 days old
        await _wait_for(lambda: s.health().purged >= 1)
        page = await s.query_activities(ActivityQuery())
        assert [a.received_at for a in page.items] == [50 * 86400.0]
        assert s.health().purged == 1
    finally:
        await s.close()


CRASH_SCRIPT = textwrap.dedent(
    """
    import asyncio, os, signal, sys
    from edge.call.activity import Activity
    from edge.policy.rules import BlockRule, RuleKind
    from edge.store.sqlite import SqliteStore

    async def main():
        s = await SqliteStore.open(sys.argv[1], batch_interval=3600.0, retention=None)
        for i in range(20):
            await s.append_activity(Activity(id=f"a{i:03d}", call_id=str(i), kind="call", received_at=float(i),
                                             calling_number="+12025550100", called_number="+13125550199"))
        await s.add_block(BlockRule(id="rt-crash", kind=RuleKind.NUMBER, value="+12025550100"))
        await s.flush()
        await s.append_activity(Activity(id="unflushed", call_id="x", kind="call", received_at=99.0,
                                         calling_number="+1", called_number="+2"))
        os.kill(os.getpid(), signal.SIGKILL)

    asyncio.run(main())
    """
)


async def test_sqlite_flushed_writes_survive_kill_9(tmp_path):
    path = tmp_path / "edge.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-c", CRASH_SCRIPT, str(path), cwd=os.getcwd(), stderr=subprocess.PIPE
    )
    _, err = await asyncio.wait_for(proc.communicate(), timeout=30)
    assert proc.returncode == -9, err.decode()
    s = await SqliteStore.open(path, retention=None)
    try:
        page = await s.query_activities(ActivityQuery(limit=100))
        assert len(page.items) == 20
        assert await s.get_activity("unflushed") is None
        assert [r.id for r in await s.list_blocks()] == ["rt-crash"]
    finally:
        await s.close()
