"""Number lifecycle end to end: release through the admin API, calls to the number never reach the PBX
and count as residual traffic, reassignment refused in quarantine and offered after it (time simulated
by moving the stored record back 100 days between two daemon runs)."""

from __future__ import annotations

import asyncio
import time

import pytest

from edge.store.factory import open_store
from edge.store.schema import StoreConfig
from tests.e2e.harness import Admin, Daemon, expect_final_scenario, uac, uas

pytestmark = pytest.mark.e2e

NUMBER = "+12025550188"
ENC = "%2B12025550188"
DAY = 86400


def _age_record(db: str, days: int) -> None:
    async def run() -> None:
        store = await open_store(StoreConfig(path=db))
        rec = await store.get_number(NUMBER)
        assert rec is not None
        rec.released_at -= days * DAY
        rec.daily = {k - days: v for k, v in rec.daily.items()}
        await store.put_number(rec)
        await store.close()

    asyncio.run(run())


def _numbers(body: dict) -> list[str]:
    return [n["number"] if isinstance(n, dict) else n for n in body["numbers"]]


def test_lifecycle_release_intercept_refuse_then_offer_after_quarantine(edge, tmp_path):
    d = edge.start(health_interval="")
    admin = Admin(tmp_path, (tmp_path / "edge.toml").read_text())
    status, body = admin.call("POST", f"/numbers/{ENC}/release", {"customer": "acme"})
    assert status in (200, 201), body
    pbx = uas(tmp_path, edge.pbx_a)
    car = uac(tmp_path, edge.port, "12025550188", expect_final_scenario(tmp_path, 410, caller="+13035550100"))
    assert car.wait(20) == 0, car.errors()
    pbx.stop()
    assert "INVITE sip:" not in pbx.messages()
    # The intercept ran as early media (SIT + "not in service"), never answered.
    assert "183 Session Progress" in car.messages() and "200 OK" not in car.messages()
    deadline = time.monotonic() + 5
    while True:
        status, acts = admin.call("GET", "/activities?called=%2B12025550188")
        if acts["items"] or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    act = acts["items"][0]
    assert (act["decision"], act["rule_id"], act["billable"]) == ("intercept", "lifecycle.released", False)
    status, st = admin.call("GET", f"/numbers/{ENC}")
    assert status == 200 and st["total_residual"] == 1 and st["state"] == "released"
    status, refused = admin.call("POST", f"/numbers/{ENC}/assign", {"customer": "globex"})
    assert status == 409 and "quarantine" in refused["error"]
    status, avail = admin.call("GET", "/numbers-available")
    assert NUMBER not in _numbers(avail)
    assert d.stop() == 0
    # 100 quiet days later (the record's clock moved back; no traffic since the one call).
    _age_record(str(tmp_path / "var" / "edge.db"), 100)
    d2 = Daemon(edge.daemon.config, edge.daemon.dialplans, tmp_path / "daemon2.log")
    edge.daemon = d2
    d2.wait_ready()
    status, avail = admin.call("GET", "/numbers-available")
    assert status == 200
    assert NUMBER in _numbers(avail)
    status, body = admin.call("POST", f"/numbers/{ENC}/assign", {"customer": "globex"})
    assert status == 200, body
