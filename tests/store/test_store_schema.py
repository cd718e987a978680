from __future__ import annotations

import msgspec
import pytest

from edge.store.schema import AdminConfig, StoreConfig, split_listen, validate_admin, validate_store


@pytest.mark.parametrize(
    "cfg,errors",
    [
        (StoreConfig(), []),
        (StoreConfig(backend="memory", path=""), []),
        (StoreConfig(backend="redis"), [("$.store.backend", "unknown backend 'redis': expected 'sqlite' or 'memory'")]),
        (StoreConfig(path=""), [("$.store.path", "required for the sqlite backend")]),
        (StoreConfig(batch_interval="0ms"), [("$.store.batch_interval", "must be greater than 0s")]),
        (StoreConfig(retention="forever"), [("$.store.retention", "invalid duration 'forever': expected a number with ms, s, m, h or d (e.g. '30s')")]),
        (StoreConfig(batch_max=0), [("$.store.batch_max", "must be at least 1")]),
    ],
    ids=["default", "memory", "unknown-backend", "no-path", "zero-interval", "bad-retention", "zero-batch"],
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
