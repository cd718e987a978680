"""Settings for the state store (`[store]`) and the admin HTTP API (`[admin]`) in config/edge.toml."""

from __future__ import annotations

import msgspec

from edge.units import parse_duration

__all__ = ["AdminConfig", "StoreConfig", "parse_duration", "split_listen", "validate_admin", "validate_store"]


class StoreConfig(msgspec.Struct, forbid_unknown_fields=True):
    backend: str = "sqlite"  # 'sqlite' | 'memory'
    path: str = "var/edge.db"
    batch_interval: str = "50ms"  # activity writes are flushed at least this often
    batch_max: int = 500  # ... or as soon as this many are queued
    retention: str = "90d"  # activities older than this are deleted
    retry_max: int = 10_000  # writes kept for retry while the disk fails; older ones dropped
    max_activities: int = 100_000  # memory backend only: oldest evicted beyond this


class AdminConfig(msgspec.Struct, forbid_unknown_fields=True):
    listen: str = "127.0.0.1:8081"
    token_file: str = "var/admin.token"
    enabled: bool = True


def split_listen(listen: str) -> tuple[str, int]:
    """'127.0.0.1:8081' / '[::1]:8081' -> (host, port). Raises ValueError."""
    host, sep, port = listen.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
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
    if cfg.backend not in ("sqlite", "memory"):
        errors.append((f"{prefix}.backend", f"unknown backend {cfg.backend!r}: expected 'sqlite' or 'memory'"))
    if cfg.backend == "sqlite" and not cfg.path:
        errors.append((f"{prefix}.path", "required for the sqlite backend"))
    _check_duration(errors, f"{prefix}.batch_interval", cfg.batch_interval)
    _check_duration(errors, f"{prefix}.retention", cfg.retention)
    for name in ("batch_max", "retry_max", "max_activities"):
        if getattr(cfg, name) < 1:
            errors.append((f"{prefix}.{name}", "must be at least 1"))
    return errors


def validate_admin(cfg: AdminConfig, prefix: str = "$.admin") -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    try:
        split_listen(cfg.listen)
    except ValueError as exc:
        errors.append((f"{prefix}.listen", str(exc)))
    if cfg.enabled and not cfg.token_file:
        errors.append((f"{prefix}.token_file", "required when the admin API is enabled"))
    return errors
