"""One behaviour for every StateStore backend (DESIGN §6): memory, sqlite and redis (a real redis-server)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator

import msgspec
import pytest
import pytest_asyncio

from edge.lifecycle.record import NumberRecord, NumberState, Override
from edge.policy.facts import Action
from edge.policy.rules import BlockRule, RuleKind, Scope
from edge.store.memory import MemoryStore
from edge.store.protocol import ActivityQuery, StateStore
from edge.store.redis import RedisStore
from edge.store.sqlite import SqliteStore

BACKENDS = ["memory", "sqlite", "redis"]


@pytest_asyncio.fixture(params=[*BACKENDS, "redis-cluster"])
async def store(request: pytest.FixtureRequest, tmp_path) -> AsyncIterator[StateStore]:
    if request.param == "memory":
        s: StateStore = MemoryStore()
    elif request.param == "sqlite":
        s = await SqliteStore.open(tmp_path / "edge.db", batch_interval=0.02, retention=None)
    else:
        cluster = request.param == "redis-cluster"
        server = request.getfixturevalue("redis_cluster" if cluster else "redis_server")
        local = await SqliteStore.open(tmp_path / "edge.db", batch_interval=0.02, retention=None)
        s = await RedisStore.open(server.url, local, prefix=f"t-{uuid.uuid4().hex[:10]}", cluster=cluster)
        assert s.up
    yield s
    await s.close()


async def test_store_implements_protocol(store):
    assert isinstance(store, StateStore)
    assert store.health().backend in BACKENDS


async def test_activity_get_after_append_returns_equal_record(store, make_activity):
    a = make_activity(1000.0, cnam="ACME")
    await store.append_activity(a)
    assert await store.get_activity(a.id) == a
    await store.flush()
    assert await store.get_activity(a.id) == a


async def test_activity_get_unknown_returns_none(store):
    assert await store.get_activity("nope") is None


async def test_activity_update_replaces_record(store, make_activity):
    a = make_activity(1000.0)
    await store.append_activity(a)
    await store.flush()
    a.answered_at = 1002.0
    a.final_status = 200
    a.billable = True
    await store.update_activity(a)
    got = await store.get_activity(a.id)
    assert got is not None and got.answered_at == 1002.0 and got.billable is True
    page = await store.query_activities(ActivityQuery())
    assert [x.id for x in page.items] == [a.id]


async def test_activity_stored_copy_is_independent_of_caller(store, make_activity):
    a = make_activity(1000.0)
    await store.append_activity(a)
    a.decision = "reject"
    got = await store.get_activity(a.id)
    assert got is not None and got.decision == ""


def _seed():
    rows = [
        (100.0, "+12025550100", "+13125550199", "allow", False),
        (200.0, "+12025550101", "+13125550199", "reject", True),
        (300.0, "+12025550100", "+13125550188", "captcha", False),
        (400.0, "+13125550199", "+12025550100", "reject", False),
    ]
    return rows


@pytest.mark.parametrize(
    "query,expected_times",
    [
        (ActivityQuery(), [400.0, 300.0, 200.0, 100.0]),
        (ActivityQuery(since=200.0), [400.0, 300.0, 200.0]),
        (ActivityQuery(until=300.0), [200.0, 100.0]),
        (ActivityQuery(since=150.0, until=350.0), [300.0, 200.0]),
        (ActivityQuery(number="+12025550100"), [400.0, 300.0, 100.0]),
        (ActivityQuery(calling="+12025550100"), [300.0, 100.0]),
        (ActivityQuery(called="+13125550199"), [200.0, 100.0]),
        (ActivityQuery(decision="reject"), [400.0, 200.0]),
        (ActivityQuery(flagged=True), [200.0]),
        (ActivityQuery(flagged=False, decision="reject"), [400.0]),
        (ActivityQuery(number="+19995550000"), []),
    ],
    ids=["all", "since", "until", "range", "number-either-side", "calling", "called", "decision", "flagged", "unflagged-reject", "no-match"],
)
async def test_activity_query_filters(store, make_activity, query, expected_times):
    for ts, calling, called, decision, flagged in _seed():
        await store.append_activity(make_activity(ts, calling, called, decision=decision, flagged=flagged))
    page = await store.query_activities(query)
    assert [a.received_at for a in page.items] == expected_times
    assert page.next_cursor == ""


async def test_activity_query_pages_with_cursor_without_gaps(store, make_activity):
    # Ties on received_at must still page exactly once each.
    made = [make_activity(1000.0 + (i // 3)) for i in range(25)]
    for a in made:
        await store.append_activity(a)
    seen: list[str] = []
    cursor = ""
    pages = 0
    while True:
        page = await store.query_activities(ActivityQuery(limit=10, cursor=cursor))
        seen += [a.id for a in page.items]
        pages += 1
        cursor = page.next_cursor
        if not cursor:
            break
    assert pages == 3
    expected = [a.id for a in sorted(made, key=lambda a: (a.received_at, a.id), reverse=True)]
    assert seen == expected


async def test_activity_query_bad_cursor_raises_value_error(store):
    with pytest.raises(ValueError, match="invalid cursor"):
        await store.query_activities(ActivityQuery(cursor="garbage"))


async def test_activity_set_flagged_marks_and_unknown_returns_none(store, make_activity):
    a = make_activity(500.0)
    await store.append_activity(a)
    await store.flush()
    flagged = await store.set_activity_flagged(a.id)
    assert flagged is not None and flagged.flagged is True
    page = await store.query_activities(ActivityQuery(flagged=True))
    assert [x.id for x in page.items] == [a.id]
    assert await store.set_activity_flagged("missing") is None


async def test_activity_purge_deletes_older_only(store, make_activity):
    for ts in (10.0, 20.0, 30.0):
        await store.append_activity(make_activity(ts))
    assert await store.purge_activities(25.0) == 2
    page = await store.query_activities(ActivityQuery())
    assert [a.received_at for a in page.items] == [30.0]


def _rule(rule_id: str, **kw) -> BlockRule:
    return BlockRule(id=rule_id, kind=kw.pop("kind", RuleKind.NUMBER), value=kw.pop("value", "+12025550100"), **kw)


async def test_blocks_add_get_list_remove(store):
    r1 = _rule("rt-1", created_at=1.0)
    r2 = _rule("rt-2", kind=RuleKind.CNAM, value="spam*", scope=Scope.CUSTOMER, scope_value="acme", action=Action.VOICEMAIL, created_at=2.0)
    await store.add_block(r1)
    await store.add_block(r2)
    assert await store.list_blocks() == [r1, r2]
    assert await store.get_block("rt-2") == r2
    assert await store.remove_block("rt-1") is True
    assert await store.remove_block("rt-1") is False
    assert await store.list_blocks() == [r2]
    assert await store.get_block("rt-1") is None


async def test_blocks_add_same_id_replaces(store):
    await store.add_block(_rule("rt-1", reason="first"))
    await store.add_block(_rule("rt-1", reason="second"))
    rules = await store.list_blocks()
    assert [r.reason for r in rules] == ["second"]


async def test_blocks_expire_removes_only_due_rules(store):
    await store.add_block(_rule("keep", expires_at=None))
    await store.add_block(_rule("later", expires_at=2000.0, created_at=1.0))
    await store.add_block(_rule("due", expires_at=1000.0, created_at=2.0))
    assert await store.expire_blocks(1500.0) == ["due"]
    assert sorted(r.id for r in await store.list_blocks()) == ["keep", "later"]


async def test_numbers_put_get_list_round_trip(store):
    rec = NumberRecord(
        number="+13125550199",
        state=NumberState.RELEASED,
        customer="acme",
        released_at=86400.0 * 100,
        daily={100: 3, 101: 1},
        total_residual=4,
        overrides=[Override(at=1.0, customer="b", reason="ported", refused_because="quarantine")],
    )
    await store.put_number(rec)
    assert await store.get_number(rec.number) == rec
    await store.flush()
    assert await store.get_number(rec.number) == rec
    assert await store.list_numbers() == [rec]
    assert await store.get_number("+19999999999") is None


async def test_numbers_stored_copy_is_independent_of_caller(store):
    rec = NumberRecord(number="+13125550199", state=NumberState.RELEASED, daily={1: 1})
    await store.put_number(rec)
    rec.daily[1] = 50
    got = await store.get_number(rec.number)
    assert got is not None and got.daily == {1: 1}


async def test_captcha_pass_remembered_until_expiry_per_scope(store):
    await store.remember_captcha_pass("+12025550100", "acme", until=1000.0)
    assert await store.captcha_passed("+12025550100", "acme", now=999.0) is True
    assert await store.captcha_passed("+12025550100", "other", now=999.0) is False
    assert await store.captcha_passed("+12025550101", "acme", now=999.0) is False
    await store.flush()
    assert await store.captcha_passed("+12025550100", "acme", now=999.0) is True
    assert await store.captcha_passed("+12025550100", "acme", now=1000.0) is False


async def test_captcha_passes_listed_for_reload_still_valid_longest_first(store):
    await store.remember_captcha_pass("+12025550100", "", until=1000.0)
    await store.remember_captcha_pass("+12025550101", "", until=3000.0)
    await store.remember_captcha_pass("+12025550102", "acme", until=2000.0)
    await store.remember_captcha_pass("+12025550103", "", until=500.0)
    assert await store.list_captcha_passes(now=600.0, limit=10) == [
        ("+12025550101", "", 3000.0), ("+12025550102", "acme", 2000.0), ("+12025550100", "", 1000.0)]
    assert await store.list_captcha_passes(now=600.0, limit=1) == [("+12025550101", "", 3000.0)]


async def test_health_reports_not_degraded_after_writes(store, make_activity):
    await store.append_activity(make_activity(1.0))
    await store.flush()
    h = store.health()
    assert h.degraded is False and h.write_errors == 0 and h.dropped_writes == 0
    assert h.flushed >= 1
    assert msgspec.json.decode(msgspec.json.encode(h))["backend"] == h.backend


async def test_optouts_add_list_remove(store):
    from edge.messaging.optout import OptOut

    a = OptOut("C1", "+13035550111", 100.0, "stop")
    b = OptOut("C2", "+13035550111", 101.0, "stopall")
    await store.add_optout(a)
    await store.add_optout(b)
    await store.add_optout(a)  # idempotent
    assert await store.list_optouts() == [a, b]
    assert await store.remove_optout("C1", "+13035550111") is True
    assert await store.remove_optout("C1", "+13035550111") is False
    assert await store.list_optouts() == [b]


async def test_users_put_get_list_remove(store):
    from edge.console.users import ConsoleUser, Role

    viewer = ConsoleUser(name="ann", role=Role.VIEWER, customer="acme", secret_hash="scrypt$1$1$1$a$b", created_at=5.0)
    op = ConsoleUser(name="noc", role=Role.OPERATOR, secret_hash="scrypt$1$1$1$c$d")
    await store.put_user(viewer)
    await store.put_user(op)
    assert await store.get_user("ann") == viewer
    assert await store.get_user("nobody") is None
    assert [u.name for u in await store.list_users()] == ["ann", "noc"]
    await store.put_user(msgspec.structs.replace(viewer, role=Role.EDITOR))
    assert (await store.get_user("ann")).role is Role.EDITOR
    assert await store.remove_user("ann") is True
    assert await store.remove_user("ann") is False
    assert [u.name for u in await store.list_users()] == ["noc"]


async def test_activity_query_by_customer_returns_only_that_customer(store, make_activity):
    await store.append_activity(make_activity(10.0, customer="acme"))
    await store.append_activity(make_activity(11.0, customer="globex"))
    await store.append_activity(make_activity(12.0))
    await store.flush()
    page = await store.query_activities(ActivityQuery(customer="acme"))
    assert [a.customer for a in page.items] == ["acme"]
    assert len((await store.query_activities(ActivityQuery())).items) == 3
