from __future__ import annotations

import msgspec
import pytest

from edge.store.schema import AdminConfig, StoreConfig, split_listen, validate_admin, validate_store


@pytest.mark.parametrize(
    "cfg,errors",
    [
        (StoreConfig(), []),
        (StoreConfig(backend="memory", path=""), []),
        (StoreConfig(backend="mongo"), [("$.store.backend", "unknown backend 'mongo': expected 'sqlite', 'memory' or 'redis'")]),
        (StoreConfig(backend="redis"), []),
        (StoreConfig(backend="redis", redis_url="redis+sentinel://s1:26379,s2:26379/mymaster", on_redis_down="closed",
                     redis_nodes=3), []),
        (StoreConfig(backend="redis", path=""), [("$.store.path", "required for the redis backend (local activities and fallback copy)")]),
        (StoreConfig(backend="redis", redis_url="http://x"),
         [("$.store.redis_url", "unsupported URL 'http://x': expected one of redis://, rediss://, unix://, redis+sentinel://")]),
        (StoreConfig(backend="redis", redis_url="redis+sentinel://s:26379/m", redis_cluster=True),
         [("$.store.redis_cluster", "a cluster is reached by a redis:// or rediss:// node URL")]),
        (StoreConfig(backend="redis", redis_prefix="a b"), [("$.store.redis_prefix", "must be non-empty without spaces or braces")]),
        (StoreConfig(backend="redis", redis_rate_batch="0ms"), [("$.store.redis_rate_batch", "must be greater than 0s")]),
        (StoreConfig(backend="redis", on_redis_down="maybe"),
         [("$.store.on_redis_down", "unknown choice 'maybe': expected 'open' or 'closed'")]),
        (StoreConfig(backend="redis", on_redis_down="closed"),
         [("$.store.redis_nodes", "on_redis_down = 'closed' needs the number of nodes (at least 2)")]),
        (StoreConfig(backend="redis", redis_rate_keys=0), [("$.store.redis_rate_keys", "must be at least 1")]),
        (StoreConfig(path=""), [("$.store.path", "required for the sqlite backend")]),
        (StoreConfig(batch_interval="0ms"), [("$.store.batch_interval", "must be greater than 0s")]),
        (StoreConfig(retention="forever"), [("$.store.retention", "invalid duration 'forever': expected a number with ms, s, m, h or d (e.g. '30s')")]),
        (StoreConfig(batch_max=0), [("$.store.batch_max", "must be at least 1")]),
    ],
    ids=["default", "memory", "unknown-backend", "redis", "redis-sentinel-closed", "redis-no-path", "redis-bad-url",
         "redis-cluster-sentinel", "redis-bad-prefix", "redis-zero-batch", "redis-bad-down", "redis-closed-one-node",
         "redis-zero-keys", "no-path", "zero-interval", "bad-retention", "zero-batch"],
)
def test_store_config_validation(cfg, errors):
    assert validate_store(cfg) == errors


@pytest.mark.parametrize(
    "cfg,errors",
    [
        (AdminConfig(), []),
        (AdminConfig(listen="[::1]:9000"), []),
        (AdminConfig(listen="localhost"), [("$.admin.listen", "invalid listen address 'localhost': expected host:port")]),
        (AdminConfig(listen="127.0.0.1:70000"), [("$.admin.listen", "invalid listen address '127.0.0.1:70000': expected host:port")]),
        (AdminConfig(token_file=""), [("$.admin.token_file", "required when the admin API is enabled")]),
        (AdminConfig(token_file="", enabled=False), []),
    ],
    ids=["default", "ipv6", "no-port", "bad-port", "no-token", "disabled"],
)
def test_admin_config_validation(cfg, errors):
    assert validate_admin(cfg) == errors


def test_admin_config_split_listen_strips_ipv6_brackets():
    assert split_listen("[::1]:8081") == ("::1", 8081)
    assert split_listen("127.0.0.1:8081") == ("127.0.0.1", 8081)


def test_store_config_forbids_unknown_keys():
    with pytest.raises(msgspec.ValidationError, match="unknown field `batch_size`"):
        msgspec.toml.decode(b'batch_size = 5\n', type=StoreConfig)
