"""Audio captcha: speak a random code digit by digit, the caller keys it back with DTMF.

Keys arrive as RFC 4733 §3.2 named events (or SIP INFO / in-band, already decoded). The code
playlist is `(intro or retry prompt, digit-d1, ..., digit-dN)`; PlaybackProgress tells the
flow when the intro is over and when the last digit has been spoken. Keys during the intro
are discarded (callers press keys by reflex); keys after the intro but before the last
digit has been spoken cannot come from someone who listened, so they are recorded as
evidence of a machine (`early_input`) and, if configured, fail the captcha at once.
"""

from __future__ import annotations

import enum
import random
from typing import Any

import msgspec

from edge.media.flow import (
    BlockCaller,
    CallerHungUp,
    DtmfReceived,
    Effect,
    Event,
    FlowBase,
    FlowResult,
    Forward,
    Hangup,
    MediaTimedOut,
    Outcome,
    PlaybackFinished,
    PlaybackProgress,
    RememberPass,
    TimerFired,
    Voicemail,
)
from edge.media.schema import CaptchaSpec, EarlyInput, OnFail
from edge.units import parse_duration
from edge.policy.facts import Evidence

DIGITS = "0123456789"
SUBMIT = "#"
CLEAR = "*"


class CaptchaState(enum.Enum):
    IDLE = "idle"
    INTRO = "intro"  # intro/retry prompt playing: keys discarded
    SPEAKING = "speaking"  # code digits playing: keys are early input
    AWAITING = "awaiting"  # code spoken, answer timer armed
    CLOSING = "closing"  # goodbye playing, then Hangup
    DONE = "done"


class CaptchaResult(FlowResult, kw_only=True):
    passed: bool
    attempts: int  # attempts started (the passing one included)
    early_input: bool = False
    discarded_digits: int = 0  # keys pressed during intro/retry prompts
    time_to_answer: float | None = None  # code fully spoken -> last key (0.0 when typed early)
    fail_action: str = ""  # '' | 'hangup' | 'voicemail' | 'block'

    def evidence(self) -> list[Evidence]:
        """Findings for the activity record; early input is the machine signal that counts."""
        out: list[Evidence] = []
        if self.outcome in (Outcome.PASSED, Outcome.FAILED):
            verdict = "passed" if self.passed else "failed"
            out.append(Evidence(signal=f"captcha.{verdict}", weight=0.0, detail=self.detail))
        if self.early_input:
            out.append(
                Evidence(
                    signal="captcha.early_input",
                    weight=1.0,
                    detail="keys pressed before the code was spoken",
                )
            )
        return out


def new_code(rng: random.Random, length: int) -> str:
    return "".join(rng.choice(DIGITS) for _ in range(length))


def make_rng(spec: CaptchaSpec) -> random.Random:
    """Seeded (reproducible codes, for tests) only when the dialplan says so."""
    return random.Random(spec.seed) if spec.seed is not None else random.SystemRandom()


class Captcha(FlowBase):
    """One challenge for one caller; on pass it forwards to `target_ref` ('' = number default)."""

    kind = "captcha"

    def __init__(
        self,
        spec: CaptchaSpec,
        calling_number: str,
        rng: random.Random | None = None,
        *,
        target_ref: str = "",
        log: Any = None,
    ) -> None:
        super().__init__(log)
        self._spec = spec
        self._calling = calling_number
        self._rng = rng if rng is not None else make_rng(spec)
        self._target = target_ref
        self._timeout = parse_duration(spec.timeout)
        self._block_for = parse_duration(spec.block_for)
        self._pass_memory = parse_duration(spec.pass_memory)
        self._state = CaptchaState.IDLE
        self._code = ""
        self._buffer = ""
        self._attempts = 0
        self._early = False
        self._discarded = 0
        self._last_item = 0
        self._spoken_at: float | None = None
        self._pending: CaptchaResult | None = None
        self._hangup_reason = ""

    @property
    def state(self) -> CaptchaState:
        return self._state

    @property
    def code(self) -> str:
        """The code of the current attempt (for the activity debug log and tests)."""
        return self._code

    def start(self, now: float) -> list[Effect]:
        self._started_at = now
        return self._attempt(self._spec.intro_prompt, fresh=True)

    def handle(self, event: Event, now: float) -> list[Effect]:
        if self.finished:
            return []
        if isinstance(event, DtmfReceived):
            return self._on_digit(event.digit, now)
        if isinstance(event, PlaybackProgress):
            if not self._is_current(event.playlist_id):
                return []
            if event.item_index == 0 and self._state is CaptchaState.INTRO:
                self._state = CaptchaState.SPEAKING
            if event.item_index >= self._last_item:
                return self._spoken(now)
            return []
        if isinstance(event, PlaybackFinished):
            if not self._is_current(event.playlist_id):
                return []
            self._playlist = None
            if self._state is CaptchaState.CLOSING:
                assert self._pending is not None
                return self._finish(self._pending) + [Hangup(reason=self._hangup_reason)]
            return self._spoken(now)
        if isinstance(event, TimerFired):
            if self._fired(event) == "answer" and self._state is CaptchaState.AWAITING:
                return self._wrong(now, "timeout")
            return []
        if isinstance(event, CallerHungUp):
            return self._abandon(now, "caller hung up", caller_gone=True)
        if isinstance(event, MediaTimedOut):
            return self._abandon(now, "media timeout") + [Hangup(reason="media timeout")]
        return []

    # ---------------------------------------------------------------------------- steps

    def _attempt(self, lead_prompt: str, fresh: bool) -> list[Effect]:
        self._attempts += 1
        if fresh or not self._code:
            self._code = new_code(self._rng, self._spec.length)
        self._buffer = ""
        self._spoken_at = None
        self._state = CaptchaState.INTRO
        prefix = self._spec.digit_prompt_prefix
        items = (lead_prompt,) + tuple(f"{prefix}{d}" for d in self._code)
        self._last_item = len(items) - 1
        # not interruptible: the caller must hear the whole code
        return [self._play(items, interruptible=False)]

    def _spoken(self, now: float) -> list[Effect]:
        """The last digit has been spoken: the answer window opens."""
        if self._state not in (CaptchaState.INTRO, CaptchaState.SPEAKING):
            return []
        self._state = CaptchaState.AWAITING
        self._spoken_at = now
        return self._arm("answer", now + self._timeout)

    def _on_digit(self, digit: str, now: float) -> list[Effect]:
        if self._state is CaptchaState.INTRO:
            self._discarded += 1
            return []
        if self._state is CaptchaState.SPEAKING:
            if not self._early:
                self._log.info("captcha_early_input", attempt=self._attempts)
            self._early = True
            if self._spec.early_input is EarlyInput.FAIL:
                return self._fail(now, "early input")
        elif self._state is not CaptchaState.AWAITING:
            return []
        if digit == CLEAR:
            self._buffer = ""
            return []
        if digit == SUBMIT:
            return self._check(now) if self._buffer else []
        if digit not in DIGITS:
            return []
        self._buffer += digit
        if len(self._buffer) >= self._spec.length:
            return self._check(now)
        return []

    def _check(self, now: float) -> list[Effect]:
        if self._buffer == self._code:
            return self._pass(now)
        return self._wrong(now, "wrong code")

    def _pass(self, now: float) -> list[Effect]:
        took = 0.0 if self._spoken_at is None else now - self._spoken_at
        screening = f"captcha=passed;attempts={self._attempts}"
        if self._early:
            screening += ";early-input=1"
        out = self._end(now, Outcome.PASSED, "code correct", passed=True, time_to_answer=took)
        if self._calling and self._pass_memory > 0:
            out.append(RememberPass(calling_number=self._calling, until=now + self._pass_memory))
        out.append(Forward(target_ref=self._target, screening=screening))
        return out

    def _wrong(self, now: float, why: str) -> list[Effect]:
        self._log.info("captcha_attempt_failed", attempt=self._attempts, why=why)
        out = self._disarm("answer")
        if self._attempts >= self._spec.attempts:
            return out + self._fail(now, why)
        return out + self._attempt(self._spec.retry_prompt, fresh=self._spec.new_code_on_retry)

    def _fail(self, now: float, why: str) -> list[Effect]:
        action = self._spec.on_fail
        detail = f"captcha failed ({why}) after {self._attempts} attempt(s)"
        if action is OnFail.VOICEMAIL:
            return self._end(
                now, Outcome.FAILED, detail, passed=False, fail_action=action.value
            ) + [Voicemail(box=self._spec.voicemail_box)]
        out = self._disarm_all()
        if action is OnFail.BLOCK and self._calling:
            out.append(
                BlockCaller(
                    duration_s=self._block_for, reason="captcha failed", calling_number=self._calling,
                    scope=self._spec.block_scope.value,
                )
            )
        elif action is OnFail.BLOCK:
            detail += "; anonymous caller not blocked"
        self._state = CaptchaState.CLOSING
        self._hangup_reason = "captcha failed"
        self._pending = self._make(now, Outcome.FAILED, detail, passed=False, fail_action=action.value)
        out.append(self._play((self._spec.goodbye_prompt,), interruptible=False))
        return out

    def _abandon(self, now: float, why: str, caller_gone: bool = False) -> list[Effect]:
        if self._pending is not None:
            # hung up during goodbye: the verdict already reached stands
            result = msgspec.structs.replace(self._pending, ended_at=now)
        else:
            result = self._make(now, Outcome.HANGUP, why, passed=False)
        return self._end_with(result, caller_gone)

    # ------------------------------------------------------------------------- results

    def _make(self, now: float, outcome: Outcome, detail: str, **extra: Any) -> CaptchaResult:
        return CaptchaResult(
            outcome=outcome,
            detail=detail,
            started_at=self._started_at if self._started_at is not None else now,
            ended_at=now,
            attempts=self._attempts,
            early_input=self._early,
            discarded_digits=self._discarded,
            **extra,
        )

    def _end(self, now: float, outcome: Outcome, detail: str, **extra: Any) -> list[Effect]:
        return self._end_with(self._make(now, outcome, detail, **extra))

    def _end_with(self, result: CaptchaResult, caller_gone: bool = False) -> list[Effect]:
        self._state = CaptchaState.DONE
        return self._finish(result, caller_gone=caller_gone)
