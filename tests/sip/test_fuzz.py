"""Fuzzing the parser and the proxy core (hypothesis): mutated SIP messages and random bytes.

parse() may only raise SipParseError; Proxy.receive() never raises, answers only with responses a
proxy may send (100/200 of its own, 4xx/5xx, or relays) and well-formed forwards carrying its own Via,
and once every timer has fired its transaction and dialog tables are empty again.
"""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.sip.errors import FramingError, SipParseError
from edge.sip.framing import StreamFramer
from edge.sip.message import MAGIC_COOKIE, parse
from tests.call.proxy_harness import CARRIER, PBX_A, PBX_B, STRANGER, Harness
from tests.sip.samples import SDP, invite, msg

VECTORS = Path(__file__).resolve().parent.parent / "vectors"

SEEDS: list[bytes] = [
    invite("sip:+12025550100@127.0.0.1:5060", via_host="192.0.2.5:5080", body=SDP, extra=("Content-Type: application/sdp",)),
    invite("sip:+12025550100@10.0.0.1:5070", via_host="192.0.2.5:5080", to_tag="pbx-tag", method="BYE", cseq=2,
           extra=("Route: <sip:127.0.0.1:5060;lr>",)),
    invite("sip:+12025550100@127.0.0.1", via_host="192.0.2.5:5080", method="CANCEL"),
    invite("sip:127.0.0.1:5060", via_host="192.0.2.5:5080", method="OPTIONS"),
    invite("sip:+12025550100@10.0.0.1:5070", via_host="192.0.2.5:5080", to_tag="pbx-tag", method="ACK"),
    msg("SIP/2.0 180 Ringing", "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKx1;rport",
        "Via: SIP/2.0/UDP 192.0.2.5:5080;branch=z9hG4bKcarrier1;rport=5080", "From: <sip:a@x>;tag=c1",
        "To: <sip:b@y>;tag=p1", "Call-ID: call-1@carrier", "CSeq: 1 INVITE", "Record-Route: <sip:127.0.0.1:5060;lr>"),
    *(p.read_bytes() for p in sorted((VECTORS / "valid").glob("*.sip"))),
]

HEADER_NAMES = [b"Via", b"v", b"From", b"f", b"To", b"t", b"Call-ID", b"i", b"CSeq", b"Max-Forwards", b"Route",
                b"Record-Route", b"Contact", b"m", b"Content-Length", b"l", b"Content-Type", b"X-Fuzz"]
SIP_CHARS = st.text(alphabet=' \t;,:<>"\\@=/[]%+.-_abcXYZ0189\r\n\x00', max_size=40)
OPS = ["delete", "duplicate", "bytes", "text", "huge", "method", "status", "swap", "insert", "blank", "clen", "fold"]

#: Examples tried, per test (for the report; never printed).
EXAMPLES: dict[str, int] = {}


def _count(name: str) -> None:
    EXAMPLES[name] = EXAMPLES.get(name, 0) + 1


@st.composite
def mutated_messages(draw: st.DrawFn) -> bytes:
    """A seed message with 0-5 random edits: header deletions/duplications, junk values, truncation, ..."""
    base = draw(st.sampled_from(SEEDS))
    head, sep, body = base.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    for _ in range(draw(st.integers(0, 5))):
        op = draw(st.sampled_from(OPS))
        i = draw(st.integers(0, max(0, len(lines) - 1)))
        if not lines:
            lines = [b""]
        if op == "delete" and len(lines) > 1:
            del lines[i]
        elif op == "duplicate":
            lines.insert(i, lines[i])
        elif op in ("bytes", "text", "huge"):
            name, _, _ = lines[i].partition(b":")
            if op == "bytes":
                value = draw(st.binary(max_size=40))
            elif op == "text":
                value = draw(SIP_CHARS).encode("utf-8")
            else:
                value = b"x" * draw(st.integers(1000, 20000))
            lines[i] = name + b": " + value
        elif op == "method":
            method = draw(st.sampled_from([b"INVITE", b"ACK", b"BYE", b"CANCEL", b"OPTIONS", b"REGISTER", b"FOO",
                                           b"", b"INV ITE", b"\xff\xfe"]))
            parts = lines[0].split(b" ", 1)
            lines[0] = method + b" " + (parts[1] if len(parts) > 1 else b"sip:x SIP/2.0")
        elif op == "status":
            code = draw(st.integers(-5, 1100))
            lines[0] = b"SIP/2.0 " + str(code).encode() + b" " + draw(st.binary(max_size=8))
        elif op == "swap":
            j = draw(st.integers(0, len(lines) - 1))
            lines[i], lines[j] = lines[j], lines[i]
        elif op == "insert":
            name = draw(st.sampled_from(HEADER_NAMES))
            lines.insert(i + 1, name + b": " + draw(SIP_CHARS).encode("utf-8"))
        elif op == "blank":
            lines.insert(i + 1, b"")
        elif op == "clen":
            lines.append(b"Content-Length: " + str(draw(st.integers(-5, 5000))).encode())
        elif op == "fold":
            lines.insert(i + 1, draw(st.sampled_from([b" ", b"\t"])) + draw(SIP_CHARS).encode("utf-8"))
    data = b"\r\n".join(lines) + sep + body
    if draw(st.integers(0, 9)) == 0:
        data = data[: draw(st.integers(0, len(data)))]
    return data


inputs = st.one_of(mutated_messages(), st.binary(max_size=1500))
FUZZ = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def _envelope(data: bytes) -> None:
    m = parse(data)
    _ = (m.vias, m.call_id, m.cseq_num, m.cseq_method, m.from_tag, m.to_tag, m.max_forwards, m.routes, m.branch)
    m.prepend("via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKfuzz")
    m.pop_first_value("route")
    m.set("max-forwards", "69")
    assert parse(m.to_bytes()).branch == "z9hG4bKfuzz"


@FUZZ
@given(inputs)
def test_fuzz_parse_raises_only_sip_parse_error(data: bytes) -> None:
    _count("parse")
    try:
        m = parse(data)
    except SipParseError as exc:
        assert str(exc)  # the reason phrase of the 400
        return
    assert m.to_bytes() == data[: len(m.to_bytes())]
    try:
        _envelope(data)
    except SipParseError as exc:
        assert str(exc)


def _check_outbox(h: Harness, inputs_were_requests: bool) -> None:
    for data, dest in h.proxy.datagrams_to_send():
        start = data.split(b"\r\n", 1)[0]
        if start.startswith(b"SIP/2.0 "):
            status = int(start.split(b" ")[1])
            if dest in (CARRIER, STRANGER) and inputs_were_requests:
                # Generated by the edge itself: 100 Trying, 200 to OPTIONS, or an error.
                assert status in (100, 200) or 400 <= status <= 599, start
        else:
            fwd = parse(data)
            assert fwd.top_via.host == "127.0.0.1" and fwd.branch.startswith(MAGIC_COOKIE), start
            assert fwd.max_forwards is not None and fwd.max_forwards >= 0


@FUZZ
@given(st.lists(st.tuples(inputs, st.sampled_from([CARRIER, PBX_A, PBX_B, STRANGER])), min_size=1, max_size=3))
def test_fuzz_proxy_never_raises_and_tables_drain(messages: list[tuple[bytes, object]]) -> None:
    _count("proxy")
    h = Harness(limits={"max_transactions": 50, "max_dialogs": 20, "dialog_max_age": "1h"})
    for data, src in messages:
        h.proxy.receive(data, src, h.now)  # must not raise
        requests = not data.lstrip(b"\r\n").startswith(b"SIP/")
        _check_outbox(h, requests)
        assert len(h.proxy.server_txns) <= 2 * len(messages) and len(h.proxy.dialogs) <= len(messages)
        h.now += 0.1
    assert h.proxy.stats.core_errors == 0
    h.advance(4000.0)  # past every transaction timer and the dialog max age
    assert h.tables() == (0, 0, 0)
    assert h.proxy.next_deadline() is None


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(mutated_messages(), min_size=5, max_size=20))
def test_fuzz_proxy_shared_instance_stays_bounded(batch: list[bytes]) -> None:
    """Many mutated messages into one proxy: caps hold, nothing escapes, timers clean up."""
    _count("proxy_batch")
    h = Harness(limits={"max_transactions": 8, "max_dialogs": 4, "dialog_max_age": "1h"})
    for i, data in enumerate(batch):
        h.proxy.receive(data, CARRIER if i % 3 else PBX_A, h.now)
        h.proxy.datagrams_to_send()
        assert len(h.proxy.dialogs) <= 4
        assert len(h.proxy.server_txns) <= 8 + len(batch)
    assert h.proxy.stats.core_errors == 0
    h.advance(4000.0)
    assert h.tables() == (0, 0, 0)


FRAMED_SEEDS = [s for s in SEEDS if b"\r\nContent-Length:" in s and not s.startswith(b"\r\n") and parse(s).to_bytes() == s]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.one_of(st.sampled_from(FRAMED_SEEDS), st.just(b"\r\n\r\n"), st.binary(max_size=300)), max_size=6),
       st.lists(st.integers(1, 400), min_size=1, max_size=20))
def test_fuzz_stream_framer_bounded(parts: list[bytes], cuts: list[int]) -> None:
    """Any byte stream in any chunking: only FramingError, the buffer never exceeds the cap."""
    _count("framer")
    stream = b"".join(parts)
    f = StreamFramer(max_message=4096)
    pos, k = 0, 0
    try:
        while pos < len(stream):
            n = cuts[k % len(cuts)]
            k += 1
            for out in f.feed(stream[pos : pos + n]):
                assert len(out) <= 4096
            pos += n
            assert len(f.buf) <= 4096 + n
    except FramingError as exc:
        assert str(exc) in ("Message too large", "Missing Content-Length on stream")


@settings(max_examples=200, deadline=None)
@given(st.lists(st.sampled_from(FRAMED_SEEDS), min_size=1, max_size=4), st.integers(1, 200))
def test_fuzz_stream_framer_recovers_messages(seeds: list[bytes], chunk: int) -> None:
    _count("framer_exact")
    stream = b"\r\n\r\n".join(seeds)
    f = StreamFramer()
    got: list[bytes] = []
    for i in range(0, len(stream), chunk):
        got.extend(f.feed(stream[i : i + chunk]))
    assert got == seeds
    assert f.take_pings() == len(seeds) - 1
