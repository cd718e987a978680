"""A G.711 fax to a screened number: its CNG tone (generated 1,100 Hz, 0.5 s on / 3 s off, PCMU RTP played
by sipp) is heard during the captcha and the call goes to the number's fax target, recorded as a fax."""

from __future__ import annotations

import math
from array import array
from pathlib import Path

import pytest

from tests.e2e.harness import Admin, media_call_scenario, uac, uas, write_rtp_pcap
from tests.e2e.test_media_e2e import SEED, _activity, media_extra

pytestmark = pytest.mark.e2e

PLAN = f"""
customer = "acme"
targets = ["pbx-a"]
fax_target = "pbx-b"

[[numbers]]
number = "+12025550100"
action = "captcha"

[captcha]
length = 4
attempts = 1
timeout = "8s"
seed = {SEED}
"""


def cng_pcap(path: Path, cycles: int = 2) -> Path:
    """T.30 CNG as a fax machine sends it: 1,100 Hz for 0.5 s, silence for 3 s, repeated."""
    from edge.media.codecs import Codec, encode

    pcm = array("h", bytes(1600 * 2))  # 0.2 s of silence first
    for _ in range(cycles):
        pcm.extend(int(6000 * math.sin(2 * math.pi * 1100 * i / 8000)) for i in range(4000))
        pcm.extend(array("h", bytes(24000 * 2)))
    ulaw = encode(pcm.tobytes(), Codec.PCMU)
    return write_rtp_pcap(path, [ulaw[i:i + 160] for i in range(0, len(ulaw) - 159, 160)], pt=0)


def test_fax_tone_on_captcha_goes_to_fax_target(edge, tmp_path):
    edge.start(dialplan=PLAN, extra=media_extra(tmp_path), health_interval="")
    admin = Admin(tmp_path, (tmp_path / "edge.toml").read_text())
    pbx_a = uas(tmp_path, edge.pbx_a, name="pbx-a")
    pbx_b = uas(tmp_path, edge.pbx_b, name="pbx-b")
    pcap = cng_pcap(tmp_path / "cng.pcap")
    car = uac(tmp_path, edge.port, "12025550100",
              media_call_scenario(tmp_path, "+13035550190", "", 300, pcap=str(pcap), gap_ms=3000, caller_hangs_up_after=1000),
              timeout=30)
    assert car.wait(35) == 0, car.errors() + car.messages()[-3000:]
    pbx_a.stop()
    pbx_b.stop()
    assert "INVITE sip:" not in pbx_a.messages()
    assert "X-Edge-Screening: fax=cng" in pbx_b.messages()
    act = _activity(admin, "12025550100")
    assert (act["kind"], act["decision"], act["target"]) == ("fax", "captcha", "pbx-b")
    assert "fax calling tone (CNG) heard" in act["reason"]
    assert any(e["signal"] == "fax.cng" for e in act["evidence"])
    assert edge.daemon.events("fax_detected")
