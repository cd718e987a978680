import struct

from aiortc.rtp import RtpPacket

from edge.media.codecs import Codec
from edge.media.dtmf import DtmfReceived, telephone_event_payloads
from edge.media.prompts import prompt_from_pcm, tone_pcm
from edge.media.rtp import pack_rtp
from edge.media.sdp import Direction, NegotiatedMedia
from edge.media.session import PlaybackProgress, MediaSession, MediaTimedOut, PlaybackFinished, RemoteLatched, SessionSettings

REMOTE = ("192.0.2.10", 4000)


def make_session(codec=Codec.PCMU, te=101, seq=65530, ts=2**32 - 480, direction=Direction.SENDRECV, **kw):
    media = NegotiatedMedia(codec, te, REMOTE[0], REMOTE[1], direction)
    return MediaSession(
        local_port=30000, ssrc=0x11223344, initial_seq=seq, initial_timestamp=ts, now=0.0, media=media,
        settings=SessionSettings(**kw),
    )


def test_session_pacing_seq_timestamp_marker_wrap_over_long_playback():
    session = make_session()
    prompt = prompt_from_pcm("p", tone_pcm((440.0,), 2000))  # 100 frames
    session.play([prompt, prompt], now=0.0)
    packets = [RtpPacket.parse(session.next_packet(i * 0.02)) for i in range(200)]
    seqs = [p.sequence_number for p in packets]
    stamps = [p.timestamp for p in packets]
    assert seqs[:8] == [65530, 65531, 65532, 65533, 65534, 65535, 0, 1]
    assert all((b - a) % 65536 == 1 for a, b in zip(seqs, seqs[1:]))
    assert stamps[:4] == [2**32 - 480, 2**32 - 320, 2**32 - 160, 0]
    assert all((b - a) % 2**32 == 160 for a, b in zip(stamps, stamps[1:]))
    assert [p.marker for p in packets[:3]] == [1, 0, 0] and sum(p.marker for p in packets) == 1
    assert {p.ssrc for p in packets} == {0x11223344}
    assert packets[0].payload == prompt.pcmu[0] and packets[100].payload == prompt.pcmu[0]
    # The first item was played out when the second started (frame 100, at 2.0 s).
    assert session.drain_events() == [PlaybackProgress("p1", 0, 2.0)]
    silence = RtpPacket.parse(session.next_packet(4.0))
    assert silence.marker == 1 and silence.payload == b"\xff" * 160
    assert session.drain_events() == [PlaybackProgress("p1", 1, 4.0), PlaybackFinished("p1", 4.0, False)]


def test_session_without_silence_skips_timestamps_and_marks_next_talkspurt():
    session = make_session(send_silence=False, seq=10, ts=1000)
    assert session.next_packet(0.0) is None and session.next_packet(0.02) is None
    session.play([[b"\x01" * 160]], now=0.04)
    packet = RtpPacket.parse(session.next_packet(0.04))
    assert (packet.sequence_number, packet.timestamp, packet.marker) == (10, 1320, 1)


def test_session_pcma_silence_and_payload_type():
    session = make_session(codec=Codec.PCMA)
    packet = RtpPacket.parse(session.next_packet(0.0))
    assert packet.payload_type == 8 and packet.payload == b"\xd5" * 160


def test_session_recvonly_sends_nothing_but_clock_runs():
    session = make_session(direction=Direction.RECVONLY, ts=0)
    assert session.next_packet(0.0) is None
    assert session.timestamp == 160


def test_session_play_interrupt_reports_interrupted():
    session = make_session()
    first = session.play([[b"\x00" * 160] * 10], now=0.0)
    session.next_packet(0.0)
    second = session.play([[b"\x00" * 160]], now=0.02)
    assert session.drain_events() == [PlaybackFinished(first, 0.02, True)]
    assert second != first


def test_session_send_dtmf_rfc4733_packets():
    session = make_session(seq=1, ts=8000)
    session.send_dtmf("5", 60)
    packets = [RtpPacket.parse(session.next_packet(i * 0.02)) for i in range(6)]
    assert [p.payload_type for p in packets] == [101] * 5 + [0]
    assert {p.timestamp for p in packets[:5]} == {8000}
    assert [p.marker for p in packets[:5]] == [1, 0, 0, 0, 0]
    ends = [p.payload[1] & 0x80 for p in packets[:5]]
    assert ends == [0, 0, 0x80, 0x80, 0x80]
    assert packets[5].marker == 1 and packets[5].timestamp == 8000 + 5 * 160


def rtp(pt, seq, ts, payload, ssrc=0xAABBCCDD, marker=False):
    return pack_rtp(pt, marker, seq, ts, ssrc, payload)


def test_session_receives_rfc4733_once_per_event():
    session = make_session()
    packets = telephone_event_payloads("9", 100) + telephone_event_payloads("9", 60)
    ts = [5000] * 8 + [9000] * 6
    for i, ((payload, marker), stamp) in enumerate(zip(packets, ts)):
        session.receive_rtp(rtp(101, i, stamp, payload, marker=marker), REMOTE, now=1.0 + i * 0.02)
    digits = [e for e in session.drain_events() if isinstance(e, DtmfReceived)]
    assert [d.digit for d in digits] == ["9", "9"]


def test_session_symmetric_rtp_latches_to_actual_source():
    session = make_session()
    nat = ("203.0.113.7", 61000)
    assert session.receive_rtp(rtp(0, 1, 160, b"\xff" * 160), nat, now=0.1) is not None
    assert session.remote == nat
    assert session.drain_events() == [RemoteLatched(nat, 0.1)]
    assert session.receive_rtp(rtp(0, 2, 320, b"\xff" * 160), ("198.51.100.66", 5555), now=0.12) is None
    assert session.remote == nat and session.dropped_packets == 1


def test_session_relatches_after_source_goes_quiet():
    session = make_session()
    first, second = ("203.0.113.7", 61000), ("203.0.113.7", 62000)
    session.receive_rtp(rtp(0, 1, 160, b"\xff" * 160), first, now=0.0)
    results = [session.receive_rtp(rtp(0, 2 + i, 320, b"\xff" * 160), second, now=3.0 + i * 0.02) for i in range(3)]
    assert [r is not None for r in results] == [False, False, True]
    assert session.remote == second


def test_session_drops_unknown_payload_type():
    session = make_session()
    assert session.receive_rtp(rtp(18, 1, 160, b"\x00" * 20), REMOTE, now=0.0) is None
    assert session.receive_rtp(b"\x80", REMOTE, now=0.0) is None
    assert session.dropped_packets == 2 and session.received_packets == 0


def test_session_media_timeout_once_and_rearmed_by_rtp():
    session = make_session(media_timeout=5.0)
    session.on_tick(4.9)
    assert session.drain_events() == []
    session.on_tick(5.0)
    session.on_tick(6.0)
    assert session.drain_events() == [MediaTimedOut(5.0, 5.0)]
    session.receive_rtp(rtp(0, 1, 160, b"\xff" * 160), REMOTE, now=7.0)
    session.drain_events()
    session.on_tick(12.5)
    assert session.drain_events() == [MediaTimedOut(12.5, 5.5)]


def test_session_sendonly_has_no_media_timeout():
    session = make_session(direction=Direction.SENDONLY, media_timeout=1.0)
    session.on_tick(100.0)
    assert session.drain_events() == []


def test_session_rtcp_sender_report_after_sending():
    session = make_session(rtcp_interval=5.0)
    for i in range(10):
        session.next_packet(i * 0.02)
    session.receive_rtp(rtp(0, 7, 160, b"\xff" * 160), REMOTE, now=0.2)
    report = session.rtcp_due(10.0, wall=1_700_000_000.0)
    assert report[1] == 200  # SR first in the compound packet
    (packet_count,) = struct.unpack_from("!L", report, 20)
    assert packet_count == 10
    assert session.rtcp_due(10.1, wall=1_700_000_000.1) is None


def test_session_inband_only_without_telephone_event():
    from edge.media.codecs import encode
    from edge.media.prompts import dtmf_pcm, silence_pcm

    session = make_session(te=None)
    payload = encode(silence_pcm(40) + dtmf_pcm("3", 100) + silence_pcm(60), Codec.PCMU)
    for i in range(0, len(payload), 160):
        session.receive_rtp(rtp(0, i // 160, i, payload[i : i + 160]), REMOTE, now=i / 8000)
    digits = [e.digit for e in session.drain_events() if isinstance(e, DtmfReceived)]
    assert digits == ["3"]


def test_session_inband_detection_stops_once_bridged():
    """A bridged call's audio is relayed, not screened: no decode or Goertzel for DTMF nobody reads."""
    from edge.media.codecs import encode
    from edge.media.prompts import dtmf_pcm, silence_pcm

    session = make_session(te=None)
    session.enter_bridge(object(), 0.0)
    payload = encode(silence_pcm(40) + dtmf_pcm("3", 100) + silence_pcm(60), Codec.PCMU)
    for i in range(0, len(payload), 160):
        assert session.receive_rtp(rtp(0, i // 160, i, payload[i : i + 160]), REMOTE, now=i / 8000) is not None
    assert not [e for e in session.drain_events() if isinstance(e, DtmfReceived)]
    session.leave_bridge()
    for i in range(0, len(payload), 160):
        session.receive_rtp(rtp(0, 100 + i // 160, 8000 + i, payload[i : i + 160]), REMOTE, now=1.0 + i / 8000)
    assert [e.digit for e in session.drain_events() if isinstance(e, DtmfReceived)] == ["3"]


def test_rtp_pack_matches_aiortc_serialize():
    ours = pack_rtp(8, True, 65535, 2**32 - 1, 0xDEADBEEF, b"x" * 160)
    theirs = RtpPacket(payload_type=8, marker=1, sequence_number=65535, timestamp=2**32 - 1, ssrc=0xDEADBEEF, payload=b"x" * 160)
    assert ours == theirs.serialize()


def test_session_and_flows_share_one_event_vocabulary():
    """The objects a session emits are the ones the flows handle: no look-alike copies to map by hand."""
    from edge.media import events, flow, session

    for name in ("DtmfReceived", "PlaybackFinished", "PlaybackProgress", "MediaTimedOut"):
        assert getattr(flow, name) is getattr(events, name)
    assert session.MediaEvent.__args__[:5] == (
        events.DtmfReceived, events.PlaybackFinished, events.PlaybackProgress, events.MediaTimedOut, events.RemoteLatched)
