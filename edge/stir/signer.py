"""The STIR authentication service (STI-AS, RFC 8224 §5, SHAKEN RFC 8588 §4 and ATIS-1000074 §5.2.3).

Tokens are serialised the way RFC 8225 §9 recommends (keys sorted, no whitespace) so that re-signing the
same call gives byte-identical claims, and the signature is JWS ES256: raw r||s, 32 bytes each.
"""

from __future__ import annotations

import json
import uuid

from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from edge.numbers import canonical_tn
from edge.stir.identity import b64url_encode

# Fixed namespace so origid = uuid5(namespace, customer) is stable across nodes and restarts.
ORIGID_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_DNS, "origid.sip-edge")


def attestation_for(customer_known: bool, number_owned: bool, vetted: bool) -> str:
    """A: known customer, vetted profile, number is theirs. B: the call comes from a known customer but
    we cannot vouch for the number (not theirs, or the profile is not vetted). C: unknown origin (gateway)."""
    if customer_known and number_owned and vetted:
        return "A"
    if customer_known:
        return "B"
    return "C"


def origid_for(customer: str, configured: dict[str, str] | None = None) -> str:
    """Stable origid per customer (RFC 8588 §4: an opaque UUID identifying the origination point)."""
    if configured and customer in configured:
        return configured[customer]
    return str(uuid.uuid5(ORIGID_NAMESPACE, customer))


def _canonical_json(obj: object) -> bytes:
    return json.dumps(obj, separators=(",", ":"), sort_keys=True, ensure_ascii=False).encode("utf-8")


class Signer:
    """Signs SHAKEN PASSporTs with the STI certificate's private key; `x5u` is where that certificate lives."""

    def __init__(self, key_pem: bytes, x5u: str) -> None:
        key = serialization.load_pem_private_key(key_pem, password=None)
        if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
            raise ValueError("STI signing key must be an EC P-256 private key (ES256)")
        self._key = key
        self.x5u = x5u
        self._header_b64 = b64url_encode(
            _canonical_json({"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": x5u})
        )

    def token(self, orig_tn: str, dest_tns: list[str], attest: str, origid: str, iat: int) -> str:
        if attest not in ("A", "B", "C"):
            raise ValueError(f"attestation {attest!r} is not A, B or C")
        claims = {
            "attest": attest,
            "dest": {"tn": [canonical_tn(t) for t in dest_tns]},
            "iat": int(iat),
            "orig": {"tn": canonical_tn(orig_tn)},
            "origid": origid,
        }
        signing_input = f"{self._header_b64}.{b64url_encode(_canonical_json(claims))}"
        r, s = decode_dss_signature(self._key.sign(signing_input.encode("ascii"), ec.ECDSA(hashes.SHA256())))
        return f"{signing_input}.{b64url_encode(r.to_bytes(32, 'big') + s.to_bytes(32, 'big'))}"

    def sign(self, orig_tn: str, dest_tns: list[str], attest: str, origid: str, iat: int) -> str:
        """The Identity header value (RFC 8224 §4.1 full form with info, alg and ppt)."""
        return f"{self.token(orig_tn, dest_tns, attest, origid, iat)};info=<{self.x5u}>;alg=ES256;ppt=shaken"
