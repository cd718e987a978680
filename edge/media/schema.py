"""Dialplan sections for screening: IVR menus, captcha, voicemail boxes, screening mode.

Decoded with msgspec (unknown keys forbidden, DESIGN §5); `validate_media` adds the checks
a decoder cannot make (references between menus and boxes, duration ranges, prompt names)
and returns (json-path, reason) pairs for `sip-edge check`. Screening mode `early-media`
answers with 183 Session Progress and SDP (RFC 3960 §3) so prompts and DTMF run before
the call is answered.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Collection, Mapping

import msgspec

from edge.units import parse_duration

Errors = list[tuple[str, str]]

_UNIT = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_OPTION_KEY = re.compile(r"^(#|[0-9*]{1,8})$")
_PLAIN_KEY = re.compile(r"^[A-Za-z0-9_-]+$")

MAX_MENU_TRANSITIONS = 10


class ScreeningMode(str, enum.Enum):
    ANSWER = "answer"  # 200 OK, then prompts
    EARLY_MEDIA = "early-media"  # 183 + SDP: never answered unless bridged


class OnFail(str, enum.Enum):
    HANGUP = "hangup"
    VOICEMAIL = "voicemail"
    BLOCK = "block"


class EarlyInput(str, enum.Enum):
    RECORD = "record"  # note it in the result, keep going
    FAIL = "fail"  # treat as a machine: the captcha fails at once


class MenuOption(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """Exactly one action: forward to a target, another menu, a voicemail box, hang up, repeat."""

    forward: str | None = None
    menu: str | None = None
    voicemail: str | None = None
    hangup: bool = False
    repeat: bool = False

    def actions(self) -> list[str]:
        out = [n for n in ("forward", "menu", "voicemail") if getattr(self, n) is not None]
        return out + [n for n in ("hangup", "repeat") if getattr(self, n)]


HANGUP_OPTION = MenuOption(hangup=True)


class MenuSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    greeting: str | tuple[str, ...]
    options: dict[str, MenuOption] = {}
    first_digit_timeout: str = "5s"
    inter_digit_timeout: str = "3s"
    max_failures: int = 3
    invalid_prompt: str = "menu-invalid"
    timeout_prompt: str = "menu-timeout"
    goodbye_prompt: str = "goodbye"
    on_failure: MenuOption = HANGUP_OPTION  # final action after max_failures

    def greeting_items(self) -> tuple[str, ...]:
        return (self.greeting,) if isinstance(self.greeting, str) else tuple(self.greeting)


class BlockScope(str, enum.Enum):
    """Whom a failed captcha's block protects: the call's customer (default) or every customer."""

    CUSTOMER = "customer"
    GLOBAL = "global"


class CaptchaSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    length: int = 4
    timeout: str = "10s"  # to key the code once it has been spoken
    attempts: int = 3
    on_fail: OnFail = OnFail.HANGUP
    block_for: str = "1h"
    block_scope: BlockScope = BlockScope.CUSTOMER  # on_fail = "block": this customer only, unless "global"
    pass_memory: str = "24h"  # "0s" = do not remember
    seed: int | None = None  # tests only: reproducible codes
    early_input: EarlyInput = EarlyInput.RECORD
    new_code_on_retry: bool = True
    voicemail_box: str = ""  # required when on_fail = "voicemail"
    intro_prompt: str = "captcha-intro"
    retry_prompt: str = "captcha-retry"
    goodbye_prompt: str = "goodbye"
    digit_prompt_prefix: str = "digit-"  # digit d is spoken by prompt f"{prefix}{d}"


class VoicemailBoxSpec(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    greeting: str = "voicemail-greeting"
    beep_prompt: str = "beep"
    goodbye_prompt: str = "goodbye"
    max_length: str = "120s"
    silence: str = "5s"  # "0s" disables silence stop
    min_length: str = "1s"  # shorter recordings are marked empty
    dir: str | None = None


class MediaSection(msgspec.Struct, forbid_unknown_fields=True, frozen=True):
    """The screening part of one dialplan file (or one number block)."""

    menus: dict[str, MenuSpec] = {}
    captcha: CaptchaSpec | None = None
    voicemail: dict[str, VoicemailBoxSpec] = {}
    screening: ScreeningMode = ScreeningMode.ANSWER
    early_media_fallback: str = "3s"  # no caller RTP by then -> fall back to answer
    max_menu_transitions: int = MAX_MENU_TRANSITIONS


# ----------------------------------------------------------------------------- validation


def key_path(base: str, key: str) -> str:
    return f"{base}.{key}" if _PLAIN_KEY.match(key) else f'{base}["{key}"]'


def _duration(errors: Errors, path: str, text: str, low: float, high: float) -> None:
    try:
        value = parse_duration(text)
    except ValueError as exc:
        errors.append((path, str(exc)))
        return
    if not low <= value <= high:
        errors.append((path, f"{text!r} is out of range ({_fmt(low)}..{_fmt(high)})"))


def _fmt(seconds: float) -> str:
    for unit in ("d", "h", "m"):
        if seconds >= _UNIT[unit] and seconds % _UNIT[unit] == 0:
            return f"{int(seconds // _UNIT[unit])}{unit}"
    return f"{seconds:g}s"


def _int(errors: Errors, path: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        errors.append((path, f"{value} is out of range ({low}..{high})"))


def _prompt(errors: Errors, path: str, name: str, prompts: Collection[str] | None) -> None:
    if not name:
        errors.append((path, "prompt name is empty"))
    elif prompts is not None and name not in prompts:
        errors.append((path, f"unknown prompt {name!r}"))


def _option(
    errors: Errors,
    path: str,
    option: MenuOption,
    menus: Collection[str],
    boxes: Collection[str],
    targets: Collection[str] | None,
) -> None:
    actions = option.actions()
    if len(actions) != 1:
        errors.append(
            (path, "needs exactly one of forward, menu, voicemail, hangup = true, repeat = true")
        )
        return
    if option.forward is not None:
        if not option.forward:
            errors.append((f"{path}.forward", "target name is empty"))
        elif targets is not None and option.forward not in targets:
            errors.append((f"{path}.forward", f"unknown target {option.forward!r}"))
    if option.menu is not None and option.menu not in menus:
        errors.append((f"{path}.menu", f"unknown menu {option.menu!r}"))
    if option.voicemail is not None and option.voicemail not in boxes:
        errors.append((f"{path}.voicemail", f"unknown voicemail box {option.voicemail!r}"))


def validate_menus(
    menus: Mapping[str, MenuSpec],
    *,
    boxes: Collection[str],
    targets: Collection[str] | None = None,
    prompts: Collection[str] | None = None,
    path: str = "$.menus",
) -> Errors:
    """targets/prompts None: not checkable here (the caller checks them elsewhere)."""
    errors: Errors = []
    for name, menu in menus.items():
        base = key_path(path, name)
        items = menu.greeting_items()
        if not items:
            errors.append((f"{base}.greeting", "at least one prompt is required"))
        for i, item in enumerate(items):
            where = f"{base}.greeting" if isinstance(menu.greeting, str) else f"{base}.greeting[{i}]"
            _prompt(errors, where, item, prompts)
        for field in ("invalid_prompt", "timeout_prompt", "goodbye_prompt"):
            _prompt(errors, f"{base}.{field}", getattr(menu, field), prompts)
        _duration(errors, f"{base}.first_digit_timeout", menu.first_digit_timeout, 1.0, 60.0)
        _duration(errors, f"{base}.inter_digit_timeout", menu.inter_digit_timeout, 0.5, 30.0)
        _int(errors, f"{base}.max_failures", menu.max_failures, 1, 10)
        if not menu.options:
            errors.append((f"{base}.options", "at least one option is required"))
        for key, option in menu.options.items():
            where = key_path(f"{base}.options", key)
            if not _OPTION_KEY.match(key):
                errors.append(
                    (where, "option keys are 1-8 of 0-9 and '*', or a lone '#' (the terminator)")
                )
            _option(errors, where, option, menus, boxes, targets)
        on_fail = f"{base}.on_failure"
        _option(errors, on_fail, menu.on_failure, menus, boxes, targets)
        if menu.on_failure.repeat or menu.on_failure.menu is not None:
            errors.append((on_fail, "must forward, go to voicemail or hang up"))
    return errors


def validate_captcha(
    captcha: CaptchaSpec,
    *,
    boxes: Collection[str],
    prompts: Collection[str] | None = None,
    path: str = "$.captcha",
) -> Errors:
    errors: Errors = []
    _int(errors, f"{path}.length", captcha.length, 3, 10)
    _int(errors, f"{path}.attempts", captcha.attempts, 1, 10)
    _duration(errors, f"{path}.timeout", captcha.timeout, 1.0, 120.0)
    _duration(errors, f"{path}.block_for", captcha.block_for, 1.0, 30 * 86400.0)
    _duration(errors, f"{path}.pass_memory", captcha.pass_memory, 0.0, 30 * 86400.0)
    if captcha.on_fail is OnFail.VOICEMAIL:
        if not captcha.voicemail_box:
            errors.append((f"{path}.voicemail_box", 'required when on_fail = "voicemail"'))
        elif captcha.voicemail_box not in boxes:
            errors.append((f"{path}.voicemail_box", f"unknown voicemail box {captcha.voicemail_box!r}"))
    for field in ("intro_prompt", "retry_prompt", "goodbye_prompt"):
        _prompt(errors, f"{path}.{field}", getattr(captcha, field), prompts)
    if prompts is not None:
        missing = [d for d in "0123456789" if f"{captcha.digit_prompt_prefix}{d}" not in prompts]
        if missing:
            names = ", ".join(f"{captcha.digit_prompt_prefix}{d}" for d in missing)
            errors.append((f"{path}.digit_prompt_prefix", f"missing digit prompts: {names}"))
    return errors


def validate_voicemail(
    boxes: Mapping[str, VoicemailBoxSpec],
    *,
    prompts: Collection[str] | None = None,
    path: str = "$.voicemail",
) -> Errors:
    errors: Errors = []
    for name, box in boxes.items():
        base = key_path(path, name)
        for field in ("greeting", "beep_prompt", "goodbye_prompt"):
            _prompt(errors, f"{base}.{field}", getattr(box, field), prompts)
        _duration(errors, f"{base}.max_length", box.max_length, 1.0, 3600.0)
        _duration(errors, f"{base}.silence", box.silence, 0.0, 60.0)
        _duration(errors, f"{base}.min_length", box.min_length, 0.0, 60.0)
        if box.dir is not None and not box.dir:
            errors.append((f"{base}.dir", "directory is empty (omit it for the default)"))
    return errors


def validate_media(
    section: MediaSection,
    *,
    targets: Collection[str] | None = None,
    prompts: Collection[str] | None = None,
    path: str = "$",
) -> Errors:
    """All semantic errors of a screening section, in file order of the sections."""
    boxes = section.voicemail.keys()
    errors = validate_menus(
        section.menus, boxes=boxes, targets=targets, prompts=prompts, path=f"{path}.menus"
    )
    if section.captcha is not None:
        errors += validate_captcha(section.captcha, boxes=boxes, prompts=prompts, path=f"{path}.captcha")
    errors += validate_voicemail(section.voicemail, prompts=prompts, path=f"{path}.voicemail")
    _duration(errors, f"{path}.early_media_fallback", section.early_media_fallback, 0.5, 30.0)
    _int(errors, f"{path}.max_menu_transitions", section.max_menu_transitions, 1, 50)
    return errors
