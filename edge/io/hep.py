"""HEPv3 capture export (Homer): every SIP message the edge receives or sends, mirrored over UDP.

HEP/EEP version 3 (sipcapture.org "HEP3 network protocol specification"): a packet is the ASCII id
"HEP3", a uint16 total length, then chunks, each a uint16 vendor id (0 = generic), a uint16 chunk
type and a uint16 chunk length that includes its own 6-byte header; all integers in network order.
Generic chunks sent here:

    0x0001 IP protocol family (uint8: 2 = IPv4, 10 = IPv6)   0x0002 IP protocol id (uint8: 17 UDP, 6 TCP)
    0x0003/0x0004 IPv4 source/destination (4 bytes)          0x0005/0x0006 IPv6 source/destination (16 bytes)
    0x0007/0x0008 source/destination port (uint16)           0x0009/0x000a timestamp seconds/microseconds (uint32)
    0x000b protocol type (uint8: 1 = SIP)                     0x000c capture agent id (uint32)
    0x000e authentication key (string, only when set)        0x0011 correlation id (string: the Call-ID)
    0x000f captured payload (the SIP message as sent or received)

Off by default. Capture must never slow or break call handling: the per-message work is one Call-ID
regex and a join of pre-built pieces (static chunks built once, address chunks memoised in a bounded
dict); the socket is a non-blocking asyncio datagram transport; a capture is dropped and counted
when the transport's buffer is over `max_buffer`, when the packet would exceed a UDP datagram, or
when the exporter is not started; no error ever reaches the caller.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import struct

import msgspec
import structlog

log = structlog.get_logger("edge.hep")

__all__ = ["HepConfig", "HepEncoder", "HepExporter", "validate_hep"]

HEP_ID = b"HEP3"
PROTO_TYPE_SIP = 1
IP_PROTO = {"udp": 17, "tcp": 6, "tls": 6, "ws": 6, "wss": 6}
MAX_PACKET = 65507  # largest IPv4 UDP payload (the HEP length field would allow 65535)

CHUNK_FAMILY, CHUNK_PROTO_ID = 0x0001, 0x0002
CHUNK_IP4_SRC, CHUNK_IP4_DST, CHUNK_IP6_SRC, CHUNK_IP6_DST = 0x0003, 0x0004, 0x0005, 0x0006
CHUNK_SRC_PORT, CHUNK_DST_PORT = 0x0007, 0x0008
CHUNK_TS_SEC, CHUNK_TS_USEC = 0x0009, 0x000A
CHUNK_PROTO_TYPE, CHUNK_AGENT_ID, CHUNK_AUTH_KEY = 0x000B, 0x000C, 0x000E
CHUNK_PAYLOAD, CHUNK_CORRELATION_ID = 0x000F, 0x0011

_CALL_ID = re.compile(rb"^(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*?)[ \t]*\r?$", re.IGNORECASE | re.MULTILINE)
_U8 = struct.Struct("!HHHB")
_U16 = struct.Struct("!HHHH")
_U32 = struct.Struct("!HHHI")
_HDR = struct.Struct("!HHH")
_TS = struct.Struct("!HHHIHHHI")  # seconds and microseconds chunks in one pack


class HepConfig(msgspec.Struct, forbid_unknown_fields=True):
    """`[hep]` in config/edge.toml."""

    enabled: bool = False
    address: str = "127.0.0.1:9060"  # the collector (heplify-server, captagent), IP literal and port
    agent_id: int = 2001  # capture agent id shown in Homer (uint32)
    password: str = ""  # HEP authentication key chunk, sent only when set
    correlation_id: bool = True  # send the Call-ID as the correlation id chunk
    max_buffer: int = 1_048_576  # bytes the socket may queue before captures are dropped


def _split_address(text: str) -> tuple[str, int]:
    """'192.0.2.1:9060' / '[2001:db8::1]:9060' -> (ip, port); raises ValueError."""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    else:
        host, _, port = text.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"invalid address {text!r}: expected ip:port (e.g. '127.0.0.1:9060')")
    ipaddress.ip_address(host)  # an IP literal: no DNS lookups for capture
    return host, int(port)


def validate_hep(cfg: HepConfig, prefix: str = "$.hep") -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    try:
        _split_address(cfg.address)
    except ValueError as exc:
        errors.append((f"{prefix}.address", str(exc)))
    if not 0 <= cfg.agent_id <= 0xFFFFFFFF:
        errors.append((f"{prefix}.agent_id", "must fit in 32 bits (0..4294967295)"))
    if len(cfg.password.encode()) > 1024:
        errors.append((f"{prefix}.password", "at most 1024 bytes"))
    if cfg.max_buffer < MAX_PACKET:
        errors.append((f"{prefix}.max_buffer", f"must be at least {MAX_PACKET} (one datagram)"))
    return errors


def _chunk(kind: int, value: bytes) -> bytes:
    return _HDR.pack(0, kind, 6 + len(value)) + value


class HepEncoder:
    """Builds HEP3 packets; sans-IO (the exporter adds the socket)."""

    __slots__ = ("_static", "_addrs", "_cap", "correlate")

    def __init__(self, agent_id: int, password: str = "", correlate: bool = True, address_cache: int = 4096) -> None:
        static = _U8.pack(0, CHUNK_PROTO_TYPE, 7, PROTO_TYPE_SIP) + _U32.pack(0, CHUNK_AGENT_ID, 10, agent_id)
        if password:
            static += _chunk(CHUNK_AUTH_KEY, password.encode())
        self._static = static
        self.correlate = correlate
        self._addrs: dict[str, tuple[int, bytes]] = {}  # ip -> (family, packed address)
        self._cap = address_cache

    def _addr(self, ip: str) -> tuple[int, bytes]:
        hit = self._addrs.get(ip)
        if hit is None:
            addr = ipaddress.ip_address(ip.strip("[]"))
            if addr.version == 6 and addr.ipv4_mapped is not None:
                addr = addr.ipv4_mapped
            hit = (2 if addr.version == 4 else 10, addr.packed)
            if len(self._addrs) >= self._cap:
                del self._addrs[next(iter(self._addrs))]
            self._addrs[ip] = hit
        return hit

    def encode(self, data: bytes, src: tuple[str, int], dst: tuple[str, int], proto: str, now: float) -> bytes | None:
        """One HEP3 packet, or None when it cannot be sent (too large, mixed address families)."""
        fam, src_ip = self._addr(src[0])
        dfam, dst_ip = self._addr(dst[0])
        if fam != dfam:
            return None
        if fam == 2:
            addrs = _HDR.pack(0, CHUNK_IP4_SRC, 10) + src_ip + _HDR.pack(0, CHUNK_IP4_DST, 10) + dst_ip
        else:
            addrs = _HDR.pack(0, CHUNK_IP6_SRC, 22) + src_ip + _HDR.pack(0, CHUNK_IP6_DST, 22) + dst_ip
        sec = int(now)
        parts = [
            b"",  # the HEP3 header, once the length is known
            _U8.pack(0, CHUNK_FAMILY, 7, fam),
            _U8.pack(0, CHUNK_PROTO_ID, 7, IP_PROTO.get(proto, 17)),
            addrs,
            _U16.pack(0, CHUNK_SRC_PORT, 8, src[1]),
            _U16.pack(0, CHUNK_DST_PORT, 8, dst[1]),
            _TS.pack(0, CHUNK_TS_SEC, 10, sec, 0, CHUNK_TS_USEC, 10, int((now - sec) * 1_000_000) % 1_000_000),
            self._static,
        ]
        if self.correlate:
            head_end = data.find(b"\r\n\r\n")
            m = _CALL_ID.search(data, 0, head_end if head_end >= 0 else len(data))
            if m is not None and m.group(1):
                parts.append(_chunk(CHUNK_CORRELATION_ID, m.group(1)))
        parts.append(_HDR.pack(0, CHUNK_PAYLOAD, 6 + len(data)))
        parts.append(data)
        total = 6 + sum(len(p) for p in parts)
        if total > MAX_PACKET:
            return None
        parts[0] = HEP_ID + total.to_bytes(2, "big")
        return b"".join(parts)


class _Protocol(asyncio.DatagramProtocol):
    def __init__(self, exporter: HepExporter) -> None:
        self.exporter = exporter

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a collector that is down: count, log the first of each run.
        self.exporter._error(exc)


class HepExporter:
    """`capture(data, src, dst, proto, now)` for every SIP message; `start()` once inside the loop."""

    def __init__(self, cfg: HepConfig) -> None:
        self.cfg = cfg
        self.encoder = HepEncoder(cfg.agent_id, cfg.password, cfg.correlation_id)
        self.address = _split_address(cfg.address)
        self.transport: asyncio.DatagramTransport | None = None
        self.sent = 0
        self.dropped = 0
        self.errors = 0
        self._error_run = 0

    async def start(self) -> None:
        loop = asyncio.get_running_loop()
        family = socket.AF_INET6 if ":" in self.address[0] else socket.AF_INET
        transport, _ = await loop.create_datagram_endpoint(lambda: _Protocol(self), remote_addr=self.address, family=family)
        self.transport = transport  # type: ignore[assignment]
        log.info("hep_export_started", collector=self.cfg.address, agent_id=self.cfg.agent_id)

    def capture(self, data: bytes, src: tuple[str, int], dst: tuple[str, int], proto: str, now: float) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            self.dropped += 1
            return
        try:
            if transport.get_write_buffer_size() > self.cfg.max_buffer:
                self.dropped += 1
                return
            packet = self.encoder.encode(data, src, dst, proto, now)
            if packet is None:
                self.dropped += 1
                return
            transport.sendto(packet)
            self.sent += 1
            self._error_run = 0
        except Exception as exc:  # noqa: BLE001 - capture never breaks the SIP path
            self._error(exc)

    def _error(self, exc: BaseException) -> None:
        self.errors += 1
        if self._error_run == 0:
            log.warning("hep_export_failed", collector=self.cfg.address, error=str(exc) or type(exc).__name__)
        self._error_run += 1

    def stats(self) -> dict[str, int]:
        return {"hep_sent_total": self.sent, "hep_dropped_total": self.dropped, "hep_errors_total": self.errors}

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()
            self.transport = None
