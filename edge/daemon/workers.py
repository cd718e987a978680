"""Several SIP worker processes under one supervisor (`[daemon] workers = N > 1`, docs/DESIGN.md "Several workers").

The supervisor binds the UDP listener, starts N workers (`sip-edge run --worker`, each a full daemon
on its own event loop) and hands every datagram to the worker that owns its Call-ID (edge.io.handoff,
edge.sip.affinity). Workers send from the same inherited socket. Worker 0 starts first (it migrates
the store) and alone runs the admin API, console and screening API; every worker shares rate windows,
blocks, captcha passes and lifecycle records through the redis store and writes activities to the same
SQLite file (WAL). The supervisor forwards SIGHUP and SIGTERM/SIGINT to every worker, speaks to systemd
for all of them, and restarts a worker that dies (logged, with a back-off if it keeps dying).
"""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import sys
import time

import msgspec
import structlog

from edge.config import ConfigError, EdgeConfig, host_port, load_config
from edge.daemon.logging import setup_logging
from edge.daemon.sdnotify import Notifier
from edge.io.handoff import Dispatcher, WorkerLink, socketpair
from edge.io.sip_transport import bind_udp
from edge.units import parse_duration

log = structlog.get_logger("edge.workers")

READY_TIMEOUT = 60.0  # seconds a worker may take to start (dialplans, prompts, STIR trust)
RESTART_BACKOFF_MIN = 0.5
RESTART_BACKOFF_MAX = 10.0
STABLE_AFTER = 10.0  # a worker that ran this long before dying is restarted at once


class WorkerRole(msgspec.Struct, frozen=True):
    """What a worker process is told on its command line (`--worker index/count:udp_fd:handoff_fd`)."""

    index: int
    count: int
    udp_fd: int
    handoff_fd: int

    def spec(self) -> str:
        return f"{self.index}/{self.count}:{self.udp_fd}:{self.handoff_fd}"

    @classmethod
    def parse(cls, spec: str) -> WorkerRole:
        try:
            slot, udp_fd, handoff_fd = spec.split(":")
            index, count = slot.split("/")
            role = cls(int(index), int(count), int(udp_fd), int(handoff_fd))
        except ValueError:
            raise ValueError(f"invalid --worker {spec!r}: expected index/count:udp_fd:handoff_fd") from None
        if not 0 <= role.index < role.count:
            raise ValueError(f"invalid --worker {spec!r}: index out of range")
        return role


def worker_config(cfg: EdgeConfig, index: int) -> EdgeConfig:
    """A worker's view of the config: its own node name (activity ids, redis pub/sub origin); the admin
    API, console and screening API only in worker 0."""
    replace = msgspec.structs.replace
    changes: dict[str, object] = {"daemon": replace(cfg.daemon, node=f"{cfg.daemon.node}-w{index}")}
    if index > 0:
        changes["admin"] = replace(cfg.admin, enabled=False)
        changes["messaging"] = replace(cfg.messaging, screening_api=replace(cfg.messaging.screening_api, enabled=False))
    return replace(cfg, **changes)


def worker_metrics_listen(cfg: EdgeConfig, index: int) -> tuple[str, int]:
    """Where worker `index` (> 0) serves its own `/metrics`: the admin API's host, its port + index."""
    host, port = host_port(cfg.admin.listen, 8081)
    return host, port + index


async def start_worker_metrics(cfg: EdgeConfig, index: int, registry) -> object:  # type: ignore[no-untyped-def]
    """Worker `index` > 0 has no admin API: its Prometheus samples on their own listener, behind the
    same bearer token (the operator token worker 0 created). Returns the aiohttp runner."""
    import hmac

    from aiohttp import web
    from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

    from edge.daemon.admin import load_token

    token = load_token(cfg.admin.token_file).encode()

    async def metrics(request: web.Request) -> web.Response:
        scheme, _, given = request.headers.get("Authorization", "").partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), token):
            return web.json_response({"error": "unauthorized"}, status=401)
        return web.Response(body=generate_latest(registry), headers={"Content-Type": CONTENT_TYPE_LATEST})

    app = web.Application()
    app.router.add_get("/metrics", metrics)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    host, port = worker_metrics_listen(cfg, index)
    await web.TCPSite(runner, host, port).start()
    log.info("worker_metrics_listening", host=host, port=port)
    return runner


class Worker:
    """One worker slot: its process, its link, and when it (re)started."""

    def __init__(self, index: int) -> None:
        self.index = index
        self.proc: asyncio.subprocess.Process | None = None
        self.link: WorkerLink | None = None
        self.ready = asyncio.Event()
        self.started_at = 0.0
        self.restarts = 0
        self.backoff = RESTART_BACKOFF_MIN


class Supervisor:
    def __init__(self, config_path: str, dialplan_dir: str, cfg: EdgeConfig) -> None:
        self.config_path = config_path
        self.dialplan_dir = dialplan_dir
        self.cfg = cfg
        self.count = cfg.daemon.workers
        self.notifier = Notifier()
        self.workers = [Worker(i) for i in range(self.count)]
        self.udp: socket.socket | None = None
        self.dispatcher: Dispatcher | None = None
        self.stopping = False
        self._stop = asyncio.Event()
        self._watchers: set[asyncio.Task] = set()

    async def run(self) -> int:
        cfg = self.cfg
        setup_logging(cfg.logging.level, cfg.logging.format)
        loop = asyncio.get_running_loop()
        udp_listen = next(ls for ls in cfg.listen if ls.transport == "udp")
        self.udp = bind_udp(*host_port(udp_listen.address), cfg.limits.udp_buffer)
        self.dispatcher = Dispatcher(loop, self.udp, [None] * self.count)
        for sig, handler in ((signal.SIGHUP, self._reload), (signal.SIGTERM, self._stop.set), (signal.SIGINT, self._stop.set)):
            loop.add_signal_handler(sig, handler)
        # Worker 0 first: it creates and migrates the store the others open.
        order = [self.workers[:1], self.workers[1:]]
        for group in order:
            for w in group:
                await self._spawn(w)
            if not await self._await_ready(group):
                log.error("workers_start_failed", detail="a worker exited or did not become ready; stopping")
                await self._terminate_all()
                return 1
        log.info("workers_started", workers=self.count, listen=udp_listen.address, node=cfg.daemon.node,
                 pids=[w.proc.pid for w in self.workers if w.proc is not None])
        self.notifier.ready(f"{self.count} workers")
        watchdog = loop.create_task(self._watchdog()) if self.notifier.watchdog_interval and cfg.daemon.watchdog else None
        await self._stop.wait()
        self.stopping = True
        self.notifier.stopping()
        log.info("workers_stopping", workers=self.count)
        await self._terminate_all()
        if watchdog is not None:
            watchdog.cancel()
        self.dispatcher.close()
        self.udp.close()
        log.info("workers_stopped", handed_off=self.dispatcher.datagrams, dropped=self.dispatcher.dropped,
                 per_worker=self.dispatcher.per_worker)
        return 0

    async def _await_ready(self, group: list[Worker]) -> bool:
        async def one(w: Worker) -> bool:
            assert w.proc is not None
            ready = asyncio.ensure_future(w.ready.wait())
            died = asyncio.ensure_future(w.proc.wait())
            done, _ = await asyncio.wait({ready, died}, timeout=READY_TIMEOUT, return_when=asyncio.FIRST_COMPLETED)
            ready.cancel()
            died.cancel()
            return ready in done and w.proc.returncode is None

        return all(await asyncio.gather(*(one(w) for w in group)))

    async def _spawn(self, w: Worker) -> None:
        assert self.udp is not None and self.dispatcher is not None
        loop = asyncio.get_running_loop()
        ours, theirs = socketpair()
        w.ready = asyncio.Event()
        w.link = WorkerLink(loop, ours, lambda line, w=w: self._control(w, line))
        role = WorkerRole(w.index, self.count, self.udp.fileno(), theirs.fileno())
        env = {k: v for k, v in os.environ.items() if k not in ("NOTIFY_SOCKET", "WATCHDOG_USEC", "WATCHDOG_PID")}
        w.proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "edge.cli", "run", "--config", self.config_path, self.dialplan_dir,
            "--worker", role.spec(), pass_fds=(self.udp.fileno(), theirs.fileno()), env=env,
        )
        theirs.close()
        w.started_at = time.monotonic()
        self.dispatcher.links[w.index] = w.link
        log.info("worker_spawned", worker=w.index, pid=w.proc.pid, restarts=w.restarts)
        task = loop.create_task(self._watch(w, w.proc))
        self._watchers.add(task)
        task.add_done_callback(self._watchers.discard)

    def _control(self, w: Worker, line: str) -> None:
        if line == "ready":
            w.ready.set()
            if w.restarts:
                dropped = self.dispatcher.dropped if self.dispatcher is not None else 0
                log.info("worker_restarted", worker=w.index, pid=w.proc.pid if w.proc else None, restarts=w.restarts,
                         handoff_dropped_total=dropped)

    async def _watch(self, w: Worker, proc: asyncio.subprocess.Process) -> None:
        """A worker that exits while the supervisor is not stopping is restarted (back-off if it keeps dying)."""
        rc = await proc.wait()
        if w.proc is not proc:
            return
        assert self.dispatcher is not None
        self.dispatcher.links[w.index] = None
        if w.link is not None:
            w.link.close()
        if self.stopping:
            return
        ran = time.monotonic() - w.started_at
        log.error("worker_exited", worker=w.index, pid=proc.pid, returncode=rc, ran_seconds=round(ran, 1),
                  detail="restarting")
        if ran >= STABLE_AFTER:
            w.backoff = RESTART_BACKOFF_MIN
        await asyncio.sleep(w.backoff)
        w.backoff = min(w.backoff * 2, RESTART_BACKOFF_MAX)
        if self.stopping:
            return
        w.restarts += 1
        await self._spawn(w)

    def _reload(self) -> None:
        """SIGHUP: each worker validates and swaps in the new config and dialplans itself."""
        self.notifier.reloading()
        sent = self._signal_all(signal.SIGHUP)
        restart_needed = None
        try:
            new = load_config(self.config_path)
            restart_needed = new.daemon.workers != self.count or [ls.address for ls in new.listen] != [
                ls.address for ls in self.cfg.listen]
        except ConfigError:
            pass  # each worker logs reload_rejected with the problems
        log.info("reload_forwarded", workers=sent, restart_needed_for_workers_or_listen=restart_needed)
        self.notifier.ready(f"{self.count} workers")

    def _signal_all(self, sig: int) -> list[int]:
        sent = []
        for w in self.workers:
            if w.proc is not None and w.proc.returncode is None:
                try:
                    w.proc.send_signal(sig)
                    sent.append(w.index)
                except ProcessLookupError:
                    pass
        return sent

    async def _terminate_all(self) -> None:
        """SIGTERM to every worker; they drain (calls in progress finish) while the supervisor keeps
        handing their datagrams off; then wait for all of them."""
        self.stopping = True
        self._signal_all(signal.SIGTERM)
        procs = [w.proc for w in self.workers if w.proc is not None]
        grace = parse_duration(self.cfg.daemon.drain_timeout) + 10.0
        if procs:
            _, late = await asyncio.wait([asyncio.ensure_future(p.wait()) for p in procs], timeout=grace)
            if late:
                for proc in procs:
                    if proc.returncode is None:
                        log.error("worker_kill", pid=proc.pid, detail=f"still running {grace:g}s after SIGTERM")
                        proc.kill()
                await asyncio.wait(late, timeout=5)
        for w in self.workers:
            if w.link is not None:
                w.link.close()

    async def _watchdog(self) -> None:
        while True:
            self.notifier.watchdog()
            await asyncio.sleep(self.notifier.watchdog_interval)


def run_supervisor(config_path: str, dialplan_dir: str, cfg: EdgeConfig) -> int:
    import uvloop

    return uvloop.run(Supervisor(config_path, dialplan_dir, cfg).run())
