"""asyncio adapters for the sans-IO proxy: UDP and TCP sockets, the outbox flush and the timer arm.

One `SipHub` owns the Proxy. Every datagram or framed stream message goes in with the current time;
after each read the hub sends what the core queued and re-arms one loop timer at the core's next
deadline. Activity records the core produced are handed to `on_activities`.

Ingress under load (issues 12 and 13): the UDP socket is drained in batches, and each datagram's
source address is classified first (carrier/PBX or stranger, one memoised lookup). Carriers' and
PBXs' datagrams of a batch go to the core before any stranger's; strangers pass the flood guard,
which drops them unparsed while the edge is busy (the batch did not empty the socket, or shedding).
A monitor tick measures loop lag and pending transactions, and each read the UDP queue delay (the
kernel receive time of its first datagram), for the overload control, which answers new INVITEs over
its admitted rate 503 + Retry-After from the raw bytes while the edge is past its capacity.
"""

from __future__ import annotations

import asyncio
import math
import socket
import struct
import sys
import time
from typing import Callable

import structlog

from edge.call.activity import Activity
from edge.call.flood import FloodGuard, Verdict
from edge.call.overload import OverloadControl
from edge.call.proxy import Proxy
from edge.config import EdgeConfig, host_port
from edge.units import parse_duration
from edge.sip.errors import FramingError
from edge.sip.framing import StreamFramer
from edge.sip.transaction import Destination
from edge.io.handoff import HandoffReader

log = structlog.get_logger("edge.io")

TIMER_GRID = 0.01  # seconds
UDP_BATCH = 512  # datagrams read per readiness event; a full batch means the socket has a backlog
MONITOR_TICK = 0.05  # seconds between loop-lag / pending-transaction measures
SWEEP_EVERY = 20  # monitor ticks between sweeps of stream connections for timeouts (1 s)


class SipHub:
    def __init__(
        self,
        proxy: Proxy,
        cfg: EdgeConfig,
        on_activities: Callable[[list[Activity]], None] | None = None,
        after_flush: Callable[[Proxy], None] | None = None,
    ) -> None:
        self.proxy = proxy
        self.cfg = cfg
        self.loop = asyncio.get_running_loop()
        self.udp: UdpSocket | None = None
        self.udp_local: tuple[str, int] | None = None
        self.tcp_servers: list[asyncio.base_events.Server] = []
        self.conns: dict[int, TcpConnection] = {}
        self.conn_by_addr: dict[tuple[str, str, int], TcpConnection] = {}  # (transport, host, port)
        self._conn_seq = 0
        self._timer: asyncio.TimerHandle | None = None
        self._timer_slot = 0.0
        self.on_activities = on_activities
        self.after_flush = after_flush  # other effects the core queued (certificate fetches, lifecycle hits)
        self._resolved: dict[str, str] = {}
        self.guard: FloodGuard | None = None  # flood/scanner guard, before any parsing
        self.hep = None  # HepExporter when [hep] is enabled
        self.tls_server: dict[int, tuple] = {}  # listen index -> (SSLContext, Listen) for reloads
        self.tls_client = None  # SSLContext for connections the edge opens over TLS
        self.overload: OverloadControl | None = None  # 503 to new INVITEs past capacity, before parsing
        self.intake = IntakeStats()
        self._monitor: asyncio.TimerHandle | None = None
        self._monitor_due = 0.0
        self._ticks = 0
        self.tcp_peers = 0  # accepted connections from carriers and PBXs
        self.tcp_strangers: dict[str, int] = {}  # unknown IP -> accepted connections
        self.tcp_unknown = 0
        self._refusal_logged = 0.0
        self.tcp_message_timeout = parse_duration(cfg.limits.tcp_message_timeout)
        self.tcp_idle_timeout = parse_duration(cfg.limits.tcp_idle_timeout)
        # A worker process (`[daemon] workers` > 1): the supervisor's listening socket, used to send only,
        # and the reader of the datagrams the supervisor hands off to this worker (edge.io.handoff).
        self.worker_udp: tuple[socket.socket, HandoffReader] | None = None

    # -- core driving -----------------------------------------------------------------------
    def feed(self, data: bytes, src: Destination, now: float | None = None, flush: bool = True) -> None:
        if now is None:
            now = time.time()
        if self.hep is not None:
            self.hep.capture(data, (src[1], src[2]), self._local(src[0]), src[0], now)
        self.proxy.receive(data, src, now)
        if flush:
            self.flush()

    def feed_peer(self, data: bytes, src: Destination, now: float) -> bool:
        """A message from a carrier or PBX: shed (503) if it is a new INVITE while overloaded, else to the
        core. False when it was answered or dropped here. The caller flushes."""
        ovl = self.overload
        if ovl is not None:
            if ovl.limiting:
                answer = ovl.shed(data, now)
                if answer is not None:
                    self.send(answer, src)
                    return False
                if ovl.is_shed_ack(data):
                    return False
            ovl.admitted(data, now)
        self.feed(data, src, now, flush=False)
        return True

    def feed_stranger(self, data: bytes, src: Destination, now: float, busy: bool) -> Verdict:
        """A message from neither carrier nor PBX: the flood guard first (no parse, no answer when it
        drops). ADMIT when it reached the core; the caller flushes."""
        guard = self.guard
        if guard is not None:
            verdict = guard.admit_stranger(data, src[1], src[2], now, busy)
            if verdict is not Verdict.ADMIT:
                return verdict
        self.feed(data, src, now, flush=False)
        return Verdict.ADMIT

    # -- load measures --------------------------------------------------------------------------
    def _start_monitor(self) -> None:
        self._monitor_due = self.loop.time() + MONITOR_TICK
        self._monitor = self.loop.call_at(self._monitor_due, self._tick)

    def _tick(self) -> None:
        """Loop lag (how late this tick ran) and pending transactions, for the overload control."""
        lag = max(0.0, self.loop.time() - self._monitor_due)
        self.intake.loop_lag = lag
        if lag > self.intake.loop_lag_max:
            self.intake.loop_lag_max = lag
        ovl = self.overload
        if ovl is not None:
            pending = sum(self.proxy.txns_by_source.values())
            self.intake.pending = pending
            ovl.observe(time.time(), loop_lag=lag, pending=pending)
            self.log_overload()
        self._ticks += 1
        if self._ticks % SWEEP_EVERY == 0:
            self.sweep_connections(self.loop.time())
        self._start_monitor()

    def log_overload(self) -> None:
        if self.overload is None:
            return
        for ev in self.overload.take_events():
            if ev.on:
                log.warning("overload_shedding_started", reason=ev.reason, value=round(ev.value, 3),
                            admitted_rate=ev.rate, sustained_rate=round(self.overload.sustained_rate, 1),
                            retry_after=self.overload.cfg.retry_after)
            else:
                log.warning("overload_shedding_stopped", shed_invites=ev.shed, admitted_rate=ev.rate)

    # -- stream connections: budgets and timeouts --------------------------------------------------
    def admit_connection(self, ip: str, port: int) -> str:
        """'' to accept an inbound connection, else why it is refused. Carriers and PBXs and strangers
        have separate budgets, so strangers can never take a carrier's slot."""
        limits = self.cfg.limits
        if self.proxy.peers.classify(ip, port) is not None:
            return "max_tcp_connections" if self.tcp_peers >= limits.max_tcp_connections else ""
        if self.guard is not None and self.guard.is_banned(ip, time.time()):
            return "banned"
        if self.tcp_unknown >= limits.max_tcp_unknown:
            return "max_tcp_unknown"
        if self.tcp_strangers.get(ip, 0) >= limits.max_tcp_per_source:
            return "max_tcp_per_source"
        return ""

    def count_connection(self, conn: TcpConnection, delta: int) -> None:
        if conn.known:
            self.tcp_peers += delta
            return
        assert conn.peer is not None
        ip = conn.peer[0]
        n = self.tcp_strangers.get(ip, 0) + delta
        if n > 0:
            self.tcp_strangers[ip] = n
        else:
            self.tcp_strangers.pop(ip, None)
        self.tcp_unknown += delta

    def refused(self, ip: str, reason: str) -> None:
        self.intake.tcp_refused += 1
        now = time.monotonic()
        if now - self._refusal_logged >= 1.0:  # a connection flood must not become a log flood
            self._refusal_logged = now
            log.warning("tcp_connection_refused", reason=reason, source=ip, refused_total=self.intake.tcp_refused)

    def sweep_connections(self, now: float) -> None:
        """Close accepted streams holding a half message past `tcp_message_timeout` (slowloris) and
        strangers' streams idle past `tcp_idle_timeout`. Connections the edge opened are left alone."""
        msg_to, idle_to = self.tcp_message_timeout, self.tcp_idle_timeout
        for conn in list(self.conns.values()):
            if conn.outbound or conn.closed:
                continue
            if conn.partial_since and now - conn.partial_since > msg_to:
                self.intake.tcp_message_timeouts += 1
                log.info("tcp_connection_closed", reason="message_timeout", peer=str(conn.peer))
                conn.close()
            elif not conn.known and now - conn.last_rx > idle_to:
                self.intake.tcp_idle_timeouts += 1
                conn.close()

    def intake_metrics(self) -> dict[str, float]:
        """edge_* gauges and counters of the ingress (read at scrape time)."""
        gauges = ("loop_lag", "loop_lag_max", "pending")
        out: dict[str, float] = {f"intake_{k}" if k in gauges else f"intake_{k}_total": v
                                 for k, v in self.intake.as_dict().items()}
        out["intake_tcp_connections_peers"] = self.tcp_peers
        out["intake_tcp_connections_unknown"] = self.tcp_unknown
        if self.overload is not None:
            for k, v in self.overload.stats.as_dict().items():
                out[f"overload_{k}_total"] = v
            out["overload_shedding"] = 1 if self.overload.shedding else 0
            out["overload_rate_limit"] = self.overload.rate if self.overload.limiting else 0.0  # INVITEs/s
            out["overload_admitted_rate"] = self.overload.admitted_rate(time.time())
            out["overload_sustained_rate"] = self.overload.sustained_rate
        return out

    def _local(self, transport: str) -> tuple[str, int]:
        return self.proxy.ua.local_address(transport)

    def flush(self) -> None:
        """Carry out what the core queued: send its messages, store its activities, then the other
        effects (`after_flush`: certificate fetches, lifecycle hits, media), and re-arm the timer."""
        proxy = self.proxy
        for _ in range(8):  # the other effects may answer back into the core (a media result), bounded
            for data, dest in proxy.datagrams_to_send():
                self.send(data, dest)
            acts = proxy.activities_to_store()
            if acts and self.on_activities is not None:
                self.on_activities(acts)
            if self.after_flush is not None:
                self.after_flush(proxy)
            if not proxy.ua.pending:
                break
        self._arm()

    def _arm(self) -> None:
        """One loop timer for the whole core, on a 10 ms grid: SIP timers are hundreds of ms long, so
        firing every due timer of a grid slot together costs one wake-up instead of one per deadline."""
        deadline = self.proxy.next_deadline()
        if deadline is None:
            return
        now_wall = time.time()
        slot = math.ceil(max(deadline, now_wall) / TIMER_GRID) * TIMER_GRID
        if self._timer is not None:
            if self._timer_slot <= slot:
                return  # already armed for this slot or an earlier one
            self._timer.cancel()
        self._timer_slot = slot
        self._timer = self.loop.call_at(self.loop.time() + (slot - now_wall), self._fire)

    def _fire(self) -> None:
        self._timer = None
        # The slot's deadlines are all <= its end; the clocks may disagree by microseconds.
        self.proxy.handle_timers(max(time.time(), self._timer_slot))
        self.flush()

    # -- sending --------------------------------------------------------------------------------
    def send(self, data: bytes, dest: Destination) -> None:
        transport = dest[0]
        if self.hep is not None:
            self.hep.capture(data, self._local(transport), (dest[1], dest[2]), transport, time.time())
        if transport == "udp":
            if self.udp is None:
                return
            host = dest[1]
            if not _is_ip(host):
                host = self._resolved.get(host) or host
            try:
                self.udp.sendto(data, (host, dest[2]))
            except OSError as exc:
                log.warning("udp_send_failed", dest=f"{host}:{dest[2]}", error=str(exc))
            return
        conn = self.conns.get(dest[3]) if dest[3] else None
        if conn is None or conn.closed:
            conn = self.conn_by_addr.get((transport, dest[1], dest[2]))
        if conn is not None and not conn.closed:
            conn.write(data)
            return
        self.loop.create_task(self._connect_and_send(data, dest))

    async def _connect_and_send(self, data: bytes, dest: Destination) -> None:
        transport = dest[0]
        key = (transport, dest[1], dest[2])
        try:
            conn = self.conn_by_addr.get(key)
            if conn is None or conn.closed:
                ssl_ctx = None
                if transport == "tls":
                    if self.tls_client is None:
                        from edge.io.tls import make_client_context

                        tls_listen = next((ls for ls in self.cfg.listen if ls.transport == "tls"), None)
                        self.tls_client = make_client_context(tls_listen)
                    ssl_ctx = self.tls_client
                _, conn = await asyncio.wait_for(
                    self.loop.create_connection(lambda: TcpConnection(self, transport, outbound=True), dest[1], dest[2],
                                                ssl=ssl_ctx),
                    timeout=5,
                )
                self.conn_by_addr[key] = conn
            conn.write(data)
        except (OSError, asyncio.TimeoutError) as exc:
            log.warning("tcp_connect_failed", dest=f"{dest[1]}:{dest[2]}", error=str(exc) or type(exc).__name__)
            self.proxy.transport_error(dest, time.time())
            self.flush()

    # -- listening ------------------------------------------------------------------------------
    async def start(self) -> None:
        for ls in self.cfg.listen:
            host, port = host_port(ls.address)
            if ls.transport == "udp" and self.worker_udp is not None:
                sock, reader = self.worker_udp
                self.udp = UdpSocket(self, sock, reader)
                self.udp_local = sock.getsockname()[:2]
            elif ls.transport == "udp":
                sock = bind_udp(host, port, self.cfg.limits.udp_buffer)
                self.udp = UdpSocket(self, sock)
                self.udp_local = sock.getsockname()[:2]
            elif ls.transport == "tcp":
                server = await self.loop.create_server(lambda: TcpConnection(self, "tcp"), host, port, reuse_address=True)
                self.tcp_servers.append(server)
            else:
                from edge.io.tls import make_server_context

                ctx = make_server_context(ls)
                self.tls_server[len(self.tcp_servers)] = (ctx, ls)
                server = await self.loop.create_server(
                    lambda: TcpConnection(self, "tls"), host, port, reuse_address=True, ssl=ctx,
                    ssl_handshake_timeout=parse_duration(self.cfg.limits.tls_handshake_timeout),
                )
                self.tcp_servers.append(server)
        self.proxy.start(time.time())
        self.flush()
        self._start_monitor()

    def reconfigure(self, cfg: EdgeConfig) -> None:
        """SIGHUP with a valid config: connection limits, timeouts, overload thresholds and TLS certificates
        apply from now on (accepted connections keep their class; listen addresses need a restart)."""
        self.cfg = cfg
        self.tcp_message_timeout = parse_duration(cfg.limits.tcp_message_timeout)
        self.tcp_idle_timeout = parse_duration(cfg.limits.tcp_idle_timeout)
        if self.overload is not None:
            self.overload.configure(cfg.overload)
        self.reload_tls(cfg)

    def reload_tls(self, cfg: EdgeConfig) -> None:
        """SIGHUP: renewed certificates for new TLS connections (established ones keep theirs)."""
        from edge.io.tls import reload_server_context

        by_addr = {ls.address: ls for ls in cfg.listen if ls.transport == "tls"}
        for ctx, old in self.tls_server.values():
            ls = by_addr.get(old.address)
            if ls is not None:
                try:
                    reload_server_context(ctx, ls)
                    log.info("tls_certificate_reloaded", listen=ls.address)
                except (OSError, ValueError) as exc:
                    log.error("tls_certificate_reload_failed", listen=ls.address, error=str(exc))
        self.tls_client = None  # rebuilt with the new chain on the next outgoing connection

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._monitor is not None:
            self._monitor.cancel()
        for s in self.tcp_servers:
            s.close()
        for c in list(self.conns.values()):
            c.close()
        if self.udp is not None:
            self.udp.close()

    def _register(self, conn: TcpConnection) -> int:
        self._conn_seq += 1
        self.conns[self._conn_seq] = conn
        return self._conn_seq

    def _unregister(self, conn: TcpConnection) -> None:
        self.conns.pop(conn.conn_id, None)
        if conn.peer is not None:
            key = (conn.transport_name, *conn.peer)
            if self.conn_by_addr.get(key) is conn:
                del self.conn_by_addr[key]


# SO_TIMESTAMP (= SCM_TIMESTAMP) is 29 in Linux's generic and x86 socket headers; Python does not export it.
SO_TIMESTAMP = getattr(socket, "SO_TIMESTAMP", 29 if sys.platform.startswith("linux") else 0)
_ANC_SPACE = socket.CMSG_SPACE(16)  # one struct timeval
_TIMEVAL = struct.Struct("@ll")  # struct timeval: two C longs


def _arrival(anc: list[tuple[int, int, bytes]]) -> float:
    """The kernel's receive time (SCM_TIMESTAMP) of a datagram, 0.0 when absent."""
    for level, kind, cdata in anc:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMP and len(cdata) >= _TIMEVAL.size:
            sec, usec = _TIMEVAL.unpack_from(cdata)
            return sec + usec / 1e6
    return 0.0


def bind_udp(host: str, port: int, buffer: int) -> socket.socket:
    """The UDP listener: large kernel buffers (best effort), non-blocking."""
    sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
        try:
            sock.setsockopt(socket.SOL_SOCKET, opt, buffer)
        except OSError:
            pass
    sock.bind((host, port))
    sock.setblocking(False)
    return sock


def _is_ip(host: str) -> bool:
    return host.replace(".", "").isdigit() or ":" in host


class IntakeStats:
    """Plain counters and gauges of the ingress; exported as edge_intake_*."""

    __slots__ = ("udp_reads", "udp_datagrams", "udp_peer_datagrams", "udp_full_batches", "udp_send_dropped",
                 "loop_lag", "loop_lag_max", "pending", "tcp_refused", "tcp_message_timeouts", "tcp_idle_timeouts")

    def __init__(self) -> None:
        for s in self.__slots__:
            setattr(self, s, 0)

    def as_dict(self) -> dict[str, float]:
        return {s: getattr(self, s) for s in self.__slots__}


class UdpSocket:
    """The UDP listener, read in batches straight from the socket (no per-datagram callback).

    Each readiness event reads up to UDP_BATCH datagrams, classifies their sources, feeds the
    carriers' and PBXs' ones to the core first and the strangers' ones after, through the flood
    guard; a full batch (the socket still has a backlog) makes the guard drop strangers unparsed.
    """

    def __init__(self, hub: SipHub, sock: socket.socket, reader: HandoffReader | None = None) -> None:
        self.hub = hub
        self.sock = sock
        self.closed = False
        self.peer_run = 0  # carrier/PBX datagrams read since the socket was last found empty
        self.batch = UDP_BATCH
        # Datagrams come from the socket itself or, in a worker process, handed off by the supervisor.
        self.reader = reader
        self._recvfrom = sock.recvfrom if reader is None else reader.recvfrom
        # Kernel receive times (reading the socket itself): the first datagram of a read says how long
        # the queue made it wait.
        self.stamped = False
        if SO_TIMESTAMP and reader is None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMP, 1)
                self.stamped = True
            except OSError:
                pass
        hub.loop.add_reader((sock if reader is None else reader).fileno(), self._readable)

    def sendto(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.sock.sendto(data, addr)
        except (BlockingIOError, InterruptedError):
            self.hub.intake.udp_send_dropped += 1  # the send buffer is full: UDP, the peer retransmits

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            if self.reader is None:
                self.hub.loop.remove_reader(self.sock.fileno())
            else:
                self.hub.loop.remove_reader(self.reader.fileno())
                self.reader.close()
            self.sock.close()

    def _readable(self) -> None:
        hub = self.hub
        recv = self._recvfrom
        classify = hub.proxy.peers.classify  # read per event: a reload replaces the directory
        known: list[tuple[bytes, tuple]] = []
        strangers: list[tuple[bytes, tuple]] = []
        n = 0
        batch = self.batch
        arrived = 0.0
        if self.stamped:
            try:
                data, anc, _flags, addr = self.sock.recvmsg(65536, _ANC_SPACE)
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # an ICMP error, as below
                log.debug("udp_error", error=str(exc))
                data = b""
            n = 1
            if data:
                arrived = _arrival(anc)
                if not (len(data) <= 4 and not data.strip(b"\r\n")):
                    (known if classify(addr[0], addr[1]) is not None else strangers).append((data, addr))
        while n < batch:
            try:
                data, addr = recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:  # ICMP errors surface here on Linux (ECONNREFUSED): skip them
                log.debug("udp_error", error=str(exc))
                n += 1
                continue
            n += 1
            if len(data) <= 4 and not data.strip(b"\r\n"):
                continue  # CRLF keep-alive on UDP (RFC 5626 §4.4.1 uses STUN; bare CRLFs are common): ignore
            if classify(addr[0], addr[1]) is not None:
                known.append((data, addr))
            else:
                strangers.append((data, addr))
        if not n:
            return
        stats = hub.intake
        stats.udp_reads += 1
        stats.udp_datagrams += n
        stats.udp_peer_datagrams += len(known)
        full = n >= batch
        if full:
            stats.udp_full_batches += 1
        now = time.time()
        # A full batch left more behind: the carriers' backlog is what was read since the socket was
        # last empty, not just this batch.
        self.peer_run = self.peer_run + len(known) if full else len(known)
        ovl = hub.overload
        if ovl is not None and (known or full):
            ovl.observe(now, peer_backlog=self.peer_run, queue_delay=max(0.0, now - arrived) if arrived else None)
            hub.log_overload()
        for data, addr in known:
            hub.feed_peer(data, Destination("udp", addr[0], addr[1]), now)
        if strangers:
            busy = full or (ovl is not None and ovl.shedding)
            for data, addr in strangers:
                hub.feed_stranger(data, Destination("udp", addr[0], addr[1]), now, busy)
        hub.flush()
        if self.reader is not None and full and self.reader.buffered:
            hub.loop.call_soon(self._readable)  # handed-off frames already read into user space


class TcpConnection(asyncio.Protocol):
    """One SIP stream connection (TCP or TLS), accepted or opened; framed by Content-Length.

    An accepted connection is classified once (carrier/PBX or stranger) and counted in that budget;
    one the edge opens itself (`outbound`) is never refused nor timed out for strangers' sake."""

    def __init__(self, hub: SipHub, transport_name: str = "tcp", outbound: bool = False) -> None:
        self.hub = hub
        self.transport_name = transport_name
        self.transport: asyncio.Transport | None = None
        self.framer = StreamFramer(hub.cfg.limits.max_tcp_message)
        self.conn_id = 0
        self.peer: tuple[str, int] | None = None
        self.closed = False
        self.outbound = outbound
        self.known = outbound
        self.counted = False
        self.last_rx = hub.loop.time()
        self.partial_since = 0.0  # loop time a half-received message started (0: none)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        hub = self.hub
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1]) if peer else None
        if not self.outbound:
            ip, port = self.peer if self.peer is not None else ("", 0)
            reason = hub.admit_connection(ip, port)
            if reason:
                hub.refused(ip, reason)
                transport.abort()  # no FIN handshake to wait for: the slot is free at once
                self.closed = True
                return
            self.known = hub.proxy.peers.classify(ip, port) is not None
            hub.count_connection(self, 1)
            self.counted = True
        self.conn_id = hub._register(self)
        if self.peer is not None:
            hub.conn_by_addr.setdefault((self.transport_name, *self.peer), self)

    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        now_loop = self.hub.loop.time()
        self.last_rx = now_loop
        try:
            msgs = self.framer.feed(data)
        except FramingError as exc:
            log.warning("tcp_framing_error", peer=str(self.peer), error=str(exc))
            self.close()
            return
        buf = self.framer.buf
        if buf and buf.strip(b"\r\n"):  # CRLFs alone are a keep-alive on its way, not a message
            if not self.partial_since or msgs:
                self.partial_since = now_loop  # a (new) message has begun
        else:
            self.partial_since = 0.0
        if self.framer.pings and self.transport is not None:
            self.transport.write(b"\r\n" * self.framer.take_pings())  # RFC 5626 §3.5.1 pong
        if self.peer is None:
            return
        if not msgs:
            return
        hub = self.hub
        src = Destination(self.transport_name, self.peer[0], self.peer[1], self.conn_id)
        now = time.time()
        known = hub.proxy.peers.classify(self.peer[0], self.peer[1]) is not None
        ovl = hub.overload
        busy = ovl is not None and ovl.shedding
        for m in msgs:
            if known:
                hub.feed_peer(m, src, now)
                continue
            verdict = hub.feed_stranger(m, src, now, busy)
            if verdict is not Verdict.ADMIT and verdict is not Verdict.DROP_METHOD:
                self.close()  # a flooding, scanning or (while busy) any stranger loses its connection
                break
        hub.flush()

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.transport.close()
        self.closed = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.counted:
            self.counted = False
            self.hub.count_connection(self, -1)
        self.hub._unregister(self)
