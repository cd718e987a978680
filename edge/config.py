"""The daemon's own settings (config/edge.toml), decoded into msgspec Structs with unknown keys refused.

`load_config(path)` returns an `EdgeConfig` or raises `ConfigError` carrying every problem as
`file:line:col: $.path: reason`, the form `sip-edge check` prints (all of them in one run).
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Callable, Literal, Sequence

import msgspec

from edge.call.flood import FloodConfig, validate_flood
from edge.call.overload import OverloadConfig, validate_overload
from edge.call.settings import Acl, CallSettings, Carrier, Limits, Listen, Pbx, Timers, host_port
from edge.capture import HepConfig, validate_hep
from edge.lifecycle.schema import LifecycleConfig, validate_lifecycle
from edge.media.engine_config import MediaConfig
from edge.media.engine_config import validate as validate_media_config
from edge.messaging.schema import MessagingConfig, validate_messaging
from edge.policy.schema import PolicySettings, validate_settings
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
    workers: int = 1  # SIP worker processes; > 1 needs one UDP listener and the redis store (docs/DESIGN.md, "Several workers")


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

    def call_settings(self) -> CallSettings:
        """The slice the call layer reads (edge/call never imports this module)."""
        return CallSettings(listen=self.listen, carriers=self.carriers, pbx=self.pbx, timers=self.timers,
                            limits=self.limits, acl=self.acl, node=self.daemon.node,
                            retry_after=self.daemon.retry_after, log_calls=self.logging.log_calls)


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
    errs += _validate_workers(cfg)
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


MAX_WORKERS = 64


def _validate_workers(cfg: EdgeConfig) -> list[tuple[str, str]]:
    """Several workers must share what one process keeps in memory (rate windows, blocks, passes,
    lifecycle counts) and must own every message of a call: only the redis store shares the former,
    and only UDP is handed off by Call-ID (a stream connection would tie a call's legs to one worker)."""
    n = cfg.daemon.workers
    if not 1 <= n <= MAX_WORKERS:
        return [("$.daemon.workers", f"must be between 1 and {MAX_WORKERS}")]
    if n == 1:
        return []
    errs = []
    if cfg.store.backend != "redis":
        errs.append(("$.store.backend", f"workers = {n} needs backend = 'redis': rate windows, blocks, captcha "
                                        "passes and lifecycle counts must be shared between worker processes"))
    for i, ls in enumerate(cfg.listen):
        if ls.transport != "udp":
            errs.append((f"$.listen[{i}].transport", f"workers = {n} serves UDP only: a {ls.transport} "
                                                     "listener needs workers = 1"))
    if sum(ls.transport == "udp" for ls in cfg.listen) > 1:
        errs.append(("$.listen", f"workers = {n} serves exactly one UDP listener"))
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


ConfigCheck = Callable[[EdgeConfig], list[tuple[str, str]]]


def load_config(path: str | Path, checks: Sequence[ConfigCheck] = ()) -> EdgeConfig:
    """Decode and validate config/edge.toml. `checks` are the adapters' own checks (TLS files that
    must load, ...), run once the schema and semantic checks pass; problems located the same way."""
    tf = read_config_file(path)
    cfg, decode_errors = decode(tf.data, EdgeConfig)
    problems = [tf.problem(jp, reason) for jp, reason in decode_errors]
    if cfg is not None:
        bad = Reported(jp for jp, _ in decode_errors)
        problems += [tf.problem(jp, reason) for jp, reason in validate_config(cfg) if not bad.covers(jp)]
        for extra in checks if not problems else ():
            problems += [tf.problem(jp, reason) for jp, reason in extra(cfg)]
    if problems:
        raise ConfigError(sorted(problems, key=lambda p: (p.line, p.col)))
    cfg.path = str(path)
    return cfg
