"""The intercept for numbers not in service (ANSI T1.401 vacant-code SIT, then an announcement), played
as early media (RFC 3960): the call is never answered, so it is never billed; a final response follows."""

from __future__ import annotations

from typing import Any

from edge.media.flow import (
    CallerHungUp,
    Effect,
    Event,
    FlowBase,
    FlowResult,
    Hangup,
    MediaTimedOut,
    Outcome,
    PlaybackFinished,
    SendEarlyMedia,
    TimerFired,
)


class Intercept(FlowBase):
    """Early media 'not-in-service' (SIT tones + message), then hang up with the final response."""

    kind = "intercept"

    def __init__(self, prompt: str = "not-in-service", guard_s: float = 30.0, *, log: Any = None) -> None:
        super().__init__(log)
        self._prompt = prompt
        self._guard_s = guard_s
        self._started = 0.0

    def start(self, now: float) -> list[Effect]:
        self._started = now
        play = self._play((self._prompt,), interruptible=False)
        # The guard ends the intercept even if the engine never reports the end of the playlist.
        return [SendEarlyMedia(), play, *self._arm("guard", now + self._guard_s)]

    def handle(self, event: Event, now: float) -> list[Effect]:
        if self.finished:
            return []
        if isinstance(event, PlaybackFinished) and self._is_current(event.playlist_id):
            return self._done(Outcome.HANGUP, "announcement played", now) + [Hangup("number not in service")]
        if isinstance(event, TimerFired) and self._fired(event) == "guard":
            return self._done(Outcome.HANGUP, "guard timer", now) + [Hangup("number not in service")]
        if isinstance(event, (CallerHungUp, MediaTimedOut)):
            return self._done(Outcome.HANGUP, "caller hung up", now, caller_gone=True)
        return []

    def _done(self, outcome: Outcome, detail: str, now: float, caller_gone: bool = False) -> list[Effect]:
        return self._finish(FlowResult(outcome=outcome, detail=detail, started_at=self._started, ended_at=now),
                            caller_gone=caller_gone)
