from __future__ import annotations

import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.policy.rates import RateBook, RateKey, SlidingWindowCounter


def test_sliding_window_counter_counts_within_first_window() -> None:
    c = SlidingWindowCounter(window=60.0, max_keys=10)
    assert [c.hit("a", t) for t in (0.0, 1.0, 2.0)] == [1.0, 2.0, 3.0]
    assert c.hit("b", 3.0) == 1.0


def test_sliding_window_counter_weights_previous_bucket() -> None:
    c = SlidingWindowCounter(window=60.0, max_keys=10)
    for t in range(10):
        c.hit("a", float(t))  # 10 events in bucket [0, 60)
    # 15 s into the next bucket, 3/4 of the previous window still overlaps: 10 * 0.75 + 1.
    assert c.hit("a", 75.0) == pytest.approx(8.5)
    assert c.peek("a", 90.0) == pytest.approx(10 * 0.5 + 1)


def test_sliding_window_counter_forgets_after_two_windows() -> None:
    c = SlidingWindowCounter(window=10.0, max_keys=10)
    for _ in range(5):
        c.hit("a", 1.0)
    assert c.peek("a", 25.0) == 0.0
    assert c.hit("a", 25.0) == 1.0


def test_sliding_window_counter_clock_going_back_does_not_reset() -> None:
    c = SlidingWindowCounter(window=10.0, max_keys=10)
    c.hit("a", 15.0)
    assert c.hit("a", 9.0) >= 2.0


def test_sliding_window_counter_evicts_least_recently_seen() -> None:
    c = SlidingWindowCounter(window=60.0, max_keys=3)
    for key in ("a", "b", "c"):
        c.hit(key, 0.0)
    c.hit("a", 1.0)  # 'b' is now the least recently seen
    c.hit("d", 2.0)
    assert len(c) == 3
    assert c.evictions == 1
    assert c.peek("b", 2.0) == 0.0
    assert c.peek("a", 2.0) == 2.0


def test_sliding_window_counter_million_random_callers_stay_under_cap() -> None:
    cap = 10_000
    c = SlidingWindowCounter(window=60.0, max_keys=cap)
    rng = random.Random(1)
    keys = [f"+1{n}" for n in rng.sample(range(2_000_000_000, 9_999_999_999), 1_000_000)]
    hit = c.hit
    for i, key in enumerate(keys):
        hit(key, i * 0.0001)
    assert len(c) == cap
    assert c.evictions == 1_000_000 - cap


def test_rate_book_shares_counters_and_caps_them() -> None:
    book = RateBook(max_keys=5, max_counters=2)
    a = book.counter(RateKey.CALLER, 60.0)
    assert book.counter(RateKey.CALLER, 60.0) is a
    for i in range(7):
        a.hit(str(i), 0.0)
    book.counter(RateKey.SOURCE, 1.0)
    book.counter(RateKey.CNAM, 60.0)  # drops the caller counter, keeping its eviction count
    assert book.tracked() == {"source": 0, "cnam": 0}
    assert book.evictions() == {"caller": 2, "source": 0, "cnam": 0}


@settings(max_examples=50, deadline=None)
@given(
    cap=st.integers(min_value=1, max_value=20),
    events=st.lists(st.tuples(st.text(min_size=1, max_size=4), st.floats(min_value=0, max_value=1e4)), max_size=200),
)
def test_sliding_window_counter_never_exceeds_cap(cap: int, events: list[tuple[str, float]]) -> None:
    c = SlidingWindowCounter(window=30.0, max_keys=cap)
    for key, t in sorted(events, key=lambda e: e[1]):
        est = c.hit(key, t)
        assert est >= 1.0
        assert len(c) <= cap
    assert c.evictions >= len({k for k, _ in events}) - cap


@settings(max_examples=50, deadline=None)
@given(times=st.lists(st.floats(min_value=0, max_value=600), min_size=1, max_size=100))
def test_sliding_window_counter_estimate_bounded_by_events_in_two_windows(times: list[float]) -> None:
    window = 60.0
    c = SlidingWindowCounter(window=window, max_keys=1)
    times.sort()
    for i, t in enumerate(times):
        est = c.hit("k", t)
        exact = sum(1 for u in times[: i + 1] if u > t - window)
        upper = sum(1 for u in times[: i + 1] if u >= (t // window - 1) * window)
        # Never below what is in the current bucket, never above the two buckets it draws on.
        assert est <= upper + 1e-9
        assert est >= sum(1 for u in times[: i + 1] if u >= (t // window) * window) - 1e-9
        assert exact <= upper
