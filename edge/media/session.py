"""One RTP audio session, sans-IO (RFC 3550 §5-6, RFC 3551 §4.5.14, RFC 4733, RFC 4961 symmetric RTP).

The adapter feeds datagrams in (`receive_rtp`, `receive_rtcp`) and, once per shared-clock
period, asks for the next outbound packet (`next_packet`) and runs `on_tick` for timers.
Everything the session wants to tell the call layer is queued as past-tense events
(`drain_events`). Inbound audio is decoded only when in-band DTMF detection or a
recording needs PCM.
"""

from __future__ import annotations

import enum
from array import array
from collections import deque
from typing import Sequence

import msgspec

from edge.media import rtp as rtp_mod
from edge.media.codecs import SAMPLES_PER_FRAME, Codec, decode, frame_energy
from edge.media.dtmf import (
    InbandDetector,
    InbandSettings,
    TelephoneEventReceiver,
    telephone_event_payloads,
)
from edge.media.events import Address, DtmfReceived, MediaTimedOut, PlaybackFinished, PlaybackProgress, RemoteLatched
from edge.media.fax import CngDetector, FaxToneDetected
from edge.media.prompts import Prompt
from edge.media.recorder import RecordingFinished, RecordingStopReason, VoicemailRecorder
from edge.media.sdp import Direction, NegotiatedMedia

MAX_PLAYLIST_ITEMS = 256
MAX_PENDING_EVENTS = 256
MAX_DTMF_QUEUE = 256  # packets (~30 digits)
RELATCH_AFTER = 2.0  # seconds the latched source must be silent before another may take over
RELATCH_PACKETS = 3
COMFORT_NOISE_PT = 13


class SessionState(enum.Enum):
    AWAITING_ANSWER = "awaiting_answer"  # we sent the offer (delayed offer); no remote yet
    ACTIVE = "active"
    BRIDGED = "bridged"
    CLOSED = "closed"


MediaEvent = (DtmfReceived | PlaybackFinished | PlaybackProgress | MediaTimedOut | RemoteLatched | RecordingFinished
              | FaxToneDetected)


class SessionSettings(msgspec.Struct, frozen=True):
    media_timeout: float = 30.0
    send_silence: bool = True
    inband_dtmf: bool = True
    inband: InbandSettings = InbandSettings()
    rtcp_interval: float = 5.0
    cname: str = "sip-edge"


class _Playback:
    __slots__ = ("playlist_id", "items", "frames", "index", "played", "current")

    def __init__(self, playlist_id: str, items: list[Prompt | Sequence[bytes]]) -> None:
        self.playlist_id = playlist_id
        self.items = deque(items)
        self.frames: Sequence[bytes] = ()
        self.index = 0
        self.played = 0  # items fully played out
        self.current = False  # an item is loaded in `frames`


class MediaSession:
    """RTP endpoint state for one call leg; never touches sockets or clocks."""

    def __init__(
        self,
        *,
        local_port: int,
        ssrc: int,
        initial_seq: int,
        initial_timestamp: int,
        now: float,
        settings: SessionSettings = SessionSettings(),
        media: NegotiatedMedia | None = None,
        name: str = "",
    ) -> None:
        self.name = name
        self.local_port = local_port
        self.ssrc = ssrc & 0xFFFFFFFF
        self.seq = initial_seq & 0xFFFF
        self.timestamp = initial_timestamp & 0xFFFFFFFF
        self.settings = settings
        self.state = SessionState.AWAITING_ANSWER
        self.media: NegotiatedMedia | None = None
        self.codec: Codec | None = None
        self.remote: Address | None = None
        self.remote_rtcp: Address | None = None
        self.latched = False
        self._candidate: Address | None = None
        self._candidate_count = 0
        self.last_rx = now
        self._timed_out = False
        self._events: deque[MediaEvent] = deque(maxlen=MAX_PENDING_EVENTS)
        self._playback: _Playback | None = None
        self._next_playback_id = 1
        self._marker = True  # the first packet starts a talkspurt
        self._dtmf_out: deque[tuple[bytes, bool]] = deque()
        self._dtmf_ts = 0
        self._te_receiver: TelephoneEventReceiver | None = None
        self._inband: InbandDetector | None = None
        self._cng: CngDetector | None = None  # fax calling tone, when the number routes faxes
        self.recorder: VoicemailRecorder | None = None
        self._last_audio_ts: int | None = None
        self.stats = rtp_mod.ReceptionStats()
        self.sent_packets = 0
        self.sent_octets = 0
        self._sent_since_report = False
        self._next_rtcp = now + settings.rtcp_interval * (0.5 + (self.ssrc % 1000) / 1000)
        self.received_packets = 0
        self.dropped_packets = 0
        self.bridge: object | None = None  # relay.Bridge while bridged
        # Per-packet constants, fixed at negotiation: what the pacer would otherwise recompute 50 times a second.
        self._silence: bytes | None = None
        self._sends = False
        self.audio_pt = -1  # the negotiated payload types as plain ints (read per packet here and by the relay)
        self.event_pt: int | None = None
        if media is not None:
            self.set_remote(media, now)

    # ---- negotiation -------------------------------------------------------------------
    def set_remote(self, media: NegotiatedMedia, now: float) -> None:
        """Apply the negotiated stream (at open, or when the delayed-offer answer arrives)."""
        self.media = media
        self.codec = media.codec
        self._silence = bytes([media.codec.silence_byte]) * SAMPLES_PER_FRAME if self.settings.send_silence else None
        self._sends = media.direction in (Direction.SENDRECV, Direction.SENDONLY)
        self.audio_pt = media.codec.payload_type
        self.event_pt = media.telephone_event_pt
        if not self.latched:
            self.remote = (media.remote_ip, media.remote_port)
            self.remote_rtcp = (media.remote_ip, media.remote_port + 1)
        self._te_receiver = TelephoneEventReceiver(media.telephone_event_pt) if media.telephone_event_pt is not None else None
        use_inband = media.telephone_event_pt is None and self.settings.inband_dtmf
        self._inband = InbandDetector(self.settings.inband) if use_inband else None
        if self.state is SessionState.AWAITING_ANSWER:
            self.state = SessionState.ACTIVE
        self.last_rx = now

    @property
    def sends_media(self) -> bool:
        return self.media is not None and self.media.direction in (Direction.SENDRECV, Direction.SENDONLY)

    @property
    def expects_media(self) -> bool:
        return self.media is not None and self.media.direction in (Direction.SENDRECV, Direction.RECVONLY)

    def detect_fax_tone(self) -> None:
        """Listen for a fax machine's CNG tone until bridged (FaxToneDetected event)."""
        if self._cng is None:
            self._cng = CngDetector()

    # ---- events --------------------------------------------------------------------------
    @property
    def has_events(self) -> bool:
        return bool(self._events)

    def drain_events(self) -> list[MediaEvent]:
        events = list(self._events)
        self._events.clear()
        return events

    def push_event(self, event: MediaEvent) -> None:
        self._events.append(event)

    # ---- playback ------------------------------------------------------------------------
    def play(self, items: Sequence[Prompt | Sequence[bytes]], now: float, interrupt: bool = True,
             playlist_id: str = "") -> str:
        """Queue a playlist (prompts or raw 160-byte payload sequences); returns its id, which
        PlaybackProgress/PlaybackFinished carry: the caller's `playlist_id`, or one made up here.

        `interrupt` stops what is playing (PlaybackFinished interrupted=True for it).
        """
        if len(items) > MAX_PLAYLIST_ITEMS:
            raise ValueError(f"playlist longer than {MAX_PLAYLIST_ITEMS} items")
        if interrupt:
            self.stop_playback(now)
        elif self._playback is not None:
            # Append to the running playlist: one id, one PlaybackFinished.
            room = MAX_PLAYLIST_ITEMS - len(self._playback.items)
            self._playback.items.extend(list(items)[:room])
            return self._playback.playlist_id
        if not playlist_id:
            playlist_id = f"p{self._next_playback_id}"
            self._next_playback_id += 1
        self._playback = _Playback(playlist_id, list(items))
        self._marker = True
        if not items:
            self._finish_playback(now, interrupted=False)
        return playlist_id

    @property
    def playing(self) -> bool:
        return self._playback is not None

    def stop_playback(self, now: float) -> None:
        if self._playback is not None:
            self._finish_playback(now, interrupted=True)

    def enter_bridge(self, bridge: object, now: float) -> None:
        """The relay takes over the outbound stream; queued prompts and DTMF are dropped."""
        self.stop_playback(now)
        self._dtmf_out.clear()
        self.state = SessionState.BRIDGED
        self.bridge = bridge

    def leave_bridge(self) -> None:
        self.bridge = None
        if self.state is SessionState.BRIDGED:
            self.state = SessionState.ACTIVE
            self._marker = True

    def _finish_playback(self, now: float, interrupted: bool) -> None:
        assert self._playback is not None
        self._events.append(PlaybackFinished(self._playback.playlist_id, now, interrupted))
        self._playback = None
        self._marker = True  # what follows (silence or the next prompt) is a new talkspurt

    def _next_frame(self, now: float) -> bytes | None:
        playback = self._playback
        while playback is not None:
            if playback.index < len(playback.frames):
                frame = playback.frames[playback.index]
                playback.index += 1
                return frame
            if playback.current:
                self._events.append(PlaybackProgress(playback.playlist_id, playback.played, now))
                playback.played += 1
                playback.current = False
            if not playback.items:
                self._finish_playback(now, interrupted=False)
                return None
            item = playback.items.popleft()
            playback.frames = item.frames(self.codec) if isinstance(item, Prompt) else item  # type: ignore[arg-type]
            playback.index = 0
            playback.current = True
        return None

    def send_dtmf(self, digit: str, duration_ms: int = 100) -> None:
        """RFC 4733 send: queued packets go out in place of audio, one per period."""
        if self.media is None or self.media.telephone_event_pt is None:
            raise ValueError("telephone-event not negotiated on this session")
        packets = telephone_event_payloads(digit, duration_ms)
        if len(self._dtmf_out) + len(packets) > MAX_DTMF_QUEUE:
            raise ValueError("DTMF send queue full")
        self._dtmf_out.extend(packets)

    # ---- outbound (called by the shared pacer) -------------------------------------------
    def next_packet(self, now: float) -> bytes | None:
        """The datagram for this 20 ms period, or None; advances the media clock either way.

        The common case (a prompt frame or silence) is one header pack and one concatenation:
        frames are G.711 encoded once per prompt, never per packet.
        """
        if self.state is not SessionState.ACTIVE or self.codec is None:
            return None
        timestamp = self.timestamp
        self.timestamp = (timestamp + SAMPLES_PER_FRAME) & 0xFFFFFFFF
        if self._dtmf_out:
            return self._next_dtmf(timestamp)
        playback = self._playback
        if playback is not None and playback.index < len(playback.frames):
            frame: bytes | None = playback.frames[playback.index]
            playback.index += 1
        else:
            frame = self._next_frame(now)
            if frame is None:
                frame = self._silence
        if frame is None or not self._sends or self.remote is None:
            self._marker = True
            return None
        seq = self.seq
        data = rtp_mod.pack_header(0x80, (0x80 | self.audio_pt) if self._marker else self.audio_pt,
                                   seq, timestamp, self.ssrc) + frame
        self._marker = False
        self.seq = (seq + 1) & 0xFFFF
        self.sent_packets += 1
        self.sent_octets += len(frame)
        self._sent_since_report = True
        return data

    def skip_periods(self, count: int) -> None:
        """Periods the pacer dropped after a stall: the media clock moves on without packets, so the
        receiver sees a timestamp gap (concealed like loss) instead of a stream running late for good."""
        if self.state is SessionState.ACTIVE and count > 0:
            self.timestamp = (self.timestamp + count * SAMPLES_PER_FRAME) & 0xFFFFFFFF

    def _next_dtmf(self, timestamp: int) -> bytes | None:
        payload, marker = self._dtmf_out.popleft()
        if marker:
            self._dtmf_ts = timestamp  # every packet of one event carries its start timestamp
        assert self.media is not None and self.media.telephone_event_pt is not None
        if not self._dtmf_out:
            self._marker = True  # audio after the event restarts a talkspurt
        if self.remote is None:
            return None
        data = rtp_mod.pack_rtp(self.media.telephone_event_pt, marker, self.seq, self._dtmf_ts, self.ssrc, payload)
        self._count_sent(len(payload))
        return data

    def _count_sent(self, octets: int) -> None:
        self.seq = (self.seq + 1) & 0xFFFF
        self.sent_packets += 1
        self.sent_octets += octets
        self._sent_since_report = True

    def emit_relayed(self, payload_type: int, marker: bool, seq: int, timestamp: int, payload: bytes) -> bytes:
        """Packet forwarded by the relay, stamped with this session's SSRC and counters (seq and timestamp in range)."""
        self.seq = (seq + 1) & 0xFFFF
        self.timestamp = (timestamp + SAMPLES_PER_FRAME) & 0xFFFFFFFF
        self.sent_packets += 1
        self.sent_octets += len(payload)
        self._sent_since_report = True
        return rtp_mod.pack_header(0x80, (0x80 | payload_type) if marker else payload_type, seq, timestamp, self.ssrc) + payload

    # ---- inbound -------------------------------------------------------------------------
    def receive_rtp(self, data: bytes, addr: Address, now: float) -> rtp_mod.RtpHeader | None:
        """Validate, latch, account and interpret one datagram; returns the packet if accepted."""
        if self.state is SessionState.CLOSED or self.media is None:
            return None
        packet = rtp_mod.parse_rtp(data)
        pt = packet.payload_type if packet is not None else -1
        if packet is None or (pt != self.audio_pt and pt != self.event_pt):
            if pt != COMFORT_NOISE_PT:
                self.dropped_packets += 1
            return None
        if not self._accept_source(addr, now):
            self.dropped_packets += 1
            return None
        self.received_packets += 1
        self.last_rx = now
        self._timed_out = False
        self.stats.update(packet.ssrc, packet.sequence_number, packet.timestamp, now)
        if pt == self.event_pt:
            if self._te_receiver is not None:
                event = self._te_receiver.receive(packet.payload, packet.timestamp, now)
                if event is not None:
                    self._events.append(event)
            return packet
        # Once bridged the screening is over: no decode or Goertzel per packet for DTMF nobody reads.
        listening = (self._inband is not None or self._cng is not None) and self.state is not SessionState.BRIDGED
        if listening or self.recorder is not None:
            self._consume_audio(packet.payload, packet.timestamp, now, listening)
        return packet

    def _consume_audio(self, payload: bytes, timestamp: int, now: float, listening: bool) -> None:
        assert self.codec is not None
        pcm = decode(payload, self.codec)
        samples = array("h")
        samples.frombytes(pcm)
        if listening and self._inband is not None:
            self._events.extend(self._inband.feed(samples, now))
        if listening and self._cng is not None:
            fax = self._cng.feed(samples, now)
            if fax is not None:
                self._events.append(fax)
        recorder = self.recorder
        if recorder is not None and recorder.finished is None:
            if self._last_audio_ts is not None:
                gap = ((timestamp - self._last_audio_ts) & 0xFFFFFFFF) - SAMPLES_PER_FRAME
                if 0 < gap <= 8000:
                    recorder.fill_gap(gap)
            finished = recorder.feed(pcm, frame_energy(samples), now)
            if finished is not None:
                self._events.append(finished)
        self._last_audio_ts = timestamp

    def _accept_source(self, addr: Address, now: float) -> bool:
        """Symmetric RTP latching: first source wins; another takes over only after the first went quiet."""
        if not self.latched:
            self.latched = True
            self._latch(addr, now, first=True)
            return True
        if addr == self.remote:
            self._candidate, self._candidate_count = None, 0
            return True
        if addr != self._candidate:
            self._candidate, self._candidate_count = addr, 0
        self._candidate_count += 1
        if now - self.last_rx >= RELATCH_AFTER and self._candidate_count >= RELATCH_PACKETS:
            self._latch(addr, now)
            self._candidate, self._candidate_count = None, 0
            return True
        return False

    def _latch(self, addr: Address, now: float, first: bool = False) -> None:
        # The first packet is always reported: it also tells the call layer the caller's media flows.
        if first or addr != self.remote:
            self._events.append(RemoteLatched(addr, now))
        self.remote = addr
        self.remote_rtcp = (addr[0], addr[1] + 1)

    def receive_rtcp(self, data: bytes, addr: Address, now: float) -> None:
        for packet in rtp_mod.parse_rtcp(data):
            if isinstance(packet, rtp_mod.RtcpSrPacket):
                self.stats.last_sr = (packet.sender_info.ntp_timestamp >> 16) & 0xFFFFFFFF
                self.stats.last_sr_at = now
        if self.latched and self.remote is not None and addr[0] == self.remote[0]:
            self.remote_rtcp = addr  # symmetric RTCP as well

    # ---- timers --------------------------------------------------------------------------
    def on_tick(self, now: float) -> None:
        """Media timeout and recording guard; cheap, called every period by the pacer."""
        if self.state is SessionState.CLOSED or self.media is None:
            return
        silent_for = now - self.last_rx
        if not self._timed_out and self.expects_media and silent_for >= self.settings.media_timeout:
            self._timed_out = True
            self._events.append(MediaTimedOut(now, round(silent_for, 3)))
        if self.recorder is not None:
            finished = self.recorder.check(now)
            if finished is not None:
                self._events.append(finished)

    def rtcp_due(self, now: float, wall: float) -> bytes | None:
        """Compound SR/RR + SDES every ~rtcp_interval seconds (RFC 3550 §6.4, minimal)."""
        if now < self._next_rtcp or self.state is SessionState.CLOSED or self.remote_rtcp is None:
            return None
        self._next_rtcp = now + self.settings.rtcp_interval
        report = rtp_mod.build_report(
            self.ssrc,
            self.settings.cname,
            self.sent_packets,
            self.sent_octets,
            self.timestamp,
            self.stats,
            now,
            wall,
            self._sent_since_report,
        )
        self._sent_since_report = False
        return report

    # ---- recording -----------------------------------------------------------------------
    def start_recording(self, recorder: VoicemailRecorder) -> None:
        if self.recorder is not None and self.recorder.finished is None:
            raise ValueError("a recording is already running on this session")
        self.recorder = recorder
        self._last_audio_ts = None

    def stop_recording(self, reason: RecordingStopReason, now: float) -> None:
        if self.recorder is not None:
            finished = self.recorder.stop(reason, now)
            if finished is not None:
                self._events.append(finished)

    def close(self, now: float) -> bytes:
        """Ends the session; returns an RTCP BYE for the adapter to send (best effort)."""
        self.stop_playback(now)
        self.stop_recording(RecordingStopReason.HANGUP, now)
        self.state = SessionState.CLOSED
        return rtp_mod.build_bye(self.ssrc)
