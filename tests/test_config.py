"""edge.config: the example config loads; every problem of a broken one is reported with its line."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.config import ConfigError, load_config

ROOT = Path(__file__).resolve().parent.parent

MINIMAL = """\
[[listen]]
address = "127.0.0.1:5060"

[[pbx]]
name = "pbx-a"
uri = "sip:127.0.0.1:5070"
"""


def test_example_config_loads(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    cfg = load_config("config/edge.toml")
    assert [p.name for p in cfg.pbx] == ["pbx-a", "pbx-b"]
    assert cfg.path == "config/edge.toml"


def test_minimal_config_defaults(tmp_path: Path) -> None:
    (tmp_path / "e.toml").write_text(MINIMAL)
    cfg = load_config(tmp_path / "e.toml")
    assert cfg.acl.unknown_source == "reject"
    assert cfg.timers.values().t1 == 0.5


def test_every_problem_reported_with_line(tmp_path: Path) -> None:
    (tmp_path / "e.toml").write_text(MINIMAL + """
[acl]
unknown_sorce = "drop"

[[carriers]]
name = "c"
sources = ["10.0.0.300/32"]

[timers]
t1 = "fast"

[logging]
level = "loud"
""")
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "e.toml")
    f = tmp_path / "e.toml"
    assert exc.value.errors == [
        f"{f}:9:1: $.acl.unknown_sorce: unknown key 'unknown_sorce' (did you mean 'unknown_source'?)",
        f"{f}:13:12: $.carriers[0].sources[0]: invalid source '10.0.0.300/32': '10.0.0.300/32' does not appear to be an IPv4 or IPv6 network",
        f"{f}:16:1: $.timers.t1: invalid duration 'fast': expected a number with ms, s, m, h or d (e.g. '30s')",
        f"{f}:19:1: $.logging.level: 'loud' is not one of debug, info, warning, error",
    ]


def test_missing_required_section(tmp_path: Path) -> None:
    (tmp_path / "e.toml").write_text('[acl]\nunknown_source = "drop"\n')
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "e.toml")
    assert exc.value.errors == [f"{tmp_path}/e.toml:1:1: $: missing required key 'listen'"]


def test_unreadable_and_invalid_toml(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "none.toml")
    assert exc.value.errors == [f"{tmp_path}/none.toml:1:1: $: cannot read: No such file or directory"]
    (tmp_path / "bad.toml").write_text("[[listen]]\naddress = \n")
    with pytest.raises(ConfigError) as exc:
        load_config(tmp_path / "bad.toml")
    assert exc.value.errors == [f"{tmp_path}/bad.toml:2:11: $: invalid TOML: Invalid value"]
