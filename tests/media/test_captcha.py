"""Audio captcha state machine on a fake clock, with seeded codes."""

from __future__ import annotations

import random

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.media.captcha import Captcha, CaptchaResult, CaptchaState, make_rng, new_code
from edge.media.flow import (
    BlockCaller,
    CallerHungUp,
    CancelTimer,
    DtmfReceived,
    Effect,
    Forward,
    Hangup,
    MediaTimedOut,
    Outcome,
    Play,
    PlaybackFinished,
    PlaybackProgress,
    RememberPass,
    StartTimer,
    StopPlayback,
    TimerFired,
    TimerTable,
    Voicemail,
)
from edge.media.schema import CaptchaSpec, EarlyInput, OnFail
from tests.media.flow_harness import Run, items, visible


NUMBER = "+15551230001"


def wrong(code: str) -> str:
    return "".join(str((int(d) + 1) % 10) for d in code)


def spec(**kw) -> CaptchaSpec:
    base = dict(length=4, timeout="10s", attempts=3, seed=7)
    base.update(kw)
    return CaptchaSpec(**base)


def running(number: str = NUMBER, **kw) -> Run:
    run = Run(Captcha(spec(**kw), number, target_ref="pbx-main"))
    run.start()
    return run


def speak(run: Run, items_done: int | None = None) -> list[Effect]:
    """The engine reports progress through the playlist; all of it unless items_done is given."""
    assert run.playing is not None
    total = len(run.playing.items) if items_done is None else items_done
    out: list[Effect] = []
    for i in range(total):
        out += run.send(PlaybackProgress(playlist_id=run.playing.playlist_id, item_index=i))
    if items_done is None:
        out += run.played()
    return out


def test_captcha_start_speaks_intro_then_each_digit() -> None:
    run = Run(Captcha(spec(), NUMBER))
    effects = run.start()
    assert len(effects) == 1 and isinstance(effects[0], Play)
    code = run.flow.code
    assert len(code) == 4 and code.isdigit()
    assert effects[0].items == ("captcha-intro",) + tuple(f"digit-{d}" for d in code)
    assert effects[0].interruptible is False
    assert run.flow.state is CaptchaState.INTRO


def test_captcha_seed_makes_codes_reproducible() -> None:
    first = Captcha(spec(seed=42), NUMBER)
    second = Captcha(spec(seed=42), NUMBER)
    first.start(0.0)
    second.start(0.0)
    assert first.code == second.code == new_code(random.Random(42), 4)


def test_captcha_without_seed_uses_system_random() -> None:
    assert isinstance(make_rng(spec(seed=None)), random.SystemRandom)
    assert type(make_rng(spec(seed=1))) is random.Random


@pytest.mark.parametrize("length", [3, 6, 10])
def test_captcha_code_length_follows_spec(length) -> None:
    run = Run(Captcha(spec(length=length), NUMBER))
    effects = run.start()
    assert len(run.flow.code) == length
    assert len(effects[0].items) == length + 1


def test_captcha_explicit_rng_wins_over_seed() -> None:
    flow = Captcha(spec(seed=42), NUMBER, random.Random(3))
    flow.start(0.0)
    assert flow.code == new_code(random.Random(3), 4)


def test_captcha_answer_window_opens_when_digits_spoken() -> None:
    run = running()
    effects = speak(run)
    timers = [e for e in effects if isinstance(e, StartTimer)]
    assert len(timers) == 1 and timers[0].at == run.now + 10.0
    assert run.flow.state is CaptchaState.AWAITING


def test_captcha_pass_first_try_remembers_and_forwards() -> None:
    run = running()
    speak(run)
    run.advance(2.5)
    effects = run.keys(run.flow.code)
    assert visible(effects) == [
        RememberPass(calling_number=NUMBER, until=run.now + 86400.0),
        Forward(target_ref="pbx-main", screening="captcha=passed;attempts=1"),
    ]
    result = run.flow.result
    assert isinstance(result, CaptchaResult)
    assert result.outcome is Outcome.PASSED and result.passed
    assert result.attempts == 1
    assert result.early_input is False
    assert result.time_to_answer == 2.5
    assert len(run.timers) == 0


def test_captcha_pass_on_retry_with_new_code() -> None:
    run = running()
    first = run.flow.code
    speak(run)
    effects = run.keys(wrong(first))
    second = run.flow.code
    rng = random.Random(7)
    assert (new_code(rng, 4), new_code(rng, 4)) == (first, second)
    assert items(effects) == ("captcha-retry",) + tuple(f"digit-{d}" for d in second)
    assert run.flow.state is CaptchaState.INTRO
    speak(run)
    effects = run.keys(second)
    assert Forward(target_ref="pbx-main", screening="captcha=passed;attempts=2") in effects
    assert run.flow.result.attempts == 2


def test_captcha_retry_keeps_code_when_configured() -> None:
    run = running(new_code_on_retry=False)
    code = run.flow.code
    speak(run)
    effects = run.keys("#")  # nothing entered: ignored
    assert effects == []
    run.key(str((int(code[0]) + 1) % 10))
    effects = run.key("#")  # short entry submitted: wrong
    assert items(effects) == ("captcha-retry",) + tuple(f"digit-{d}" for d in code)
    assert run.flow.code == code


def test_captcha_star_clears_entry() -> None:
    run = running()
    code = run.flow.code
    speak(run)
    run.keys(code[:2])
    assert run.key("*") == []
    run.keys(code)
    assert run.flow.result.passed


@pytest.mark.parametrize(
    ("on_fail", "expect_first", "hangs_up"),
    [
        (OnFail.HANGUP, [], True),
        (OnFail.BLOCK, [BlockCaller(duration_s=3600.0, reason="captcha failed", calling_number=NUMBER)], True),
        (OnFail.VOICEMAIL, [Voicemail(box="main")], False),
    ],
    ids=["hangup", "block", "voicemail"],
)
def test_captcha_fail_after_attempts_runs_on_fail(on_fail, expect_first, hangs_up) -> None:
    run = running(on_fail=on_fail, voicemail_box="main", attempts=2)
    effects: list[Effect] = []
    for _ in range(2):
        speak(run)
        effects = run.keys(wrong(run.flow.code))
    shown = visible(effects)
    if hangs_up:
        assert shown[:-1] == expect_first
        assert isinstance(shown[-1], Play) and shown[-1].items == ("goodbye",)
        assert not run.flow.finished
        assert run.played() == [Hangup(reason="captcha failed")]
    else:
        assert shown == expect_first
    result = run.flow.result
    assert result.outcome is Outcome.FAILED and result.passed is False
    assert result.attempts == 2
    assert result.fail_action == on_fail.value
    assert result.detail == "captcha failed (wrong code) after 2 attempt(s)"
    assert not any(isinstance(e, (Forward, RememberPass)) for e in effects)


def test_captcha_timeout_counts_as_failed_attempt() -> None:
    run = running(attempts=2)
    speak(run)
    assert visible(run.advance(9.9)) == []
    effects = run.advance(0.1)
    assert items(effects)[0] == "captcha-retry"
    speak(run)
    effects = run.advance(10.0)
    assert items(effects) == ("goodbye",)
    run.played()
    assert run.flow.result.detail == "captcha failed (timeout) after 2 attempt(s)"


def test_captcha_no_timeout_while_code_is_spoken() -> None:
    run = running()
    assert run.advance(120.0) == []
    assert run.flow.state is CaptchaState.INTRO


def test_captcha_keys_during_intro_are_discarded() -> None:
    run = running()
    code = run.flow.code
    assert run.keys("12") == []
    speak(run)
    run.keys(code)
    result = run.flow.result
    assert result.passed
    assert result.discarded_digits == 2
    assert result.early_input is False


def test_captcha_early_input_recorded_and_entry_continues() -> None:
    run = running()
    code = run.flow.code
    speak(run, items_done=3)  # intro and two digits spoken
    assert run.flow.state is CaptchaState.SPEAKING
    run.keys(code[:2])
    speak(run)
    run.advance(1.0)
    effects = run.keys(code[2:])
    assert Forward(target_ref="pbx-main", screening="captcha=passed;attempts=1;early-input=1") in effects
    result = run.flow.result
    assert result.early_input is True
    assert result.time_to_answer == 1.0


def test_captcha_entry_completed_before_code_spoken_passes_with_zero_time() -> None:
    run = running()
    code = run.flow.code
    speak(run, items_done=4)  # last digit still playing
    effects = run.keys(code)
    assert StopPlayback() in effects
    result = run.flow.result
    assert result.passed and result.early_input
    assert result.time_to_answer == 0.0


def test_captcha_early_input_fails_when_configured() -> None:
    run = running(early_input=EarlyInput.FAIL, on_fail=OnFail.BLOCK)
    speak(run, items_done=1)
    effects = run.key("5")
    assert BlockCaller(duration_s=3600.0, reason="captcha failed", calling_number=NUMBER) in effects
    assert items(effects) == ("goodbye",)
    run.played()
    result = run.flow.result
    assert result.outcome is Outcome.FAILED
    assert result.early_input is True
    assert result.attempts == 1
    assert result.detail == "captcha failed (early input) after 1 attempt(s)"


def test_captcha_without_progress_events_opens_window_on_finish() -> None:
    run = running()
    code = run.flow.code
    run.played()
    run.keys(code)
    assert run.flow.result.passed


def test_captcha_progress_of_old_playlist_is_ignored() -> None:
    run = running()
    old = run.playing.playlist_id
    speak(run)
    run.keys(wrong(run.flow.code))
    assert run.send(PlaybackProgress(playlist_id=old, item_index=4)) == []
    assert run.send(PlaybackFinished(playlist_id=old)) == []
    assert run.flow.state is CaptchaState.INTRO


@pytest.mark.parametrize(
    ("number", "memory", "remembered"),
    [(NUMBER, "1h", True), (NUMBER, "0s", False), ("", "24h", False)],
    ids=["remember-1h", "memory-off", "anonymous"],
)
def test_captcha_remember_pass_until(number, memory, remembered) -> None:
    run = running(number=number, pass_memory=memory)
    speak(run)
    effects = run.keys(run.flow.code)
    remembers = [e for e in effects if isinstance(e, RememberPass)]
    if remembered:
        assert remembers == [RememberPass(calling_number=number, until=run.now + 3600.0)]
    else:
        assert remembers == []
    assert any(isinstance(e, Forward) for e in effects)


def test_captcha_block_skipped_for_anonymous_caller() -> None:
    run = running(number="", on_fail=OnFail.BLOCK, attempts=1)
    speak(run)
    effects = run.keys(wrong(run.flow.code))
    assert not any(isinstance(e, BlockCaller) for e in effects)
    run.played()
    assert run.flow.result.detail.endswith("; anonymous caller not blocked")


def test_captcha_caller_hangup_records_attempts() -> None:
    run = running()
    speak(run)
    run.keys(wrong(run.flow.code))
    effects = run.send(CallerHungUp())
    assert not any(isinstance(e, (StopPlayback, Hangup)) for e in effects)
    result = run.flow.result
    assert result.outcome is Outcome.HANGUP and result.detail == "caller hung up"
    assert result.attempts == 2
    assert run.keys(run.flow.code) == []


def test_captcha_hangup_during_goodbye_keeps_verdict() -> None:
    run = running(attempts=1)
    speak(run)
    run.keys(wrong(run.flow.code))
    assert run.send(CallerHungUp()) == []
    assert run.flow.result.outcome is Outcome.FAILED


def test_captcha_media_timeout_hangs_up() -> None:
    run = running()
    effects = run.send(MediaTimedOut())
    assert effects == [StopPlayback(), Hangup(reason="media timeout")]
    assert run.flow.result.detail == "media timeout"


def test_captcha_non_digit_keys_ignored_in_entry() -> None:
    run = running()
    code = run.flow.code
    speak(run)
    run.key("A")
    run.keys(code)
    assert run.flow.result.passed


def test_captcha_result_evidence_and_json() -> None:
    run = running()
    speak(run, items_done=2)
    run.key("1")
    speak(run)
    run.keys(wrong(run.flow.code))  # finishes the first entry wrong, retry begins
    speak(run)
    run.keys(run.flow.code)
    result = run.flow.result
    assert [e.signal for e in result.evidence()] == ["captcha.passed", "captcha.early_input"]
    assert result.evidence()[1].weight == 1.0
    decoded = msgspec.json.decode(msgspec.json.encode(result))
    assert decoded["outcome"] == "passed" and decoded["early_input"] is True


def test_captcha_hangup_result_has_no_verdict_evidence() -> None:
    run = running()
    run.send(CallerHungUp())
    assert run.flow.result.evidence() == []


OPS = st.lists(
    st.one_of(
        st.tuples(st.just("key"), st.sampled_from("0123456789*#")),
        st.tuples(st.just("played")),
        st.tuples(st.just("progress"), st.integers(min_value=0, max_value=11)),
        st.tuples(st.just("advance"), st.floats(min_value=0.0, max_value=12.0)),
        st.tuples(st.just("stale")),
    ),
    max_size=50,
)


@settings(max_examples=150, deadline=None)
@given(OPS, st.sampled_from(list(OnFail)), st.sampled_from(list(EarlyInput)))
def test_captcha_random_caller_always_ends(ops, on_fail, early) -> None:
    run = running(on_fail=on_fail, early_input=early, voicemail_box="main")
    for op in ops:
        if op[0] == "key":
            run.key(op[1])
        elif op[0] == "played" and run.playing is not None:
            run.played()
        elif op[0] == "progress" and run.playing is not None:
            run.send(PlaybackProgress(playlist_id=run.playing.playlist_id, item_index=op[1]))
        elif op[0] == "advance":
            run.advance(op[1])
        elif op[0] == "stale":
            assert run.send(TimerFired(name="captcha.answer.999999")) == []
        assert len(run.timers) <= 1
        assert run.flow.result is None or run.flow.result.attempts <= 3
    for _ in range(50):  # now a silent caller: timeouts must end it
        if run.flow.finished:
            break
        if run.playing is not None:
            run.played()
        else:
            at = run.timers.next_at()
            assert at is not None, f"captcha stuck in {run.flow.state}"
            run.advance(at - run.now)
    result = run.flow.result
    assert result is not None and len(run.timers) == 0
    assert result.passed == (result.outcome is Outcome.PASSED)


@pytest.mark.parametrize(("block_scope", "scope"), [(None, "customer"), ("global", "global")], ids=["default-customer", "global-when-asked"])
def test_captcha_block_scope_defaults_to_customer(block_scope, scope) -> None:
    from edge.media.schema import BlockScope

    kw = {"block_scope": BlockScope(block_scope)} if block_scope else {}
    run = running(on_fail=OnFail.BLOCK, attempts=1, **kw)
    speak(run)
    effects = run.keys(wrong(run.flow.code))
    blocks = [e for e in effects if isinstance(e, BlockCaller)]
    assert blocks == [BlockCaller(duration_s=3600.0, reason="captcha failed", calling_number=NUMBER, scope=scope)]
