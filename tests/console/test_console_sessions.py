"""Sessions, the login throttle and secret hashing on a fake clock (no I/O)."""

from __future__ import annotations

import pytest

from edge.console.access import Principal
from edge.console.sessions import LoginThrottle, SessionTable
from edge.console.users import Role, hash_secret, validate_user, verify_secret

ANN = Principal(name="ann", role=Role.VIEWER, customer="acme", via="session")


def test_session_lives_until_ttl_and_idle_limits():
    t = SessionTable(ttl=100.0, idle=30.0)
    s = t.create(ANN, now=0.0)
    assert t.get(s.id, 20.0) is s
    assert t.get(s.id, 45.0) is s  # seen at 20: idle 25 < 30
    assert t.get(s.id, 80.0) is None  # idle 35
    s2 = t.create(ANN, now=0.0)
    for now in (25.0, 50.0, 75.0):
        assert t.get(s2.id, now) is s2
    assert t.get(s2.id, 100.0) is None  # ttl reached although active


def test_session_ids_and_csrf_tokens_are_distinct_and_unguessable_length():
    t = SessionTable()
    a, b = t.create(ANN, 0.0), t.create(ANN, 0.0)
    assert a.id != b.id and a.csrf != b.csrf and a.id != a.csrf
    assert len(a.id) >= 40 and len(a.csrf) >= 40


def test_session_table_is_capped_least_recently_used_first():
    t = SessionTable(max_sessions=2)
    a, b = t.create(ANN, 0.0), t.create(ANN, 0.0)
    t.get(a.id, 1.0)  # a is now the most recently used
    c = t.create(ANN, 2.0)
    assert len(t) == 2 and t.get(b.id, 2.0) is None and t.get(a.id, 2.0) is a and t.get(c.id, 2.0) is c


def test_session_end_user_logs_out_everywhere():
    t = SessionTable()
    a, b = t.create(ANN, 0.0), t.create(ANN, 0.0)
    other = t.create(Principal(name="ed", role=Role.EDITOR, customer="acme"), 0.0)
    assert t.end_user("ann") == 2
    assert t.get(a.id, 1.0) is None and t.get(b.id, 1.0) is None and t.get(other.id, 1.0) is other


def test_throttle_refuses_after_max_failures_until_the_window_passes():
    th = LoginThrottle(max_failures=3, window=60.0)
    keys = ["ip:127.0.0.1", "user:ann"]
    for now in (0.0, 1.0, 2.0):
        assert th.retry_after(keys, now) == 0.0
        th.failed(keys, now)
    assert th.retry_after(keys, 3.0) == pytest.approx(57.0)
    assert th.retry_after(["ip:10.0.0.1", "user:ann"], 3.0) > 0  # the account, from anywhere
    assert th.retry_after(["ip:127.0.0.1", "user:bob"], 3.0) > 0  # the address, for any account
    assert th.retry_after(keys, 60.5) == 0.0  # the first failure left the window
    th.succeeded(["user:ann"])
    assert th.retry_after(["ip:10.0.0.2", "user:ann"], 3.0) == 0.0


def test_throttle_memory_is_capped():
    th = LoginThrottle(max_failures=1, window=60.0, max_keys=100)
    for i in range(1000):
        th.failed([f"ip:{i}"], 0.0)
    assert len(th._failures) == 100  # noqa: SLF001 - the cap is what this test checks


def test_secret_hash_verifies_only_the_same_secret():
    h = hash_secret("a long enough secret")
    assert h.startswith("scrypt$16384$8$1$") and "a long enough secret" not in h
    assert verify_secret("a long enough secret", h)
    assert not verify_secret("a long enough secreT", h)
    assert hash_secret("a long enough secret") != h  # fresh salt
    assert not verify_secret("x" * 2000, h)  # oversized: refused before hashing
    assert not verify_secret("anything", "not-a-hash")


@pytest.mark.parametrize("name,role,customer,secret,error", [
    ("ann", Role.VIEWER, "", "0123456789", "needs --customer"),
    ("noc", Role.OPERATOR, "acme", "0123456789", "sees every customer"),
    ("Ann Smith", Role.EDITOR, "acme", "0123456789", "invalid user name"),
    ("ann", Role.EDITOR, "acme", "short", "password must be"),
], ids=["customer_missing", "operator_with_customer", "bad_name", "short_secret"])
def test_validate_user_names_the_problem(name, role, customer, secret, error):
    errors = validate_user(name, role, customer, secret)
    assert len(errors) == 1 and error in errors[0]


def test_validate_user_accepts_a_good_user():
    assert validate_user("ann@acme.example", Role.VIEWER, "acme", "0123456789") == []
