"""Console users against the admin API: login, sessions, CSRF, throttle and per-customer scoping."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest_asyncio
from aiohttp.test_utils import TestClient, TestServer

from edge.call.activity import Activity
from edge.console.auth import COOKIE, CSP, ConsoleSettings
from edge.console.users import ConsoleUser, Role, hash_secret
from edge.daemon.admin import AdminContext, make_admin_app
from edge.lifecycle.manager import DAY, Lifecycle
from edge.policy.rules import BlockRule, RuleKind, Scope
from edge.store.memory import MemoryStore

TOKEN = "operator-token"
T0 = 19_000 * DAY + 3600.0
SECRET = "correct horse battery"
OWNERS = {"+12025550100": "acme", "+12025550101": "acme", "+13125550100": "globex"}


class Harness:
    def __init__(self, tmp: Path) -> None:
        self.now = T0
        self.tmp = tmp
        self.store = MemoryStore()
        self.lifecycle = Lifecycle()
        self.changes: list[tuple[object, object]] = []
        self.ctx = AdminContext(
            store=self.store, lifecycle=self.lifecycle, token=TOKEN, on_rules_changed=self._changed,
            clock=lambda: self.now, customer_of=lambda n: OWNERS.get(n, ""),
            console=ConsoleSettings(login_failures=3, login_window=60.0),
            plan_numbers=lambda: sorted(OWNERS.items()),
            plan_rules=lambda: [
                BlockRule(id="d-acme", kind=RuleKind.CNAM, value="WIRELESS CALLER", scope=Scope.CUSTOMER,
                          scope_value="acme", source="dialplan:acme.toml"),
                BlockRule(id="d-global", kind=RuleKind.ANONYMOUS, source="dialplan:global.toml")],
            rule_hits=lambda: {"r-acme": 4},
        )

    def _changed(self, add, removed) -> None:
        self.changes.append((add, removed))

    async def users(self) -> None:
        h = hash_secret(SECRET)
        for name, role, customer in [("ann", Role.VIEWER, "acme"), ("ed", Role.EDITOR, "acme"),
                                     ("gus", Role.EDITOR, "globex"), ("noc", Role.OPERATOR, "")]:
            await self.store.put_user(ConsoleUser(name=name, role=role, customer=customer, secret_hash=h))

    async def seed(self, id: str, customer: str, called: str, **kw) -> Activity:
        a = Activity(id=id, call_id=f"{id}@x", kind="call", received_at=kw.pop("received_at", T0 - 60),
                     calling_number=kw.pop("calling_number", "+14155550123"), called_number=called,
                     customer=customer, **kw)
        await self.store.append_activity(a)
        return a


@pytest_asyncio.fixture
async def console(tmp_path) -> AsyncIterator[tuple[Harness, TestClient]]:
    h = Harness(tmp_path)
    await h.users()
    await h.seed("a1", "acme", "+12025550100", cnam="ROBO SALES", decision="allow")
    await h.seed("g1", "globex", "+13125550100", cnam="GLOBEX CALLER", decision="allow")
    client = TestClient(TestServer(make_admin_app(h.ctx)))
    await client.start_server()
    try:
        yield h, client
    finally:
        await client.close()


def basic(name: str, secret: str = SECRET) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{name}:{secret}".encode()).decode()}


async def login(client: TestClient, name: str, secret: str = SECRET) -> str:
    resp = await client.post("/login", json={"user": name, "password": secret})
    assert resp.status == 200, await resp.text()
    return (await resp.json())["csrf"]


async def test_console_login_sets_httponly_samesite_strict_cookie_and_me_names_the_user(console):
    _, client = console
    resp = await client.post("/login", json={"user": "ann", "password": SECRET})
    assert resp.status == 200
    cookie = resp.headers["Set-Cookie"]
    assert cookie.startswith(f"{COOKIE}=") and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain http on loopback; secure_cookies or TLS adds it
    me = await (await client.get("/me")).json()
    assert me["user"] == "ann" and me["customer"] == "acme" and me["can_edit"] is False and me["csrf"]


async def test_console_login_wrong_password_401_then_throttled_429(console):
    _, client = console
    for _ in range(3):
        resp = await client.post("/login", json={"user": "ann", "password": "wrong password!"})
        assert resp.status == 401
    resp = await client.post("/login", json={"user": "ann", "password": SECRET})
    assert resp.status == 429  # even the right secret: the account is cooling off
    assert int(resp.headers["Retry-After"]) >= 1


async def test_console_login_unknown_user_is_the_same_401(console):
    _, client = console
    resp = await client.post("/login", json={"user": "mallory", "password": SECRET})
    assert resp.status == 401 and (await resp.json()) == {"error": "wrong user name or password"}


async def test_console_page_without_session_redirects_to_login(console):
    _, client = console
    resp = await client.get("/", allow_redirects=False)
    assert resp.status == 303 and resp.headers["Location"] == "/login"


async def test_console_session_post_without_csrf_token_is_403(console):
    h, client = console
    csrf = await login(client, "ed")
    resp = await client.post("/activities/a1/flag", json={"by": "number", "scope": "customer"})
    assert resp.status == 403 and "CSRF" in (await resp.json())["error"]
    resp = await client.post("/activities/a1/flag", json={"by": "number", "scope": "customer"},
                             headers={"X-CSRF-Token": csrf, "Origin": "http://evil.example"})
    assert resp.status == 403
    resp = await client.post("/activities/a1/flag", json={"by": "number", "scope": "customer"},
                             headers={"X-CSRF-Token": csrf})
    assert resp.status == 201
    rule = (await resp.json())["rule"]
    assert (rule["scope"], rule["scope_value"], rule["created_by"]) == ("customer", "acme", "ed")


async def test_console_operator_session_sees_all_and_its_rules_name_it(console):
    _, client = console
    csrf = await login(client, "noc")
    assert sorted(a["id"] for a in (await (await client.get("/activities")).json())["items"]) == ["a1", "g1"]
    resp = await client.post("/activities/g1/flag", json={"by": "cnam", "scope": "global"}, headers={"X-CSRF-Token": csrf})
    assert resp.status == 201 and (await resp.json())["rule"]["created_by"] == "noc"


async def test_console_behind_a_tls_proxy_accepts_the_https_origin_only_with_secure_cookies(tmp_path):
    h = Harness(tmp_path)
    await h.users()
    h.ctx = AdminContext(store=h.store, lifecycle=h.lifecycle, token=TOKEN, on_rules_changed=h._changed,
                         clock=lambda: h.now, console=ConsoleSettings(secure_cookies=True))
    client = TestClient(TestServer(make_admin_app(h.ctx)))
    await client.start_server()
    try:
        host = f"127.0.0.1:{client.port}"
        resp = await client.post("/login", json={"user": "ann", "password": SECRET}, headers={"Origin": f"https://{host}"})
        assert resp.status == 200 and "Secure" in resp.headers["Set-Cookie"]
        resp = await client.post("/login", json={"user": "ann", "password": SECRET}, headers={"Origin": "https://evil.example"})
        assert resp.status == 403
    finally:
        await client.close()


async def test_console_customer_sees_only_its_own_activities(console):
    _, client = console
    await login(client, "ann")
    items = (await (await client.get("/activities")).json())["items"]
    assert [a["id"] for a in items] == ["a1"]
    assert (await client.get("/activities/g1")).status == 404  # another customer's id looks unknown
    assert (await client.get("/activities/a1")).status == 200
    export = await (await client.get("/activities/export")).text()
    assert "g1" not in export and "a1" in export


async def test_console_viewer_cannot_flag_or_block(console):
    _, client = console
    csrf = await login(client, "ann")
    hdr = {"X-CSRF-Token": csrf}
    resp = await client.post("/activities/a1/flag", json={"by": "number", "scope": "customer"}, headers=hdr)
    assert resp.status == 403 and "viewer" in (await resp.json())["error"]
    resp = await client.post("/blocks", json={"kind": "number", "value": "+14155550123", "scope": "customer"}, headers=hdr)
    assert resp.status == 403


async def test_console_editor_cannot_make_global_rules_or_flag_another_customer(console):
    h, client = console
    resp = await client.post("/activities/a1/flag", json={"by": "number", "scope": "global"}, headers=basic("ed"))
    assert resp.status == 403 and "operators" in (await resp.json())["error"]
    resp = await client.post("/activities/g1/flag", json={"by": "number", "scope": "customer"}, headers=basic("ed"))
    assert resp.status == 404
    resp = await client.post("/blocks", json={"kind": "number", "value": "+14155550123", "scope": "customer",
                                             "scope_value": "globex"}, headers=basic("ed"))
    assert resp.status == 403
    resp = await client.post("/blocks", json={"kind": "cnam", "value": "SPAM*", "scope": "number",
                                             "scope_value": "+13125550100"}, headers=basic("ed"))
    assert resp.status == 403  # globex's number
    assert h.changes == []


async def test_console_rules_are_scoped_by_customer_and_number(console):
    h, client = console
    for rule in [BlockRule(id="r-acme", kind=RuleKind.NUMBER, value="+14155550123", scope=Scope.CUSTOMER, scope_value="acme"),
                 BlockRule(id="r-acme-n", kind=RuleKind.CNAM, value="SPAM*", scope=Scope.NUMBER, scope_value="+12025550101"),
                 BlockRule(id="r-globex", kind=RuleKind.NUMBER, value="+14155550123", scope=Scope.CUSTOMER, scope_value="globex"),
                 BlockRule(id="r-global", kind=RuleKind.ANONYMOUS)]:
        await h.store.add_block(rule)
    ids = [r["id"] for r in (await (await client.get("/blocks", headers=basic("ann"))).json())["blocks"]]
    assert sorted(ids) == ["r-acme", "r-acme-n"]
    rules = {r["id"]: r for r in (await (await client.get("/console/rules", headers=basic("ann"))).json())["rules"]}
    assert sorted(rules) == ["d-acme", "r-acme", "r-acme-n"]  # the dialplan's acme rule too, read-only
    assert rules["r-acme"]["hits"] == 4 and rules["r-acme"]["editable"] is True and rules["d-acme"]["editable"] is False
    gus = (await (await client.get("/console/rules", headers=basic("gus"))).json())["rules"]
    assert [r["id"] for r in gus] == ["r-globex"]
    assert (await client.get("/blocks/r-globex", headers=basic("ed"))).status == 404
    assert (await client.delete("/blocks/r-globex", headers=basic("ed"))).status == 404
    assert (await client.delete("/blocks/r-global", headers=basic("ed"))).status == 404
    assert (await client.delete("/blocks/r-acme", headers=basic("ann"))).status == 403
    assert (await client.delete("/blocks/r-acme", headers=basic("ed"))).status == 200
    ops = [r["id"] for r in (await (await client.get("/blocks", headers=basic("noc"))).json())["blocks"]]
    assert sorted(ops) == ["r-acme-n", "r-global", "r-globex"]


async def test_console_dry_run_toggle_replaces_the_rule(console):
    h, client = console
    await h.store.add_block(BlockRule(id="r1", kind=RuleKind.NUMBER, value="+14155550123", scope=Scope.CUSTOMER, scope_value="acme"))
    resp = await client.post("/console/rules/r1/dry-run", json={"dry_run": True}, headers=basic("ed"))
    assert resp.status == 200 and (await resp.json())["dry_run"] is True
    assert (await h.store.get_block("r1")).dry_run is True
    assert [(a.id, r) for a, r in h.changes] == [("r1", "r1")]
    assert (await client.post("/console/rules/r1/dry-run", json={"dry_run": False}, headers=basic("gus"))).status == 404


async def test_console_numbers_are_scoped_and_forcing_is_for_operators(console):
    h, client = console
    resp = await client.post("/numbers/+13125550100/release", headers=basic("ed"))
    assert resp.status == 404  # globex's number
    resp = await client.post("/numbers/+12025550101/release", headers=basic("ann"))
    assert resp.status == 403
    resp = await client.post("/numbers/+12025550101/release", headers=basic("ed"))
    assert resp.status == 200 and (await resp.json())["customer"] == "acme"
    await h.store.put_number(h.lifecycle.release("+13125550100", h.now, customer="globex"))
    listed = [n["number"] for n in (await (await client.get("/numbers", headers=basic("ann"))).json())["numbers"]]
    assert listed == ["+12025550101"]
    resp = await client.post("/numbers/+12025550101/assign", json={"customer": "acme"}, headers=basic("ed"))
    assert resp.status == 409 and "not eligible" in (await resp.json())["error"]  # the refusal reason, shown as-is
    resp = await client.post("/numbers/+12025550101/assign", json={"customer": "acme", "force": True, "reason": "x"},
                             headers=basic("ed"))
    assert resp.status == 403
    resp = await client.post("/numbers/+12025550101/assign", json={"customer": "globex"}, headers=basic("ed"))
    assert resp.status == 403
    assert (await client.get("/numbers-available", headers=basic("ed"))).status == 403
    h.now += 2 * DAY
    h.lifecycle.record_traffic("+12025550101", h.now)
    await h.store.put_number(h.lifecycle.record_traffic("+12025550101", h.now))
    mine = (await (await client.get("/console/numbers", headers=basic("ann"))).json())["numbers"]
    assert [(n["number"], n["state"]) for n in mine] == [("+12025550100", "assigned"), ("+12025550101", "released")]
    assert mine[0]["residual_daily"] == [] and mine[1]["status"]["days_in_quarantine"] == 2
    assert [c for _, c in mine[1]["residual_daily"]] == [0, 0, 2]  # release day .. today


async def test_console_basic_auth_wrong_secret_is_401_and_metrics_are_for_operators(console):
    _, client = console
    assert (await client.get("/activities", headers=basic("ann", "not the secret"))).status == 401
    assert (await client.get("/metrics", headers=basic("ann"))).status == 403
    assert (await client.get("/metrics", headers=basic("noc"))).status == 200


async def test_console_logout_ends_the_session(console):
    _, client = console
    csrf = await login(client, "ann")
    assert (await client.post("/logout", headers={"X-CSRF-Token": csrf})).status == 200
    assert (await client.get("/activities")).status == 401


async def test_console_removed_user_loses_its_session(console):
    h, client = console
    await login(client, "ann")
    assert (await client.get("/activities")).status == 200
    await h.store.remove_user("ann")
    assert (await client.get("/activities")).status == 401


async def test_console_password_change_ends_sessions(console):
    h, client = console
    await login(client, "ann")
    user = await h.store.get_user("ann")
    await h.store.put_user(ConsoleUser(name="ann", role=user.role, customer=user.customer, secret_hash=hash_secret("another secret")))
    assert (await client.get("/activities")).status == 401


async def test_console_responses_carry_a_csp_without_inline_script(console):
    _, client = console
    for path in ("/login", "/static/app.js", "/health"):
        resp = await client.get(path)
        assert resp.status == 200, path
        assert resp.headers["Content-Security-Policy"] == CSP
    assert "script-src 'self'" in CSP and "unsafe-inline" not in CSP
    assert resp.headers["X-Content-Type-Options"] == "nosniff"


async def test_console_voicemail_audio_is_scoped_and_an_editor_deletes_it(console):
    h, client = console
    wav = h.tmp / "vm.wav"
    wav.write_bytes(b"RIFF....WAVEfmt ")
    await h.seed("v1", "acme", "+12025550100", voicemail_path=str(wav))
    await h.seed("v2", "globex", "+13125550100", voicemail_path=str(wav))
    resp = await client.get("/voicemail/v1/audio", headers=basic("ann"))
    assert resp.status == 200 and resp.headers["Content-Type"] == "audio/wav" and await resp.read() == wav.read_bytes()
    resp = await client.get("/voicemail/v1/audio?download=1", headers=basic("ann"))
    assert resp.headers["Content-Disposition"] == 'attachment; filename="voicemail-v1.wav"'
    assert (await client.get("/voicemail/v2/audio", headers=basic("ann"))).status == 404
    listed = (await (await client.get("/voicemail", headers=basic("ann"))).json())["voicemail"]
    assert [v["activity_id"] for v in listed] == ["v1"]
    assert (await client.delete("/voicemail/v1", headers=basic("ann"))).status == 403
    assert (await client.delete("/voicemail/v1", headers=basic("ed"))).status == 200
    assert not wav.exists() and (await h.store.get_activity("v1")).voicemail_path == ""


async def test_console_stats_count_the_callers_scope(console):
    h, client = console
    await h.seed("r1", "acme", "+12025550100", decision="reject", calling_number="+14155550999", cnam="SPAMMER",
                 score=85.0, stir_status="failed", received_at=T0 - 30)
    await h.seed("r2", "globex", "+13125550100", decision="reject", calling_number="+14155550888", received_at=T0 - 30)
    body = await (await client.get("/console/stats?window=1h", headers=basic("ann"))).json()
    assert body["total"] == 2  # a1 and r1; globex's are not counted
    assert sum(body["per_decision"]["reject"]) == 1 and sum(body["per_decision"]["allow"]) == 1
    assert body["top_callers"] == [["+14155550999", 1]] and body["top_names"] == [["SPAMMER", 1]]
    assert body["scores"][8] == 1 and body["scores"][0] == 1
    assert dict(body["stir"]) == {"failed": 1, "none": 1}
    assert (await client.get("/console/stats?window=1y", headers=basic("ann"))).status == 422


async def _next_event(resp) -> dict:
    data = b""
    while True:
        line = await asyncio.wait_for(resp.content.readline(), 5.0)
        if line.startswith(b"data: "):
            data = line[6:]
        elif line == b"\n" and data:
            return json.loads(data)


async def test_console_events_stream_the_callers_new_activities_and_end_at_shutdown(tmp_path):
    h = Harness(tmp_path)
    await h.users()
    await h.seed("a1", "acme", "+12025550100")
    client = TestClient(TestServer(make_admin_app(h.ctx)))
    await client.start_server()
    resp = await client.get("/console/events", headers=basic("ann"))
    assert resp.status == 200 and resp.headers["Content-Type"] == "text/event-stream"
    assert (await _next_event(resp))["id"] == "a1"
    await h.seed("g2", "globex", "+13125550100", received_at=T0 - 1)
    await h.seed("a2", "acme", "+12025550100", received_at=T0)
    assert (await _next_event(resp))["id"] == "a2"  # globex's g2 never comes
    await h.store.set_activity_flagged("a1")
    changed = await _next_event(resp)
    assert changed["id"] == "a1" and changed["flagged"] is True  # a changed row is sent again
    started = time.monotonic()
    await client.close()  # the open stream must not hold the listener's shutdown
    assert time.monotonic() - started < 5.0


async def test_console_streams_of_one_customer_share_one_feed(tmp_path):
    from edge.console.pages import FEEDS

    h = Harness(tmp_path)
    await h.users()
    await h.seed("a1", "acme", "+12025550100")
    client = TestClient(TestServer(make_admin_app(h.ctx)))
    await client.start_server()
    try:
        streams = [await client.get("/console/events", headers=basic(name)) for name in ("ann", "ed", "ann", "gus")]
        for resp in streams[:3]:
            assert (await _next_event(resp))["id"] == "a1"
        feeds = client.server.app[FEEDS]
        assert sorted(feeds) == ["acme", "globex"]
        assert len(feeds["acme"].subscribers) == 3 and len(feeds["globex"].subscribers) == 1
        await h.seed("a2", "acme", "+12025550100", received_at=T0)
        assert [(await _next_event(r))["id"] for r in streams[:3]] == ["a2", "a2", "a2"]
    finally:
        await client.close()
