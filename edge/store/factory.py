"""Build the configured StateStore backend from `[store]`."""

from __future__ import annotations

from pathlib import Path

from edge.store.memory import MemoryStore
from edge.store.protocol import StateStore
from edge.store.schema import StoreConfig, parse_duration, validate_store
from edge.store.sqlite import SqliteStore


async def open_store(cfg: StoreConfig, base_dir: str | Path | None = None) -> StateStore:
    """Open (and for sqlite, migrate and start the flusher of) the store; relative paths resolve against base_dir."""
    errors = validate_store(cfg)
    if errors:
        raise ValueError("; ".join(f"{path}: {reason}" for path, reason in errors))
    if cfg.backend == "memory":
        return MemoryStore(max_activities=cfg.max_activities)
    path = Path(cfg.path)
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    return await SqliteStore.open(
        path,
        batch_interval=parse_duration(cfg.batch_interval),
        batch_max=cfg.batch_max,
        retention=parse_duration(cfg.retention),
        retry_max=cfg.retry_max,
    )
