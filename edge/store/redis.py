"""Redis StateStore: several edge nodes acting as one (DESIGN §6; key names and outage rules in docs/redis.md).

Shared in Redis (or Valkey; single instance, Sentinel or Cluster): runtime block/allow rules, number
lifecycle records, captcha passes and rate windows. Activities stay in each node's local SQLite
(`local`), optionally also appended to a capped Redis stream for a collector.

Changes are published (`{prefix}:blocks:changes`, `:numbers:changes`, `:captcha:changes`); every node
subscribes and applies them to its in-memory indexes through the `on_*` callbacks, so a block made
on one node is enforced on all within the pub/sub latency (milliseconds). After every (re)connect
the node replays writes queued during the outage, then reads the full shared state and hands it to
`on_resync` (the caller diffs its indexes), so a missed message is never lost for long.

Every shared write also lands in the local store, which is what reads fall back to while Redis is
unreachable: the node keeps deciding from local rates, last known blocks and its lifecycle index;
writes are queued (bounded, oldest dropped and counted) and replayed on reconnect; reconnection backs
off exponentially up to 5 s; `redis_unavailable` is logged once per outage at error level.

With Sentinel (a primary and its replicas) a write the primary acknowledged can still vanish in a
failover: replication is asynchronous, and the old primary keeps accepting writes until Sentinel demotes
it. So when the primary has a replica, every shared write and rate batch is followed by `WAIT 1`: a write
no replica confirmed is treated like a failed one (queued and replayed, rate hits put back), and the
node reconnects through Sentinel to whichever server is primary now. Blocks and rates are then at least
once, never lost; a replayed rate batch can count twice only if the old primary replicated it but could
not confirm it in time.

Rates never put a network round trip in front of a decision: edge.policy.rates.SharedRates queues
hits, `_batcher` sends them every `rate_batch` in one EVALSHA (the Lua script below: INCRBY the hit's
fixed bucket, TTL two windows, read the previous bucket) and feeds the all-node counts back.
"""

from __future__ import annotations

import asyncio
import collections
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import unquote, urlsplit

import msgspec
import redis.asyncio as aioredis
import structlog
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError, ResponseError

from edge.call.activity import Activity
from edge.console.users import ConsoleUser
from edge.lifecycle.record import NumberRecord
from edge.messaging.optout import OptOut
from edge.policy.rates import BucketCounts, RateHit, SharedRates
from edge.policy.rules import BlockRule
from edge.store.protocol import ActivityPage, ActivityQuery, StateStore, StoreHealth

log = structlog.get_logger()

BLOCK_GRACE = 3600.0  # a timed rule's key outlives expires_at by this (nodes expire it by the clock first)
CAPTCHA_GRACE = 60.0  # same for captcha passes
BACKOFF_MIN = 0.1
BACKOFF_MAX = 5.0
SCRIPT_CHUNK = 2000  # hits per EVALSHA
MGET_CHUNK = 500
STREAM_BUFFER = 10_000  # finished activities waiting for XADD

# ARGV[1]: the key namespace; ARGV[2]: one line per hit, "kind TAB window TAB idx TAB count TAB ttl_ms TAB key".
# For each hit: INCRBY its fixed bucket, TTL two windows, read the previous bucket; returns
# "prev,cur;prev,cur;..." (one bulk string parses far cheaper than an array of integers).
# The same two-bucket semantics as edge.policy.rates.FixedBuckets. KEYS[1] only routes the call in a
# cluster: every rate key carries the same {prefix} hash tag, so all of them live in its slot.
RATE_SCRIPT = """
local ns = ARGV[1]
local out = {}
for line in string.gmatch(ARGV[2], '[^\\n]+') do
  local kind, window, idx, count, ttl, key = string.match(line, '^([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)\\t([^\\t]*)\\t(.*)$')
  local base = ns .. ':rate:' .. kind .. ':' .. window .. ':'
  local cur = redis.call('INCRBY', base .. idx .. ':' .. key, count)
  redis.call('PEXPIRE', base .. idx .. ':' .. key, ttl)
  local prev = redis.call('GET', base .. string.format('%d', tonumber(idx) - 1) .. ':' .. key) or '0'
  out[#out + 1] = prev .. ',' .. cur
end
return table.concat(out, ';')
"""

_enc = msgspec.json.Encoder()
_dec_pass = msgspec.json.Decoder(tuple[str, str])


class NotReplicated(RedisError):
    """The primary took a write but no replica confirmed it: it may not survive a failover."""


class Change(msgspec.Struct, omit_defaults=True):
    """A pub/sub message: what changed and which node changed it (a node skips its own)."""

    node: str
    rule: BlockRule | None = None
    removed: str = ""
    record: NumberRecord | None = None
    calling: str = ""
    scope: str = ""
    until: float = 0.0
    optout: OptOut | None = None  # text-message opt-out added (or removed with optout_removed)
    optout_removed: bool = False


_dec_change = msgspec.json.Decoder(Change)
_dec_block = msgspec.json.Decoder(BlockRule)
_dec_number = msgspec.json.Decoder(NumberRecord)
_dec_optout = msgspec.json.Decoder(OptOut)

# Queued shared writes: (op, payload)
Op = tuple[str, Any]


def ignore_change(*_: Any) -> None:
    """The default callback: a store nobody listens to."""
    return None


def mask_url(url: str) -> str:
    """The URL without its password, for logs."""
    parts = urlsplit(url)
    if parts.password:
        return url.replace(f":{parts.password}@", ":***@", 1)
    return url


def make_client(url: str, cluster: bool = False, timeout: float = 0.5) -> Any:
    """redis://, rediss://, unix:// (single instance), redis+sentinel://[:pw@]h:p[,h:p]/service[/db], or a cluster node URL."""
    common: dict[str, Any] = {
        "socket_timeout": timeout,
        "socket_connect_timeout": timeout,
        "retry": Retry(NoBackoff(), 0),  # the store decides about retries: a failure means 'down' at once
    }
    if url.startswith("redis+sentinel://"):
        from redis.asyncio.sentinel import Sentinel

        parts = urlsplit(url)
        hosts = []
        for hp in parts.netloc.rpartition("@")[2].split(","):
            host, _, port = hp.rpartition(":")
            hosts.append((host or hp, int(port) if port.isascii() and port.isdigit() and len(port) <= 5 else 26379))
        path = [p for p in parts.path.split("/") if p]
        if not path:
            raise ValueError(f"sentinel URL {mask_url(url)!r} names no service: redis+sentinel://host:port/service")
        db = int(path[1]) if len(path) > 1 else 0
        password = unquote(parts.password) if parts.password else None
        sentinel = Sentinel(hosts, sentinel_kwargs={"socket_timeout": timeout, "socket_connect_timeout": timeout},
                            **common)
        return sentinel.master_for(path[0], db=db, password=password)
    if cluster:
        from redis.asyncio.cluster import RedisCluster

        return RedisCluster.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout)
    return aioredis.Redis.from_url(url, health_check_interval=max(1, int(timeout * 4)), **common)


class RedisStore:
    """StateStore over Redis with a local store underneath (activities, and the fallback while Redis is down)."""

    def __init__(
        self,
        client: Any,
        local: StateStore,
        *,
        prefix: str = "sip-edge",
        cluster: bool = False,
        node: str = "",
        rate_batch: float = 0.02,
        rates: SharedRates | None = None,
        retry_max: int = 10_000,
        activity_stream: bool = False,
        activity_stream_max: int = 100_000,
        url: str = "",
        clock: Callable[[], float] = time.time,
        replicated: bool = False,
        timeout: float = 0.5,
    ) -> None:
        self.client = client
        self.cluster = cluster
        # Sentinel: confirm writes on a replica (WAIT) whenever the primary has one (see the module text).
        self.replicated = replicated
        self._replicas = 0
        self._synced_passes: list[tuple[str, str, float]] = []
        self._wait_ms = max(1, int(timeout * 800))  # inside the socket timeout
        self.local = local
        self.prefix = prefix
        # In a cluster every key carries the prefix as a hash tag: multi-key scripts, MGET and
        # transactions then stay in one slot.
        self.ns = f"{{{prefix}}}" if cluster else prefix
        # Unique per process even when two nodes share a name: a node skips only its own messages.
        suffix = uuid.uuid4().hex[:8]
        self.node = f"{node}-{suffix}" if node else suffix
        self.rate_batch = rate_batch
        self.rates = rates if rates is not None else SharedRates()
        self.retry_max = retry_max
        self.activity_stream = activity_stream
        self.activity_stream_max = activity_stream_max
        self.url = mask_url(url)
        self.clock = clock
        self.channels = (f"{self.ns}:blocks:changes", f"{self.ns}:numbers:changes", f"{self.ns}:captcha:changes")
        # Callbacks into the daemon (edge.daemon.shared_state wires them); all synchronous, no I/O.
        self.on_block: Callable[[BlockRule | None, str | None], Any] = ignore_change
        self.on_number: Callable[[NumberRecord], Any] = ignore_change
        self.on_captcha: Callable[[str, str, float], Any] = ignore_change
        self.on_optout: Callable[[OptOut, bool], Any] = ignore_change  # (optout, removed)
        self.on_resync: Callable[[list[BlockRule], list[NumberRecord]], Any] = ignore_change
        self._script = client.register_script(RATE_SCRIPT)
        self._queue: collections.deque[Op] = collections.deque()
        self._stream: collections.deque[Activity] = collections.deque()
        self._up = False
        self._in_outage = False
        self._outage_since = 0.0
        self._ready = asyncio.Event()
        self._tasks: list[asyncio.Task[None]] = []
        self._closed = False
        self.last_error = ""
        self.stats: dict[str, int] = dict.fromkeys(
            ("outages", "errors", "dropped_writes", "replayed_writes", "resyncs", "changes_received",
             "changes_applied", "rate_batches", "rate_hits_sent", "stream_added", "stream_dropped"), 0)

    @classmethod
    async def open(cls, url: str, local: StateStore, *, cluster: bool = False, timeout: float = 0.5,
                   **kwargs: Any) -> RedisStore:
        """Connect and sync once (up to ~4 timeouts); when Redis is down the node starts from local state."""
        store = cls(make_client(url, cluster, timeout), local, cluster=cluster, url=url,
                    replicated=url.startswith("redis+sentinel://"), timeout=timeout, **kwargs)
        store.start()
        try:
            await asyncio.wait_for(store._ready.wait(), timeout=max(4 * timeout, 1.0))
        except asyncio.TimeoutError:
            store._mark_down(TimeoutError(f"no answer from {store.url} at start"))
        return store

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._connection(), name="redis-connection"),
                       loop.create_task(self._batcher(), name="redis-batcher")]

    @property
    def up(self) -> bool:
        return self._up

    # --- keys ------------------------------------------------------------------------------------
    def _k_block(self, rule_id: str) -> str:
        return f"{self.ns}:block:{rule_id}"

    def _k_num(self, number: str) -> str:
        return f"{self.ns}:num:{number}"

    def _k_captcha(self, calling: str, scope: str) -> str:
        return f"{self.ns}:captcha:{scope}:{calling}"

    @property
    def _k_captchas(self) -> str:
        """Sorted set of live passes (member: JSON [calling, scope], score: until), read at every sync."""
        return f"{self.ns}:captchas"

    # --- connection, outage, resync --------------------------------------------------------------
    def _mark_down(self, exc: BaseException) -> None:
        self.stats["errors"] += 1
        self.last_error = str(exc) or type(exc).__name__
        self._up = False
        self.rates.set_available(False)
        self._ready.set()
        if not self._in_outage:
            self._in_outage = True
            self._outage_since = self.clock()
            self.stats["outages"] += 1
            log.error("redis_unavailable", error=self.last_error, url=self.url, node=self.node,
                      queued=len(self._queue), detail="serving from local state; shared writes queued")

    def _mark_up(self) -> None:
        self._up = True
        self.rates.set_available(True)
        self._ready.set()
        if self._in_outage:
            self._in_outage = False
            log.warning("redis_recovered", url=self.url, node=self.node,
                        outage_seconds=round(self.clock() - self._outage_since, 3),
                        replayed=self.stats["replayed_writes"])
        self.last_error = ""

    async def _connection(self) -> None:
        """Subscribe, replay, resync, then apply other nodes' changes until the connection fails; repeat."""
        backoff = BACKOFF_MIN
        while not self._closed:
            pubsub = None
            try:
                if self.cluster:
                    # The cluster client learns the slot map on its first command; pub/sub needs it before that.
                    await self.client.initialize()
                pubsub = self.client.pubsub()
                await pubsub.subscribe(*self.channels)
                await self._sync()
                backoff = BACKOFF_MIN
                while self._up:
                    msg = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
                    if msg is not None:
                        await self._on_message(msg)
            except asyncio.CancelledError:
                raise
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                self._mark_down(exc)
            finally:
                if pubsub is not None:
                    try:
                        await pubsub.aclose()
                    except (RedisError, OSError, asyncio.TimeoutError):
                        pass
            if self._closed:
                return
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, BACKOFF_MAX)

    async def _sync(self) -> None:
        """After (re)connect: seed an empty Redis, replay queued writes, read the full state, go up."""
        if await self.client.set(f"{self.ns}:seeded", self.node, nx=True):
            # First node on a fresh Redis: what it already has locally (a migration from sqlite) is shared.
            for rule in await self.local.list_blocks():
                self._queue.appendleft(("add_block", rule))
            for record in await self.local.list_numbers():
                self._queue.appendleft(("put_number", record))
            log.info("redis_seeded", node=self.node, queued=len(self._queue))
        if self.replicated:
            info = await self.client.info("replication")
            self._replicas = 1 if int(info.get("connected_slaves", 0) or 0) > 0 else 0
        await self._replay()
        blocks = await self._redis_blocks()
        numbers = await self._redis_numbers()
        passes = await self._redis_passes()
        await self._adopt(blocks, numbers)
        for calling, scope, until in passes:
            await self.local.remember_captcha_pass(calling, scope, until)
        self._synced_passes = passes
        await self._replay()  # writes made while the state was read
        self.stats["resyncs"] += 1
        self._mark_up()
        self._call(self.on_resync, blocks, numbers)
        for calling, scope, until in passes:  # passes made before this node started (or while it was away)
            self._call(self.on_captcha, calling, scope, until)
        log.info("redis_synced", node=self.node, blocks=len(blocks), numbers=len(numbers), passes=len(passes),
                 replicas_confirming=self._replicas)

    async def _replay(self) -> None:
        while self._queue:
            await self._apply(self._queue[0])
            self._queue.popleft()
            self.stats["replayed_writes"] += 1

    async def _adopt(self, blocks: list[BlockRule], numbers: list[NumberRecord]) -> None:
        """Make the local fallback copy equal to the shared state."""
        shared = {r.id: r for r in blocks}
        for rule in await self.local.list_blocks():
            if rule.id not in shared:
                await self.local.remove_block(rule.id)
            elif shared[rule.id] == rule:
                del shared[rule.id]
        for rule in shared.values():
            await self.local.add_block(rule)
        for record in numbers:
            await self.local.put_number(record)

    async def _on_message(self, msg: dict[str, Any]) -> None:
        try:
            change = _dec_change.decode(msg["data"])
        except (msgspec.DecodeError, KeyError, TypeError) as exc:
            log.warning("redis_change_invalid", error=str(exc), channel=str(msg.get("channel")))
            return
        self.stats["changes_received"] += 1
        if change.node == self.node:
            return
        if change.rule is not None:
            await self.local.add_block(change.rule)
            self._call(self.on_block, change.rule, None)
        elif change.removed:
            try:
                await self.local.remove_block(change.removed)
            except Exception as exc:  # noqa: BLE001 - a local read failure must not stop the listener
                log.error("redis_change_local_failed", error=str(exc), removed=change.removed)
            self._call(self.on_block, None, change.removed)
        elif change.record is not None:
            await self.local.put_number(change.record)
            self._call(self.on_number, change.record)
        elif change.optout is not None:
            o = change.optout
            if change.optout_removed:
                await self.local.remove_optout(o.campaign, o.recipient)
            else:
                await self.local.add_optout(o)
            self._call(self.on_optout, o, change.optout_removed)
        elif change.calling:
            await self.local.remember_captcha_pass(change.calling, change.scope, change.until)
            self._call(self.on_captcha, change.calling, change.scope, change.until)
        else:
            return
        self.stats["changes_applied"] += 1

    @staticmethod
    def _call(fn: Callable[..., Any], *args: Any) -> None:
        try:
            fn(*args)
        except Exception:  # noqa: BLE001 - a bad rule from another node must not stop this one
            log.exception("redis_callback_failed", callback=getattr(fn, "__name__", repr(fn)))

    # --- shared writes ---------------------------------------------------------------------------
    async def _share(self, op: Op) -> None:
        if self._up:
            try:
                await self._apply(op)
                return
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                self._mark_down(exc)
        self._queue.append(op)
        while len(self._queue) > self.retry_max:
            dropped = self._queue.popleft()
            self.stats["dropped_writes"] += 1
            log.error("redis_write_dropped", op=dropped[0], reason="outage queue full", queue=self.retry_max)

    async def _apply(self, op: Op) -> None:
        kind, payload = op
        pipe = self.client.pipeline(transaction=True)
        if kind == "add_block":
            rule: BlockRule = payload
            px = None
            if rule.expires_at is not None:
                px = int((max(rule.expires_at - self.clock(), 0.0) + BLOCK_GRACE) * 1000)
            pipe.set(self._k_block(rule.id), _enc.encode(rule), px=px)
            pipe.zadd(f"{self.ns}:blocks", {rule.id: rule.created_at})
            change = (self.channels[0], _enc.encode(Change(self.node, rule=rule)))
        elif kind == "remove_block":
            pipe.delete(self._k_block(payload))
            pipe.zrem(f"{self.ns}:blocks", payload)
            change = (self.channels[0], _enc.encode(Change(self.node, removed=payload)))
        elif kind == "put_number":
            record: NumberRecord = payload
            pipe.hset(self._k_num(record.number), mapping={"state": record.state.value, "doc": _enc.encode(record)})
            pipe.sadd(f"{self.ns}:numbers", record.number)
            change = (self.channels[1], _enc.encode(Change(self.node, record=record)))
        elif kind in ("add_optout", "remove_optout"):
            o: OptOut = payload
            field = f"{o.campaign}|{o.recipient}"
            if kind == "add_optout":
                pipe.hset(f"{self.ns}:optouts", field, _enc.encode(o))
            else:
                pipe.hdel(f"{self.ns}:optouts", field)
            change = (self.channels[0], _enc.encode(Change(self.node, optout=o, optout_removed=kind == "remove_optout")))
        else:  # captcha
            calling, scope, until = payload
            px = int((max(until - self.clock(), 0.0) + CAPTCHA_GRACE) * 1000)
            pipe.set(self._k_captcha(calling, scope), repr(until), px=px)
            pipe.zadd(self._k_captchas, {_enc.encode([calling, scope]): until})
            change = (self.channels[2], _enc.encode(Change(self.node, calling=calling, scope=scope, until=until)))
        if self.cluster:
            # A cluster pipeline refuses PUBLISH: the keys commit first, then the change is announced (a node
            # that misses the message still converges at its next resync).
            await pipe.execute()
            await self.client.publish(*change)
        else:
            pipe.publish(*change)
            await pipe.execute()
        await self._confirm()

    async def _confirm(self) -> None:
        """Raise NotReplicated unless a replica has every write so far (no-op without Sentinel replicas)."""
        if not self._replicas:
            return
        try:
            acked = await self.client.wait(self._replicas, self._wait_ms)
        except ResponseError as exc:  # WAIT refused (e.g. on a replica): treat as unconfirmed
            raise NotReplicated(str(exc)) from exc
        if acked < self._replicas:
            raise NotReplicated(f"write confirmed by {acked} of {self._replicas} replicas")

    # --- shared reads ----------------------------------------------------------------------------
    async def _redis_blocks(self) -> list[BlockRule]:
        ids = [i.decode() if isinstance(i, bytes) else i for i in await self.client.zrange(f"{self.ns}:blocks", 0, -1)]
        rules: list[BlockRule] = []
        gone: list[str] = []
        for start in range(0, len(ids), MGET_CHUNK):
            chunk = ids[start:start + MGET_CHUNK]
            docs = await self.client.mget([self._k_block(i) for i in chunk])
            for rule_id, doc in zip(chunk, docs):
                if doc is None:
                    gone.append(rule_id)  # the key's TTL ran out
                else:
                    rules.append(_dec_block.decode(doc))
        if gone:
            await self.client.zrem(f"{self.ns}:blocks", *gone)
        rules.sort(key=lambda r: (r.created_at, r.id))
        return rules

    async def _redis_passes(self) -> list[tuple[str, str, float]]:
        """Live captcha passes (calling, scope, until); expired members are pruned on the way."""
        now = self.clock()
        await self.client.zremrangebyscore(self._k_captchas, "-inf", now)
        out: list[tuple[str, str, float]] = []
        for member, until in await self.client.zrangebyscore(self._k_captchas, now, "+inf", withscores=True):
            try:
                calling, scope = _dec_pass.decode(member)
            except msgspec.DecodeError:
                continue
            out.append((calling, scope, float(until)))
        return out

    async def _redis_numbers(self) -> list[NumberRecord]:
        numbers = sorted(n.decode() if isinstance(n, bytes) else n for n in await self.client.smembers(f"{self.ns}:numbers"))
        out: list[NumberRecord] = []
        for start in range(0, len(numbers), MGET_CHUNK):
            pipe = self.client.pipeline(transaction=False)
            for n in numbers[start:start + MGET_CHUNK]:
                pipe.hget(self._k_num(n), "doc")
            out += [_dec_number.decode(doc) for doc in await pipe.execute() if doc is not None]
        return out

    async def _read(self, shared: Callable[[], Any], local: Callable[[], Any]) -> Any:
        if self._up:
            try:
                return await shared()
            except (RedisError, OSError, asyncio.TimeoutError) as exc:
                self._mark_down(exc)
        return await local()

    # --- rates -----------------------------------------------------------------------------------
    async def add_rate_hits(self, hits: list[RateHit]) -> list[BucketCounts]:
        """Add hits to the shared buckets and return each hit's (prev, cur) all-node counts. Raises RedisError."""
        out: list[BucketCounts] = []
        route = f"{self.ns}:rate"
        for start in range(0, len(hits), SCRIPT_CHUNK):
            chunk = hits[start:start + SCRIPT_CHUNK]
            lines = []
            for h in chunk:
                key = h.key if "\n" not in h.key else h.key.replace("\n", " ")
                lines.append(f"{h.kind}\t{h.window:g}\t{h.idx}\t{h.count}\t{int(h.window * 2000)}\t{key}")
            reply = await self._script(keys=[route], args=[self.ns, "\n".join(lines)])
            text = reply.decode() if isinstance(reply, bytes) else str(reply)
            for pair in text.split(";") if text else ():
                prev, _, cur = pair.partition(",")
                out.append(BucketCounts(int(prev), int(cur)))
        return out

    async def _batcher(self) -> None:
        while not self._closed:
            await asyncio.sleep(self.rate_batch)
            await self._send_batch()

    async def _send_batch(self) -> None:
        if not self._up:
            return
        hits = self.rates.take()
        try:
            if hits:
                counts = await self.add_rate_hits(hits)
                await self._confirm()
                self.rates.apply(hits, counts)
                self.stats["rate_batches"] += 1
                self.stats["rate_hits_sent"] += len(hits)
                hits = []
            if self._stream:
                await self._send_stream()
        except (RedisError, OSError, asyncio.TimeoutError) as exc:
            self.rates.restore(hits)  # sent again after the reconnect
            self._mark_down(exc)

    async def _send_stream(self) -> None:
        batch = list(self._stream)
        self._stream.clear()
        pipe = self.client.pipeline(transaction=False)
        for a in batch:
            pipe.xadd(f"{self.ns}:activities", {"id": a.id, "node": a.node or self.node, "doc": _enc.encode(a)},
                      maxlen=self.activity_stream_max, approximate=True)
        try:
            await pipe.execute()
        except (RedisError, OSError, asyncio.TimeoutError):
            self._stream.extendleft(reversed(batch))
            self._trim_stream()
            raise
        self.stats["stream_added"] += len(batch)

    def _trim_stream(self) -> None:
        while len(self._stream) > STREAM_BUFFER:
            self._stream.popleft()
            self.stats["stream_dropped"] += 1

    # --- activities: local -----------------------------------------------------------------------
    def queue_activity(self, activity: Activity) -> None:
        self.local.queue_activity(activity)
        if self.activity_stream and (activity.ended_at is not None or activity.final_status >= 300):
            self._stream.append(msgspec.structs.replace(activity, evidence=list(activity.evidence)))
            self._trim_stream()

    async def append_activity(self, activity: Activity) -> None:
        self.queue_activity(activity)

    async def update_activity(self, activity: Activity) -> None:
        self.queue_activity(activity)

    async def get_activity(self, activity_id: str) -> Activity | None:
        return await self.local.get_activity(activity_id)

    async def query_activities(self, query: ActivityQuery) -> ActivityPage:
        return await self.local.query_activities(query)

    async def set_activity_flagged(self, activity_id: str, flagged: bool = True) -> Activity | None:
        return await self.local.set_activity_flagged(activity_id, flagged)

    async def purge_activities(self, before: float) -> int:
        return await self.local.purge_activities(before)

    # --- blocks ----------------------------------------------------------------------------------
    async def list_blocks(self) -> list[BlockRule]:
        return await self._read(self._redis_blocks, self.local.list_blocks)

    async def get_block(self, rule_id: str) -> BlockRule | None:
        async def shared() -> BlockRule | None:
            doc = await self.client.get(self._k_block(rule_id))
            return _dec_block.decode(doc) if doc is not None else None

        return await self._read(shared, lambda: self.local.get_block(rule_id))

    async def add_block(self, rule: BlockRule) -> None:
        await self.local.add_block(rule)
        await self._share(("add_block", rule))

    async def remove_block(self, rule_id: str) -> bool:
        existed = await self.get_block(rule_id) is not None
        try:
            existed = await self.local.remove_block(rule_id) or existed
        except Exception as exc:  # noqa: BLE001 - the shared copy is what counts
            log.error("store_local_remove_failed", error=str(exc), rule=rule_id)
        if existed:
            await self._share(("remove_block", rule_id))
        return existed

    async def expire_blocks(self, now: float) -> list[str]:
        due = {r.id for r in await self.list_blocks() if r.expires_at is not None and r.expires_at <= now}
        due.update(await self.local.expire_blocks(now))
        for rule_id in sorted(due):
            await self._share(("remove_block", rule_id))
        return sorted(due)

    # --- numbers ---------------------------------------------------------------------------------
    async def get_number(self, number: str) -> NumberRecord | None:
        async def shared() -> NumberRecord | None:
            doc = await self.client.hget(self._k_num(number), "doc")
            return _dec_number.decode(doc) if doc is not None else None

        return await self._read(shared, lambda: self.local.get_number(number))

    async def put_number(self, record: NumberRecord) -> None:
        record = _dec_number.decode(_enc.encode(record))  # the caller keeps mutating its own
        await self.local.put_number(record)
        await self._share(("put_number", record))

    async def list_numbers(self) -> list[NumberRecord]:
        return await self._read(self._redis_numbers, self.local.list_numbers)

    # --- captcha passes --------------------------------------------------------------------------
    async def remember_captcha_pass(self, calling: str, scope: str, until: float) -> None:
        await self.local.remember_captcha_pass(calling, scope, until)
        await self._share(("captcha", (calling, scope, until)))

    async def list_captcha_passes(self, now: float, limit: int) -> list[tuple[str, str, float]]:
        """This node's copy (passes shared by other nodes are written into it as they arrive)."""
        return await self.local.list_captcha_passes(now, limit)

    async def captcha_passed(self, calling: str, scope: str, now: float) -> bool:
        async def shared() -> bool:
            raw = await self.client.get(self._k_captcha(calling, scope))
            return raw is not None and float(raw) > now

        return await self._read(shared, lambda: self.local.captcha_passed(calling, scope, now))

    def synced_passes(self, now: float) -> list[tuple[str, str, float]]:
        """Captcha passes (calling, scope, until) read from Redis at the last sync and still valid at `now`:
        a daemon attaching after `open` loads them, so a caller who passed on another node before this one
        started is not asked again."""
        return [p for p in self._synced_passes if p[2] > now]

    # --- opt-outs -------------------------------------------------------------------------------
    async def add_optout(self, optout: OptOut) -> None:
        await self.local.add_optout(optout)
        await self._share(("add_optout", optout))

    async def remove_optout(self, campaign: str, recipient: str) -> bool:
        existed = await self.local.remove_optout(campaign, recipient)
        await self._share(("remove_optout", OptOut(campaign, recipient, 0.0)))
        return existed

    async def list_optouts(self) -> list[OptOut]:
        async def shared() -> list[OptOut]:
            docs = await self.client.hvals(f"{self.ns}:optouts")
            return sorted((_dec_optout.decode(d) for d in docs), key=lambda o: (o.at, o.campaign, o.recipient))

        return await self._read(shared, self.local.list_optouts)

    # --- lifecycle -------------------------------------------------------------------------------
    # --- console users: local (each node that serves a console keeps its own) ---------------------
    async def put_user(self, user: ConsoleUser) -> None:
        await self.local.put_user(user)

    async def get_user(self, name: str) -> ConsoleUser | None:
        return await self.local.get_user(name)

    async def list_users(self) -> list[ConsoleUser]:
        return await self.local.list_users()

    async def remove_user(self, name: str) -> bool:
        return await self.local.remove_user(name)

    async def flush(self) -> None:
        await self._send_batch()
        await self.local.flush()

    async def close(self) -> None:
        if self._closed:
            return
        await self._send_batch()
        self._closed = True
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            try:
                await t
            except asyncio.CancelledError:
                pass
        if self._queue:
            log.error("redis_closed_with_unshared", count=len(self._queue), node=self.node)
        try:
            await self.client.aclose()
        except (RedisError, OSError):
            pass
        await self.local.close()

    def health(self) -> StoreHealth:
        h = self.local.health()
        h.backend = "redis"
        h.degraded = h.degraded or not self._up
        h.last_error = self.last_error or h.last_error
        h.write_errors += self.stats["errors"]
        h.dropped_writes += self.stats["dropped_writes"]
        h.retry_queue += len(self._queue)
        return h

    def redis_stats(self) -> dict[str, int]:
        """Plain numbers for metrics: connection state, outage queue, pub/sub and rate batching."""
        out = dict(self.stats)
        out["up"] = int(self._up)
        out["queued_writes"] = len(self._queue)
        out["stream_buffered"] = len(self._stream)
        out["rate_cache_keys"] = len(self.rates)
        out["rate_cache_evictions"] = self.rates.evictions
        out["rate_hits_dropped"] = self.rates.dropped
        out["rate_hits_pending"] = self.rates.pending
        return out


_COUNTERS = {
    "outages": "Redis outages seen (redis_unavailable)",
    "errors": "Redis commands that failed",
    "dropped_writes": "Shared writes lost because the outage queue was full",
    "replayed_writes": "Shared writes replayed after an outage",
    "resyncs": "Full resyncs of blocks and numbers from Redis",
    "changes_received": "Pub/sub change messages received",
    "changes_applied": "Changes from other nodes applied locally",
    "rate_batches": "Rate batches sent to Redis",
    "rate_hits_sent": "Rate bucket increments sent to Redis",
    "rate_cache_evictions": "All-node rate entries evicted by the cache cap",
    "rate_hits_dropped": "Rate hits not shared because the queue was full",
    "stream_added": "Activities appended to the Redis stream",
    "stream_dropped": "Activities not streamed because the buffer was full",
}
_GAUGES = {
    "up": "1 while Redis answers",
    "queued_writes": "Shared writes waiting for Redis",
    "stream_buffered": "Activities waiting for XADD",
    "rate_cache_keys": "All-node rate entries cached",
    "rate_hits_pending": "Rate hits waiting for the next batch",
}


class RedisCollector(Collector):
    """Prometheus view of RedisStore.redis_stats(): `registry.register(RedisCollector(store))`."""

    def __init__(self, store: RedisStore) -> None:
        self.store = store

    def collect(self) -> Iterator[CounterMetricFamily | GaugeMetricFamily]:
        stats = self.store.redis_stats()
        for name, doc in _COUNTERS.items():
            c = CounterMetricFamily(f"edge_redis_{name}", doc, labels=["node"])
            c.add_metric([self.store.node], stats[name])
            yield c
        for name, doc in _GAUGES.items():
            g = GaugeMetricFamily(f"edge_redis_{name}", doc, labels=["node"])
            g.add_metric([self.store.node], stats[name])
            yield g
