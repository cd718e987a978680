"""G.711 µ-law and A-law (ITU-T G.711, RFC 3551 §4.5.14 PCMU/PCMA) with lookup tables.

Decoding is the only per-packet codec work (in-band DTMF, voicemail); it runs as two
`bytes.translate` passes and a slice interleave so it never loops in Python.
Encoding happens once per prompt at load time through a 64 Ki-entry table.
"""

from __future__ import annotations

import enum
import sys
from array import array

SAMPLE_RATE = 8000
SAMPLES_PER_FRAME = 160  # 20 ms at 8 kHz
FRAME_BYTES = SAMPLES_PER_FRAME  # one byte per sample for G.711


class Codec(enum.Enum):
    """The two narrow-band codecs the edge serves, with their static payload types."""

    PCMU = 0
    PCMA = 8

    @property
    def payload_type(self) -> int:
        return self.value

    @property
    def silence_byte(self) -> int:
        # Encoded value of linear 0: µ-law 0xFF, A-law 0xD5.
        return 0xFF if self is Codec.PCMU else 0xD5


def _ulaw_to_linear(u: int) -> int:
    u = ~u & 0xFF
    t = ((u & 0x0F) << 3) + 0x84
    t <<= (u & 0x70) >> 4
    return (0x84 - t) if (u & 0x80) else (t - 0x84)


def _alaw_to_linear(a: int) -> int:
    a ^= 0x55
    t = (a & 0x0F) << 4
    seg = (a & 0x70) >> 4
    if seg == 0:
        t += 8
    elif seg == 1:
        t += 0x108
    else:
        t += 0x108
        t <<= seg - 1
    return t if (a & 0x80) else -t


def _nearest_encoder(decode_table: list[int], zero_code: int) -> bytes:
    """64 Ki table mapping every 16-bit sample to the code whose decoded value is nearest.

    Rounding to nearest (as ffmpeg's pcm_tablegen does) halves the quantisation error of
    the classic truncating g711.c encoder.
    """
    points = sorted((v, code) for code, v in enumerate(decode_table) if v != 0 or code == zero_code)
    values = [v for v, _ in points]
    out = bytearray(65536)
    j = 0
    for sample in range(-32768, 32768):
        while j + 1 < len(values) and abs(values[j + 1] - sample) <= abs(values[j] - sample):
            j += 1
        out[sample & 0xFFFF] = points[j][1]
    return bytes(out)


def _byte_tables(decode: list[int]) -> tuple[bytes, bytes]:
    lo = bytes(v & 0xFF for v in decode)
    hi = bytes((v >> 8) & 0xFF for v in decode)
    return lo, hi


_ULAW_DECODE = [_ulaw_to_linear(i) for i in range(256)]
_ALAW_DECODE = [_alaw_to_linear(i) for i in range(256)]
_ULAW_LO, _ULAW_HI = _byte_tables(_ULAW_DECODE)
_ALAW_LO, _ALAW_HI = _byte_tables(_ALAW_DECODE)
# Index by the unsigned 16-bit view of a sample (array('H')), so negative samples land in 32768..65535.
_ULAW_ENCODE = _nearest_encoder(_ULAW_DECODE, 0xFF)
_ALAW_ENCODE = _nearest_encoder(_ALAW_DECODE, 0xD5)
_BIG_ENDIAN = sys.byteorder == "big"


def decode(payload: bytes, codec: Codec) -> bytes:
    """G.711 payload -> signed 16-bit native-endian PCM bytes (two per input byte)."""
    lo_t, hi_t = (_ULAW_LO, _ULAW_HI) if codec is Codec.PCMU else (_ALAW_LO, _ALAW_HI)
    out = bytearray(2 * len(payload))
    lo, hi = payload.translate(lo_t), payload.translate(hi_t)
    if _BIG_ENDIAN:
        out[0::2], out[1::2] = hi, lo
    else:
        out[0::2], out[1::2] = lo, hi
    return bytes(out)


def decode_samples(payload: bytes, codec: Codec) -> array:
    """G.711 payload -> array('h') of linear samples."""
    samples = array("h")
    samples.frombytes(decode(payload, codec))
    return samples


def encode(pcm: bytes, codec: Codec) -> bytes:
    """Signed 16-bit native-endian PCM bytes -> G.711 payload (load-time use)."""
    unsigned = array("H")
    unsigned.frombytes(pcm[: len(pcm) & ~1])
    table = _ULAW_ENCODE if codec is Codec.PCMU else _ALAW_ENCODE
    return bytes(map(table.__getitem__, unsigned))


def transcode(payload: bytes, source: Codec, target: Codec) -> bytes:
    """Relay between legs that negotiated different laws (PCMU <-> PCMA)."""
    if source is target:
        return payload
    return payload.translate(_ULAW_TO_ALAW if source is Codec.PCMU else _ALAW_TO_ULAW)


_ULAW_TO_ALAW = bytes(_ALAW_ENCODE[v & 0xFFFF] for v in _ULAW_DECODE)
_ALAW_TO_ULAW = bytes(_ULAW_ENCODE[v & 0xFFFF] for v in _ALAW_DECODE)


def frame_energy(samples: array) -> float:
    """Mean square of a block of linear samples (silence and DTMF gates)."""
    if not samples:
        return 0.0
    return sum(map(int.__mul__, samples, samples)) / len(samples)
