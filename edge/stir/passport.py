"""PASSporT decoding and ES256 verification (RFC 8225 §4-§6, SHAKEN RFC 8588, div RFC 8946, rcd RFC 9795).

The signature is checked over the `header.payload` bytes exactly as received (RFC 8225 §6: the verifier must
not rebuild the JSON), so unusual whitespace or key order in a carrier's token does not matter.
"""

from __future__ import annotations

import json
from typing import Any

import msgspec
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

from edge.numbers import canonical_tn
from edge.stir.failures import StirFailure
from edge.stir.identity import IdentityHeader, b64url_decode

SUPPORTED_PPT = frozenset({"shaken", "div", "rcd"})
ATTESTATIONS = ("A", "B", "C")
_ES256 = ec.ECDSA(hashes.SHA256())


class Passport(msgspec.Struct, frozen=True):
    """Typed view of a decoded PASSporT; `div_tn` only for ppt=div, `rcd_name` when an rcd `nam` is carried."""

    identity: IdentityHeader
    ppt: str
    x5u: str
    iat: float
    orig_tn: str
    dest_tns: tuple[str, ...]
    attest: str | None = None
    origid: str = ""
    div_tn: str = ""
    rcd_name: str | None = None

    @property
    def signature_b64(self) -> str:
        return self.identity.signature_b64


def _json_object(segment: str, what: str) -> dict[str, Any]:
    raw = b64url_decode(segment)
    try:
        obj = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise StirFailure("bad_json", f"{what} is not JSON: {exc}") from exc
    if not isinstance(obj, dict):
        raise StirFailure("bad_json", f"{what} is not a JSON object")
    return obj


def check_header(identity: IdentityHeader) -> tuple[str, str]:
    """JOSE header checks (RFC 8225 §4, RFC 8224 §4.1): returns (ppt, x5u)."""
    header = _json_object(identity.header_b64, "JOSE header")
    alg = header.get("alg")
    if alg != "ES256":
        raise StirFailure("unsupported_alg", f"alg {alg!r} is not ES256")
    if identity.alg is not None and identity.alg != alg:
        raise StirFailure("alg_mismatch", f"alg parameter {identity.alg!r} differs from header alg {alg!r}")
    if header.get("typ") != "passport":
        raise StirFailure("bad_typ", f"typ {header.get('typ')!r} is not 'passport'")
    ppt = header.get("ppt")
    if not isinstance(ppt, str) or ppt not in SUPPORTED_PPT:
        raise StirFailure("unsupported_ppt", f"ppt {ppt!r} is not one of shaken, div, rcd")
    if identity.ppt is None:
        raise StirFailure("missing_ppt", "Identity header has no ppt parameter")
    if identity.ppt != ppt:
        raise StirFailure("ppt_mismatch", f"ppt parameter {identity.ppt!r} differs from header ppt {ppt!r}")
    x5u = header.get("x5u")
    if not isinstance(x5u, str) or not x5u:
        raise StirFailure("missing_x5u", "JOSE header has no x5u")
    if x5u != identity.info:
        raise StirFailure("x5u_mismatch", f"x5u {x5u!r} differs from info {identity.info!r}")
    return ppt, x5u


def _tn_of(obj: object, code: str, what: str) -> str:
    if not isinstance(obj, dict) or not isinstance(obj.get("tn"), str) or not obj["tn"]:
        raise StirFailure(code, f"{what} must be an object with a 'tn' string")
    return obj["tn"]


def decode(identity: IdentityHeader) -> Passport:
    """Header and claims checks; raises StirFailure with the first problem found."""
    ppt, x5u = check_header(identity)
    claims = _json_object(identity.payload_b64, "PASSporT claims")

    iat = claims.get("iat")
    if isinstance(iat, bool) or not isinstance(iat, (int, float)):
        raise StirFailure("bad_iat", f"iat {iat!r} is not numeric")
    orig_tn = _tn_of(claims.get("orig"), "bad_orig", "orig")
    dest = claims.get("dest")
    tns = dest.get("tn") if isinstance(dest, dict) else None
    if not isinstance(tns, list) or not tns or not all(isinstance(t, str) and t for t in tns):
        raise StirFailure("bad_dest", "dest.tn must be a non-empty array of strings")

    attest: str | None = None
    origid = ""
    div_tn = ""
    if ppt == "shaken":
        attest = claims.get("attest")
        if attest not in ATTESTATIONS:
            raise StirFailure("bad_attest", f"attest {attest!r} is not A, B or C")
        origid = claims.get("origid")
        if not isinstance(origid, str) or not origid:
            raise StirFailure("bad_origid", "origid must be a non-empty string")
    elif ppt == "div":
        div_tn = _tn_of(claims.get("div"), "bad_div", "div")

    rcd_name: str | None = None
    rcd = claims.get("rcd")
    if isinstance(rcd, dict) and isinstance(rcd.get("nam"), str) and rcd["nam"]:
        rcd_name = rcd["nam"]

    return Passport(
        identity=identity,
        ppt=ppt,
        x5u=x5u,
        iat=float(iat),
        orig_tn=orig_tn,
        dest_tns=tuple(tns),
        attest=attest,
        origid=origid,
        div_tn=div_tn,
        rcd_name=rcd_name,
    )


def check_fresh(passport: Passport, now: float, max_age: float) -> None:
    """RFC 8224 §6.2.1 / RFC 8588 §4: iat is authoritative; tokens from the future are stale too."""
    skew = now - passport.iat
    if abs(skew) > max_age:
        direction = "old" if skew > 0 else "in the future"
        raise StirFailure("stale_date", f"iat is {abs(skew):.0f}s {direction} (max {max_age:.0f}s)")


def tn_in(tn: str, tns: tuple[str, ...]) -> bool:
    c = canonical_tn(tn)
    return any(canonical_tn(t) == c for t in tns)


def verify_signature(passport: Passport, public_key: ec.EllipticCurvePublicKey) -> None:
    """ES256 (RFC 7518 §3.4): the JWS carries raw r||s; cryptography wants DER."""
    sig = b64url_decode(passport.identity.signature_b64)
    if len(sig) != 64:
        raise StirFailure("bad_signature", f"ES256 signature is {len(sig)} bytes, expected 64")
    der = encode_dss_signature(int.from_bytes(sig[:32], "big"), int.from_bytes(sig[32:], "big"))
    try:
        public_key.verify(der, passport.identity.signing_input, _ES256)
    except InvalidSignature as exc:
        raise StirFailure("bad_signature", "ES256 signature does not verify with the certificate key") from exc
