from __future__ import annotations

import itertools
from collections.abc import Callable

import pytest

from edge.call.activity import Activity
from edge.policy.facts import Evidence

_seq = itertools.count()


def build_activity(received_at: float, calling: str = "+12025550100", called: str = "+13125550199", **kw: object) -> Activity:
    n = next(_seq)
    return Activity(
        id=kw.pop("id", f"{int(received_at * 1_000_000):016x}{n:05x}"),  # type: ignore[arg-type]
        call_id=f"call-{n}@carrier",
        kind="call",
        received_at=received_at,
        calling_number=calling,
        called_number=called,
        evidence=[Evidence(signal="rate.caller", weight=0.5, detail="6/60s")],
        **kw,  # type: ignore[arg-type]
    )


@pytest.fixture
def make_activity() -> Callable[..., Activity]:
    return build_activity


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory):  # type: ignore[no-untyped-def]
    """One real redis-server for the whole session; tests isolate themselves by key prefix."""
    from tests.redis_server import redis_server_fixture

    yield from redis_server_fixture(tmp_path_factory)


@pytest.fixture(scope="session")
def redis_cluster(tmp_path_factory):  # type: ignore[no-untyped-def]
    """Three cluster-mode primaries for the whole session; tests isolate themselves by key prefix."""
    from tests.redis_server import RedisCluster

    cluster = RedisCluster(tmp_path_factory.mktemp("redis-cluster"))
    cluster.start()
    yield cluster
    cluster.stop()


@pytest.fixture
def own_redis(tmp_path):  # type: ignore[no-untyped-def]
    """A redis-server of this test's own, for outage tests that kill and restart it."""
    from tests.redis_server import RedisServer

    server = RedisServer(tmp_path / "redis")
    server.start()
    yield server
    server.stop()
