"""STIR/SHAKEN end to end: Identity headers made by secsipidx (an independent implementation) on sipp
INVITEs through the daemon; certificates served over HTTP on 127.0.0.1; outbound signing checked by secsipidx."""

from __future__ import annotations

import http.server
import re
import shutil
import subprocess
import threading
from pathlib import Path

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


def secsipidx_sign(orig: str, dest: str, x5u: str, attest: str = "A") -> str:
    out = subprocess.run(
        [SECSIPIDX, "-sign-full", "-orig-tn", orig, "-dest-tn", dest, "-attest", attest,
         "-orig-id", "1f5b2c44-0000-4000-8000-00000000abcd", "-x5u", x5u, "-k", str(KEY)],
        capture_output=True, text=True, timeout=20, check=True,
    )
    return out.stdout.strip().splitlines()[-1]


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
    good = secsipidx_sign("12025550199", "12025550100", cert_url)
    header, payload, rest = good.split(".", 2)
    # Flip one character of the signed payload: the signature no longer covers it.
    tampered = f"{header}.{payload[:-2]}{'A' if payload[-2] != 'A' else 'B'}{payload[-1]}.{rest}"
    pbx = uas(tmp_path, edge.pbx_a)
    car = uac(tmp_path, edge.port, "12025550100",
              call_scenario(tmp_path, "+12025550199", extra_headers=f"Identity: {tampered}"), name="c1")
    assert car.wait(20) == 0, car.errors()
    invite = pbx.messages().split("INVITE sip:", 1)[1].split("\n\n", 1)[0]
    assert "verstat=TN-Validation-Failed" in invite
    assert "Reason: SIP;cause=438" in invite
    # The number whose dialplan says reject: 438 before answer, nothing at the PBX.
    bad101 = secsipidx_sign("12025550199", "12025550101", cert_url)
    h, p, r = bad101.split(".", 2)
    bad101 = f"{h}.{p[:-2]}{'A' if p[-2] != 'A' else 'B'}{p[-1]}.{r}"
    rej = uac(tmp_path, edge.port, "12025550101",
              expect_final_scenario(tmp_path, 438, caller="+12025550199", extra_headers=f"Identity: {bad101}"), name="c2")
    assert rej.wait(20) == 0, rej.errors()
    absent = uac(tmp_path, edge.port, "12025550101", expect_final_scenario(tmp_path, 428, caller="+12025550199"), name="c3")
    assert absent.wait(20) == 0, absent.errors()
    pbx.stop()
    assert pbx.messages().count("INVITE sip:") == 1


def test_stir_outbound_call_from_pbx_is_signed_and_verifies_in_secsipidx(edge, tmp_path):
    carrier_in = free_port()
    edge.start(dialplan=STIR_PLAN, extra=stir_extra(signing=True), health_interval="",
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
    import base64
    import json

    payload = identity.split(".")[1]
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    assert claims["attest"] == "A"
    assert claims["orig"]["tn"] == "12025550100" and claims["dest"]["tn"] == ["13035550177"]
