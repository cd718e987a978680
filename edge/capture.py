"""`[hep]` settings: HEPv3 capture of every SIP message to a Homer collector (off by default).

Only the settings and their validation live here, so `edge/config.py` can hold them without
importing the exporter and its socket (edge/io/hep.py).
"""

from __future__ import annotations

import ipaddress

import msgspec

MAX_PACKET = 65507  # largest IPv4 UDP payload (the HEP length field would allow 65535)


class HepConfig(msgspec.Struct, forbid_unknown_fields=True):
    """`[hep]` in config/edge.toml."""

    enabled: bool = False
    address: str = "127.0.0.1:9060"  # the collector (heplify-server, captagent), IP literal and port
    agent_id: int = 2001  # capture agent id shown in Homer (uint32)
    password: str = ""  # HEP authentication key chunk, sent only when set
    correlation_id: bool = True  # send the Call-ID as the correlation id chunk
    max_buffer: int = 1_048_576  # bytes the socket may queue before captures are dropped


def split_address(text: str) -> tuple[str, int]:
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
        split_address(cfg.address)
    except ValueError as exc:
        errors.append((f"{prefix}.address", str(exc)))
    if not 0 <= cfg.agent_id <= 0xFFFFFFFF:
        errors.append((f"{prefix}.agent_id", "must fit in 32 bits (0..4294967295)"))
    if len(cfg.password.encode()) > 1024:
        errors.append((f"{prefix}.password", "at most 1024 bytes"))
    if cfg.max_buffer < MAX_PACKET:
        errors.append((f"{prefix}.max_buffer", f"must be at least {MAX_PACKET} (one datagram)"))
    return errors


__all__ = ["MAX_PACKET", "HepConfig", "split_address", "validate_hep"]
