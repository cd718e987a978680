"""Events and effects shared by the screening flows (IVR menu, captcha, voicemail deposit).

The flows are sans-IO state machines (docs/DESIGN.md): the media session reports what happened
as past-tense events (edge/media/events.py, the same objects the flows receive), a flow answers
with imperative effects, and the call layer runs them.
DTMF digits arrive already decoded (RFC 4733 §2.3 events, SIP INFO or in-band tones);
prompts are named, pre-encoded audio items the engine plays back in order.

Timers: a flow asks for `StartTimer(name, at)` with an absolute deadline and gets
`TimerFired(name)` back. Every arming uses a fresh name, so a timer the flow has already
cancelled (or replaced) and that still fires through a race is recognised and ignored.
"""

from __future__ import annotations

import enum
from typing import Any, Protocol, Union, runtime_checkable

import msgspec
import structlog

from edge.media.events import DtmfReceived, MediaTimedOut, PlaybackFinished, PlaybackProgress
from edge.media.schema import ScreeningMode

# ---------------------------------------------------------------------------------- events


class TimerFired(msgspec.Struct, frozen=True):
    name: str


class CallerHungUp(msgspec.Struct, frozen=True):
    pass


class RecordingStopped(msgspec.Struct, frozen=True):
    """The recorder closed its file; reason is 'max_length' | 'silence' | 'stopped' | 'hangup'."""

    path: str
    seconds: float
    reason: str


class CallerMediaStarted(msgspec.Struct, frozen=True):
    """The first RTP packet from the caller arrived (early media works end to end)."""

    at: float


Event = Union[
    DtmfReceived,
    PlaybackFinished,
    PlaybackProgress,
    TimerFired,
    CallerHungUp,
    RecordingStopped,
    MediaTimedOut,
    CallerMediaStarted,
]

# --------------------------------------------------------------------------------- effects


class Play(msgspec.Struct, frozen=True):
    """Play prompt names in order, replacing whatever is playing; interruptible: a key stops it."""

    playlist_id: str
    items: tuple[str, ...]
    interruptible: bool = True


class StopPlayback(msgspec.Struct, frozen=True):
    pass


class StartTimer(msgspec.Struct, frozen=True):
    name: str
    at: float  # absolute time, same clock as `now`


class CancelTimer(msgspec.Struct, frozen=True):
    name: str


class StartRecording(msgspec.Struct, frozen=True):
    """Record the caller into a new file for `box`; silence_seconds == 0 disables silence stop."""

    box: str
    max_seconds: float
    silence_seconds: float
    directory: str = ""  # '' = the configured default voicemail directory


class StopRecording(msgspec.Struct, frozen=True):
    pass


class Forward(msgspec.Struct, frozen=True):
    """Bridge to a PBX target; `screening` becomes the X-Edge-Screening header value."""

    target_ref: str  # '' = the number's default target
    screening: str


class Hangup(msgspec.Struct, frozen=True):
    reason: str


class Voicemail(msgspec.Struct, frozen=True):
    """Hand the call over to a voicemail deposit for `box`."""

    box: str


class BlockCaller(msgspec.Struct, frozen=True):
    """Temporary block of the calling number (a block rule with an expiry)."""

    duration_s: float
    reason: str
    calling_number: str = ""
    scope: str = "customer"  # 'customer': the call's customer only; 'global': every customer


class SendEarlyMedia(msgspec.Struct, frozen=True):
    """183 Session Progress with our SDP answer: prompts play before the call is answered."""


class AnswerCall(msgspec.Struct, frozen=True):
    """200 OK with our SDP answer: from here the call is billed."""


class RememberPass(msgspec.Struct, frozen=True):
    """The caller passed the captcha: skip the challenge for calls until `until`."""

    calling_number: str
    until: float


Effect = Union[
    Play,
    StopPlayback,
    StartTimer,
    CancelTimer,
    StartRecording,
    StopRecording,
    Forward,
    Hangup,
    Voicemail,
    BlockCaller,
    RememberPass,
    SendEarlyMedia,
    AnswerCall,
]

# ---------------------------------------------------------------------------------- result


class Outcome(str, enum.Enum):
    PASSED = "passed"
    FAILED = "failed"
    FORWARDED = "forwarded"
    VOICEMAIL = "voicemail"
    HANGUP = "hangup"


class FlowResult(msgspec.Struct, kw_only=True):
    """What the flow concluded, for the activity record."""

    outcome: Outcome
    detail: str
    started_at: float
    ended_at: float


@runtime_checkable
class Flow(Protocol):
    """A screening flow driven by events; the caller runs its effects."""

    @property
    def finished(self) -> bool: ...

    @property
    def result(self) -> FlowResult | None: ...

    def start(self, now: float) -> list[Effect]: ...

    def handle(self, event: Event, now: float) -> list[Effect]: ...


class FlowBase:
    """Timer and playlist bookkeeping shared by the flows."""

    kind = "flow"

    def __init__(self, log: Any = None) -> None:
        self._log = log if log is not None else structlog.get_logger()
        self._seq = 0
        self._timers: dict[str, str] = {}  # role -> armed name (at most one per role)
        self._playlist: str | None = None  # id of the playlist we expect news about
        self._started_at: float | None = None
        self._result: FlowResult | None = None

    @property
    def finished(self) -> bool:
        return self._result is not None

    @property
    def result(self) -> FlowResult | None:
        return self._result

    def _next(self, role: str) -> str:
        self._seq += 1
        return f"{self.kind}.{role}.{self._seq}"

    def _arm(self, role: str, at: float) -> list[Effect]:
        """Arm (or re-arm) the timer for a role; an older arming of that role is cancelled."""
        out = self._disarm(role)
        name = self._next(role)
        self._timers[role] = name
        out.append(StartTimer(name=name, at=at))
        return out

    def _disarm(self, role: str) -> list[Effect]:
        name = self._timers.pop(role, None)
        return [CancelTimer(name=name)] if name is not None else []

    def _fired(self, event: TimerFired) -> str | None:
        """The role of a live timer that fired, None for a stale or foreign one."""
        for role, name in self._timers.items():
            if name == event.name:
                del self._timers[role]
                return role
        return None

    def _disarm_all(self) -> list[Effect]:
        out: list[Effect] = [CancelTimer(name=n) for n in self._timers.values()]
        self._timers.clear()
        return out

    def _play(self, items: tuple[str, ...], interruptible: bool) -> Play:
        self._playlist = self._next("play")
        return Play(playlist_id=self._playlist, items=items, interruptible=interruptible)

    def _is_current(self, playlist_id: str) -> bool:
        return self._playlist is not None and playlist_id == self._playlist

    def _finish(self, result: FlowResult, caller_gone: bool = False) -> list[Effect]:
        """Record the result; cancel live timers and stop a playlist still playing."""
        self._result = result
        playing = self._playlist is not None and not caller_gone
        self._playlist = None
        self._log.info(
            f"{self.kind}_finished", outcome=result.outcome.value, detail=result.detail
        )
        out = self._disarm_all()
        return out + [StopPlayback()] if playing else out


class TimerTable:
    """The pending timers of one call's flows, for a sans-IO runner (and the tests' fake clock).

    `apply` consumes StartTimer/CancelTimer and returns the other effects; `due(now)` pops the
    timers whose deadline has passed, earliest first. Capped: past `cap` pending timers the
    earliest-armed one is dropped (flows keep two at most, so this only bites on a bug).
    """

    def __init__(self, cap: int = 16) -> None:
        self._cap = cap
        self._pending: dict[str, float] = {}  # insertion order = arming order

    def __len__(self) -> int:
        return len(self._pending)

    def apply(self, effects: list[Effect]) -> list[Effect]:
        rest: list[Effect] = []
        for effect in effects:
            if isinstance(effect, StartTimer):
                self._pending.pop(effect.name, None)
                self._pending[effect.name] = effect.at
                if len(self._pending) > self._cap:
                    del self._pending[next(iter(self._pending))]
            elif isinstance(effect, CancelTimer):
                self._pending.pop(effect.name, None)
            else:
                rest.append(effect)
        return rest

    def next_at(self) -> float | None:
        return min(self._pending.values(), default=None)

    def due(self, now: float) -> list[TimerFired]:
        fired = sorted((at, name) for name, at in self._pending.items() if at <= now)
        for _, name in fired:
            del self._pending[name]
        return [TimerFired(name=name) for _, name in fired]


class ScreeningRecord(msgspec.Struct, kw_only=True):
    """Which screening mode ran and whether the contact was ever answered (activity record)."""

    requested: str  # ScreeningMode value from the dialplan
    ran: str  # what actually ran: 'early-media', or 'answer' (also after a fallback)
    fell_back: bool = False
    answered_at: float | None = None


class AnswerGate:
    """When the caller's leg is answered while a flow screens it (RFC 3960 §3 early media).

    `answer` mode answers at once. `early-media` sends 183 with SDP and answers only when a
    message is recorded (`StartRecording` passes through `admit`) or the PBX answers the
    bridged leg (`bridged`), so a caller who fails or hangs up is never billed. No caller
    RTP within the fallback time means the caller's side does not do early media: answer.
    """

    def __init__(self, mode: ScreeningMode, fallback_s: float, *, log: Any = None) -> None:
        self._log = log if log is not None else structlog.get_logger()
        self._fallback_s = fallback_s
        self._timer: str | None = None
        self._seq = 0
        self.record = ScreeningRecord(requested=mode.value, ran=mode.value)

    @property
    def answered(self) -> bool:
        """False: end the call with a final response (never billed), not a BYE."""
        return self.record.answered_at is not None

    def start(self, now: float) -> list[Effect]:
        if self.record.ran == ScreeningMode.ANSWER.value:
            return self._answer(now)
        self._seq += 1
        self._timer = f"screening.early_media_fallback.{self._seq}"
        return [SendEarlyMedia(), StartTimer(name=self._timer, at=now + self._fallback_s)]

    def handle(self, event: Event, now: float) -> list[Effect]:
        if isinstance(event, CallerMediaStarted):
            return self._cancel()
        if isinstance(event, TimerFired) and self._timer is not None and event.name == self._timer:
            self._timer = None
            self.record.ran = ScreeningMode.ANSWER.value
            self.record.fell_back = True
            self._log.info("early_media_fallback", after_s=self._fallback_s)
            return self._answer(now)
        if isinstance(event, (CallerHungUp, MediaTimedOut)):
            return self._cancel()
        return []

    def admit(self, effect: Effect, now: float) -> list[Effect]:
        """Gate effects to run before a flow's effect: recording a message means answering."""
        if isinstance(effect, StartRecording):
            return self._cancel() + self._answer(now)
        return []

    def bridged(self, now: float) -> list[Effect]:
        """The PBX answered the forwarded leg: answer the caller's leg too."""
        return self._cancel() + self._answer(now)

    def _answer(self, now: float) -> list[Effect]:
        if self.answered:
            return []
        self.record.answered_at = now
        return [AnswerCall()]

    def _cancel(self) -> list[Effect]:
        if self._timer is None:
            return []
        name, self._timer = self._timer, None
        return [CancelTimer(name=name)]
