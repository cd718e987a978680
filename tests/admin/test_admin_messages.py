"""Admin routes for texts, chats and forms: held messages (list, release, drop), opt-outs, flag by e-mail/IP/name."""

from __future__ import annotations

import dataclasses

from aiohttp.test_utils import TestClient, TestServer

from admin_harness import AUTH, T0, Harness
from edge.call.activity import Activity
from edge.daemon.admin import make_admin_app
from edge.messaging.optout import OptOut


class FakeHeld:
    """Stands in for edge.daemon.messaging.HeldView (the proxy side is tested in tests/messaging)."""

    def __init__(self) -> None:
        self.items = {"h1": {"id": "h1", "customer": "acme", "body": "verify your account"}}
        self.released: list[str] = []

    def list(self, customer: str = "") -> list[dict]:
        return [v for v in self.items.values() if not customer or v["customer"] == customer]

    def release(self, held_id: str) -> bool:
        if self.items.pop(held_id, None) is None:
            return False
        self.released.append(held_id)
        return True

    def drop(self, held_id: str) -> bool:
        return self.items.pop(held_id, None) is not None

    def optouts(self) -> list[OptOut]:
        return [OptOut("C1", "+13035550111", T0, "stop")]


async def _client(h: Harness, held: object) -> TestClient:
    ctx = dataclasses.replace(h.ctx, held=held)
    client = TestClient(TestServer(make_admin_app(ctx)))
    await client.start_server()
    return client


async def test_admin_held_list_release_drop_and_activity_updated() -> None:
    h = Harness()
    held = FakeHeld()
    await h.store.append_activity(Activity(id="h1", call_id="c", kind="message", received_at=T0, calling_number="+13035550111",
                                           called_number="+12025550100", decision="hold"))
    client = await _client(h, held)
    try:
        resp = await client.get("/messages/held", headers=AUTH)
        assert resp.status == 200 and [m["id"] for m in (await resp.json())["held"]] == ["h1"]
        assert (await client.get("/messages/held?customer=globex", headers=AUTH)).status == 200
        resp = await client.post("/messages/held/h1/release", headers=AUTH)
        assert resp.status == 200 and held.released == ["h1"]
        a = await h.store.get_activity("h1")
        assert (a.decision, a.rule_id) == ("deliver", "review.released")
        resp = await client.post("/messages/held/h1/release", headers=AUTH)
        assert resp.status == 404 and "no held message h1" in (await resp.json())["error"]
        assert (await client.delete("/messages/held/nope", headers=AUTH)).status == 404
        resp = await client.get("/optouts", headers=AUTH)
        assert (await resp.json())["optouts"][0]["campaign"] == "C1"
        assert (await client.get("/messages/held")).status == 401
    finally:
        await client.close()


async def test_admin_held_routes_404_without_messaging() -> None:
    h = Harness()
    client = await _client(h, None)
    try:
        resp = await client.get("/messages/held", headers=AUTH)
        assert resp.status == 404 and (await resp.json()) == {"error": "messaging is not running"}
    finally:
        await client.close()


async def test_admin_flag_form_activity_by_email_ip_and_name() -> None:
    h = Harness()
    await h.store.append_activity(Activity(id="f1", call_id="", kind="form", received_at=T0, calling_number="+12025550123",
                                           called_number="", cnam="Mallory", source="192.0.2.77", customer="acme",
                                           email="mallory@example.org"))
    client = await _client(h, None)
    try:
        got = {}
        for by in ("email", "ip", "name"):
            resp = await client.post("/activities/f1/flag", json={"by": by, "scope": "customer"}, headers=AUTH)
            assert resp.status in (200, 201), await resp.text()
            rule = (await resp.json())["rule"]
            got[by] = (rule["kind"], rule["value"], rule["scope_value"])
        assert got == {"email": ("email", "mallory@example.org", "acme"), "ip": ("ip", "192.0.2.77/32", "acme"),
                       "name": ("cnam", "mallory", "acme")}
        assert [c[0].kind.value for c in h.changes] == ["email", "ip", "cnam"]  # the index hears of each
        resp = await client.post("/activities/f1/flag", json={"by": "fax"}, headers=AUTH)
        assert resp.status == 422
    finally:
        await client.close()


async def test_cli_messages_held_release_and_optouts(tmp_path, monkeypatch, capsys):
    import asyncio

    import structlog

    from admin_harness import TOKEN
    from edge.cli import build_parser
    from edge.daemon.admin import bound_port, start_admin

    h = Harness()
    held = FakeHeld()
    held.items["h1"].update(received_at=T0, sender="+13035550111", recipient="+12025550100", reason="hold pattern")
    with structlog.testing.capture_logs():
        runner = await start_admin(make_admin_app(dataclasses.replace(h.ctx, held=held)), "127.0.0.1", 0)
        (tmp_path / "t").write_text(TOKEN)
        monkeypatch.setenv("SIP_EDGE_ADMIN_URL", f"http://127.0.0.1:{bound_port(runner)}")
        monkeypatch.setenv("SIP_EDGE_TOKEN_FILE", str(tmp_path / "t"))
        try:
            async def cli(*argv: str) -> tuple[int, str]:
                args = build_parser().parse_args(list(argv))
                code = await asyncio.wait_for(asyncio.to_thread(args.func, args), timeout=20)
                return code, capsys.readouterr().out

            code, out = await cli("messages", "held")
            assert code == 0 and out.splitlines()[1].split()[0] == "h1" and "verify your account" in out
            assert await cli("messages", "release", "h1") == (0, "h1 released to the PBX\n")
            code, _ = await cli("messages", "drop", "h1")
            assert code == 1  # already released: the API's 404 becomes exit code 1
            code, out = await cli("optouts")
            assert code == 0 and "+13035550111" in out and "C1" in out
        finally:
            await runner.cleanup()
