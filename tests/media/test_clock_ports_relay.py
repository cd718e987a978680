import pytest
from aiortc.rtp import RtpPacket

from edge.media.clock import Pacer, Tick
from edge.media.codecs import Codec
from edge.media.dtmf import telephone_event_payloads
from edge.media.engine_config import MediaConfig, validate
from edge.units import parse_duration
from edge.media.ports import PoolExhausted, PortPool
from edge.media.relay import Bridge
from edge.media.rtp import pack_rtp
from edge.media.sdp import Direction, NegotiatedMedia
from edge.media.session import MediaSession, SessionState


@pytest.mark.parametrize(
    "wakeups,expected",
    [
        ([0.0201], [Tick(1, 0, pytest.approx(0.0001))]),
        ([0.019, 0.0205], [Tick(0, 0, 0.0), Tick(1, 0, pytest.approx(0.0005))]),
        ([0.061], [Tick(3, 0, pytest.approx(0.041))]),  # lateness of the oldest due period
        ([0.5], [Tick(5, 20, pytest.approx(0.48))]),
    ],
    ids=["on-time", "early-then-late", "catch-up", "stall-skipped"],
)
def test_pacer_due_frames(wakeups, expected):
    pacer = Pacer(t0=0.0, max_catchup=5)
    assert [pacer.due(now) for now in wakeups] == expected


def test_pacer_absolute_schedule_has_no_drift():
    pacer = Pacer(t0=100.0)
    total = 0
    now = 100.0
    for _ in range(50_000):
        now = pacer.next_deadline + 0.0013  # every wake-up 1.3 ms late
        total += pacer.due(now).frames
    assert total == 50_000
    assert pacer.next_deadline == pytest.approx(100.0 + 50_001 * 0.02)
    p50, p99 = pacer.lateness_percentiles(0.5, 0.99)
    assert p50 == pytest.approx(0.0013, abs=1e-6) and p99 == pytest.approx(0.0013, abs=1e-6)


def test_port_pool_even_ports_exhaustion_and_reuse_order():
    pool = PortPool(20001, 20007)
    assert pool.capacity == 3
    assert [pool.allocate() for _ in range(3)] == [20002, 20004, 20006]
    with pytest.raises(PoolExhausted):
        pool.allocate()
    assert pool.exhausted_total == 1
    pool.release(20004)
    pool.release(20004)
    assert pool.allocate() == 20004 and pool.available == 0


def test_port_pool_rejects_bad_range():
    with pytest.raises(ValueError):
        PortPool(80, 100)


def leg(port, codec, te, ssrc):
    media = NegotiatedMedia(codec, te, "192.0.2.1", port + 1000, Direction.SENDRECV)
    return MediaSession(local_port=port, ssrc=ssrc, initial_seq=100, initial_timestamp=5000, now=0.0, media=media)


def test_bridge_rewrites_ssrc_seq_ts_and_transcodes():
    a, b = leg(30000, Codec.PCMU, 101, 1), leg(30002, Codec.PCMA, 96, 2)
    a.play([[b"\x00" * 160]], now=0.0)
    bridge = Bridge(a, b, now=0.0)
    assert a.state is SessionState.BRIDGED and a.next_packet(0.02) is None
    assert [type(e).__name__ for e in a.drain_events()] == ["PlaybackFinished"]
    out = []
    for i, seq in enumerate([40000, 40001, 40003]):
        pkt = a.receive_rtp(pack_rtp(0, False, seq, 777 + 160 * i, 0xCAFE, b"\xff" * 160), ("192.0.2.1", 31000), 0.1)
        target, data = bridge.forward(a, pkt)
        assert target is b
        out.append(RtpPacket.parse(data))
    assert [p.ssrc for p in out] == [2, 2, 2]
    assert [p.sequence_number for p in out] == [100, 101, 103]  # loss stays visible
    assert [p.timestamp for p in out] == [5000, 5160, 5320]
    assert [p.marker for p in out] == [1, 0, 0]
    assert {p.payload_type for p in out} == {8} and out[0].payload == b"\xd5" * 160


def test_bridge_passes_dtmf_with_mapped_payload_type_and_drops_without_te():
    a, b, c = leg(30000, Codec.PCMU, 101, 1), leg(30002, Codec.PCMU, 96, 2), leg(30004, Codec.PCMU, None, 3)
    bridge = Bridge(a, b, now=0.0)
    payload, _ = telephone_event_payloads("4", 40)[0]
    pkt = a.receive_rtp(pack_rtp(101, True, 1, 160, 9, payload), ("192.0.2.1", 31000), 0.1)
    _, data = bridge.forward(a, pkt)
    assert RtpPacket.parse(data).payload_type == 96 and RtpPacket.parse(data).payload == payload
    bridge.unbridge()
    assert a.state is SessionState.ACTIVE
    bridge2 = Bridge(a, c, now=1.0)
    pkt = a.receive_rtp(pack_rtp(101, False, 2, 320, 9, payload), ("192.0.2.1", 31000), 1.1)
    assert bridge2.forward(a, pkt) is None and bridge2.counters["dropped"] == 1


def test_bridge_source_ssrc_change_rebases_with_marker():
    a, b = leg(30000, Codec.PCMU, 101, 1), leg(30002, Codec.PCMU, 101, 2)
    bridge = Bridge(a, b, now=0.0)
    first = a.receive_rtp(pack_rtp(0, False, 10, 1000, 0xA, b"\xff" * 160), ("192.0.2.1", 31000), 0.1)
    bridge.forward(a, first)
    second = a.receive_rtp(pack_rtp(0, False, 5000, 90000, 0xB, b"\xff" * 160), ("192.0.2.1", 31000), 0.12)
    p = RtpPacket.parse(bridge.forward(a, second)[1])
    assert (p.sequence_number, p.timestamp, p.marker) == (101, 5160, 1)


def test_media_config_defaults_validate():
    assert validate(MediaConfig()) == []


def test_media_config_validate_reports_paths():
    config = MediaConfig(bind_ip="nope", rtp_port_min=30000, rtp_port_max=20000, codecs=["G729"], media_timeout="5 minutes")
    assert validate(config) == [
        ("$.media.bind_ip", "not an IP address: 'nope'"),
        ("$.media.rtp_port_min", "need 1024 <= rtp_port_min < rtp_port_max <= 65535"),
        ("$.media.codecs[0]", "unsupported codec 'G729' (PCMU, PCMA)"),
        ("$.media.media_timeout", "invalid duration '5 minutes': expected a number with ms, s, m, h or d (e.g. '30s')"),
    ]


@pytest.mark.parametrize("text,seconds", [("500ms", 0.5), ("30s", 30.0), ("2m", 120.0), ("1.5s", 1.5)])
def test_parse_duration(text, seconds):
    assert parse_duration(text) == seconds
