"""Stream framing (edge.sip.framing): Content-Length cuts, partial chunks, CRLF keep-alives, caps."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edge.sip.errors import FramingError
from edge.sip.framing import StreamFramer
from edge.sip.message import parse
from tests.sip.samples import SDP, invite, msg

FIRST = invite(body=SDP, extra=("Content-Type: application/sdp",))
SECOND = msg(
    "SIP/2.0 200 OK",
    "Via: SIP/2.0/TCP 192.0.2.1;branch=z9hG4bKb",
    "From: <sip:a@x>;tag=1",
    "To: <sip:b@y>;tag=2",
    "Call-ID: two",
    "CSeq: 1 BYE",
)
STREAM = FIRST + SECOND


def test_framer_every_split_point_of_two_messages() -> None:
    for cut in range(len(STREAM) + 1):
        f = StreamFramer()
        got = f.feed(STREAM[:cut]) + f.feed(STREAM[cut:])
        assert got == [FIRST, SECOND], cut
        assert f.buf == bytearray()


def test_framer_byte_by_byte() -> None:
    f = StreamFramer()
    got: list[bytes] = []
    for b in STREAM:
        got.extend(f.feed(bytes([b])))
    assert got == [FIRST, SECOND]
    assert [parse(g).call_id for g in got] == ["call-1@carrier", "two"]


@pytest.mark.parametrize(
    ("stream", "messages", "pings"),
    [
        (b"\r\n\r\n", [], 1),
        (b"\r\n\r\n\r\n\r\n", [], 2),
        (b"\r\n\r\n" + FIRST + b"\r\n\r\n" + SECOND + b"\r\n\r\n", [FIRST, SECOND], 3),
        (b"\r\n" + FIRST, [FIRST], 0),
        (b"\r\n\r\n\r\n" + FIRST, [FIRST], 1),
    ],
    ids=["one_ping", "two_pings", "pings_between_messages", "leading_crlf", "ping_then_stray_crlf"],
)
def test_framer_keepalive_pings_counted(stream: bytes, messages: list[bytes], pings: int) -> None:
    f = StreamFramer()
    assert f.feed(stream) == messages
    assert f.take_pings() == pings
    assert f.take_pings() == 0


def test_framer_partial_ping_waits_for_more() -> None:
    f = StreamFramer()
    assert f.feed(b"\r\n") == []
    assert f.take_pings() == 0
    assert f.feed(b"\r\n") == []
    assert f.take_pings() == 1


def test_framer_compact_content_length() -> None:
    data = msg("OPTIONS sip:x SIP/2.0", "v: SIP/2.0/TCP h;branch=z9hG4bK1", "f: <sip:a@x>;tag=1", "t: <sip:x>",
               "i: c", "CSeq: 1 OPTIONS", "l : 4", body="", clen=False)[:-4] + b"\r\n\r\nabcdEXTRA"
    f = StreamFramer()
    out = f.feed(data)
    assert len(out) == 1 and out[0].endswith(b"\r\n\r\nabcd")
    assert bytes(f.buf) == b"EXTRA"


def test_framer_missing_content_length_raises() -> None:
    data = msg("OPTIONS sip:x SIP/2.0", "Via: SIP/2.0/TCP h;branch=z9hG4bK1", clen=False)
    with pytest.raises(FramingError, match="^Missing Content-Length on stream$"):
        StreamFramer().feed(data)


def test_framer_oversize_declared_length_raises() -> None:
    f = StreamFramer(max_message=len(FIRST) - 1)
    with pytest.raises(FramingError, match="^Message too large$"):
        f.feed(FIRST)


def test_framer_oversize_header_block_without_end_raises() -> None:
    f = StreamFramer(max_message=1024)
    f.feed(b"INVITE sip:x SIP/2.0\r\n")
    with pytest.raises(FramingError, match="^Message too large$"):
        f.feed(b"X-Flood: " + b"a" * 2000)


def test_framer_message_exactly_at_cap_passes() -> None:
    assert StreamFramer(max_message=len(FIRST)).feed(FIRST) == [FIRST]


def test_framer_body_split_waits_for_content_length() -> None:
    f = StreamFramer()
    assert f.feed(FIRST[:-5]) == []
    assert f.feed(FIRST[-5:]) == [FIRST]


@given(st.lists(st.integers(min_value=1, max_value=40), min_size=1, max_size=400))
def test_framer_any_chunking_gives_the_same_messages(sizes: list[int]) -> None:
    """The resumed header search and the pending-body wait cut the same messages as one feed."""
    one = b"OPTIONS sip:a@b SIP/2.0\r\nContent-Length: 5\r\n\r\nhello"
    two = b"MESSAGE sip:a@b SIP/2.0\r\nl: 0\r\n\r\n"
    stream = b"\r\n\r\n" + one + b"\r\n" + two + one
    f, got, i = StreamFramer(), [], 0
    for n in sizes * (len(stream) // max(1, sum(sizes)) + 1):
        if i >= len(stream):
            break
        got += f.feed(stream[i:i + n])
        i += n
    got += f.feed(b"")
    assert got == [one, two, one]
    assert f.take_pings() == 1
