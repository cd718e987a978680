"""IVR menu state machine on a fake clock with scripted engine events."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.media.flow import (
    AnswerCall,
    CallerHungUp,
    CallerMediaStarted,
    CancelTimer,
    DtmfReceived,
    Effect,
    Forward,
    Hangup,
    MediaTimedOut,
    Outcome,
    Play,
    PlaybackFinished,
    AnswerGate,
    ScreeningRecord,
    SendEarlyMedia,
    StartRecording,
    StartTimer,
    StopPlayback,
    TimerFired,
    TimerTable,
    Voicemail,
)
from edge.media.menus import Menu, MenuResult, MenuState
from edge.media.schema import MenuOption, MenuSpec, ScreeningMode
from tests.media.flow_harness import Run, items, visible


MENUS = {
    "main": MenuSpec(
        greeting=("menu-main", "menu-options"),
        options={
            "1": MenuOption(forward="sales"),
            "2": MenuOption(menu="support"),
            "9": MenuOption(voicemail="main"),
            "0": MenuOption(hangup=True),
            "*": MenuOption(repeat=True),
            "70": MenuOption(forward="ext70"),
            "71": MenuOption(forward="ext71"),
            "5": MenuOption(forward="five"),
            "55": MenuOption(forward="fifty-five"),
        },
        first_digit_timeout="5s",
        inter_digit_timeout="3s",
        max_failures=3,
    ),
    "support": MenuSpec(
        greeting="menu-support",
        options={"1": MenuOption(forward="support"), "#": MenuOption(menu="main")},
        max_failures=2,
        on_failure=MenuOption(voicemail="support-box"),
    ),
}


def running(menus=MENUS, entry="main", **kw) -> Run:
    run = Run(Menu(menus, entry, **kw))
    run.start()
    return run


def test_menu_start_plays_greeting_interruptible() -> None:
    run = Run(Menu(MENUS, "main"))
    effects = run.start()
    assert len(effects) == 1
    play = effects[0]
    assert isinstance(play, Play)
    assert play.items == ("menu-main", "menu-options")
    assert play.interruptible is True
    assert run.flow.state is MenuState.PROMPTING
    assert not run.flow.finished and run.flow.result is None


@pytest.mark.parametrize(
    ("keys", "effect", "outcome", "target"),
    [
        ("1", Forward(target_ref="sales", screening="menu=main;option=1"), Outcome.FORWARDED, "sales"),
        ("9", Voicemail(box="main"), Outcome.VOICEMAIL, "main"),
        ("70", Forward(target_ref="ext70", screening="menu=main;option=70"), Outcome.FORWARDED, "ext70"),
        ("71", Forward(target_ref="ext71", screening="menu=main;option=71"), Outcome.FORWARDED, "ext71"),
        ("55", Forward(target_ref="fifty-five", screening="menu=main;option=55"), Outcome.FORWARDED, "fifty-five"),
        ("5#", Forward(target_ref="five", screening="menu=main;option=5"), Outcome.FORWARDED, "five"),
    ],
    ids=["single-forward", "voicemail", "multi-70", "multi-71", "longest-55", "terminator-5"],
)
def test_menu_option_selected_after_greeting(keys, effect, outcome, target) -> None:
    run = running()
    run.played()
    effects = run.keys(keys)
    assert visible(effects) == [effect]
    result = run.flow.result
    assert isinstance(result, MenuResult)
    assert result.outcome is outcome
    assert result.selection == keys.rstrip("#")
    assert result.failed is False
    assert result.target == target
    assert run.flow.finished
    assert len(run.timers) == 0  # every timer cancelled


def test_menu_prefix_option_selected_on_inter_digit_timeout() -> None:
    run = running()
    run.played()
    assert visible(run.key("5")) == []
    assert run.flow.state is MenuState.COLLECTING
    assert visible(run.advance(2.9)) == []
    effects = run.advance(0.2)
    assert visible(effects) == [Forward(target_ref="five", screening="menu=main;option=5")]
    assert run.flow.result.detail == "option 5 -> five"


def test_menu_incomplete_entry_on_inter_digit_timeout_is_invalid() -> None:
    run = running()
    run.played()
    run.key("7")
    effects = run.advance(3.0)
    assert items(effects) == ("menu-invalid", "menu-main", "menu-options")
    assert not run.flow.finished


def test_menu_incomplete_entry_with_terminator_is_invalid() -> None:
    run = running()
    run.played()
    run.key("7")
    effects = run.key("#")
    assert items(effects) == ("menu-invalid", "menu-main", "menu-options")
    assert any(isinstance(e, CancelTimer) for e in effects)  # inter-digit timer stopped


def test_menu_invalid_continuation_cancels_inter_digit_timer() -> None:
    run = running()
    run.played()
    run.key("7")
    assert len(run.timers) == 1
    effects = run.key("9")
    assert items(effects)[0] == "menu-invalid"
    assert len(run.timers) == 0  # greeting playing again: no timer until it ends


def test_menu_first_digit_timer_starts_only_after_greeting() -> None:
    run = running()
    assert run.advance(60.0) == []  # greeting still playing: no timeout
    effects = run.played()
    assert effects == [StartTimer(name=effects[0].name, at=run.now + 5.0)]
    assert run.flow.state is MenuState.WAITING


def test_menu_first_digit_timeout_replays_with_timeout_prompt() -> None:
    run = running()
    run.played()
    effects = run.advance(5.0)
    assert items(effects) == ("menu-timeout", "menu-main", "menu-options")
    assert run.flow.state is MenuState.PROMPTING


def test_menu_timeouts_up_to_max_failures_then_goodbye_and_hangup() -> None:
    run = running()
    for _ in range(2):
        run.played()
        assert items(run.advance(5.0))[0] == "menu-timeout"
    run.played()
    effects = run.advance(5.0)
    goodbye = [e for e in effects if isinstance(e, Play)]
    assert goodbye and goodbye[0].items == ("goodbye",) and goodbye[0].interruptible is False
    assert not run.flow.finished
    assert run.key("1") == []  # goodbye is not interruptible, keys ignored
    effects = run.played()
    assert effects == [Hangup(reason="max failures (no key pressed) -> hangup")]
    result = run.flow.result
    assert result.outcome is Outcome.HANGUP
    assert result.failures == 3
    assert result.failed is True  # feeds the Spam Detective's failed_screenings signal
    assert result.started_at == 100.0 and result.ended_at == run.now


def test_menu_invalid_entries_count_towards_max_failures() -> None:
    run = running()
    assert items(run.key("3")) == ("menu-invalid", "menu-main", "menu-options")
    assert items(run.key("4"))[0] == "menu-invalid"
    effects = run.key("8")
    assert items(effects) == ("goodbye",)
    run.played()
    assert run.flow.result.detail == "max failures (invalid entry '8') -> hangup"


def test_menu_max_failures_runs_configured_final_action() -> None:
    run = running(entry="support")
    run.key("7")
    effects = run.key("7")
    assert visible(effects) == [StopPlayback(), Voicemail(box="support-box")]
    result = run.flow.result
    assert result.outcome is Outcome.VOICEMAIL
    assert result.detail == "max failures (invalid entry '7') -> voicemail support-box"
    assert result.selection == ""
    assert result.failed is True


def test_menu_final_forward_marks_screening_failed() -> None:
    menus = {"m": MenuSpec(greeting="g", options={"1": MenuOption(hangup=True)}, max_failures=1,
                           on_failure=MenuOption(forward="operator"))}
    run = running(menus, "m")
    run.played()
    effects = run.advance(5.0)
    assert visible(effects) == [Forward(target_ref="operator", screening="menu=m;failed")]
    assert run.flow.result.failed is True


def test_menu_repeat_replays_greeting_without_failure() -> None:
    run = running()
    run.played()
    effects = run.key("*")
    assert items(effects) == ("menu-main", "menu-options")
    run.key("3")  # one failure
    run.key("*")
    run.key("4")  # second failure: still below max_failures = 3
    assert not run.flow.finished
    run.key("1")
    assert run.flow.result.failures == 2


def test_menu_submenu_plays_its_greeting_and_selects_there() -> None:
    run = running()
    run.played()
    effects = run.key("2")
    assert items(effects) == ("menu-support",)
    assert run.flow.menu == "support"
    run.played()
    effects = run.key("1")
    assert visible(effects) == [Forward(target_ref="support", screening="menu=support;option=1")]
    result = run.flow.result
    assert result.menu == "support"
    assert result.path == ("main", "support")


def test_menu_submenu_resets_failures() -> None:
    run = running()
    run.key("3")
    run.key("4")  # two failures in main
    run.key("2")
    run.key("8")  # first failure in support (max 2)
    assert not run.flow.finished
    assert run.flow.state is MenuState.PROMPTING


def test_menu_lone_terminator_selects_hash_option() -> None:
    run = running(entry="support")
    effects = run.key("#")
    assert items(effects) == ("menu-main", "menu-options")
    assert run.flow.menu == "main"


def test_menu_lone_terminator_without_option_is_invalid() -> None:
    run = running()
    assert items(run.key("#"))[0] == "menu-invalid"


def test_menu_loop_between_menus_is_bounded() -> None:
    run = running(max_transitions=3)
    run.key("2")  # main -> support
    run.key("#")  # support -> main
    run.key("*")  # repeat counts too
    effects = run.key("2")  # fourth transition
    assert items(effects) == ("goodbye",)
    run.played()
    result = run.flow.result
    assert result.outcome is Outcome.HANGUP
    assert result.detail == "menu loop: too many menu changes"
    assert result.path == ("main", "support", "main")


def test_menu_hangup_option_says_goodbye_then_hangs_up() -> None:
    run = running()
    run.played()
    effects = run.key("0")
    assert items(effects) == ("goodbye",)
    assert run.flow.state is MenuState.CLOSING
    assert run.played() == [Hangup(reason="option 0 -> hangup")]
    assert run.flow.result.outcome is Outcome.HANGUP
    assert run.flow.result.selection == "0"


@pytest.mark.parametrize("during", ["greeting", "waiting", "collecting"])
def test_menu_caller_hangup_mid_menu_ends_without_effects_on_the_call(during) -> None:
    run = running()
    if during != "greeting":
        run.played()
    if during == "collecting":
        run.key("7")
    effects = run.send(CallerHungUp())
    assert all(isinstance(e, CancelTimer) for e in effects)  # no StopPlayback, no Hangup
    assert len(run.timers) == 0
    result = run.flow.result
    assert result.outcome is Outcome.HANGUP and result.detail == "caller hung up"
    assert run.key("1") == []  # finished: further events ignored


def test_menu_caller_hangup_during_goodbye_keeps_decision() -> None:
    run = running()
    run.key("0")
    assert run.send(CallerHungUp()) == []
    assert run.flow.result.detail == "option 0 -> hangup"


def test_menu_media_timeout_hangs_up() -> None:
    run = running()
    effects = run.send(MediaTimedOut())
    assert effects == [StopPlayback(), Hangup(reason="media timeout")]
    assert run.flow.result.detail == "media timeout"


def test_menu_barge_in_stops_greeting() -> None:
    run = running()
    greeting = run.playing
    effects = run.key("2")
    assert effects[0] == StopPlayback()
    assert items(effects) == ("menu-support",)
    # the engine reports the old playlist late: ignored
    assert run.send(PlaybackFinished(playlist_id=greeting.playlist_id)) == []
    assert run.flow.state is MenuState.PROMPTING


def test_menu_barge_in_on_error_prompt() -> None:
    run = running()
    run.key("3")
    effects = run.key("1")
    assert effects[0] == StopPlayback()
    assert run.flow.result.outcome is Outcome.FORWARDED


def test_menu_stale_timer_is_ignored() -> None:
    run = running()
    effects = run.played()
    old = effects[0].name
    run.key("7")  # cancels the first-digit timer
    assert run.send(TimerFired(name=old)) == []
    assert run.send(TimerFired(name="captcha.answer.1")) == []
    assert run.flow.state is MenuState.COLLECTING


def test_menu_unknown_entry_raises() -> None:
    with pytest.raises(ValueError, match="unknown menu 'nope'"):
        Menu(MENUS, "nope")


def test_menu_timer_names_are_unique_per_arming() -> None:
    run = running()
    first = run.played()[0].name
    run.advance(5.0)
    second = run.played()[0].name
    assert first != second and first.startswith("menu.first_digit.")


# ------------------------------------------------------------- shared flow machinery


def test_flow_protocol_satisfied_by_every_flow() -> None:
    from edge.media.captcha import Captcha
    from edge.media.flow import Flow
    from edge.media.schema import CaptchaSpec, VoicemailBoxSpec
    from edge.media.voicemail import VoicemailDeposit

    flows = [Menu(MENUS, "main"), Captcha(CaptchaSpec(seed=1), ""), VoicemailDeposit("b", VoicemailBoxSpec())]
    assert all(isinstance(f, Flow) for f in flows)


def test_timer_table_fires_in_deadline_order_and_honours_cancel() -> None:
    table = TimerTable()
    rest = table.apply([
        StartTimer(name="b", at=5.0),
        StartTimer(name="a", at=3.0),
        Hangup(reason="x"),
        StartTimer(name="c", at=4.0),
        CancelTimer(name="c"),
    ])
    assert rest == [Hangup(reason="x")]
    assert table.next_at() == 3.0
    assert table.due(2.9) == []
    assert table.due(10.0) == [TimerFired(name="a"), TimerFired(name="b")]
    assert len(table) == 0 and table.next_at() is None


def test_timer_table_rearming_replaces_deadline() -> None:
    table = TimerTable()
    table.apply([StartTimer(name="t", at=1.0), StartTimer(name="t", at=9.0)])
    assert table.due(5.0) == []
    assert table.due(9.0) == [TimerFired(name="t")]


def test_timer_table_cap_evicts_earliest_armed() -> None:
    table = TimerTable(cap=2)
    table.apply([StartTimer(name=n, at=float(i)) for i, n in enumerate("xyz")])
    assert len(table) == 2
    assert table.due(100.0) == [TimerFired(name="y"), TimerFired(name="z")]


def test_menu_result_encodes_for_activity_record() -> None:
    import msgspec

    run = running()
    run.key("1")
    decoded = msgspec.json.decode(msgspec.json.encode(run.flow.result))
    assert decoded["outcome"] == "forwarded"
    assert decoded["path"] == ["main"] and decoded["target"] == "sales"


# ------------------------------------------------------------------ random callers

OPS = st.lists(
    st.one_of(
        st.tuples(st.just("key"), st.sampled_from("0123456789*#A")),
        st.tuples(st.just("played")),
        st.tuples(st.just("advance"), st.floats(min_value=0.0, max_value=8.0)),
        st.tuples(st.just("stale")),
    ),
    max_size=40,
)


def drive(run: Run, ops) -> None:
    """Random caller, then a silent caller: the flow must end within a bounded number of steps."""
    for op in ops:
        if op[0] == "key":
            run.key(op[1])
        elif op[0] == "played" and run.playing is not None:
            run.played()
        elif op[0] == "advance":
            run.advance(op[1])
        elif op[0] == "stale":
            assert run.send(TimerFired(name="menu.first_digit.999999")) == []
        assert len(run.timers) <= 1
        if run.flow.finished:
            assert len(run.timers) == 0
            assert run.key("1") == []
    for _ in range(100):
        if run.flow.finished:
            break
        if run.playing is not None:
            run.played()
        else:
            at = run.timers.next_at()
            assert at is not None, f"flow stuck in {run.flow.state}"
            run.advance(at - run.now)
    assert run.flow.finished and run.flow.result is not None
    assert len(run.timers) == 0


@settings(max_examples=150, deadline=None)
@given(OPS)
def test_menu_random_caller_always_ends(ops) -> None:
    run = running(max_transitions=4)
    drive(run, ops)


# ------------------------------------------------------------------- screening mode


def test_screening_answer_mode_answers_at_once() -> None:
    gate = AnswerGate(ScreeningMode.ANSWER, 3.0)
    assert gate.start(10.0) == [AnswerCall()]
    assert gate.answered
    assert gate.bridged(20.0) == []  # never answered twice
    assert gate.record.ran == "answer" and gate.record.answered_at == 10.0


def test_screening_early_media_never_answers_a_failed_caller() -> None:
    gate = AnswerGate(ScreeningMode.EARLY_MEDIA, 3.0)
    effects = gate.start(10.0)
    assert effects[0] == SendEarlyMedia()
    timer = effects[1]
    assert isinstance(timer, StartTimer) and timer.at == 13.0
    assert gate.handle(CallerMediaStarted(at=10.2), 10.2) == [CancelTimer(name=timer.name)]
    assert gate.handle(TimerFired(name=timer.name), 13.0) == []  # late fire after cancel
    assert gate.admit(Hangup(reason="captcha failed"), 40.0) == []
    assert not gate.answered
    assert gate.record.ran == "early-media" and gate.record.answered_at is None


def test_screening_early_media_answers_when_bridged() -> None:
    gate = AnswerGate(ScreeningMode.EARLY_MEDIA, 3.0)
    gate.start(10.0)
    gate.handle(CallerMediaStarted(at=10.1), 10.1)
    assert gate.admit(Forward(target_ref="sales", screening="captcha=passed;attempts=1"), 20.0) == []
    assert gate.bridged(21.0) == [AnswerCall()]
    assert gate.record.answered_at == 21.0 and gate.record.fell_back is False


def test_screening_early_media_answers_when_recording_starts() -> None:
    gate = AnswerGate(ScreeningMode.EARLY_MEDIA, 3.0)
    effects = gate.start(0.0)
    recording = StartRecording(box="main", max_seconds=120.0, silence_seconds=5.0)
    assert gate.admit(recording, 2.0) == [CancelTimer(name=effects[1].name), AnswerCall()]
    assert gate.admit(recording, 3.0) == []


def test_screening_early_media_falls_back_to_answer_without_caller_rtp() -> None:
    gate = AnswerGate(ScreeningMode.EARLY_MEDIA, 3.0)
    timer = gate.start(0.0)[1]
    assert gate.handle(TimerFired(name="screening.other"), 3.0) == []
    assert gate.handle(TimerFired(name=timer.name), 3.0) == [AnswerCall()]
    assert gate.record == ScreeningRecord(
        requested="early-media", ran="answer", fell_back=True, answered_at=3.0
    )


def test_screening_caller_hangup_cancels_fallback() -> None:
    gate = AnswerGate(ScreeningMode.EARLY_MEDIA, 3.0)
    timer = gate.start(0.0)[1]
    assert gate.handle(CallerHungUp(), 1.0) == [CancelTimer(name=timer.name)]
    assert not gate.answered
