"""Embedded SQLite StateStore: WAL, one writer thread, batched activity writes, retention, schema versions.

Durability: WAL with synchronous=NORMAL. A committed transaction survives a process crash
(`kill -9`); only an OS crash or power loss can lose the last transactions before a checkpoint.
Writes are committed by the flusher every `batch_interval` or `batch_max` records, and on close(),
so a `kill -9` loses at most the last unflushed batch.

Storage failures (disk full, I/O error) never raise into callers: the batch goes to a bounded retry
queue (oldest dropped and counted beyond `retry_max`), `store_write_failed` is logged at error
level, counters are exposed in `health()`, and the flusher retries with backoff.
"""

from __future__ import annotations

import asyncio
import collections
import sqlite3
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import msgspec
import structlog

from edge.call.activity import Activity
from edge.console.users import ConsoleUser
from edge.lifecycle.record import NumberRecord
from edge.messaging.optout import OptOut
from edge.policy.rules import BlockRule
from edge.store.protocol import ActivityPage, ActivityQuery, StoreHealth, clamp_limit, make_cursor, parse_cursor

log = structlog.get_logger()

Op = tuple[str, list[tuple[Any, ...]]]

MIGRATIONS: tuple[str, ...] = (
    # 1: initial schema
    """
    CREATE TABLE activities (
        id TEXT PRIMARY KEY,
        received_at REAL NOT NULL,
        calling TEXT NOT NULL,
        called TEXT NOT NULL,
        decision TEXT NOT NULL,
        flagged INTEGER NOT NULL,
        doc BLOB NOT NULL
    );
    CREATE INDEX activities_time ON activities (received_at, id);
    CREATE INDEX activities_calling ON activities (calling, received_at);
    CREATE INDEX activities_called ON activities (called, received_at);
    CREATE INDEX activities_decision ON activities (decision, received_at);
    CREATE INDEX activities_flagged ON activities (received_at) WHERE flagged = 1;
    CREATE TABLE blocks (
        id TEXT PRIMARY KEY,
        created_at REAL NOT NULL,
        expires_at REAL,
        doc BLOB NOT NULL
    );
    CREATE INDEX blocks_expires ON blocks (expires_at) WHERE expires_at IS NOT NULL;
    CREATE TABLE numbers (
        number TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        doc BLOB NOT NULL
    );
    CREATE TABLE captcha_passes (
        calling TEXT NOT NULL,
        scope TEXT NOT NULL,
        until REAL NOT NULL,
        PRIMARY KEY (calling, scope)
    );
    CREATE INDEX captcha_until ON captcha_passes (until);
    """,
    # 2: text-message opt-outs
    """
    CREATE TABLE optouts (
        campaign TEXT NOT NULL,
        recipient TEXT NOT NULL,
        at REAL NOT NULL,
        doc BLOB NOT NULL,
        PRIMARY KEY (campaign, recipient)
    );
    """,
    # 3: console users; activities by customer (console scoping)
    """
    CREATE TABLE users (
        name TEXT PRIMARY KEY,
        doc BLOB NOT NULL
    );
    CREATE INDEX activities_customer ON activities (json_extract(doc, '$.customer'), received_at)
    """,
    # 4: the customer as a column: every activity write evaluated the json_extract index above (a JSON
    # parse of the whole document per insert, and per delete of the row it replaced)
    """
    ALTER TABLE activities ADD COLUMN customer TEXT NOT NULL DEFAULT '';
    UPDATE activities SET customer = coalesce(json_extract(doc, '$.customer'), '');
    DROP INDEX activities_customer;
    CREATE INDEX activities_by_customer ON activities (customer, received_at);
    -- A daemon of schema 3 still running on the file (`sip-edge check`, run by a reload, migrates it) names
    -- no customer when it writes: take it from the document, so the console's per-customer view misses nothing.
    CREATE TRIGGER activities_customer_from_doc AFTER INSERT ON activities
    WHEN NEW.customer = '' AND json_extract(NEW.doc, '$.customer') != '' BEGIN
        UPDATE activities SET customer = json_extract(NEW.doc, '$.customer') WHERE id = NEW.id;
    END
    """,
)
SCHEMA_VERSION = len(MIGRATIONS)

# An upsert, not INSERT OR REPLACE: a call's activity is written at answer and again at its end, and
# REPLACE deletes and re-inserts the row in every index; the update touches only what changed.
_UPSERT_ACTIVITY = (
    "INSERT INTO activities (id, received_at, calling, called, decision, flagged, customer, doc) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
    " ON CONFLICT (id) DO UPDATE SET received_at = excluded.received_at, calling = excluded.calling,"
    " called = excluded.called, decision = excluded.decision, flagged = excluded.flagged,"
    " customer = excluded.customer, doc = excluded.doc"
)
_UPSERT_NUMBER = "INSERT OR REPLACE INTO numbers (number, state, doc) VALUES (?, ?, ?)"
_UPSERT_CAPTCHA = "INSERT OR REPLACE INTO captcha_passes (calling, scope, until) VALUES (?, ?, ?)"
_UPSERT_BLOCK = "INSERT OR REPLACE INTO blocks (id, created_at, expires_at, doc) VALUES (?, ?, ?, ?)"

_enc = msgspec.json.Encoder()
_dec_activity = msgspec.json.Decoder(Activity)
_dec_block = msgspec.json.Decoder(BlockRule)
_dec_number = msgspec.json.Decoder(NumberRecord)
_dec_optout = msgspec.json.Decoder(OptOut)
_UPSERT_OPTOUT = "INSERT OR REPLACE INTO optouts (campaign, recipient, at, doc) VALUES (?, ?, ?, ?)"
_dec_user = msgspec.json.Decoder(ConsoleUser)


class StoreError(Exception):
    """A read the store could not answer (the admin API maps it to 503)."""


class SchemaTooNew(StoreError):
    pass


def _activity_row(a: Activity) -> tuple[Any, ...]:
    """The stored row, encoded once when the activity is queued: the row is the snapshot (no struct copy),
    and the flusher hands ready rows to `executemany`."""
    return (a.id, a.received_at, a.calling_number, a.called_number, a.decision, int(a.flagged), a.customer, _enc.encode(a))


_ROW_DOC = 7  # index of the JSON document in an activity row


def _number_row(r: NumberRecord) -> tuple[Any, ...]:
    return (r.number, r.state.value, _enc.encode(r))


def _block_row(r: BlockRule) -> tuple[Any, ...]:
    return (r.id, r.created_at, r.expires_at, _enc.encode(r))


def _statements(script: str) -> list[str]:
    """A migration's statements, split at the semicolons that end one (not those inside a trigger's body)."""
    out: list[str] = []
    pending = ""
    for piece in script.split(";"):
        pending += piece + ";"
        if sqlite3.complete_statement(pending):
            if pending.strip(" \t\n;"):
                out.append(pending)
            pending = ""
    return out


def migrate(conn: sqlite3.Connection) -> int:
    """Bring the schema to SCHEMA_VERSION (PRAGMA user_version); refuse a newer database."""
    version = conn.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise SchemaTooNew(f"database schema version {version} is newer than this sip-edge supports ({SCHEMA_VERSION})")
    for target in range(version + 1, SCHEMA_VERSION + 1):
        conn.execute("BEGIN")
        try:
            for statement in _statements(MIGRATIONS[target - 1]):
                conn.execute(statement)
            conn.execute(f"PRAGMA user_version = {target}")
            conn.execute("COMMIT")
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        log.info("store_schema_migrated", version=target)
    return SCHEMA_VERSION


class SqliteStore:
    def __init__(
        self,
        path: str | Path,
        batch_interval: float = 0.05,
        batch_max: int = 500,
        retention: float | None = 90 * 86400.0,
        retry_max: int = 10_000,
        clock: Callable[[], float] = time.time,
        retention_every: float = 3600.0,
        max_size: int | None = None,
    ) -> None:
        self.path = str(path)
        self.batch_interval = batch_interval
        self.batch_max = batch_max
        self.retention = retention
        self.retry_max = retry_max
        self.clock = clock
        self.retention_every = retention_every
        self.max_size = max_size  # bytes; writes beyond it fail as SQLITE_FULL (counted, retried)
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="sqlite-writer")
        self._conn: Any = None
        self._pending_activities: dict[str, tuple[Any, ...]] = {}  # id -> row (_activity_row)
        self._pending_numbers: dict[str, NumberRecord] = {}
        self._pending_captcha: dict[tuple[str, str], float] = {}
        self._retry: collections.deque[Op] = collections.deque()
        self._retry_rows = 0
        self._health = StoreHealth(backend="sqlite")
        self._flush_lock = asyncio.Lock()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._next_retention = 0.0
        self._closed = False

    @classmethod
    async def open(cls, path: str | Path, **kwargs: Any) -> SqliteStore:
        store = cls(path, **kwargs)
        await store._run(store._connect)
        store._task = asyncio.get_running_loop().create_task(store._flusher(), name="sqlite-flusher")
        return store

    # --- writer thread ---------------------------------------------------------------------------
    async def _run(self, fn: Callable[..., Any], *args: Any) -> Any:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    def _connect(self) -> None:
        Path(self.path).parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, isolation_level=None)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=NORMAL")
        conn.execute("PRAGMA busy_timeout=5000")
        migrate(conn)
        if self.max_size is not None:
            page_size = conn.execute("PRAGMA page_size").fetchone()[0]
            conn.execute(f"PRAGMA max_page_count = {max(1, self.max_size // page_size)}")
        self._conn = conn

    def _apply(self, ops: list[Op]) -> int:
        conn = self._conn
        conn.execute("BEGIN IMMEDIATE")
        try:
            for sql, rows in ops:
                conn.executemany(sql, rows)
            conn.execute("COMMIT")
        except BaseException:
            try:
                conn.execute("ROLLBACK")
            except sqlite3.Error:
                pass
            raise
        return sum(len(rows) for _, rows in ops)

    def _query(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        return self._conn.execute(sql, params).fetchall()

    async def _read(self, sql: str, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return await self._run(self._query, sql, params)
        except sqlite3.Error as exc:
            self._note_error("store_read_failed", exc)
            raise StoreError(f"store read failed: {exc}") from exc

    def _note_error(self, event: str, exc: BaseException) -> None:
        self._health.degraded = True
        self._health.last_error = str(exc)
        log.error(event, error=str(exc), path=self.path, retry_queue=self._retry_rows)

    # --- batching --------------------------------------------------------------------------------
    def _pending_count(self) -> int:
        return len(self._pending_activities) + len(self._pending_numbers) + len(self._pending_captcha)

    def _admit(self) -> bool:
        """Bound the batch while the writer is stalled: beyond retry_max new writes are dropped and counted."""
        if self._pending_count() >= self.retry_max:
            self._health.dropped_writes += 1
            return False
        return True

    def _queue_retry(self, ops: list[Op]) -> None:
        for op in ops:
            self._retry.append(op)
            self._retry_rows += len(op[1])
        while self._retry_rows > self.retry_max and self._retry:
            _, rows = self._retry.popleft()
            self._retry_rows -= len(rows)
            self._health.dropped_writes += len(rows)
            log.error("store_writes_dropped", count=len(rows), reason="retry queue full")

    async def _write(self, ops: list[Op]) -> bool:
        """Serialised with flush() so a retried batch can never land after a newer write of the same row."""
        async with self._flush_lock:
            return await self._write_unlocked(ops)

    async def _write_unlocked(self, ops: list[Op]) -> bool:
        """Commit retried ops then `ops` in one transaction; on failure keep them all for retry."""
        batch = list(self._retry) + ops
        self._retry.clear()
        self._retry_rows = 0
        if not batch:
            return True
        try:
            written = await self._run(self._apply, batch)
        except sqlite3.Error as exc:
            self._health.write_errors += 1
            self._queue_retry(batch)
            self._note_error("store_write_failed", exc)
            return False
        self._health.flushed += written
        if self._health.degraded:
            log.warning("store_write_recovered", path=self.path)
        self._health.degraded = False
        self._health.last_error = ""
        return True

    async def flush(self) -> None:
        async with self._flush_lock:
            ops: list[Op] = []
            if self._pending_activities:
                ops.append((_UPSERT_ACTIVITY, list(self._pending_activities.values())))
                self._pending_activities = {}
            if self._pending_numbers:
                ops.append((_UPSERT_NUMBER, [_number_row(r) for r in self._pending_numbers.values()]))
                self._pending_numbers = {}
            if self._pending_captcha:
                ops.append((_UPSERT_CAPTCHA, [(c, s, u) for (c, s), u in self._pending_captcha.items()]))
                self._pending_captcha = {}
            if ops or self._retry:
                await self._write_unlocked(ops)

    async def _flusher(self) -> None:
        backoff = self.batch_interval
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=backoff)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            await self.flush()
            # Back off while the disk keeps failing, up to 5 s between retries.
            backoff = min(backoff * 2, 5.0) if self._health.degraded else self.batch_interval
            if self.retention is not None and self.clock() >= self._next_retention:
                self._next_retention = self.clock() + self.retention_every
                try:
                    await self.purge_activities(self.clock() - self.retention)
                except StoreError:
                    pass
                await self._write([("DELETE FROM captcha_passes WHERE until <= ?", [(self.clock(),)])])

    def _kick(self) -> None:
        if self._pending_count() >= self.batch_max:
            self._wake.set()

    # --- activities ------------------------------------------------------------------------------
    async def append_activity(self, activity: Activity) -> None:
        self.queue_activity(activity)

    def queue_activity(self, activity: Activity) -> None:
        if self._closed or (activity.id not in self._pending_activities and not self._admit()):
            return
        self._pending_activities[activity.id] = _activity_row(activity)
        self._kick()

    async def update_activity(self, activity: Activity) -> None:
        await self.append_activity(activity)

    async def get_activity(self, activity_id: str) -> Activity | None:
        pending = self._pending_activities.get(activity_id)
        if pending is not None:
            return _dec_activity.decode(pending[_ROW_DOC])
        rows = await self._read("SELECT doc FROM activities WHERE id = ?", (activity_id,))
        return _dec_activity.decode(rows[0][0]) if rows else None

    async def query_activities(self, query: ActivityQuery) -> ActivityPage:
        await self.flush()
        where: list[str] = []
        params: list[Any] = []
        if query.since is not None:
            where.append("received_at >= ?")
            params.append(query.since)
        if query.until is not None:
            where.append("received_at < ?")
            params.append(query.until)
        if query.number:
            where.append("(calling = ? OR called = ?)")
            params += [query.number, query.number]
        for column, value in (("calling", query.calling), ("called", query.called), ("decision", query.decision)):
            if value:
                where.append(f"{column} = ?")
                params.append(value)
        if query.flagged is not None:
            where.append("flagged = ?")
            params.append(int(query.flagged))
        if query.voicemail:
            where.append("json_extract(doc, '$.voicemail_path') != ''")
        if query.customer:
            where.append("customer = ?")
            params.append(query.customer)
        if query.cursor:
            ts, last_id = parse_cursor(query.cursor)
            where.append("(received_at < ? OR (received_at = ? AND id < ?))")
            params += [ts, ts, last_id]
        limit = clamp_limit(query.limit)
        sql = "SELECT doc FROM activities"
        if where:
            sql += " WHERE " + " AND ".join(where)
        sql += " ORDER BY received_at DESC, id DESC LIMIT ?"
        params.append(limit + 1)
        rows = await self._read(sql, tuple(params))
        items = [_dec_activity.decode(r[0]) for r in rows[:limit]]
        cursor = make_cursor(items[-1].received_at, items[-1].id) if len(rows) > limit else ""
        return ActivityPage(items=items, next_cursor=cursor)

    async def set_activity_flagged(self, activity_id: str, flagged: bool = True) -> Activity | None:
        activity = await self.get_activity(activity_id)
        if activity is None:
            return None
        activity.flagged = flagged
        if activity_id in self._pending_activities:
            self._pending_activities[activity_id] = _activity_row(activity)
        else:
            await self._write([(_UPSERT_ACTIVITY, [_activity_row(activity)])])
        return activity

    async def purge_activities(self, before: float) -> int:
        def purge() -> int:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                n = conn.execute("DELETE FROM activities WHERE received_at < ?", (before,)).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            return n

        await self.flush()
        try:
            purged = await self._run(purge)
        except sqlite3.Error as exc:
            self._note_error("store_retention_failed", exc)
            raise StoreError(f"retention purge failed: {exc}") from exc
        self._health.purged += purged
        if purged:
            log.info("store_activities_purged", count=purged, before=before)
        return purged

    # --- opt-outs -------------------------------------------------------------------------------
    async def add_optout(self, optout: OptOut) -> None:
        await self._write([(_UPSERT_OPTOUT, [(optout.campaign, optout.recipient, optout.at, _enc.encode(optout))])])

    async def remove_optout(self, campaign: str, recipient: str) -> bool:
        rows = await self._read("SELECT 1 FROM optouts WHERE campaign = ? AND recipient = ?", (campaign, recipient))
        if not rows:
            return False
        await self._write([("DELETE FROM optouts WHERE campaign = ? AND recipient = ?", [(campaign, recipient)])])
        return True

    async def list_optouts(self) -> list[OptOut]:
        rows = await self._read("SELECT doc FROM optouts ORDER BY at, campaign, recipient")
        return [_dec_optout.decode(r[0]) for r in rows]

    # --- blocks ----------------------------------------------------------------------------------
    async def list_blocks(self) -> list[BlockRule]:
        rows = await self._read("SELECT doc FROM blocks ORDER BY created_at, id")
        return [_dec_block.decode(r[0]) for r in rows]

    async def get_block(self, rule_id: str) -> BlockRule | None:
        rows = await self._read("SELECT doc FROM blocks WHERE id = ?", (rule_id,))
        return _dec_block.decode(rows[0][0]) if rows else None

    async def add_block(self, rule: BlockRule) -> None:
        await self._write([(_UPSERT_BLOCK, [_block_row(rule)])])

    async def remove_block(self, rule_id: str) -> bool:
        if await self.get_block(rule_id) is None:
            return False
        await self._write([("DELETE FROM blocks WHERE id = ?", [(rule_id,)])])
        return True

    async def expire_blocks(self, now: float) -> list[str]:
        rows = await self._read("SELECT id FROM blocks WHERE expires_at IS NOT NULL AND expires_at <= ?", (now,))
        ids = [r[0] for r in rows]
        if ids:
            await self._write([("DELETE FROM blocks WHERE id = ?", [(i,) for i in ids])])
        return ids

    # --- numbers ---------------------------------------------------------------------------------
    async def get_number(self, number: str) -> NumberRecord | None:
        pending = self._pending_numbers.get(number)
        if pending is not None:
            return _dec_number.decode(_enc.encode(pending))
        rows = await self._read("SELECT doc FROM numbers WHERE number = ?", (number,))
        return _dec_number.decode(rows[0][0]) if rows else None

    async def put_number(self, record: NumberRecord) -> None:
        if self._closed or (record.number not in self._pending_numbers and not self._admit()):
            return
        self._pending_numbers[record.number] = _dec_number.decode(_enc.encode(record))
        self._kick()

    async def list_numbers(self) -> list[NumberRecord]:
        await self.flush()
        rows = await self._read("SELECT doc FROM numbers ORDER BY number")
        return [_dec_number.decode(r[0]) for r in rows]

    # --- captcha passes --------------------------------------------------------------------------
    async def remember_captcha_pass(self, calling: str, scope: str, until: float) -> None:
        key = (calling, scope)
        if self._closed or (key not in self._pending_captcha and not self._admit()):
            return
        self._pending_captcha[key] = until
        self._kick()

    async def list_captcha_passes(self, now: float, limit: int) -> list[tuple[str, str, float]]:
        """(calling, scope, until) of passes still valid at `now`, the longest-lasting `limit` of them:
        what a restarted daemon loads back into its pass memory."""
        await self.flush()
        rows = await self._read(
            "SELECT calling, scope, until FROM captcha_passes WHERE until > ? ORDER BY until DESC LIMIT ?", (now, limit))
        return [(r[0], r[1], r[2]) for r in rows]

    async def captcha_passed(self, calling: str, scope: str, now: float) -> bool:
        until = self._pending_captcha.get((calling, scope))
        if until is None:
            rows = await self._read("SELECT until FROM captcha_passes WHERE calling = ? AND scope = ?", (calling, scope))
            until = rows[0][0] if rows else None
        return until is not None and until > now

    # --- console users ---------------------------------------------------------------------------
    async def put_user(self, user: ConsoleUser) -> None:
        if not await self._write([("INSERT OR REPLACE INTO users (name, doc) VALUES (?, ?)", [(user.name, _enc.encode(user))])]):
            raise StoreError(f"could not save user {user.name!r}: {self._health.last_error}")

    async def get_user(self, name: str) -> ConsoleUser | None:
        rows = await self._read("SELECT doc FROM users WHERE name = ?", (name,))
        return _dec_user.decode(rows[0][0]) if rows else None

    async def list_users(self) -> list[ConsoleUser]:
        rows = await self._read("SELECT doc FROM users ORDER BY name")
        return [_dec_user.decode(r[0]) for r in rows]

    async def remove_user(self, name: str) -> bool:
        if await self.get_user(name) is None:
            return False
        await self._write([("DELETE FROM users WHERE name = ?", [(name,)])])
        return True

    # --- lifecycle -------------------------------------------------------------------------------
    async def close(self) -> None:
        if self._closed:
            return
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        await self.flush()
        # Expired captcha passes are dead weight; drop them on the way out.
        await self._write([("DELETE FROM captcha_passes WHERE until <= ?", [(self.clock(),)])])
        self._closed = True
        if self._retry_rows:
            log.error("store_closed_with_unwritten", count=self._retry_rows, path=self.path)
        if self._conn is not None:
            await self._run(self._conn.close)
        self._executor.shutdown(wait=True)

    def health(self) -> StoreHealth:
        h = msgspec.structs.replace(self._health)
        h.retry_queue = self._retry_rows
        h.pending = self._pending_count()
        return h
