"""RTP/RTCP packet handling on top of aiortc's packet classes (RFC 3550 §5, §6.4, A.1, A.8).

RTCP reports are built and parsed with aiortc's `RtcpSrPacket`/`RtcpRrPacket`/`RtcpSdesPacket`.
The RTP hot paths use one precompiled `struct` each way: outbound headers are byte-identical
to aiortc's `RtpPacket.serialize`, inbound headers are read into a slotted `RtpHeader` with
aiortc's `RtpPacket.parse` validation (the tests compare both) but without its per-packet
header-extension map, because the pacer and the relay handle tens of thousands a second.
"""

from __future__ import annotations

import struct

from aiortc.rtp import (
    RtcpByePacket,
    RtcpPacket,
    RtcpReceiverInfo,
    RtcpRrPacket,
    RtcpSdesPacket,
    RtcpSenderInfo,
    RtcpSourceInfo,
    RtcpSrPacket,
)

MAX_DATAGRAM = 1500
_HEADER = struct.Struct("!BBHII")
NTP_EPOCH_OFFSET = 2208988800  # seconds between 1900-01-01 and 1970-01-01
RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100


pack_header = _HEADER.pack  # (0x80, marker | payload type, seq, timestamp, ssrc): callers mask the fields


def pack_rtp(payload_type: int, marker: bool, seq: int, timestamp: int, ssrc: int, payload: bytes) -> bytes:
    """V=2, no padding/extension/CSRC; same bytes as aiortc `RtpPacket(...).serialize()`."""
    return _HEADER.pack(0x80, (0x80 if marker else 0) | payload_type, seq & 0xFFFF, timestamp & 0xFFFFFFFF, ssrc) + payload


def is_rtcp(data: bytes) -> bool:
    """RTCP packet types 192-223 occupy the second byte (RFC 5761 §4)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


class RtpHeader:
    """The fields of one inbound RTP packet the session and relay read (CSRCs and extension skipped)."""

    __slots__ = ("marker", "payload_type", "sequence_number", "timestamp", "ssrc", "payload")

    def __init__(self, marker: int, payload_type: int, sequence_number: int, timestamp: int, ssrc: int,
                 payload: bytes) -> None:
        self.marker = marker
        self.payload_type = payload_type
        self.sequence_number = sequence_number
        self.timestamp = timestamp
        self.ssrc = ssrc
        self.payload = payload


_unpack_header = _HEADER.unpack_from


def parse_rtp(data: bytes) -> RtpHeader | None:
    """RFC 3550 §5.1 header, or None for anything aiortc's `RtpPacket.parse` would reject or RTCP."""
    size = len(data)
    if size < 12 or size > MAX_DATAGRAM:
        return None
    first, m_pt, seq, timestamp, ssrc = _unpack_header(data)
    if first & 0xC0 != 0x80 or 192 <= m_pt <= 223:
        return None
    pos = 12
    if first & 0x3F:  # padding, extension or CSRC count: the rare slow path
        pos += 4 * (first & 0x0F)
        if size < pos:
            return None
        if first & 0x10:
            if size < pos + 4:
                return None
            pos += 4 + 4 * ((data[pos + 2] << 8) | data[pos + 3])
            if size < pos:
                return None
        if first & 0x20:
            pad = data[-1]
            if not pad or pad > size - pos:
                return None
            return RtpHeader(m_pt >> 7, m_pt & 0x7F, seq, timestamp, ssrc, data[pos:size - pad])
    return RtpHeader(m_pt >> 7, m_pt & 0x7F, seq, timestamp, ssrc, data[pos:])


def ntp_timestamp(wall: float) -> int:
    seconds = int(wall) + NTP_EPOCH_OFFSET
    fraction = int((wall - int(wall)) * (1 << 32)) & 0xFFFFFFFF
    return ((seconds & 0xFFFFFFFF) << 32) | fraction


class ReceptionStats:
    """Per-source receive statistics for RTCP report blocks (RFC 3550 A.1, A.3, A.8)."""

    def __init__(self) -> None:
        self.ssrc: int | None = None
        self.received = 0
        self.base_seq = 0
        self.max_seq = 0
        self.cycles = 0
        self.jitter = 0.0
        self._transit: float | None = None
        self._expected_prior = 0
        self._received_prior = 0
        self.last_sr: int = 0  # middle 32 bits of the last SR's NTP timestamp
        self.last_sr_at: float | None = None

    def update(self, ssrc: int, seq: int, timestamp: int, now: float, clock_rate: int = 8000) -> None:
        if ssrc != self.ssrc:
            self.__init__()  # type: ignore[misc]  # new source: restart statistics (A.1 init_seq)
            self.ssrc, self.base_seq, self.max_seq = ssrc, seq, seq
        else:
            delta = (seq - self.max_seq) % RTP_SEQ_MOD
            if 0 < delta < MAX_DROPOUT:
                if seq < self.max_seq:
                    self.cycles += RTP_SEQ_MOD
                self.max_seq = seq
        self.received += 1
        transit = now * clock_rate - timestamp
        if self._transit is not None:
            d = abs(transit - self._transit)
            self.jitter += (d - self.jitter) / 16.0
        self._transit = transit

    def report(self, now: float) -> RtcpReceiverInfo | None:
        if self.ssrc is None:
            return None
        extended_max = self.cycles + self.max_seq
        expected = extended_max - self.base_seq + 1
        lost = max(0, expected - self.received)
        expected_interval = expected - self._expected_prior
        received_interval = self.received - self._received_prior
        self._expected_prior, self._received_prior = expected, self.received
        lost_interval = expected_interval - received_interval
        fraction = 0 if expected_interval <= 0 or lost_interval <= 0 else (lost_interval << 8) // expected_interval
        dlsr = 0 if self.last_sr_at is None else int((now - self.last_sr_at) * 65536)
        return RtcpReceiverInfo(
            ssrc=self.ssrc,
            fraction_lost=min(255, fraction),
            packets_lost=min(lost, 0x7FFFFF),
            highest_sequence=extended_max & 0xFFFFFFFF,
            jitter=int(self.jitter),
            lsr=self.last_sr,
            dlsr=dlsr & 0xFFFFFFFF,
        )


def build_report(
    ssrc: int,
    cname: str,
    sent_packets: int,
    sent_octets: int,
    rtp_timestamp: int,
    stats: ReceptionStats,
    now: float,
    wall: float,
    sent_since_last: bool,
) -> bytes:
    """Compound RTCP: SR (if we sent since the last report) or RR, then SDES CNAME (§6.1)."""
    block = stats.report(now)
    reports = [block] if block is not None else []
    first: RtcpSrPacket | RtcpRrPacket
    if sent_since_last:
        info = RtcpSenderInfo(
            ntp_timestamp=ntp_timestamp(wall),
            rtp_timestamp=rtp_timestamp & 0xFFFFFFFF,
            packet_count=sent_packets & 0xFFFFFFFF,
            octet_count=sent_octets & 0xFFFFFFFF,
        )
        first = RtcpSrPacket(ssrc=ssrc, sender_info=info, reports=reports)
    else:
        first = RtcpRrPacket(ssrc=ssrc, reports=reports)
    sdes = RtcpSdesPacket(chunks=[RtcpSourceInfo(ssrc=ssrc, items=[(1, cname.encode()[:255])])])
    return bytes(first) + bytes(sdes)


def build_bye(ssrc: int) -> bytes:
    return bytes(RtcpByePacket(sources=[ssrc]))


def parse_rtcp(data: bytes) -> list[object]:
    if len(data) > MAX_DATAGRAM:
        return []
    try:
        return list(RtcpPacket.parse(data))
    except (ValueError, struct.error, IndexError):
        return []
