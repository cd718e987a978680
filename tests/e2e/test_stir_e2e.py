"""STIR/SHAKEN end to end: Identity headers made by secsipidx (an independent implementation) on sipp
INVITEs through the daemon; certificates served over HTTP on 127.0.0.1; outbound signing checked by secsipidx."""

from __future__ import annotations

import base64
import http.server
import json
import re
import shutil
import signal
import subprocess
import threading
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from tests.e2e.harness import ROOT, call_scenario, expect_final_scenario, free_port, uac, uas

pytestmark = pytest.mark.e2e

SECSIPIDX = shutil.which("secsipidx") or "/usr/bin/secsipidx"
STI = ROOT / "config" / "sti-ca"
KEY = STI / "signing" / "key.pem"
BUNDLE = STI / "signing" / "cert-bundle.pem"

STIR_PLAN = """
customer = "acme"
vetted = true
targets = ["pbx-a"]

[[numbers]]
number = "+12025550100"

[[numbers]]
number = "+12025550101"
stir = { on_failed = "reject", on_absent = "reject" }
"""


@pytest.fixture
def cert_url():
    """The test certificate bundle served like an STI-CR would (plain HTTP on loopback, allowed for tests)."""
    body = BUNDLE.read_bytes()

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - http.server API
            self.send_response(200)
            self.send_header("Content-Type", "application/x-pem-file")
            self.send_header("Cache-Control", "max-age=600")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            return

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    t = threading.Thread(target=server.serve_forever, daemon=True)
    t.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/cert-bundle.pem"
    server.shutdown()


def secsipidx_sign(orig: str, dest: str, x5u: str, attest: str = "A", iat: int | None = None) -> str:
    """A full-form Identity value signed by secsipidx; with `iat` (which -sign-full ignores) the token is
    made with -sign and the parameters are added here."""
    mode = ["-sign", "-iat", str(iat)] if iat is not None else ["-sign-full"]
    out = subprocess.run(
        [SECSIPIDX, *mode, "-orig-tn", orig, "-dest-tn", dest, "-attest", attest,
         "-orig-id", "1f5b2c44-0000-4000-8000-00000000abcd", "-x5u", x5u, "-k", str(KEY)],
        capture_output=True, text=True, timeout=20, check=True,
    )
    value = out.stdout.strip().splitlines()[-1]
    return value if iat is None else f"{value};info=<{x5u}>;alg=ES256;ppt=shaken"


def tamper(identity: str) -> str:
    """The same Identity with one claim changed (origid) and the original signature: well-formed, fresh,
    and the signature no longer covers it."""
    token, sep, params = identity.partition(";")
    header, payload, signature = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["origid"] = "00000000-0000-4000-8000-000000000bad"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    return f"{header}.{forged}.{signature}{sep}{params}"


def final_response(sipp, code: int) -> str:
    """The first `code` response a sipp UAC received, as logged (status line first, header lines after)."""
    text = sipp.messages().replace("\r\n", "\n")
    i = text.find(f"SIP/2.0 {code} ")
    assert i >= 0, text[-2000:]
    return text[i:].split("\n\n", 1)[0]


def pbx_invites(pbx) -> list[str]:
    """The INVITEs a sipp UAS received, header part only."""
    text = pbx.messages().replace("\r\n", "\n")
    return ["INVITE sip:" + part.split("\n\n", 1)[0] for part in text.split("INVITE sip:")[1:]]


def stir_extra(x5u_host: str = "127.0.0.1", signing: bool = False) -> str:
    lines = [
        "[stir]",
        f'trust_dir = "{STI}"',
        f'allow_insecure_hosts = ["{x5u_host}"]',
        'allow_private_networks = ["127.0.0.0/8"]',
    ]
    if signing:
        lines += ["[stir.signing]", "enabled = true", f'key_file = "{KEY}"',
                  'x5u = "https://certs.example.net/sti/cert-bundle.pem"']
    return "\n".join(lines)


def test_stir_valid_identity_reaches_pbx_with_verstat_passed(edge, tmp_path, cert_url):
    d = edge.start(dialplan=STIR_PLAN, extra=stir_extra(), health_interval="")
    identity = secsipidx_sign("12025550199", "12025550100", cert_url)
    pbx = uas(tmp_path, edge.pbx_a)
    car = uac(tmp_path, edge.port, "12025550100",
              call_scenario(tmp_path, "+12025550199", extra_headers=f"Identity: {identity}"))
    assert car.wait(20) == 0, car.errors()
    pbx.stop()
    invite = pbx.messages().split("INVITE sip:", 1)[1].split("\n\n", 1)[0]
    assert "verstat=TN-Validation-Passed" in invite
    assert d.wait_event("contact_decided")[0]["status"] == 200


def test_stir_tampered_identity_marked_failed_or_rejected(edge, tmp_path, cert_url):
    d = edge.start(dialplan=STIR_PLAN, extra=stir_extra(), health_interval="")
    tampered = tamper(secsipidx_sign("12025550199", "12025550100", cert_url))
    pbx = uas(tmp_path, edge.pbx_a)
    car = uac(tmp_path, edge.port, "12025550100",
              call_scenario(tmp_path, "+12025550199", extra_headers=f"Identity: {tampered}"), name="c1")
    assert car.wait(20) == 0, car.errors()
    invite = pbx.messages().split("INVITE sip:", 1)[1].split("\n\n", 1)[0]
    assert "verstat=TN-Validation-Failed@" in invite
    assert 'Reason: SIP;cause=438;text="Invalid Identity Header"' in invite
    # The number whose dialplan says reject: 438 before answer, nothing at the PBX.
    bad101 = tamper(secsipidx_sign("12025550199", "12025550101", cert_url))
    rej = uac(tmp_path, edge.port, "12025550101",
              expect_final_scenario(tmp_path, 438, caller="+12025550199", extra_headers=f"Identity: {bad101}"), name="c2")
    assert rej.wait(20) == 0, rej.errors()
    absent = uac(tmp_path, edge.port, "12025550101", expect_final_scenario(tmp_path, 428, caller="+12025550199"), name="c3")
    assert absent.wait(20) == 0, absent.errors()
    pbx.stop()
    assert pbx.messages().count("INVITE sip:") == 1
    # What the carrier reads: the RFC 8224 phrase, and a Reason naming what failed (not the dialplan rule).
    r438 = final_response(rej, 438)
    assert r438.startswith("SIP/2.0 438 Invalid Identity Header\n"), r438
    assert 'Reason: SIP;cause=438;text="Invalid Identity Header"' in r438
    r428 = final_response(absent, 428)
    assert r428.startswith("SIP/2.0 428 Use Identity Header\n"), r428
    assert 'Reason: SIP;cause=428;text="Use Identity Header"' in r428
    # The detail stays in the log and the activity.
    decided = {e["call_id"]: e for e in d.wait_event("contact_decided", count=3)}
    rejected = [e for e in decided.values() if e["status"] == 438]
    assert rejected and rejected[0]["stir_code"] == "bad_signature"
    assert "signature" in rejected[0]["reason"]


def test_stir_outbound_call_from_pbx_is_signed_and_verifies_in_secsipidx(edge, tmp_path):
    carrier_in = free_port()
    d = edge.start(dialplan=STIR_PLAN, extra=stir_extra(signing=True), health_interval="",
               outbound=[f"sip:127.0.0.1:{carrier_in}"])
    carrier = uas(tmp_path, carrier_in, name="carrier-uas")
    pbx = uac(tmp_path, edge.port, "13035550177", call_scenario(tmp_path, "+12025550100"), port=edge.pbx_a,
              name="pbx-uac")
    assert pbx.wait(20) == 0, pbx.errors()
    carrier.stop()
    m = re.search(r"^Identity: (\S+)", carrier.messages(), re.M)
    assert m, carrier.messages()[-2000:]
    identity = m.group(1)
    pub = tmp_path / "pub.pem"
    leaf = x509.load_pem_x509_certificates(BUNDLE.read_bytes())[0]
    pub.write_bytes(leaf.public_key().public_bytes(serialization.Encoding.PEM,
                                                   serialization.PublicFormat.SubjectPublicKeyInfo))
    out = subprocess.run([SECSIPIDX, "-check", "-identity", identity, "-fpubkey", str(pub), "-expire", "60"],
                         capture_output=True, text=True, timeout=20)
    assert out.returncode == 0, out.stdout + out.stderr
    # Attestation A: the calling number belongs to acme, whose profile is vetted.
    payload = identity.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["attest"] == "A"
    assert claims["orig"]["tn"] == "12025550100" and claims["dest"]["tn"] == ["13035550177"]
    # The outbound call is in the log: direction, what was signed, the carrier chosen, the final status.
    e = d.wait_event("contact_decided")[0]
    assert (e["direction"], e["stir_status"], e["stir_attestation"]) == ("outbound", "signed", "A")
    assert (e["carrier"], e["target"], e["status"], e["failovers"]) == ("carrier-a", "carrier-a#0", 200, 0)


def test_stir_sighup_reloads_trust_anchors(edge, tmp_path, cert_url):
    """Anchors and chain material are re-read on SIGHUP; calls keep verifying against the new set."""
    trust = tmp_path / "sti-ca"
    trust.mkdir()
    (trust / "root.pem").write_bytes((STI / "root.pem").read_bytes())
    d = edge.start(dialplan=STIR_PLAN, extra=stir_extra().replace(f'trust_dir = "{STI}"', f'trust_dir = "{trust}"'),
                   health_interval="")
    intermediate = x509.load_pem_x509_certificates(BUNDLE.read_bytes())[1]
    (trust / "intermediate.pem").write_bytes(intermediate.public_bytes(serialization.Encoding.PEM))
    d.signal(signal.SIGHUP)
    reloaded = d.wait_event("stir_trust_reloaded")[0]
    assert (reloaded["anchors"], reloaded["chain"], reloaded["crls"]) == (1, 1, 0)
    (trust / "broken.crl").write_bytes(b"not a CRL")
    d.signal(signal.SIGHUP)
    assert "broken.crl" in d.wait_event("stir_trust_reload_failed")[0]["error"]
    pbx = uas(tmp_path, edge.pbx_a)
    car = uac(tmp_path, edge.port, "12025550100", call_scenario(
        tmp_path, "+12025550199", extra_headers=f"Identity: {secsipidx_sign('12025550199', '12025550100', cert_url)}"))
    assert car.wait(20) == 0, car.errors()
    pbx.stop()
    assert d.wait_event("contact_decided")[0]["stir_status"] == "passed"


def test_stir_pbx_reads_verstat_in_user_part_for_passed_failed_unverifiable(edge, tmp_path, cert_url):
    """What the PBX receives (no PAI from the carrier, so verstat goes on From): the value per outcome, in the
    user part of the SIP URI with user=phone, and the Reason for failures. The carrier's own From comes back
    in the responses relayed upstream."""
    d = edge.start(dialplan=STIR_PLAN, extra=stir_extra(), health_interval="")
    good = secsipidx_sign("12025550199", "12025550100", cert_url)
    tampered = tamper(secsipidx_sign("12025550199", "12025550100", cert_url))
    dead = f"http://127.0.0.1:{free_port()}/gone.pem"  # nothing listens: the certificate cannot be fetched
    unfetchable = secsipidx_sign("12025550199", "12025550100", dead)
    pbx = uas(tmp_path, edge.pbx_a)
    for name, value in (("passed", good), ("failed", tampered), ("unverifiable", unfetchable)):
        car = uac(tmp_path, edge.port, "12025550100",
                  call_scenario(tmp_path, "+12025550199", extra_headers=f"Identity: {value}"), name=name)
        assert car.wait(20) == 0, car.errors()
        # RFC 3261 §8.2.6.2: responses carry the From of the request; the carrier gets its own back.
        ringing = final_response(car, 200)
        assert "verstat" not in ringing, ringing
    pbx.stop()
    invites = pbx_invites(pbx)
    assert len(invites) == 3
    froms = [next(line for line in inv.splitlines() if line.startswith("From:")) for inv in invites]
    for line, verstat in zip(froms, ("TN-Validation-Passed", "TN-Validation-Failed", "No-TN-Validation")):
        assert f"<sip:+12025550199;verstat={verstat}@127.0.0.1:" in line, line
        assert ";user=phone>" in line, line
    assert "Reason:" not in invites[0]
    assert 'Reason: SIP;cause=438;text="Invalid Identity Header"' in invites[1]
    assert 'Reason: SIP;cause=436;text="Bad Identity Info"' in invites[2]
    decided = {e["stir_code"]: e for e in d.wait_event("contact_decided", count=3)}
    assert sorted(decided) == ["", "bad_signature", "fetch_failed"]
    assert "signature does not verify" in decided["bad_signature"]["stir_reason"]
    assert decided["fetch_failed"]["stir_reason"].startswith("fetch failed")


def test_stir_stale_token_rejected_403_stale_date(edge, tmp_path, cert_url):
    edge.start(dialplan=STIR_PLAN, extra=stir_extra(), health_interval="")
    stale = secsipidx_sign("12025550199", "12025550101", cert_url, iat=int(time.time()) - 600)
    rej = uac(tmp_path, edge.port, "12025550101",
              expect_final_scenario(tmp_path, 403, caller="+12025550199", extra_headers=f"Identity: {stale}"))
    assert rej.wait(20) == 0, rej.errors()
    r403 = final_response(rej, 403)
    assert r403.startswith("SIP/2.0 403 Stale Date\n"), r403
    assert 'Reason: SIP;cause=403;text="Stale Date"' in r403


_MESSAGE_WITH_IDENTITY = """<?xml version="1.0" encoding="ISO-8859-1" ?>
<scenario name="uac message with Identity">
  <send retrans="500"><![CDATA[
MESSAGE sip:[service]@[remote_ip]:[remote_port] SIP/2.0
Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
From: <sip:+12025550199@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
To: <sip:[service]@[remote_ip]:[remote_port]>
Call-ID: [call_id]
CSeq: 1 MESSAGE
Max-Forwards: 70
Identity: {identity}
Content-Type: text/plain
Content-Length: [len]

Your appointment is tomorrow at 10
]]></send>
  <recv response="{code}"/>
</scenario>
"""


def test_stir_message_identity_verified_like_invite(edge, tmp_path, cert_url):
    """RFC 8224 covers any request: a MESSAGE's Identity is verified, marked with verstat toward the PBX, and
    a failing one is rejected where the number's policy says so."""
    from tests.e2e.harness import uas_message_scenario

    d = edge.start(dialplan=STIR_PLAN, extra=stir_extra(), health_interval="")
    pbx = uas(tmp_path, edge.pbx_a, uas_message_scenario(tmp_path), calls=1)
    good = secsipidx_sign("12025550199", "12025550100", cert_url)
    ok = tmp_path / "msg_ok.xml"
    ok.write_text(_MESSAGE_WITH_IDENTITY.format(identity=good, code=200))
    sender = uac(tmp_path, edge.port, "12025550100", str(ok), name="msg-ok")
    assert sender.wait(20) == 0, sender.errors()
    assert pbx.wait(10) == 0, pbx.errors()
    message = pbx.messages().replace("\r\n", "\n").split("MESSAGE sip:", 1)[1].split("\n\n", 1)[0]
    assert "<sip:+12025550199;verstat=TN-Validation-Passed@" in message
    bad = tmp_path / "msg_bad.xml"
    bad.write_text(_MESSAGE_WITH_IDENTITY.format(
        identity=tamper(secsipidx_sign("12025550199", "12025550101", cert_url)), code=438))
    rejected = uac(tmp_path, edge.port, "12025550101", str(bad), name="msg-bad")
    assert rejected.wait(20) == 0, rejected.errors()
    assert final_response(rejected, 438).startswith("SIP/2.0 438 Invalid Identity Header\n")
    decided = {e["called"]: e for e in d.wait_event("contact_decided", count=2)}
    assert (decided["+12025550100"]["kind"], decided["+12025550100"]["stir_status"]) == ("message", "passed")
    assert (decided["+12025550101"]["stir_code"], decided["+12025550101"]["status"]) == ("bad_signature", 438)
