"""A real redis-server (Debian package) on a free 127.0.0.1 port for tests: start, kill, restart.

No persistence (`--save '' --appendonly no`): a restart comes back empty, the harshest outage.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from pathlib import Path

REDIS_SERVER = "redis-server"


def _free_tcp_port() -> int:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    return port


class RedisServer:
    """One redis-server process in its own directory; `url` stays the same across restarts."""

    def __init__(self, workdir: Path, port: int | None = None, args: tuple[str, ...] = ()) -> None:
        if shutil.which(REDIS_SERVER) is None:
            raise RuntimeError("redis-server not installed: `make deps-test` installs the Debian package")
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = port or _free_tcp_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.args = args  # extra redis-server options (replica-of, cluster mode)
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        log = open(self.workdir / "redis.log", "ab")
        self.proc = subprocess.Popen(
            [REDIS_SERVER, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", str(self.workdir), "--protected-mode", "no", *self.args],
            stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server exited rc={self.proc.returncode}: {self.log()[-2000:]}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.2) as s:
                    s.sendall(b"PING\r\n")
                    if s.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                pass
            time.sleep(0.02)
        raise RuntimeError(f"redis-server not ready on port {self.port}: {self.log()[-2000:]}")

    def kill(self) -> None:
        """SIGKILL, as a crash or a network loss looks to the nodes."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.kill()
        self.start()

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def log(self) -> str:
        p = self.workdir / "redis.log"
        return p.read_text(errors="replace") if p.exists() else ""


def redis_server_fixture(tmp_path_factory):  # type: ignore[no-untyped-def]
    """Body of the session-scoped `redis_server` fixture (see tests/store/conftest.py)."""
    server = RedisServer(tmp_path_factory.mktemp("redis"))
    server.start()
    try:
        yield server
    finally:
        server.stop()


def redis_cli(port: int, *args: str, timeout: float = 20.0) -> str:
    """One redis-cli command against 127.0.0.1:port (Debian redis-tools); raises on a non-zero exit."""
    out = subprocess.run(["redis-cli", "-h", "127.0.0.1", "-p", str(port), *args], capture_output=True, text=True,
                         timeout=timeout, check=True, stdin=subprocess.DEVNULL)
    return out.stdout


class SentinelServer:
    """`redis-server --sentinel` watching one primary as `service` (quorum 1, failure noticed within 1 s)."""

    def __init__(self, workdir: Path, primary_port: int, service: str = "edge") -> None:
        self.workdir = workdir
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.port = _free_tcp_port()
        self.service = service
        conf = workdir / "sentinel.conf"  # sentinel rewrites its config file, so each gets its own
        conf.write_text(
            f"port {self.port}\nbind 127.0.0.1\nprotected-mode no\ndir {workdir}\n"
            f"sentinel monitor {service} 127.0.0.1 {primary_port} 1\n"
            f"sentinel down-after-milliseconds {service} 1000\n"
            f"sentinel failover-timeout {service} 5000\n"
        )
        self.conf = conf
        self.url = f"redis+sentinel://127.0.0.1:{self.port}/{service}"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout: float = 10.0) -> None:
        log = open(self.workdir / "sentinel.log", "ab")
        self.proc = subprocess.Popen([REDIS_SERVER, str(self.conf), "--sentinel"], stdout=log,
                                     stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, cwd=self.workdir)
        log.close()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if self.primary()[1] > 0 and self.replicas_known() > 0:
                    return
            except (OSError, subprocess.SubprocessError, ValueError):
                pass
            time.sleep(0.1)
        raise RuntimeError(f"sentinel not ready on port {self.port}")

    def primary(self) -> tuple[str, int]:
        host, port = redis_cli(self.port, "SENTINEL", "get-master-addr-by-name", self.service).split()
        return host, int(port)

    def replicas_known(self) -> int:
        return redis_cli(self.port, "SENTINEL", "replicas", self.service).count("name")

    def failover(self) -> None:
        """Force a failover now (SENTINEL FAILOVER): the replica is promoted, the primary demoted."""
        redis_cli(self.port, "SENTINEL", "failover", self.service)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None


class RedisCluster:
    """Three cluster-mode primaries joined by `redis-cli --cluster create` (no replicas)."""

    def __init__(self, workdir: Path, size: int = 3) -> None:
        self.nodes = []
        for i in range(size):
            d = workdir / f"node{i}"
            port = next(p for p in iter(_free_tcp_port, None) if p <= 55535)  # redis refuses higher in cluster mode
            bus = _free_tcp_port()
            self.nodes.append(RedisServer(d, port, ("--cluster-enabled", "yes", "--cluster-config-file",
                                                    str(d / "nodes.conf"), "--cluster-node-timeout", "2000",
                                                    "--cluster-port", str(bus))))
        self.url = self.nodes[0].url.rsplit("/", 1)[0]

    def start(self, timeout: float = 20.0) -> None:
        for node in self.nodes:
            node.start()
        redis_cli(self.nodes[0].port, "--cluster", "create", *(f"127.0.0.1:{n.port}" for n in self.nodes),
                  "--cluster-replicas", "0", "--cluster-yes")
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if all("cluster_state:ok" in redis_cli(n.port, "CLUSTER", "INFO") for n in self.nodes):
                return
            time.sleep(0.1)
        raise RuntimeError("redis cluster did not reach cluster_state:ok")

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
