"""Lean SIP message model for the per-datagram hot path (RFC 3261 §7, §20; RFC 3581).

sipmessage's full grammar costs 40-110 µs per message, too much for every datagram, so this module
splits the message once into start line, header lines and body, keeps the raw header lines for a
byte-exact re-serialisation, and derives the routing envelope (top Via, branch, Call-ID, tags, CSeq,
Max-Forwards, Route) lazily. Edits (add a Via, pop a Route, rewrite the Request-URI) rebuild only
what changed. sipmessage (the full grammar) is the oracle this parser is tested against
(tests/sip/test_sipmessage_oracle.py).
"""

from __future__ import annotations

import re

from edge.sip.errors import SipParseError

SIP_VERSION = "SIP/2.0"
MAGIC_COOKIE = "z9hG4bK"

#: RFC 3261 §7.3.3 and later RFCs: compact header names.
COMPACT_FORMS = {
    "i": "call-id",
    "m": "contact",
    "e": "content-encoding",
    "l": "content-length",
    "c": "content-type",
    "f": "from",
    "s": "subject",
    "k": "supported",
    "t": "to",
    "v": "via",
    "o": "event",
    "r": "refer-to",
    "b": "referred-by",
    "x": "session-expires",
    "u": "allow-events",
    "y": "identity",
    "a": "accept-contact",
    "j": "reject-contact",
    "d": "request-disposition",
}

#: Canonical capitalisation for headers the edge writes itself.
CANONICAL_NAMES = {
    "via": "Via",
    "call-id": "Call-ID",
    "cseq": "CSeq",
    "from": "From",
    "to": "To",
    "contact": "Contact",
    "content-length": "Content-Length",
    "content-type": "Content-Type",
    "max-forwards": "Max-Forwards",
    "record-route": "Record-Route",
    "route": "Route",
    "www-authenticate": "WWW-Authenticate",
    "p-asserted-identity": "P-Asserted-Identity",
    "identity": "Identity",
}

#: Headers whose values may be comma-separated lists (RFC 3261 §7.3.1); others never split.
LIST_HEADERS = frozenset(
    {
        "via",
        "route",
        "record-route",
        "contact",
        "allow",
        "supported",
        "require",
        "proxy-require",
        "unsupported",
        "accept",
        "accept-encoding",
        "accept-language",
        "p-asserted-identity",
        "diversion",
        "history-info",
        "reason",
    }
)

METHODS = frozenset(
    {
        "INVITE",
        "ACK",
        "BYE",
        "CANCEL",
        "OPTIONS",
        "REGISTER",
        "PRACK",
        "SUBSCRIBE",
        "NOTIFY",
        "PUBLISH",
        "INFO",
        "REFER",
        "MESSAGE",
        "UPDATE",
    }
)


#: sent-protocol LWS sent-by (RFC 3261 §20.42): SLASH = SWS "/" SWS, so spaces and tabs may surround the slashes.
_VIA_PROTO = re.compile(r"[ \t]*([^\s/]+)[ \t]*/[ \t]*([^\s/]+)[ \t]*/[ \t]*([^\s/;]+)[ \t]+(.*)\Z", re.S)

#: RFC 3261 §25.1 token characters other than alphanumerics (for methods).
_TOKEN_MARKS = frozenset("-.!%*_+`'~")


def canonical_name(lname: str) -> str:
    name = CANONICAL_NAMES.get(lname)
    if name is not None:
        return name
    return "-".join(part.capitalize() for part in lname.split("-"))


def split_top(value: str, sep: str) -> list[str]:
    """Split at `sep` outside quoted strings (with backslash escapes) and <...> (RFC 3261 §7.3.1, §25.1)."""
    parts: list[str] = []
    quoted = False
    escaped = False
    depth = 0
    start = 0
    for i, ch in enumerate(value):
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
            continue
        if ch == '"':
            quoted = True
        elif ch == "<":
            depth += 1
        elif ch == ">":
            depth = max(0, depth - 1)
        elif ch == sep and depth == 0:
            parts.append(value[start:i])
            start = i + 1
    parts.append(value[start:])
    return parts


def split_list(value: str) -> list[str]:
    """The values of a comma-separated header, stripped, empties dropped (RFC 3261 §7.3.1)."""
    if "," not in value:
        return [value.strip()]
    return [p for p in (part.strip() for part in split_top(value, ",")) if p]


def param(value: str, name: str) -> str | None:
    """Value of a ;name=value parameter in a header value (after any <...> part); '' for a flag."""
    gt = value.rfind(">")
    tail = value[gt + 1 :] if gt >= 0 else value
    lname = name.lower()
    for piece in tail.split(";")[1:]:
        key, sep, val = piece.partition("=")
        if key.strip().lower() == lname:
            return val.strip().strip('"') if sep else ""
    return None


def _ascii_uint(text: str, fault: str, max_digits: int = 10) -> int:
    """A decimal number written in ASCII digits only (int() would also take '١٢', '+5', '1_0' or ' 5').

    Two parsers that read a number differently (this one and a framer or the PBX) could cut or route a
    message differently; and int() refuses more than 4300 digits with a ValueError of its own.
    """
    text = text.strip()
    if not text or len(text) > max_digits or not text.isascii() or not text.isdigit():
        raise SipParseError(fault)
    return int(text)


#: Headers holding name-addr / addr-spec values that the proxy reads for identity, routing or rewriting.
_IDENTIFIERS = frozenset(("via", "call-id", "cseq"))
_NAME_ADDR_CHECKED = frozenset(("from", "to", "p-asserted-identity", "contact"))


def check_name_addr(value: str) -> bool:
    """Is this a well-formed name-addr or addr-spec as far as framing goes (RFC 3261 §20.10, §25.1)?

    Quotes close, at most one <...> pair outside the quoted display name, no quote in a URI. An
    unterminated display name (RFC 4475 §3.1.2.6) fails, so it is refused with 400 rather than
    rewritten into something the PBX reads differently. Linear in the value's length.
    """
    if '"' not in value:
        lt = value.find("<")
        if lt < 0:
            return ">" not in value
        gt = value.find(">", lt)
        return gt > lt and value.count("<") == 1 and value.count(">") == 1
    quoted = escaped = False
    lt = gt = -1
    for i, ch in enumerate(value):
        if quoted:
            if escaped:
                escaped = False
            elif ch == "\\":
                escaped = True
            elif ch == '"':
                quoted = False
            continue
        if ch == '"':
            if lt >= 0 and gt < 0:
                return False  # a quote inside the URI
            quoted = True
        elif ch == "<":
            if lt >= 0:
                return False
            lt = i
        elif ch == ">":
            if lt < 0 or gt >= 0:
                return False
            gt = i
    if quoted or (lt >= 0) != (gt >= 0):
        return False
    if lt < 0:
        return '"' not in value.split(";", 1)[0]  # an addr-spec has no display name to quote
    display = value[:lt].strip()
    return '"' not in display or (len(display) >= 2 and display[0] == '"' and display[-1] == '"')


def addr_start(value: str) -> int:
    """Index of the '<' that opens a name-addr's URI (-1 for an addr-spec): a quoted display name may hold
    '<' itself (RFC 3261 §25.1 quoted-string, with backslash escapes), so it is skipped first."""
    if '"' not in value:
        return value.find("<")
    i = value.find('"')
    lt = value.find("<")
    if 0 <= lt < i:
        return lt
    n = len(value)
    i += 1
    while i < n:
        ch = value[i]
        if ch == "\\":
            i += 2
            continue
        if ch == '"':
            return value.find("<", i + 1)
        i += 1
    return value.find("<")  # unterminated quote: read it as before, leniently


def uri_of(value: str) -> str:
    """The URI inside a name-addr (<...>) or an addr-spec without header parameters."""
    lt = addr_start(value)
    if lt >= 0:
        gt = value.find(">", lt)
        return value[lt + 1 : gt if gt > 0 else len(value)].strip()
    return value.split(";", 1)[0].strip()


class Via:
    """One Via value: `SIP/2.0/UDP host:port;branch=...;rport` (RFC 3261 §20.42, RFC 3581)."""

    __slots__ = ("transport", "host", "port", "params", "raw")

    def __init__(self, raw: str) -> None:
        self.raw = raw
        mp = _VIA_PROTO.match(raw)
        if mp is None:
            proto, _, rest = raw.strip().partition(" ")
            if not proto or not rest.strip():
                raise SipParseError("Bad Via header")
            raise SipParseError("Bad Via protocol")
        if mp.group(1).upper() != "SIP":
            raise SipParseError("Bad Via protocol")
        rest = mp.group(4).strip()
        if not rest:
            raise SipParseError("Bad Via header")
        self.transport = mp.group(3).upper()
        sent_by, *params = rest.split(";")
        sent_by = sent_by.strip()
        if sent_by.startswith("["):
            end = sent_by.find("]")
            host = sent_by[: end + 1]
            port_s = sent_by[end + 2 :] if sent_by[end + 1 : end + 2] == ":" else ""
        else:
            host, _, port_s = sent_by.partition(":")
        if not host:
            raise SipParseError("Bad Via sent-by")
        self.host = host.strip()
        self.port = _ascii_uint(port_s, "Bad Via port", 5) if port_s else 0
        if not 0 <= self.port <= 65535:
            raise SipParseError("Bad Via port")
        pd: dict[str, str] = {}
        for p in params:
            k, sep, v = p.partition("=")
            k = k.strip().lower()
            if k:
                pd[k] = v.strip() if sep else ""
        self.params = pd

    @property
    def branch(self) -> str:
        return self.params.get("branch", "")

    def response_address(self) -> tuple[str, int]:
        """Where responses go (RFC 3261 §18.2.2 with RFC 3581 rport/received)."""
        host = self.params.get("received") or self.host
        rport = self.params.get("rport")
        if rport and rport.isascii() and rport.isdigit() and len(rport) <= 5:
            return host, int(rport)
        return host, self.port or (5061 if self.transport == "TLS" else 5060)


class SipMessage:
    """A parsed SIP request or response.

    `headers` is a list of `[lname, name_as_received, value, raw_line]`; raw_line is None for
    headers the edge added or changed. `to_bytes()` returns the received bytes when nothing changed.
    """

    __slots__ = (
        "method",
        "uri",
        "status",
        "reason",
        "headers",
        "body",
        "_raw",
        "_start",
        "_dirty",
        "_vias",
        "_cache",
    )

    def __init__(self) -> None:
        self.method = ""
        self.uri = ""
        self.status = 0
        self.reason = ""
        self.headers: list[list] = []
        self.body = b""
        self._raw: bytes | None = None
        self._start = ""
        self._dirty = False
        self._vias: list[Via] | None = None
        self._cache: dict[str, object] = {}

    # -- construction -------------------------------------------------------------------
    @classmethod
    def request(cls, method: str, uri: str, headers: list[tuple[str, str]], body: bytes = b"") -> SipMessage:
        m = cls._built(f"{method} {uri} {SIP_VERSION}", headers, body)
        m.method = method
        m.uri = uri
        return m

    @classmethod
    def response(cls, status: int, reason: str, headers: list[tuple[str, str]], body: bytes = b"") -> SipMessage:
        m = cls._built(f"{SIP_VERSION} {status} {reason}", headers, body)
        m.status = status
        m.reason = reason
        return m

    @classmethod
    def _built(cls, start: str, headers: list[tuple[str, str]], body: bytes) -> SipMessage:
        m = cls()
        m._start = start
        m.headers = [[n.lower(), n, v, None] for n, v in headers]
        m.body = body
        m._dirty = True
        return m

    @property
    def is_request(self) -> bool:
        return self.status == 0

    # -- header access ---------------------------------------------------------------------
    def get(self, lname: str) -> str | None:
        for h in self.headers:
            if h[0] == lname:
                return h[2]
        return None

    def get_all(self, lname: str) -> list[str]:
        """Every value of a header, list headers split at top-level commas."""
        out: list[str] = []
        split = lname in LIST_HEADERS
        for h in self.headers:
            if h[0] == lname:
                if split:
                    out.extend(split_list(h[2]))
                else:
                    out.append(h[2])
        return out

    def count(self, lname: str) -> int:
        return sum(1 for h in self.headers if h[0] == lname)

    # -- envelope ---------------------------------------------------------------------------
    @property
    def vias(self) -> list[Via]:
        if self._vias is None:
            self._vias = [Via(v) for v in self.get_all("via")]
        return self._vias

    @property
    def top_via(self) -> Via:
        """The first Via value only (the hot path never needs the others parsed)."""
        if self._vias is not None:
            if not self._vias:
                raise SipParseError("Missing Via")
            return self._vias[0]
        top = self._cache.get("top_via")
        if top is None:
            values = split_list(self.get("via") or "")
            if not values or not values[0]:
                raise SipParseError("Missing Via")
            top = Via(values[0])
            self._cache["top_via"] = top
        return top  # type: ignore[return-value]

    def via_count(self) -> int:
        """Number of Via values (commas counted; an upper bound, cheap enough for every message)."""
        return sum(1 + h[2].count(",") for h in self.headers if h[0] == "via")

    @property
    def branch(self) -> str:
        return self.top_via.branch

    @property
    def call_id(self) -> str:
        v = self.get("call-id")
        if not v:
            raise SipParseError("Missing Call-ID")
        return v

    def _cseq(self) -> tuple[int, str]:
        c = self._cache.get("cseq")
        if c is None:
            v = self.get("cseq")
            if not v:
                raise SipParseError("Missing CSeq")
            num, _, meth = v.strip().partition(" ")
            n = _ascii_uint(num, "Bad CSeq")
            meth = meth.strip()
            if not meth or n < 0 or n >= 2**31:
                raise SipParseError("Bad CSeq")
            c = (n, meth)
            self._cache["cseq"] = c
        return c  # type: ignore[return-value]

    @property
    def cseq_num(self) -> int:
        return self._cseq()[0]

    @property
    def cseq_method(self) -> str:
        return self._cseq()[1]

    @property
    def from_tag(self) -> str:
        v = self.get("from")
        if v is None:
            raise SipParseError("Missing From")
        return param(v, "tag") or ""

    @property
    def to_tag(self) -> str:
        v = self.get("to")
        if v is None:
            raise SipParseError("Missing To")
        return param(v, "tag") or ""

    @property
    def max_forwards(self) -> int | None:
        v = self.get("max-forwards")
        if v is None:
            return None
        n = _ascii_uint(v, "Bad Max-Forwards")
        if not 0 <= n <= 255:
            raise SipParseError("Bad Max-Forwards")
        return n

    @property
    def routes(self) -> list[str]:
        return self.get_all("route")

    # -- edits ------------------------------------------------------------------------------
    def _touch(self) -> None:
        self._dirty = True
        self._vias = None
        self._cache.clear()

    def set_uri(self, uri: str) -> None:
        self.uri = uri
        self._start = f"{self.method} {uri} {SIP_VERSION}"
        self._dirty = True

    def prepend(self, lname: str, value: str) -> None:
        """Insert a header above every other header of that name (Via, Record-Route)."""
        for i, h in enumerate(self.headers):
            if h[0] == lname:
                self.headers.insert(i, [lname, canonical_name(lname), value, None])
                break
        else:
            self.headers.insert(0 if lname == "via" else len(self.headers), [lname, canonical_name(lname), value, None])
        self._touch()

    def append(self, lname: str, value: str) -> None:
        self.headers.append([lname, canonical_name(lname), value, None])
        self._touch()

    def set(self, lname: str, value: str) -> None:
        """Replace the first header of that name (or append it) and drop any others."""
        found = False
        out = []
        for h in self.headers:
            if h[0] == lname:
                if found:
                    continue
                found = True
                out.append([lname, h[1], value, None])
            else:
                out.append(h)
        if not found:
            out.append([lname, canonical_name(lname), value, None])
        self.headers = out
        self._touch()

    def remove(self, lname: str) -> None:
        self.headers = [h for h in self.headers if h[0] != lname]
        self._touch()

    def pop_first_value(self, lname: str) -> str | None:
        """Remove the first value of a list header (top Via, top Route), keeping the rest."""
        for i, h in enumerate(self.headers):
            if h[0] == lname:
                values = split_list(h[2])
                first = values[0] if values else None
                if len(values) <= 1:
                    del self.headers[i]
                else:
                    self.headers[i] = [lname, h[1], ", ".join(values[1:]), None]
                self._touch()
                return first
        return None

    def bytes_without_top_via(self) -> bytes:
        """The message as received minus its top Via value: how a proxy relays a response upstream
        (RFC 3261 §16.7 step 3). Cuts the received bytes when the top Via is a line of its own."""
        raw = self._raw
        if raw is not None and not self._dirty:
            for h in self.headers:
                if h[0] == "via":
                    line = h[3]
                    if line is not None and "," not in h[2] and "\n" not in line:
                        needle = b"\n" + line.encode("utf-8", "surrogateescape") + b"\r\n"
                        i = raw.find(needle)
                        if i >= 0:
                            return raw[: i + 1] + raw[i + len(needle) :]
                    break
        out = self.copy()
        out.pop_first_value("via")
        return out.to_bytes()

    def replace_headers(self, headers: list[list]) -> None:
        """Install a rebuilt header list (entries in the `[lname, name, value, raw_line]` form)."""
        self.headers = headers
        self._touch()

    def set_body(self, body: bytes, content_type: str | None = None) -> None:
        self.body = body
        if content_type is not None:
            self.set("content-type", content_type)
        self.set("content-length", str(len(body)))

    # -- serialisation ---------------------------------------------------------------------
    def to_bytes(self) -> bytes:
        if not self._dirty and self._raw is not None:
            return self._raw
        lines = [self._start]
        has_len = False
        for h in self.headers:
            if h[0] == "content-length":
                has_len = True
                if h[3] is None or h[2].strip() != str(len(self.body)):
                    lines.append(f"{h[1]}: {len(self.body)}")
                    continue
            lines.append(h[3] if h[3] is not None else f"{h[1]}: {h[2]}")
        if not has_len:
            lines.append(f"Content-Length: {len(self.body)}")
        lines.append("")
        lines.append("")
        return "\r\n".join(lines).encode("utf-8", "surrogateescape") + self.body

    def copy(self) -> SipMessage:
        m = SipMessage()
        m.method = self.method
        m.uri = self.uri
        m.status = self.status
        m.reason = self.reason
        # Header entries are never mutated in place after parsing (edits replace them), so the
        # copy shares them: copying is one list allocation, not one per header.
        m.headers = list(self.headers)
        m.body = self.body
        m._raw = self._raw
        m._start = self._start
        m._dirty = self._dirty
        m._vias = self._vias  # parsed values are immutable: share them until the copy is edited
        if self._cache:
            m._cache = dict(self._cache)
        return m

    def __repr__(self) -> str:
        return f"<SipMessage {self._start!r}>"


#: Headers that may appear once.
_SINGLE = frozenset({"call-id", "cseq", "from", "to", "content-length"})


def _split_head(data: bytes) -> tuple[bytes, bytes]:
    idx = data.find(b"\r\n\r\n")
    if idx >= 0:
        return data[:idx], data[idx + 4 :]
    idx = data.find(b"\n\n")
    if idx >= 0:
        return data[:idx], data[idx + 2 :]
    # No blank line: a datagram may still be a complete header block (RFC 3261 §18.3 requires it,
    # but a message that ends right after the last header has no body and is accepted).
    return data.rstrip(b"\r\n"), b""


def parse(data: bytes, *, max_headers: int = 100, max_header_length: int = 4096) -> SipMessage:
    """Parse one complete SIP message (a UDP datagram, or a TCP frame cut by Content-Length).

    Raises SipParseError whose text names the fault; it is the reason phrase of the 400 the caller sends.
    """
    # Leading CRLFs before the start line are ignored (RFC 3261 §7.5); they stay in the raw bytes.
    skip = 0
    while skip < len(data) and data[skip] in (13, 10):
        skip += 1
    head, body = _split_head(data[skip:] if skip else data)
    escaped = False
    try:
        text = head.decode("utf-8")
    except UnicodeDecodeError:
        text = head.decode("utf-8", "surrogateescape")  # a Latin-1 display name still passes through
        escaped = True
    lines = text.split("\r\n") if "\r\n" in text else text.split("\n")
    if not lines[0]:
        raise SipParseError("Empty message")
    m = SipMessage()
    start = lines[0]
    m._start = start
    if start.startswith("SIP/"):
        parts = start.split(" ", 2)
        if len(parts) < 2 or parts[0] != SIP_VERSION:
            raise SipParseError("Bad status line")
        status = _ascii_uint(parts[1], "Bad status code", 3)
        if not 100 <= status <= 699 or len(parts[1]) != 3:
            raise SipParseError("Bad status code")
        m.status = status
        m.reason = parts[2] if len(parts) > 2 else ""
    else:
        parts = start.split(" ")
        if len(parts) != 3:
            raise SipParseError("Bad request line")
        method, uri, version = parts
        if version != SIP_VERSION:
            raise SipParseError("Version Not Supported" if version.startswith("SIP/") else "Bad request line")
        if not method or not all(c.isalnum() or c in _TOKEN_MARKS for c in method):
            raise SipParseError("Bad method")
        if ":" not in uri or uri[0] == "<":
            raise SipParseError("Bad Request-URI")
        m.method = method
        m.uri = uri
    headers = m.headers
    last: list | None = None
    seen: set[str] = set()
    duplicate = False
    for line in lines[1:]:
        if not line:
            continue
        if len(line) > max_header_length:
            raise SipParseError("Header too long")
        c0 = line[0]
        if c0 == " " or c0 == "\t":
            # Folded continuation line (RFC 3261 §7.3.1): joined with a single space.
            if last is None:
                raise SipParseError("Bad header folding")
            last[2] = f"{last[2]} {line.strip()}".strip()
            last[3] = f"{last[3]}\r\n{line}"
            continue
        name, sep, value = line.partition(":")
        if not sep:
            raise SipParseError("Bad header line")
        name = name.rstrip()
        if not name or " " in name or "\t" in name:
            raise SipParseError("Bad header name")
        lname = name.lower()
        if len(lname) == 1:
            lname = COMPACT_FORMS.get(lname, lname)
        last = [lname, name, value.strip(), line]
        headers.append(last)
        if lname in _SINGLE:
            if lname in seen:
                duplicate = True
        seen.add(lname)
        if len(headers) > max_headers:
            raise SipParseError("Too many headers")
    # Mandatory headers (RFC 3261 §8.1.1): checked here so the hot path can trust them.
    for req in ("via", "call-id", "cseq", "from", "to"):
        if req not in seen:
            raise SipParseError(f"Missing {canonical_name(req)}")
    if duplicate:
        # One Call-ID/CSeq/From/To; one Content-Length, or two parsers could cut a stream differently.
        raise SipParseError("Duplicate header")
    if not m.get("call-id"):
        raise SipParseError("Missing Call-ID")  # an empty value is no identity for a transaction
    if escaped:
        # Transaction and dialog identifiers are keys, hashed and compared: they must be text (UTF-8).
        for h in headers:
            if h[0] in _IDENTIFIERS and any("\udc80" <= ch <= "\udcff" for ch in h[2]):
                raise SipParseError(f"Bad {canonical_name(h[0])} header")
    for h in headers:
        if h[0] in _NAME_ADDR_CHECKED:
            values = split_list(h[2])
            # A line of only commas has no value at all; From and To hold exactly one (a comma in a URI
            # needs <...>, RFC 3261 §20); each value must be well-formed.
            if not values or (len(values) > 1 and h[0] not in LIST_HEADERS) or not all(map(check_name_addr, values)):
                raise SipParseError(f"Bad {canonical_name(h[0])} header")
    _, cseq_method = m._cseq()
    if m.status == 0 and cseq_method != m.method:
        raise SipParseError("CSeq method mismatch")
    clen = m.get("content-length")
    if clen is not None:
        n = _ascii_uint(clen, "Bad Content-Length")
        if n < 0:
            raise SipParseError("Bad Content-Length")
        if n > len(body):
            raise SipParseError("Content-Length exceeds body")
        if n < len(body):
            body = body[:n]
            m.body = body
            m._raw = data[: skip + len(head) + _sep_len(data, skip + len(head)) + n]
        else:
            m.body = body
            m._raw = data
    else:
        m.body = body
        m._raw = data
    return m


def _sep_len(data: bytes, head_len: int) -> int:
    return 4 if data[head_len : head_len + 4] == b"\r\n\r\n" else 2
