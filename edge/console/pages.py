"""Console routes on the admin listener: the page shell, live activities (SSE), dashboard figures,
rules with hit counts, and voicemail audio. Everything here is scoped by the caller's Principal.

The pages are static files (edge/console/static) whose script renders data with textContent and
DOM nodes only, so attacker-controlled caller names and numbers are never parsed as HTML.
"""

from __future__ import annotations

import asyncio
import collections
from pathlib import Path
from typing import Any

import msgspec
import structlog
from aiohttp import web

from edge.call.activity import Activity
from edge.console import access
from edge.console.auth import CONSOLE, login, logout, me, static_dir, who
from edge.daemon.admin import CTX, AdminContext, InvalidInput, NotFound, notify_rules_changed
from edge.store.protocol import MAX_PAGE, ActivityQuery

log = structlog.get_logger()

MAX_STREAMS = 64  # live activity streams per listener
POLL = 1.0  # seconds between store polls of one scope's feed
KEEPALIVE = 15.0  # a comment line this often keeps proxies from closing an idle stream
LIVE_WINDOW = 300.0  # an activity changed within this long after it arrived is re-sent
LIVE_ROWS = 200  # newest activities of the window a feed compares per poll
MAX_QUEUED = 64  # chunks a slow stream may fall behind before it is dropped
SCAN_MAX = 20_000  # activities a dashboard or rules view reads at most
WINDOWS = {"1h": (3600.0, 60.0), "1d": (86400.0, 900.0)}  # window -> (span, bucket)
_enc = msgspec.json.Encoder()
STOPPING = web.AppKey("console_stopping", asyncio.Event)
FEEDS = web.AppKey("console_feeds", dict)


class DryRunRequest(msgspec.Struct, forbid_unknown_fields=True):
    dry_run: bool


async def index(request: web.Request) -> web.FileResponse:
    """The page shell (authenticated: without a session `authenticate` redirects to /login)."""
    return web.FileResponse(static_dir() / "index.html", headers={"Cache-Control": "no-store"})


def _scoped(request: web.Request, **kw: Any) -> ActivityQuery:
    p = who(request)
    return ActivityQuery(customer="" if p.operator else p.customer, **kw)


async def _scan(ctx: AdminContext, query: ActivityQuery) -> tuple[list[Activity], bool]:
    """Newest first, at most SCAN_MAX; True when the window held more."""
    out: list[Activity] = []
    query = msgspec.structs.replace(query, limit=MAX_PAGE)
    while len(out) < SCAN_MAX:
        page = await ctx.store.query_activities(query)
        out += page.items
        if not page.next_cursor:
            return out, False
        query = msgspec.structs.replace(query, cursor=page.next_cursor)
    return out[:SCAN_MAX], True


class ActivityFeed:
    """One store poll per second for one scope (a customer, or '' for operators), fanned out to every open
    stream of that scope: the cost of live pages does not grow with the number of viewers."""

    def __init__(self, ctx: AdminContext, customer: str, stopping: asyncio.Event) -> None:
        self.ctx = ctx
        self.customer = customer
        self.stopping = stopping
        self.subscribers: set[asyncio.Queue[bytes]] = set()
        self.latest: dict[str, bytes] = {}  # activity id -> its last event, within the live window
        self.task: asyncio.Task[None] | None = None

    def subscribe(self) -> asyncio.Queue[bytes]:
        q: asyncio.Queue[bytes] = asyncio.Queue(maxsize=MAX_QUEUED)
        if self.latest:  # what arrived between the page's load and this stream
            q.put_nowait(b"".join(self.latest.values()))
        self.subscribers.add(q)
        if self.task is None:
            self.task = asyncio.get_running_loop().create_task(self._run(), name=f"console-feed-{self.customer}")
        return q

    def unsubscribe(self, q: asyncio.Queue[bytes]) -> None:
        self.subscribers.discard(q)

    def wake(self) -> None:
        for q in self.subscribers:
            try:
                q.put_nowait(b"")
            except asyncio.QueueFull:
                pass  # it has data to read, and will see the stop then

    async def _run(self) -> None:
        try:
            while self.subscribers and not self.stopping.is_set():
                now = self.ctx.clock()
                query = ActivityQuery(customer=self.customer, since=now - LIVE_WINDOW, limit=LIVE_ROWS)
                page = await self.ctx.store.query_activities(query)
                out = []
                for a in reversed(page.items):
                    event = b"event: activity\ndata: " + _enc.encode(a) + b"\n\n"
                    if self.latest.get(a.id) != event:
                        out.append(event)
                        self.latest[a.id] = event
                live = {a.id for a in page.items}
                self.latest = {k: v for k, v in self.latest.items() if k in live}
                if out:
                    chunk = b"".join(out)
                    for q in list(self.subscribers):
                        try:
                            q.put_nowait(chunk)
                        except asyncio.QueueFull:
                            self.subscribers.discard(q)  # a stream that does not read is dropped (it reconnects)
                try:
                    await asyncio.wait_for(self.stopping.wait(), POLL)
                except asyncio.TimeoutError:
                    pass
        except Exception:  # noqa: BLE001 - a store failure ends the streams; browsers reconnect
            log.exception("console_feed_failed", customer=self.customer)
            self.subscribers.clear()
        finally:
            self.task = None
            self.wake()


async def events(request: web.Request) -> web.StreamResponse:
    """Server-sent events: each new or changed activity of the caller's scope, as `event: activity`."""
    console = request.app[CONSOLE]
    stopping = request.app[STOPPING]
    if console.streams >= MAX_STREAMS:
        raise web.HTTPServiceUnavailable(reason="too many live streams")
    p = who(request)
    feeds = request.app[FEEDS]
    customer = "" if p.operator else p.customer
    feed = feeds.get(customer)
    if feed is None:
        feed = feeds[customer] = ActivityFeed(request.app[CTX], customer, stopping)
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-store"})
    await response.prepare(request)
    console.streams += 1
    q = feed.subscribe()
    try:
        await response.write(b"retry: 2000\n\n")
        while not stopping.is_set():
            try:
                chunk = await asyncio.wait_for(q.get(), KEEPALIVE)
            except asyncio.TimeoutError:
                chunk = b": keepalive\n\n"
            if stopping.is_set() or (q not in feed.subscribers and q.empty()):
                break
            if chunk:
                await response.write(chunk)
    except (ConnectionResetError, asyncio.CancelledError):
        pass
    finally:
        feed.unsubscribe(q)
        console.streams -= 1
    return response


def _window(request: web.Request) -> tuple[str, float, float]:
    name = request.query.get("window", "1h")
    if name not in WINDOWS:
        raise InvalidInput(f"invalid window {name!r}: expected 1h or 1d")
    span, bucket = WINDOWS[name]
    return name, span, bucket


def _top(counter: collections.Counter[str], n: int = 10) -> list[list[Any]]:
    return [[k, v] for k, v in counter.most_common(n)]


async def stats(request: web.Request) -> web.Response:
    """Dashboard figures from the activities log: calls per bucket by decision, STIR results, top blocked
    callers and names, Spam Detective score distribution."""
    ctx = request.app[CTX]
    name, span, bucket = _window(request)
    now = ctx.clock()
    start = now - span
    rows, truncated = await _scan(ctx, _scoped(request, since=start))
    n_buckets = int(span // bucket)
    per_decision: dict[str, list[int]] = {}
    stir: collections.Counter[str] = collections.Counter()
    callers: collections.Counter[str] = collections.Counter()
    names: collections.Counter[str] = collections.Counter()
    scores = [0] * 11  # 0-9, 10-19, ... 90-99, 100+
    for a in rows:
        i = min(n_buckets - 1, max(0, int((a.received_at - start) // bucket)))
        per_decision.setdefault(a.decision or "unknown", [0] * n_buckets)[i] += 1
        stir[f"{a.stir_status or 'none'}{(' ' + a.stir_attestation) if a.stir_attestation else ''}"] += 1
        if a.decision == "reject":
            callers[a.calling_number or "anonymous"] += 1
            if a.cnam:
                names[a.cnam] += 1
        scores[min(10, max(0, int(a.score // 10)))] += 1
    return web.json_response({
        "window": name, "start": start, "bucket": bucket, "total": len(rows), "truncated": truncated,
        "per_decision": per_decision, "stir": _top(stir, 20), "top_callers": _top(callers),
        "top_names": _top(names), "scores": scores,
    })


async def rules(request: web.Request) -> web.Response:
    """The caller's rules (runtime ones it may change, dialplan ones read-only) with decisions since start
    (policy counters) and the last hit in the log of the last day."""
    ctx = request.app[CTX]
    p = who(request)
    runtime = [r for r in await ctx.store.list_blocks() if access.sees_rule(p, r, ctx.customer_of)]
    static = [r for r in ctx.plan_rules() if access.sees_rule(p, r, ctx.customer_of)]
    hits = ctx.rule_hits()
    last: dict[str, float] = {}
    ids = {r.id for r in runtime + static}
    if ids:
        rows, _ = await _scan(ctx, _scoped(request, since=ctx.clock() - WINDOWS["1d"][0]))
        for a in rows:  # newest first: the first seen is the last hit
            if a.rule_id in ids and a.rule_id not in last:
                last[a.rule_id] = a.received_at
    return web.json_response({"rules": [{**msgspec.to_builtins(r), "hits": hits.get(r.id, 0), "last_hit": last.get(r.id),
                                         "editable": r.source == "runtime"} for r in runtime + static]})


async def set_dry_run(request: web.Request) -> web.Response:
    ctx = request.app[CTX]
    p = who(request)
    rule_id = request.match_info["id"]
    rule = await ctx.store.get_block(rule_id)
    if rule is None or not access.sees_rule(p, rule, ctx.customer_of):
        raise NotFound(f"unknown block rule {rule_id!r}")
    access.require_editor(p)
    try:
        req = msgspec.json.decode(await request.read(), type=DryRunRequest)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise InvalidInput(f"expected {{\"dry_run\": true|false}}: {exc}") from None
    new = msgspec.structs.replace(rule, dry_run=req.dry_run)
    await ctx.store.add_block(new)
    await notify_rules_changed(ctx, new, rule_id)
    log.info("block_dry_run_set", rule_id=rule_id, dry_run=req.dry_run)
    return web.json_response(msgspec.to_builtins(new))


async def my_numbers(request: web.Request) -> web.Response:
    """The caller's numbers: dialplan numbers of its customer and lifecycle records naming it, each with its
    lifecycle status and residual traffic per day since release within the quiet window (for the chart)."""
    ctx = request.app[CTX]
    p = who(request)
    now = ctx.clock()
    numbers = {n: c for n, c in ctx.plan_numbers() if p.operator or c == p.customer}
    for s in ctx.lifecycle.statuses(now):
        if s.number not in numbers and access.owns_number(p, s.number, s.customer, ctx.customer_of):
            numbers[s.number] = s.customer
    out = []
    for number, customer in sorted(numbers.items()):
        status = ctx.lifecycle.status(number, now)
        # The lifecycle keeps per-day counts for its quiet window (the days that decide eligibility).
        daily = [[d, c] for d, c in status.residual_per_day.items()] if status is not None else []
        out.append({"number": number, "customer": customer,
                    "state": status.state.value if status is not None else "assigned",
                    "status": msgspec.to_builtins(status) if status is not None else None, "residual_daily": daily})
    return web.json_response({"numbers": out})


async def _voicemail_activity(request: web.Request) -> tuple[AdminContext, Activity]:
    ctx = request.app[CTX]
    activity = await ctx.store.get_activity(request.match_info["id"])
    if activity is None or not access.sees_activity(who(request), activity) or not activity.voicemail_path:
        raise NotFound(f"no voicemail for activity {request.match_info['id']!r}")
    return ctx, activity


async def voicemail_audio(request: web.Request) -> web.StreamResponse:
    _, activity = await _voicemail_activity(request)
    path = Path(activity.voicemail_path)
    if not path.is_file():
        raise NotFound(f"voicemail file of activity {activity.id} is missing")
    headers = {"Content-Type": "audio/wav", "Cache-Control": "no-store"}
    if request.query.get("download") in ("1", "true"):
        headers["Content-Disposition"] = f'attachment; filename="voicemail-{activity.id}.wav"'
    return web.FileResponse(path, headers=headers)


async def voicemail_delete(request: web.Request) -> web.Response:
    ctx, activity = await _voicemail_activity(request)
    p = who(request)
    access.require_editor(p)
    path = Path(activity.voicemail_path)
    path.unlink(missing_ok=True)
    await ctx.store.update_activity(msgspec.structs.replace(activity, voicemail_path=""))
    log.info("voicemail_deleted", activity_id=activity.id, by=p.name)
    return web.json_response({"deleted": activity.id})


async def _stop_streams(app: web.Application) -> None:
    app[STOPPING].set()
    for feed in app[FEEDS].values():
        feed.wake()


def mount(app: web.Application, ctx: AdminContext) -> None:
    app[STOPPING] = asyncio.Event()
    app[FEEDS] = {}
    app.on_shutdown.append(_stop_streams)
    r = app.router
    r.add_get("/", index)
    r.add_get("/login", login)
    r.add_post("/login", login)
    r.add_post("/logout", logout)
    r.add_get("/me", me)
    r.add_get("/console/events", events)
    r.add_get("/console/stats", stats)
    r.add_get("/console/rules", rules)
    r.add_post("/console/rules/{id}/dry-run", set_dry_run)
    r.add_get("/console/numbers", my_numbers)
    r.add_get("/voicemail/{id}/audio", voicemail_audio)
    r.add_delete("/voicemail/{id}", voicemail_delete)
    r.add_static("/static/", static_dir(), follow_symlinks=False)
