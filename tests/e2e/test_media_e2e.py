"""Screening over RTP end to end: captcha with the RFC 2833 DTMF pcaps shipped with sip-tester played
by sipp, IVR menu selection, voicemail recording, then the bridge to the sipp PBX."""

from __future__ import annotations

import random
import subprocess
import sys
import time
import wave
from pathlib import Path

import pytest

from edge.media.captcha import new_code
from tests.e2e.harness import ROOT, Admin, early_media_scenario, inband_dtmf_pcap, media_call_scenario, uac, uas

pytestmark = pytest.mark.e2e


def distinct_code_seed(length: int = 4) -> tuple[int, str]:
    """A seed whose captcha code repeats no digit (each shipped pcap has one fixed RTP timestamp)."""
    for seed in range(1, 1000):
        code = new_code(random.Random(seed), length)
        if len(set(code)) == length:
            return seed, code
    raise AssertionError("no seed")


SEED, CODE = distinct_code_seed()

MEDIA_PLAN = f"""
customer = "acme"
targets = ["pbx-a"]

[[numbers]]
number = "+12025550100"
action = "captcha"

[[numbers]]
number = "+12025550101"
action = "menu"

[[numbers]]
number = "+12025550102"
action = "voicemail"

[captcha]
length = 4
attempts = 1
timeout = "8s"
seed = {SEED}
pass_memory = "0s"

[menus.main]
greeting = "menu-default"
first_digit_timeout = "6s"
[menus.main.options]
"1" = {{ forward = "pbx-a" }}
"2" = {{ forward = "pbx-b" }}

[voicemail.main]
max_length = "10s"
silence = "0s"
"""

# The captcha speaks its intro (~3.9 s) then the four digits (~2 s).
CAPTCHA_WAIT_MS = 7000


def media_extra(tmp: Path) -> str:
    return f'[media]\nvoicemail_dir = "{tmp / "voicemail"}"\nmedia_timeout = "8s"\n'


def _activity(admin: Admin, called: str) -> dict:
    deadline = time.monotonic() + 8
    while True:
        status, body = admin.call("GET", f"/activities?called=%2B{called}")
        items = [a for a in body["items"] if a.get("ended_at")]
        if items or time.monotonic() > deadline:
            assert items, body
            return items[0]
        time.sleep(0.2)


def test_media_captcha_right_digits_reach_pbx(edge, tmp_path):
    edge.start(dialplan=MEDIA_PLAN, extra=media_extra(tmp_path), health_interval="")
    admin = Admin(tmp_path, (tmp_path / "edge.toml").read_text())
    pbx = uas(tmp_path, edge.pbx_a)
    car = uac(tmp_path, edge.port, "12025550100",
              media_call_scenario(tmp_path, "+13035550100", CODE, CAPTCHA_WAIT_MS, caller_hangs_up_after=1500),
              timeout=40)
    assert car.wait(45) == 0, car.errors() + car.messages()[-3000:]
    pbx.stop()
    msgs = pbx.messages()
    assert "INVITE sip:" in msgs
    assert "X-Edge-Screening: captcha=passed;attempts=1" in msgs
    act = _activity(admin, "12025550100")
    assert act["decision"] == "captcha" and act["answered_at"] and act["billable"] is True
    assert "passed" in act["reason"] and act["target"] == "pbx-a"


def test_media_captcha_wrong_digits_never_reach_pbx(edge, tmp_path):
    edge.start(dialplan=MEDIA_PLAN, extra=media_extra(tmp_path), health_interval="")
    admin = Admin(tmp_path, (tmp_path / "edge.toml").read_text())
    wrong = "".join(str((int(d) + 1) % 10) for d in CODE)
    wrong = wrong if len(set(wrong)) == len(wrong) else "9876"
    pbx = uas(tmp_path, edge.pbx_a)
    car = uac(tmp_path, edge.port, "12025550100",
              media_call_scenario(tmp_path, "+13035550101", wrong, CAPTCHA_WAIT_MS, edge_hangs_up_within=15000),
              timeout=40)
    assert car.wait(45) == 0, car.errors() + car.messages()[-3000:]
    pbx.stop()
    assert "INVITE sip:" not in pbx.messages()
    act = _activity(admin, "12025550100")
    assert act["decision"] == "captcha" and "failed" in act["reason"]
    assert any(e["signal"].startswith("captcha") for e in act["evidence"])


def test_media_menu_option_selects_target(edge, tmp_path):
    edge.start(dialplan=MEDIA_PLAN, extra=media_extra(tmp_path), health_interval="")
    admin = Admin(tmp_path, (tmp_path / "edge.toml").read_text())
    pbx_a = uas(tmp_path, edge.pbx_a, name="pbx-a")
    pbx_b = uas(tmp_path, edge.pbx_b, name="pbx-b")
    # The greeting lasts ~4 s; a key barges in, so "2" can come early.
    car = uac(tmp_path, edge.port, "12025550101",
              media_call_scenario(tmp_path, "+13035550102", "2", 1500, caller_hangs_up_after=1500), timeout=30)
    assert car.wait(35) == 0, car.errors() + car.messages()[-3000:]
    pbx_a.stop()
    pbx_b.stop()
    assert "INVITE sip:" not in pbx_a.messages()
    assert "X-Edge-Screening: menu=main;option=2" in pbx_b.messages()
    assert _activity(admin, "12025550101")["target"] == "pbx-b"


def test_media_voicemail_records_non_silent_wav(edge, tmp_path):
    edge.start(dialplan=MEDIA_PLAN, extra=media_extra(tmp_path), health_interval="")
    admin = Admin(tmp_path, (tmp_path / "edge.toml").read_text())
    # The caller's audio: the G.711 pcap shipped with sip-tester, played after the greeting and beep.
    scen = media_call_scenario(tmp_path, "+13035550103", "", 3500, caller_hangs_up_after=100, codecs=(8,))
    text = Path(scen).read_text().replace(
        '<pause milliseconds="100"/>\n  <send retrans="500"><![CDATA[\nBYE',
        '<nop><action><exec play_pcap_audio="/usr/share/sip-tester/g711a.pcap"/></action></nop>\n'
        '  <pause milliseconds="4500"/>\n  <send retrans="500"><![CDATA[\nBYE', 1)
    Path(scen).write_text(text)
    car = uac(tmp_path, edge.port, "12025550102", scen, timeout=30)
    assert car.wait(35) == 0, car.errors() + car.messages()[-3000:]
    act = _activity(admin, "12025550102")
    assert act["decision"] == "voicemail"
    path = Path(act["voicemail_path"])
    assert path.exists(), act
    with wave.open(str(path)) as w:
        frames = w.readframes(w.getnframes())
        assert w.getframerate() == 8000 and w.getnframes() > 8000
    samples = memoryview(frames).cast("h")
    assert max(abs(s) for s in samples) > 1000  # not silence
    # Listed by the admin API and the CLI.
    status, listed = admin.call("GET", "/voicemail")
    assert status == 200 and [v["path"] for v in listed["voicemail"]] == [str(path)]
    assert listed["voicemail"][0]["bytes"] == path.stat().st_size
    out = subprocess.run([sys.executable, "-m", "edge.cli", "voicemail", "--admin-url", admin.base,
                          "--token-file", str(admin.token_file)], capture_output=True, text=True, timeout=20, cwd=ROOT)
    assert out.returncode == 0 and str(path) in out.stdout, out.stdout + out.stderr


def test_media_menu_option_by_sip_info(edge, tmp_path):
    edge.start(dialplan=MEDIA_PLAN, extra=media_extra(tmp_path), health_interval="")
    pbx_b = uas(tmp_path, edge.pbx_b, name="pbx-b")
    car = uac(tmp_path, edge.port, "12025550101",
              media_call_scenario(tmp_path, "+13035550104", "2", 1000, info=True, caller_hangs_up_after=1500),
              timeout=30)
    assert car.wait(35) == 0, car.errors() + car.messages()[-3000:]
    pbx_b.stop()
    assert "X-Edge-Screening: menu=main;option=2" in pbx_b.messages()


def test_media_inband_dtmf_detected(edge, tmp_path):
    edge.start(dialplan=MEDIA_PLAN, extra=media_extra(tmp_path), health_interval="")
    pcap = inband_dtmf_pcap(tmp_path / "inband-2.pcap", "2")
    pbx_b = uas(tmp_path, edge.pbx_b, name="pbx-b")
    # No telephone-event offered: the edge listens for the tones in the G.711 audio (Goertzel).
    car = uac(tmp_path, edge.port, "12025550101",
              media_call_scenario(tmp_path, "+13035550105", "2", 1000, telephone_event=False, pcap=str(pcap),
                                  gap_ms=1500, caller_hangs_up_after=1500), timeout=30)
    assert car.wait(35) == 0, car.errors() + car.messages()[-3000:]
    pbx_b.stop()
    assert "X-Edge-Screening: menu=main;option=2" in pbx_b.messages()


def test_media_timeout_ends_the_call(edge, tmp_path):
    edge.start(dialplan=MEDIA_PLAN, extra=f'[media]\nvoicemail_dir = "{tmp_path / "vm"}"\nmedia_timeout = "2s"\n',
               health_interval="")
    admin = Admin(tmp_path, (tmp_path / "edge.toml").read_text())
    # The caller sends no RTP at all: after 2 s the edge hangs up (BYE) and records why.
    car = uac(tmp_path, edge.port, "12025550101",
              media_call_scenario(tmp_path, "+13035550106", "", 100, edge_hangs_up_within=8000), timeout=20)
    assert car.wait(25) == 0, car.errors() + car.messages()[-3000:]
    act = _activity(admin, "12025550101")
    assert "media timeout" in act["reason"] and act["duration"] < 6


EARLY_PLAN = MEDIA_PLAN.replace('customer = "acme"', 'customer = "acme"\nscreening = "early-media"', 1)


def test_media_early_media_captcha_answers_only_when_bridged(edge, tmp_path):
    edge.start(dialplan=EARLY_PLAN, extra=media_extra(tmp_path), health_interval="")
    admin = Admin(tmp_path, (tmp_path / "edge.toml").read_text())
    pbx = uas(tmp_path, edge.pbx_a)
    car = uac(tmp_path, edge.port, "12025550100",
              early_media_scenario(tmp_path, "+13035550107", CODE, CAPTCHA_WAIT_MS, expect_answer=True), timeout=40)
    assert car.wait(45) == 0, car.errors() + car.messages()[-3000:]
    pbx.stop()
    assert "X-Edge-Screening: captcha=passed" in pbx.messages()
    act = _activity(admin, "12025550100")
    assert act["screening_mode"] == "early-media" and act["answered_at"] and act["billable"] is True


def test_media_early_media_failed_captcha_is_never_answered(edge, tmp_path):
    edge.start(dialplan=EARLY_PLAN, extra=media_extra(tmp_path), health_interval="")
    admin = Admin(tmp_path, (tmp_path / "edge.toml").read_text())
    wrong = "".join(str((int(d) + 1) % 10) for d in CODE)
    wrong = wrong if len(set(wrong)) == len(wrong) else "9876"
    pbx = uas(tmp_path, edge.pbx_a)
    car = uac(tmp_path, edge.port, "12025550100",
              early_media_scenario(tmp_path, "+13035550108", wrong, CAPTCHA_WAIT_MS, expect_answer=False), timeout=40)
    assert car.wait(45) == 0, car.errors() + car.messages()[-3000:]
    pbx.stop()
    assert "INVITE sip:" not in pbx.messages()
    assert "SIP/2.0 200 OK" not in car.messages()
    act = _activity(admin, "12025550100")
    assert act["answered_at"] is None and act["billable"] is False and act["final_status"] == 480


NO_ACK = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<!-- Carrier whose ACK never arrives: the edge must retransmit its 200 and finally hang up. -->
<scenario name="uac without ACK">
  <send retrans="500"><![CDATA[
INVITE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:+13035550109@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 INVITE
Contact: <sip:sipp@[local_ip]:[local_port]>
Max-Forwards: 70
Content-Type: application/sdp
Content-Length: [len]

v=0
o=user1 1 1 IN IP[local_ip_type] [local_ip]
s=-
c=IN IP[media_ip_type] [media_ip]
t=0 0
m=audio [media_port] RTP/AVP 0 101
a=rtpmap:0 PCMU/8000
a=rtpmap:101 telephone-event/8000
]]></send>
  <recv response="100" optional="true"/>
  <recv response="200"/>
  <recv request="BYE" timeout="15000"/>
  <send><![CDATA[
SIP/2.0 200 OK
[last_Via:]
[last_From:]
[last_To:]
[last_Call-ID:]
[last_CSeq:]
Content-Length: 0
]]></send>
</scenario>
"""


def test_media_answer_retransmitted_until_ack_then_hangup(edge, tmp_path):
    """RFC 3261 §13.3.1.4: the edge (UAS) resends its 200 while the captcha runs, then gives up with BYE."""
    edge.start(dialplan=MEDIA_PLAN, extra=media_extra(tmp_path), health_interval="")
    scen = tmp_path / "uac_no_ack.xml"
    scen.write_text(NO_ACK)
    car = uac(tmp_path, edge.port, "12025550100", str(scen), timeout=25)
    assert car.wait(30) == 0, car.errors() + car.messages()[-3000:]
    msgs = car.messages()
    # T1 = 100 ms in the test config: 200 at 0, then 0.1, 0.3, 0.7, 1.5, 3.1 s ... and BYE at 64*T1 = 6.4 s.
    assert msgs.count("SIP/2.0 200 OK") >= 5
    assert "no ACK for 200 OK" in msgs
