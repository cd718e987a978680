"""systemd notify protocol end to end: READY, RELOADING, WATCHDOG and STOPPING reach $NOTIFY_SOCKET."""

from __future__ import annotations

import signal
import socket
import time

import pytest

from tests.e2e.conftest import DIALPLAN
from tests.e2e.harness import Daemon, write_config, write_dialplan

pytestmark = pytest.mark.e2e


def test_daemon_notifies_systemd(edge, tmp_path):
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    sock.settimeout(0.2)
    cfg = write_config(tmp_path, edge.port, ["127.0.0.1/32"], [("pbx-a", edge.pbx_a), ("pbx-b", edge.pbx_b)],
                       health_interval="")
    plans = write_dialplan(tmp_path, DIALPLAN)
    d = Daemon(cfg, plans, tmp_path / "daemon.log", env={"NOTIFY_SOCKET": str(path), "WATCHDOG_USEC": "400000"})
    edge.daemon = d
    got: list[str] = []

    def collect(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            try:
                got.append(sock.recv(4096).decode())
            except socket.timeout:
                pass

    try:
        d.wait_ready()
        collect(0.6)
        d.signal(signal.SIGHUP)
        collect(0.6)
        d.signal(signal.SIGTERM)
        collect(1.0)
        assert d.proc.wait(10) == 0
    finally:
        sock.close()
    text = "\n".join(got)
    assert "READY=1" in text
    assert "RELOADING=1" in text and "MONOTONIC_USEC=" in text
    assert text.count("WATCHDOG=1") >= 2
    assert "STOPPING=1" in text
    assert text.index("READY=1") < text.index("RELOADING=1") < text.index("STOPPING=1")
