"""STI-AS: token shape, attestation table, origid stability, round trip through the verifier."""

from __future__ import annotations

import json
import uuid

import pytest

from edge.stir.identity import b64url_decode, parse_identity
from edge.stir.result import StirStatus
from edge.stir.signer import Signer, attestation_for, origid_for
from edge.stir.verifier import Verifier
from tests.stir.pki import CALLED, CALLER, NOW, X5U, Pki


def test_signer_header_value_shape(signer: Signer) -> None:
    value = signer.sign("+1 202 555 0123", ["+12025550199"], "A", "o-1", int(NOW))
    ident = parse_identity(value)
    assert value.endswith(f";info=<{X5U}>;alg=ES256;ppt=shaken")
    assert json.loads(b64url_decode(ident.header_b64)) == {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": X5U}
    assert b64url_decode(ident.payload_b64) == (
        b'{"attest":"A","dest":{"tn":["12025550199"]},"iat":%d,"orig":{"tn":"12025550123"},"origid":"o-1"}' % int(NOW)
    )
    assert len(b64url_decode(ident.signature_b64)) == 64


def test_signer_round_trip_verifies(signer: Signer, verifier: Verifier, pki: Pki) -> None:
    value = signer.sign(CALLER, [CALLED], "B", origid_for("acme"), int(NOW))
    verifier.certificate_fetched(X5U, pki.bundle, None, "", NOW)
    res = verifier.verify([value], CALLER, CALLED, "c", NOW)
    assert (res.status, res.attestation, res.origid) == (StirStatus.PASSED, "B", origid_for("acme"))


@pytest.mark.parametrize(
    ("known", "owned", "vetted", "level"),
    [
        (True, True, True, "A"),
        (True, False, True, "B"),
        (True, True, False, "B"),
        (True, False, False, "B"),
        (False, True, True, "C"),
        (False, False, False, "C"),
    ],
    ids=["owned-vetted", "not-owned", "owned-unvetted", "neither", "unknown-customer", "nothing"],
)
def test_signer_attestation_table(known: bool, owned: bool, vetted: bool, level: str) -> None:
    assert attestation_for(known, owned, vetted) == level


def test_signer_origid_stable_and_configurable() -> None:
    a = origid_for("acme")
    assert a == origid_for("acme") != origid_for("globex")
    assert uuid.UUID(a).version == 5
    assert origid_for("acme", {"acme": "11111111-2222-3333-4444-555555555555"}) == "11111111-2222-3333-4444-555555555555"


def test_signer_refuses_non_p256_key() -> None:
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    k = ec.generate_private_key(ec.SECP384R1()).private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    with pytest.raises(ValueError, match="P-256"):
        Signer(k, X5U)


def test_signer_refuses_bad_attestation(signer: Signer) -> None:
    with pytest.raises(ValueError, match="attestation"):
        signer.sign(CALLER, [CALLED], "D", "o", int(NOW))
