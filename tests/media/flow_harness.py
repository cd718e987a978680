"""Shared driver for the screening-flow tests: runs a flow's timers on a fake clock and tracks playback."""

from __future__ import annotations

from edge.media.events import DtmfSource
from edge.media.flow import (
    CancelTimer,
    DtmfReceived,
    Effect,
    Play,
    PlaybackFinished,
    StartTimer,
    StopPlayback,
    TimerTable,
)


class Run:
    """Drives a flow: runs its timer effects on a fake clock, remembers the playing playlist."""

    def __init__(self, flow, now: float = 100.0) -> None:
        self.flow = flow
        self.now = now
        self.timers = TimerTable()
        self.playing: Play | None = None

    def _take(self, effects: list[Effect]) -> list[Effect]:
        for e in effects:
            if isinstance(e, Play):
                self.playing = e
            elif isinstance(e, StopPlayback):
                self.playing = None
        self.timers.apply(list(effects))
        return effects

    def start(self) -> list[Effect]:
        return self._take(self.flow.start(self.now))

    def send(self, event) -> list[Effect]:
        return self._take(self.flow.handle(event, self.now))

    def key(self, digit: str) -> list[Effect]:
        return self.send(DtmfReceived(digit=digit, at=self.now, source=DtmfSource.RFC4733))

    def keys(self, digits: str) -> list[Effect]:
        out: list[Effect] = []
        for d in digits:
            out += self.key(d)
        return out

    def played(self) -> list[Effect]:
        """The engine finished the current playlist."""
        assert self.playing is not None, "nothing is playing"
        playlist, self.playing = self.playing.playlist_id, None
        return self.send(PlaybackFinished(playlist_id=playlist))

    def advance(self, seconds: float) -> list[Effect]:
        target = self.now + seconds
        out: list[Effect] = []
        while (at := self.timers.next_at()) is not None and at <= target:
            self.now = at
            for fired in self.timers.due(at):
                out += self.send(fired)
        self.now = target
        return out


def visible(effects: list[Effect]) -> list[Effect]:
    """Effects other than timer bookkeeping."""
    return [e for e in effects if not isinstance(e, (StartTimer, CancelTimer))]


def items(effects: list[Effect]) -> tuple[str, ...]:
    plays = [e for e in effects if isinstance(e, Play)]
    assert len(plays) == 1, effects
    return plays[0].items
