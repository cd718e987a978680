"""`sip-edge check`: the shipped files pass, and the README's example is exactly what it prints."""

from __future__ import annotations

import re
import shutil
from pathlib import Path

import pytest

from edge.cli.check import check
from edge.cli import main

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture
def workdir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A copy of the shipped dialplans next to the shipped config (relative paths as in the README)."""
    (tmp_path / "config").symlink_to(ROOT / "config")
    shutil.copytree(ROOT / "dialplans", tmp_path / "dialplans")
    monkeypatch.chdir(tmp_path)
    return tmp_path


def readme_example() -> tuple[str, list[str]]:
    """The console block under README's 'Validate': the command and the lines it prints."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Validate"):text.index("## Operate")]
    block = re.search(r"```console\n\$ (.*?)\n(.*?)```", section, re.S)
    assert block, "README's Validate section has no console example"
    return block.group(1), block.group(2).splitlines()


def test_shipped_config_and_dialplans_pass(workdir: Path) -> None:
    assert check("config/edge.toml", "dialplans") == []


def test_readme_example_is_what_check_prints(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    acme = workdir / "dialplans" / "acme.toml"
    text = acme.read_text()
    for old, new in (('targets = ["pbx-b", "pbx-a"]', 'targets = ["pbx-b", "pbx-c"]'),
                     ('number = "+12025550102"', 'number = "+1555"'),
                     ('\naction = "menu"  ', '\nactoin = "menu"  ')):
        assert text.count(old) == 1
        text = text.replace(old, new)
    acme.write_text(text)
    command, lines = readme_example()
    assert command.startswith("sip-edge check ")
    assert main(command.split()[1:]) == 1
    out, err = capsys.readouterr()  # the trust directory's account (stdout) comes before the problems (stderr)
    assert out.splitlines() + err.splitlines() == lines


def test_check_ok_line(workdir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "--config", "config/edge.toml", "dialplans"]) == 0
    assert capsys.readouterr().out.splitlines()[-1] == "ok: config/edge.toml and dialplans"


def test_config_and_dialplan_problems_together(workdir: Path) -> None:
    cfg = workdir / "edge.toml"
    cfg.write_text((ROOT / "config" / "edge.toml").read_text().replace('prompts_dir = "config/prompts"', 'prompts_dir = "nowhere"'))
    got = check(str(cfg), "dialplans")
    line = next(i for i, t in enumerate(cfg.read_text().splitlines(), 1) if t.startswith("prompts_dir"))
    assert f"{cfg}:{line}:1: $.media.prompts_dir: not a directory: nowhere" in got


def test_readme_explain_example_is_real_output(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import shlex

    text = (ROOT / "README.md").read_text()
    section = text[text.index("### Explain a decision"):text.index("### Logs and metrics")]
    block = re.search(r"```console\n\$ (.*?)\n(.*?)```", section, re.S)
    assert block, "README's explain section has no console example"
    monkeypatch.chdir(ROOT)
    argv = shlex.split(block.group(1))
    assert argv[0] == "sip-edge"
    assert main(argv[1:]) == 0
    assert capsys.readouterr().out == block.group(2)


def test_explain_json_and_errors(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    import json

    monkeypatch.chdir(ROOT)
    assert main(["explain", "--to", "+12025550100", "--from", "+13035550111", "--json"]) == 0
    body = json.loads(capsys.readouterr().out)
    assert (body["file"], body["line"], body["action"], body["targets"]) == ("dialplans/acme.toml", 9, "allow", ["pbx-a", "pbx-b"])
    assert main(["explain", "--to", "+12025550100", "--source", "10.1.2.3"]) == 1
    assert capsys.readouterr().err == "source 10.1.2.3 is not a carrier (its INVITE would get 403 before any policy)\n"


def test_released_number_in_a_dialplan_points_at_its_entry(workdir: Path) -> None:
    """A number released into quarantine but still routed: the problem names the dialplan line, not the directory."""
    import asyncio

    from edge.config import load_config
    from edge.lifecycle.record import NumberRecord, NumberState
    from edge.store.factory import open_store

    cfg_path = workdir / "edge.toml"
    cfg_path.write_text((ROOT / "config" / "edge.toml").read_text().replace('path = "var/edge.db"', f'path = "{workdir}/state.db"'))

    async def release() -> None:
        store = await open_store(load_config(cfg_path).store)
        try:
            await store.put_number(NumberRecord("+12025550101", NumberState.RELEASED, customer="acme", released_at=1.0))
        finally:
            await store.close()

    asyncio.run(release())
    assert check(str(cfg_path), "dialplans") == [
        "dialplans/acme.toml:13:1: $.numbers[1].number: +12025550101 is routed by a dialplan but released (in quarantine); "
        "remove it or reassign it with sip-edge numbers assign"
    ]
