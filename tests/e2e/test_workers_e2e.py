"""`[daemon] workers = 2` end to end (issue 12): a supervisor hands each datagram to the worker owning its
Call-ID; real sipp peers and a real redis-server. Every call completes with its INVITE, ACK and BYE in
one worker, the Spam Detective's rate window counts calls across both workers, SIGHUP reloads both, a
killed worker is restarted, and SIGTERM stops them all."""

from __future__ import annotations

import os
import signal
import socket
import time
import uuid
from pathlib import Path

import pytest

from edge.sip.affinity import owner
from tests.e2e.harness import (Admin, Daemon, NotifyListener, call_scenario, free_port, uac, uas, write_config,
                               write_dialplan)
from tests.redis_server import RedisServer

pytestmark = pytest.mark.e2e

PLAN = """
customer = "acme"
targets = ["pbx-a"]

[[numbers]]
number = "+12025550100"
"""

RATE_PLAN = PLAN + """
[spam]
[[spam.rate]]
key = "caller"
rate = "4/60s"
action = "reject"
id = "caller-rate"
"""


def worker_of(call_id: str, workers: int = 2) -> int:
    return owner(b"BYE sip:x SIP/2.0\r\nCall-ID: " + call_id.encode() + b"\r\n\r\n", workers)


def fixed_call_ids(tag: str) -> list[str]:
    """sipp's Call-IDs as `<tag>-<call number>@e2e`, so the test knows which worker owns each call."""
    return ["-cid_str", f"{tag}-%u@e2e"]


def tag_covering_both(prefix: str, calls: int) -> str:
    """A Call-ID tag whose calls 1..n land on both workers, worker 0 first (fixed by the hash, not by chance)."""
    for i in range(100):
        tag = f"{prefix}{i}"
        owners = [worker_of(f"{tag}-{n}@e2e") for n in range(1, calls + 1)]
        if owners[0] == 0 and set(owners) == {0, 1}:
            return tag
    raise AssertionError("no tag found")


def two_free_tcp_ports() -> int:
    """A TCP port whose successor is free too: worker 1 serves its metrics on the admin port + 1."""
    for _ in range(100):
        port = free_port(socket.SOCK_STREAM, None)
        probe = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            probe.bind(("127.0.0.1", port + 1))
            return port
        except OSError:
            continue
        finally:
            probe.close()
    raise RuntimeError("no two consecutive free ports")


class Edge:
    def __init__(self, tmp: Path, pbx_port: int, redis_url: str, dialplan: str, health: str = "",
                 env: dict[str, str] | None = None) -> None:
        self.tmp = tmp
        self.port = free_port()
        admin_port = two_free_tcp_ports()
        extra = "\n".join([
            "[admin]", f'listen = "127.0.0.1:{admin_port}"', f'token_file = "{tmp / "admin.token"}"',
            "[store]", 'backend = "redis"', f'path = "{tmp / "var" / "edge.db"}"', 'batch_interval = "20ms"',
            f'redis_url = "{redis_url}"', f'redis_prefix = "wk-{uuid.uuid4().hex[:8]}"', 'redis_timeout = "300ms"',
            'redis_rate_batch = "20ms"',
        ])
        cfg = write_config(tmp, self.port, ["127.0.0.1/32"], [("pbx-a", pbx_port)], extra=extra, tcp=False,
                           health_interval=health)
        # A health reply handed to the wrong worker never arrives at all: a generous timeout keeps a busy
        # machine from marking the PBX down without hiding that.
        cfg.write_text(cfg.read_text().replace("retry_after = 7", "retry_after = 7\nworkers = 2")
                       .replace('health_timeout = "500ms"', 'health_timeout = "2s"'))
        self.dialplans = write_dialplan(tmp, dialplan)
        self.daemon = Daemon(cfg, self.dialplans, tmp / "daemon.log", env=env)
        self.admin = Admin(tmp, cfg.read_text())

    def wait_ready(self) -> None:
        self.daemon.wait_event("workers_started", timeout=60)

    def pids(self) -> dict[int, int]:
        """Worker index -> pid of its latest process."""
        return {ev["worker"]: ev["pid"] for ev in self.daemon.events("worker_spawned")}


@pytest.fixture
def workers(tmp_path: Path):
    server = RedisServer(tmp_path / "redis")
    server.start()
    pbx_port = free_port()
    started: list[Edge] = []

    def start(dialplan: str = PLAN, health: str = "", env: dict[str, str] | None = None) -> Edge:
        edge = Edge(tmp_path, pbx_port, server.url, dialplan, health, env)
        started.append(edge)
        edge.wait_ready()
        return edge

    yield start, pbx_port
    for edge in started:
        pids = edge.pids()
        assert edge.daemon.stop() == 0, edge.daemon.log()[-3000:]
        for pid in pids.values():  # SIGTERM to the supervisor stopped every worker
            with pytest.raises(ProcessLookupError):
                os.kill(pid, 0)
        assert edge.daemon.events("workers_stopped")
    server.stop()


def test_two_workers_complete_every_call_each_in_the_worker_owning_its_call_id(workers, tmp_path):
    start, pbx_port = workers
    # Health checks on: the OPTIONS each worker sends come back to it by the mark in its branch.
    pbx = uas(tmp_path, pbx_port)  # up before the workers' first pings
    edge = start(health="1s")
    tag = tag_covering_both("all", 20)
    calls = uac(tmp_path, edge.port, "12025550100", call_scenario(tmp_path, "+13035550100"),
                calls=20, rate=20, name="calls", extra=fixed_call_ids(tag))
    assert calls.wait(40) == 0, calls.errors()
    pbx.stop()
    assert calls.count("SuccessfulCall(C)") == 20 and calls.count("FailedCall(C)") == 0
    items = edge.admin.activities(calling="+13035550100")
    deadline = time.monotonic() + 10
    while len([a for a in items if a.get("ended_at")]) < 20 and time.monotonic() < deadline:
        time.sleep(0.1)
        items = edge.admin.activities(calling="+13035550100")
    assert len(items) == 20
    for a in items:
        # The INVITE went to the worker that owns the Call-ID; that same worker saw the BYE end the
        # dialog (a worker without the dialog answers an in-dialog request 481, and sipp would fail).
        assert a["node"] == f"edge-1-w{worker_of(a['call_id'])}", a
        assert a["final_status"] == 200 and a["ended_at"] and a["duration"] > 0
    assert {a["node"] for a in items} == {"edge-1-w0", "edge-1-w1"}
    # Both workers kept the PBX up (a health reply reaching the wrong worker would mark it down).
    assert not edge.daemon.events("pbx_target_down")
    # Prometheus: worker 0 on the admin API, worker 1 on the admin port + 1; each counts its own INVITEs.
    invites = [metric(edge, i, "edge_sip_invites_total") for i in (0, 1)]
    assert invites == [sum(a["node"] == f"edge-1-w{i}" for a in items) for i in (0, 1)]
    assert sum(invites) == 20


def metric(edge: Edge, index: int, name: str) -> float:
    import urllib.request

    host, port = edge.admin.base.removeprefix("http://").rsplit(":", 1)
    req = urllib.request.Request(f"http://{host}:{int(port) + index}/metrics",
                                 headers={"Authorization": f"Bearer {edge.admin.token_file.read_text().strip()}"})
    with urllib.request.urlopen(req, timeout=5) as resp:
        text = resp.read().decode()
    return sum(float(line.rpartition(" ")[2]) for line in text.splitlines() if line.startswith(name + " ")
               or line.startswith(name + "{"))


def test_rate_window_counts_calls_across_workers(workers, tmp_path):
    start, pbx_port = workers
    edge = start(RATE_PLAN)
    pbx = uas(tmp_path, pbx_port)
    # Calls 1-3 on worker 0, then 4-5 on worker 1: worker 1 alone sees two calls, the window five.
    tag = next(f"rate{i}" for i in range(200) if [worker_of(f"rate{i}-{n}@e2e") for n in range(1, 6)] == [0, 0, 0, 1, 1])
    # One call at a time (-l 1), each after the previous one's hits reached redis (rate batch 20 ms).
    calls = uac(tmp_path, edge.port, "12025550100", call_scenario(tmp_path, "+13035550133"), calls=5, rate=5,
                name="rate", extra=["-l", "1", *fixed_call_ids(tag)])
    calls.wait(40)
    pbx.stop()
    # 4/60s: the fifth call exceeds it only counted over both workers.
    assert calls.count("SuccessfulCall(C)") == 4 and calls.count("FailedCall(C)") == 1, calls.errors()
    rejected = edge.admin.activities(calling="+13035550133", decision="reject")
    assert [(a["call_id"], a["node"], a["rule_id"]) for a in rejected] == [(f"{tag}-5@e2e", "edge-1-w1", "caller-rate")]
    allowed = [a for a in edge.admin.activities(calling="+13035550133") if a["decision"] != "reject"]
    assert sorted(a["node"] for a in allowed) == ["edge-1-w0"] * 3 + ["edge-1-w1"]


def test_sighup_reloads_every_worker(workers, tmp_path):
    start, pbx_port = workers
    edge = start()
    write_dialplan(tmp_path, PLAN + '\n[[numbers]]\nnumber = "+12025550111"\n')
    edge.daemon.signal(signal.SIGHUP)
    reloaded = edge.daemon.wait_event("reloaded", count=2, timeout=20)
    assert sorted(ev["worker"] for ev in reloaded) == [0, 1]
    assert all(ev["numbers"] == 2 for ev in reloaded)
    edge.daemon.wait_event("reload_forwarded")
    pbx = uas(tmp_path, pbx_port)
    tag = tag_covering_both("hup", 4)
    calls = uac(tmp_path, edge.port, "12025550111", call_scenario(tmp_path, "+13035550144"),
                calls=4, rate=10, name="new-number", extra=fixed_call_ids(tag))
    assert calls.wait(30) == 0, calls.errors()
    pbx.stop()
    assert calls.count("SuccessfulCall(C)") == 4  # the new number is served by both workers


def test_killed_worker_is_restarted_and_serves_its_calls_again(workers, tmp_path):
    start, pbx_port = workers
    edge = start()
    old = edge.pids()
    os.kill(old[1], signal.SIGKILL)
    exited = edge.daemon.wait_event("worker_exited", timeout=10)
    assert exited[-1]["worker"] == 1 and exited[-1]["returncode"] == -signal.SIGKILL
    restarted = edge.daemon.wait_event("worker_restarted", timeout=60)
    assert restarted[-1]["worker"] == 1
    new = edge.pids()
    assert new[1] != old[1] and new[0] == old[0]
    pbx = uas(tmp_path, pbx_port)
    tag = next(f"kill{i}" for i in range(100) if worker_of(f"kill{i}-1@e2e") == 1 and worker_of(f"kill{i}-2@e2e") == 1)
    calls = uac(tmp_path, edge.port, "12025550100", call_scenario(tmp_path, "+13035550155"),
                calls=2, rate=10, name="after-restart", extra=fixed_call_ids(tag))
    assert calls.wait(30) == 0, calls.errors()
    pbx.stop()
    assert calls.count("SuccessfulCall(C)") == 2
    nodes = {a["node"] for a in edge.admin.activities(calling="+13035550155")}
    assert nodes == {"edge-1-w1"}




def test_only_the_supervisor_talks_to_systemd(workers, tmp_path):
    """One READY for the whole daemon once every worker serves (workers never see $NOTIFY_SOCKET), the
    watchdog pinged, RELOADING then READY on SIGHUP, STOPPING on SIGTERM."""
    start, _ = workers
    notify = NotifyListener(tmp_path / "notify.sock")
    collect, got = notify.collect, notify.got

    try:
        edge = start(env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"})
        collect(0.6)
        started = list(got)
        edge.daemon.signal(signal.SIGHUP)
        edge.daemon.wait_event("reloaded", count=2, timeout=20)
        collect(0.3)
        edge.daemon.signal(signal.SIGTERM)
        edge.daemon.wait_event("workers_stopped", timeout=30)
        collect(0.3)
    finally:
        notify.close()
    ready = [m for m in started if "READY=1" in m]
    assert ready == ["READY=1\nSTATUS=2 workers"]
    assert sum("WATCHDOG=1" in m for m in got) >= 2
    text = "\n".join(got)
    assert text.index("READY=1") < text.index("RELOADING=1") < text.rindex("READY=1") < text.index("STOPPING=1")
