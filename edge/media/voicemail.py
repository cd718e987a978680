"""Voicemail deposit: greeting, beep, record the caller, goodbye, hang up.

The recorder (edge/media/recorder.py) writes the caller's G.711 audio (RFC 3551 §4.5.14)
to one WAV file per message and reports `RecordingStopped` with the file and its length.
A caller who hangs up while recording still leaves a message: the flow asks the recorder
to stop and waits for its report so the activity record can name the file. '#' ends the
message early. Guard timers bound every wait on the recorder.
"""

from __future__ import annotations

import enum
from typing import Any

import msgspec

from edge.media.flow import (
    CallerHungUp,
    DtmfReceived,
    Effect,
    Event,
    FlowBase,
    FlowResult,
    Hangup,
    MediaTimedOut,
    Outcome,
    PlaybackFinished,
    RecordingStopped,
    StartRecording,
    StopPlayback,
    StopRecording,
    TimerFired,
)
from edge.media.schema import VoicemailBoxSpec
from edge.units import parse_duration

END_KEY = "#"
RECORDER_GRACE = 5.0  # seconds the recorder gets to report after its own deadline or a stop


class DepositState(enum.Enum):
    IDLE = "idle"
    GREETING = "greeting"  # interruptible: a key skips to the beep
    BEEP = "beep"
    RECORDING = "recording"
    STOPPING = "stopping"  # StopRecording sent, waiting for RecordingStopped
    CLOSING = "closing"  # goodbye playing, then Hangup
    DONE = "done"


class VoicemailResult(FlowResult, kw_only=True):
    box: str
    path: str = ""  # the WAV file ('' when nothing was recorded)
    seconds: float = 0.0
    empty: bool = True  # no file, or shorter than the box's min_length
    stop_reason: str = ""  # recorder's reason: max_length | silence | stopped | hangup


class VoicemailDeposit(FlowBase):
    """One message left in `box`."""

    kind = "voicemail"

    def __init__(self, box: str, spec: VoicemailBoxSpec, *, log: Any = None) -> None:
        super().__init__(log)
        self._box = box
        self._spec = spec
        self._max = parse_duration(spec.max_length)
        self._silence = parse_duration(spec.silence)
        self._min = parse_duration(spec.min_length)
        self._state = DepositState.IDLE
        self._caller_gone = False
        self._hangup_on_end = False  # the caller's media died but the dialog is still up
        self._hangup_reason = "voicemail complete"
        self._pending: VoicemailResult | None = None

    @property
    def state(self) -> DepositState:
        return self._state

    def start(self, now: float) -> list[Effect]:
        self._started_at = now
        self._state = DepositState.GREETING
        return [self._play((self._spec.greeting,), interruptible=True)]

    def handle(self, event: Event, now: float) -> list[Effect]:
        if self.finished:
            return []
        if isinstance(event, PlaybackFinished):
            return self._on_played(event, now) if self._is_current(event.playlist_id) else []
        if isinstance(event, DtmfReceived):
            return self._on_digit(event.digit, now)
        if isinstance(event, RecordingStopped):
            return self._on_recorded(event, now)
        if isinstance(event, TimerFired):
            return self._on_timer(self._fired(event), now)
        if isinstance(event, CallerHungUp):
            return self._on_gone(now, "caller hung up", send_hangup=False)
        if isinstance(event, MediaTimedOut):
            return self._on_gone(now, "media timeout", send_hangup=True)
        return []

    def _on_played(self, event: PlaybackFinished, now: float) -> list[Effect]:
        self._playlist = None
        if self._state is DepositState.GREETING:
            return self._beep()
        if self._state is DepositState.BEEP:
            self._state = DepositState.RECORDING
            recording = StartRecording(
                box=self._box,
                max_seconds=self._max,
                silence_seconds=self._silence,
                directory=self._spec.dir or "",
            )
            return [recording] + self._arm("recorder", now + self._max + RECORDER_GRACE)
        if self._state is DepositState.CLOSING:
            assert self._pending is not None
            return self._finish(self._pending) + [Hangup(reason=self._hangup_reason)]
        return []

    def _beep(self) -> list[Effect]:
        self._state = DepositState.BEEP
        return [self._play((self._spec.beep_prompt,), interruptible=False)]

    def _on_digit(self, digit: str, now: float) -> list[Effect]:
        if self._state is DepositState.GREETING:
            self._playlist = None
            return [StopPlayback()] + self._beep()
        if self._state is DepositState.RECORDING and digit == END_KEY:
            return self._stop(now)
        return []

    def _stop(self, now: float) -> list[Effect]:
        self._state = DepositState.STOPPING
        return [StopRecording()] + self._arm("recorder", now + RECORDER_GRACE)

    def _on_recorded(self, event: RecordingStopped, now: float) -> list[Effect]:
        if self._state not in (DepositState.RECORDING, DepositState.STOPPING):
            return []
        out = self._disarm("recorder")
        empty = not event.path or event.seconds < self._min
        detail = "empty message" if empty else f"message {event.seconds:.1f}s"
        result = self._make(
            now, Outcome.VOICEMAIL, detail,
            path=event.path, seconds=event.seconds, empty=empty, stop_reason=event.reason,
        )
        self._log.info(
            "voicemail_recorded", box=self._box, path=event.path,
            seconds=event.seconds, empty=empty, reason=event.reason,
        )
        return out + self._close(result, now)

    def _on_timer(self, role: str | None, now: float) -> list[Effect]:
        if role != "recorder":
            return []
        if self._state is DepositState.RECORDING:
            return self._stop(now)
        if self._state is DepositState.STOPPING:
            self._log.warning("voicemail_recorder_silent", box=self._box)
            result = self._make(now, Outcome.VOICEMAIL, "recorder did not report", stop_reason="")
            return self._close(result, now)
        return []

    def _on_gone(self, now: float, why: str, send_hangup: bool) -> list[Effect]:
        self._caller_gone = True
        self._hangup_on_end = send_hangup
        self._hangup_reason = why
        if self._state is DepositState.RECORDING:
            return self._stop(now)  # keep the message: wait for the recorder's report
        if self._state is DepositState.STOPPING:
            return []
        if self._state is DepositState.CLOSING:
            assert self._pending is not None
            return self._end(msgspec.structs.replace(self._pending, ended_at=now))
        return self._end(self._make(now, Outcome.HANGUP, f"{why} before the beep"))

    def _close(self, result: VoicemailResult, now: float) -> list[Effect]:
        """Goodbye and hang up, unless the caller is already gone."""
        if self._caller_gone:
            return self._end(result)
        self._state = DepositState.CLOSING
        self._pending = result
        return [self._play((self._spec.goodbye_prompt,), interruptible=False)]

    def _make(self, now: float, outcome: Outcome, detail: str, **extra: Any) -> VoicemailResult:
        return VoicemailResult(
            outcome=outcome,
            detail=detail,
            started_at=self._started_at if self._started_at is not None else now,
            ended_at=now,
            box=self._box,
            **extra,
        )

    def _end(self, result: VoicemailResult) -> list[Effect]:
        self._state = DepositState.DONE
        out = self._finish(result, caller_gone=self._caller_gone)
        return out + [Hangup(reason=self._hangup_reason)] if self._hangup_on_end else out
