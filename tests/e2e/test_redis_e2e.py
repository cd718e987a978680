"""Two sip-edge daemons sharing one real redis-server (issue 7): a caller spread over both nodes is
counted once, a block flagged on node A rejects the next call on node B, and killing redis-server
mid-run loses no calls while state resyncs when it returns."""

from __future__ import annotations

import socket
import time
import uuid
from pathlib import Path

import pytest

from tests.e2e.harness import Admin, Daemon, call_scenario, expect_final_scenario, free_port, uac, uas, write_config, write_dialplan
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

RATE_PLAN = """
customer = "acme"
targets = ["pbx-a"]

[[numbers]]
number = "+12025550100"

[spam]
[[spam.rate]]
key = "caller"
rate = "4/60s"
action = "reject"
id = "caller-rate"
"""

PLAIN_PLAN = """
customer = "acme"
targets = ["pbx-a"]

[[numbers]]
number = "+12025550100"
"""


class Node:
    def __init__(self, tmp: Path, name: str, pbx_port: int, redis_url: str, prefix: str, dialplan: str) -> None:
        self.tmp = tmp / name
        self.tmp.mkdir(parents=True)
        self.port = free_port()
        admin_port = free_port(socket.SOCK_STREAM, None)
        extra = "\n".join([
            "[admin]", f'listen = "127.0.0.1:{admin_port}"', f'token_file = "{self.tmp / "admin.token"}"',
            "[store]", 'backend = "redis"', f'path = "{self.tmp / "var" / "edge.db"}"', 'batch_interval = "20ms"',
            f'redis_url = "{redis_url}"', f'redis_prefix = "{prefix}"', 'redis_timeout = "300ms"',
            'redis_rate_batch = "20ms"',
        ])
        cfg = write_config(self.tmp, self.port, ["127.0.0.1/32"], [("pbx-a", pbx_port)], extra=extra, health_interval="")
        self.daemon = Daemon(cfg, write_dialplan(self.tmp, dialplan), self.tmp / "daemon.log")
        self.admin = Admin(self.tmp, cfg.read_text())


@pytest.fixture
def cluster(tmp_path: Path):
    """redis-server + a PBX port + a factory for nodes; everything stopped at the end."""
    server = RedisServer(tmp_path / "redis")
    server.start()
    nodes: list[Node] = []
    prefix = f"e2e-{uuid.uuid4().hex[:8]}"
    pbx_port = free_port()

    def start(dialplan: str) -> tuple[Node, Node]:
        a = Node(tmp_path, "a", pbx_port, server.url, prefix, dialplan)
        b = Node(tmp_path, "b", pbx_port, server.url, prefix, dialplan)
        nodes.extend([a, b])
        a.daemon.wait_ready()
        b.daemon.wait_ready()
        return a, b

    yield start, server, pbx_port
    for n in nodes:
        n.daemon.stop()
    server.stop()


def test_redis_caller_spread_over_two_nodes_trips_combined_rate(cluster, tmp_path):
    start, _, pbx_port = cluster
    a, b = start(RATE_PLAN)
    pbx = uas(tmp_path, pbx_port)
    scenario = call_scenario(tmp_path, "+13035550133")
    on_a = uac(tmp_path, a.port, "12025550100", scenario, calls=3, rate=10, name="on-a")
    on_a.wait(20)
    on_b = uac(tmp_path, b.port, "12025550100", scenario, calls=3, rate=10, name="on-b")
    on_b.wait(20)
    pbx.stop()
    # 4/60s over both nodes: 3 on A, then B's first call is the 4th; B's next two exceed it.
    assert on_a.count("SuccessfulCall(C)") == 3
    assert on_b.count("SuccessfulCall(C)") == 1 and on_b.count("FailedCall(C)") == 2
    rejected = b.admin.activities(calling="+13035550133", decision="reject")
    assert len(rejected) == 2 and {x["rule_id"] for x in rejected} == {"caller-rate"}
    assert all(x["final_status"] == 603 for x in rejected)
    # Each node counted alone would have allowed all six (3 <= 4 per node).
    assert a.admin.activities(calling="+13035550133", decision="reject") == []


def test_redis_block_flagged_on_node_a_rejects_next_call_on_node_b(cluster, tmp_path):
    start, _, pbx_port = cluster
    a, b = start(PLAIN_PLAN)
    pbx = uas(tmp_path, pbx_port)
    first = uac(tmp_path, a.port, "12025550100", call_scenario(tmp_path, "+13035550144"), name="first")
    assert first.wait(20) == 0, first.errors()
    act = a.admin.activities(calling="+13035550144")[0]
    status, body = a.admin.call("POST", f"/activities/{act['id']}/flag", {"by": "number"})
    assert status in (200, 201), body
    flagged_at = time.monotonic()
    changed = b.daemon.wait_event("rules_changed", timeout=1.0)
    assert time.monotonic() - flagged_at < 1.0
    rule_id = changed[-1]["added"]
    second = uac(tmp_path, b.port, "12025550100", expect_final_scenario(tmp_path, 603, caller="+13035550144"),
                 name="second")
    assert second.wait(20) == 0, second.errors()
    pbx.stop()
    assert pbx.messages().count("INVITE sip:") == 1
    blocked = b.admin.activities(calling="+13035550144", decision="reject")[0]
    assert blocked["rule_id"] == rule_id
    status, blocks = b.admin.call("GET", "/blocks")
    assert status == 200 and [r["id"] for r in blocks["blocks"]] == [rule_id]


def test_redis_killed_mid_run_loses_no_calls_and_resyncs(cluster, tmp_path):
    start, server, pbx_port = cluster
    a, b = start(PLAIN_PLAN)
    pbx = uas(tmp_path, pbx_port)
    # Distinct callers ([call_number]) so nothing but Redis could stop a call.
    calls = uac(tmp_path, a.port, "12025550100", call_scenario(tmp_path, "+1303555[call_number]"), calls=30, rate=10,
                name="through-outage")
    time.sleep(1.0)
    server.kill()
    a.daemon.wait_event("redis_unavailable", timeout=5)
    # A block made on A during the outage: accepted at once, queued for Redis.
    status, rule = a.admin.call("POST", "/blocks", {"kind": "number", "value": "+13035550177"})
    assert status == 201, rule
    assert calls.wait(30) == 0, calls.errors()
    assert calls.count("SuccessfulCall(C)") == 30 and calls.count("FailedCall(C)") == 0
    status, health = a.admin.call("GET", "/health")
    assert health["store"]["degraded"] is True and health["store"]["retry_queue"] >= 1
    server.start()  # back, empty
    a.daemon.wait_event("redis_recovered", timeout=10)
    b.daemon.wait_event("redis_recovered", timeout=10)
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:
        status, blocks = b.admin.call("GET", "/blocks")
        if rule["id"] in [r["id"] for r in blocks["blocks"]]:
            break
        time.sleep(0.1)
    assert rule["id"] in [r["id"] for r in blocks["blocks"]]
    rejected = uac(tmp_path, b.port, "12025550100", expect_final_scenario(tmp_path, 603, caller="+13035550177"),
                   name="blocked-on-b")
    assert rejected.wait(20) == 0, rejected.errors()
    pbx.stop()
    assert len(a.daemon.events("redis_unavailable")) == 1  # once per outage
