import io
import math
import wave
from array import array

import av
import pytest

from edge.media.codecs import Codec, decode_samples, encode, frame_energy
from edge.media.prompts import (
    PromptError,
    PromptLibrary,
    builtin_prompts,
    prompt_from_bytes,
    prompt_from_pcm,
    sit_pcm,
    tone_pcm,
)


def wav_file(rate: int, seconds: float, freq: float = 440.0, channels: int = 1) -> bytes:
    samples = array("h")
    for n in range(int(rate * seconds)):
        value = int(8000 * math.sin(2 * math.pi * freq * n / rate))
        samples.extend([value] * channels)
    buffer = io.BytesIO()
    with wave.open(buffer, "wb") as out:
        out.setnchannels(channels)
        out.setsampwidth(2)
        out.setframerate(rate)
        out.writeframes(samples.tobytes())
    return buffer.getvalue()


def encoded_file(fmt: str, codec: str, rate: int = 44100, seconds: float = 1.0) -> bytes:
    """Compressed test audio made with PyAV (its wheel bundles libmp3lame)."""
    buffer = io.BytesIO()
    with av.open(buffer, mode="w", format=fmt) as container:
        stream = container.add_stream(codec, rate=rate)
        stream.layout = "mono"
        frame_size = 1152
        total = int(rate * seconds)
        for start in range(0, total, frame_size):
            count = min(frame_size, total - start)
            pcm = array("h", (int(8000 * math.sin(2 * math.pi * 440 * (start + n) / rate)) for n in range(count)))
            frame = av.AudioFrame(format="s16", layout="mono", samples=count)
            frame.sample_rate = rate
            frame.pts = start
            frame.planes[0].update(pcm.tobytes())
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
    return buffer.getvalue()


def dominant_is_440(prompt, codec=Codec.PCMU) -> bool:
    frame = decode_samples(prompt.frames(codec)[len(prompt.pcmu) // 2], codec)
    energy = frame_energy(frame) * len(frame)
    def share(freq):
        re = sum(s * math.cos(2 * math.pi * freq * n / 8000) for n, s in enumerate(frame))
        im = sum(s * math.sin(2 * math.pi * freq * n / 8000) for n, s in enumerate(frame))
        return 2 * (re * re + im * im) / (len(frame) * energy)
    return share(440) > 0.8


@pytest.mark.parametrize(
    "name,data,expected_frames",
    [
        ("wav-8k", wav_file(8000, 1.0), 50),
        ("wav-16k-stereo", wav_file(16000, 1.0, channels=2), 50),
        ("wav-44k", wav_file(44100, 0.5), 25),
        ("mp3", encoded_file("mp3", "libmp3lame"), (49, 52)),
        ("flac", encoded_file("flac", "flac", rate=16000), 50),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_prompt_from_bytes_decodes_resamples_and_encodes(name, data, expected_frames):
    prompt = prompt_from_bytes(name, data)
    count = len(prompt.pcmu)
    if isinstance(expected_frames, tuple):
        assert expected_frames[0] <= count <= expected_frames[1]
    else:
        assert count == expected_frames
    assert len(prompt.pcma) == count
    assert all(len(f) == 160 for f in prompt.pcmu + prompt.pcma)
    assert dominant_is_440(prompt) and dominant_is_440(prompt, Codec.PCMA)


def test_prompt_from_bytes_rejects_garbage():
    with pytest.raises(PromptError):
        prompt_from_bytes("x", b"not audio at all" * 10)


def test_prompt_from_bytes_rejects_too_long():
    with pytest.raises(PromptError, match="longer than"):
        prompt_from_bytes("x", wav_file(8000, 3.0), max_seconds=1.0)


def test_prompt_from_pcm_pads_last_frame_with_silence():
    prompt = prompt_from_pcm("p", tone_pcm((1000.0,), 30))
    assert len(prompt.pcmu) == 2 and prompt.pcmu[1][-1] == 0xFF and prompt.pcma[1][-1] == 0xD5


def test_sit_tones_durations_and_frequencies():
    pcm = sit_pcm()
    assert len(pcm) // 2 == (274 + 274 + 380) * 8


def test_builtin_prompts_present():
    names = {p.name for p in builtin_prompts()}
    assert {"tone-beep", "tone-sit", "tone-dtmf-5", "tone-dtmf-#"} <= names


def test_prompt_library_evicts_least_recently_used():
    library = PromptLibrary(max_frames=100)
    a, b, c = (prompt_from_pcm(n, bytes(2 * 160 * 40)) for n in "abc")
    library.add(a)
    library.add(b)
    assert library.get("a") is a
    library.add(c)
    assert "b" not in library and library.get("a") is a and library.get("c") is c
    assert library.evictions == 1


def test_prompt_names_agree_between_check_and_engine(tmp_path):
    """A prompt name `sip-edge check` accepts is one playback resolves: built-ins by the engine's own
    names ('tone-beep', not 'beep'), files by stem with the engine's suffix list."""
    from edge.cli.check import prompt_names
    from edge.config import EdgeConfig
    from edge.media.engine_config import MediaConfig

    cfg = EdgeConfig(listen=[], media=MediaConfig(prompts_dir=str(tmp_path)))
    assert prompt_names(cfg) == {p.name for p in builtin_prompts()}
    assert "beep" not in prompt_names(cfg) and "tone-beep" in prompt_names(cfg)
    (tmp_path / "greeting.gsm").write_bytes(b"")  # a suffix only the engine used to know
    (tmp_path / "notes.txt").write_text("not audio")
    assert prompt_names(cfg) == {p.name for p in builtin_prompts()} | {"greeting"}
