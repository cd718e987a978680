"""Every contact in the log: outbound calls and messages (PBX -> carrier) as activities with direction,
signing, carrier, failover and final status; one `contact_decided` line each; SIP MESSAGE carrying Identity
verified like an INVITE. Sans-IO on a fake clock."""

from __future__ import annotations

import msgspec
import pytest
from structlog.testing import capture_logs

from edge.call.admission import Gatekeeper
from edge.call.proxy import Proxy
from edge.config import EdgeConfig
from edge.dialplan.plan import NumberEntry, Plan
from edge.policy.pipeline import PolicyEngine
from edge.sip.transaction import Destination
from edge.stir.certs import TrustStore
from edge.stir.schema import StirAction, StirPolicy
from edge.stir.signer import Signer
from edge.stir.verifier import Verifier
from tests.call.proxy_harness import CALLED, CARRIER, EDGE_URI, PBX_A, Harness, answer, config_dict, make_plan
from tests.call.test_proxy_core import carrier_invite, only, statuses
from tests.sip.samples import SDP, invite

CARRIER_B = Destination("udp", "192.0.2.6", 5080)
OUT_URI = "sip:+13035550177@127.0.0.1:5060"


@pytest.fixture(scope="module")
def pki():
    from tests.stir.pki import build_pki

    return build_pki()


def pbx_invite(method: str = "INVITE", caller: str = CALLED) -> bytes:
    data = invite(OUT_URI, via_host="10.0.0.1:5070", call_id=f"out-{method}@pbx", method=method,
                  body=SDP if method == "INVITE" else "hello",
                  extra=(f"Content-Type: {'application/sdp' if method == 'INVITE' else 'text/plain'}",))
    return data.replace(b"sip:+12025550111@carrier.example", f"sip:{caller}@pbx.example".encode())


def outbound_harness(gate: Gatekeeper | None = None, carriers: list[str] | None = None) -> Harness:
    sections = {"logging": {"log_calls": True}}
    cfg_dict = config_dict(**sections)
    cfg_dict["carriers"][0]["outbound"] = carriers or ["sip:192.0.2.5:5080"]
    cfg = msgspec.convert(cfg_dict, EdgeConfig)
    return Harness(Proxy(cfg, make_plan(), gate))


def test_activity_outbound_call_recorded_with_carrier_and_final_status() -> None:
    h = outbound_harness()
    with capture_logs() as logs:
        out = h.feed(pbx_invite(), PBX_A)
        fwd = only(out, CARRIER)[0]
        h.feed(answer(fwd, 486), CARRIER)
    a = h.proxy.activities[-1]
    assert (a.direction, a.kind, a.calling_number, a.called_number) == ("outbound", "call", CALLED, "+13035550177")
    assert (a.carrier, a.target, a.final_status, a.failovers) == ("carrier-a", "carrier-a#0", 486, 0)
    assert (a.stir_status, a.stir_code, a.customer) == ("unsigned", "signing disabled", "acme")
    assert h.proxy.stats.outbound == 1
    decided = [e for e in logs if e["event"] == "contact_decided"]
    assert len(decided) == 1
    assert (decided[0]["direction"], decided[0]["status"], decided[0]["carrier"]) == ("outbound", 486, "carrier-a")


def test_activity_outbound_failover_counted() -> None:
    h = outbound_harness(carriers=["sip:192.0.2.5:5080", "sip:192.0.2.6:5080"])
    fwd = only(h.feed(pbx_invite(), PBX_A), CARRIER)[0]
    out = h.feed(answer(fwd, 503), CARRIER)
    fwd2 = only(out, CARRIER_B)[0]
    out = h.feed(answer(fwd2, 200, body=SDP), CARRIER_B)
    assert [m.status for m in only(out, PBX_A) if m.status] == [200]
    a = h.proxy.dialogs[fwd2.call_id].activity
    assert a is not None
    assert (a.direction, a.target, a.failovers, a.final_status, a.billable) == ("outbound", "carrier-a#1", 1, 200, True)


def test_activity_outbound_signed_attestation_recorded(pki) -> None:
    from tests.stir.pki import X5U, key_pem

    cfg = msgspec.convert(config_dict(), EdgeConfig)
    gate = Gatekeeper(PolicyEngine(), cfg.stir, signer=Signer(key_pem(pki.leaf_key), X5U))
    h = outbound_harness(gate)
    fwd = only(h.feed(pbx_invite(), PBX_A), CARRIER)[0]
    assert fwd.get("identity")
    h.feed(answer(fwd, 480), CARRIER)
    a = h.proxy.activities[-1]
    # +12025550100 belongs to acme, served by pbx-a, not vetted: B.
    assert (a.stir_status, a.stir_attestation, a.stir_code) == ("signed", "B", "")


def test_activity_outbound_unsigned_reason_recorded(pki) -> None:
    from tests.stir.pki import X5U, key_pem

    cfg = msgspec.convert(config_dict(), EdgeConfig)
    gate = Gatekeeper(PolicyEngine(), cfg.stir, signer=Signer(key_pem(pki.leaf_key), X5U))
    h = outbound_harness(gate)
    fwd = only(h.feed(pbx_invite(caller="alice"), PBX_A), CARRIER)[0]
    assert fwd.get("identity") is None
    h.feed(answer(fwd, 480), CARRIER)
    a = h.proxy.activities[-1]
    assert (a.stir_status, a.stir_code) == ("unsigned", "calling number is not E.164")


def test_activity_outbound_message_recorded() -> None:
    h = outbound_harness()
    with capture_logs() as logs:
        fwd = only(h.feed(pbx_invite("MESSAGE"), PBX_A), CARRIER)[0]
        out = h.feed(answer(fwd, 202), CARRIER)
    assert [m.status for m in only(out, PBX_A)] == [202]
    a = h.proxy.activities[-1]
    assert (a.direction, a.kind, a.final_status, a.carrier) == ("outbound", "message", 202, "carrier-a")
    assert [e["kind"] for e in logs if e["event"] == "contact_decided"] == ["message"]


def test_activity_no_outbound_carrier_recorded_403() -> None:
    cfg_dict = config_dict(logging={"log_calls": True})
    cfg_dict["carriers"][0]["outbound"] = []
    h = Harness(Proxy(msgspec.convert(cfg_dict, EdgeConfig), make_plan()))
    assert [m.status for m in only(h.feed(pbx_invite(), PBX_A), PBX_A) if m.status] == [100, 403]
    a = h.proxy.activities[-1]
    assert (a.direction, a.decision, a.rule_id, a.final_status) == ("outbound", "reject", "outbound.no_carrier", 403)


# -- SIP MESSAGE with Identity: verified like an INVITE --------------------------------------------------------


def stir_harness(pki, policy: StirPolicy) -> Harness:
    from tests.stir.pki import pem

    cfg = msgspec.convert(config_dict(logging={"log_calls": True}), EdgeConfig)
    plan = Plan([NumberEntry(key=CALLED, exact=True, customer="acme", targets=("pbx-a",), file="acme.toml",
                             stir=policy)])
    gate = Gatekeeper(PolicyEngine(), cfg.stir, Verifier(TrustStore.from_blobs([pem(pki.root)])))
    return Harness(Proxy(cfg, plan, gate))


def carrier_message(identity: str = "") -> bytes:
    extra = ["Content-Type: text/plain"] + ([f"Identity: {identity}"] if identity else [])
    return carrier_invite(EDGE_URI, method="MESSAGE", body="hi", extra=tuple(extra))


def test_activity_message_with_failing_identity_rejected_438(pki) -> None:
    h = stir_harness(pki, StirPolicy(on_failed=StirAction.REJECT, on_absent=StirAction.REJECT))
    with capture_logs() as logs:
        out = h.feed(carrier_message("abc.def;info=<https://cert.example.net/c.pem>;ppt=shaken"))
    final = only(out, CARRIER)[-1]
    assert (final.status, final.reason) == (438, "Invalid Identity Header")
    assert final.get("reason") == 'SIP;cause=438;text="Invalid Identity Header"'
    a = h.proxy.activities[-1]
    assert (a.kind, a.stir_status, a.stir_code, a.rule_id) == ("message", "failed", "malformed", "stir.on_failed")
    assert "segments" in a.reason  # the detail of what failed
    decided = [e for e in logs if e["event"] == "contact_decided"][0]
    assert (decided["stir_code"], decided["status"]) == ("malformed", 438)


def test_activity_message_without_identity_not_rejected_by_on_absent(pki) -> None:
    h = stir_harness(pki, StirPolicy(on_failed=StirAction.REJECT, on_absent=StirAction.REJECT))
    out = h.feed(carrier_message())
    fwd = only(out, PBX_A)
    assert [m.method for m in fwd] == ["MESSAGE"]
    assert "verstat=No-TN-Validation@" in (fwd[0].get("from") or "")
    assert h.proxy.gate is not None and h.proxy.gate.stir_counts == {"absent": 1}


def test_activity_message_with_failing_identity_forwarded_marked_failed(pki) -> None:
    h = stir_harness(pki, StirPolicy())
    out = h.feed(carrier_message("abc.def;info=<https://cert.example.net/c.pem>;ppt=shaken"))
    fwd = only(out, PBX_A)[0]
    # Malformed token: nothing could be validated.
    assert "verstat=No-TN-Validation@" in (fwd.get("from") or "")
    assert fwd.get("reason") == 'SIP;cause=438;text="Invalid Identity Header"'
    assert statuses(h.feed(answer(fwd, 200), PBX_A)) == [200]
    a = h.proxy.activities[-1]
    assert (a.stir_code, a.decision) == ("malformed", "allow")
    assert "segments" in a.stir_reason  # the detail, also when the policy lets the message through
