"""The daemon's own settings (config/edge.toml), decoded into msgspec Structs with unknown keys refused.

`load_config(path)` returns an `EdgeConfig` or raises `ConfigError` carrying every problem as
`file:line:col: $.path: reason`, the form `sip-edge check` prints (all of them in one run).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal

import msgspec

from edge.call.flood import FloodConfig, validate_flood
from edge.call.overload import OverloadConfig, validate_overload
from edge.io.hep import HepConfig, validate_hep
from edge.lifecycle.schema import LifecycleConfig, validate_lifecycle
from edge.media.engine_config import MediaConfig
from edge.media.engine_config import validate as validate_media_config
from edge.messaging.schema import MessagingConfig, validate_messaging
from edge.policy.schema import PolicySettings, validate_settings
from edge.sip.timers import TimerValues
from edge.stir.schema import StirConfig
from edge.stir.schema import validate as validate_stir_config
from edge.store.schema import AdminConfig, StoreConfig, validate_admin, validate_store
from edge.tomlfile import Problem, Reported, TomlFile, decode, read_toml
from edge.units import parse_duration


class ConfigError(Exception):
    """One or more configuration problems: `problems`, and `errors` as printed (`file:line:col: $.path: reason`)."""

    def __init__(self, problems: list[Problem]) -> None:
        self.problems = problems
        self.errors = [str(p) for p in problems]
        super().__init__("\n".join(self.errors))


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


class Logging(msgspec.Struct, forbid_unknown_fields=True):
    level: Literal["debug", "info", "warning", "error"] = "info"
    format: Literal["auto", "json", "console"] = "auto"  # auto: console on a TTY, JSON lines otherwise
    log_calls: bool = True  # one event per contact decision


class Daemon(msgspec.Struct, forbid_unknown_fields=True):
    node: str = "edge-1"
    state_dir: str = "var"
    drain_timeout: str = "30s"
    retry_after: int = 30  # seconds, on 503 while draining
    watchdog: bool = True  # systemd WATCHDOG=1 pings when WatchdogSec is set


class EdgeConfig(msgspec.Struct, forbid_unknown_fields=True):
    listen: list[Listen]
    carriers: list[Carrier] = []
    pbx: list[Pbx] = []
    timers: Timers = msgspec.field(default_factory=Timers)
    limits: Limits = msgspec.field(default_factory=Limits)
    acl: Acl = msgspec.field(default_factory=Acl)
    logging: Logging = msgspec.field(default_factory=Logging)
    daemon: Daemon = msgspec.field(default_factory=Daemon)
    policy: PolicySettings = PolicySettings()
    store: StoreConfig = msgspec.field(default_factory=StoreConfig)
    admin: AdminConfig = msgspec.field(default_factory=AdminConfig)
    lifecycle: LifecycleConfig = msgspec.field(default_factory=LifecycleConfig)
    stir: StirConfig = msgspec.field(default_factory=StirConfig)
    media: MediaConfig = MediaConfig()
    flood: FloodConfig = msgspec.field(default_factory=FloodConfig)
    overload: OverloadConfig = msgspec.field(default_factory=OverloadConfig)
    hep: HepConfig = msgspec.field(default_factory=HepConfig)
    messaging: MessagingConfig = MessagingConfig()
    path: str = ""  # where it was loaded from (set by load_config)


def host_port(text: str, default_port: int = 5060) -> tuple[str, int]:
    if text.startswith("["):
        end = text.index("]")
        host = text[1:end]
        rest = text[end + 1 :]
        return host, int(rest[1:]) if rest.startswith(":") else default_port
    host, _, port = text.rpartition(":") if text.count(":") == 1 else (text, "", "")
    return host, int(port) if port else default_port


def _check_source(src: str) -> str | None:
    try:
        if src.count(":") == 1 and "/" not in src:
            host, port = host_port(src)
            ipaddress.ip_address(host)
            if not 0 < port < 65536:
                return f"invalid port in {src!r}"
        else:
            ipaddress.ip_network(src, strict=False)
    except ValueError as exc:
        return f"invalid source {src!r}: {exc}"
    return None


def validate_config(cfg: EdgeConfig) -> list[tuple[str, str]]:
    """Semantic checks msgspec cannot express; (json-path, reason) pairs."""
    from edge.sip.uri import parse_uri

    errs: list[tuple[str, str]] = []
    if not cfg.listen:
        errs.append(("$.listen", "at least one listen socket is required"))
    for i, ls in enumerate(cfg.listen):
        try:
            host, port = host_port(ls.address)
            ipaddress.ip_address(host)
            if not 0 < port < 65536:
                raise ValueError("port out of range")
        except ValueError as exc:
            errs.append((f"$.listen[{i}].address", f"invalid address {ls.address!r}: {exc}"))
        if ls.transport == "tls":
            for key in ("tls_cert", "tls_key"):
                path = getattr(ls, key)
                if not path:
                    errs.append((f"$.listen[{i}].{key}", "required for a TLS listener"))
                elif not Path(path).is_file():
                    errs.append((f"$.listen[{i}].{key}", f"cannot read {path}"))
            if ls.tls_verify_client and not ls.tls_ca:
                errs.append((f"$.listen[{i}].tls_ca", "tls_verify_client needs a CA bundle to verify against"))
            if not errs:
                from edge.io.tls import make_server_context

                try:
                    make_server_context(ls)
                except (OSError, ValueError) as exc:
                    errs.append((f"$.listen[{i}].tls_cert", f"unusable certificate or key: {exc}"))
    names: set[str] = set()
    for i, c in enumerate(cfg.carriers):
        if c.name in names:
            errs.append((f"$.carriers[{i}].name", f"duplicate name {c.name!r}"))
        names.add(c.name)
        if not c.sources:
            errs.append((f"$.carriers[{i}].sources", "a carrier needs at least one source address"))
        for j, s in enumerate(c.sources):
            e = _check_source(s)
            if e:
                errs.append((f"$.carriers[{i}].sources[{j}]", e))
        for j, u in enumerate(c.outbound):
            try:
                parse_uri(u)
            except ValueError as exc:
                errs.append((f"$.carriers[{i}].outbound[{j}]", str(exc)))
    pnames: set[str] = set()
    for i, p in enumerate(cfg.pbx):
        if p.name in pnames:
            errs.append((f"$.pbx[{i}].name", f"duplicate name {p.name!r}"))
        pnames.add(p.name)
        try:
            parse_uri(p.uri)
        except ValueError as exc:
            errs.append((f"$.pbx[{i}].uri", str(exc)))
        for j, s in enumerate(p.sources):
            e = _check_source(s)
            if e:
                errs.append((f"$.pbx[{i}].sources[{j}]", e))
        for key in ("health_interval", "health_timeout"):
            try:
                parse_duration(getattr(p, key))
            except ValueError as exc:
                errs.append((f"$.pbx[{i}].{key}", str(exc)))
    for key in ("t1", "t2", "t4", "timer_b", "timer_c", "timer_d", "timer_f", "timer_h", "timer_j"):
        v = getattr(cfg.timers, key)
        if v:
            try:
                if parse_duration(v) <= 0:
                    errs.append((f"$.timers.{key}", "must be positive"))
            except ValueError as exc:
                errs.append((f"$.timers.{key}", str(exc)))
    for key in ("drain_timeout",):
        try:
            parse_duration(getattr(cfg.daemon, key))
        except ValueError as exc:
            errs.append((f"$.daemon.{key}", str(exc)))
    for key in ("dialog_max_age", "tcp_message_timeout", "tcp_idle_timeout", "tls_handshake_timeout"):
        try:
            if parse_duration(getattr(cfg.limits, key)) <= 0:
                errs.append((f"$.limits.{key}", "must be greater than 0s"))
        except ValueError as exc:
            errs.append((f"$.limits.{key}", str(exc)))
    for key in ("max_tcp_connections", "max_tcp_unknown", "max_tcp_per_source"):
        if getattr(cfg.limits, key) < 0:
            errs.append((f"$.limits.{key}", "must not be negative (0 refuses every such connection)"))
    errs += [(e.path, e.reason) for e in validate_settings(cfg.policy)]
    errs += validate_store(cfg.store)
    errs += validate_admin(cfg.admin)
    errs += validate_lifecycle(cfg.lifecycle)
    errs += validate_stir_config(cfg.stir)
    errs += validate_media_config(cfg.media, "$.media")
    errs += validate_flood(cfg.flood)
    errs += validate_overload(cfg.overload)
    errs += validate_hep(cfg.hep)
    errs += validate_messaging(cfg.messaging)
    if cfg.messaging.screening_api.enabled and cfg.admin.enabled and cfg.messaging.screening_api.listen == cfg.admin.listen:
        errs.append(("$.messaging.screening_api.listen", "must not be the admin API's listener"))
    return errs


def read_config_file(path: str | Path) -> TomlFile:
    """The config file's data and key positions (also used to locate problems found after loading)."""
    p = Path(path)
    try:
        text = p.read_bytes().decode("utf-8")
    except OSError as exc:
        raise ConfigError([Problem(str(p), 1, 1, "$", f"cannot read: {exc.strerror}")]) from None
    except UnicodeDecodeError as exc:
        raise ConfigError([Problem(str(p), 1, 1, "$", f"not UTF-8: {exc}")]) from None
    tf = read_toml(str(p), text)
    if isinstance(tf, Problem):
        raise ConfigError([tf])
    return tf


def load_config(path: str | Path) -> EdgeConfig:
    tf = read_config_file(path)
    cfg, decode_errors = decode(tf.data, EdgeConfig)
    problems = [tf.problem(jp, reason) for jp, reason in decode_errors]
    if cfg is not None:
        bad = Reported(jp for jp, _ in decode_errors)
        problems += [tf.problem(jp, reason) for jp, reason in validate_config(cfg) if not bad.covers(jp)]
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: (p.line, p.col)))
    cfg.path = str(path)
    return cfg
