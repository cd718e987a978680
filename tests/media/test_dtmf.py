import math
import random
from array import array

import pytest

from edge.media.codecs import Codec, decode_samples, encode
from edge.media.dtmf import (
    DtmfReceived,
    DtmfSource,
    InbandDetector,
    TelephoneEventReceiver,
    parse_info_body,
    telephone_event_payloads,
)
from edge.media.goertzel import BlockAnalyzer, goertzel_power
from edge.media.prompts import dtmf_pcm, silence_pcm

DIGITS = "0123456789*#ABCD"


def run_inband(pcm: bytes, codec: Codec = Codec.PCMU) -> list[DtmfReceived]:
    """Through G.711 like real RTP, 20 ms at a time."""
    payload = encode(pcm, codec)
    detector = InbandDetector()
    found = []
    for i in range(0, len(payload), 160):
        found += detector.feed(decode_samples(payload[i : i + 160], codec), i / 8000)
    return found


def add_noise(pcm: bytes, rms: float, seed: int) -> bytes:
    rng = random.Random(seed)
    samples = array("h")
    samples.frombytes(pcm)
    for i, s in enumerate(samples):
        samples[i] = max(-32768, min(32767, int(s + rng.gauss(0.0, rms))))
    return samples.tobytes()


def test_telephone_event_receiver_dedupes_repeats_and_redundant_ends():
    receiver = TelephoneEventReceiver(101)
    packets = telephone_event_payloads("5", 100)
    events = [receiver.receive(payload, 1600, now=1.0) for payload, _ in packets]
    reported = [e for e in events if e is not None]
    assert reported == [DtmfReceived("5", DtmfSource.RFC4733, 1.0, 20, -10)]
    assert receiver.duplicates == len(packets) - 1


def test_telephone_event_receiver_new_event_same_digit_reported_again():
    receiver = TelephoneEventReceiver(101)
    for ts in (1600, 4800):
        for payload, _ in telephone_event_payloads("5", 60):
            receiver.receive(payload, ts, now=ts / 8000)
    end_only = telephone_event_payloads("5", 60)[-1][0]
    assert receiver.receive(end_only, 4800, now=1.0) is None  # late redundant end of the 2nd press
    assert receiver.receive(end_only, 9600, now=1.2).digit == "5"  # lost start: the end still reports


def test_telephone_event_receiver_ignores_non_keypad_and_short_payload():
    receiver = TelephoneEventReceiver(101)
    assert receiver.receive(bytes([16, 0x8A, 0, 160]), 160, now=0.0) is None  # flash
    assert receiver.receive(b"\x05\x00", 320, now=0.0) is None


def test_telephone_event_payloads_layout():
    packets = telephone_event_payloads("#", 100, volume=7)
    assert [p[1] for p in packets] == [True] + [False] * 6
    assert [p[0][3] | p[0][2] << 8 for p in packets] == [160, 320, 480, 640, 800, 800, 800]
    assert all(p[0][0] == 11 for p in packets)
    assert [bool(p[0][1] & 0x80) for p in packets] == [False] * 4 + [True] * 3


INFO_CASES = [
    ("relay", "Signal=5\r\nDuration=160\r\n", "application/dtmf-relay", "5", 160),
    ("relay-star", "Signal=*\nDuration=250", "application/dtmf-relay", "*", 250),
    ("relay-code-11", "Signal= 11\r\n", "application/dtmf-relay", "#", 0),
    ("relay-params", "signal=9", "Application/DTMF-Relay; charset=utf-8", "9", 0),
    ("dtmf", "5", "application/dtmf", "5", 0),
    ("dtmf-code-10", "10\r\n", "application/dtmf", "*", 0),
]


@pytest.mark.parametrize("name,body,ctype,digit,duration", INFO_CASES, ids=[c[0] for c in INFO_CASES])
def test_parse_info_body_digits(name, body, ctype, digit, duration):
    event = parse_info_body(body.encode(), ctype, now=2.0)
    assert event == DtmfReceived(digit, DtmfSource.INFO, 2.0, duration)


@pytest.mark.parametrize(
    "body,ctype",
    [("Signal=Z", "application/dtmf-relay"), ("Duration=100", "application/dtmf-relay"), ("55", "application/dtmf"),
     ("5", "text/plain"), ("Signal=5" + "x" * 2000, "application/dtmf-relay")],
    ids=["bad-signal", "no-signal", "two-digits", "wrong-type", "oversize"],
)
def test_parse_info_body_rejects(body, ctype):
    assert parse_info_body(body, ctype, now=0.0) is None


def test_goertzel_block_analyzer_matches_recursion():
    samples = array("h", (int(3000 * math.sin(2 * math.pi * 770 * n / 8000) + 100 * (n % 7)) for n in range(160)))
    energy = float(sum(s * s for s in samples))
    fractions = BlockAnalyzer(160).fractions(samples, energy)
    reference = [2 * goertzel_power(samples, f) / (160 * energy) for f in (697, 770, 852, 941, 1209, 1336, 1477, 1633)]
    assert fractions == pytest.approx(reference, rel=1e-6, abs=1e-9)
    assert fractions[1] > 0.9


@pytest.mark.parametrize("codec", [Codec.PCMU, Codec.PCMA], ids=["pcmu", "pcma"])
@pytest.mark.parametrize("digit", list(DIGITS))
def test_inband_detects_every_digit_with_noise(digit, codec):
    pcm = silence_pcm(60) + dtmf_pcm(digit, 70, amplitude=4000) + silence_pcm(80)
    noisy = add_noise(pcm, rms=900.0, seed=ord(digit))  # ~13 dB SNR against the tone pair
    assert [e.digit for e in run_inband(noisy, codec)] == [digit]


def test_inband_digit_sequence_with_short_gaps():
    pcm = b"".join(dtmf_pcm(d, 60) + silence_pcm(40) for d in "1155#")
    assert [e.digit for e in run_inband(pcm)] == list("1155#")


def test_inband_ignores_too_short_tone():
    assert run_inband(silence_pcm(40) + dtmf_pcm("8", 15) + silence_pcm(40)) == []


def test_inband_ignores_noise_only():
    assert run_inband(add_noise(silence_pcm(2000), rms=3000.0, seed=1)) == []


def speech_like(seconds: float, seed: int) -> bytes:
    """Voiced vowels: harmonic-rich glottal pulses with a gliding pitch and formant-ish weighting."""
    rng = random.Random(seed)
    out = array("h")
    phase = 0.0
    for n in range(int(seconds * 8000)):
        t = n / 8000
        pitch = 110 + 40 * math.sin(2 * math.pi * 1.3 * t) + 15 * math.sin(2 * math.pi * 4.7 * t)
        phase += 2 * math.pi * pitch / 8000
        value = sum((1.0 / k) * (1.6 if 600 < k * pitch < 1000 else 1.0) * math.sin(k * phase) for k in range(1, 25))
        envelope = 0.5 + 0.5 * math.sin(2 * math.pi * 3 * t)
        out.append(int(max(-32768, min(32767, 4000 * envelope * value + rng.gauss(0, 150)))))
    return out.tobytes()


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_inband_ignores_speech_like_signal(seed):
    assert run_inband(speech_like(1.5, seed)) == []
