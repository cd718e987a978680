"""Daemon wiring of texts, chats and forms: the messaging core next to the proxy, opt-outs to and from
the store, held messages for the admin API, the screening API's own listener, and metrics.

Kept apart from edge.daemon.lifecycle so the daemon calls a handful of functions, each small.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import time
from collections.abc import Iterable
from typing import Any

import msgspec
import structlog
from aiohttp import web
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, HistogramMetricFamily

from edge.call.activity import new_activity_id
from edge.call.proxy import Histogram
from edge.config import EdgeConfig, host_port
from edge.dialplan.load import DialplanError
from edge.messaging.optout import OptOut
from edge.messaging.rules import ContentRules
from edge.messaging.schema import MessagingPlan, compile_messaging
from edge.messaging.screen import ScreenRequest, Screener, request_problem
from edge.messaging.service import Messaging, OptOutChange

log = structlog.get_logger("edge.messaging")
_enc = msgspec.json.Encoder()


def compile_plan(cfg: EdgeConfig, files: dict[str, Any]) -> MessagingPlan:
    """The dialplans' messaging sections, or DialplanError with every problem (reload stays all-or-nothing)."""
    plan, errors = compile_messaging(files, cfg.messaging)
    if errors:
        raise DialplanError(errors)
    return plan


async def start_messaging(daemon: Any, plan: MessagingPlan) -> Messaging | None:
    """Create the messaging core, load the stored opt-outs and hand it to the proxy
    (`[messaging] enabled = false`: texts get the call pipeline only, as before)."""
    cfg: EdgeConfig = daemon.cfg
    if not cfg.messaging.enabled:
        log.info("messaging_disabled")
        return None
    m = Messaging(cfg.messaging, plan, daemon.engine.rules)
    m.load_optouts(await daemon.store.list_optouts())
    daemon.proxy.messaging = m
    store = daemon.store
    if hasattr(store, "on_optout"):  # redis: other nodes' opt-outs reach this node's book
        store.on_optout = lambda o, removed: _remote_optout(m, o, removed)
    log.info("messaging_started", campaigns=len(m.registry), optouts=len(m.book))
    return m


def _remote_optout(m: Messaging, o: OptOut, removed: bool) -> None:
    m.apply_change(OptOutChange("remove" if removed else "add", o))
    log.info("optout_shared", campaign=o.campaign, recipient=o.recipient, removed=removed)


def flush_messaging(daemon: Any) -> None:
    """After each SIP flush: persist (and share) the opt-outs the core recorded."""
    m: Messaging | None = daemon.proxy.messaging if daemon.proxy is not None else None
    if m is None or not m.optout_changes:
        return
    changes, m.optout_changes = m.optout_changes, []
    for c in changes:
        o = c.optout
        log.info("optout_recorded" if c.op == "add" else "optin_recorded", campaign=o.campaign, recipient=o.recipient,
                 keyword=o.keyword)
        if c.op == "add":
            daemon._spawn(daemon.store.add_optout(o))
        else:
            daemon._spawn(daemon.store.remove_optout(o.campaign, o.recipient))


class HeldView:
    """What the admin API sees of held messages: list, release (deliver to the PBX), drop."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon

    @property
    def _m(self) -> Messaging | None:
        proxy = self.daemon.proxy
        return proxy.messaging if proxy is not None else None

    def list(self, customer: str = "") -> list[dict[str, Any]]:
        m = self._m
        if m is None:
            return []
        return [{"id": h.id, "activity_id": h.id, "customer": h.customer, "sender": h.sender, "recipient": h.recipient,
                 "received_at": h.received_at, "reason": h.reason, "body": h.body} for h in m.held.list(customer)]

    def release(self, held_id: str) -> bool:
        ok = self.daemon.proxy.release_held(held_id, time.time())
        if ok:
            self.daemon.hub.flush()
            log.info("held_message_released", activity_id=held_id)
        return ok

    def drop(self, held_id: str) -> bool:
        m = self._m
        ok = m is not None and m.held.take(held_id) is not None
        if ok:
            log.info("held_message_dropped", activity_id=held_id)
        return ok

    def optouts(self) -> list[OptOut]:
        m = self._m
        return m.book.all() if m is not None else []


# --- the screening API (chats and forms) -----------------------------------------------------------
class ScreenApi:
    """`POST /v1/screen` on its own listener, per-customer API keys (their SHA-256 in config)."""

    def __init__(self, daemon: Any, screener: Screener) -> None:
        self.daemon = daemon
        self.screener = screener
        self.keys = [(bytes.fromhex(c.key_sha256.lower()), c.customer) for c in daemon.cfg.messaging.screening_api.clients]
        self.refused: dict[str, int] = {}
        self.latency = Histogram((0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25))
        self.max_body = daemon.cfg.messaging.screening_api.max_body

    def _customer(self, request: web.Request) -> str | None:
        header = request.headers.get("Authorization", "")
        scheme, _, given = header.partition(" ")
        key = given.strip() if scheme.lower() == "bearer" else request.headers.get("X-Api-Key", "")
        if not key:
            return None
        digest = hashlib.sha256(key.encode()).digest()
        found = None
        for h, customer in self.keys:
            if hmac.compare_digest(h, digest):
                found = customer
        return found

    def _refuse(self, status: int, reason: str, kind: str) -> web.Response:
        self.refused[kind] = self.refused.get(kind, 0) + 1
        return web.Response(body=_enc.encode({"error": reason}), status=status, content_type="application/json")

    async def screen(self, request: web.Request) -> web.Response:
        t0 = time.perf_counter()
        customer = self._customer(request)
        if customer is None:
            return self._refuse(401, "missing or unknown API key", "unauthorized")
        if request.content_length is not None and request.content_length > self.max_body:
            return self._refuse(413, f"body larger than {self.max_body} bytes", "too_large")
        chunks: list[bytes] = []
        size = 0
        try:
            while True:  # read() may return part of the body: loop to the end, never past the cap
                chunk = await request.content.read(self.max_body + 1 - size)
                if not chunk:
                    break
                chunks.append(chunk)
                size += len(chunk)
                if size > self.max_body:
                    return self._refuse(413, f"body larger than {self.max_body} bytes", "too_large")
        except (asyncio.IncompleteReadError, ConnectionError):
            return self._refuse(400, "body could not be read", "bad_body")
        raw = b"".join(chunks)
        try:
            req = msgspec.json.decode(raw, type=ScreenRequest)
        except msgspec.ValidationError as exc:
            return self._refuse(422, str(exc), "invalid")
        except msgspec.DecodeError as exc:
            return self._refuse(400, f"invalid JSON: {exc}", "bad_json")
        problem = request_problem(req)
        if problem:
            return self._refuse(422, problem, "invalid")
        now = time.time()
        result, activity = self.screener.screen(req, customer, new_activity_id(now, self.daemon.cfg.daemon.node), now)
        self.daemon.store.queue_activity(activity)
        self.latency.observe(time.perf_counter() - t0)
        log.info("screen_decided", activity_id=activity.id, channel=req.channel, customer=customer,
                 decision=result.decision, score=result.score, rule_id=activity.rule_id)
        return web.Response(body=_enc.encode(result), content_type="application/json")

    def app(self) -> web.Application:
        app = web.Application(client_max_size=self.max_body + 1)
        app.router.add_post("/v1/screen", self.screen)
        return app


async def start_screen_api(daemon: Any) -> tuple[web.AppRunner, ScreenApi] | None:
    """Its own listener (never the admin one); None when `[messaging.screening_api] enabled = false`."""
    from disposable_email_domains import blocklist

    cfg: EdgeConfig = daemon.cfg
    api_cfg = cfg.messaging.screening_api
    if not api_cfg.enabled:
        return None
    screener = Screener(api_cfg, daemon.engine.rules, ContentRules(daemon.engine.rules), frozenset(blocklist),
                        frozenset(d.lower() for d in cfg.messaging.shorteners), cfg.daemon.node)
    api = ScreenApi(daemon, screener)
    runner = web.AppRunner(api.app(), access_log=None)
    await runner.setup()
    host, port = host_port(api_cfg.listen, 8082)
    await web.TCPSite(runner, host, port).start()
    log.info("screening_api_started", listen=api_cfg.listen, customers=len({c for _, c in api.keys}))
    return runner, api


class MessagingCollector:
    """Prometheus view of the messaging core and the screening API, read at scrape time."""

    def __init__(self, daemon: Any) -> None:
        self.daemon = daemon

    def describe(self) -> Iterable:
        return []

    def collect(self) -> Iterable:
        proxy = self.daemon.proxy
        m: Messaging | None = proxy.messaging if proxy is not None else None
        if m is not None:
            st = m.stats()
            c = CounterMetricFamily("edge_messages_inbound", "inbound text messages by decision", labels=["decision"])
            for k, v in st["inbound_by_decision"].items():  # type: ignore[union-attr]
                c.add_metric([k], v)
            yield c
            c = CounterMetricFamily("edge_messages_outbound", "outbound text messages by A2P action", labels=["action"])
            for k, v in st["outbound_by_action"].items():  # type: ignore[union-attr]
                c.add_metric([k], v)
            yield c
            c = CounterMetricFamily("edge_messages_keywords", "opt-out/opt-in/help keywords received", labels=["keyword"])
            for k, v in st["keywords"].items():  # type: ignore[union-attr]
                c.add_metric([k], v)
            yield c
            yield GaugeMetricFamily("edge_messages_optouts", "opt-outs in force", value=st["optouts"])  # type: ignore[arg-type]
            yield GaugeMetricFamily("edge_messages_held", "messages held for review", value=st["held"])  # type: ignore[arg-type]
            yield GaugeMetricFamily("edge_messages_campaigns", "registered A2P campaigns", value=st["campaigns"])  # type: ignore[arg-type]
        api: ScreenApi | None = getattr(self.daemon, "screen_api", None)
        if api is not None:
            c = CounterMetricFamily("edge_screen_requests", "chat/form screenings by decision", labels=["decision"])
            for k, v in api.screener.by_decision.items():
                c.add_metric([k], v)
            yield c
            c = CounterMetricFamily("edge_screen_refused", "screening requests refused before screening", labels=["reason"])
            for k, v in api.refused.items():
                c.add_metric([k], v)
            yield c
            h = api.latency
            buckets = [(str(b), n) for b, n in zip(h.bounds, h.cumulative())] + [("+Inf", h.count)]
            yield HistogramMetricFamily("edge_screen_latency_seconds", "time to answer a screening", buckets=buckets,
                                        sum_value=h.total)
