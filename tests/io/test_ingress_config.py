"""`sip-edge check` (load_config) validates the ingress settings: connection budgets, timeouts, overload."""

from __future__ import annotations

import pytest

from edge.config import ConfigError, load_config

BASE = '[[listen]]\ntransport = "udp"\naddress = "127.0.0.1:5060"\n'


def test_ingress_config_example_values_load(tmp_path):
    p = tmp_path / "edge.toml"
    p.write_text(BASE + '[limits]\nmax_tcp_unknown = 10\nmax_tcp_per_source = 2\ntcp_idle_timeout = "30s"\n'
                 '[overload]\npending_transactions = 50\nretry_after = 9\n[flood]\nstrangers_rate = "50/1s"\n')
    cfg = load_config(p)
    assert (cfg.limits.max_tcp_unknown, cfg.overload.pending_transactions, cfg.flood.strangers_rate) == (10, 50, "50/1s")


@pytest.mark.parametrize("text,expected", [
    ('[limits]\ntcp_idle_timeout = "0s"\n', "$.limits.tcp_idle_timeout: must be greater than 0s"),
    ('[limits]\ntls_handshake_timeout = "soon"\n', "$.limits.tls_handshake_timeout: invalid duration"),
    ('[limits]\nmax_tcp_per_source = -1\n', "$.limits.max_tcp_per_source: must not be negative"),
    ('[overload]\nretry_after = 0\n', "$.overload.retry_after: must be between 1 and 3600 seconds"),
    ('[overload]\nloop_lag = "0ms"\n', "$.overload.loop_lag: must be greater than 0s"),
    ('[overload]\nshed = true\n', "$.overload.shed: unknown key 'shed'"),
    ('[overload]\ntarget_delay = "500ms"\n', "$.overload.target_delay: must be below loop_lag (300ms)"),
    ('[overload]\nmax_rate = 0.5\n', "$.overload.max_rate: must be 0 (no cap) or between 1 and 1000000"),
    ('[flood]\nbusy_rate = "many"\n', "$.flood.busy_rate: invalid rate"),
])
def test_ingress_config_invalid_settings_reported_with_path(tmp_path, text, expected):
    p = tmp_path / "edge.toml"
    p.write_text(BASE + text)
    with pytest.raises(ConfigError) as exc:
        load_config(p)
    # Every problem at its line: the bad key is on line 5, after the [[listen]] table and the section header.
    assert any(e.startswith(f"{p}:5:1: {expected}") for e in exc.value.errors), exc.value.errors
