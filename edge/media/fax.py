"""Fax calling tone (CNG, ITU-T T.30 §5.2.1): 1,100 Hz, 0.5 s on, 3 s off, sent by a calling fax machine.

A G.711 fax (no T.38 offer in the INVITE) looks like a voice call until its CNG is heard. On screened
calls the session feeds decoded audio to `CngDetector`; one burst of the right length is enough: speech
and music do not hold a pure 1,100 Hz for half a second and then stop, and a continuous tone (longer
than a CNG burst) is refused. Goertzel bin over 20 ms frames (edge.media.goertzel), O(1) state.
"""

from __future__ import annotations

from array import array

import msgspec

from edge.media.goertzel import BlockAnalyzer

CNG_HZ = 1100.0
FRAME = 160  # 20 ms at 8 kHz


class FaxToneDetected(msgspec.Struct, frozen=True):
    """A CNG burst ended: the caller is a fax machine."""

    at: float
    burst_ms: int


class CngSettings(msgspec.Struct, frozen=True):
    min_energy: float = 1.0e5  # mean square of a 20 ms frame (~ -45 dBm0): quieter is silence
    min_fraction: float = 0.7  # share of the frame's energy at 1,100 Hz
    min_burst: float = 0.4  # T.30: 0.5 s +- 15 %, with a frame of slack either side
    max_burst: float = 0.7


class CngDetector:
    """Counts consecutive 1,100 Hz frames; reports a burst of CNG length when the tone stops."""

    def __init__(self, settings: CngSettings = CngSettings()) -> None:
        self.settings = settings
        self._analyzer = BlockAnalyzer(FRAME, freqs=(CNG_HZ,))
        self._buffer = array("h")
        self._run = 0  # consecutive tone frames
        self._miss = 0  # non-tone frames since the run's last tone frame (one is forgiven)
        self.detected = False

    def is_tone(self, frame: array) -> bool:
        energy = sum(x * x for x in frame)
        if energy < self.settings.min_energy * len(frame):
            return False
        return self._analyzer.fractions(frame, energy)[0] >= self.settings.min_fraction

    def feed(self, samples: array, now: float) -> FaxToneDetected | None:
        """Decoded 8 kHz PCM in any chunking; the first CNG burst is reported once."""
        if self.detected:
            return None
        self._buffer.extend(samples)
        found = None
        while len(self._buffer) >= FRAME and found is None:
            frame = self._buffer[:FRAME]
            del self._buffer[:FRAME]
            found = self._step(self.is_tone(frame), now)
        return found

    def _step(self, tone: bool, now: float) -> FaxToneDetected | None:
        if tone:
            self._run += 1 + self._miss  # a forgiven dropout counts as tone
            self._miss = 0
            return None
        if self._run == 0:
            return None
        self._miss += 1
        if self._miss < 2:
            return None
        seconds = self._run * FRAME / 8000
        self._run = self._miss = 0
        s = self.settings
        if s.min_burst <= seconds <= s.max_burst:
            self.detected = True
            return FaxToneDetected(now, round(seconds * 1000))
        return None
