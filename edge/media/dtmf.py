"""DTMF from all three paths: RFC 4733 telephone-events (§2.3, §2.5), SIP INFO bodies
(application/dtmf-relay as used by Cisco/Asterisk, application/dtmf), and in-band
tones (ITU-T Q.24 limits) detected with Goertzel bins when no telephone-event was negotiated.
"""

from __future__ import annotations

import enum
import struct
from array import array
from collections import OrderedDict

import msgspec

from edge.media.codecs import frame_energy
from edge.media.goertzel import KEYPAD, BlockAnalyzer

EVENT_DIGITS = "0123456789*#ABCD"  # RFC 4733 §3.2 event codes 0..15
MAX_INFO_BODY = 1024
SAMPLES_PER_PACKET = 160


class DtmfSource(enum.Enum):
    RFC4733 = "rfc4733"
    INFO = "info"
    INBAND = "inband"


class DtmfReceived(msgspec.Struct, frozen=True):
    """A digit pressed by the remote party, reported once per key press."""

    digit: str
    source: DtmfSource
    at: float
    duration_ms: int = 0
    volume_dbm0: int = 0


class TelephoneEventReceiver:
    """RFC 4733 receive side: one DtmfReceived per event, whatever the packet repetitions.

    An event is identified by its RTP timestamp (§2.5.1.2: all packets of one event share
    it); the start, every update and the three redundant end packets carry the same one.
    A new press of the same digit starts at a new timestamp, so it is reported again.
    The first packet seen is reported, so a lost start packet still yields the digit.
    """

    def __init__(self, payload_type: int, history: int = 16) -> None:
        self.payload_type = payload_type
        self._history = history
        self._seen: OrderedDict[tuple[int, int], bool] = OrderedDict()
        self.duplicates = 0

    def receive(self, payload: bytes, timestamp: int, now: float) -> DtmfReceived | None:
        if len(payload) < 4:
            return None
        event, flags, duration = struct.unpack_from("!BBH", payload)
        if event >= len(EVENT_DIGITS):
            return None  # not a keypad event (tones, flash...)
        end = bool(flags & 0x80)
        key = (timestamp, event)
        if key in self._seen:
            self.duplicates += 1
            if end:
                self._seen[key] = True
            return None
        self._seen[key] = end
        while len(self._seen) > self._history:
            self._seen.popitem(last=False)
        return DtmfReceived(
            digit=EVENT_DIGITS[event],
            source=DtmfSource.RFC4733,
            at=now,
            duration_ms=duration // 8,
            volume_dbm0=-(flags & 0x3F),
        )


def telephone_event_payloads(digit: str, duration_ms: int = 100, volume: int = 10) -> list[tuple[bytes, bool]]:
    """RFC 4733 send side: (payload, marker) per 20 ms packet; the end packet is sent 3 times (§2.5.1.4)."""
    event = EVENT_DIGITS.index(digit.upper())
    total = max(SAMPLES_PER_PACKET, duration_ms * 8)
    packets: list[tuple[bytes, bool]] = []
    elapsed = SAMPLES_PER_PACKET
    while elapsed < total:
        packets.append((struct.pack("!BBH", event, volume & 0x3F, elapsed), not packets))
        elapsed += SAMPLES_PER_PACKET
    end = struct.pack("!BBH", event, 0x80 | (volume & 0x3F), min(total, 0xFFFF))
    packets += [(end, not packets)] + [(end, False)] * 2
    return packets


_SIGNAL_CODES = {str(i): EVENT_DIGITS[i] for i in range(16)}


def _normalise_signal(value: str) -> str | None:
    value = value.strip().upper()
    if len(value) == 1 and value in EVENT_DIGITS:
        return value
    return _SIGNAL_CODES.get(value)  # some gateways send the event code ("10" for *, "11" for #)


def parse_info_body(body: bytes | str, content_type: str, now: float) -> DtmfReceived | None:
    """SIP INFO DTMF: `application/dtmf-relay` (Signal=5 / Duration=160) or `application/dtmf` (5)."""
    if len(body) > MAX_INFO_BODY:
        return None
    text = body.decode("utf-8", "replace") if isinstance(body, bytes) else body
    ctype = content_type.split(";", 1)[0].strip().lower()
    if ctype == "application/dtmf-relay":
        digit = None
        duration = 0
        for line in text.splitlines():
            name, sep, value = line.partition("=")
            if not sep:
                continue
            name = name.strip().lower()
            if name == "signal":
                digit = _normalise_signal(value)
            elif name == "duration" and value.strip().isascii() and value.strip().isdigit() and len(value.strip()) <= 6:
                duration = int(value.strip())
        if digit is None:
            return None
        return DtmfReceived(digit=digit, source=DtmfSource.INFO, at=now, duration_ms=duration)
    if ctype == "application/dtmf":
        digit = _normalise_signal(text)
        return DtmfReceived(digit=digit, source=DtmfSource.INFO, at=now) if digit else None
    return None


class InbandSettings(msgspec.Struct, frozen=True):
    """Q.24-style acceptance limits; defaults accept >= ~30 ms tones at >= -36 dBm0 per tone."""

    min_energy: float = 100_000.0  # mean square of the window (~amplitude 450 per tone)
    min_tone_fraction: float = 0.6  # row+col share of window energy (rejects speech, noise)
    min_single_fraction: float = 0.12
    max_normal_twist_db: float = 8.0  # column tone weaker than row tone
    max_reverse_twist_db: float = 4.0
    max_neighbour_ratio: float = 0.25  # other bins of the same group vs the peak
    min_hits: int = 2  # consecutive windows (hop 10 ms, window 20 ms)
    gap_windows: int = 2  # windows without the digit before it can be reported again


class InbandDetector:
    """Goertzel DTMF detector over decoded 8 kHz PCM: 20 ms windows, 10 ms hop."""

    WINDOW = 160
    HOP = 80

    def __init__(self, settings: InbandSettings = InbandSettings()) -> None:
        self.settings = settings
        self._analyzer = BlockAnalyzer(self.WINDOW)
        self._buffer = array("h")
        self._pending: str | None = None
        self._hits = 0
        self._latched: str | None = None
        self._gap = 0
        self._normal = 10 ** (-settings.max_normal_twist_db / 10)
        self._reverse = 10 ** (settings.max_reverse_twist_db / 10)

    def classify(self, window: array) -> str | None:
        """The digit one window carries, or None."""
        s = self.settings
        energy = frame_energy(window)
        if energy < s.min_energy:
            return None
        f = self._analyzer.fractions(window, energy * len(window))
        rows, cols = f[:4], f[4:]
        r = max(range(4), key=rows.__getitem__)
        c = max(range(4), key=cols.__getitem__)
        fr, fc = rows[r], cols[c]
        if fr + fc < s.min_tone_fraction or fr < s.min_single_fraction or fc < s.min_single_fraction:
            return None
        if not self._normal <= fc / fr <= self._reverse:
            return None
        limit = s.max_neighbour_ratio
        if any(v > fr * limit for i, v in enumerate(rows) if i != r) or any(
            v > fc * limit for i, v in enumerate(cols) if i != c
        ):
            return None
        return KEYPAD[r][c]

    def feed(self, samples: array, now: float) -> list[DtmfReceived]:
        self._buffer.extend(samples)
        found: list[DtmfReceived] = []
        while len(self._buffer) >= self.WINDOW:
            digit = self.classify(self._buffer[: self.WINDOW])
            del self._buffer[: self.HOP]
            event = self._step(digit, now)
            if event is not None:
                found.append(event)
        return found

    def _step(self, digit: str | None, now: float) -> DtmfReceived | None:
        if digit is not None and digit == self._pending:
            self._hits += 1
        else:
            self._pending, self._hits = digit, (1 if digit else 0)
        if self._latched is not None:
            if digit == self._latched:
                self._gap = 0
                return None
            self._gap += 1
            if self._gap < self.settings.gap_windows:
                return None
            self._latched = None
        if self._pending is not None and self._hits >= self.settings.min_hits:
            self._latched, self._gap = self._pending, 0
            duration = (self.WINDOW + self.HOP * (self._hits - 1)) // 8
            return DtmfReceived(digit=self._pending, source=DtmfSource.INBAND, at=now, duration_ms=duration)
        return None
