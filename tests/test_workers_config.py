"""`[daemon] workers`: `sip-edge check` refuses a multi-process configuration that cannot share state or
would split a call's legs, and each worker gets its own node name; only worker 0 runs the admin API."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.cli.check import check
from edge.config import load_config
from edge.daemon.workers import WorkerRole, worker_config

ROOT = Path(__file__).resolve().parent.parent

BASE = """
[[listen]]
transport = "udp"
address = "127.0.0.1:5060"
{tcp}
[[pbx]]
name = "pbx-a"
uri = "sip:127.0.0.1:5070"
sources = ["127.0.0.1:5070"]

[daemon]
node = "edge-1"
workers = {workers}

[media]
prompts_dir = "{prompts}"

[store]
backend = "{backend}"
path = "var/edge.db"

[messaging.screening_api]
enabled = true
clients = [{{ customer = "acme", key_sha256 = "{sha}" }}]
"""

TCP = '[[listen]]\ntransport = "tcp"\naddress = "127.0.0.1:5060"\n'


def write(tmp: Path, workers: int = 2, backend: str = "redis", tcp: bool = False) -> str:
    (tmp / "dialplans").mkdir(exist_ok=True)
    p = tmp / "edge.toml"
    p.write_text(BASE.format(workers=workers, backend=backend, tcp=TCP if tcp else "", sha="ab" * 32,
                             prompts=ROOT / "config" / "prompts"))
    return str(p)


def errors(tmp: Path, **kw) -> list[str]:
    return check(write(tmp, **kw), str(tmp / "dialplans"))


def test_two_workers_with_redis_and_udp_pass(tmp_path):
    assert errors(tmp_path) == []


def test_workers_without_a_shared_store_are_refused(tmp_path):
    for backend in ("sqlite", "memory"):
        errs = errors(tmp_path, backend=backend)
        assert len(errs) == 1 and "$.store.backend" in errs[0] and "needs backend = 'redis'" in errs[0]
    assert errors(tmp_path, workers=1, backend="sqlite") == []  # the default stays as it was


def test_workers_with_a_stream_listener_are_refused(tmp_path):
    errs = errors(tmp_path, tcp=True)
    assert len(errs) == 1 and "$.listen[1].transport" in errs[0] and "serves UDP only" in errs[0]


@pytest.mark.parametrize("n", [0, -1, 65])
def test_worker_count_out_of_range(tmp_path, n):
    errs = errors(tmp_path, workers=n)
    assert len(errs) == 1 and "$.daemon.workers" in errs[0]


def test_each_worker_has_its_own_node_and_only_worker_0_the_admin_and_screening_apis(tmp_path):
    cfg = load_config(write(tmp_path))
    w0, w1 = worker_config(cfg, 0), worker_config(cfg, 1)
    assert (w0.daemon.node, w1.daemon.node) == ("edge-1-w0", "edge-1-w1")
    assert w0.admin.enabled and w0.messaging.screening_api.enabled
    assert not w1.admin.enabled and not w1.messaging.screening_api.enabled
    assert cfg.daemon.node == "edge-1" and cfg.admin.enabled  # the supervisor's view is untouched


def test_worker_role_round_trips_and_refuses_garbage():
    role = WorkerRole(1, 2, 7, 9)
    assert WorkerRole.parse(role.spec()) == role
    for bad in ("", "1/2", "2/2:7:9", "a/2:7:9", "1/2:7"):
        with pytest.raises(ValueError):
            WorkerRole.parse(bad)
