"""SDP parsing and offer/answer for plain RTP/AVP audio (RFC 4566, RFC 3264, RFC 4733 §7).

Hand-written rather than `aiortc.sdp`: aiortc's parser targets WebRTC (ICE, DTLS, bundle),
has no size caps, and raises bare `assert`/`int()` errors on input it does not expect
(e.g. payload types 72-76, `m=image ... udptl t38`). An INVITE body comes from the
network, so this parser caps every dimension and reports a reason instead of crashing.
"""

from __future__ import annotations

import enum
import ipaddress

import msgspec

from edge.media.codecs import Codec

MAX_SDP_BYTES = 16384
MAX_LINES = 512
MAX_LINE_LENGTH = 1024
MAX_MEDIA = 16
MAX_FORMATS = 64
MAX_ATTRIBUTES = 128
PTIME_MS = 20
DEFAULT_TELEPHONE_EVENT_PT = 101
RTP_AVP = "RTP/AVP"


class SdpError(ValueError):
    """Raised by `parse` with a human-readable reason (becomes the 488 Warning text)."""


class Direction(enum.Enum):
    SENDRECV = "sendrecv"
    SENDONLY = "sendonly"
    RECVONLY = "recvonly"
    INACTIVE = "inactive"

    def reversed(self) -> Direction:
        """The direction an answerer states for this offered direction (RFC 3264 §6.1)."""
        return _REVERSED[self]


_REVERSED = {
    Direction.SENDRECV: Direction.SENDRECV,
    Direction.SENDONLY: Direction.RECVONLY,
    Direction.RECVONLY: Direction.SENDONLY,
    Direction.INACTIVE: Direction.INACTIVE,
}


class RtpMap(msgspec.Struct, frozen=True):
    payload_type: int
    encoding: str
    clock_rate: int
    channels: int = 1


class MediaDescription(msgspec.Struct, frozen=True):
    kind: str
    port: int
    proto: str
    formats: tuple[str, ...]
    connection: str | None = None
    rtpmaps: dict[int, RtpMap] = {}
    fmtp: dict[int, str] = {}
    ptime: int | None = None
    direction: Direction | None = None
    attributes: tuple[tuple[str, str | None], ...] = ()


class SessionDescription(msgspec.Struct, frozen=True):
    origin: str
    name: str
    connection: str | None
    media: tuple[MediaDescription, ...]
    direction: Direction | None = None
    attributes: tuple[tuple[str, str | None], ...] = ()

    def media_connection(self, media: MediaDescription) -> str | None:
        """Media-level c= overrides session-level c= (RFC 4566 §5.7)."""
        return media.connection or self.connection

    def media_direction(self, media: MediaDescription) -> Direction:
        return media.direction or self.direction or Direction.SENDRECV


class NegotiatedMedia(msgspec.Struct, frozen=True):
    """What both ends agreed for the one audio stream the edge serves (direction is the edge's own)."""

    codec: Codec
    telephone_event_pt: int | None
    remote_ip: str
    remote_port: int
    direction: Direction
    ptime: int = PTIME_MS
    media_index: int = 0


class Answer(msgspec.Struct, frozen=True):
    sdp: str
    media: NegotiatedMedia


class Refusal(msgspec.Struct, frozen=True):
    """Offer the edge cannot serve: answer the INVITE with `status` and `reason` in a Warning."""

    reason: str
    status: int = 488


class Offer(msgspec.Struct, frozen=True):
    """An offer the edge sent (delayed-offer 200/183, or the B-leg INVITE), kept to read the answer."""

    sdp: str
    codecs: tuple[Codec, ...]
    telephone_event_pt: int | None


def _connection_address(value: str) -> str:
    parts = value.split()
    if len(parts) != 3 or parts[0] != "IN" or parts[1] not in ("IP4", "IP6"):
        raise SdpError(f"bad c= line: {value[:64]!r}")
    host = parts[2].split("/", 1)[0]
    try:
        ipaddress.ip_address(host)
    except ValueError:
        # RFC 4566 allows an FQDN; the edge will not resolve names from untrusted bodies.
        raise SdpError(f"c= address is not an IP literal: {host[:64]!r}") from None
    return host


def _attribute(value: str) -> tuple[str, str | None]:
    name, sep, rest = value.partition(":")
    return name.strip(), (rest.strip() if sep else None)


def _int(text: str, what: str, low: int, high: int) -> int:
    if not (text.isascii() and text.isdigit()) or len(text) > 10:
        raise SdpError(f"bad {what}: {text[:32]!r}")
    number = int(text)
    if not low <= number <= high:
        raise SdpError(f"{what} out of range: {number}")
    return number


class _MediaBuilder:
    __slots__ = ("kind", "port", "proto", "formats", "connection", "rtpmaps", "fmtp", "ptime", "direction", "attributes")

    def __init__(self, line: str) -> None:
        parts = line.split()
        if len(parts) < 4:
            raise SdpError(f"bad m= line: {line[:64]!r}")
        self.kind = parts[0]
        self.port = _int(parts[1].split("/", 1)[0], "m= port", 0, 65535)
        self.proto = parts[2]
        if len(parts) - 3 > MAX_FORMATS:
            raise SdpError(f"too many formats in m= line (max {MAX_FORMATS})")
        self.formats = tuple(parts[3:])
        self.connection: str | None = None
        self.rtpmaps: dict[int, RtpMap] = {}
        self.fmtp: dict[int, str] = {}
        self.ptime: int | None = None
        self.direction: Direction | None = None
        self.attributes: list[tuple[str, str | None]] = []

    def add_attribute(self, name: str, value: str | None) -> None:
        if len(self.attributes) >= MAX_ATTRIBUTES:
            raise SdpError(f"too many attributes in one m= section (max {MAX_ATTRIBUTES})")
        self.attributes.append((name, value))
        if name == "rtpmap" and value:
            pt_text, _, codec = value.partition(" ")
            pt = _int(pt_text, "rtpmap payload type", 0, 127)
            fields = codec.strip().split("/")
            if len(fields) < 2:
                raise SdpError(f"bad rtpmap: {value[:64]!r}")
            channels = _int(fields[2], "rtpmap channels", 1, 64) if len(fields) > 2 and fields[2] else 1
            self.rtpmaps[pt] = RtpMap(pt, fields[0], _int(fields[1], "rtpmap clock rate", 1, 10_000_000), channels)
        elif name == "fmtp" and value:
            pt_text, _, params = value.partition(" ")
            if pt_text.isascii() and pt_text.isdigit() and len(pt_text) <= 3:
                self.fmtp[int(pt_text)] = params.strip()
        elif name == "ptime" and value:
            self.ptime = _int(value.split(".", 1)[0], "ptime", 1, 1000)
        elif name in _DIRECTIONS:
            self.direction = Direction(name)

    def build(self) -> MediaDescription:
        return MediaDescription(
            kind=self.kind,
            port=self.port,
            proto=self.proto,
            formats=self.formats,
            connection=self.connection,
            rtpmaps=self.rtpmaps,
            fmtp=self.fmtp,
            ptime=self.ptime,
            direction=self.direction,
            attributes=tuple(self.attributes),
        )


_DIRECTIONS = frozenset(d.value for d in Direction)


def parse(body: str | bytes) -> SessionDescription:
    """Parse an SDP body; raise SdpError with a reason on anything malformed or oversized."""
    if isinstance(body, bytes):
        if len(body) > MAX_SDP_BYTES:
            raise SdpError(f"SDP larger than {MAX_SDP_BYTES} bytes")
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            raise SdpError("SDP is not UTF-8") from None
    if len(body) > MAX_SDP_BYTES:
        raise SdpError(f"SDP larger than {MAX_SDP_BYTES} bytes")
    lines = body.replace("\r\n", "\n").split("\n")
    if len(lines) > MAX_LINES:
        raise SdpError(f"SDP has more than {MAX_LINES} lines")
    origin = name = None
    version_seen = False
    connection: str | None = None
    direction: Direction | None = None
    session_attrs: list[tuple[str, str | None]] = []
    media: list[_MediaBuilder] = []
    for raw in lines:
        line = raw.rstrip("\r")
        if not line:
            continue
        if len(line) > MAX_LINE_LENGTH:
            raise SdpError(f"SDP line longer than {MAX_LINE_LENGTH} characters")
        if len(line) < 2 or line[1] != "=" or not line[0].isalpha():
            raise SdpError(f"not an SDP line: {line[:64]!r}")
        key, value = line[0], line[2:]
        if not version_seen:
            if key != "v" or value.strip() != "0":
                raise SdpError("SDP must start with v=0")
            version_seen = True
            continue
        current = media[-1] if media else None
        if key == "m":
            if len(media) >= MAX_MEDIA:
                raise SdpError(f"too many m= lines (max {MAX_MEDIA})")
            media.append(_MediaBuilder(value))
        elif key == "c":
            address = _connection_address(value)
            if current is None:
                connection = address
            else:
                current.connection = address
        elif key == "a":
            attr_name, attr_value = _attribute(value)
            if current is not None:
                current.add_attribute(attr_name, attr_value)
            else:
                if len(session_attrs) >= MAX_ATTRIBUTES:
                    raise SdpError(f"too many session attributes (max {MAX_ATTRIBUTES})")
                session_attrs.append((attr_name, attr_value))
                if attr_name in _DIRECTIONS:
                    direction = Direction(attr_name)
        elif key == "o" and current is None:
            origin = value
        elif key == "s" and current is None:
            name = value
    if not version_seen:
        raise SdpError("empty SDP")
    if origin is None:
        raise SdpError("SDP has no o= line")
    return SessionDescription(
        origin=origin,
        name=name if name is not None else "-",
        connection=connection,
        media=tuple(m.build() for m in media),
        direction=direction,
        attributes=tuple(session_attrs),
    )


def is_fax(description: SessionDescription) -> bool:
    """True when the offer is T.38 fax (m=image udptl t38, or T38 attributes on any stream)."""
    for media in description.media:
        if media.kind == "image" and media.port != 0 and "t38" in (f.lower() for f in media.formats):
            return True
        if any(name.lower().startswith("t38") or name.lower() == "fax" for name, _ in media.attributes):
            return True
    return any(name.lower() == "fax" for name, _ in description.attributes)


def _codec_for(media: MediaDescription, fmt: str, allowed: tuple[Codec, ...]) -> Codec | None:
    if not (fmt.isascii() and fmt.isdigit()) or len(fmt) > 3:
        return None
    pt = int(fmt)
    mapped = media.rtpmaps.get(pt)
    if mapped is None:
        # Static payload types need no rtpmap (RFC 3551 §6).
        codec = {0: Codec.PCMU, 8: Codec.PCMA}.get(pt)
    elif mapped.clock_rate == 8000 and mapped.channels == 1:
        codec = {"PCMU": Codec.PCMU, "PCMA": Codec.PCMA}.get(mapped.encoding.upper())
    else:
        codec = None
    return codec if codec in allowed else None


def _telephone_event_pt(media: MediaDescription) -> int | None:
    for fmt in media.formats:
        if fmt.isascii() and fmt.isdigit() and len(fmt) <= 3:
            mapped = media.rtpmaps.get(int(fmt))
            if mapped and mapped.encoding.lower() == "telephone-event" and mapped.clock_rate == 8000:
                return mapped.payload_type
    return None


def _origin_line(local_ip: str, session_id: int, version: int) -> str:
    return f"o=sip-edge {session_id} {version} IN {_addrtype(local_ip)} {local_ip}"


def _addrtype(ip: str) -> str:
    return "IP6" if ":" in ip else "IP4"


def _audio_lines(port: int, codec_pts: list[tuple[int, str]], te_pt: int | None, direction: Direction) -> list[str]:
    formats = [str(pt) for pt, _ in codec_pts] + ([str(te_pt)] if te_pt is not None else [])
    lines = [f"m=audio {port} {RTP_AVP} {' '.join(formats)}"]
    lines += [f"a=rtpmap:{pt} {name}/8000" for pt, name in codec_pts]
    if te_pt is not None:
        lines += [f"a=rtpmap:{te_pt} telephone-event/8000", f"a=fmtp:{te_pt} 0-16"]
    lines += [f"a=ptime:{PTIME_MS}", f"a={direction.value}"]
    return lines


def negotiate(
    offer: str | bytes | SessionDescription,
    local_ip: str,
    local_port: int,
    *,
    codecs: tuple[Codec, ...] = (Codec.PCMU, Codec.PCMA),
    session_id: int = 0,
    version: int = 0,
) -> Answer | Refusal:
    """Answer an offer (RFC 3264 §6): first usable audio stream, codec in the offerer's order.

    Every other m-line is rejected with port 0 so the answer has the same m-line count.
    """
    try:
        description = offer if isinstance(offer, SessionDescription) else parse(offer)
    except SdpError as exc:
        return Refusal(f"malformed SDP: {exc}")
    chosen: tuple[int, Codec] | None = None
    reasons: list[str] = []
    for index, media in enumerate(description.media):
        if chosen is not None or media.kind != "audio" or media.port == 0:
            continue
        if media.proto.upper() != RTP_AVP:
            reasons.append(f"unsupported transport {media.proto}")
            continue
        address = description.media_connection(media)
        if address is None:
            reasons.append("audio stream without c= address")
            continue
        codec = next((c for c in (_codec_for(media, f, codecs) for f in media.formats) if c), None)
        if codec is None:
            offered = ",".join(media.rtpmaps[int(f)].encoding if f.isascii() and f.isdigit() and len(f) <= 3 and int(f) in media.rtpmaps else f for f in media.formats)
            reasons.append(f"no common codec (offered {offered[:80]})")
            continue
        chosen = (index, codec)
    if chosen is None:
        if not any(m.kind == "audio" for m in description.media):
            kinds = ",".join(sorted({m.kind for m in description.media})) or "none"
            return Refusal(f"no audio stream offered (media: {kinds[:80]})")
        return Refusal("; ".join(reasons) or "no usable audio stream")
    index, codec = chosen
    media = description.media[index]
    te_pt = _telephone_event_pt(media)
    direction = description.media_direction(media).reversed()
    lines = [
        "v=0",
        _origin_line(local_ip, session_id, version),
        "s=sip-edge",
        f"c=IN {_addrtype(local_ip)} {local_ip}",
        "t=0 0",
    ]
    for i, other in enumerate(description.media):
        if i == index:
            lines += _audio_lines(local_port, [(codec.payload_type, codec.name)], te_pt, direction)
        else:
            lines.append(f"m={other.kind} 0 {other.proto} {other.formats[0]}")
    negotiated = NegotiatedMedia(
        codec=codec,
        telephone_event_pt=te_pt,
        remote_ip=description.media_connection(media) or "",
        remote_port=media.port,
        direction=direction,
        media_index=index,
    )
    return Answer(sdp="\r\n".join(lines) + "\r\n", media=negotiated)


def make_offer(
    local_ip: str,
    local_port: int,
    *,
    codecs: tuple[Codec, ...] = (Codec.PCMU, Codec.PCMA),
    telephone_event_pt: int | None = DEFAULT_TELEPHONE_EVENT_PT,
    session_id: int = 0,
    version: int = 0,
) -> Offer:
    """Offer for a delayed-offer INVITE (sent in 200/183) or the B-leg INVITE to the PBX."""
    lines = [
        "v=0",
        _origin_line(local_ip, session_id, version),
        "s=sip-edge",
        f"c=IN {_addrtype(local_ip)} {local_ip}",
        "t=0 0",
    ]
    lines += _audio_lines(local_port, [(c.payload_type, c.name) for c in codecs], telephone_event_pt, Direction.SENDRECV)
    return Offer(sdp="\r\n".join(lines) + "\r\n", codecs=codecs, telephone_event_pt=telephone_event_pt)


def accept_answer(offer: Offer, answer: str | bytes | SessionDescription) -> NegotiatedMedia | Refusal:
    """Read the answer to our offer: the first answered codec we offered decides the stream."""
    try:
        description = answer if isinstance(answer, SessionDescription) else parse(answer)
    except SdpError as exc:
        return Refusal(f"malformed SDP answer: {exc}")
    for index, media in enumerate(description.media):
        if media.kind != "audio" or media.port == 0 or media.proto.upper() != RTP_AVP:
            continue
        address = description.media_connection(media)
        codec = next((c for c in (_codec_for(media, f, offer.codecs) for f in media.formats) if c), None)
        if codec is None or address is None:
            continue
        te_pt = _telephone_event_pt(media) if offer.telephone_event_pt is not None else None
        return NegotiatedMedia(
            codec=codec,
            telephone_event_pt=te_pt,
            remote_ip=address,
            remote_port=media.port,
            direction=description.media_direction(media).reversed(),
            media_index=index,
        )
    return Refusal("answer has no accepted audio stream with PCMU or PCMA")
