"""What screening outcomes leave behind, end to end: a captcha pass outlives a daemon restart (read back from
SQLite), and failed IVR menus count as failed screenings for the Spam Detective."""

from __future__ import annotations

import pytest

from tests.e2e.harness import Admin, call_scenario, media_call_scenario, uac, uas
from tests.e2e.test_media_e2e import CAPTCHA_WAIT_MS, CODE, SEED, _activity, media_extra

pytestmark = pytest.mark.e2e

PLAN = f"""
customer = "acme"
targets = ["pbx-a"]

[[numbers]]
number = "+12025550100"
action = "captcha"

[[numbers]]
number = "+12025550101"
action = "menu"

[spam]
[spam.signals]
stir_absent = 0
failed_screenings = 40

[captcha]
length = 4
attempts = 1
timeout = "8s"
seed = {SEED}
pass_memory = "1h"

[menus.main]
greeting = "menu-default"
max_failures = 1
[menus.main.options]
"1" = {{ forward = "pbx-a" }}
"""


def test_captcha_pass_survives_restart(edge, tmp_path):
    edge.start(dialplan=PLAN, extra=media_extra(tmp_path), health_interval="")
    admin = Admin(tmp_path, (tmp_path / "edge.toml").read_text())
    pbx = uas(tmp_path, edge.pbx_a)
    car = uac(tmp_path, edge.port, "12025550100",
              media_call_scenario(tmp_path, "+13035550177", CODE, CAPTCHA_WAIT_MS, caller_hangs_up_after=1500),
              timeout=40)
    assert car.wait(45) == 0, car.errors() + car.messages()[-3000:]
    first = _activity(admin, "12025550100")
    assert first["decision"] == "captcha" and "passed" in first["reason"]
    assert edge.daemon.stop() == 0  # drains and flushes the store

    edge.start(dialplan=PLAN, extra=media_extra(tmp_path), health_interval="")
    admin = Admin(tmp_path, (tmp_path / "edge.toml").read_text())  # a fresh admin port
    car = uac(tmp_path, edge.port, "12025550100", call_scenario(tmp_path, "+13035550177"), timeout=15, name="carrier2")
    assert car.wait(20) == 0, car.errors() + car.messages()[-3000:]
    pbx.stop()
    items = admin.activities(wait=8, called="%2B12025550100", decision="allow")
    assert items and items[0]["rule_id"] == "captcha.passed_recently", items


def test_failed_menus_raise_failed_screenings(edge, tmp_path):
    edge.start(dialplan=PLAN, extra=media_extra(tmp_path), health_interval="")
    admin = Admin(tmp_path, (tmp_path / "edge.toml").read_text())
    caller = "+13035550178"
    for i in range(3):  # '7' is no option: with max_failures = 1 the menu fails and the edge hangs up
        car = uac(tmp_path, edge.port, "12025550101",
                  media_call_scenario(tmp_path, caller, "7", 1500, edge_hangs_up_within=15000), timeout=30, name=f"carrier{i}")
        assert car.wait(35) == 0, car.errors() + car.messages()[-3000:]
        items = admin.activities(wait=8, called="%2B12025550101")
        assert len(items) == i + 1 and items[0].get("ended_at"), items
    signals = [[e["signal"] for e in a["evidence"]] for a in reversed(items)]
    assert ["failed_screenings" in s for s in signals] == [False, False, True], signals
