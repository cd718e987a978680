"""`[store] max_size`: a full database is logged, counted and retried while writes keep being accepted."""

from __future__ import annotations

import pytest
import structlog

from edge.store.factory import open_store
from edge.store.schema import StoreConfig, parse_size, validate_store
from tests.store.conftest import build_activity


@pytest.mark.parametrize(
    ("text", "size"),
    [("64KiB", 65536), ("2GB", 2_000_000_000), ("1 MiB", 1048576), ("700B", 700)],
    ids=["kib", "gb", "space", "bytes"],
)
def test_store_parse_size_units(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        ("lots", "invalid size 'lots': expected a number with B, KB, MB, GB, KiB, MiB or GiB (e.g. '2GB')"),
        ("1KB", "must be at least 64KiB (the schema alone takes tens of pages)"),
    ],
    ids=["form", "too-small"],
)
def test_store_max_size_validated(value, reason):
    assert validate_store(StoreConfig(max_size=value)) == [("$.store.max_size", reason)]


async def test_store_max_size_full_database_counted_not_raised(tmp_path):
    store = await open_store(StoreConfig(path=str(tmp_path / "edge.db"), max_size="96KiB", batch_interval="10ms"))
    try:
        with structlog.testing.capture_logs() as logs:
            for i in range(400):
                store.queue_activity(build_activity(1000.0 + i, reason="x" * 400))
            await store.flush()
        health = store.health()
        assert health.write_errors >= 1 and health.degraded
        assert "database or disk is full" in health.last_error
        assert any(e["event"] == "store_write_failed" for e in logs)
        store.queue_activity(build_activity(5000.0))  # still accepted (queued for retry), never raises
    finally:
        await store.close()
