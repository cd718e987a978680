"""Voicemail deposit flow on a fake clock with a scripted recorder."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.media.flow import (
    CallerHungUp,
    CancelTimer,
    DtmfReceived,
    Effect,
    Hangup,
    MediaTimedOut,
    Outcome,
    Play,
    PlaybackFinished,
    RecordingStopped,
    StartRecording,
    StartTimer,
    StopPlayback,
    StopRecording,
    TimerTable,
)
from edge.media.schema import VoicemailBoxSpec
from tests.media.flow_harness import Run, items, visible
from edge.media.voicemail import DepositState, VoicemailDeposit, VoicemailResult


BOX = VoicemailBoxSpec(greeting="greeting-sales", max_length="60s", silence="4s", dir="/var/vm/sales")


def running(spec: VoicemailBoxSpec = BOX) -> Run:
    run = Run(VoicemailDeposit("sales", spec))
    run.start()
    return run


def recording(spec: VoicemailBoxSpec = BOX) -> Run:
    """Greeting and beep played: the recorder runs."""
    run = running(spec)
    run.played()
    run.played()
    assert run.flow.state is DepositState.RECORDING
    return run


def test_voicemail_plays_greeting_then_beep_then_records() -> None:
    run = Run(VoicemailDeposit("sales", BOX))
    effects = run.start()
    assert items(effects) == ("greeting-sales",)
    assert effects[0].interruptible is True
    effects = run.played()
    assert items(effects) == ("beep",) and effects[0].interruptible is False
    effects = run.played()
    assert visible(effects) == [
        StartRecording(box="sales", max_seconds=60.0, silence_seconds=4.0, directory="/var/vm/sales")
    ]
    assert [e.at for e in effects if isinstance(e, StartTimer)] == [run.now + 65.0]


def test_voicemail_default_greeting_and_directory() -> None:
    run = Run(VoicemailDeposit("main", VoicemailBoxSpec()))
    assert items(run.start()) == ("voicemail-greeting",)
    run.played()
    effects = run.played()
    assert visible(effects) == [
        StartRecording(box="main", max_seconds=120.0, silence_seconds=5.0, directory="")
    ]


def test_voicemail_key_skips_greeting_to_beep() -> None:
    run = running()
    effects = run.key("1")
    assert effects[0] == StopPlayback()
    assert items(effects) == ("beep",)
    assert run.flow.state is DepositState.BEEP


@pytest.mark.parametrize(
    ("reason", "seconds"),
    [("max_length", 60.0), ("silence", 12.4)],
    ids=["max-length", "silence-stop"],
)
def test_voicemail_recorder_stop_then_goodbye_and_hangup(reason, seconds) -> None:
    run = recording()
    run.advance(seconds)
    effects = run.send(RecordingStopped(path="/var/vm/sales/m1.wav", seconds=seconds, reason=reason))
    assert any(isinstance(e, CancelTimer) for e in effects)  # recorder guard cancelled
    assert items(effects) == ("goodbye",)
    assert not run.flow.finished
    assert run.played() == [Hangup(reason="voicemail complete")]
    result = run.flow.result
    assert isinstance(result, VoicemailResult)
    assert result.outcome is Outcome.VOICEMAIL
    assert result.path == "/var/vm/sales/m1.wav"
    assert result.seconds == seconds
    assert result.empty is False
    assert result.stop_reason == reason
    assert result.detail == f"message {seconds:.1f}s"
    assert len(run.timers) == 0


def test_voicemail_caller_hangup_while_recording_keeps_file() -> None:
    run = recording()
    run.advance(8.0)
    effects = run.send(CallerHungUp())
    assert visible(effects) == [StopRecording()]
    assert not run.flow.finished
    effects = run.send(RecordingStopped(path="/var/vm/sales/m2.wav", seconds=8.0, reason="hangup"))
    assert not any(isinstance(e, (Play, Hangup)) for e in effects)  # caller is gone
    result = run.flow.result
    assert result.outcome is Outcome.VOICEMAIL
    assert result.path == "/var/vm/sales/m2.wav"
    assert result.empty is False
    assert result.stop_reason == "hangup"


def test_voicemail_hash_ends_message() -> None:
    run = recording()
    assert visible(run.key("5")) == []  # other keys are part of the message
    effects = run.key("#")
    assert visible(effects) == [StopRecording()]
    assert run.flow.state is DepositState.STOPPING
    effects = run.send(RecordingStopped(path="/var/vm/sales/m3.wav", seconds=3.0, reason="stopped"))
    assert items(effects) == ("goodbye",)


@pytest.mark.parametrize(
    ("path", "seconds", "empty"),
    [("/v/a.wav", 0.4, True), ("/v/b.wav", 0.999, True), ("/v/c.wav", 1.0, False), ("", 5.0, True)],
    ids=["short", "just-under", "minimum", "no-file"],
)
def test_voicemail_short_recording_marked_empty(path, seconds, empty) -> None:
    run = recording()
    run.send(RecordingStopped(path=path, seconds=seconds, reason="silence"))
    run.played()
    result = run.flow.result
    assert result.empty is empty
    assert result.path == path
    assert result.detail == ("empty message" if empty else "message 1.0s")


def test_voicemail_min_length_configurable() -> None:
    run = recording(VoicemailBoxSpec(min_length="3s"))
    run.send(RecordingStopped(path="/v/d.wav", seconds=2.5, reason="silence"))
    run.played()
    assert run.flow.result.empty is True


def test_voicemail_hangup_before_beep_is_not_a_message() -> None:
    run = running()
    effects = run.send(CallerHungUp())
    assert effects == []
    result = run.flow.result
    assert result.outcome is Outcome.HANGUP
    assert result.detail == "caller hung up before the beep"
    assert result.path == "" and result.empty is True


def test_voicemail_hangup_during_goodbye_keeps_message() -> None:
    run = recording()
    run.send(RecordingStopped(path="/v/e.wav", seconds=9.0, reason="silence"))
    assert run.send(CallerHungUp()) == []
    result = run.flow.result
    assert result.outcome is Outcome.VOICEMAIL and result.path == "/v/e.wav"


def test_voicemail_recorder_guard_stops_then_gives_up() -> None:
    run = recording()
    effects = run.advance(65.0)
    assert visible(effects) == [StopRecording()]
    assert run.flow.state is DepositState.STOPPING
    effects = run.advance(5.0)
    assert items(effects) == ("goodbye",)
    run.played()
    result = run.flow.result
    assert result.detail == "recorder did not report"
    assert result.empty is True and result.path == ""


def test_voicemail_media_timeout_while_recording_keeps_file_and_hangs_up() -> None:
    run = recording()
    effects = run.send(MediaTimedOut())
    assert visible(effects) == [StopRecording()]
    effects = run.send(RecordingStopped(path="/v/f.wav", seconds=30.0, reason="stopped"))
    assert visible(effects) == [Hangup(reason="media timeout")]
    assert run.flow.result.path == "/v/f.wav"


def test_voicemail_media_timeout_during_greeting_hangs_up() -> None:
    run = running()
    effects = run.send(MediaTimedOut())
    assert effects == [Hangup(reason="media timeout")]
    assert run.flow.result.outcome is Outcome.HANGUP


def test_voicemail_late_events_ignored() -> None:
    run = running()
    greeting = run.playing.playlist_id
    run.key("1")
    assert run.send(PlaybackFinished(playlist_id=greeting)) == []
    assert run.send(RecordingStopped(path="/v/x.wav", seconds=3.0, reason="stopped")) == []
    assert run.flow.state is DepositState.BEEP
    run.played()
    run.send(RecordingStopped(path="/v/g.wav", seconds=3.0, reason="silence"))
    run.played()
    assert run.send(DtmfReceived(digit="#", at=run.now)) == []
    assert run.flow.result.path == "/v/g.wav"


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("key"), st.sampled_from("19#*")),
        st.tuples(st.just("played")),
        st.tuples(st.just("advance"), st.floats(min_value=0.0, max_value=70.0)),
        st.tuples(st.just("recorded"), st.floats(min_value=0.0, max_value=60.0)),
        st.tuples(st.just("hangup")),
        st.tuples(st.just("media_timeout")),
    ),
    max_size=30,
)


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_voicemail_random_events_always_end(ops) -> None:
    run = running()
    hangups = 0
    for op in ops:
        if op[0] == "key":
            run.key(op[1])
        elif op[0] == "played" and run.playing is not None:
            run.played()
        elif op[0] == "advance":
            run.advance(op[1])
        elif op[0] == "recorded":
            run.send(RecordingStopped(path="/v/r.wav", seconds=op[1], reason="silence"))
        elif op[0] == "hangup":
            run.send(CallerHungUp())
        elif op[0] == "media_timeout":
            hangups += sum(isinstance(e, Hangup) for e in run.send(MediaTimedOut()))
        assert len(run.timers) <= 1
    for _ in range(20):
        if run.flow.finished:
            break
        if run.playing is not None:
            run.played()
        else:
            at = run.timers.next_at()
            assert at is not None, f"deposit stuck in {run.flow.state}"
            run.advance(at - run.now)
    result = run.flow.result
    assert result is not None and len(run.timers) == 0
    assert result.empty == (not result.path or result.seconds < 1.0)
