"""Operator CLI against a real admin app on a free 127.0.0.1 port (the CLI runs in a thread: it is synchronous)."""

from __future__ import annotations

import argparse
import asyncio
import json
import os

import pytest
import pytest_asyncio
import structlog
from admin_harness import T0, TOKEN, Harness

from edge.daemon.admin import bound_port, make_admin_app, start_admin
from edge.cli.admin_client import fmt_time
from edge.cli import numbers as lifecycle_commands
from edge.lifecycle.manager import DAY
from edge.cli import activities as store_commands


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sip-edge")
    sub = p.add_subparsers(dest="command", required=True)
    store_commands.register(sub)
    lifecycle_commands.register(sub)
    return p


@pytest_asyncio.fixture
async def served(tmp_path, monkeypatch):
    h = Harness()
    # Daemon log lines would land in the captured stdout; keep them aside (and assertable).
    logs = structlog.testing.capture_logs()
    h.logs = logs.__enter__()
    runner = await start_admin(make_admin_app(h.ctx), "127.0.0.1", 0)
    token_file = tmp_path / "admin.token"
    token_file.write_text(TOKEN + "\n")
    monkeypatch.setenv("SIP_EDGE_ADMIN_URL", f"http://127.0.0.1:{bound_port(runner)}")
    monkeypatch.setenv("SIP_EDGE_TOKEN_FILE", str(token_file))
    try:
        yield h
    finally:
        await runner.cleanup()
        logs.__exit__(None, None, None)


async def cli(capsys, *argv: str) -> tuple[int, str, str]:
    args = _parser().parse_args(list(argv))
    code = await asyncio.wait_for(asyncio.to_thread(args.func, args), timeout=20)
    out, err = capsys.readouterr()
    return code, out, err


async def test_cli_activities_table_and_json(served, capsys):
    await served.seed(id="a1", cnam="Spam Likely", decision="reject", final_status=603)
    await served.seed(id="a2", received_at=T0 + 5, calling_number="+12025550101", decision="allow")
    code, out, _ = await cli(capsys, "activities")
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:3] == ["ID", "RECEIVED", "(UTC)"]
    assert lines[1].startswith("a2 ") and lines[2].startswith("a1 ")
    assert "Spam Likely" in lines[2] and "603" in lines[2]
    code, out, _ = await cli(capsys, "activities", "--decision", "reject", "--json")
    assert [a["id"] for a in json.loads(out)["items"]] == ["a1"]


async def test_cli_activities_page_hint(served, capsys):
    for i in range(3):
        await served.seed(id=f"a{i}", received_at=T0 + i)
    code, out, _ = await cli(capsys, "activities", "--limit", "2")
    assert code == 0 and out.splitlines()[-1].startswith("more: --cursor ")
    cursor = out.splitlines()[-1].split()[-1]
    code, out, _ = await cli(capsys, "activities", "--limit", "2", "--cursor", cursor, "--json")
    assert [a["id"] for a in json.loads(out)["items"]] == ["a0"]


async def test_cli_activity_show_and_unknown(served, capsys):
    await served.seed(id="a1", cnam="ACME")
    code, out, _ = await cli(capsys, "activity", "a1")
    assert code == 0 and out.splitlines()[0].split() == ["id", "a1"]
    assert any(line.split() == ["cnam", "ACME"] for line in out.splitlines())
    code, out, err = await cli(capsys, "activity", "nope")
    assert code == 1 and out == "" and err == "error: unknown activity 'nope'\n"


async def test_cli_flag_creates_rule_and_notifies(served, capsys):
    await served.seed(id="a1", cnam="Spam Likely", customer="acme")
    code, out, _ = await cli(capsys, "flag", "a1", "--by", "cnam", "--expires", "1d")
    assert code == 0
    [rule] = await served.store.list_blocks()
    assert out == f"{rule.id} created: reject cnam 'spamlikely' (customer acme), expires {fmt_time(T0 + DAY)} UTC\n"
    assert served.changes == [(rule, None)]
    assert [e["event"] for e in served.logs if e["event"] == "activity_flagged"] == ["activity_flagged"]
    assert rule.created_by == "cli"


async def test_cli_block_add_ls_rm(served, capsys):
    code, out, _ = await cli(capsys, "block", "add", "--number", "202-555-0100", "--customer", "acme", "--reason", "robocaller")
    assert code == 0
    [rule] = await served.store.list_blocks()
    assert out == f"{rule.id} added: reject number '+12025550100' (customer acme)\n"
    code, out, _ = await cli(capsys, "block", "ls")
    assert out.splitlines()[1].split()[:6] == [rule.id, "reject", "number", "+12025550100", "customer", "acme"]
    code, out, _ = await cli(capsys, "block", "ls", "--json")
    assert [r["id"] for r in json.loads(out)] == [rule.id]
    code, out, _ = await cli(capsys, "block", "rm", rule.id)
    assert code == 0 and out == f"{rule.id} removed\n"
    assert await served.store.list_blocks() == []
    code, _, err = await cli(capsys, "block", "rm", rule.id)
    assert code == 1 and err == f"error: unknown block rule {rule.id!r}\n"


async def test_cli_block_add_invalid_number_reports_reason(served, capsys):
    code, out, err = await cli(capsys, "block", "add", "--number", "12")
    assert code == 1 and out == ""
    assert err == "error: invalid number '12': not a valid telephone number\n"


async def test_cli_numbers_lifecycle(served, capsys):
    n = "+13125550199"
    code, out, _ = await cli(capsys, "numbers", "release", n, "--customer", "acme")
    assert code == 0 and out.startswith(f"{n} released; eligible from ")
    code, _, err = await cli(capsys, "numbers", "assign", n, "--customer", "beta")
    assert code == 1 and err.startswith(f"error: {n} is not eligible for reassignment: in quarantine until ")
    code, out, _ = await cli(capsys, "numbers", "status", n)
    assert code == 0 and any(line.split()[:2] == ["state", "released"] for line in out.splitlines())
    assert "residual traffic per day:" in out
    code, out, _ = await cli(capsys, "numbers", "available", "--json")
    assert json.loads(out) == []
    served.now = T0 + 90 * DAY
    code, out, _ = await cli(capsys, "numbers", "available")
    assert out.splitlines()[1].split()[:2] == [n, "eligible"]
    code, out, _ = await cli(capsys, "numbers", "status")
    assert out.splitlines()[1].split()[:3] == [n, "eligible", "acme"]
    code, out, _ = await cli(capsys, "numbers", "assign", n, "--customer", "beta")
    assert code == 0 and out == f"{n} assigned to beta\n"


async def test_cli_numbers_force_assign_records_override(served, capsys):
    n = "+13125550199"
    await cli(capsys, "numbers", "release", n)
    code, out, _ = await cli(capsys, "numbers", "assign", n, "--customer", "beta", "--force", "--reason", "porting error")
    assert code == 0 and out == f"{n} assigned to beta (forced override recorded)\n"
    rec = await served.store.get_number(n)
    assert rec.overrides[0].reason == "porting error"


async def test_cli_wrong_token_is_reported(served, capsys, tmp_path):
    bad = tmp_path / "bad.token"
    bad.write_text("nope")
    code, _, err = await cli(capsys, "block", "ls", "--token-file", str(bad))
    assert code == 1 and err == "error: missing or invalid bearer token\n"


async def test_cli_reads_admin_table_from_config(served, capsys, tmp_path, monkeypatch):
    port = os.environ["SIP_EDGE_ADMIN_URL"].rsplit(":", 1)[1]
    token_file = os.environ["SIP_EDGE_TOKEN_FILE"]
    monkeypatch.delenv("SIP_EDGE_ADMIN_URL")
    monkeypatch.delenv("SIP_EDGE_TOKEN_FILE")
    cfg = tmp_path / "edge.toml"
    cfg.write_text(f'[sip]\nlisten = "x"\n\n[admin]\nlisten = "0.0.0.0:{port}"\ntoken_file = "{token_file}"\n')
    code, out, _ = await cli(capsys, "block", "ls", "--config", str(cfg), "--json")
    assert code == 0 and json.loads(out) == []


@pytest.mark.parametrize("argv", [["block", "ls"], ["numbers", "available"]], ids=["block", "numbers"])
async def test_cli_unreachable_admin_exits_2(capsys, tmp_path, monkeypatch, argv):
    token = tmp_path / "t"
    token.write_text("x")
    # Port 9 (discard) on loopback is closed on test machines: connection refused, immediately.
    monkeypatch.setenv("SIP_EDGE_ADMIN_URL", "http://127.0.0.1:9")
    monkeypatch.setenv("SIP_EDGE_TOKEN_FILE", str(token))
    code, _, err = await cli(capsys, *argv)
    assert code == 2 and err.startswith("error: cannot reach the admin API at http://127.0.0.1:9")


async def test_cli_cool_off_show_then_clear(served, capsys):
    from tests.admin.test_admin_api import _cool_off

    _cool_off(served, "+12025550123")
    code, out, _ = await cli(capsys, "cool-off", "+12025550123")
    assert code == 0
    fields = dict(line.split(None, 1) for line in out.splitlines())
    assert (fields["number"], fields["action"], fields["rule_id"]) == ("+12025550123", "reject", "spam.threshold.80")
    code, out, _ = await cli(capsys, "cool-off", "+12025550123", "--clear")
    assert (code, out) == (0, "+12025550123: cool-off lifted\n")
    assert [e["event"] for e in served.logs if e["event"] == "cool_off_cleared"] == ["cool_off_cleared"]
    code, out, err = await cli(capsys, "cool-off", "+12025550123", "--clear")
    assert (code, err) == (1, "error: +12025550123 is not in a Spam Detective cool-off\n")
