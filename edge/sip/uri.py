"""Minimal SIP/SIPS/tel URI handling for routing (RFC 3261 §19.1, RFC 3966): user, host, port, params."""

from __future__ import annotations

from urllib.parse import unquote

import msgspec

#: Characters of a telephone-subscriber user part (RFC 3966 visual separators, '*' and '#').
_PHONE_CHARS = frozenset("+0123456789-.()*#")


class Uri(msgspec.Struct, frozen=True):
    scheme: str  # 'sip' | 'sips' | 'tel'
    user: str
    host: str
    port: int  # 0 when absent
    params: dict[str, str]

    @property
    def transport(self) -> str:
        t = self.params.get("transport", "").lower()
        if t:
            return t
        return "tls" if self.scheme == "sips" else "udp"

    def hostport(self) -> str:
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{host}:{self.port}" if self.port else host


def parse_uri(text: str) -> Uri:
    """Parse a URI (no name-addr); raises ValueError naming the fault."""
    s = text.strip()
    if s.startswith("<") and s.endswith(">"):
        s = s[1:-1]
    scheme, sep, rest = s.partition(":")
    scheme = scheme.lower()
    if not sep or scheme not in ("sip", "sips", "tel"):
        raise ValueError(f"unsupported URI {text!r}: expected sip:, sips: or tel:")
    if scheme == "tel":
        number, _, params = rest.partition(";")
        return Uri("tel", number, "", 0, _params(params))
    rest, _, _headers = rest.partition("?")
    # '@' cannot appear unescaped in userinfo or uri-parameters, so it ends the user part even when
    # the user carries its own parameters ('sip:+1202...;npdi;rn=...@host').
    user, at, hostpart = rest.partition("@")
    if not at:
        hostpart, user = rest, ""
    hostport, _, params = hostpart.partition(";")
    if hostport.startswith("["):
        end = hostport.find("]")
        if end < 0:
            raise ValueError(f"invalid URI {text!r}: unterminated IPv6 reference")
        host = hostport[1:end]
        port_s = hostport[end + 2 :] if hostport[end + 1 : end + 2] == ":" else ""
    else:
        host, _, port_s = hostport.partition(":")
    if not host:
        raise ValueError(f"invalid URI {text!r}: no host")
    try:
        port = int(port_s) if port_s else 0
    except ValueError:
        raise ValueError(f"invalid URI {text!r}: bad port") from None
    if not 0 <= port < 65536:
        raise ValueError(f"invalid URI {text!r}: bad port")
    user = user.split(";", 1)[0]  # user parameters (';phone-context=...') are not part of the number
    return Uri(scheme, user, host.lower(), port, _params(params))


def _params(text: str) -> dict[str, str]:
    out: dict[str, str] = {}
    if not text:
        return out
    for p in text.split(";"):
        k, _, v = p.partition("=")
        k = k.strip().lower()
        if k:
            out[k] = v.strip()
    return out


def uri_user(text: str) -> str:
    """User part of a sip/tel URI, '' when none; cheap (no full parse) for the hot path."""
    s = text.strip()
    colon = s.find(":")
    if colon < 0:
        return ""
    rest = s[colon + 1 :]
    if s[:colon].lower() == "tel":
        return rest.split(";", 1)[0]
    at = rest.rfind("@")
    if at < 0:
        return ""
    user = rest[:at].split(";", 1)[0]
    if "%" in user:
        # Escaped numbers ('%2B1202...') equal their plain form (RFC 3261 §19.1.4); other escapes stay
        # escaped so the user part remains safe to write back into a Request-URI.
        plain = unquote(user)
        if plain and all(c in _PHONE_CHARS for c in plain):
            return plain
    return user
