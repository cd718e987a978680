"""SharedRates (the sans-IO side of shared rate windows) and the FixedBuckets reference."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from edge.policy.rates import (
    BucketCounts,
    FixedBuckets,
    RateBook,
    RateHit,
    RateKey,
    SharedRates,
    SlidingWindowCounter,
    bucket_estimate,
)

W = 60.0
T = 6000.0  # start of bucket 100


def _up(**kw) -> SharedRates:
    s = SharedRates(**kw)
    s.set_available(True)
    return s


@pytest.mark.parametrize(
    "fail_closed,nodes,expected",
    [(False, 1, 3.0), (False, 4, 3.0), (True, 4, 12.0)],
    ids=["open", "open-ignores-nodes", "closed-scales-by-nodes"],
)
def test_shared_rates_outage_rule(fail_closed, nodes, expected):
    s = SharedRates(fail_closed=fail_closed, nodes=nodes)
    s.record("caller", "+1", W, T)
    assert s.pending == 0  # nothing queued while the shared counters are away
    assert s.estimate("caller", "+1", W, T, 3.0) == expected


@pytest.mark.parametrize(
    "remote,unsent,now,local,expected",
    [
        (None, 1, T + 1, 1.0, 1.0),
        ((100, 0, 4), 1, T + 1, 1.0, 5.0),
        ((100, 0, 4), 0, T + 1, 7.0, 7.0),
        ((100, 6, 2), 0, T + 30, 1.0, 5.0),
        ((99, 0, 6), 1, T + 30, 1.0, 4.0),
        ((98, 0, 6), 1, T + 30, 1.0, 1.0),
    ],
    ids=["unknown-key", "remote-plus-unsent", "local-higher", "prev-weighted", "remote-was-previous-bucket", "stale"],
)
def test_shared_rates_estimate(remote, unsent, now, local, expected):
    s = _up()
    if remote is not None:
        idx, prev, cur = remote
        s.apply([RateHit("caller", "+1", W, idx, 1)], [BucketCounts(prev, cur)])
    for _ in range(unsent):
        s.record("caller", "+1", W, now)
    assert s.estimate("caller", "+1", W, now, local) == pytest.approx(expected)


def test_shared_rates_take_batches_per_bucket_and_empties():
    s = _up()
    for now in (T, T + 1, T + 2, T + W):
        s.record("caller", "+1", W, now)
    s.record("source", "192.0.2.1", W, T)
    hits = sorted(s.take(), key=lambda h: (h.kind, h.idx))
    assert hits == [RateHit("caller", "+1", W, 100, 3), RateHit("caller", "+1", W, 101, 1),
                    RateHit("source", "192.0.2.1", W, 100, 1)]
    assert s.take() == [] and s.pending == 0


def test_shared_rates_apply_keeps_newest_bucket():
    s = _up()
    s.apply([RateHit("caller", "+1", W, 101, 1), RateHit("caller", "+1", W, 100, 1)],
            [BucketCounts(2, 3), BucketCounts(0, 9)])
    assert s.estimate("caller", "+1", W, T + W, 0.0) == pytest.approx(5.0)


def test_shared_rates_caps_evict_lru_and_drop_pending():
    s = _up(max_keys=2, max_pending=2)
    s.apply([RateHit("caller", k, W, 100, 1) for k in ("a", "b")], [BucketCounts(0, 5)] * 2)
    s.apply([RateHit("caller", "a", W, 100, 1)], [BucketCounts(0, 6)])  # 'a' used most recently
    s.apply([RateHit("caller", "c", W, 100, 1)], [BucketCounts(0, 7)])
    assert len(s) == 2 and s.evictions == 1
    assert s.estimate("caller", "b", W, T, 0.0) == 0.0  # evicted
    assert s.estimate("caller", "a", W, T, 0.0) == 6.0
    for k in ("x", "y", "z"):
        s.record("caller", k, W, T)
    assert s.pending == 2 and s.dropped == 1


def test_shared_rates_losing_connection_forgets_remote_counts():
    s = _up()
    s.apply([RateHit("caller", "+1", W, 100, 1)], [BucketCounts(0, 50)])
    s.set_available(False)
    s.set_available(True)
    assert s.estimate("caller", "+1", W, T, 1.0) == 1.0


def test_rate_book_without_shared_counts_locally():
    book = RateBook(10)
    assert [book.hit(RateKey.CALLER, W, "+1", T) for _ in range(3)] == [1.0, 2.0, 3.0]


def test_fixed_buckets_expire_and_cap():
    b = FixedBuckets(max_buckets=2)
    b.add([RateHit("caller", "a", W, 100, 1), RateHit("caller", "b", W, 100, 1), RateHit("caller", "c", W, 101, 1)])
    assert b.evictions == 1
    assert b.expire(T + 2 * W + 1) == 1  # bucket 100 is two windows old; bucket 101 stays
    assert b.add([RateHit("caller", "c", W, 101, 1)]) == [BucketCounts(0, 2)]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=0.0, max_value=300.0, allow_nan=False), min_size=1, max_size=40))
def test_bucket_estimate_agrees_with_sliding_window_counter(offsets):
    # One node: the shared reference buckets read back with bucket_estimate give the local estimate.
    counter = SlidingWindowCounter(W, 10)
    buckets = FixedBuckets()
    for now in sorted(T + o for o in offsets):
        local = counter.hit("k", now)
        idx = int(now // W)
        c = buckets.add([RateHit("caller", "k", W, idx, 1)])[0]
        assert bucket_estimate(idx, c.prev, c.cur, W, now) == pytest.approx(local)
