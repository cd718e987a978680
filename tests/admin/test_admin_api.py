"""Admin HTTP API through aiohttp's test client: auth, errors, flag -> block, blocks CRUD, numbers."""

from __future__ import annotations

import pytest
from admin_harness import AUTH, T0, Harness

from edge.lifecycle.manager import DAY
from edge.policy.rules import RuleKind, Scope


async def test_admin_health_needs_no_token(admin):
    h, client = admin
    resp = await client.get("/health")
    assert resp.status == 200
    body = await resp.json()
    assert body["status"] == "ok" and body["active_calls"] == 2 and body["store"]["backend"] == "memory"


async def test_admin_health_unhealthy_daemon_is_503(admin):
    h, client = admin
    h.daemon_ok = False
    resp = await client.get("/health")
    assert resp.status == 503
    assert (await resp.json())["status"] == "unhealthy"


@pytest.mark.parametrize(
    "headers",
    [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic czNjcmV0LXRva2Vu"}, {"Authorization": "Bearer"}],
    ids=["missing", "wrong", "basic-scheme", "empty"],
)
@pytest.mark.parametrize("path", ["/activities", "/metrics", "/blocks", "/numbers", "/no-such-route"])
async def test_admin_without_valid_token_is_401(admin, headers, path):
    _, client = admin
    resp = await client.get(path, headers=headers)
    assert resp.status == 401
    basic = headers.get("Authorization", "").startswith("Basic")  # console users' credentials: not a user here
    assert await resp.json() == {"error": "wrong user name or password" if basic else "missing or invalid bearer token"}
    assert resp.headers["WWW-Authenticate"].startswith("Bearer")


async def test_admin_metrics_serves_registry_text(admin):
    _, client = admin
    resp = await client.get("/metrics", headers=AUTH)
    assert resp.status == 200
    assert resp.headers["Content-Type"].startswith("text/plain")
    assert "edge_invites_total 3.0" in await resp.text()


async def test_admin_unknown_route_is_json_404(admin):
    _, client = admin
    resp = await client.get("/nope", headers=AUTH)
    assert resp.status == 404
    assert await resp.json() == {"error": "Not Found"}


async def test_admin_activities_filters_and_pages(admin):
    h, client = admin
    for i in range(5):
        await h.seed(id=f"a{i}", received_at=T0 + i, decision="reject" if i % 2 else "allow")
    await h.seed(id="other", received_at=T0 + 10, calling_number="+12025550101")
    resp = await client.get("/activities", params={"decision": "reject"}, headers=AUTH)
    assert [a["id"] for a in (await resp.json())["items"]] == ["a3", "a1"]
    resp = await client.get("/activities", params={"calling": "(202) 555-0101"}, headers=AUTH)
    assert [a["id"] for a in (await resp.json())["items"]] == ["other"]
    resp = await client.get("/activities", params={"since": str(T0 + 3), "until": str(T0 + 5)}, headers=AUTH)
    assert [a["id"] for a in (await resp.json())["items"]] == ["a4", "a3"]
    h.now = T0 + 20
    resp = await client.get("/activities", params={"since": "12s"}, headers=AUTH)
    assert [a["id"] for a in (await resp.json())["items"]] == ["other"]

    seen, cursor = [], ""
    while True:
        params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
        body = await (await client.get("/activities", params=params, headers=AUTH)).json()
        seen += [a["id"] for a in body["items"]]
        cursor = body["next_cursor"]
        if not cursor:
            break
    assert seen == ["other", "a4", "a3", "a2", "a1", "a0"]


@pytest.mark.parametrize(
    "params,error",
    [
        ({"limit": "0"}, "invalid limit '0': expected 1-1000"),
        ({"limit": "x"}, "invalid limit 'x': expected 1-1000"),
        ({"number": "123"}, "invalid number '123': not a valid telephone number"),
        ({"since": "yesterday"}, "invalid since 'yesterday': expected unix seconds, ISO 8601 or a duration like '1h'"),
        ({"flagged": "maybe"}, "invalid flagged 'maybe': expected true or false"),
        ({"decision": "nuke"}, "invalid decision 'nuke': expected one of allow, reject, captcha, menu, voicemail, intercept, deliver, hold, send, queued, refuse, challenge"),
        ({"cursor": "abc"}, "invalid cursor 'abc'"),
        ({"colour": "red"}, "unknown filter 'colour'"),
    ],
    ids=["limit-zero", "limit-nan", "number", "since", "flagged", "decision", "cursor", "unknown-filter"],
)
async def test_admin_activities_bad_filter_is_422(admin, params, error):
    _, client = admin
    resp = await client.get("/activities", params=params, headers=AUTH)
    assert resp.status == 422
    assert await resp.json() == {"error": error}


async def test_admin_activity_get_and_unknown_404(admin):
    h, client = admin
    await h.seed(id="a1", cnam="Spam Likely")
    resp = await client.get("/activities/a1", headers=AUTH)
    assert resp.status == 200 and (await resp.json())["cnam"] == "Spam Likely"
    resp = await client.get("/activities/zzz", headers=AUTH)
    assert resp.status == 404
    assert await resp.json() == {"error": "unknown activity 'zzz'"}


async def test_admin_flag_by_number_creates_block_and_notifies(admin):
    h, client = admin
    await h.seed(id="a1")
    resp = await client.post("/activities/a1/flag", json={"by": "number", "expires_in": "1d"}, headers=AUTH)
    assert resp.status == 201
    body = await resp.json()
    rule = body["rule"]
    # No customer on the activity: the default scope is its called number, never every customer.
    assert (rule["kind"], rule["value"], rule["scope"], rule["scope_value"], rule["action"], rule["sip_status"]) == (
        "number", "+12025550100", "number", "+13125550199", "reject", 603)
    assert rule["activity_id"] == "a1" and rule["expires_at"] == T0 + DAY and body["created"] is True
    [stored] = await h.store.list_blocks()
    assert stored.id == rule["id"]
    assert (await h.store.get_activity("a1")).flagged is True
    assert h.changes == [(stored, None)]


async def test_admin_flag_by_cnam_normalises_and_scopes_to_customer(admin):
    h, client = admin
    await h.seed(id="a1", cnam="SPAM-Likely", customer="acme")
    resp = await client.post("/activities/a1/flag", json={"by": "cnam", "scope": "customer", "action": "voicemail"}, headers=AUTH)
    assert resp.status == 201
    [rule] = await h.store.list_blocks()
    assert (rule.kind, rule.value, rule.scope, rule.scope_value, rule.action.value) == (RuleKind.CNAM, "spamlikely", Scope.CUSTOMER, "acme", "voicemail")


async def test_admin_flag_defaults_to_the_activity_customer(admin):
    h, client = admin
    await h.seed(id="a1", customer="acme")
    resp = await client.post("/activities/a1/flag", json={"by": "number"}, headers=AUTH)
    assert resp.status == 201
    rule = (await resp.json())["rule"]
    assert (rule["scope"], rule["scope_value"]) == ("customer", "acme")
    await h.seed(id="a2", customer="acme", cnam="Robo")
    rule = (await (await client.post("/activities/a2/flag", json={"by": "cnam", "scope": "global"}, headers=AUTH)).json())["rule"]
    assert (rule["scope"], rule["scope_value"]) == ("global", "")  # global only when asked


async def test_admin_flag_scope_number_uses_called_number(admin):
    h, client = admin
    await h.seed(id="a1")
    resp = await client.post("/activities/a1/flag", json={"by": "number", "scope": "number"}, headers=AUTH)
    assert resp.status == 201
    assert (await resp.json())["rule"]["scope_value"] == "+13125550199"


async def test_admin_flag_same_caller_twice_reuses_rule(admin):
    h, client = admin
    await h.seed(id="a1")
    await h.seed(id="a2")
    first = await (await client.post("/activities/a1/flag", json={"by": "number"}, headers=AUTH)).json()
    resp = await client.post("/activities/a2/flag", json={"by": "number"}, headers=AUTH)
    assert resp.status == 200
    body = await resp.json()
    assert body["created"] is False and body["rule"]["id"] == first["rule"]["id"]
    assert body["activity"]["flagged"] is True
    assert len(await h.store.list_blocks()) == 1 and len(h.changes) == 1


@pytest.mark.parametrize(
    "seed,body,status,error",
    [
        ({"id": "a1", "calling_number": ""}, {"by": "number"}, 422, "activity a1 has no calling number (anonymous): block kind 'anonymous' instead"),
        ({"id": "a1"}, {"by": "cnam"}, 422, "activity a1 has no caller name to block"),
        ({"id": "a1"}, {"by": "number", "scope": "customer"}, 422, "activity a1 has no customer for a customer-scoped rule"),
        ({"id": "a1"}, {"by": "phone"}, 422, "Invalid enum value 'phone' - at `$.by`"),
        ({"id": "a1"}, {"by": "number", "action": "allow"}, 422, "invalid action 'allow' for a block rule: use allow=true for an allow entry"),
        ({"id": "a1"}, {"by": "number", "expires_in": "soon"}, 422, "invalid expires_in: invalid duration 'soon': expected a number with ms, s, m, h or d (e.g. '30s')"),
        ({"id": "a1"}, b"{not json", 400, "invalid JSON: "),
        ({"id": "a0"}, {"by": "number"}, 404, "unknown activity 'a1'"),
    ],
    ids=["anonymous", "no-cnam", "no-customer", "bad-by", "allow-action", "bad-expiry", "bad-json", "unknown-id"],
)
async def test_admin_flag_refused(admin, seed, body, status, error):
    h, client = admin
    await h.seed(**seed)
    kw = {"data": body} if isinstance(body, bytes) else {"json": body}
    resp = await client.post("/activities/a1/flag", headers=AUTH, **kw)
    assert resp.status == status
    got = (await resp.json())["error"]
    if error.endswith(": "):
        assert got.startswith(error)
    else:
        assert got == error
    assert h.changes == [] and await h.store.list_blocks() == []


async def test_admin_blocks_crud(admin):
    h, client = admin
    resp = await client.post("/blocks", json={"kind": "number", "value": "(202) 555-0100", "reason": "robocaller"}, headers=AUTH)
    assert resp.status == 201
    rule = await resp.json()
    assert rule["value"] == "+12025550100" and rule["id"].startswith("rt-") and rule["created_at"] == T0
    h.now = T0 + 1  # blocks list in creation order
    resp = await client.post("/blocks", json={"kind": "prefix", "value": "+1900", "scope": "number", "scope_value": "3125550199", "allow": True}, headers=AUTH)
    allow = await resp.json()
    assert resp.status == 201 and allow["allow"] is True and allow["action"] == "allow" and allow["scope_value"] == "+13125550199"

    listed = await (await client.get("/blocks", headers=AUTH)).json()
    assert [r["id"] for r in listed["blocks"]] == [rule["id"], allow["id"]]
    assert (await client.get(f"/blocks/{rule['id']}", headers=AUTH)).status == 200

    resp = await client.delete(f"/blocks/{rule['id']}", headers=AUTH)
    assert resp.status == 200 and await resp.json() == {"removed": rule["id"]}
    assert h.changes[-1] == (None, rule["id"])
    assert len(h.changes) == 3
    resp = await client.delete(f"/blocks/{rule['id']}", headers=AUTH)
    assert resp.status == 404
    assert await resp.json() == {"error": f"unknown block rule {rule['id']!r}"}


@pytest.mark.parametrize(
    "body,error",
    [
        ({"kind": "number", "value": "123"}, "invalid number '123': not a valid telephone number"),
        ({"kind": "prefix", "value": "1900"}, "invalid prefix '1900': expected '+' and 1-15 digits"),
        ({"kind": "country", "value": "Nigeria"}, "invalid country 'Nigeria': expected an ISO 3166 alpha-2 code"),
        ({"kind": "cnam", "value": "*"}, "invalid caller-name pattern '*': matches every name"),
        ({"kind": "anonymous", "value": "x"}, "kind 'anonymous' takes no value"),
        ({"kind": "number", "value": "+12025550100", "scope": "customer"}, "customer scope needs a customer name"),
        ({"kind": "number", "value": "+12025550100", "scope": "number", "scope_value": "99"}, "invalid called number '99': not a valid telephone number"),
        ({"kind": "number", "value": "+12025550100", "sip_status": 200}, "invalid sip_status 200: expected a final failure code 400-699"),
        ({"kind": "number", "value": "+12025550100", "expires_at": 5.0}, "expires_at is in the past"),
        ({"kind": "fax", "value": "x"}, "Invalid enum value 'fax' - at `$.kind`"),
        ({"kind": "number", "colour": "red"}, "Object contains unknown field `colour`"),
    ],
    ids=["number", "prefix", "country", "cnam-everything", "anonymous-value", "customer-scope", "scope-number", "status", "past", "kind", "unknown-field"],
)
async def test_admin_blocks_invalid_input_is_422(admin, body, error):
    h, client = admin
    resp = await client.post("/blocks", json=body, headers=AUTH)
    assert resp.status == 422
    assert await resp.json() == {"error": error}
    assert h.changes == []


async def test_admin_numbers_release_assign_refusal_and_force(admin):
    h, client = admin
    n = "+13125550199"
    resp = await client.post("/numbers/3125550199/release", headers=AUTH)
    assert resp.status == 200
    status = await resp.json()
    assert status["state"] == "released" and status["number"] == n
    assert h.lifecycle.is_released(n)
    assert (await h.store.get_number(n)).released_at == T0

    resp = await client.post(f"/numbers/{n}/release", headers=AUTH)
    assert resp.status == 409
    assert (await resp.json())["error"].startswith(f"{n} is already released")

    resp = await client.post(f"/numbers/{n}/assign", json={"customer": "beta"}, headers=AUTH)
    assert resp.status == 409
    assert (await resp.json())["error"].startswith(f"{n} is not eligible for reassignment: in quarantine until")

    resp = await client.post(f"/numbers/{n}/assign", json={"customer": "beta", "force": True}, headers=AUTH)
    assert resp.status == 409
    assert await resp.json() == {"error": "--force needs --reason: the override is recorded"}

    resp = await client.post(f"/numbers/{n}/assign", json={"customer": "beta", "force": True, "reason": "court order"}, headers=AUTH)
    assert resp.status == 200
    body = await resp.json()
    assert body["state"] == "reassigned" and body["overrides"][0]["reason"] == "court order"
    stored = await h.store.get_number(n)
    assert stored.customer == "beta" and len(stored.overrides) == 1
    assert not h.lifecycle.is_released(n)


async def test_admin_numbers_status_available_after_quarantine(admin):
    h, client = admin
    await client.post("/numbers/+13125550199/release", json={"customer": "acme"}, headers=AUTH)
    await client.post("/numbers/+13125550100/release", headers=AUTH)
    h.lifecycle.record_traffic("+13125550100", T0 + 89 * DAY)
    for i in range(5):
        h.lifecycle.record_traffic("+13125550100", T0 + 89 * DAY + i)
    body = await (await client.get("/numbers-available", headers=AUTH)).json()
    assert body == {"numbers": []}
    h.now = T0 + 91 * DAY
    body = await (await client.get("/numbers-available", headers=AUTH)).json()
    assert [s["number"] for s in body["numbers"]] == ["+13125550199"]
    all_ = await (await client.get("/numbers", headers=AUTH)).json()
    assert {s["number"]: s["state"] for s in all_["numbers"]} == {"+13125550100": "released", "+13125550199": "eligible"}
    one = await (await client.get("/numbers/+13125550100", headers=AUTH)).json()
    assert "residual traffic 6" in one["reason"] and one["days_in_quarantine"] == 91
    resp = await client.post("/numbers/+13125550199/assign", json={"customer": "beta"}, headers=AUTH)
    assert resp.status == 200 and (await resp.json())["state"] == "reassigned"


@pytest.mark.parametrize(
    "method,path,body,status,error",
    [
        ("get", "/numbers/+13125550111", None, 404, "+13125550111 has no lifecycle record (never released)"),
        ("get", "/numbers/12", None, 422, "invalid number '12': not a valid telephone number"),
        ("post", "/numbers/12/release", None, 422, "invalid number '12': not a valid telephone number"),
        ("post", "/numbers/+13125550111/assign", {"force": True}, 422, "Object missing required field `customer`"),
        ("post", "/numbers/+13125550111/assign", {"customer": "x"}, 409, "+13125550111 is not a released number (no lifecycle record)"),
    ],
    ids=["unknown", "invalid-get", "invalid-release", "missing-customer", "not-released"],
)
async def test_admin_numbers_errors(admin, method, path, body, status, error):
    _, client = admin
    resp = await getattr(client, method)(path, json=body, headers=AUTH)
    assert resp.status == status
    assert await resp.json() == {"error": error}


async def test_admin_export_streams_all_pages_as_json_lines(admin):
    h, client = admin
    for i in range(1203):
        await h.seed(id=f"a{i:05d}", received_at=T0 + i, decision="reject" if i < 3 else "allow")
    resp = await client.get("/activities/export", headers=AUTH)
    assert resp.status == 200 and resp.headers["Content-Type"] == "application/x-ndjson"
    lines = (await resp.read()).splitlines()
    assert len(lines) == 1203
    resp = await client.get("/activities/export", params={"decision": "reject"}, headers=AUTH)
    assert len((await resp.read()).splitlines()) == 3


async def test_admin_expire_rules_removes_and_notifies(admin):
    from edge.daemon.admin import expire_rules

    h, client = admin
    await client.post("/blocks", json={"kind": "anonymous", "expires_in": "1h"}, headers=AUTH)
    [rule] = await h.store.list_blocks()
    assert await expire_rules(h.ctx) == []
    h.now = T0 + 3601
    assert await expire_rules(h.ctx) == [rule.id]
    assert h.changes[-1] == (None, rule.id)


async def test_admin_health_reports_degraded_store_but_stays_200(admin, monkeypatch):
    h, client = admin
    degraded = h.store.health()
    degraded.degraded = True
    degraded.last_error = "database or disk is full"
    monkeypatch.setattr(h.store, "health", lambda: degraded)
    resp = await client.get("/health")
    body = await resp.json()
    assert resp.status == 200 and body["status"] == "degraded"
    assert body["store"]["last_error"] == "database or disk is full"


def test_admin_load_token_creates_private_file_once(tmp_path):
    from edge.daemon.admin import load_token

    path = tmp_path / "var" / "admin.token"
    token = load_token(path, create=True)
    assert len(token) >= 32 and (path.stat().st_mode & 0o777) == 0o600
    assert load_token(path) == token
    path.write_text("\n")
    with pytest.raises(ValueError, match="is empty"):
        load_token(path)


def _cool_off(h, number: str = "+12025550100") -> None:
    """Put a caller in cool-off the way the Spam Detective does: its own caller rate exceeded."""
    from edge.policy.facts import Action
    from edge.policy.plan import NumberPolicy
    from edge.policy.rates import RateKey, RateLimit
    from edge.policy.spam import RateRule, SpamConfig
    from tests.policy.policy_factories import build_facts

    spam = SpamConfig(id="acme/spam", rates=(RateRule("acme/spam.rate.caller", RateKey.CALLER, RateLimit(1, 60.0), weight=90.0),))
    policy = NumberPolicy(number="+13125550199", customer="acme", spam=spam)
    facts = build_facts(number, "+13125550199")
    h.engine.decide(facts, policy, h.now)
    assert h.engine.decide(facts, policy, h.now + 1).action is Action.REJECT


async def test_admin_cool_off_show_and_clear(admin):
    h, client = admin
    _cool_off(h)
    resp = await client.get("/cool-off/2025550100", headers=AUTH)
    assert resp.status == 200
    body = await resp.json()
    assert (body["number"], body["action"], body["rule_id"], body["until"]) == ("+12025550100", "reject", "spam.threshold.80", T0 + 1 + 3600)
    resp = await client.delete("/cool-off/+12025550100", headers=AUTH)
    assert (resp.status, await resp.json()) == (200, {"cleared": "+12025550100"})
    assert h.engine.flag("+12025550100", h.now) is None
    assert h.engine.stats["flags_cleared_total"] == 1
    resp = await client.delete("/cool-off/+12025550100", headers=AUTH)
    assert (resp.status, await resp.json()) == (404, {"error": "+12025550100 is not in a Spam Detective cool-off"})


async def test_admin_cool_off_bad_number_and_auth(admin):
    h, client = admin
    resp = await client.get("/cool-off/12345", headers=AUTH)
    assert (resp.status, await resp.json()) == (422, {"error": "invalid caller number '12345': not a valid telephone number"})
    assert (await client.delete("/cool-off/+12025550100")).status == 401


async def test_admin_explain_uses_live_counts(tmp_path):
    """POST /explain answers with the daemon's own engine: counts of real calls show, nothing is counted."""
    import dataclasses

    from aiohttp.test_utils import TestClient, TestServer

    from edge.call.admission import Gatekeeper
    from edge.daemon.admin import make_admin_app
    from edge.call.explain import explain
    from edge.call.peers import Peer
    from edge.dialplan.load import load_dialplans
    from edge.sip.message import parse
    from edge.sip.transaction import Destination
    from edge.stir.schema import StirConfig
    from tests.call.test_explain import PLAN, invite

    (tmp_path / "acme.toml").write_text(PLAN)
    plan, _ = load_dialplans(tmp_path, {"pbx-a", "pbx-b"})
    h = Harness()
    h.engine.replace_static_rules(plan.rules)
    gate = Gatekeeper(h.engine, StirConfig())
    src, peer = Destination("udp", "192.0.2.10", 5060), Peer("carrier", "carrier-a")
    ctx = dataclasses.replace(h.ctx, explain=lambda req: explain(req, plan, gate, src, peer, h.now, live=True))
    client = TestClient(TestServer(make_admin_app(ctx)))
    await client.start_server()
    try:
        entry = plan.lookup("+12025550100")
        for i in range(2):
            gate.admit(parse(invite("+13035550111", "+12025550100", i)), src, peer, entry, h.now)
        for _ in range(2):
            resp = await client.post("/explain", json={"called": "+12025550100", "calling": "+13035550111"}, headers=AUTH)
            assert resp.status == 200
            body = await resp.json()
            assert (body["counts"], body["action"], body["rates"][0]["count"]) == ("live", "allow", 2.0)
        resp = await client.post("/explain", json={"called": "nowhere"}, headers=AUTH)
        assert (resp.status, await resp.json()) == (422, {"error": "called number 'nowhere' is not a telephone number"})
        assert (await client.post("/explain", json={"called": "+12025550100"})).status == 401
    finally:
        await client.close()
