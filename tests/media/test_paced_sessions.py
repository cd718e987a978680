"""The shared pacer driving many sessions on a fake clock: one pass per wake-up, no drift."""

import random

import pytest
from aiortc.rtp import RtpPacket

from edge.media.clock import PERIOD, PacedSessions, Pacer
from edge.media.codecs import Codec
from edge.media.engine_config import MediaConfig, validate
from edge.media.events import MediaTimedOut
from edge.media.prompts import prompt_from_pcm, tone_pcm
from edge.media.sdp import Direction, NegotiatedMedia
from edge.media.session import MediaSession, SessionSettings

T0 = 1000.0


def session(port: int, codec: Codec = Codec.PCMU, **settings) -> MediaSession:
    media = NegotiatedMedia(codec, 101, "192.0.2.7", 40000 + port, Direction.SENDRECV)
    return MediaSession(local_port=port, ssrc=port * 7, initial_seq=65500 + port, initial_timestamp=2**32 - 800 + port,
                        now=T0, media=media, settings=SessionSettings(**settings))


@pytest.mark.parametrize("slots", [1, 4])
def test_every_session_gets_one_packet_per_period_across_jittery_wakeups_without_drift(slots):
    prompt = prompt_from_pcm("p", tone_pcm((440.0, 620.0), 1000))  # 50 frames
    sessions = [session(2 * i, Codec.PCMU if i % 2 else Codec.PCMA) for i in range(20)]
    paced: PacedSessions[int] = PacedSessions(Pacer(T0, period=PERIOD / slots, max_catchup=5 * slots), slots)
    for i, s in enumerate(sessions):
        s.play([prompt] * 200, T0)  # 10,000 frames: longer than the run
        paced.add(s, i)
    rng = random.Random(7)
    sent: list[list[bytes]] = [[] for _ in sessions]
    per_wakeup: list[int] = []
    now = T0
    for _ in range(5000 * slots):
        # Wake-ups 0-15 ms late, sometimes early (nothing due), never a stall beyond the catch-up limit.
        now = max(now, paced.next_deadline + rng.choice([-0.004, 0.0, 0.0003, 0.002, 0.015]))
        out = paced.tick(now, wall=1.7e9 + now)
        assert out.skipped == 0
        per_wakeup.append(len(out.rtp))
        for handle, data, addr in out.rtp:
            assert addr == ("192.0.2.7", 40000 + sessions[handle].local_port)
            sent[handle].append(data)
    subperiods = int((now - T0) / (PERIOD / slots) + 1e-9)
    assert min(n for n in per_wakeup if n) == 20 // slots  # an on-time wake-up sends one phase: 1/slots of the streams
    for k, (s, datagrams) in enumerate(zip(sessions, sent)):
        packets = [RtpPacket.parse(d) for d in datagrams]
        # One packet per elapsed period of the session's phase (phases are filled in turn): nothing lost or extra.
        phase = k % slots  # sub-period j serves phase j % slots, for j = 1..subperiods
        periods = (subperiods - phase) // slots + (1 if phase else 0)
        assert len(packets) == periods > 3000
        assert all((b.sequence_number - a.sequence_number) % 65536 == 1 for a, b in zip(packets, packets[1:]))
        assert all((b.timestamp - a.timestamp) % 2**32 == 160 for a, b in zip(packets, packets[1:]))
        assert packets[0].timestamp == 2**32 - 800 + s.local_port and packets[0].marker == 1
        assert sum(p.marker for p in packets) == 1 and {p.ssrc for p in packets} == {s.local_port * 7}
        frames = prompt.frames(s.codec)
        assert [p.payload for p in packets] == [frames[i % len(frames)] for i in range(periods)]
        assert {p.payload_type for p in packets} == {s.codec.payload_type}


def test_stall_beyond_catchup_skips_periods_and_keeps_the_media_clock_on_time():
    s = session(10)
    paced: PacedSessions[str] = PacedSessions(Pacer(T0, max_catchup=3))
    paced.add(s, "leg")
    first = paced.tick(T0 + 0.0201, wall=0.0)
    late = paced.tick(T0 + 0.2001, wall=0.0)  # periods 2..10 due: 3 sent, 6 skipped
    assert (late.frames, late.skipped) == (3, 6)
    stamps = [RtpPacket.parse(d).timestamp for _, d, _ in first.rtp + late.rtp]
    seqs = [RtpPacket.parse(d).sequence_number for _, d, _ in first.rtp + late.rtp]
    assert [(t - stamps[0]) % 2**32 for t in stamps] == [0, 6 * 160 + 160, 6 * 160 + 320, 6 * 160 + 480]
    assert [(q - seqs[0]) % 65536 for q in seqs] == [0, 1, 2, 3]  # no sequence gap: nothing was lost
    nxt = paced.tick(T0 + 0.2201, wall=0.0)
    assert (RtpPacket.parse(nxt.rtp[0][1]).timestamp - stamps[0]) % 2**32 == 10 * 160  # period 11, on schedule


def test_housekeeping_every_fifth_period_reports_timeouts_and_rtcp_and_removed_sessions_stay_silent():
    a, b = session(20, media_timeout=0.05, rtcp_interval=0.1), session(22)
    paced: PacedSessions[str] = PacedSessions(Pacer(T0))
    paced.add(a, "a")
    paced.add(b, "b")
    by_handle = {"a": a, "b": b}
    outs, seen = [], []
    for k in range(1, 11):
        outs.append(paced.tick(T0 + PERIOD * k + 0.001, wall=0.0))
        seen += [(k, h, type(e)) for h in outs[-1].events for e in by_handle[h].drain_events()]  # as the adapter does
    assert [len(o.rtp) for o in outs] == [2] * 10
    assert seen == [(5, "a", MediaTimedOut)]  # at the first housekeeping pass, once
    rtcp = [(k, h, addr) for k, o in enumerate(outs, 1) for h, _, addr in o.rtcp]
    assert ("a", ("192.0.2.7", 40021)) in {(h, addr) for _, h, addr in rtcp}
    assert {k for k, _, _ in rtcp} <= {5, 10}
    paced.remove(b)
    later = paced.tick(T0 + PERIOD * 11 + 0.001, wall=0.0)
    assert [h for h, _, _ in later.rtp] == ["a"] and len(paced) == 1


def test_pacer_slots_validated_for_sip_edge_check():
    assert validate(MediaConfig(pacer_slots=4)) == []
    assert validate(MediaConfig(pacer_slots=0)) == [
        ("$.media.pacer_slots", "must be 1..20 (a wake-up every 20 ms down to every 1 ms)")
    ]
