"""PBX targets, the hunt list and OPTIONS health probing (like Kamailio's dispatcher pinging).

A target that stops answering `down_after` consecutive OPTIONS pings leaves rotation and returns
at the first answer. Any final response except 503 proves the target alive (a PBX may answer
OPTIONS with 404 or 405 and still take calls).
"""

from __future__ import annotations

from typing import Callable

import structlog

from edge.call.settings import CallSettings
from edge.call.ua import local_address
from edge.sip.message import SipMessage
from edge.sip.timers import TimerValues, TimerWheel
from edge.sip.transaction import ClientTransaction, Destination
from edge.sip.uri import Uri, parse_uri
from edge.units import parse_duration

log = structlog.get_logger("edge.routing")


class Target:
    """One PBX (or outbound carrier) next hop."""

    __slots__ = (
        "name",
        "uri",
        "dest",
        "up",
        "failures",
        "health",
        "interval",
        "timeout",
        "down_after",
        "timers",
        "probe",
        "probes_sent",
        "_seq",
    )

    def __init__(self, name: str, uri: Uri, health: bool, interval: float, timeout: float, down_after: int) -> None:
        self.name = name
        self.uri = uri
        transport = uri.transport
        self.dest = Destination(transport, uri.host, uri.port or (5061 if transport == "tls" else 5060))
        self.up = True
        self.failures = 0
        self.health = health
        self.interval = interval
        self.timeout = timeout
        self.down_after = down_after
        self.timers: dict[str, int] = {}  # name -> TimerWheel seq
        self.probe: ClientTransaction | None = None
        self.probes_sent = 0
        self._seq = 0

    def uri_for(self, user: str) -> str:
        """Request-URI toward this target, keeping the called user part."""
        u = self.uri
        params = "".join(f";{k}={v}" if v else f";{k}" for k, v in u.params.items())
        user_part = f"{user}@" if user else (f"{u.user}@" if u.user else "")
        return f"{u.scheme}:{user_part}{u.hostport()}{params}"


class TargetPool:
    """PBX targets by name, carriers' outbound targets, and the probes that keep `up` current."""

    def __init__(
        self,
        cfg: CallSettings,
        wheel: TimerWheel,
        tv: TimerValues,
        send: Callable[[bytes, Destination], None],
        new_branch: Callable[[], str],
        local: dict[str, tuple[str, int]],
    ) -> None:
        self.wheel = wheel
        self.tv = tv
        self.send = send
        self.new_branch = new_branch
        self.local = local
        self.by_name: dict[str, Target] = {}
        self.outbound: list[Target] = []
        self.client_txns: dict[tuple[str, str], ClientTransaction] | None = None
        self.stopped = False  # set when a reload replaced this pool; its probes stop
        for p in cfg.pbx:
            self.by_name[p.name] = Target(
                p.name,
                parse_uri(p.uri),
                p.health_check,
                parse_duration(p.health_interval),
                parse_duration(p.health_timeout),
                p.down_after,
            )
        for c in cfg.carriers:
            for i, u in enumerate(c.outbound):
                self.outbound.append(Target(f"{c.name}#{i}", parse_uri(u), False, 0.0, 0.0, 1))

    def hunt_list(self, names: tuple[str, ...]) -> list[Target]:
        """Targets in failover order, skipping those out of rotation."""
        out = []
        for n in names:
            t = self.by_name.get(n)
            if t is not None and t.up:
                out.append(t)
        return out

    def outbound_list(self) -> list[Target]:
        return list(self.outbound)

    def start(self, client_txns: dict[tuple[str, str], ClientTransaction], now: float) -> None:
        """Begin probing; the proxy's client transaction table receives the OPTIONS responses."""
        self.client_txns = client_txns
        for t in self.by_name.values():
            if t.health:
                self.wheel.arm(_Probe(self, t), "ping", now)

    def status(self) -> dict[str, dict[str, object]]:
        return {n: {"up": t.up, "failures": t.failures, "uri": str(t.dest)} for n, t in self.by_name.items()}


class _Probe:
    """Timer owner that pings one target; also the owner of the OPTIONS client transaction."""

    __slots__ = ("pool", "target", "timers")

    def __init__(self, pool: TargetPool, target: Target) -> None:
        self.pool = pool
        self.target = target
        self.timers: dict[str, int] = {}  # name -> TimerWheel seq

    def on_timer(self, name: str, now: float) -> None:
        if self.pool.stopped:
            return
        if name == "ping":
            self._ping(now)
            self.pool.wheel.arm(self, "ping", now + self.target.interval)
        elif name == "deadline":
            ct = self.target.probe
            if ct is not None and not ct.terminated:
                ct.terminate()
                self._drop(ct)
                self._result(False, now, "timeout")

    def _ping(self, now: float) -> None:
        t = self.target
        pool = self.pool
        if t.probe is not None and not t.probe.terminated:
            return  # previous ping still pending
        t._seq += 1
        branch = pool.new_branch()
        host, port = local_address(pool.local, t.dest.transport)
        tag = f"hc{branch[-8:]}"
        msg = SipMessage.request(
            "OPTIONS",
            t.uri_for(""),
            [
                ("Via", f"SIP/2.0/{t.dest.transport.upper()} {host}:{port};branch={branch};rport"),
                ("Max-Forwards", "70"),
                ("From", f"<sip:health@{host}:{port}>;tag={tag}"),
                ("To", f"<{t.uri_for('')}>"),
                ("Call-ID", f"health-{t.name}-{branch[-12:]}@{host}"),
                ("CSeq", f"{t._seq} OPTIONS"),
                ("User-Agent", "sip-edge health"),
                ("Accept", "application/sdp"),
            ],
        )
        ct = ClientTransaction(branch, msg, t.dest, pool.wheel, pool.tv, pool.send)
        ct.owner = self
        t.probe = ct
        t.probes_sent += 1
        if pool.client_txns is not None:
            pool.client_txns[(branch, "OPTIONS")] = ct
        ct.start(now)
        pool.wheel.arm(self, "deadline", now + t.timeout)

    def _drop(self, ct: ClientTransaction) -> None:
        txns = self.pool.client_txns
        if txns is not None and txns.get((ct.branch, "OPTIONS")) is ct:
            del txns[(ct.branch, "OPTIONS")]

    # Called by the proxy for responses and failures of the probe transaction.
    def on_response(self, ct: ClientTransaction, resp: SipMessage, now: float) -> None:
        if resp.status < 200:
            return
        self.pool.wheel.cancel(self, "deadline")
        self._result(resp.status != 503, now, str(resp.status))

    def on_failure(self, ct: ClientTransaction, now: float) -> None:
        self.pool.wheel.cancel(self, "deadline")
        self._drop(ct)
        self._result(False, now, "transport error")

    def _result(self, ok: bool, now: float, detail: str) -> None:
        t = self.target
        if ok:
            if not t.up:
                log.warning("pbx_target_up", target=t.name, detail=detail)
            t.up = True
            t.failures = 0
            return
        t.failures += 1
        if t.up and t.failures >= t.down_after:
            t.up = False
            log.warning("pbx_target_down", target=t.name, detail=detail, failures=t.failures)
