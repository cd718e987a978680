"""edge.media.fax.CngDetector: one T.30 CNG burst (1,100 Hz, 0.5 s) is a fax; voice-like and continuous tones are not."""

from __future__ import annotations

import math
import random
from array import array

import pytest

from edge.media.fax import CngDetector, FaxToneDetected


def tone(freqs: tuple[float, ...], seconds: float, amp: float = 8000.0) -> array:
    n = int(seconds * 8000)
    return array("h", (int(sum(amp / len(freqs) * math.sin(2 * math.pi * f * i / 8000) for f in freqs)) for i in range(n)))


def silence(seconds: float) -> array:
    return array("h", bytes(int(seconds * 8000) * 2))


def noise(seconds: float, seed: int = 1) -> array:
    rng = random.Random(seed)
    return array("h", (rng.randint(-6000, 6000) for _ in range(int(seconds * 8000))))


def run(*parts: array, chunk: int = 160) -> list[FaxToneDetected]:
    d = CngDetector()
    audio = array("h")
    for p in parts:
        audio.extend(p)
    found = []
    for i in range(0, len(audio), chunk):
        ev = d.feed(audio[i:i + chunk], i / 8000)
        if ev is not None:
            found.append(ev)
    return found


def test_cng_burst_detected_once_when_it_ends() -> None:
    found = run(silence(0.3), tone((1100.0,), 0.5), silence(3.0), tone((1100.0,), 0.5), silence(0.5))
    assert len(found) == 1
    assert found[0].burst_ms == 500
    assert found[0].at == pytest.approx(0.84, abs=0.03)  # just after the tone stopped


@pytest.mark.parametrize("chunk", [80, 160, 333])
def test_cng_detected_in_any_chunking(chunk: int) -> None:
    assert len(run(tone((1100.0,), 0.52), silence(0.2), chunk=chunk)) == 1


@pytest.mark.parametrize(
    "audio",
    [
        tone((1100.0,), 2.0),  # continuous: a test tone, not CNG
        tone((1100.0,), 0.2),  # too short
        tone((1000.0,), 0.5),  # another frequency
        tone((1100.0, 1300.0), 0.5),  # a chord: not a pure CNG
        noise(1.0),
        tone((1100.0,), 0.5, amp=20.0),  # too quiet to be anything
    ],
    ids=["continuous", "short", "1000hz", "chord", "noise", "quiet"],
)
def test_cng_not_detected(audio: array) -> None:
    assert run(silence(0.2), audio, silence(0.5)) == []


def test_cng_with_noise_and_one_dropped_frame() -> None:
    burst = tone((1100.0,), 0.5)
    burst[1600:1760] = silence(0.02)  # one lost 20 ms frame inside the burst
    assert len(run(noise(0.3), burst, silence(0.3))) == 1
