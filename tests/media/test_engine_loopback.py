"""Two real MediaEngine sessions exchanging RTP over 127.0.0.1 (bounded, < 5 s)."""

import asyncio

from edge.io.rtp_udp import MediaEngine, NotAcceptable
from edge.media.dtmf import DtmfReceived, DtmfSource
from edge.media.engine_config import MediaConfig
from edge.media.ports import PoolExhausted
from edge.media.session import PlaybackFinished, PlaybackProgress, RemoteLatched

import pytest


def _config(tmp_path, first: int, last: int, **kw) -> MediaConfig:
    return MediaConfig(
        rtp_port_min=first, rtp_port_max=last, prompts_dir=str(tmp_path), voicemail_dir=str(tmp_path / "vm"), **kw
    )


async def _wait_for(predicate, timeout: float = 3.0) -> None:
    async def poll() -> None:
        while not predicate():
            await asyncio.sleep(0.01)

    await asyncio.wait_for(poll(), timeout)


async def test_engine_loopback_offer_answer_dtmf_and_playback(tmp_path):
    engine = MediaEngine(_config(tmp_path, 41000, 41019), asyncio.get_running_loop())
    try:
        caller, offer = await engine.open(None, name="caller")
        edge, answer = await engine.open(offer, name="edge")
        caller.accept_answer(answer)
        got: list = []
        edge.on_event = got.append
        finished: list = []
        caller.on_event = finished.append
        caller.send_dtmf("7", 60)
        caller.play(["tone-beep"])
        await _wait_for(lambda: any(isinstance(e, DtmfReceived) for e in got) and any(isinstance(e, PlaybackFinished) for e in finished))
        digits = [e for e in got if isinstance(e, DtmfReceived)]
        assert [(d.digit, d.source) for d in digits] == [("7", DtmfSource.RFC4733)]
        assert [type(e) for e in finished if not isinstance(e, RemoteLatched)] == [PlaybackProgress, PlaybackFinished]
        assert not finished[-1].interrupted
        assert edge.session.received_packets > 10
        assert edge.session.remote == ("127.0.0.1", caller.local_port)
    finally:
        await engine.aclose()
    assert engine.pool.in_use == 0


async def test_engine_loopback_bridge_relays_audio_with_rewritten_ssrc(tmp_path):
    engine = MediaEngine(_config(tmp_path, 41100, 41119), asyncio.get_running_loop())
    try:
        caller, offer = await engine.open(None)
        a_leg, answer = await engine.open(offer)
        caller.accept_answer(answer)
        b_leg, b_offer = await engine.open_offer()
        pbx, pbx_answer = await engine.open(b_offer)
        b_leg.accept_answer(pbx_answer)
        await _wait_for(lambda: a_leg.session.received_packets > 0 and pbx.session.received_packets > 0)
        a_leg.bridge(b_leg)
        before = pbx.session.received_packets
        caller.play(["tone-sit"])
        await _wait_for(lambda: pbx.session.received_packets > before + 10)
        assert pbx.session.stats.ssrc == b_leg.session.ssrc
        assert b_leg.session.bridge.counters["a_to_b_forwarded"] > 10
    finally:
        await engine.aclose()


async def test_engine_open_refuses_unservable_offer_with_488(tmp_path):
    engine = MediaEngine(_config(tmp_path, 41200, 41209), asyncio.get_running_loop())
    offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 5000 RTP/AVP 18\r\n"
    with pytest.raises(NotAcceptable) as info:
        await engine.open(offer)
    assert info.value.status == 488 and "no common codec" in info.value.reason
    assert engine.pool.in_use == 0 and engine.refused_total == 1


async def test_engine_open_pool_exhausted_counted(tmp_path):
    engine = MediaEngine(_config(tmp_path, 41300, 41304), asyncio.get_running_loop())
    try:
        await engine.open(None)
        await engine.open(None)
        with pytest.raises(PoolExhausted):
            await engine.open(None)
        assert engine.pool.exhausted_total == 1
    finally:
        await engine.aclose()


async def test_engine_media_timeout_reported(tmp_path):
    engine = MediaEngine(_config(tmp_path, 41400, 41409, media_timeout="1s"), asyncio.get_running_loop())
    try:
        offer = "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 9 RTP/AVP 0\r\n"
        session, _ = await engine.open(offer)
        events: list = []
        session.on_event = events.append
        await _wait_for(lambda: any(type(e).__name__ == "MediaTimedOut" for e in events))
    finally:
        await engine.aclose()


async def test_engine_recording_writes_voiced_wav(tmp_path):
    import wave

    engine = MediaEngine(_config(tmp_path, 41500, 41519), asyncio.get_running_loop())
    try:
        caller, offer = await engine.open(None)
        edge, answer = await engine.open(offer)
        caller.accept_answer(answer)
        done: list = []
        edge.on_event = done.append
        path = edge.start_recording(str(tmp_path / "vm" / "msg.wav"), max_seconds=0.6)
        caller.play(["tone-beep"])
        await _wait_for(lambda: any(type(e).__name__ == "RecordingFinished" for e in done))
        event = next(e for e in done if type(e).__name__ == "RecordingFinished")
        assert event.voiced and event.reason.value == "max_length"
        with wave.open(path) as wav:
            assert wav.getframerate() == 8000 and wav.getnchannels() == 1
            assert wav.getnframes() == 4800
            frames = wav.readframes(wav.getnframes())
        assert max(frames) > 0
    finally:
        await engine.aclose()


async def test_engine_loads_shipped_prompts():
    engine = MediaEngine(MediaConfig(prompts_dir="config/prompts"), asyncio.get_running_loop())
    loaded = await engine.load_prompts()
    assert {"captcha-intro", "digit-0", "digit-9", "beep", "not-in-service", "voicemail-greeting"} <= set(loaded)
    assert engine.prompt("not-in-service").seconds > 2.0
    assert (await engine.ensure_prompt("goodbye")).name == "goodbye"


async def test_engine_with_pacer_phases_plays_every_frame_in_order(tmp_path):
    """pacer_slots=4: wake-ups every 5 ms, each session still one packet per 20 ms, none lost or reordered."""
    engine = MediaEngine(_config(tmp_path, 41300, 41319, pacer_slots=4), asyncio.get_running_loop())
    try:
        caller, offer = await engine.open(None, name="caller")
        edge, answer = await engine.open(offer, name="edge")
        caller.accept_answer(answer)
        finished: list = []
        edge.on_event = finished.append
        edge.play(["tone-sit"])  # 928 ms: 47 frames
        await _wait_for(lambda: any(isinstance(e, PlaybackFinished) for e in finished))
        await _wait_for(lambda: caller.session.received_packets >= 47)
        stats = caller.session.stats
        assert stats.ssrc == edge.session.ssrc
        assert stats.cycles + stats.max_seq - stats.base_seq + 1 == stats.received  # no gap in sequence numbers
        assert engine.stats()["pacer_slots"] == 4
    finally:
        await engine.aclose()
