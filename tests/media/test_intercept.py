"""The not-in-service intercept flow on a fake clock: early media, announcement, then hang up; never answers."""

from __future__ import annotations

from edge.media.flow import AnswerCall, CallerHungUp, Hangup, Play, PlaybackFinished, SendEarlyMedia, StartTimer, TimerFired
from edge.media.intercept import Intercept


def test_intercept_plays_announcement_as_early_media_then_hangs_up() -> None:
    flow = Intercept(guard_s=20.0)
    effects = flow.start(100.0)
    assert isinstance(effects[0], SendEarlyMedia)
    play = next(e for e in effects if isinstance(e, Play))
    assert play.items == ("not-in-service",) and not play.interruptible
    assert not any(isinstance(e, AnswerCall) for e in effects)
    out = flow.handle(PlaybackFinished(play.playlist_id), 104.0)
    assert any(isinstance(e, Hangup) for e in out) and flow.finished
    assert flow.result is not None and flow.result.detail == "announcement played"


def test_intercept_guard_timer_ends_it_when_playback_never_reports() -> None:
    flow = Intercept(guard_s=20.0)
    timer = next(e for e in flow.start(0.0) if isinstance(e, StartTimer))
    assert timer.at == 20.0
    out = flow.handle(TimerFired(timer.name), 20.0)
    assert [type(e) for e in out if isinstance(e, Hangup)] == [Hangup]


def test_intercept_caller_hangup_finishes_without_hangup_effect() -> None:
    flow = Intercept()
    flow.start(0.0)
    out = flow.handle(CallerHungUp(), 1.0)
    assert flow.finished and not any(isinstance(e, Hangup) for e in out)
    assert flow.handle(CallerHungUp(), 2.0) == []
