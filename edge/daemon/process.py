"""The daemon process: uvloop, signals, reload, drain, systemd notify and watchdog, and the wiring
of store, policy, STIR/SHAKEN, number lifecycle and the admin API around the SIP core.

SIGHUP validates config and dialplans and swaps them in only when both are valid (the running
plan stays in force otherwise; calls in progress keep their plan). SIGTERM/SIGINT drain: new
INVITEs get 503 with Retry-After, calls in progress may finish until `drain_timeout`, then exit 0.
"""

from __future__ import annotations

import asyncio
import gc
import signal
import socket
import time
from pathlib import Path

import structlog
import uvloop
from prometheus_client import CollectorRegistry

from edge.call.admission import Gatekeeper
from edge.call.flood import FloodGuard
from edge.call.overload import OverloadControl
from edge.call.proxy import Proxy
from edge.config import ConfigError, EdgeConfig, load_config, host_port
from edge.daemon.logging import setup_logging
from edge.build import build_info
from edge.daemon.metrics import BuildCollector, EdgeCollector
from edge.daemon.shared_state import attach_shared_state
from edge.daemon.workers import WorkerRole, run_supervisor, worker_config
from edge.daemon.sdnotify import Notifier
from edge.dialplan.load import DialplanError, load_dialplans
from edge.dialplan.plan import Plan
from edge.io.handoff import HandoffReader
from edge.io.rtp_udp import prompt_names
from edge.io.sip_transport import SipHub
from edge.io.tls import listener_errors
from edge.lifecycle.manager import Lifecycle
from edge.sip.affinity import branch_mark
from edge.policy.pipeline import PolicyEngine
from edge.policy.rules import BlockRule
from edge.store.factory import open_store
from edge.store.metrics import StoreCollector
from edge.store.protocol import StateStore
from edge.units import parse_duration

log = structlog.get_logger("edge.daemon")

RELEASED_STATUS = {"404": 404, "410": 410, "intercept": 410}


class Daemon:
    def __init__(self, config_path: str, dialplan_dir: str, worker: WorkerRole | None = None) -> None:
        self.config_path = config_path
        self.dialplan_dir = dialplan_dir
        self.worker = worker  # one of several worker processes under a supervisor (edge.daemon.workers)
        self.cfg: EdgeConfig | None = None
        self.proxy: Proxy | None = None
        self.hub: SipHub | None = None
        self.store: StateStore | None = None
        self.engine: PolicyEngine | None = None
        self.lifecycle: Lifecycle | None = None
        self.fetcher = None
        self.admin_runner = None
        self.metrics_runner = None  # a worker > 0: its own /metrics listener (edge.daemon.workers)
        self.config_admin_enabled = True  # [admin] enabled as configured (a worker > 0 runs no admin API)
        self.registry = CollectorRegistry()
        self.notifier = Notifier()
        self._stop: asyncio.Event | None = None  # created inside the loop
        self._tasks: list[asyncio.Task] = []
        self._fetching: set[asyncio.Task] = set()
        self.reloads = 0
        self.reload_failures = 0
        self.started = time.time()
        self.media = None
        self.screening = None  # the screening B2BUA (sans-IO) and its media driver
        self.media_driver = None
        self.shared = None  # redis shared state (other nodes' blocks, numbers, passes, rates)
        self.guard: FloodGuard | None = None
        self.hep = None
        self.messaging_plan = None  # compiled by load(), swapped in by run()/_reload()
        self.screen_api = None
        self.screen_runner = None
        self.console = None  # edge.console.auth.Console once the admin listener is up

    def load(self) -> tuple[EdgeConfig, Plan, dict]:
        cfg = load_config(self.config_path, [listener_errors])
        self.config_admin_enabled = cfg.admin.enabled
        if self.worker is not None:
            cfg = worker_config(cfg, self.worker.index)
        plan, files = load_dialplans(self.dialplan_dir, {p.name for p in cfg.pbx}, time.time(), prompt_names(cfg.media.prompts_dir))
        from edge.daemon.messaging import compile_plan

        self.messaging_plan = compile_plan(cfg, files)
        return cfg, plan, files

    # -- start -----------------------------------------------------------------------------------
    async def run(self) -> int:
        cfg, plan, files = self.load()
        self.cfg = cfg
        setup_logging(cfg.logging.level, cfg.logging.format)
        Path(cfg.daemon.state_dir).mkdir(parents=True, exist_ok=True)
        self.store = store = await open_store(cfg.store, node=cfg.daemon.node)
        engine = self.engine = PolicyEngine(cfg.policy)
        engine.replace_static_rules(plan.rules)
        now = time.time()
        for rule in await store.list_blocks():
            if rule.expires_at is None or rule.expires_at > now:
                engine.rules.add(rule)
        lifecycle = self.lifecycle = Lifecycle(cfg.lifecycle)
        lifecycle.load(await store.list_numbers())
        engine.is_released = lifecycle.is_released
        gate = Gatekeeper(engine, cfg.stir, *self._stir(cfg))
        for calling, scope, until in reversed(await store.list_captcha_passes(now, gate.passes.cap)):
            if not scope:  # the daemon remembers passes node-wide (scope ''): a restart keeps them
                gate.passes.remember(calling, until)
        self.proxy = proxy = Proxy(cfg.call_settings(), plan, gate)
        if self.worker is not None:
            structlog.contextvars.bind_contextvars(worker=self.worker.index)
            proxy.ua.mark_branches(branch_mark(self.worker.index))  # responses to our requests come back here
        proxy.is_released = lifecycle.is_released
        proxy.released_status = RELEASED_STATUS[cfg.lifecycle.released_action]
        proxy.released_intercept = cfg.lifecycle.released_action == "intercept"
        self.shared = await attach_shared_state(self)  # redis: other nodes' blocks, numbers, passes, rates
        await self._start_messaging()
        self.hub = SipHub(proxy, cfg, on_activities=self._queue_activities, after_flush=self._after_flush)
        # Flood and scanner guard before parsing; carriers and PBXs (read live, so reloads apply) are exempt.
        self.guard = FloodGuard(cfg.flood, lambda ip, port: self.proxy.peers.classify(ip, port) is not None)
        self.hub.guard = self.guard
        self.hub.overload = OverloadControl(cfg.overload)  # 503 to new INVITEs past capacity
        handoff = None
        if self.worker is not None:
            handoff = HandoffReader(socket.socket(fileno=self.worker.handoff_fd), asyncio.get_running_loop())
            handoff.sock.setblocking(False)
            self.hub.worker_udp = (socket.socket(fileno=self.worker.udp_fd), handoff)
        if cfg.hep.enabled:
            from edge.io.hep import HepExporter

            self.hep = HepExporter(cfg.hep)
            await self.hep.start()
            self.hub.hep = self.hep
        await self.hub.start()
        await self._start_media(cfg)
        self.registry.register(EdgeCollector(lambda: self.proxy, self._extra_metrics))
        self.registry.register(BuildCollector(build_info()))
        self.registry.register(StoreCollector(store))
        if cfg.admin.enabled:
            await self._start_admin(cfg)
        elif self.worker is not None and self.worker.index > 0 and self.config_admin_enabled:
            from edge.daemon.workers import start_worker_metrics

            self.metrics_runner = await start_worker_metrics(cfg, self.worker.index, self.registry)
        await self._start_screen_api()
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        if self.notifier.watchdog_interval and cfg.daemon.watchdog:
            self._tasks.append(loop.create_task(self._watchdog()))
        self._tasks.append(loop.create_task(self._housekeeping()))
        log.info(
            "daemon_started",
            listen=[f"{ls.transport}:{ls.address}" for ls in cfg.listen],
            numbers=len(plan),
            dialplan_files=len(files),
            rules=len(engine.rules),
            stir_verify=gate.verifier is not None,
            stir_sign=gate.signer is not None,
            node=cfg.daemon.node,
            worker=self.worker.index if self.worker is not None else None,
            build=build_info().label,
        )
        self.notifier.ready(f"serving {len(plan)} numbers")
        if handoff is not None:
            handoff.on_eof = self._stop.set  # the supervisor is gone: drain and exit
            handoff.tell_supervisor("ready")
        gc.collect()
        gc.freeze()  # start-up state (dialplan, prompts, rules) never needs scanning again
        await self._stop.wait()
        await self._drain()
        await self._shutdown()
        return 0

    def _stir(self, cfg: EdgeConfig) -> tuple:
        from edge.io.cert_fetch import CertFetcher, FetchSettings, load_signer, load_trust_store
        from edge.stir.verifier import Verifier, VerifierSettings

        verifier = None
        if cfg.stir.enabled:
            verifier = Verifier(load_trust_store(cfg.stir.trust_dir, cfg.stir.crl_dir), VerifierSettings.from_config(cfg.stir))
            self.fetcher = CertFetcher(FetchSettings.from_config(cfg.stir))
        return verifier, load_signer(cfg.stir)

    async def _start_media(self, cfg: EdgeConfig) -> None:
        """RTP engine and the screening B2BUA (captcha, menus, voicemail); prompts decoded once here."""
        from edge.call.b2bua import B2bua
        from edge.io.rtp_udp import MediaEngine
        from edge.io.screening import MediaDriver

        assert self.proxy is not None and self.hub is not None
        Path(cfg.media.voicemail_dir).mkdir(parents=True, exist_ok=True)
        self.media = MediaEngine(cfg.media, asyncio.get_running_loop())
        prompts = await self.media.load_prompts()
        self.screening = B2bua(self.proxy, cfg.media.voicemail_dir)
        self.media_driver = MediaDriver(self.screening, self.media, self.hub.flush, on_rule=self._persist_rule,
                                        on_pass=self._persist_pass)
        self.proxy.b2bua = self.screening
        log.info("media_started", prompts=len(prompts), rtp_ports=f"{cfg.media.rtp_port_min}-{cfg.media.rtp_port_max}")

    async def _start_messaging(self) -> None:
        """Texts (content screening, A2P shaping, opt-outs) in the proxy; metrics for them."""
        from edge.daemon.messaging import MessagingCollector, start_messaging

        await start_messaging(self, self.messaging_plan)
        self.registry.register(MessagingCollector(self))

    async def _start_screen_api(self) -> None:
        """Chats and forms: `POST /v1/screen` on its own listener when enabled."""
        from edge.daemon.messaging import start_screen_api

        started = await start_screen_api(self)
        if started is not None:
            self.screen_runner, self.screen_api = started

    def _persist_rule(self, rule: BlockRule) -> None:
        assert self.store is not None
        self._spawn(self.store.add_block(rule))

    def _persist_pass(self, calling: str, until: float) -> None:
        assert self.store is not None
        self._spawn(self.store.remember_captcha_pass(calling, "", until))

    def _spawn(self, coro) -> None:  # type: ignore[no-untyped-def]
        task = asyncio.get_running_loop().create_task(coro)
        self._fetching.add(task)
        task.add_done_callback(self._fetching.discard)

    async def _start_admin(self, cfg: EdgeConfig) -> None:
        from edge.console.auth import CONSOLE, console_settings
        from edge.daemon.admin import AdminContext, load_token, make_admin_app, start_admin

        assert self.store is not None and self.lifecycle is not None
        from edge.daemon.messaging import HeldView

        ctx = AdminContext(
            held=HeldView(self),
            store=self.store,
            lifecycle=self.lifecycle,
            token=load_token(cfg.admin.token_file, create=True),
            on_rules_changed=self._rules_changed,
            health=self._health,
            registry=self.registry,
            customer_of=self._customer_of,
            console=console_settings(cfg.admin),
            rule_hits=lambda: dict(self.engine.counters.by_rule) if self.engine is not None else {},
            plan_numbers=lambda: [(e.key, e.customer) for e in self.proxy.plan.numbers() if e.exact] if self.proxy else [],
            plan_rules=lambda: list(self.proxy.plan.rules) if self.proxy else [],
            cool_offs=self.engine,
            explain=self._explain,
        )
        self.admin_ctx = ctx
        host, port = host_port(cfg.admin.listen, 8081)
        app = make_admin_app(ctx)
        self.console = app[CONSOLE]
        self.admin_runner = await start_admin(app, host, port)
        log.info("admin_api_started", listen=cfg.admin.listen)

    def _explain(self, req):  # type: ignore[no-untyped-def]
        """POST /explain: the decision path with this daemon's plan, rules, counts, flags and passes."""
        from edge.call.explain import carrier_source, explain

        assert self.proxy is not None and self.proxy.gate is not None and self.cfg is not None
        src = carrier_source(req.source, [c.sources for c in self.cfg.carriers], self.proxy.peers)
        if isinstance(src, str):
            return src
        released = self.lifecycle.is_released if self.lifecycle is not None else None
        return explain(req, self.proxy.plan, self.proxy.gate, src[0], src[1], time.time(), is_released=released, live=True)

    def _customer_of(self, number: str) -> str:
        """The customer whose dialplan routes `number` ('' when none): scopes console users."""
        entry = self.proxy.plan.lookup(number) if self.proxy is not None else None
        return entry.customer if entry is not None else ""

    def _rules_changed(self, add: BlockRule | None, removed_id: str | None) -> None:
        """The admin API changed a runtime rule: the next contact sees it (no restart, no reload)."""
        assert self.engine is not None
        if removed_id:
            self.engine.rules.remove(removed_id)
        if add is not None:
            self.engine.rules.add(add)
        log.info("rules_changed", added=add.id if add else None, removed=removed_id, rules=len(self.engine.rules))

    def _health(self) -> dict:
        proxy = self.proxy
        store_health = self.store.health() if self.store is not None else None
        return {
            "ok": proxy is not None and not proxy.draining,
            "draining": bool(proxy and proxy.draining),
            "active_calls": proxy.active_calls if proxy else 0,
            "pbx_targets": proxy.pool.status() if proxy else {},
            "store_degraded": bool(store_health and store_health.degraded),
            "uptime": round(time.time() - self.started, 1),
            "reloads": self.reloads,
            "reload_failures": self.reload_failures,
        }

    def _extra_metrics(self) -> dict[str, object]:
        out: dict[str, object] = {"reloads_total": self.reloads, "reload_failures_total": self.reload_failures}
        if self.guard is not None:
            for k, v in self.guard.stats.as_dict().items():
                out[f"flood_{k}_total"] = v
            out["flood_sources"] = self.guard.sources
            out["flood_active_bans"] = self.guard.active_bans
        if self.hub is not None:
            out.update(self.hub.intake_metrics())
        if self.console is not None:
            out.update(self.console.stats())
        if self.hep is not None:
            for k, v in self.hep.stats().items():
                out[k] = v
        if self.screening is not None and self.media is not None:
            out["screening_calls_active"] = self.screening.active
            out["screening_calls_started_total"] = self.screening.started
            out["screening_core_errors_total"] = self.screening.errors
            out["media_sessions_refused_total"] = self.media_driver.refused if self.media_driver else 0
            out["screening_fax_detected_total"] = self.screening.fax_detected
            for k, v in self.media.stats().items():
                out[f"media_{k}"] = v
        return out

    # -- effects the core leaves for the adapters --------------------------------------------------
    def _queue_activities(self, activities: list) -> None:
        store = self.store
        assert store is not None
        for a in activities:
            store.queue_activity(a)

    def _after_flush(self, proxy: Proxy) -> None:
        for url in proxy.certificate_fetches():
            task = asyncio.get_running_loop().create_task(self._fetch(url))
            self._fetching.add(task)
            task.add_done_callback(self._fetching.discard)
        for called, calling in proxy.released_hits():
            self._released_hit(called, calling)
        if self.media_driver is not None:
            self.media_driver.run()
        if proxy.messaging is not None and proxy.messaging.optout_changes:
            from edge.daemon.messaging import flush_messaging

            flush_messaging(self)

    async def _fetch(self, url: str) -> None:
        assert self.fetcher is not None and self.proxy is not None and self.hub is not None
        result = await self.fetcher.fetch(url)
        if result.error:
            log.warning("stir_cert_fetch_failed", url=url, error=result.error)
        self.proxy.certificate_fetched(url, result.body, result.cache_control, result.error, time.time())
        self.hub.flush()

    def _released_hit(self, called: str, calling: str) -> None:
        """Residual traffic to a released number: counted for the quiet-period monitor, and a honeypot signal."""
        assert self.lifecycle is not None and self.store is not None and self.engine is not None
        now = time.time()
        record = self.lifecycle.record_traffic(called, now)
        if record is not None:
            task = asyncio.get_running_loop().create_task(self.store.put_number(record))
            self._fetching.add(task)
            task.add_done_callback(self._fetching.discard)
        if calling:
            self.engine.observe_released_call(calling, now)

    async def _housekeeping(self) -> None:
        """Once a second: expire runtime rules (store and index)."""
        from edge.daemon.admin import expire_rules

        while True:
            await asyncio.sleep(1.0)
            if self.guard is not None:
                for ev in self.guard.take_events():
                    log.warning("source_banned", ip=ev.ip, port=ev.port, reason=ev.reason, until=ev.until, detail=ev.detail)
                self.guard.expire(time.time())
            if self.proxy is not None and self.proxy.messaging is not None:
                self.proxy.messaging.held.expire(time.time())
            try:
                if self.admin_runner is not None:
                    await expire_rules(self.admin_ctx)
                elif self.engine is not None:
                    self.engine.rules.purge_expired(time.time())
            except Exception:  # noqa: BLE001 - housekeeping must keep running
                log.exception("housekeeping_failed")

    # -- reload ---------------------------------------------------------------------------------
    def _reload(self) -> None:
        self.notifier.reloading()
        try:
            cfg, plan, files = self.load()
        except (ConfigError, DialplanError) as exc:
            self.reload_failures += 1
            log.error("reload_rejected", errors=exc.errors, detail="the running configuration and dialplan stay in force")
            self.notifier.ready("reload rejected; previous plan in force")
            return
        proxy = self.proxy
        assert proxy is not None and self.cfg is not None and self.engine is not None
        restart_needed = [ls.address for ls in cfg.listen] != [ls.address for ls in self.cfg.listen]
        if self.guard is not None:
            self.guard.configure(cfg.flood)
        proxy.reconfigure(cfg.call_settings(), plan, time.time())
        if proxy.messaging is not None and self.messaging_plan is not None:
            proxy.messaging.set_plan(self.messaging_plan)
        self.engine.replace_static_rules(plan.rules)
        if self.hub is not None:
            self.hub.reconfigure(cfg)
        self._reload_stir_trust(cfg)
        self.cfg = cfg
        self.reloads += 1
        log.info("reloaded", numbers=len(plan), dialplan_files=len(files), rules=len(self.engine.rules),
                 restart_needed_for_listen=restart_needed)
        self.notifier.ready(f"serving {len(plan)} numbers")
        if self.hub is not None:
            self.hub.flush()

    def _reload_stir_trust(self, cfg: EdgeConfig) -> None:
        """STI-CA anchors and CRLs are re-read on every reload; a bad file keeps the previous ones."""
        from edge.io.cert_fetch import reload_trust

        gate = self.proxy.gate if self.proxy is not None else None
        if gate is None or gate.verifier is None or not cfg.stir.enabled:
            return
        try:
            trust = reload_trust(gate.verifier, cfg.stir)
        except (OSError, ValueError) as exc:
            log.error("stir_trust_reload_failed", error=str(exc), detail="the previous anchors and CRLs stay in force")
            return
        log.info("stir_trust_reloaded", anchors=len(trust.anchors), chain=len(trust.intermediates), crls=trust.crl_count)

    # -- stop -----------------------------------------------------------------------------------
    async def _drain(self) -> None:
        assert self.proxy is not None and self.cfg is not None
        self.notifier.stopping()
        proxy = self.proxy
        proxy.start_draining()
        timeout = parse_duration(self.cfg.daemon.drain_timeout)
        log.info("draining", active_calls=proxy.active_calls, drain_timeout=timeout)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and not proxy.drained():
            await asyncio.sleep(0.05)
        if not proxy.drained():
            log.warning("drain_timeout", active_calls=proxy.active_calls)
        else:
            log.info("drained")

    async def _shutdown(self) -> None:
        for t in self._tasks:
            t.cancel()
        if self.hub is not None:
            await self.hub.close()
        if self.media is not None:
            await self.media.aclose()
        if self.hep is not None:
            self.hep.close()
        if self.admin_runner is not None:
            await self.admin_runner.cleanup()
        if self.metrics_runner is not None:
            await self.metrics_runner.cleanup()
        if self.screen_runner is not None:
            await self.screen_runner.cleanup()
        if self._fetching:
            await asyncio.wait(list(self._fetching), timeout=2)
        if self.fetcher is not None:
            await self.fetcher.close()
        if self.shared is not None:
            await self.shared.close()
        if self.store is not None:
            await self.store.close()  # flushes pending activity writes
        assert self.proxy is not None
        log.info("daemon_stopped", stats=self.proxy.stats.as_dict())

    async def _watchdog(self) -> None:
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(self.notifier.watchdog_interval)


def tune_gc() -> None:
    """Per-call objects are freed by reference counting (timer handles and transactions drop their
    owners when done), so the cyclic collector only needs to run rarely: with CPython's default
    threshold (700) full collections over hundreds of thousands of objects stalled the loop for
    hundreds of milliseconds at 500 CPS (benchmarks/README.md). Objects alive after start-up
    (config, dialplan, prompts) are frozen out of every collection."""
    gc.set_threshold(50_000, 20, 100)


def run_daemon(config_path: str, dialplan_dir: str, worker: str = "") -> int:
    """One process (`[daemon] workers = 1`), a supervisor of N workers, or (`worker`) one of those workers."""
    role = WorkerRole.parse(worker) if worker else None
    if role is None:
        from edge.io.tls import listener_errors

        cfg = load_config(config_path, [listener_errors])
        if cfg.daemon.workers > 1:
            Daemon(config_path, dialplan_dir).load()  # dialplan errors surface here, before any worker starts
            return run_supervisor(config_path, dialplan_dir, cfg)
    tune_gc()
    daemon = Daemon(config_path, dialplan_dir, role)
    return uvloop.run(daemon.run())
