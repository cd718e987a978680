"""`sip-edge users`: add, ls, passwd, rm against the SQLite store the daemon reads; `[admin]` console keys checked."""

from __future__ import annotations

import asyncio
import io

import pytest

from edge.cli import main
from edge.console.users import Role, verify_secret
from edge.store.schema import AdminConfig, validate_admin
from edge.store.sqlite import SqliteStore
from tests.e2e.harness import write_config


@pytest.fixture
def config(tmp_path):
    return str(write_config(tmp_path, 5099, ["127.0.0.1/32"], [("pbx-a", 5098)]))


def run(monkeypatch, capsys, argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    rc = main(argv)
    out = capsys.readouterr()
    return rc, out.out, out.err


def stored(tmp_path, name: str):
    async def get():
        store = await SqliteStore.open(tmp_path / "var" / "edge.db", retention=None)
        try:
            return await store.get_user(name)
        finally:
            await store.close()

    return asyncio.run(get())


def test_users_add_ls_passwd_rm(tmp_path, config, monkeypatch, capsys):
    rc, out, _ = run(monkeypatch, capsys, ["users", "--config", config, "add", "ann", "--role", "viewer",
                                           "--customer", "acme", "--password-stdin"], "first secret 123\n")
    assert rc == 0 and out.endswith("\nadded ann (viewer, customer acme)\n")  # after the schema migration's log lines
    user = stored(tmp_path, "ann")
    assert user.role is Role.VIEWER and user.customer == "acme" and verify_secret("first secret 123", user.secret_hash)
    rc, out, _ = run(monkeypatch, capsys, ["users", "--config", config, "add", "noc", "--role", "operator", "--generate"])
    assert rc == 0 and out.startswith("added noc (operator, every customer)\npassword: ")
    generated = out.split("password: ")[1].strip()
    assert verify_secret(generated, stored(tmp_path, "noc").secret_hash)
    rc, out, _ = run(monkeypatch, capsys, ["users", "--config", config, "ls"])
    lines = out.splitlines()
    assert lines[0].split() == ["USER", "ROLE", "CUSTOMER", "CREATED", "(UTC)"]
    assert lines[1].split()[:3] == ["ann", "viewer", "acme"] and lines[2].split()[:3] == ["noc", "operator", "(all)"]
    rc, _, err = run(monkeypatch, capsys, ["users", "--config", config, "add", "ann", "--role", "viewer",
                                           "--customer", "acme", "--password-stdin"], "another secret\n")
    assert rc == 1 and "exists" in err
    rc, out, _ = run(monkeypatch, capsys, ["users", "--config", config, "passwd", "ann", "--password-stdin"], "second secret 456\n")
    assert rc == 0 and verify_secret("second secret 456", stored(tmp_path, "ann").secret_hash)
    rc, out, _ = run(monkeypatch, capsys, ["users", "--config", config, "rm", "ann"])
    assert rc == 0 and stored(tmp_path, "ann") is None
    rc, _, err = run(monkeypatch, capsys, ["users", "--config", config, "rm", "ann"])
    assert rc == 1 and "no user 'ann'" in err


def test_users_add_refuses_a_bad_user(config, monkeypatch, capsys):
    rc, _, err = run(monkeypatch, capsys, ["users", "--config", config, "add", "ann", "--role", "editor", "--password-stdin"],
                     "a good secret\n")
    assert rc == 1 and err == "error: role editor needs --customer (letters, digits, . _ -)\n"


def test_users_need_a_persistent_store(tmp_path, monkeypatch, capsys):
    cfg = write_config(tmp_path, 5099, ["127.0.0.1/32"], [("pbx-a", 5098)], extra='[store]\nbackend = "memory"\n')
    with pytest.raises(SystemExit, match="memory"):
        run(monkeypatch, capsys, ["users", "--config", str(cfg), "add", "ann", "--role", "viewer", "--customer", "acme",
                                  "--password-stdin"], "a good secret\n")


def test_admin_console_settings_are_validated():
    errors = validate_admin(AdminConfig(session_ttl="forever", login_failures=0, login_window="0s"))
    assert [p for p, _ in errors] == ["$.admin.session_ttl", "$.admin.login_window", "$.admin.login_failures"]
    assert validate_admin(AdminConfig()) == []
