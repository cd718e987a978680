"""Clean-call proxy path end to end: real sipp carrier (UAC) and PBX (UAS) through the daemon on loopback."""

from __future__ import annotations

import pytest

from tests.e2e.harness import uac, uas

pytestmark = pytest.mark.e2e


def test_proxy_basic_calls_complete(edge, tmp_path):
    d = edge.start()
    pbx = uas(tmp_path, edge.pbx_a)
    car = uac(tmp_path, edge.port, "12025550100", calls=10, rate=20, port=edge.carrier_port)
    assert car.wait(30) == 0, car.errors()
    pbx.stop()
    assert car.count("SuccessfulCall(C)") == 10
    assert car.count("FailedCall(C)") == 0
    decided = d.wait_event("contact_decided", count=10)
    assert {e["status"] for e in decided} == {200}
    assert {e["target"] for e in decided} == {"pbx-a"}
