import io
import wave

from edge.media.codecs import frame_energy
from edge.media.prompts import silence_pcm, tone_pcm
from edge.media.recorder import RecorderSettings, RecordingFinished, RecordingStopReason, VoicemailRecorder, wav_bytes
from array import array


def feed_all(recorder: VoicemailRecorder, pcm: bytes, t0: float = 0.0):
    result = None
    for i in range(0, len(pcm), 320):
        chunk = pcm[i : i + 320]
        samples = array("h")
        samples.frombytes(chunk)
        result = recorder.feed(chunk, frame_energy(samples), t0 + i / 16000) or result
        if result is not None:
            return result
    return result


def test_recorder_stops_on_silence_and_trims_it():
    recorder = VoicemailRecorder("/v/1.wav", RecorderSettings(silence_seconds=1.0, keep_trailing_silence=0.2), now=0.0)
    event = feed_all(recorder, tone_pcm((400.0,), 1000) + silence_pcm(3000))
    assert event == RecordingFinished("/v/1.wav", RecordingStopReason.SILENCE, 1.2, event.at, True)
    assert len(recorder.take_pcm()) == int(1.2 * 16000)


def test_recorder_stops_at_max_length():
    recorder = VoicemailRecorder("/v/2.wav", RecorderSettings(max_seconds=0.5), now=0.0)
    event = feed_all(recorder, tone_pcm((400.0,), 2000))
    assert event.reason is RecordingStopReason.MAX_LENGTH and event.seconds == 0.5
    assert recorder.feed(b"\x00" * 320, 0.0, 1.0) is None


def test_recorder_wall_clock_guard_without_packets():
    recorder = VoicemailRecorder("/v/3.wav", RecorderSettings(max_seconds=2.0), now=10.0)
    assert recorder.check(12.5) is None
    event = recorder.check(13.0)
    assert event.reason is RecordingStopReason.MAX_LENGTH and not event.voiced


def test_recorder_gap_filled_and_capped():
    recorder = VoicemailRecorder("/v/4.wav", RecorderSettings(max_seconds=1.0), now=0.0)
    recorder.fill_gap(4000)
    recorder.fill_gap(40000)
    assert recorder.seconds == 1.0


def test_wav_bytes_is_non_silent_8k_mono():
    pcm = tone_pcm((1000.0,), 200)
    with wave.open(io.BytesIO(wav_bytes(pcm))) as wav:
        assert (wav.getframerate(), wav.getnchannels(), wav.getsampwidth(), wav.getnframes()) == (8000, 1, 2, 1600)
        samples = array("h")
        samples.frombytes(wav.readframes(1600))
    assert max(samples) > 5000
