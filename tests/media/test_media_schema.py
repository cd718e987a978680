"""Dialplan screening sections: decoding and semantic validation with exact error text."""

from __future__ import annotations

import copy
import tomllib

import msgspec
import pytest

from edge.media.schema import (
    CaptchaSpec,
    EarlyInput,
    MediaSection,
    MenuOption,
    OnFail,
    ScreeningMode,
    key_path,
    parse_duration,
    validate_media,
)

EXAMPLE = """
screening = "early-media"
early_media_fallback = "3s"

[menus.main]
greeting = ["menu-default"]
first_digit_timeout = "5s"
inter_digit_timeout = "3s"
max_failures = 3
invalid_prompt = "menu-invalid"
timeout_prompt = "menu-timeout"

[menus.main.options]
"1" = { forward = "sales" }
"2" = { menu = "other" }
"9" = { voicemail = "main" }
"0" = { hangup = true }
"*" = { repeat = true }
"100" = { forward = "sales" }

[menus.other]
greeting = "menu-other"
on_failure = { voicemail = "main" }

[menus.other.options]
"#" = { menu = "main" }

[captcha]
length = 4
timeout = "10s"
attempts = 3
on_fail = "block"
block_for = "1h"
pass_memory = "24h"
seed = 1234
early_input = "fail"

[voicemail.main]
greeting = "voicemail-greeting"
max_length = "120s"
silence = "5s"
dir = "/var/lib/sip-edge/voicemail/main"
"""

PROMPTS = frozenset(
    {"menu-default", "menu-other", "menu-invalid", "menu-timeout", "goodbye", "beep",
     "voicemail-greeting", "captcha-intro", "captcha-retry"}
    | {f"digit-{d}" for d in range(10)}
)
TARGETS = frozenset({"sales", "support"})
BASE = tomllib.loads(EXAMPLE)


def decode(doc: dict) -> MediaSection:
    return msgspec.convert(doc, MediaSection)


def errors_for(mutate) -> list[tuple[str, str]]:
    doc = copy.deepcopy(BASE)
    mutate(doc)
    return validate_media(decode(doc), targets=TARGETS, prompts=PROMPTS)


def test_media_schema_example_decodes_and_validates() -> None:
    section = decode(BASE)
    assert section.screening is ScreeningMode.EARLY_MEDIA
    assert section.menus["main"].options["2"] == MenuOption(menu="other")
    assert section.menus["main"].greeting_items() == ("menu-default",)
    assert section.menus["other"].greeting_items() == ("menu-other",)
    assert section.captcha == CaptchaSpec(on_fail=OnFail.BLOCK, seed=1234, early_input=EarlyInput.FAIL)
    assert section.voicemail["main"].dir == "/var/lib/sip-edge/voicemail/main"
    assert validate_media(section, targets=TARGETS, prompts=PROMPTS) == []


def test_media_schema_defaults() -> None:
    section = decode({})
    assert section.screening is ScreeningMode.ANSWER
    assert section.captcha is None
    assert section.early_media_fallback == "3s"
    assert validate_media(section) == []


@pytest.mark.parametrize(
    ("doc", "message"),
    [
        ({"menus": {"main": {"greeting": "g", "colour": "red"}}},
         "Object contains unknown field `colour` - at `$.menus[...]`"),
        ({"menus": {"main": {"greeting": "g", "options": {"1": {"dial": "x"}}}}},
         "Object contains unknown field `dial` - at `$.menus[...].options[...]`"),
        ({"captcha": {"on_fail": "shrug"}},
         "Invalid enum value 'shrug' - at `$.captcha.on_fail`"),
        ({"screening": "late"}, "Invalid enum value 'late' - at `$.screening`"),
        ({"menus": {"main": {}}}, "Object missing required field `greeting` - at `$.menus[...]`"),
    ],
    ids=["menu-unknown-key", "option-unknown-key", "bad-on-fail", "bad-screening", "no-greeting"],
)
def test_media_schema_decode_errors(doc, message) -> None:
    with pytest.raises(msgspec.ValidationError) as info:
        decode(doc)
    assert str(info.value) == message


def _set(path: str, value):
    def mutate(doc: dict) -> None:
        *parents, last = path.split("/")
        node = doc
        for p in parents:
            node = node.setdefault(p, {})
        node[last] = value
    return mutate


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        (_set("menus/main/options/2", {"menu": "nowhere"}),
         [("$.menus.main.options.2.menu", "unknown menu 'nowhere'")]),
        (_set("menus/main/options/9", {"voicemail": "sales"}),
         [("$.menus.main.options.9.voicemail", "unknown voicemail box 'sales'")]),
        (_set("menus/main/options/1", {"forward": "billing"}),
         [("$.menus.main.options.1.forward", "unknown target 'billing'")]),
        (_set("menus/main/options/1", {"forward": ""}),
         [("$.menus.main.options.1.forward", "target name is empty")]),
        (_set("menus/main/options/1", {"forward": "sales", "hangup": True}),
         [("$.menus.main.options.1", "needs exactly one of forward, menu, voicemail, hangup = true, repeat = true")]),
        (_set("menus/main/options/1", {"hangup": False}),
         [("$.menus.main.options.1", "needs exactly one of forward, menu, voicemail, hangup = true, repeat = true")]),
        (_set("menus/main/options/1#", {"hangup": True}),
         [('$.menus.main.options["1#"]', "option keys are 1-8 of 0-9 and '*', or a lone '#' (the terminator)")]),
        (_set("menus/main/options/123456789", {"hangup": True}),
         [("$.menus.main.options.123456789", "option keys are 1-8 of 0-9 and '*', or a lone '#' (the terminator)")]),
        (_set("menus/main/first_digit_timeout", "5"),
         [("$.menus.main.first_digit_timeout", "invalid duration '5': expected a number with ms, s, m, h or d (e.g. '30s')")]),
        (_set("menus/main/first_digit_timeout", "2m"),
         [("$.menus.main.first_digit_timeout", "'2m' is out of range (1s..1m)")]),
        (_set("menus/main/inter_digit_timeout", "100ms"),
         [("$.menus.main.inter_digit_timeout", "'100ms' is out of range (0.5s..30s)")]),
        (_set("menus/main/max_failures", 0),
         [("$.menus.main.max_failures", "0 is out of range (1..10)")]),
        (_set("menus/main/greeting", ["menu-default", "menu-missing"]),
         [("$.menus.main.greeting[1]", "unknown prompt 'menu-missing'")]),
        (_set("menus/main/greeting", []),
         [("$.menus.main.greeting", "at least one prompt is required")]),
        (_set("menus/other/greeting", "nope"),
         [("$.menus.other.greeting", "unknown prompt 'nope'")]),
        (_set("menus/main/invalid_prompt", "sorry"),
         [("$.menus.main.invalid_prompt", "unknown prompt 'sorry'")]),
        (_set("menus/main/options", {}),
         [("$.menus.main.options", "at least one option is required")]),
        (_set("menus/other/on_failure", {"menu": "main"}),
         [("$.menus.other.on_failure", "must forward, go to voicemail or hang up")]),
        (_set("menus/other/on_failure", {"forward": "nope"}),
         [("$.menus.other.on_failure.forward", "unknown target 'nope'")]),
        (_set("captcha/length", 2), [("$.captcha.length", "2 is out of range (3..10)")]),
        (_set("captcha/length", 11), [("$.captcha.length", "11 is out of range (3..10)")]),
        (_set("captcha/attempts", 0), [("$.captcha.attempts", "0 is out of range (1..10)")]),
        (_set("captcha/timeout", "10 sec"),
         [("$.captcha.timeout", "invalid duration '10 sec': expected a number with ms, s, m, h or d (e.g. '30s')")]),
        (_set("captcha/block_for", "0s"), [("$.captcha.block_for", "'0s' is out of range (1s..30d)")]),
        (_set("captcha/pass_memory", "31d"), [("$.captcha.pass_memory", "'31d' is out of range (0s..30d)")]),
        (_set("captcha/on_fail", "voicemail"),
         [("$.captcha.voicemail_box", 'required when on_fail = "voicemail"')]),
        (lambda d: d["captcha"].update(on_fail="voicemail", voicemail_box="sales"),
         [("$.captcha.voicemail_box", "unknown voicemail box 'sales'")]),
        (_set("captcha/intro_prompt", "hello"), [("$.captcha.intro_prompt", "unknown prompt 'hello'")]),
        (_set("captcha/digit_prompt_prefix", "num-"),
         [("$.captcha.digit_prompt_prefix",
           "missing digit prompts: num-0, num-1, num-2, num-3, num-4, num-5, num-6, num-7, num-8, num-9")]),
        (_set("voicemail/main/max_length", "2h"),
         [("$.voicemail.main.max_length", "'2h' is out of range (1s..1h)")]),
        (_set("voicemail/main/silence", "-1s"),
         [("$.voicemail.main.silence", "invalid duration '-1s': expected a number with ms, s, m, h or d (e.g. '30s')")]),
        (_set("voicemail/main/greeting", ""), [("$.voicemail.main.greeting", "prompt name is empty")]),
        (_set("voicemail/main/dir", ""),
         [("$.voicemail.main.dir", "directory is empty (omit it for the default)")]),
        (_set("early_media_fallback", "1m"), [("$.early_media_fallback", "'1m' is out of range (0.5s..30s)")]),
        (_set("max_menu_transitions", 0), [("$.max_menu_transitions", "0 is out of range (1..50)")]),
    ],
    ids=[
        "option-unknown-menu", "option-unknown-box", "option-unknown-target", "option-empty-target",
        "option-two-actions", "option-no-action", "key-with-terminator", "key-too-long",
        "duration-no-unit", "duration-too-long", "inter-digit-too-short", "max-failures-zero",
        "greeting-unknown-prompt", "greeting-empty", "greeting-string-unknown", "invalid-prompt-unknown",
        "no-options", "on-failure-menu", "on-failure-unknown-target",
        "captcha-length-short", "captcha-length-long", "captcha-attempts-zero", "captcha-timeout-space",
        "captcha-block-zero", "captcha-memory-long", "captcha-voicemail-no-box",
        "captcha-voicemail-unknown-box", "captcha-unknown-prompt", "captcha-digit-prompts",
        "vm-too-long", "vm-negative-silence", "vm-empty-greeting", "vm-empty-dir",
        "fallback-too-long", "transitions-zero",
    ],
)
def test_media_schema_validation_errors(mutate, expected) -> None:
    assert errors_for(mutate) == expected


def test_media_schema_targets_and_prompts_unchecked_when_not_given() -> None:
    doc = copy.deepcopy(BASE)
    doc["menus"]["main"]["options"]["1"] = {"forward": "anything"}
    doc["menus"]["main"]["greeting"] = ["not-a-file"]
    assert validate_media(decode(doc)) == []


def test_media_schema_errors_carry_custom_base_path() -> None:
    doc = copy.deepcopy(BASE)
    doc["captcha"]["length"] = 1
    errors = validate_media(decode(doc), targets=TARGETS, prompts=PROMPTS, path="$.numbers[0]")
    assert errors == [("$.numbers[0].captcha.length", "1 is out of range (3..10)")]


def test_media_schema_reports_every_error() -> None:
    doc = copy.deepcopy(BASE)
    doc["captcha"]["length"] = 1
    doc["menus"]["main"]["max_failures"] = 99
    doc["voicemail"]["main"]["max_length"] = "0s"
    assert [p for p, _ in validate_media(decode(doc), targets=TARGETS, prompts=PROMPTS)] == [
        "$.menus.main.max_failures",
        "$.captcha.length",
        "$.voicemail.main.max_length",
    ]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("500ms", 0.5), ("5s", 5.0), ("1.5s", 1.5), ("2m", 120.0), ("1h", 3600.0), ("1d", 86400.0),
     (" 3s ", 3.0), ("0s", 0.0), ("5 s", 5.0)],
)
def test_parse_duration_valid(text, seconds) -> None:
    assert parse_duration(text) == seconds


@pytest.mark.parametrize("text", ["5", "s", "5 sec", "-1s", "1w", "5sec", "", "1h30m"])
def test_parse_duration_invalid(text) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        parse_duration(text)


@pytest.mark.parametrize(
    ("key", "path"),
    [("main", "$.m.main"), ("sales-2", "$.m.sales-2"), ("*", '$.m["*"]'), ("#", '$.m["#"]'),
     ("a b", '$.m["a b"]')],
)
def test_key_path_quotes_special_keys(key, path) -> None:
    assert key_path("$.m", key) == path
