"""Hand-built PASSporTs for failure-class tests: any header, any claims, any JSON bytes."""

from __future__ import annotations

import json

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

from edge.stir.identity import b64url_encode
from tests.stir.pki import CALLED, CALLER, NOW, X5U


def header(**over: object) -> dict:
    h = {"alg": "ES256", "ppt": "shaken", "typ": "passport", "x5u": X5U}
    h.update(over)
    return {k: v for k, v in h.items() if v is not None}


def claims(**over: object) -> dict:
    c = {
        "attest": "A",
        "dest": {"tn": [CALLED]},
        "iat": int(NOW),
        "orig": {"tn": CALLER},
        "origid": "123e4567-e89b-12d3-a456-426614174000",
    }
    c.update(over)
    return {k: v for k, v in c.items() if v is not None}


def es256(key: ec.EllipticCurvePrivateKey, signing_input: bytes) -> str:
    r, s = decode_dss_signature(key.sign(signing_input, ec.ECDSA(hashes.SHA256())))
    return b64url_encode(r.to_bytes(32, "big") + s.to_bytes(32, "big"))


def token(key: ec.EllipticCurvePrivateKey, hdr: dict | bytes | None = None, cl: dict | bytes | None = None) -> str:
    hb = hdr if isinstance(hdr, bytes) else json.dumps(hdr or header()).encode()
    cb = cl if isinstance(cl, bytes) else json.dumps(cl or claims()).encode()
    si = f"{b64url_encode(hb)}.{b64url_encode(cb)}"
    return f"{si}.{es256(key, si.encode())}"


def identity(
    key: ec.EllipticCurvePrivateKey,
    hdr: dict | bytes | None = None,
    cl: dict | bytes | None = None,
    params: str | None = None,
) -> str:
    x5u = X5U
    if isinstance(hdr, dict) and isinstance(hdr.get("x5u"), str):
        x5u = hdr["x5u"]
    ppt = hdr.get("ppt", "shaken") if isinstance(hdr, dict) else "shaken"
    p = params if params is not None else f";info=<{x5u}>;alg=ES256;ppt={ppt}"
    return token(key, hdr, cl) + p
