"""edge.call.admission.Gatekeeper: STIR verdicts, the policy pipeline and captcha pass memory, glued.

Dialplans are compiled from TOML by the real loader; Identity headers are signed by the test STI PKI
and verified by the real verifier (certificate served as the adapter would after a fetch).
"""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.call.admission import Gatekeeper, PassMemory
from edge.call.peers import Peer
from edge.dialplan.load import load_dialplans
from edge.dialplan.plan import NumberEntry
from edge.policy.facts import Action
from edge.policy.pipeline import PolicyEngine
from edge.sip.message import parse
from edge.stir.certs import TrustStore
from edge.stir.result import StirStatus
from edge.stir.schema import StirConfig
from edge.sip.transaction import Destination
from edge.stir.verifier import NeedCertificate, Verifier, VerifierSettings
from tests.stir.pki import CALLED, CALLER, NOW, X5U, Pki, build_pki, pem
from tests.stir.tokens import claims, identity

SRC = Destination("udp", "192.0.2.10", 5060)
CARRIER = Peer("carrier", "carrier-a")

DIALPLAN = """\
customer = "acme"
targets = ["pbx-a"]

[[numbers]]
number = "+{called}"
stir = {{ on_failed = "{on_failed}", on_absent = "{on_absent}" }}
action = "{action}"

[captcha]
length = 4
"""


@pytest.fixture(scope="module")
def pki() -> Pki:
    return build_pki()


def entry(tmp_path: Path, on_failed: str = "continue", on_absent: str = "continue", action: str = "allow") -> NumberEntry:
    (tmp_path / "acme.toml").write_text(DIALPLAN.format(called=CALLED, on_failed=on_failed, on_absent=on_absent, action=action))
    plan, _ = load_dialplans(tmp_path, {"pbx-a"})
    e = plan.lookup(f"+{CALLED}")
    assert e is not None
    return e


def invite(ident: str | None, caller: str = CALLER) -> bytes:
    lines = [
        f"INVITE sip:+{CALLED}@127.0.0.1 SIP/2.0",
        "Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-1",
        f"From: <sip:+{caller}@192.0.2.10>;tag=a",
        f"To: <sip:+{CALLED}@127.0.0.1>",
        "Call-ID: adm-1",
        "CSeq: 1 INVITE",
        "Max-Forwards: 70",
    ]
    if ident:
        lines.append(f"Identity: {ident}")
    return ("\r\n".join(lines) + "\r\nContent-Length: 0\r\n\r\n").encode()


def gatekeeper(pki: Pki, passes: PassMemory | None = None) -> Gatekeeper:
    verifier = Verifier(TrustStore.from_blobs([pem(pki.root)]), VerifierSettings())
    return Gatekeeper(PolicyEngine(), StirConfig(), verifier, passes=passes)


def admit(gk: Gatekeeper, pki: Pki, e: NumberEntry, ident: str | None, now: float = NOW):
    msg = parse(invite(ident))
    for _ in range(3):
        out = gk.admit(msg, SRC, CARRIER, e, now)
        if not isinstance(out, NeedCertificate):
            return out
        assert out.url == X5U
        gk.verifier.certificate_fetched(out.url, pki.bundle, None, "", now)
    raise AssertionError("admission did not settle")


def forged(pki: Pki) -> str:
    """Signed by the right key for a different caller: the signature holds, the orig claim does not."""
    return identity(pki.leaf_key, cl=claims(orig={"tn": "13035550111"}))


def test_valid_identity_passes_and_allows(tmp_path: Path, pki: Pki) -> None:
    gk = gatekeeper(pki)
    adm = admit(gk, pki, entry(tmp_path, on_failed="screen"), identity(pki.leaf_key))
    assert adm.stir.status is StirStatus.PASSED
    assert adm.decision.action is Action.ALLOW
    assert ("p-asserted-identity", None) not in adm.edits
    assert gk.stir_counts == {"passed": 1}


def test_failed_identity_with_on_failed_screen_gets_captcha(tmp_path: Path, pki: Pki) -> None:
    gk = gatekeeper(pki)
    adm = admit(gk, pki, entry(tmp_path, on_failed="screen"), forged(pki))
    assert adm.stir.status is StirStatus.FAILED
    assert adm.decision.action is Action.CAPTCHA
    assert adm.decision.reason.startswith("STIR/SHAKEN: ")
    assert any(name == "reason" for name, _ in adm.edits)


def test_failed_identity_screened_caller_who_passed_recently_is_allowed(tmp_path: Path, pki: Pki) -> None:
    passes = PassMemory()
    passes.remember(f"+{CALLER}", NOW + 3600)
    gk = gatekeeper(pki, passes)
    adm = admit(gk, pki, entry(tmp_path, on_failed="screen"), forged(pki))
    assert adm.decision.action is Action.ALLOW


def test_failed_identity_with_on_failed_reject(tmp_path: Path, pki: Pki) -> None:
    gk = gatekeeper(pki)
    adm = admit(gk, pki, entry(tmp_path, on_failed="reject"), forged(pki))
    assert adm.decision.action is Action.REJECT
    assert adm.decision.sip_status == adm.stir.sip_status != 0


def test_absent_identity_continue_and_reject(tmp_path: Path, pki: Pki) -> None:
    gk = gatekeeper(pki)
    assert admit(gk, pki, entry(tmp_path), None).decision.action is Action.ALLOW
    adm = admit(gk, pki, entry(tmp_path, on_absent="reject"), None)
    assert (adm.decision.action, adm.decision.sip_status) == (Action.REJECT, 428)


def test_default_captcha_action_skipped_while_pass_remembered(tmp_path: Path, pki: Pki) -> None:
    passes = PassMemory()
    gk = gatekeeper(pki, passes)
    e = entry(tmp_path, action="captcha")
    assert admit(gk, pki, e, identity(pki.leaf_key)).decision.action is Action.CAPTCHA
    passes.remember(f"+{CALLER}", NOW + 60)
    d = admit(gk, pki, e, identity(pki.leaf_key)).decision
    assert (d.action, d.rule_id) == (Action.ALLOW, "captcha.passed_recently")
    assert admit(gk, pki, e, identity(pki.leaf_key), now=NOW + 61).decision.action is Action.CAPTCHA


def test_pass_memory_bounded_oldest_first() -> None:
    m = PassMemory(cap=2)
    m.remember("+1", 100)
    m.remember("+2", 100)
    m.remember("+3", 100)
    assert [m.passed(n, 0) for n in ("+1", "+2", "+3")] == [False, True, True]
    assert not m.passed("+2", 100)  # expired at its deadline
