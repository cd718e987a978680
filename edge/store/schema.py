"""Settings for the state store (`[store]`) and the admin HTTP API (`[admin]`) in config/edge.toml."""

from __future__ import annotations

import re

import msgspec

from edge.units import parse_duration

__all__ = ["AdminConfig", "StoreConfig", "parse_duration", "parse_size", "split_listen", "validate_admin", "validate_store"]

_SIZE = re.compile(r"^\s*(\d{1,15})\s*(B|KB|MB|GB|KiB|MiB|GiB)\s*$", re.ASCII)
_SIZE_FACTOR = {"B": 1, "KB": 1000, "MB": 1000**2, "GB": 1000**3, "KiB": 1024, "MiB": 1024**2, "GiB": 1024**3}


def parse_size(text: str) -> int:
    """Bytes in a size string ("500MB", "2GiB"); raises ValueError naming the accepted form."""
    m = _SIZE.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"invalid size {text!r}: expected a number with B, KB, MB, GB, KiB, MiB or GiB (e.g. '2GB')")
    return int(m.group(1)) * _SIZE_FACTOR[m.group(2)]


REDIS_SCHEMES = ("redis://", "rediss://", "unix://", "redis+sentinel://")


class StoreConfig(msgspec.Struct, forbid_unknown_fields=True):
    backend: str = "sqlite"  # 'sqlite' | 'memory' | 'redis' (shared state; activities stay in the sqlite `path`)
    path: str = "var/edge.db"
    batch_interval: str = "50ms"  # activity writes are flushed at least this often
    batch_max: int = 500  # ... or as soon as this many are queued
    retention: str = "90d"  # activities older than this are deleted
    retry_max: int = 10_000  # writes kept for retry while the disk fails; older ones dropped
    max_activities: int = 100_000  # memory backend only: oldest evicted beyond this
    max_size: str = ""  # sqlite: cap on the database file (PRAGMA max_page_count), e.g. "2GB"; "" = no cap
    # redis backend (docs/redis.md)
    redis_url: str = "redis://127.0.0.1:6379/0"  # redis://, rediss://, unix://, redis+sentinel://host:port[,host:port]/service
    redis_prefix: str = "sip-edge"  # every key starts with it (wrapped in {} as a hash tag with redis_cluster)
    redis_cluster: bool = False  # Redis Cluster (redis_url names any one node)
    redis_timeout: str = "500ms"  # connect and command timeout; a slower Redis counts as down
    redis_rate_batch: str = "20ms"  # rate hits are sent to Redis in one pipelined call this often
    redis_rate_keys: int = 100_000  # all-node rate counts cached per node (least recently used evicted)
    activity_stream: bool = False  # also XADD finished activities to {prefix}:activities
    activity_stream_max: int = 100_000  # approximate MAXLEN of that stream
    on_redis_down: str = "open"  # rates while Redis is down: 'open' = local counts, 'closed' = local x redis_nodes
    redis_nodes: int = 1  # edge nodes sharing this Redis (used by on_redis_down = 'closed')


class AdminConfig(msgspec.Struct, forbid_unknown_fields=True):
    listen: str = "127.0.0.1:8081"
    token_file: str = "var/admin.token"
    enabled: bool = True
    # web console (README "Console"): sessions of users made with `sip-edge users add`
    session_ttl: str = "12h"  # a login lasts at most this long
    session_idle: str = "1h"  # ... and ends after this long without a request
    secure_cookies: bool = False  # mark the session cookie Secure (set it behind a TLS-terminating proxy)
    login_failures: int = 5  # failed logins per address and per user name ...
    login_window: str = "5m"  # ... within this window before logins are refused (429)


def split_listen(listen: str) -> tuple[str, int]:
    """'127.0.0.1:8081' / '[::1]:8081' -> (host, port). Raises ValueError."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        raise ValueError(f"invalid listen address {listen!r}: expected host:port")
    return host.strip("[]"), int(port)


def _check_duration(errors: list[tuple[str, str]], path: str, text: str, minimum: float = 0.0) -> None:
    try:
        seconds = parse_duration(text)
    except ValueError as exc:
        errors.append((path, str(exc)))
        return
    if seconds <= minimum:
        errors.append((path, f"must be greater than {minimum:g}s"))


def validate_store(cfg: StoreConfig, prefix: str = "$.store") -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    if cfg.backend not in ("sqlite", "memory", "redis"):
        errors.append((f"{prefix}.backend", f"unknown backend {cfg.backend!r}: expected 'sqlite', 'memory' or 'redis'"))
    if cfg.backend in ("sqlite", "redis") and not cfg.path:
        what = " (local activities and fallback copy)" if cfg.backend == "redis" else ""
        errors.append((f"{prefix}.path", f"required for the {cfg.backend} backend{what}"))
    if cfg.backend == "redis":
        errors += _validate_redis(cfg, prefix)
    _check_duration(errors, f"{prefix}.batch_interval", cfg.batch_interval)
    _check_duration(errors, f"{prefix}.retention", cfg.retention)
    for name in ("batch_max", "retry_max", "max_activities"):
        if getattr(cfg, name) < 1:
            errors.append((f"{prefix}.{name}", "must be at least 1"))
    if cfg.max_size:
        try:
            if parse_size(cfg.max_size) < 65536:
                errors.append((f"{prefix}.max_size", "must be at least 64KiB (the schema alone takes tens of pages)"))
        except ValueError as exc:
            errors.append((f"{prefix}.max_size", str(exc)))
    return errors


def _validate_redis(cfg: StoreConfig, prefix: str) -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    if not cfg.redis_url.startswith(REDIS_SCHEMES):
        errors.append((f"{prefix}.redis_url", f"unsupported URL {cfg.redis_url!r}: expected one of {', '.join(REDIS_SCHEMES)}"))
    elif cfg.redis_cluster and cfg.redis_url.startswith(("redis+sentinel://", "unix://")):
        errors.append((f"{prefix}.redis_cluster", "a cluster is reached by a redis:// or rediss:// node URL"))
    if not cfg.redis_prefix or any(c in cfg.redis_prefix for c in " {}"):
        errors.append((f"{prefix}.redis_prefix", "must be non-empty without spaces or braces"))
    _check_duration(errors, f"{prefix}.redis_timeout", cfg.redis_timeout)
    _check_duration(errors, f"{prefix}.redis_rate_batch", cfg.redis_rate_batch)
    if cfg.on_redis_down not in ("open", "closed"):
        errors.append((f"{prefix}.on_redis_down", f"unknown choice {cfg.on_redis_down!r}: expected 'open' or 'closed'"))
    for name in ("redis_rate_keys", "activity_stream_max", "redis_nodes"):
        if getattr(cfg, name) < 1:
            errors.append((f"{prefix}.{name}", "must be at least 1"))
    if cfg.on_redis_down == "closed" and cfg.redis_nodes < 2:
        errors.append((f"{prefix}.redis_nodes", "on_redis_down = 'closed' needs the number of nodes (at least 2)"))
    return errors


def validate_admin(cfg: AdminConfig, prefix: str = "$.admin") -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    try:
        split_listen(cfg.listen)
    except ValueError as exc:
        errors.append((f"{prefix}.listen", str(exc)))
    if cfg.enabled and not cfg.token_file:
        errors.append((f"{prefix}.token_file", "required when the admin API is enabled"))
    for name in ("session_ttl", "session_idle", "login_window"):
        _check_duration(errors, f"{prefix}.{name}", getattr(cfg, name))
    if not 1 <= cfg.login_failures <= 100:
        errors.append((f"{prefix}.login_failures", "must be 1-100"))
    return errors
