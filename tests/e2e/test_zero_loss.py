"""Zero-loss operations under sipp load (issue 8): SIGHUP reloads lose no call, SIGTERM drains every
established call, `kill -9` then restart keeps runtime blocks, number states and every flushed
activity (SQLite WAL), and a full activity database is logged and counted while calls keep flowing."""

from __future__ import annotations

import json
import re
import signal
import time

import pytest

from tests.e2e.harness import Admin, Daemon, free_port, uac, uas

pytestmark = pytest.mark.e2e

SERVICE = "12025550100"


def _admin(edge) -> Admin:
    return Admin(edge.tmp, (edge.tmp / "edge.toml").read_text())


def _activities(admin: Admin) -> dict[str, dict]:
    """Every activity the daemon's store holds (the export walks all pages; the store flushes first)."""
    status, body = admin.call("GET", "/activities/export")
    assert status == 200, body
    text = body if isinstance(body, str) else json.dumps(body)
    return {a["id"]: a for a in (json.loads(line) for line in text.splitlines() if line.strip())}


def _metric(admin: Admin, name: str) -> float:
    status, text = admin.call("GET", "/metrics")
    assert status == 200
    total = 0.0
    for line in str(text).splitlines():
        if line.startswith(name + "{") or line.startswith(name + " "):
            total += float(line.rsplit(" ", 1)[1])
    return total


def _stopped_stats(d: Daemon) -> dict:
    (ev,) = d.events("daemon_stopped")
    return ev["stats"]


def test_zero_loss_sighup_reloads_under_load(edge, tmp_path):
    d = edge.start()
    pbx = uas(tmp_path, edge.pbx_a, timeout=60)
    car = uac(tmp_path, edge.port, SERVICE, calls=300, rate=50, port=edge.carrier_port, extra=["-d", "1000"], timeout=60)
    d.wait_event("contact_decided", count=30, timeout=20)
    # Three reloads while calls are being set up, held and torn down; the last one adds a number.
    for n in range(3):
        if n == 2:
            (tmp_path / "dialplans" / "extra.toml").write_text(
                'customer = "globex"\ntargets = ["pbx-b"]\n[[numbers]]\nnumber = "+12025550177"\n')
        d.signal(signal.SIGHUP)
        d.wait_event("reloaded", count=n + 1, timeout=10)
        time.sleep(0.7)
    assert car.wait(90) == 0, car.errors()[-3000:]
    pbx.stop()
    assert (car.count("SuccessfulCall(C)"), car.count("FailedCall(C)")) == (300, 0)
    assert not d.events("reload_rejected")
    assert d.stop() == 0
    stats = _stopped_stats(d)
    assert stats["calls_answered"] == stats["calls_ended"] == 300


def test_zero_loss_sigterm_drains_every_established_call(edge, tmp_path):
    d = edge.start()
    pbx = uas(tmp_path, edge.pbx_a, timeout=60)
    # Fixed batch: 100 calls placed at 50 cps and held 3 s, all established before the signal.
    fixed = uac(tmp_path, edge.port, SERVICE, calls=100, rate=50, port=edge.carrier_port, extra=["-d", "3000"],
                timeout=60, name="fixed")
    d.wait_event("contact_decided", count=100, timeout=20)
    # Then a stream that keeps placing calls across the signal (the late ones must get 503).
    stream = uac(tmp_path, edge.port, SERVICE, calls=2000, rate=20, port=free_port(), extra=["-d", "2000"],
                 timeout=60, name="stream")
    d.wait_event("contact_decided", count=115, timeout=20)
    d.signal(signal.SIGTERM)
    d.wait_event("draining")
    assert fixed.wait(30) == 0, fixed.errors()[-3000:]
    assert d.proc.wait(20) == 0
    stream.stop()
    pbx.stop()
    assert (fixed.count("SuccessfulCall(C)"), fixed.count("FailedCall(C)")) == (100, 0)
    assert d.events("drained") and not d.events("drain_timeout")
    stats = _stopped_stats(d)
    # Every call the edge answered ended with BYE/200 through it: none was cut by the shutdown.
    assert stats["calls_answered"] == stats["calls_ended"]
    assert stats["calls_answered"] == 100 + stream.count("SuccessfulCall(C)")
    assert stats["draining_rejected"] >= 1
    assert "SIP/2.0 503" in stream.messages()


def test_zero_loss_kill_9_restart_keeps_blocks_numbers_and_flushed_activities(edge, tmp_path):
    d = edge.start()
    admin = _admin(edge)
    status, rule = admin.call("POST", "/blocks", {"kind": "number", "value": "+13035550111", "reason": "kill-9 test"})
    assert status == 201, rule
    status, released = admin.call("POST", "/numbers/%2B12025550188/release", {"customer": "acme"})
    assert status in (200, 201), released
    pbx = uas(tmp_path, edge.pbx_a, timeout=60)
    car = uac(tmp_path, edge.port, SERVICE, calls=400, rate=50, port=edge.carrier_port, extra=["-d", "300"], timeout=60)
    # Activities are written when a call ends; wait for a good number of them, read them back
    # (the read flushes), let more calls run, then kill without any chance to flush again.
    deadline = time.monotonic() + 20
    seen: dict[str, dict] = {}
    while len(seen) < 50 and time.monotonic() < deadline:
        time.sleep(0.2)
        seen = _activities(admin)
    assert len(seen) >= 50
    time.sleep(0.5)
    d.proc.send_signal(signal.SIGKILL)
    assert d.proc.wait(5) == -signal.SIGKILL
    car.stop()
    pbx.stop()
    d.stop()

    d2 = Daemon(d.config, d.dialplans, tmp_path / "daemon2.log")
    edge.daemon = d2
    d2.wait_ready()
    after = _activities(admin)
    missing = sorted(set(seen) - set(after))
    assert not missing, f"{len(missing)} of {len(seen)} flushed activities lost: {missing[:5]}"
    assert all(after[i]["decision"] == seen[i]["decision"] for i in seen)
    status, blocks = admin.call("GET", "/blocks")
    assert status == 200
    ids = [b["id"] for b in blocks["blocks"]]
    assert rule["id"] in ids
    status, number = admin.call("GET", "/numbers/%2B12025550188")
    assert status == 200 and number["state"] == "released", number
    # The restored block applies to the next call.
    from tests.e2e.harness import call_scenario, expect_final_scenario

    pbx2 = uas(tmp_path, edge.pbx_a, name="pbx2")
    blocked = uac(tmp_path, edge.port, SERVICE, expect_final_scenario(tmp_path, 603, caller="+13035550111"),
                  port=free_port(), name="blocked")
    clean = uac(tmp_path, edge.port, SERVICE, call_scenario(tmp_path, "+13035550122"), port=free_port(), name="clean")
    assert blocked.wait(20) == 0, blocked.errors()
    assert clean.wait(20) == 0, clean.errors()
    pbx2.stop()


def test_zero_loss_full_activity_store_logged_counted_calls_flow(edge, tmp_path):
    store = (f'[store]\npath = "{tmp_path / "var" / "edge.db"}"\nbatch_interval = "20ms"\n'
             'max_size = "128KiB"\nretry_max = 200\n')
    d = edge.start(extra=store)
    admin = _admin(edge)
    pbx = uas(tmp_path, edge.pbx_a, timeout=60)
    car = uac(tmp_path, edge.port, SERVICE, calls=400, rate=50, port=edge.carrier_port, extra=["-d", "200"], timeout=60)
    assert car.wait(60) == 0, car.errors()[-3000:]
    pbx.stop()
    assert (car.count("SuccessfulCall(C)"), car.count("FailedCall(C)")) == (400, 0)
    failed = d.wait_event("store_write_failed", timeout=10)
    assert "database or disk is full" in failed[0]["error"]
    assert _metric(admin, "edge_store_write_errors_total") >= 1
    assert _metric(admin, "edge_store_degraded") == 1
    status, health = admin.call("GET", "/health")
    assert status == 200 and health["store_degraded"] is True
    # Retries beyond retry_max are dropped and counted, never grown without bound.
    assert _metric(admin, "edge_store_retry_queue") <= 200
    assert _metric(admin, "edge_store_dropped_writes_total") >= 1
    assert re.search(r"edge_store_write_errors_total\{backend=\"sqlite\"\}", str(admin.call("GET", "/metrics")[1]))
