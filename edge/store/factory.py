"""Build the configured StateStore backend from `[store]`."""

from __future__ import annotations

from pathlib import Path

from edge.store.memory import MemoryStore
from edge.store.protocol import StateStore
from edge.store.schema import StoreConfig, parse_size, validate_store
from edge.units import parse_duration
from edge.store.sqlite import SqliteStore


async def open_store(cfg: StoreConfig, base_dir: str | Path | None = None, node: str = "") -> StateStore:
    """Open (and for sqlite, migrate and start the flusher of) the store; relative paths resolve against base_dir.

    redis: a local sqlite store at `path` (activities, fallback copy) under a RedisStore; `node` names
    this node in pub/sub messages (a random id when empty). Redis being down does not fail the start.
    """
    errors = validate_store(cfg)
    if errors:
        raise ValueError("; ".join(f"{path}: {reason}" for path, reason in errors))
    if cfg.backend == "memory":
        return MemoryStore(max_activities=cfg.max_activities)
    path = Path(cfg.path)
    if base_dir is not None and not path.is_absolute():
        path = Path(base_dir) / path
    local = await SqliteStore.open(
        path,
        batch_interval=parse_duration(cfg.batch_interval),
        batch_max=cfg.batch_max,
        retention=parse_duration(cfg.retention),
        retry_max=cfg.retry_max,
        max_size=parse_size(cfg.max_size) if cfg.max_size else None,
    )
    if cfg.backend != "redis":
        return local
    from edge.policy.rates import SharedRates
    from edge.store.redis import RedisStore

    rates = SharedRates(max_keys=cfg.redis_rate_keys, fail_closed=cfg.on_redis_down == "closed", nodes=cfg.redis_nodes)
    return await RedisStore.open(
        cfg.redis_url,
        local,
        cluster=cfg.redis_cluster,
        timeout=parse_duration(cfg.redis_timeout),
        prefix=cfg.redis_prefix,
        rate_batch=parse_duration(cfg.redis_rate_batch),
        rates=rates,
        retry_max=cfg.retry_max,
        activity_stream=cfg.activity_stream,
        activity_stream_max=cfg.activity_stream_max,
        node=node,
    )
