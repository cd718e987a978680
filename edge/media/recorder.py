"""Voicemail recording: inbound G.711 decoded to 16-bit PCM, kept in memory (capped at
`max_seconds`), stopped on silence, max length or hang-up, and handed out as WAV bytes.

The recorder is sans-IO: `wav_bytes` builds the file image with stdlib `wave` on a
BytesIO and the adapter writes it in a worker thread once, so the loop never waits on disk.
"""

from __future__ import annotations

import enum
import io
import sys
import wave
from array import array

import msgspec

from edge.media.codecs import SAMPLE_RATE


class RecordingStopReason(enum.Enum):
    MAX_LENGTH = "max_length"
    SILENCE = "silence"
    HANGUP = "hangup"
    STOPPED = "stopped"


class RecorderSettings(msgspec.Struct, frozen=True):
    max_seconds: float = 120.0
    silence_rms: float = 400.0  # frames below this RMS (of 32767) count as silence
    silence_seconds: float = 5.0  # stop after this much continuous silence
    keep_trailing_silence: float = 0.5  # seconds of the final silence kept in the file


class RecordingFinished(msgspec.Struct, frozen=True):
    """A recording stopped; the adapter writes the file and then reports this event."""

    path: str
    reason: RecordingStopReason
    seconds: float
    at: float
    voiced: bool  # any frame above the silence threshold


class VoicemailRecorder:
    def __init__(self, path: str, settings: RecorderSettings, now: float) -> None:
        self.path = path
        self.settings = settings
        self.started_at = now
        self._pcm = bytearray()
        self._limit = int(settings.max_seconds * SAMPLE_RATE) * 2
        self._silent_samples = 0
        self._silence_limit = int(settings.silence_seconds * SAMPLE_RATE)
        self._threshold_ms = settings.silence_rms**2
        self.voiced = False
        self.finished: RecordingFinished | None = None

    @property
    def seconds(self) -> float:
        return len(self._pcm) / (2 * SAMPLE_RATE)

    def feed(self, pcm: bytes, mean_square: float, now: float) -> RecordingFinished | None:
        """Append one decoded frame; `mean_square` is its energy (computed once by the session)."""
        if self.finished is not None:
            return None
        room = self._limit - len(self._pcm)
        self._pcm += pcm[:room]
        if mean_square < self._threshold_ms:
            self._silent_samples += len(pcm) // 2
        else:
            self._silent_samples = 0
            self.voiced = True
        if len(self._pcm) >= self._limit:
            return self.stop(RecordingStopReason.MAX_LENGTH, now)
        if self._silent_samples >= self._silence_limit:
            keep = int(self.settings.keep_trailing_silence * SAMPLE_RATE)
            drop = max(0, self._silent_samples - keep) * 2
            if drop:
                del self._pcm[len(self._pcm) - min(drop, len(self._pcm)) :]
            return self.stop(RecordingStopReason.SILENCE, now)
        return None

    def fill_gap(self, samples: int) -> None:
        """Lost packets: keep the timeline with silence (bounded by the cap)."""
        if self.finished is None and samples > 0:
            room = self._limit - len(self._pcm)
            self._pcm += bytes(min(2 * samples, max(0, room)))
            self._silent_samples += samples

    def check(self, now: float) -> RecordingFinished | None:
        """Wall-clock guard: no packets at all still ends the recording at max length."""
        if self.finished is None and now - self.started_at >= self.settings.max_seconds + 1.0:
            return self.stop(RecordingStopReason.MAX_LENGTH, now)
        return None

    def stop(self, reason: RecordingStopReason, now: float) -> RecordingFinished | None:
        if self.finished is not None:
            return None
        self.finished = RecordingFinished(self.path, reason, round(self.seconds, 3), now, self.voiced)
        return self.finished

    def take_pcm(self) -> bytes:
        pcm, self._pcm = bytes(self._pcm), bytearray()
        return pcm


def wav_bytes(pcm: bytes, rate: int = SAMPLE_RATE) -> bytes:
    """16-bit mono little-endian WAV image of native-endian PCM."""
    if sys.byteorder == "big":
        samples = array("h")
        samples.frombytes(pcm)
        samples.byteswap()
        pcm = samples.tobytes()
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(pcm)
    return buffer.getvalue()
