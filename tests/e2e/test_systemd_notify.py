"""systemd notify protocol end to end: READY, RELOADING, WATCHDOG and STOPPING reach $NOTIFY_SOCKET."""

from __future__ import annotations

import signal

import pytest

from tests.e2e.conftest import DIALPLAN
from tests.e2e.harness import Daemon, NotifyListener, write_config, write_dialplan

pytestmark = pytest.mark.e2e


def test_daemon_notifies_systemd(edge, tmp_path):
    notify = NotifyListener(tmp_path / "notify.sock")
    cfg = write_config(tmp_path, edge.port, ["127.0.0.1/32"], [("pbx-a", edge.pbx_a), ("pbx-b", edge.pbx_b)],
                       health_interval="")
    plans = write_dialplan(tmp_path, DIALPLAN)
    d = Daemon(cfg, plans, tmp_path / "daemon.log",
               env={"NOTIFY_SOCKET": str(notify.path), "WATCHDOG_USEC": "400000"})
    edge.daemon = d
    collect = notify.collect

    try:
        d.wait_ready()
        collect(0.6)
        d.signal(signal.SIGHUP)
        collect(0.6)
        d.signal(signal.SIGTERM)
        collect(1.0)
        assert d.proc.wait(10) == 0
    finally:
        notify.close()
    text = "\n".join(notify.got)
    assert "READY=1" in text
    assert "RELOADING=1" in text and "MONOTONIC_USEC=" in text
    assert text.count("WATCHDOG=1") >= 2
    assert "STOPPING=1" in text
    assert text.index("READY=1") < text.index("RELOADING=1") < text.index("STOPPING=1")
