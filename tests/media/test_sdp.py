import pytest

from edge.media import sdp
from edge.media.codecs import Codec

HEAD = "v=0\r\no=alice 1 1 IN IP4 192.0.2.10\r\ns=-\r\nc=IN IP4 192.0.2.10\r\nt=0 0\r\n"


def offer(*media: str) -> str:
    return HEAD + "".join(media)


AUDIO_TE = "m=audio 4000 RTP/AVP 8 0 96\r\na=rtpmap:96 telephone-event/8000\r\na=fmtp:96 0-15\r\n"

ACCEPT_CASES = [
    ("pcma-first", offer(AUDIO_TE), Codec.PCMA, 96),
    ("pcmu-first", offer("m=audio 4000 RTP/AVP 0 8 101\r\na=rtpmap:101 telephone-event/8000\r\n"), Codec.PCMU, 101),
    ("g729-then-pcmu", offer("m=audio 4000 RTP/AVP 18 0\r\na=rtpmap:18 G729/8000\r\n"), Codec.PCMU, None),
    ("dynamic-pcmu", offer("m=audio 4000 RTP/AVP 97\r\na=rtpmap:97 PCMU/8000\r\n"), Codec.PCMU, None),
    ("te-at-16k-ignored", offer("m=audio 4000 RTP/AVP 0 100\r\na=rtpmap:100 telephone-event/16000\r\n"), Codec.PCMU, None),
]


@pytest.mark.parametrize("name,text,codec,te_pt", ACCEPT_CASES, ids=[c[0] for c in ACCEPT_CASES])
def test_negotiate_accepts_in_offerer_order(name, text, codec, te_pt):
    answer = sdp.negotiate(text, "198.51.100.1", 30000)
    assert isinstance(answer, sdp.Answer)
    assert answer.media.codec is codec
    assert answer.media.telephone_event_pt == te_pt
    assert (answer.media.remote_ip, answer.media.remote_port) == ("192.0.2.10", 4000)
    parsed = sdp.parse(answer.sdp)
    (m,) = parsed.media
    expected_formats = (str(codec.payload_type),) + ((str(te_pt),) if te_pt is not None else ())
    assert (m.port, m.proto, m.formats, m.ptime) == (30000, "RTP/AVP", expected_formats, 20)
    assert parsed.connection == "198.51.100.1"


REFUSE_CASES = [
    ("only-g729", offer("m=audio 4000 RTP/AVP 18\r\na=rtpmap:18 G729/8000\r\n"), "no common codec (offered G729)"),
    ("only-video", offer("m=video 4002 RTP/AVP 31\r\n"), "no audio stream offered (media: video)"),
    ("srtp", offer("m=audio 4000 RTP/SAVP 0\r\n"), "unsupported transport RTP/SAVP"),
    ("garbage", "hello world", "malformed SDP: not an SDP line: 'hello world'"),
    ("no-version", "o=- 1 1 IN IP4 192.0.2.1\r\n", "malformed SDP: SDP must start with v=0"),
    ("bad-port", offer("m=audio 99999 RTP/AVP 0\r\n"), "malformed SDP: m= port out of range: 99999"),
    ("no-origin", "v=0\r\ns=-\r\nm=audio 4000 RTP/AVP 0\r\n", "malformed SDP: SDP has no o= line"),
    ("fqdn-connection", offer("m=audio 4000 RTP/AVP 0\r\nc=IN IP4 host.example\r\n"), "malformed SDP: c= address is not an IP literal: 'host.example'"),
    ("huge", HEAD + "a=x\r\n" * 5000, "malformed SDP: SDP larger than 16384 bytes"),
    ("port-zero-only", offer("m=audio 0 RTP/AVP 0\r\n"), "no usable audio stream"),
]


@pytest.mark.parametrize("name,text,reason", REFUSE_CASES, ids=[c[0] for c in REFUSE_CASES])
def test_negotiate_refuses_with_488(name, text, reason):
    refusal = sdp.negotiate(text, "198.51.100.1", 30000)
    assert refusal == sdp.Refusal(reason)
    assert refusal.status == 488


def test_negotiate_answer_keeps_m_line_count_and_rejects_others():
    text = offer("m=video 5000 RTP/AVP 31\r\n", AUDIO_TE, "m=image 6000 udptl t38\r\n")
    answer = sdp.negotiate(text, "198.51.100.1", 30000)
    parsed = sdp.parse(answer.sdp)
    assert [(m.kind, m.port) for m in parsed.media] == [("video", 0), ("audio", 30000), ("image", 0)]
    assert answer.media.media_index == 1


@pytest.mark.parametrize(
    "offered,answered",
    [("sendonly", "recvonly"), ("recvonly", "sendonly"), ("inactive", "inactive"), ("sendrecv", "sendrecv")],
)
def test_negotiate_direction_reversed(offered, answered):
    answer = sdp.negotiate(offer(AUDIO_TE + f"a={offered}\r\n"), "198.51.100.1", 30000)
    assert f"a={answered}\r\n" in answer.sdp
    assert answer.media.direction.value == answered


def test_negotiate_media_level_connection_overrides_session():
    answer = sdp.negotiate(offer("m=audio 4000 RTP/AVP 0\r\nc=IN IP4 203.0.113.5\r\n"), "198.51.100.1", 30000)
    assert answer.media.remote_ip == "203.0.113.5"


def test_make_offer_then_accept_answer_delayed_offer():
    ours = sdp.make_offer("198.51.100.1", 30000, session_id=42)
    assert "m=audio 30000 RTP/AVP 0 8 101\r\n" in ours.sdp
    answer = sdp.negotiate(ours.sdp, "192.0.2.10", 4000)
    negotiated = sdp.accept_answer(ours, answer.sdp)
    assert negotiated.codec is Codec.PCMU
    assert negotiated.telephone_event_pt == 101
    assert (negotiated.remote_ip, negotiated.remote_port) == ("192.0.2.10", 4000)


def test_accept_answer_refuses_codec_we_did_not_offer():
    ours = sdp.make_offer("198.51.100.1", 30000, codecs=(Codec.PCMA,))
    reply = offer("m=audio 4000 RTP/AVP 0\r\n")
    assert sdp.accept_answer(ours, reply) == sdp.Refusal("answer has no accepted audio stream with PCMU or PCMA")


@pytest.mark.parametrize(
    "text,fax",
    [
        (offer("m=image 6000 udptl t38\r\na=T38FaxVersion:0\r\n"), True),
        (offer(AUDIO_TE + "a=T38FaxRateManagement:transferredTCF\r\n"), True),
        (offer(AUDIO_TE), False),
        (offer("m=image 0 udptl t38\r\n", AUDIO_TE), False),
    ],
    ids=["image-t38", "t38-attr-on-audio", "plain-audio", "rejected-image"],
)
def test_is_fax(text, fax):
    assert sdp.is_fax(sdp.parse(text)) is fax


def test_parse_caps_too_many_media_lines():
    with pytest.raises(sdp.SdpError, match="too many m= lines"):
        sdp.parse(HEAD + "m=audio 4000 RTP/AVP 0\r\n" * 17)


def test_parse_accepts_lf_only_line_endings_and_ipv6():
    text = "v=0\no=- 1 1 IN IP6 2001:db8::1\ns=-\nc=IN IP6 2001:db8::1\nt=0 0\nm=audio 4000 RTP/AVP 0\n"
    answer = sdp.negotiate(text, "2001:db8::2", 30000)
    assert answer.media.remote_ip == "2001:db8::1"
    assert "c=IN IP6 2001:db8::2\r\n" in answer.sdp
