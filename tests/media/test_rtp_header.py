"""The struct-based inbound RTP reader agrees with aiortc's parser on every input (and the relay uses it)."""

import struct

from aiortc.rtp import RtpPacket
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.media.codecs import Codec
from edge.media.relay import Bridge
from edge.media.rtp import parse_rtp
from edge.media.sdp import Direction, NegotiatedMedia
from edge.media.session import MediaSession


def reference(data: bytes):
    if len(data) > 1500 or (len(data) >= 2 and 192 <= data[1] <= 223):
        return None
    try:
        p = RtpPacket.parse(data)
    except ValueError:
        return None
    return (p.marker, p.payload_type, p.sequence_number, p.timestamp, p.ssrc, p.payload)


def ours(data: bytes):
    p = parse_rtp(data)
    return None if p is None else (p.marker, p.payload_type, p.sequence_number, p.timestamp, p.ssrc, p.payload)


@st.composite
def rtp_like(draw):
    """Mostly well-formed headers with CSRCs, extensions and padding, then truncated or corrupted.

    The extension profile is one aiortc does not interpret: the edge skips an extension block whole
    (it reads none), where aiortc would also reject a malformed RFC 8285 element inside it."""
    first = draw(st.sampled_from([0x80, 0x90, 0xA0, 0xB0, 0x83, 0xB2, 0x40, 0x00, 0xFF]))
    cc = first & 0x0F
    body = bytes([first, draw(st.integers(0, 255))]) + draw(st.binary(min_size=10, max_size=10))
    body += draw(st.binary(min_size=4 * cc, max_size=4 * cc))
    if first & 0x10:
        words = draw(st.integers(0, 3))
        body += b"\x12\x34" + struct.pack("!H", words) + draw(st.binary(min_size=4 * words, max_size=4 * words))
    body += draw(st.binary(max_size=40))
    if first & 0x20:
        body += bytes([draw(st.integers(0, 60))])
    cut = draw(st.one_of(st.none(), st.integers(0, len(body))))
    return body if cut is None else body[:cut]


@settings(max_examples=600, deadline=None)
@given(st.one_of(rtp_like(), st.binary(max_size=64), st.binary(min_size=1490, max_size=1510)))
def test_parse_rtp_matches_aiortc(data):
    assert ours(data) == reference(data)


def test_relay_strips_csrc_extension_and_padding_from_forwarded_packets():
    def leg(port, ssrc):
        media = NegotiatedMedia(Codec.PCMU, 101, "192.0.2.1", port + 1000, Direction.SENDRECV)
        return MediaSession(local_port=port, ssrc=ssrc, initial_seq=7, initial_timestamp=800, now=0.0, media=media)

    a, b = leg(30000, 1), leg(30002, 2)
    bridge = Bridge(a, b, now=0.0)
    payload = bytes(range(160))
    # V=2, P=1, X=1, CC=2; then two CSRCs, a one-word extension, the payload and 3 bytes of padding.
    data = (struct.pack("!BBHII", 0xB2, 0x80, 65535, 2**32 - 160, 0xFEED) + struct.pack("!II", 11, 12)
            + b"\xbe\xde\x00\x01" + b"\x10\x00\x00\x00" + payload + b"\x00\x00\x03")
    packet = a.receive_rtp(data, ("192.0.2.1", 31000), 0.1)
    assert packet is not None and packet.payload == payload
    target, out = bridge.forward(a, packet)
    assert target is b and out == struct.pack("!BBHII", 0x80, 0x80, 7, 800, 2) + payload
    nxt = a.receive_rtp(struct.pack("!BBHII", 0x80, 0, 0, 0, 0xFEED) + payload, ("192.0.2.1", 31000), 0.12)
    assert bridge.forward(a, nxt)[1][:12] == struct.pack("!BBHII", 0x80, 0, 8, 960, 2)  # wrap followed
    assert a.stats.received == 2 and a.dropped_packets == 0
