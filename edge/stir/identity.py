"""Identity header parsing (RFC 8224 §4.1): full-form PASSporT plus `info`, `alg` and `ppt` parameters.

Only the full form (header.payload.signature) is accepted: SHAKEN (RFC 8588 §6) always carries it, and the
compact form (`..signature`) would make the verifier rebuild the token from SIP headers, which is exactly the
re-serialisation this service refuses to trust.
"""

from __future__ import annotations

import base64
import binascii
import re

import msgspec

from edge.sip.message import split_list, split_top
from edge.stir.failures import StirFailure

_B64URL = re.compile(r"^[A-Za-z0-9_-]*$")


class IdentityHeader(msgspec.Struct, frozen=True):
    """One parsed Identity header value; `signing_input` is the received `header.payload` bytes."""

    raw: str
    header_b64: str
    payload_b64: str
    signature_b64: str
    info: str
    alg: str | None
    ppt: str | None
    params: tuple[tuple[str, str], ...] = ()

    @property
    def signing_input(self) -> bytes:
        return f"{self.header_b64}.{self.payload_b64}".encode("ascii")


def b64url_decode(segment: str) -> bytes:
    """base64url without padding (RFC 7515 §2); refuses padding and characters outside the alphabet."""
    if not _B64URL.match(segment):
        raise StirFailure("bad_base64", "segment is not base64url")
    try:
        return base64.urlsafe_b64decode(segment + "=" * (-len(segment) % 4))
    except (binascii.Error, ValueError) as exc:
        raise StirFailure("bad_base64", f"segment does not decode: {exc}") from exc


def b64url_encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def split_identity_values(header_value: str) -> list[str]:
    """Split a comma-joined Identity header into values; commas inside <...> or quotes are not separators."""
    return split_list(header_value) if header_value.strip() else []


def parse_identity(value: str) -> IdentityHeader:
    """Parse one Identity header value or raise StirFailure (layer 'parse')."""
    value = value.strip()
    parts = split_top(value, ";")
    token = parts[0].strip()
    segments = token.split(".")
    if len(segments) != 3:
        raise StirFailure("malformed", f"PASSporT has {len(segments)} segments, expected 3")
    header_b64, payload_b64, signature_b64 = segments
    if not header_b64 and not payload_b64:
        raise StirFailure("compact_form", "compact form PASSporT refused, full form required")
    if not header_b64 or not payload_b64 or not signature_b64:
        raise StirFailure("malformed", "empty PASSporT segment")
    for seg in segments:
        if not _B64URL.match(seg):
            raise StirFailure("bad_base64", "PASSporT segment is not base64url")

    params: list[tuple[str, str]] = []
    info: str | None = None
    alg: str | None = None
    ppt: str | None = None
    for raw_param in parts[1:]:
        p = raw_param.strip()
        if not p:
            raise StirFailure("malformed", "empty Identity parameter")
        name, sep, val = p.partition("=")
        name = name.strip().lower()
        val = val.strip()
        if not sep:
            params.append((name, ""))
            continue
        if name == "info":
            if not (val.startswith("<") and val.endswith(">")) or len(val) < 3:
                raise StirFailure("bad_info", "info parameter must be <URI>")
            uri = val[1:-1].strip()
            if ":" not in uri or any(c.isspace() for c in uri):
                raise StirFailure("bad_info", f"info parameter is not an absolute URI: {uri!r}")
            info = uri
        elif name == "alg":
            alg = val.strip('"')
        elif name == "ppt":
            ppt = val.strip('"')
        params.append((name, val))
    if info is None:
        raise StirFailure("missing_info", "Identity header has no info=<URI> parameter")
    return IdentityHeader(
        raw=value,
        header_b64=header_b64,
        payload_b64=payload_b64,
        signature_b64=signature_b64,
        info=info,
        alg=alg,
        ppt=ppt,
        params=tuple(params),
    )
