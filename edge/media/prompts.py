"""Prompts as ready 20 ms G.711 payloads (RFC 3551 §4.5.14 PCMU/PCMA, 8 kHz, 160 bytes a frame).

Any format PyAV/ffmpeg decodes (WAV, MP3, OGG, FLAC...) is decoded and resampled to
8 kHz mono once, when loaded, into both laws; playback only hands out cached bytes.
Tones (beep, SIT, DTMF) are synthesised the same way. The decode functions take bytes,
never paths: reading the file is the adapter's job (edge/io/rtp_udp.py).
"""

from __future__ import annotations

import io
import math
from array import array
from collections import OrderedDict

import av
import msgspec

from edge.media.codecs import SAMPLE_RATE, SAMPLES_PER_FRAME, Codec, encode
from edge.media.goertzel import COL_FREQS, KEYPAD, ROW_FREQS

MAX_PROMPT_SECONDS = 600
PROMPT_SUFFIXES = (".wav", ".mp3", ".ogg", ".oga", ".opus", ".flac", ".m4a", ".aac", ".gsm", ".au")
# ANSI T1.401 / ITU-T E.180 SIT "vacant code": low, low, high-long segments.
SIT_VACANT_CODE = ((913.8, 274), (1370.6, 274), (1776.7, 380))


class PromptError(ValueError):
    """A prompt could not be decoded (bad file, too long, no audio stream)."""


class Prompt(msgspec.Struct, frozen=True):
    """One prompt, pre-encoded: `pcmu[i]` and `pcma[i]` are the i-th 20 ms payloads."""

    name: str
    pcmu: tuple[bytes, ...]
    pcma: tuple[bytes, ...]

    def frames(self, codec: Codec) -> tuple[bytes, ...]:
        return self.pcmu if codec is Codec.PCMU else self.pcma

    @property
    def seconds(self) -> float:
        return len(self.pcmu) * SAMPLES_PER_FRAME / SAMPLE_RATE


def decode_audio(data: bytes, max_seconds: float = MAX_PROMPT_SECONDS) -> bytes:
    """Any audio container/codec -> signed 16-bit native PCM at 8 kHz mono."""
    limit = int(max_seconds * SAMPLE_RATE) * 2
    out = bytearray()
    try:
        with av.open(io.BytesIO(data), mode="r") as container:
            if not container.streams.audio:
                raise PromptError("no audio stream")
            stream = container.streams.audio[0]
            resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
            for frame in container.decode(stream):
                for resampled in resampler.resample(frame):
                    out += bytes(resampled.planes[0])[: resampled.samples * 2]
                if len(out) > limit:
                    raise PromptError(f"prompt longer than {max_seconds:.0f} s")
            for resampled in resampler.resample(None):
                out += bytes(resampled.planes[0])[: resampled.samples * 2]
    except av.error.FFmpegError as exc:
        raise PromptError(f"cannot decode audio: {exc}") from None
    if not out:
        raise PromptError("audio stream decoded to no samples")
    return bytes(out[:limit])


def prompt_from_pcm(name: str, pcm: bytes) -> Prompt:
    """Split 8 kHz s16 PCM into 20 ms frames (last one padded with silence) and encode both laws."""
    frame_bytes = SAMPLES_PER_FRAME * 2
    pcm = pcm[: len(pcm) & ~1]
    if len(pcm) % frame_bytes:
        pcm += bytes(frame_bytes - len(pcm) % frame_bytes)
    ulaw, alaw = encode(pcm, Codec.PCMU), encode(pcm, Codec.PCMA)
    n = SAMPLES_PER_FRAME
    return Prompt(
        name=name,
        pcmu=tuple(ulaw[i : i + n] for i in range(0, len(ulaw), n)),
        pcma=tuple(alaw[i : i + n] for i in range(0, len(alaw), n)),
    )


def prompt_from_bytes(name: str, data: bytes, max_seconds: float = MAX_PROMPT_SECONDS) -> Prompt:
    return prompt_from_pcm(name, decode_audio(data, max_seconds))


def tone_pcm(freqs: tuple[float, ...], ms: int, amplitude: int = 6000) -> bytes:
    """Sum of sinusoids (each at `amplitude`) as s16 PCM; 5 ms ramps avoid clicks."""
    count = ms * SAMPLE_RATE // 1000
    ramp = min(40, count // 2)
    steps = [2.0 * math.pi * f / SAMPLE_RATE for f in freqs]
    samples = array("h", bytes(2 * count))
    for n in range(count):
        gain = min(1.0, n / ramp if ramp else 1.0, (count - 1 - n) / ramp if ramp else 1.0)
        value = amplitude * gain * sum(math.sin(w * n) for w in steps)
        samples[n] = max(-32768, min(32767, int(value)))
    return samples.tobytes()


def silence_pcm(ms: int) -> bytes:
    return bytes(2 * (ms * SAMPLE_RATE // 1000))


def dtmf_pcm(digit: str, ms: int = 80, amplitude: int = 5000) -> bytes:
    """In-band DTMF tone for one keypad digit (tests, PBX legs without telephone-event)."""
    for r, row in enumerate(KEYPAD):
        c = row.find(digit.upper())
        if c >= 0:
            return tone_pcm((ROW_FREQS[r], COL_FREQS[c]), ms, amplitude)
    raise ValueError(f"not a DTMF digit: {digit!r}")


def beep_pcm(ms: int = 500) -> bytes:
    """The 1 kHz voicemail beep."""
    return tone_pcm((1000.0,), ms, 8000)


def sit_pcm() -> bytes:
    """Special Information Tones for a vacant number, played before the intercept message."""
    return b"".join(tone_pcm((freq,), ms, 8000) for freq, ms in SIT_VACANT_CODE)


#: Names of the prompts synthesised in code: what a dialplan may name without a file, for both
#: `sip-edge check` and the engine (one list, so a name that validates also plays).
BUILTIN_PROMPT_NAMES: tuple[str, ...] = ("tone-beep", "tone-sit", "silence-500ms") + tuple(
    f"tone-dtmf-{d}" for d in "0123456789*#"
)


def _builtin_pcm(name: str) -> bytes:
    if name == "tone-beep":
        return beep_pcm()
    if name == "tone-sit":
        return sit_pcm()
    if name == "silence-500ms":
        return silence_pcm(500)
    return dtmf_pcm(name.removeprefix("tone-dtmf-")) + silence_pcm(60)


def builtin_prompts() -> list[Prompt]:
    """Prompts synthesised in code, available even with an empty prompts directory."""
    return [prompt_from_pcm(name, _builtin_pcm(name)) for name in BUILTIN_PROMPT_NAMES]


class PromptLibrary:
    """Named prompts, capped by total frames with least-recently-used eviction."""

    def __init__(self, max_frames: int = 500_000) -> None:
        self.max_frames = max_frames
        self._prompts: OrderedDict[str, Prompt] = OrderedDict()
        self._frames = 0
        self.evictions = 0

    def __contains__(self, name: str) -> bool:
        return name in self._prompts

    def __len__(self) -> int:
        return len(self._prompts)

    def add(self, prompt: Prompt) -> None:
        old = self._prompts.pop(prompt.name, None)
        if old is not None:
            self._frames -= len(old.pcmu)
        self._prompts[prompt.name] = prompt
        self._frames += len(prompt.pcmu)
        while self._frames > self.max_frames and len(self._prompts) > 1:
            _, evicted = self._prompts.popitem(last=False)
            self._frames -= len(evicted.pcmu)
            self.evictions += 1

    def get(self, name: str) -> Prompt | None:
        prompt = self._prompts.get(name)
        if prompt is not None:
            self._prompts.move_to_end(name)
        return prompt

    def names(self) -> list[str]:
        return list(self._prompts)
