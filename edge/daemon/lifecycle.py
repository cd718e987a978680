"""The daemon process: uvloop, signals, reload, drain, systemd notify and watchdog.

SIGHUP validates config and dialplans and swaps them in only when both are valid (the running
plan stays in force otherwise; calls in progress keep their plan). SIGTERM/SIGINT drain: new
INVITEs get 503 with Retry-After, calls in progress may finish until `drain_timeout`, then exit 0.
"""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import structlog
import uvloop

from edge.call.peers import PeerDirectory
from edge.call.proxy import Proxy
from edge.call.routing import TargetPool
from edge.config import ConfigError, EdgeConfig, load_config
from edge.daemon.logging import setup_logging
from edge.daemon.sdnotify import Notifier
from edge.dialplan.load import DialplanError, load_dialplans
from edge.io.sip_transport import SipHub
from edge.units import parse_duration

log = structlog.get_logger("edge.daemon")


class Daemon:
    def __init__(self, config_path: str, dialplan_dir: str) -> None:
        self.config_path = config_path
        self.dialplan_dir = dialplan_dir
        self.cfg: EdgeConfig | None = None
        self.proxy: Proxy | None = None
        self.hub: SipHub | None = None
        self.notifier = Notifier()
        self._stop: asyncio.Event | None = None  # created inside the loop
        self.reloads = 0
        self.reload_failures = 0

    def load(self) -> tuple[EdgeConfig, object, dict]:
        cfg = load_config(self.config_path)
        plan, files = load_dialplans(self.dialplan_dir, {p.name for p in cfg.pbx}, time.time())
        return cfg, plan, files

    async def run(self) -> int:
        cfg, plan, files = self.load()
        self.cfg = cfg
        setup_logging(cfg.logging.level, cfg.logging.format)
        Path(cfg.daemon.state_dir).mkdir(parents=True, exist_ok=True)
        self.proxy = Proxy(cfg, plan)  # type: ignore[arg-type]
        self.hub = SipHub(self.proxy, cfg, on_activities=self._on_activities)
        await self.hub.start()
        self._stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGHUP, self._reload)
        loop.add_signal_handler(signal.SIGTERM, self._stop.set)
        loop.add_signal_handler(signal.SIGINT, self._stop.set)
        watchdog = loop.create_task(self._watchdog()) if self.notifier.watchdog_interval and cfg.daemon.watchdog else None
        log.info(
            "daemon_started",
            listen=[f"{ls.transport}:{ls.address}" for ls in cfg.listen],
            numbers=len(plan),  # type: ignore[arg-type]
            dialplan_files=len(files),
            node=cfg.daemon.node,
        )
        self.notifier.ready(f"serving {len(plan)} numbers")  # type: ignore[arg-type]
        await self._stop.wait()
        await self._drain()
        if watchdog is not None:
            watchdog.cancel()
        await self.hub.close()
        log.info("daemon_stopped", stats=self.proxy.stats.as_dict())
        return 0

    def _on_activities(self, activities: list) -> None:
        """Hand finished or updated activity records to the store (wired by the store integration)."""
        self.activity_sink(activities)

    def activity_sink(self, activities: list) -> None:
        for a in activities:
            log.debug("activity", id=a.id, call_id=a.call_id, decision=a.decision, status=a.final_status)

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
        assert proxy is not None and self.cfg is not None
        restart_needed = [ls.address for ls in cfg.listen] != [ls.address for ls in self.cfg.listen]
        proxy.cfg = cfg
        proxy.peers = PeerDirectory(cfg)
        proxy.set_plan(plan)  # type: ignore[arg-type]
        old_pool = proxy.pool
        old_pool.stopped = True
        proxy.pool = TargetPool(cfg, proxy.wheel, proxy.tv, proxy._send, proxy._new_branch, proxy.local)
        # Keep health state of targets that survive the reload.
        for name, t in proxy.pool.by_name.items():
            old = old_pool.by_name.get(name)
            if old is not None and old.dest == t.dest:
                t.up, t.failures = old.up, old.failures
        proxy.pool.start(proxy.client_txns, time.time())
        self.cfg = cfg
        self.reloads += 1
        log.info("reloaded", numbers=len(plan), dialplan_files=len(files), restart_needed_for_listen=restart_needed)  # type: ignore[arg-type]
        self.notifier.ready(f"serving {len(plan)} numbers")  # type: ignore[arg-type]
        if self.hub is not None:
            self.hub.flush()

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

    async def _watchdog(self) -> None:
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(self.notifier.watchdog_interval)


def run_daemon(config_path: str, dialplan_dir: str) -> int:
    daemon = Daemon(config_path, dialplan_dir)
    return uvloop.run(daemon.run())
