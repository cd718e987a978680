from array import array

import av
import pytest

from edge.media.codecs import Codec, decode, decode_samples, encode, transcode


@pytest.mark.parametrize("codec,name", [(Codec.PCMU, "pcm_mulaw"), (Codec.PCMA, "pcm_alaw")], ids=["pcmu", "pcma"])
def test_decode_matches_ffmpeg(codec, name):
    context = av.CodecContext.create(name, "r")
    context.format, context.layout, context.sample_rate = "s16", "mono", 8000
    frames = context.decode(av.Packet(bytes(range(256))))
    reference = b"".join(bytes(f.planes[0])[: f.samples * 2] for f in frames)
    assert decode(bytes(range(256)), codec) == reference


@pytest.mark.parametrize("codec", list(Codec), ids=lambda c: c.name)
def test_encode_picks_nearest_code(codec):
    levels = sorted(set(decode_samples(bytes(range(256)), codec)))
    probe = array("h", range(-32768, 32768, 97))
    decoded = decode_samples(encode(probe.tobytes(), codec), codec)
    for x, y in zip(probe, decoded):
        assert abs(x - y) == min(abs(x - v) for v in levels)


@pytest.mark.parametrize("codec", list(Codec), ids=lambda c: c.name)
def test_silence_byte_decodes_to_near_zero(codec):
    (value,) = decode_samples(bytes([codec.silence_byte]), codec)
    assert abs(value) <= 8


def test_transcode_pcmu_to_pcma_preserves_level():
    probe = array("h", range(-30000, 30000, 1001))
    ulaw = encode(probe.tobytes(), Codec.PCMU)
    alaw = transcode(ulaw, Codec.PCMU, Codec.PCMA)
    direct = decode_samples(alaw, Codec.PCMA)
    via_u = decode_samples(ulaw, Codec.PCMU)
    assert all(abs(a - b) <= max(64, abs(b) // 16) for a, b in zip(direct, via_u))
    assert transcode(ulaw, Codec.PCMU, Codec.PCMU) is ulaw
