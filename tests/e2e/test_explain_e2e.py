"""`sip-edge explain --live` against the running daemon: its counts of real calls, nothing counted by asking."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.e2e.harness import ROOT, call_scenario, uac, uas

pytestmark = pytest.mark.e2e

PLAN = """
customer = "acme"
targets = ["pbx-a"]
[[numbers]]
number = "+12025550100"
[spam]
[[spam.rate]]
key = "caller"
rate = "10/60s"
weight = 40
"""


def explain_live(tmp_path) -> dict:
    out = subprocess.run(
        [sys.executable, "-m", "edge.cli", "explain", "--live", "--config", str(tmp_path / "edge.toml"), "--json",
         "--from", "+13035550166", "--to", "+12025550100"],
        cwd=ROOT, capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_explain_live_shows_the_daemon_counts(edge, tmp_path):
    edge.start(dialplan=PLAN, health_interval="")
    pbx = uas(tmp_path, edge.pbx_a)
    car = uac(tmp_path, edge.port, "12025550100", call_scenario(tmp_path, "+13035550166"), calls=3, rate=10, timeout=20)
    assert car.wait(25) == 0, car.errors()
    pbx.stop()
    first = explain_live(tmp_path)
    again = explain_live(tmp_path)
    assert (first["counts"], first["action"], first["file"].endswith("acme.toml"), first["targets"]) == ("live", "allow", True, ["pbx-a"])
    assert first["rates"][0]["counted_as"] == "+13035550166"
    assert first["rates"][0]["count"] == pytest.approx(3.0, abs=0.2)
    assert again["rates"][0]["count"] == pytest.approx(first["rates"][0]["count"], abs=0.05)  # asking counts nothing
