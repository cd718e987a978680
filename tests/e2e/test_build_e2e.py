"""The daemon says which build of the hot path it runs (startup log, `edge_build_info`), and the pure-Python
build serves calls from the real daemon too. Bounded: 3 calls, one daemon per build."""

from __future__ import annotations

import re

import pytest

from edge.build import build_info
from tests.e2e.harness import Admin, Daemon, uac, uas

pytestmark = pytest.mark.e2e


def _build_metric(admin: Admin) -> dict[str, str]:
    status, text = admin.call("GET", "/metrics")
    assert status == 200
    line = next(ln for ln in str(text).splitlines() if ln.startswith("edge_build_info{"))
    assert line.endswith(" 1.0")
    return dict(re.findall(r'(\w+)="([^"]*)"', line))


def _restart(edge, env: dict[str, str]) -> Daemon:  # noqa: ANN001 - the conftest fixture
    d = edge.start()
    d.stop()
    edge.daemon = Daemon(d.config, d.dialplans, edge.tmp / "daemon-2.log", env=env)
    edge.daemon.wait_ready()
    return edge.daemon


def test_daemon_reports_its_build(edge, tmp_path):
    d = edge.start()
    expected = build_info()  # this test process imported the same install, same environment
    started = d.wait_event("daemon_started")[0]
    assert started["build"] == expected.label
    m = _build_metric(Admin(tmp_path, (tmp_path / "edge.toml").read_text()))
    assert m["compiled"] == ("true" if expected.compiled else "false")
    assert m["build"] == expected.label


def test_pure_python_daemon_serves_calls(edge, tmp_path):
    d = _restart(edge, {"SIP_EDGE_PURE": "1"})
    assert d.wait_event("daemon_started")[0]["build"] == "pure-python (SIP_EDGE_PURE=1)"
    assert _build_metric(Admin(tmp_path, (tmp_path / "edge.toml").read_text()))["compiled"] == "false"
    pbx = uas(tmp_path, edge.pbx_a)
    car = uac(tmp_path, edge.port, "12025550100", calls=3, rate=10, port=edge.carrier_port)
    assert car.wait(30) == 0, car.errors()
    pbx.stop()
    assert (car.count("SuccessfulCall(C)"), car.count("FailedCall(C)")) == (3, 0)
    assert {e["status"] for e in d.wait_event("contact_decided", count=3)} == {200}
