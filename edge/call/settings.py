"""The slice of config/edge.toml the call layer reads: listeners, carriers and PBXs, SIP timers and
limits, the ACL, and the few daemon settings a proxy needs (node name, Retry-After, call logging).

The sections are defined here and `edge/config.py` composes them into `EdgeConfig` (like the flood,
policy and media sections), so the core never imports the config module: the daemon hands the proxy
a `CallSettings` built by `EdgeConfig.call_settings()`, on start and on every reload.
"""

from __future__ import annotations

from typing import Literal

import msgspec

from edge.sip.timers import TimerValues
from edge.units import parse_duration


class Listen(msgspec.Struct, forbid_unknown_fields=True):
    transport: Literal["udp", "tcp", "tls"] = "udp"
    address: str = "127.0.0.1:5060"
    advertise: str = ""  # host[:port] written in Via/Record-Route when behind NAT; default: address
    # TLS (RFC 3261 §26.2, RFC 5630): the edge's certificate chain and key (PEM), reloaded on SIGHUP.
    tls_cert: str = ""
    tls_key: str = ""
    tls_ca: str = ""  # CA bundle for verifying peers: carriers' client certificates, PBX/carrier servers
    tls_verify_client: bool = False  # require and verify a client certificate from carriers


class Carrier(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    sources: list[str]  # CIDRs ('203.0.113.0/24'), addresses, or 'ip:port' for an exact peer
    outbound: list[str] = []  # SIP URIs for calls the PBX sends out through this carrier (failover order)


class Pbx(msgspec.Struct, forbid_unknown_fields=True):
    name: str
    uri: str  # 'sip:10.0.0.5:5060;transport=udp'
    sources: list[str] = []  # default: the URI's host and port
    health_check: bool = True
    health_interval: str = "10s"
    health_timeout: str = "2s"
    down_after: int = 2  # consecutive failed pings before the target leaves rotation


class Timers(msgspec.Struct, forbid_unknown_fields=True):
    t1: str = "500ms"
    t2: str = "4s"
    t4: str = "5s"
    timer_b: str = ""  # default 64*T1; shorter fails over to the next PBX target sooner
    timer_c: str = "180s"
    timer_d: str = "32s"
    timer_f: str = ""
    timer_h: str = ""
    timer_j: str = ""

    def values(self) -> TimerValues:
        def d(v: str) -> float:
            return parse_duration(v) if v else 0.0

        return TimerValues(
            t1=d(self.t1),
            t2=d(self.t2),
            t4=d(self.t4),
            timer_b=d(self.timer_b),
            timer_c=d(self.timer_c),
            timer_d=d(self.timer_d),
            timer_f=d(self.timer_f),
            timer_h=d(self.timer_h),
            timer_j=d(self.timer_j),
        )


class Limits(msgspec.Struct, forbid_unknown_fields=True):
    max_udp_message: int = 16384
    max_tcp_message: int = 65536
    max_headers: int = 100
    max_header_length: int = 4096
    max_via: int = 16
    max_transactions: int = 200_000
    max_transactions_per_source: int = 5_000  # requests from one source still awaiting a final answer
    max_dialogs: int = 200_000
    max_tcp_connections: int = 4096  # accepted from carriers and PBXs (connections the edge opens: no cap)
    max_tcp_unknown: int = 1024  # accepted from all other sources together: a separate budget
    max_tcp_per_source: int = 16  # accepted from one unknown IP address
    tcp_message_timeout: str = "5s"  # a message begun on a stream must be complete within this
    tcp_idle_timeout: str = "60s"  # an unknown source's connection with nothing received this long is closed
    tls_handshake_timeout: str = "5s"
    max_parked: int = 1000  # INVITEs waiting for one STIR certificate fetch
    dialog_max_age: str = "12h"  # a dialog with no BYE is forgotten after this
    udp_buffer: int = 4 * 1024 * 1024


class Acl(msgspec.Struct, forbid_unknown_fields=True):
    unknown_source: Literal["reject", "drop"] = "reject"  # 403 or silence for non-carrier, non-PBX INVITEs


class CallSettings(msgspec.Struct, frozen=True):
    """What `Proxy` and its peers/targets read; built from the daemon's config on start and reload."""

    listen: list[Listen]
    carriers: list[Carrier] = []
    pbx: list[Pbx] = []
    timers: Timers = msgspec.field(default_factory=Timers)
    limits: Limits = msgspec.field(default_factory=Limits)
    acl: Acl = msgspec.field(default_factory=Acl)
    node: str = "edge-1"  # [daemon] node: activity ids and records
    retry_after: int = 30  # [daemon] retry_after: seconds, on 503 while draining
    log_calls: bool = True  # [logging] log_calls: one contact_decided event per contact


def host_port(text: str, default_port: int = 5060) -> tuple[str, int]:
    if text.startswith("["):
        end = text.index("]")
        host = text[1:end]
        rest = text[end + 1 :]
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    return host, int(port) if port else default_port


__all__ = ["Acl", "CallSettings", "Carrier", "Limits", "Listen", "Pbx", "Timers", "host_port"]
