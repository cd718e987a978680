"""Anchored-media relay between two sessions (RFC 3550 §7.1 translator without mixing).

Each direction re-stamps packets with the outgoing session's SSRC, continuing its own
sequence and timestamp counters, so the far end sees one stream across prompt playback
and the bridged conversation. A change of source SSRC (re-INVITE, PBX transfer) re-bases
the offsets and sets the marker bit. Audio is transcoded between PCMU and PCMA when the
legs differ; telephone-events are passed through with the payload type each leg agreed.
"""

from __future__ import annotations

from edge.media.codecs import transcode
from edge.media.rtp import RtpHeader
from edge.media.session import MediaSession, SessionState


class _Direction:
    __slots__ = ("source", "target", "src_ssrc", "seq_offset", "ts_offset", "forwarded", "dropped")

    def __init__(self, source: MediaSession, target: MediaSession) -> None:
        self.source = source
        self.target = target
        self.src_ssrc: int | None = None
        self.seq_offset = 0
        self.ts_offset = 0
        self.forwarded = 0
        self.dropped = 0

    def rewrite(self, packet: RtpHeader) -> bytes | None:
        source, target = self.source, self.target
        if source.codec is None or target.codec is None:
            return None
        pt = packet.payload_type
        if pt == source.audio_pt:
            pt = target.audio_pt
            payload = packet.payload if source.codec is target.codec else transcode(packet.payload, source.codec, target.codec)
        elif pt == source.event_pt and target.event_pt is not None:
            pt, payload = target.event_pt, packet.payload
        else:
            self.dropped += 1  # e.g. events toward a leg without telephone-event
            return None
        marker = bool(packet.marker)
        if packet.ssrc != self.src_ssrc:
            self.src_ssrc = packet.ssrc
            self.seq_offset = (self.target.seq - packet.sequence_number) & 0xFFFF
            self.ts_offset = (self.target.timestamp - packet.timestamp) & 0xFFFFFFFF
            marker = True
        self.forwarded += 1
        return self.target.emit_relayed(
            pt,
            marker,
            (packet.sequence_number + self.seq_offset) & 0xFFFF,
            (packet.timestamp + self.ts_offset) & 0xFFFFFFFF,
            payload,
        )


class Bridge:
    """Both directions of one A-leg <-> B-leg relay; the sessions stop pacing while bridged."""

    def __init__(self, a: MediaSession, b: MediaSession, now: float) -> None:
        if a is b:
            raise ValueError("cannot bridge a session to itself")
        for session in (a, b):
            if session.state is not SessionState.ACTIVE:
                raise ValueError(f"session {session.name or session.local_port} is {session.state.value}")
        self.a, self.b = a, b
        self._a_to_b = _Direction(a, b)
        self._b_to_a = _Direction(b, a)
        for session in (a, b):
            session.enter_bridge(self, now)

    def peer(self, session: MediaSession) -> MediaSession:
        return self.b if session is self.a else self.a

    def forward(self, source: MediaSession, packet: RtpHeader) -> tuple[MediaSession, bytes] | None:
        """Rewrite an accepted inbound packet for the other leg: (target session, datagram)."""
        direction = self._a_to_b if source is self.a else self._b_to_a
        if direction.target.state is not SessionState.BRIDGED or direction.target.remote is None:
            return None
        data = direction.rewrite(packet)
        return (direction.target, data) if data is not None else None

    def unbridge(self) -> None:
        """Back to paced playback on both legs that are still open (e.g. PBX leg hung up)."""
        for session in (self.a, self.b):
            session.leave_bridge()

    @property
    def counters(self) -> dict[str, int]:
        return {
            "a_to_b_forwarded": self._a_to_b.forwarded,
            "b_to_a_forwarded": self._b_to_a.forwarded,
            "dropped": self._a_to_b.dropped + self._b_to_a.dropped,
        }
