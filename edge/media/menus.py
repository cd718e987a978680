"""IVR menu state machine: greeting, DTMF options, timeouts, failures, submenus.

Digits arrive as decoded DTMF (RFC 4733 §3.2 named events 0-9, *, #). A single key selects
an option at once unless a longer option starts with the keys entered so far; then the
menu waits for the inter-digit timeout or the '#' terminator. A key during an
interruptible prompt stops it (barge-in). Moves between menus (and repeats) are counted
against a bound so a caller cannot keep the edge busy forever in a menu loop.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping
from typing import Any

import msgspec

from edge.media.flow import (
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
    StopPlayback,
    TimerFired,
    Voicemail,
)
from edge.media.schema import MAX_MENU_TRANSITIONS, MenuOption, MenuSpec
from edge.units import parse_duration

TERMINATOR = "#"
MAX_PATH = 16  # menus kept in the result path (older entries are dropped)


class MenuState(enum.Enum):
    IDLE = "idle"
    PROMPTING = "prompting"  # greeting (or error + greeting) playing, keys accepted
    WAITING = "waiting"  # prompt done, first-digit timer armed
    COLLECTING = "collecting"  # keys entered, inter-digit timer armed
    CLOSING = "closing"  # goodbye playing, then Hangup
    DONE = "done"


class MenuResult(FlowResult, kw_only=True):
    menu: str  # the menu the call ended in
    path: tuple[str, ...] = ()  # menus entered, in order (last MAX_PATH)
    selection: str = ""  # keys of the option that ended the flow
    failures: int = 0
    target: str = ""  # forward target or voicemail box
    failed: bool = False  # ended by the menu's on_failure action (too many invalid or missing entries)


class _Compiled(msgspec.Struct, frozen=True):
    spec: MenuSpec
    greeting: tuple[str, ...]
    first_digit: float
    inter_digit: float


class Menu(FlowBase):
    """One caller's walk through the menus of a dialplan, starting at `entry`."""

    kind = "menu"

    def __init__(
        self,
        menus: Mapping[str, MenuSpec],
        entry: str,
        *,
        max_transitions: int = MAX_MENU_TRANSITIONS,
        log: Any = None,
    ) -> None:
        super().__init__(log)
        if entry not in menus:
            raise ValueError(f"unknown menu {entry!r}")
        self._menus = {
            name: _Compiled(
                spec=spec,
                greeting=spec.greeting_items(),
                first_digit=parse_duration(spec.first_digit_timeout),
                inter_digit=parse_duration(spec.inter_digit_timeout),
            )
            for name, spec in menus.items()
        }
        self._max_transitions = max_transitions
        self._name = entry
        self._state = MenuState.IDLE
        self._buffer = ""
        self._failures = 0
        self._transitions = 0
        self._path: list[str] = [entry]
        self._pending: MenuResult | None = None  # decided, waiting for goodbye to end

    @property
    def state(self) -> MenuState:
        return self._state

    @property
    def menu(self) -> str:
        return self._name

    @property
    def _current(self) -> _Compiled:
        return self._menus[self._name]

    def start(self, now: float) -> list[Effect]:
        self._started_at = now
        return self._prompt(())

    def handle(self, event: Event, now: float) -> list[Effect]:
        if self.finished:
            return []
        if isinstance(event, DtmfReceived):
            return self._on_digit(event.digit, now)
        if isinstance(event, PlaybackFinished):
            if not self._is_current(event.playlist_id):
                return []
            self._playlist = None
            if self._state is MenuState.CLOSING:
                assert self._pending is not None
                return self._finish(self._pending) + [Hangup(reason=self._pending.detail)]
            if self._state is MenuState.PROMPTING:
                self._state = MenuState.WAITING
                return self._arm("first_digit", now + self._current.first_digit)
            return []
        if isinstance(event, TimerFired):
            role = self._fired(event)
            if role == "first_digit" and self._state is MenuState.WAITING:
                return self._failure(now, self._current.spec.timeout_prompt, "no key pressed")
            if role == "inter_digit" and self._state is MenuState.COLLECTING:
                return self._complete(now)
            return []
        if isinstance(event, CallerHungUp):
            return self._end(now, Outcome.HANGUP, "caller hung up", caller_gone=True)
        if isinstance(event, MediaTimedOut):
            return self._end(now, Outcome.HANGUP, "media timeout") + [
                Hangup(reason="media timeout")
            ]
        return []

    # ------------------------------------------------------------------ input handling

    def _on_digit(self, digit: str, now: float) -> list[Effect]:
        if self._state not in (MenuState.PROMPTING, MenuState.WAITING, MenuState.COLLECTING):
            return []
        out: list[Effect] = []
        if self._state is MenuState.PROMPTING:
            out.append(StopPlayback())  # barge-in: menu prompts are always interruptible
            self._playlist = None
        out += self._disarm("first_digit") + self._disarm("inter_digit")
        options = self._current.spec.options
        if digit == TERMINATOR:
            if not self._buffer and TERMINATOR in options:
                return out + self._select(TERMINATOR, now)
            if not self._buffer:
                return out + self._failure(now, self._current.spec.invalid_prompt, "invalid key '#'")
            return out + self._complete(now)
        self._buffer += digit
        exact = self._buffer in options
        longer = any(k != self._buffer and k.startswith(self._buffer) for k in options)
        if exact and not longer:
            return out + self._select(self._buffer, now)
        if not longer:
            entry = self._buffer
            return out + self._failure(
                now, self._current.spec.invalid_prompt, f"invalid entry {entry!r}"
            )
        self._state = MenuState.COLLECTING
        return out + self._arm("inter_digit", now + self._current.inter_digit)

    def _complete(self, now: float) -> list[Effect]:
        """End of a multi-key entry (terminator or inter-digit timeout)."""
        out = self._disarm("inter_digit")
        if self._buffer in self._current.spec.options:
            return out + self._select(self._buffer, now)
        entry = self._buffer
        return out + self._failure(
            now, self._current.spec.invalid_prompt, f"incomplete entry {entry!r}"
        )

    def _select(self, key: str, now: float) -> list[Effect]:
        self._buffer = ""
        return self._act(self._current.spec.options[key], key, f"option {key}", now)

    def _act(self, option: MenuOption, key: str, label: str, now: float) -> list[Effect]:
        """Run an option; `key` is '' for the final action after too many failures."""
        failed = not key
        if option.forward is not None:
            screening = f"menu={self._name};option={key}" if key else f"menu={self._name};failed"
            return self._end(
                now, Outcome.FORWARDED, f"{label} -> {option.forward}",
                selection=key, target=option.forward, failed=failed,
            ) + [Forward(target_ref=option.forward, screening=screening)]
        if option.voicemail is not None:
            return self._end(
                now, Outcome.VOICEMAIL, f"{label} -> voicemail {option.voicemail}",
                selection=key, target=option.voicemail, failed=failed,
            ) + [Voicemail(box=option.voicemail)]
        if option.hangup:
            return self._close(now, f"{label} -> hangup", key, failed=failed)
        self._transitions += 1
        if self._transitions > self._max_transitions:
            return self._close(now, "menu loop: too many menu changes", key)
        if option.menu is not None:
            self._name = option.menu
            self._failures = 0
            self._path.append(option.menu)
            del self._path[:-MAX_PATH]
        return self._prompt(())  # submenu greeting, or the same greeting again (repeat)

    def _failure(self, now: float, prompt: str, why: str) -> list[Effect]:
        self._buffer = ""
        self._failures += 1
        self._log.info("menu_input_failed", menu=self._name, why=why, failures=self._failures)
        if self._failures >= self._current.spec.max_failures:
            return self._act(self._current.spec.on_failure, "", f"max failures ({why})", now)
        return self._prompt((prompt,))

    # ------------------------------------------------------------------------- output

    def _prompt(self, before: tuple[str, ...]) -> list[Effect]:
        self._state = MenuState.PROMPTING
        return [self._play(before + self._current.greeting, interruptible=True)]

    def _close(self, now: float, detail: str, key: str, failed: bool = False) -> list[Effect]:
        """Say goodbye, then hang up once the prompt has played."""
        self._state = MenuState.CLOSING
        self._pending = self._make(now, Outcome.HANGUP, detail, selection=key, failed=failed)
        return self._disarm_all() + [
            self._play((self._current.spec.goodbye_prompt,), interruptible=False)
        ]

    def _make(self, now: float, outcome: Outcome, detail: str, **extra: Any) -> MenuResult:
        return MenuResult(
            outcome=outcome,
            detail=detail,
            started_at=self._started_at if self._started_at is not None else now,
            ended_at=now,
            menu=self._name,
            path=tuple(self._path),
            failures=self._failures,
            **extra,
        )

    def _end(
        self, now: float, outcome: Outcome, detail: str, caller_gone: bool = False, **extra: Any
    ) -> list[Effect]:
        self._state = MenuState.DONE
        if self._pending is not None and outcome is Outcome.HANGUP:
            # hung up during goodbye: the decision already taken stands
            result = msgspec.structs.replace(self._pending, ended_at=now)
        else:
            result = self._make(now, outcome, detail, **extra)
        return self._finish(result, caller_gone=caller_gone)
