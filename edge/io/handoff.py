"""Hand-off of UDP datagrams from the supervisor's listening socket to the worker that owns their Call-ID.

With `[daemon] workers = N > 1` the supervisor binds the one UDP listener and reads it; every datagram
goes, framed with its source address, over a Unix stream socketpair to its owner (edge.sip.affinity).
Workers send straight from the same listening socket (inherited, never read by them), so carriers and
PBXs see one address and port. A stream socketpair (not datagrams): the kernel queues bytes rather than
at most `net.unix.max_dgram_qlen` messages, and one `send` carries a whole batch.

Frame: `!HHB` (payload length, source port, address length), the source address in ASCII, the payload.
The worker writes short control lines back on the same socketpair (`ready`).
"""

from __future__ import annotations

import asyncio
import socket
import struct
from typing import Callable

import structlog

from edge.sip.affinity import owner

log = structlog.get_logger("edge.handoff")

HEAD = struct.Struct("!HHB")
READ_CHUNK = 1 << 18
SOCKET_BUFFER = 1 << 22  # bytes the kernel may hold per direction (capped by net.core.[rw]mem_max)
MAX_PENDING = 8 << 20  # bytes queued in the supervisor for one worker; beyond it datagrams are dropped
UDP_BATCH = 512


def frame(data: bytes, addr: tuple[str, int]) -> bytes:
    ip = addr[0].encode("ascii")
    return HEAD.pack(len(data), addr[1], len(ip)) + ip + data


def socketpair() -> tuple[socket.socket, socket.socket]:
    """(supervisor end, worker end), non-blocking, with large buffers."""
    ends = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    for s in ends:
        s.setblocking(False)
        for opt in (socket.SO_SNDBUF, socket.SO_RCVBUF):
            try:
                s.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
            except OSError:
                pass
    return ends[0], ends[1]


class HandoffReader:
    """The worker's end: `recvfrom` like a UDP socket (BlockingIOError when nothing is left), so the
    hub's batched reader works unchanged. Frames are cut from one buffer in a single pass."""

    def __init__(self, sock: socket.socket, loop: asyncio.AbstractEventLoop) -> None:
        self.sock = sock
        self.loop = loop
        self.buf = bytearray()
        self.pos = 0
        self.eof = False
        self.on_eof: Callable[[], None] | None = None  # the supervisor is gone: the worker drains and exits

    def fileno(self) -> int:
        return self.sock.fileno()

    @property
    def buffered(self) -> bool:
        """A whole frame is waiting in user space (the socket may no longer be readable)."""
        return self._frame_ready()

    def _frame_ready(self) -> bool:
        avail = len(self.buf) - self.pos
        if avail < HEAD.size:
            return False
        n, _, iplen = HEAD.unpack_from(self.buf, self.pos)
        return avail >= HEAD.size + iplen + n

    def recvfrom(self, _bufsize: int = 0) -> tuple[bytes, tuple[str, int]]:
        if not self._frame_ready():
            self._fill()
            if not self._frame_ready():
                raise BlockingIOError
        buf, pos = self.buf, self.pos
        n, port, iplen = HEAD.unpack_from(buf, pos)
        start = pos + HEAD.size
        ip = buf[start:start + iplen].decode("ascii")
        data = bytes(buf[start + iplen:start + iplen + n])
        self.pos = start + iplen + n
        return data, (ip, port)

    def _fill(self) -> None:
        if self.pos:
            del self.buf[:self.pos]  # once per socket read: linear overall
            self.pos = 0
        try:
            chunk = self.sock.recv(READ_CHUNK)
        except (BlockingIOError, InterruptedError):
            return
        if not chunk:
            if not self.eof:
                self.eof = True
                self.loop.remove_reader(self.sock.fileno())
                log.error("handoff_supervisor_gone", detail="draining and exiting")
                if self.on_eof is not None:
                    self.on_eof()
            return
        self.buf += chunk

    def tell_supervisor(self, line: str) -> None:
        try:
            self.sock.send(line.encode("ascii") + b"\n")
        except OSError as exc:
            log.warning("handoff_control_failed", error=str(exc))

    def close(self) -> None:
        self.sock.close()


class WorkerLink:
    """The supervisor's end of one worker's socketpair: a byte queue flushed when the socket takes it."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, on_line: Callable[[str], None]) -> None:
        self.loop = loop
        self.sock = sock
        self.out = bytearray()
        self.writing = False
        self.closed = False
        self.dropped = 0
        self.on_line = on_line
        self._lines = bytearray()
        loop.add_reader(sock.fileno(), self._readable)

    def queue(self, data: bytes) -> bool:
        if self.closed or len(self.out) + len(data) > MAX_PENDING:
            self.dropped += 1  # UDP: the sender retransmits
            return False
        self.out += data
        return True

    def flush(self) -> None:
        if self.closed or not self.out:
            return
        try:
            sent = self.sock.send(self.out)
        except (BlockingIOError, InterruptedError):
            sent = 0
        except OSError:
            self.close()
            return
        del self.out[:sent]
        if self.out and not self.writing:
            self.writing = True
            self.loop.add_writer(self.sock.fileno(), self._writable)
        elif not self.out and self.writing:
            self.writing = False
            self.loop.remove_writer(self.sock.fileno())

    def _writable(self) -> None:
        self.flush()

    def _readable(self) -> None:
        try:
            chunk = self.sock.recv(4096)
        except (BlockingIOError, InterruptedError):
            return
        except OSError:
            chunk = b""
        if not chunk:
            self.close()  # the worker is gone; its process watcher restarts it
            return
        self._lines += chunk
        while (nl := self._lines.find(b"\n")) >= 0:
            line = bytes(self._lines[:nl]).decode("ascii", "replace")
            del self._lines[:nl + 1]
            self.on_line(line)
        if len(self._lines) > 4096:
            self._lines.clear()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self.loop.remove_reader(self.sock.fileno())
        if self.writing:
            self.loop.remove_writer(self.sock.fileno())
        self.sock.close()
        self.out.clear()


class Dispatcher:
    """Reads the UDP listener in batches and queues every datagram to its owning worker's link."""

    def __init__(self, loop: asyncio.AbstractEventLoop, sock: socket.socket, links: list[WorkerLink | None]) -> None:
        self.loop = loop
        self.sock = sock
        self.links = links  # replaced entries when a worker restarts; None while it is down
        self.datagrams = 0
        self.dropped = 0  # no live worker or its queue full
        self.per_worker = [0] * len(links)
        loop.add_reader(sock.fileno(), self._readable)

    def _readable(self) -> None:
        recv = self.sock.recvfrom
        links = self.links
        n_workers = len(links)
        touched: set[int] = set()
        for _ in range(UDP_BATCH):
            try:
                data, addr = recv(65536)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # ICMP errors from earlier sends surface here on Linux: skip them
                continue
            self.datagrams += 1
            i = owner(data, n_workers)
            link = links[i]
            if link is None or not link.queue(frame(data, addr)):
                self.dropped += 1
                continue
            self.per_worker[i] += 1
            touched.add(i)
        for i in touched:
            link = links[i]
            if link is not None:
                link.flush()

    def close(self) -> None:
        self.loop.remove_reader(self.sock.fileno())
