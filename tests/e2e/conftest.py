from __future__ import annotations

from pathlib import Path

import pytest

from tests.e2e.harness import Daemon, free_port, write_config, write_dialplan

DIALPLAN = """
customer = "acme"
targets = ["pbx-a", "pbx-b"]
[[numbers]]
number = "+12025550100"
[[numbers]]
prefix = "+1202555020"
"""


class Edge:
    """A running daemon with its ports, for one test."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.port = free_port()
        self.pbx_a = free_port()
        self.pbx_b = free_port()
        self.carrier_port = free_port()
        self.daemon: Daemon | None = None

    def start(self, dialplan: str = DIALPLAN, carrier: list[str] | None = None, extra: str = "",
              timers: str | None = None, outbound: list[str] | None = None, health_interval: str = "1s",
              listen_extra: str = "") -> Daemon:
        kw = {} if timers is None else {"timers": timers}
        kw["health_interval"] = health_interval
        kw["listen_extra"] = listen_extra
        cfg = write_config(self.tmp, self.port, carrier or ["127.0.0.1/32"],
                           [("pbx-a", self.pbx_a), ("pbx-b", self.pbx_b)], extra=extra, outbound=outbound, **kw)
        plans = write_dialplan(self.tmp, dialplan)
        self.daemon = Daemon(cfg, plans, self.tmp / "daemon.log")
        self.daemon.wait_ready()
        return self.daemon


@pytest.fixture
def edge(tmp_path: Path):
    e = Edge(tmp_path)
    yield e
    if e.daemon is not None:
        e.daemon.stop()
