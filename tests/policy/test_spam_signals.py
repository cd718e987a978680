from __future__ import annotations

import pytest

from edge.policy.facts import Evidence
from edge.policy.signals import SignalConfig, SignalState, SignalWeights, is_neighbour_spoof, stir_evidence
from edge.stir.result import StirResult, StirStatus
from policy_factories import build_facts

CFG = SignalConfig()


def signals(evidence: list[Evidence]) -> list[str]:
    return [e.signal for e in evidence]


@pytest.mark.parametrize(
    ("calling", "called", "hit"),
    [
        ("+12025550100", "+12025550199", True),
        ("+12025550100", "+12025550100", False),  # calling yourself is not spoofing a neighbour
        ("+12025560100", "+12025550199", False),  # different NXX
        ("+13125550100", "+12025550199", False),  # different NPA
        ("+442079460000", "+442079460001", False),  # NANP only
        ("", "+12025550199", False),
    ],
    ids=["same-npa-nxx", "same-number", "other-nxx", "other-npa", "not-nanp", "no-number"],
)
def test_is_neighbour_spoof(calling: str, called: str, hit: bool) -> None:
    assert is_neighbour_spoof(calling, called) is hit


def test_signal_evidence_neighbour_spoof_names_npa_nxx() -> None:
    ev = SignalState().evidence(build_facts("+12025550100", "+12025550199"), CFG, 0.0)
    assert ev == [Evidence("neighbour_spoof", 30.0, "caller shares NPA-NXX 202555 with called number", "signal.neighbour_spoof")]


@pytest.mark.parametrize(
    ("facts_kw", "expected"),
    [
        ({"calling": "+15555555555"}, ["invalid"]),
        ({"calling": "alice"}, ["invalid"]),
        ({"calling": "", "anonymous": True}, ["anonymous"]),
        ({"calling": "+12025550100"}, []),
    ],
    ids=["unallocated", "not-a-number", "anonymous", "clean"],
)
def test_signal_evidence_invalid_and_anonymous(facts_kw: dict, expected: list[str]) -> None:
    assert signals(SignalState().evidence(build_facts(**facts_kw), CFG, 0.0)) == expected


def test_signal_evidence_invalid_detail_for_non_number() -> None:
    ev = SignalState().evidence(build_facts("alice"), CFG, 0.0)
    assert ev[0].detail == "caller 'alice' is not a number"


@pytest.mark.parametrize(
    ("stir", "expected"),
    [
        (StirResult(StirStatus.FAILED, code="bad_signature"), [("stir.failed", 40.0, "verification failed: bad_signature")]),
        (StirResult(StirStatus.ABSENT), [("stir.absent", 5.0, "no Identity header")]),
        (StirResult(StirStatus.PASSED, attestation="C"), [("stir.attestation_c", 15.0, "gateway attestation (C)")]),
        (StirResult(StirStatus.PASSED, attestation="B"), []),  # weight 0 by default: switched off
        (StirResult(StirStatus.PASSED, attestation="A"), []),
    ],
    ids=["failed", "absent", "attestation-c", "attestation-b-off", "attestation-a"],
)
def test_stir_evidence(stir: StirResult, expected: list[tuple[str, float, str]]) -> None:
    ev = stir_evidence(build_facts(stir=stir), SignalWeights())
    assert [(e.signal, e.weight, e.detail) for e in ev] == expected


def test_signal_weight_zero_switches_signal_off() -> None:
    cfg = SignalConfig(weights=SignalWeights(anonymous=0.0))
    assert SignalState().evidence(build_facts("", anonymous=True), cfg, 0.0) == []


def test_signal_short_calls_needs_share_and_minimum() -> None:
    state = SignalState()
    caller = "+12025550100"
    facts = build_facts(caller)
    state.record_call_end(caller, True, 2.0, 10.0)
    state.record_call_end(caller, True, 3.0, 20.0)
    state.record_call_end(caller, False, 0.0, 25.0)  # unanswered: says nothing
    assert signals(state.evidence(facts, CFG, 30.0)) == []  # only 2 answered calls
    state.record_call_end(caller, True, 120.0, 30.0)
    ev = state.evidence(facts, CFG, 40.0)
    assert ev == [Evidence("short_calls", 30.0, "2/3 answered calls ended within 6s", "signal.short_calls")]
    state.record_call_end(caller, True, 300.0, 50.0)
    assert signals(state.evidence(facts, CFG, 60.0)) == []  # 2/4 is below 0.6


def test_signal_short_calls_history_window_ages_out() -> None:
    state = SignalState()
    caller = "+12025550100"
    for t in (0.0, 1.0, 2.0):
        state.record_call_end(caller, True, 1.0, t)
    cfg = SignalConfig(history_window=100.0)
    assert signals(state.evidence(build_facts(caller), cfg, 50.0)) == ["short_calls"]
    assert signals(state.evidence(build_facts(caller), cfg, 200.0)) == []


def test_signal_failed_screenings_counts_since_last_pass() -> None:
    state = SignalState()
    caller = "+12025550100"
    state.record_screening(caller, False, 1.0)
    state.record_screening(caller, True, 2.0)
    state.record_screening(caller, False, 3.0)
    assert state.failed_screenings(caller, 0.0) == 1
    assert signals(state.evidence(build_facts(caller), CFG, 4.0)) == []
    state.record_screening(caller, False, 5.0)
    ev = state.evidence(build_facts(caller), CFG, 6.0)
    assert ev == [Evidence("failed_screenings", 40.0, "2 screenings failed in a row", "signal.failed_screenings")]


def test_signal_released_number_uses_callback() -> None:
    released = {"+13125550111"}
    ev = SignalState().evidence(build_facts("+12025550100", "+13125550111"), CFG, 0.0, released.__contains__)
    assert signals(ev) == ["released_number"]
    ev = SignalState().evidence(build_facts("+12025550100", "+13125550112"), CFG, 0.0, released.__contains__)
    assert ev == []


def test_signal_state_history_bounded() -> None:
    state = SignalState(max_callers=100, per_caller=3)
    for i in range(1_000):
        state.record_call_end(f"+1202555{i:04d}", True, 1.0, float(i))
        state.record_screening(f"+1202555{i:04d}", False, float(i))
    for _ in range(10):
        state.record_call_end("+12025559999", True, 1.0, 2_000.0)
    assert len(state.calls) == 100
    assert len(state.screenings) == 100
    assert state.calls.evictions == 901  # 1,001 distinct callers through a cap of 100
    assert len(state.calls.get("+12025559999")) == 3
