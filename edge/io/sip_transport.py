"""asyncio adapters for the sans-IO proxy: UDP and TCP sockets, the outbox flush and the timer arm.

One `SipHub` owns the Proxy. Every datagram or framed stream message goes in with the current time;
after each call the hub sends what the core queued and re-arms one loop timer at the core's next
deadline. Activity records the core produced are handed to `on_activities`.
"""

from __future__ import annotations

import asyncio
import math
import socket
import time
from typing import Callable

import structlog

from edge.call.activity import Activity
from edge.call.flood import FloodGuard, Verdict
from edge.call.proxy import Proxy
from edge.config import EdgeConfig, host_port
from edge.sip.errors import FramingError
from edge.sip.framing import StreamFramer
from edge.sip.transaction import Destination

log = structlog.get_logger("edge.io")

TIMER_GRID = 0.01  # seconds


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
        self.udp: asyncio.DatagramTransport | None = None
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

    # -- core driving -----------------------------------------------------------------------
    def feed(self, data: bytes, src: Destination) -> None:
        now = time.time()
        if self.hep is not None:
            self.hep.capture(data, (src[1], src[2]), self._local(src[0]), src[0], now)
        self.proxy.receive(data, src, now)
        self.flush()

    def _local(self, transport: str) -> tuple[str, int]:
        return self.proxy.local.get(transport) or next(iter(self.proxy.local.values()))

    def flush(self) -> None:
        proxy = self.proxy
        if proxy.outbox:
            out = proxy.outbox
            proxy.outbox = []
            for data, dest in out:
                self.send(data, dest)
        if proxy.activities and self.on_activities is not None:
            acts = proxy.activities
            proxy.activities = []
            self.on_activities(acts)
        elif proxy.activities:
            proxy.activities.clear()
        if self.after_flush is not None and (proxy.cert_fetches or proxy.released_hits or (
                proxy.messaging is not None and proxy.messaging.optout_changes)):
            self.after_flush(proxy)
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
                    self.loop.create_connection(lambda: TcpConnection(self, transport), dest[1], dest[2], ssl=ssl_ctx),
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
            if ls.transport == "udp":
                sock = socket.socket(socket.AF_INET6 if ":" in host else socket.AF_INET, socket.SOCK_DGRAM)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
                    try:
                        sock.setsockopt(socket.SOL_SOCKET, opt, self.cfg.limits.udp_buffer)
                    except OSError:
                        pass
                sock.bind((host, port))
                transport, _ = await self.loop.create_datagram_endpoint(lambda: UdpProtocol(self), sock=sock)
                self.udp = transport  # type: ignore[assignment]
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
                    ssl_handshake_timeout=10,
                )
                self.tcp_servers.append(server)
        self.proxy.start(time.time())
        self.flush()

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


def _is_ip(host: str) -> bool:
    return host.replace(".", "").isdigit() or ":" in host


class UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, hub: SipHub) -> None:
        self.hub = hub

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        if len(data) <= 4 and not data.strip(b"\r\n"):
            return  # CRLF keep-alive on UDP (RFC 5626 §4.4.1 uses STUN; bare CRLFs are common): ignore
        guard = self.hub.guard
        if guard is not None and guard.admit(data, addr[0], addr[1], time.time()) is not Verdict.ADMIT:
            return  # floods, banned sources and scanners cost no parsing and get no answer
        self.hub.feed(data, Destination("udp", addr[0], addr[1]))

    def error_received(self, exc: Exception) -> None:
        log.debug("udp_error", error=str(exc))


class TcpConnection(asyncio.Protocol):
    """One SIP stream connection (TCP or TLS), accepted or opened; framed by Content-Length."""

    def __init__(self, hub: SipHub, transport_name: str = "tcp") -> None:
        self.hub = hub
        self.transport_name = transport_name
        self.transport: asyncio.Transport | None = None
        self.framer = StreamFramer(hub.cfg.limits.max_tcp_message)
        self.conn_id = 0
        self.peer: tuple[str, int] | None = None
        self.closed = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        if len(self.hub.conns) >= self.hub.cfg.limits.max_tcp_connections:
            log.warning("tcp_connection_refused", reason="max_tcp_connections")
            transport.close()
            self.closed = True
            return
        self.conn_id = self.hub._register(self)
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1]) if peer else None
        if self.peer is not None:
            self.hub.conn_by_addr.setdefault((self.transport_name, *self.peer), self)

    def data_received(self, data: bytes) -> None:
        try:
            msgs = self.framer.feed(data)
        except FramingError as exc:
            log.warning("tcp_framing_error", peer=str(self.peer), error=str(exc))
            self.close()
            return
        if self.framer.pings and self.transport is not None:
            self.transport.write(b"\r\n" * self.framer.take_pings())  # RFC 5626 §3.5.1 pong
        if self.peer is None:
            return
        src = Destination(self.transport_name, self.peer[0], self.peer[1], self.conn_id)
        guard = self.hub.guard
        for m in msgs:
            if guard is not None:
                verdict = guard.admit(m, self.peer[0], self.peer[1], time.time())
                if verdict is Verdict.DROP_METHOD:
                    continue
                if verdict is not Verdict.ADMIT:
                    self.close()  # a flooding or scanning stream peer loses its connection
                    return
            self.hub.feed(m, src)

    def write(self, data: bytes) -> None:
        if self.transport is not None and not self.closed:
            self.transport.write(data)

    def close(self) -> None:
        if not self.closed and self.transport is not None:
            self.transport.close()
        self.closed = True

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.hub._unregister(self)
