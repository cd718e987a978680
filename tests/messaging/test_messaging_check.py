"""`sip-edge check` validates the messaging config and dialplan sections (one `file:line:col: $.path: reason` line each)."""

from __future__ import annotations

from pathlib import Path

from edge.cli.check import check
from edge.tomlfile import SourceMap

ROOT = Path(__file__).resolve().parents[2]


def located(f: Path, path: str, reason: str) -> str:
    """How check prints a problem: at the line and column of the key its JSON path names."""
    line, col = SourceMap(f.read_text()).locate(path)
    return f"{f}:{line}:{col}: {path}: {reason}"


def _config(tmp: Path, *edits: tuple[str, str]) -> Path:
    base = (ROOT / "config" / "edge.toml").read_text()
    for old, new in edits:
        assert old in base
        base = base.replace(old, new, 1)
    p = tmp / "edge.toml"
    p.write_text(base)
    return p


def test_check_reports_bad_messaging_config(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = _config(tmp_path, ("queue_size = 100 ", "queue_size = 0 "),
                  ('daily_reset_tz = "America/Los_Angeles"', 'daily_reset_tz = "Mars/Olympus"'))
    errors = check(str(cfg), str(ROOT / "dialplans"))
    assert located(cfg, "$.messaging.queue_size", "must be at least 1") in errors
    assert located(cfg, "$.messaging.daily_reset_tz", "unknown time zone 'Mars/Olympus'") in errors


def test_check_reports_bad_messaging_dialplan_sections(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = _config(tmp_path)
    plans = tmp_path / "dialplans"
    plans.mkdir()
    bad = plans / "bad.toml"
    bad.write_text("""
customer = "bad"
targets = ["pbx-a"]
[[numbers]]
number = "+13035550100"
[[block]]
text = "* *"
[[block]]
email = "nobody"
[[block]]
ip = "10.0.0.300"
[brand]
id = "B9"
entity_type = "pirate"
trust_score = 101
[[campaigns]]
id = "C9"
use_case = "mixed"
numbers = ["+1303"]
message_class = "Z"
[messages]
reject_status = 200
""")
    errors = check(str(cfg), str(plans))
    assert errors[:3] == [
        located(bad, "$.block[0].text", "text pattern '* *' matches every message"),
        located(bad, "$.block[1].email", "invalid e-mail rule 'nobody': expected an address, '@domain' or a pattern with '@'"),
        located(bad, "$.block[2].ip", "invalid ip rule '10.0.0.300': expected an address or CIDR such as '203.0.113.0/24'"),
    ]
    bad.write_text(bad.read_text().replace('text = "* *"', 'text = "*win*"').replace('"nobody"', '"@x.org"')
                   .replace("10.0.0.300", "10.0.0.0/8"))
    errors = check(str(cfg), str(plans))
    assert errors == [
        located(bad, "$.brand.entity_type", "'pirate' is not one of private_profit, public_profit, non_profit, government, sole_proprietor"),
        located(bad, "$.brand.trust_score", "must be between 0 and 100"),
        located(bad, "$.campaigns[0].numbers[0]", "'+1303' is not a valid E.164 number"),
        located(bad, "$.campaigns[0].message_class", "'Z' is not in [[messaging.tier]]"),
        located(bad, "$.messages.reject_status", "200 is not a SIP rejection code (400-699)"),
    ]


def test_daemon_load_refuses_a_dialplan_with_bad_messaging_sections(tmp_path, monkeypatch):
    """SIGHUP reload goes through Daemon.load: a broken campaign keeps the running plan in force."""
    import pytest

    from edge.daemon.process import Daemon
    from edge.dialplan.load import DialplanError

    monkeypatch.chdir(ROOT)
    plans = tmp_path / "dialplans"
    plans.mkdir()
    good = (ROOT / "dialplans" / "acme.toml").read_text()
    (plans / "acme.toml").write_text(good)
    d = Daemon(str(_config(tmp_path)), str(plans))
    d.load()
    assert [c.id for c in d.messaging_plan.campaigns] == ["CACME01"]
    (plans / "acme.toml").write_text(good.replace('use_case = "account_notification"\nnumbers = ["+12025550101"]',
                                                  'use_case = "account_notification"\nnumbers = ["+1202"]'))
    with pytest.raises(DialplanError) as exc:
        d.load()
    assert exc.value.errors == [f"{plans / 'acme.toml'}: $.campaigns[0].numbers[0]: '+1202' is not a valid E.164 number"]
    assert [c.id for c in d.messaging_plan.campaigns] == ["CACME01"]  # the previous plan stays


def test_check_screening_api_needs_keys_and_its_own_listener(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    cfg = _config(tmp_path, ("[messaging.screening_api]\nenabled = false\nlisten = \"127.0.0.1:8082\"",
                             "[messaging.screening_api]\nenabled = true\nlisten = \"127.0.0.1:8081\""))
    errors = check(str(cfg), str(ROOT / "dialplans"))
    assert errors == [
        located(cfg, "$.messaging.screening_api.clients", "the screening API is enabled but has no API keys (every request would get 401)"),
        located(cfg, "$.messaging.screening_api.listen", "must not be the admin API's listener"),
    ]
