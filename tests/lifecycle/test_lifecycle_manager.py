"""Number lifecycle with a fake clock moved through the quarantine (issue 6)."""

from __future__ import annotations

import msgspec
import pytest

from edge.lifecycle.manager import DAY, Lifecycle, LifecycleRefused, conflicts, date_of
from edge.lifecycle.record import NumberState
from edge.lifecycle.schema import LifecycleConfig, validate_lifecycle

N = "+13125550199"
T0 = 19_000 * DAY + 3600.0  # 2022-01-08 01:00 UTC


def _traffic(lc: Lifecycle, day: int, calls: int) -> None:
    for i in range(calls):
        lc.record_traffic(N, T0 + day * DAY + 60.0 * i)


def test_lifecycle_release_marks_number_released_for_call_path():
    lc = Lifecycle()
    assert lc.is_released(N) is False
    rec = lc.release(N, T0, customer="acme")
    assert rec.state is NumberState.RELEASED and rec.released_at == T0 and rec.customer == "acme"
    assert lc.is_released(N) is True
    assert lc.released_numbers() == frozenset({N})


def test_lifecycle_release_twice_refused():
    lc = Lifecycle()
    lc.release(N, T0)
    with pytest.raises(LifecycleRefused, match=r"already released \(since 2022-01-08\)"):
        lc.release(N, T0 + DAY)


def test_lifecycle_quiet_number_becomes_eligible_after_90_days():
    lc = Lifecycle()
    lc.release(N, T0)
    for day in range(0, 95, 3):
        _traffic(lc, day, 1)  # at or below 2/day all along
    s89 = lc.status(N, T0 + 89 * DAY)
    assert s89 is not None and s89.state is NumberState.RELEASED
    assert s89.days_in_quarantine == 89
    assert s89.reason == f"in quarantine until {date_of(T0 + 90 * DAY)} (1 days left)"
    assert s89.eligible_at == T0 + 90 * DAY
    s90 = lc.status(N, T0 + 90 * DAY)
    assert s90 is not None and s90.state is NumberState.ELIGIBLE and s90.reason == ""
    assert [s.number for s in lc.available(T0 + 90 * DAY)] == [N]
    assert lc.available(T0 + 89 * DAY) == []


def test_lifecycle_noisy_traffic_late_in_quarantine_delays_eligibility():
    lc = Lifecycle()
    lc.release(N, T0)
    _traffic(lc, 85, 5)  # above the 2/day threshold on day 85
    noisy_day = int((T0 + 85 * DAY) // DAY)
    expected = (noisy_day + 14) * DAY
    s = lc.status(N, T0 + 90 * DAY)
    assert s is not None and s.state is NumberState.RELEASED
    assert s.eligible_at == expected
    assert s.reason == (
        f"residual traffic 5 on {date_of(T0 + 85 * DAY)} is above 2/day; needs 14 quiet days (until {date_of(expected)})"
    )
    assert lc.status(N, expected - 1).state is NumberState.RELEASED
    assert lc.status(N, expected).state is NumberState.ELIGIBLE


def test_lifecycle_noisy_traffic_early_in_quarantine_does_not_delay():
    lc = Lifecycle()
    lc.release(N, T0)
    _traffic(lc, 10, 50)
    s = lc.status(N, T0 + 90 * DAY)
    assert s is not None and s.state is NumberState.ELIGIBLE
    assert s.total_residual == 50


def test_lifecycle_traffic_at_threshold_counts_as_quiet():
    lc = Lifecycle(LifecycleConfig(residual_max_per_day=2))
    lc.release(N, T0)
    for day in range(76, 91):
        _traffic(lc, day, 2)
    assert lc.status(N, T0 + 90 * DAY).state is NumberState.ELIGIBLE
    _traffic(lc, 90, 1)  # third call today
    assert lc.status(N, T0 + 90 * DAY + 3600).state is NumberState.RELEASED


def test_lifecycle_status_reports_residual_per_day_in_quiet_window():
    lc = Lifecycle()
    lc.release(N, T0)
    _traffic(lc, 2, 3)
    s = lc.status(N, T0 + 3 * DAY)
    assert s is not None
    assert s.residual_per_day == {
        date_of(T0): 0,
        date_of(T0 + DAY): 0,
        date_of(T0 + 2 * DAY): 3,
        date_of(T0 + 3 * DAY): 0,
    }


def test_lifecycle_daily_counters_are_bounded_to_quiet_period():
    lc = Lifecycle()
    lc.release(N, T0)
    for day in range(0, 60):
        _traffic(lc, day, 1)
    rec = lc.get(N)
    assert rec is not None and len(rec.daily) <= 14
    assert rec.total_residual == 60


def test_lifecycle_record_traffic_ignores_numbers_not_released():
    lc = Lifecycle()
    assert lc.record_traffic(N, T0) is None
    lc.release(N, T0)
    lc.assign(N, "beta", T0 + 100 * DAY)
    assert lc.record_traffic(N, T0 + 101 * DAY) is None


@pytest.mark.parametrize(
    "setup,kwargs,message",
    [
        ("none", {"customer": "beta"}, f"{N} is not a released number (no lifecycle record)"),
        ("released", {"customer": ""}, "a customer is required"),
        ("released", {"customer": "beta", "force": True, "reason": "  "}, "--force needs --reason: the override is recorded"),
        ("released", {"customer": "beta"}, f"{N} is not eligible for reassignment: in quarantine until {date_of(T0 + 90 * DAY)} (80 days left)"),
        ("reassigned", {"customer": "gamma"}, f"{N} is not released (state reassigned)"),
    ],
    ids=["unknown", "no-customer", "force-without-reason", "in-quarantine", "already-reassigned"],
)
def test_lifecycle_assign_refused_with_clear_reason(setup, kwargs, message):
    lc = Lifecycle()
    if setup in ("released", "reassigned"):
        lc.release(N, T0)
    if setup == "reassigned":
        lc.assign(N, "beta", T0 + 95 * DAY)
    with pytest.raises(LifecycleRefused) as exc:
        lc.assign(N, now=T0 + 10 * DAY, **kwargs)
    assert exc.value.reason == message
    if setup == "released":
        assert lc.is_released(N) is True


def test_lifecycle_assign_after_eligibility_reassigns():
    lc = Lifecycle()
    lc.release(N, T0)
    rec = lc.assign(N, "beta", T0 + 91 * DAY)
    assert rec.state is NumberState.REASSIGNED and rec.customer == "beta" and rec.overrides == []
    assert lc.is_released(N) is False
    assert lc.status(N, T0 + 91 * DAY).state is NumberState.REASSIGNED


def test_lifecycle_forced_assign_records_override():
    lc = Lifecycle()
    lc.release(N, T0)
    rec = lc.assign(N, "beta", T0 + 10 * DAY, force=True, reason="ported back to owner")
    assert rec.state is NumberState.REASSIGNED
    [ov] = rec.overrides
    assert (ov.customer, ov.reason, ov.at) == ("beta", "ported back to owner", T0 + 10 * DAY)
    assert ov.refused_because.startswith("in quarantine until")


def test_lifecycle_load_rebuilds_released_index():
    lc = Lifecycle()
    lc.release(N, T0)
    lc.release("+13125550100", T0)
    lc.assign("+13125550100", "x", T0 + 1, force=True, reason="r")
    fresh = Lifecycle()
    fresh.load(msgspec.json.decode(msgspec.json.encode(lc.records()), type=list[type(lc.get(N))]))
    assert fresh.is_released(N) is True
    assert fresh.is_released("+13125550100") is False


def test_lifecycle_cap_evicts_reassigned_history_not_quarantined_numbers():
    lc = Lifecycle(LifecycleConfig(max_numbers=2))
    lc.release("+13125550001", T0)
    lc.assign("+13125550001", "a", T0 + 1, force=True, reason="r")
    lc.release("+13125550002", T0 + 2)
    lc.release("+13125550003", T0 + 3)
    assert lc.get("+13125550001") is None and lc.evicted == 1
    with pytest.raises(LifecycleRefused, match="lifecycle table full"):
        lc.release("+13125550004", T0 + 4)
    assert lc.is_released("+13125550002") and lc.is_released("+13125550003")


def test_lifecycle_conflicts_lists_released_numbers_in_dialplan():
    assert conflicts({"+1", "+2", "+3"}, ["+3", "+4", "+1"]) == ["+1", "+3"]
    assert conflicts([], ["+1"]) == []


@pytest.mark.parametrize(
    "cfg,errors",
    [
        (LifecycleConfig(), []),
        (LifecycleConfig(quarantine="45d"), []),
        (LifecycleConfig(quarantine="44d"), [("$.lifecycle.quarantine", "must be at least 45d (regulatory floor for aging numbers)")]),
        (LifecycleConfig(quarantine="ninety"), [("$.lifecycle.quarantine", "invalid duration 'ninety': expected a number with ms, s, m, h or d (e.g. '30s')")]),
        (LifecycleConfig(quiet_period="36h"), [("$.lifecycle.quiet_period", "must be a whole number of days, at least 1d")]),
        (LifecycleConfig(quiet_period="100d"), [("$.lifecycle.quiet_period", "must not be longer than the quarantine")]),
        (LifecycleConfig(residual_max_per_day=-1), [("$.lifecycle.residual_max_per_day", "must be 0 or more")]),
        (LifecycleConfig(released_action="403"), [("$.lifecycle.released_action", "must be one of intercept, 404, 410")]),
    ],
    ids=["default", "floor", "below-floor", "bad-duration", "partial-day", "quiet-longer", "negative", "bad-action"],
)
def test_lifecycle_config_validation(cfg, errors):
    assert validate_lifecycle(cfg) == errors


def test_lifecycle_rejects_invalid_config_at_construction():
    with pytest.raises(ValueError, match="at least 45d"):
        Lifecycle(LifecycleConfig(quarantine="30d"))


def test_lifecycle_config_decodes_from_toml():
    cfg = msgspec.toml.decode(b'quarantine = "120d"\nresidual_max_per_day = 1\nquiet_period = "7d"\nreleased_action = "410"\n', type=LifecycleConfig)
    assert validate_lifecycle(cfg) == []
    with pytest.raises(msgspec.ValidationError, match="unknown field"):
        msgspec.toml.decode(b'quarantine_days = 90\n', type=LifecycleConfig)
