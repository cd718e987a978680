"""End-to-end call-rate benchmark: sipp carrier -> proxy -> sipp PBX on loopback, stepped rates.

Method: every socket gets 4 MB buffers; the PBX waits 10 ms between 180 and 200 and the carrier 10 ms
between ACK and BYE; each rate step places a fixed number of calls and the sweep stops at the first step
with a failed call, a retransmission on either sipp side, or calls completing well below the offered
rate. The best passing step is re-run N times (interleaved between the systems) and medians are quoted.
A tuned Kamailio is measured in the same run, so the ratios edge/Kamailio do not depend on how busy the
machine was. CPU per call is the user + system time all the proxy's processes used during the step
(read from /proc), divided by the calls completed.

After the sweep, an overload step offers each system a multiple of its own best rate for a fixed time
and reports goodput, 503s with Retry-After, failed established calls and OPTIONS response times
(`benchmarks/overload.py`); `--profile` samples the daemon with py-spy for one step
(`benchmarks/profiling.py`). Memory per held dialog is `python -m benchmarks.held_calls`.

A scenario is (daemon config + dialplans, UAC/UAS sipp scenarios, Kamailio config, optional hooks);
`clean` is the plain INVITE/100/180/200/ACK/BYE/200 call that policy lets through.

    python -m benchmarks.run [--compare kamailio] [--calls 3000] [--start 250 --step 250 --max 6000]
"""

from __future__ import annotations

import abc
import argparse
import contextlib
import csv
import functools
import http.server
import math
import os
import platform
import random
import resource
import shlex
import shutil
import signal
import socket
import statistics
import string
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path

import msgspec

from benchmarks import overload, profiling

ROOT = Path(__file__).resolve().parents[1]
BENCH = Path(__file__).resolve().parent
SIPP = "sipp"
KAMAILIO = "kamailio"
REDIS_SERVER = "redis-server"
STI_CA = ROOT / "config" / "sti-ca"  # TEST trust anchors (never for production)
STI_SIGNING = STI_CA / "signing"  # TEST key and the certificate bundle served as x5u
BUFF = 4 * 1024 * 1024
CLK_TCK = os.sysconf("SC_CLK_TCK")


# ---------------------------------------------------------------------------------------------------
# Scenarios


@dataclass
class ScenarioContext:
    """What a scenario hook may touch: the system's scratch directory, the edge's dialplan copy, and
    a serial of calls placed so far (so every call of a run can get a fresh caller)."""

    workdir: Path
    dialplans: Path
    ports: dict[str, int]
    serial: int = 0
    state: dict[str, object] = field(default_factory=dict)  # a scenario's own objects (e.g. the STIR signer)
    values: dict[str, str] = field(default_factory=dict)  # extra template values for the config and dialplans
    config_extra: str = ""  # TOML tables appended to the rendered daemon config
    helpers: list[subprocess.Popen] = field(default_factory=list)  # started by prepare(), stopped with the system
    cleanups: list[Callable[[], None]] = field(default_factory=list)  # run when the system stops (e.g. http server)


@dataclass(frozen=True)
class Scenario:
    """One benchmark workload. Hooks let later scenarios add load-specific state without new plumbing:
    `prepare` runs once per system start (e.g. write 10,000 block rules into the dialplan copy, or an
    Identity injection file), `uac_args` adds sipp UAC arguments per step (e.g. `-inf identities.csv`)."""

    name: str
    description: str
    edge_config: Path
    dialplans: Path
    kamailio_config: Path
    uac: Path
    uas: Path
    service: str  # sipp -s; scenarios fed by an injection file may ignore it
    prepare: Callable[[ScenarioContext], None] = lambda ctx: None
    uac_args: Callable[[ScenarioContext, Path, float, int], list[str]] = lambda ctx, stepdir, rate, calls: []
    nodes: int = 1  # edge daemons sharing the load (one sipp UAC each, one shared PBX)
    label: str = ""  # system label prefix; "" keeps the clean scenario's labels ("edge log_calls=on")
    compare: bool = True  # Kamailio runs this scenario too (with --compare kamailio)


# Real area codes (all NXX 200-999 validate in phonenumbers): callers are spread over them.
_NPAS = (212, 213, 214, 305, 310, 312, 404, 415, 469, 503, 512, 617, 646, 702, 713, 718, 773, 801, 917, 972)


def caller_number(n: int) -> str:
    """The n-th distinct valid US caller (16 million before repeating)."""
    n %= len(_NPAS) * 800 * 10_000
    line, rest = n % 10_000, n // 10_000
    return f"+1{_NPAS[rest // 800]}{200 + rest % 800}{line:04d}"


def fresh_callers(ctx: ScenarioContext, stepdir: Path, rate: float, calls: int) -> list[str]:
    """A sipp injection file for one step: a caller never seen before in this run for every call (a
    repeating caller is what the Spam Detective exists to catch), called numbers spread over the DID block."""
    path = stepdir / "calls.csv"
    lines = ["SEQUENTIAL"]
    for i in range(ctx.serial, ctx.serial + calls):
        lines.append(f"{caller_number(i)};+1202555{(i * 7919) % 10_000:04d};")
    path.write_text("\n".join(lines) + "\n")
    ctx.serial += calls
    return ["-inf", str(path)]


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    """Static files without an access log line per request (the harness output is the benchmark's)."""

    def log_message(self, format: str, *args: object) -> None:
        return


def _start_cert_server(ctx: ScenarioContext) -> str:
    """A throw-away HTTP server on 127.0.0.1 publishing the TEST STI certificate bundle; returns its x5u URL."""
    handler = functools.partial(_QuietHandler, directory=str(STI_SIGNING))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, name="x5u-server", daemon=True)
    thread.start()

    def _stop() -> None:
        server.shutdown()
        server.server_close()

    ctx.cleanups.append(_stop)
    return f"http://127.0.0.1:{server.server_address[1]}/cert-bundle.pem"


def prepare_stir(ctx: ScenarioContext) -> None:
    """Publish the TEST certificate and make the edge trust the TEST STI-CA and fetch from loopback over http."""
    from edge.stir.signer import Signer

    x5u = _start_cert_server(ctx)
    ctx.state["signer"] = Signer((STI_SIGNING / "key.pem").read_bytes(), x5u)
    ctx.config_extra += (
        "\n# STIR scenario: trust the TEST STI-CA; its certificate is served over plain http from loopback\n"
        "[stir]\nenabled = true\n"
        f'trust_dir = "{STI_CA}"\n'
        'allow_insecure_hosts = ["127.0.0.1"]\n'
        'allow_private_networks = ["127.0.0.1/32"]\n'
    )


def signed_calls(ctx: ScenarioContext, stepdir: Path, rate: float, calls: int) -> list[str]:
    """Injection file with a fresh caller and a fresh SHAKEN PASSporT per call, signed just before the step.

    Each call's `iat` is the time it is due to be sent (step start + i / rate, never in the future), so the
    60-second freshness window holds whatever the step's length. The header parameters hold `;`, sipp's field
    separator, so the file carries the token and the x5u separately and the scenario reassembles them."""
    signer = ctx.state["signer"]
    path = stepdir / "calls.csv"
    lines = ["SEQUENTIAL"]
    start = time.time()
    for k, i in enumerate(range(ctx.serial, ctx.serial + calls)):
        caller, called = caller_number(i), f"+1202555{(i * 7919) % 10_000:04d}"
        token = signer.token(caller, [called], "A", "bench-origid", int(start + k / rate))
        lines.append(f"{caller};{called};{token};{signer.x5u};")
    path.write_text("\n".join(lines) + "\n")
    ctx.serial += calls
    return ["-inf", str(path)]


RULES = 10_000
# Area codes no benchmark caller uses (callers come from _NPAS), so no generated rule ever matches one.
_BLOCKED_NPAS = (201, 203, 205, 206, 207, 208, 209, 216, 217, 218, 219, 224, 225, 228, 229, 231, 234, 239, 240, 248)


def block_rules_toml(n: int) -> str:
    """`n` global block rules, a production-like mix: 60 % exact numbers, 20 % NPA-NXX prefixes, 10 % exact CNAMs,
    10 % wildcard CNAMs, plus the anonymous / invalid / country matchers (evaluated on every call). None of them
    matches a benchmark caller: numbers and prefixes sit in area codes the callers never use, and the callers'
    names ("CALLER <digits>") match no pattern."""
    rng = random.Random(4)
    parts = ["# Generated by benchmarks/run.py (rules scenario): global block rules, none matching a benchmark caller.\n"]
    for i in range(n - 3):
        bucket = i % 10
        if bucket < 6:
            rule = f'number = "+1{rng.choice(_BLOCKED_NPAS)}{rng.randrange(200, 1000)}{rng.randrange(10_000):04d}"'
        elif bucket < 8:
            rule = f'prefix = "+1{rng.choice(_BLOCKED_NPAS)}{rng.randrange(200, 1000)}"'
        elif bucket == 8:
            rule = f'cnam = "SPAMMER {i}"'
        else:
            rule = f'cnam = "{rng.choice(string.ascii_uppercase)}{i}*OFFER*"'
        parts.append(f'[[block]]\nid = "bench-{i}"\n{rule}\n')
    parts.append('[[block]]\nid = "bench-anonymous"\nanonymous = true\n')
    parts.append('[[block]]\nid = "bench-invalid"\ninvalid = true\n')
    parts.append('[[block]]\nid = "bench-country"\ncountry = "KP"\n')
    return "\n".join(parts)


def prepare_rules(ctx: ScenarioContext) -> None:
    ctx.dialplans.mkdir(parents=True, exist_ok=True)
    (ctx.dialplans / "blocklist.toml").write_text(block_rules_toml(RULES))


def fresh_named_callers(ctx: ScenarioContext, stepdir: Path, rate: float, calls: int) -> list[str]:
    """As fresh_callers, plus a distinct caller name (CNAM) per call for the CNAM rules and rate to look at."""
    path = stepdir / "calls.csv"
    lines = ["SEQUENTIAL"]
    for i in range(ctx.serial, ctx.serial + calls):
        lines.append(f"{caller_number(i)};+1202555{(i * 7919) % 10_000:04d};CALLER {i};")
    path.write_text("\n".join(lines) + "\n")
    ctx.serial += calls
    return ["-inf", str(path)]


def prepare_redis(ctx: ScenarioContext) -> None:
    """A redis-server of its own on a free loopback port, no persistence; the edge(s) use it as [store]."""
    port = free_port()
    rdir = ctx.workdir / "redis"
    rdir.mkdir(parents=True, exist_ok=True)
    log = open(rdir / "redis.log", "wb")
    ctx.cleanups.append(log.close)
    proc = subprocess.Popen([REDIS_SERVER, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                             "--dir", str(rdir)], cwd=rdir, stdout=log, stderr=subprocess.STDOUT,
                            stdin=subprocess.DEVNULL, start_new_session=True)
    ctx.helpers.append(proc)
    deadline = time.monotonic() + 10
    while True:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5) as c:
                c.sendall(b"PING\r\n")
                if c.recv(64).startswith(b"+PONG"):
                    break
        except OSError:
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"redis-server did not start on {port}: {(rdir / 'redis.log').read_text(errors='replace')[-2000:]}")
        time.sleep(0.05)
    ctx.values["STORE_BACKEND"] = "redis"
    ctx.values["REDIS_PORT"] = str(port)


_CLEAN = dict(
    edge_config=BENCH / "edge-bench.toml",
    dialplans=BENCH / "dialplans" / "clean",
    kamailio_config=BENCH / "kamailio" / "kamailio.cfg",
    uac=BENCH / "sipp" / "uac_clean.xml",
    uas=BENCH / "sipp" / "uas_clean.xml",
    service="12025550100",
    uac_args=fresh_callers,
)

SCENARIOS: dict[str, Scenario] = {
    "clean": Scenario(
        name="clean",
        description="clean call: INVITE/100/180/(10 ms)/200/ACK/(10 ms)/BYE/200, caller not blocked",
        **_CLEAN,
    ),
    "stir": Scenario(
        name="stir",
        description="the clean call with a fresh valid SHAKEN Identity (attestation A) on every INVITE, "
                    "verified by the edge; TEST STI-CA, certificate fetched once over loopback http, then cached",
        **(_CLEAN | dict(uac=BENCH / "sipp" / "uac_stir.xml", uac_args=signed_calls)),
        prepare=prepare_stir, label="stir", compare=False,
    ),
    "rules": Scenario(
        name="rules",
        description=f"the clean call with a caller name, {RULES:,} global block rules loaded (numbers, prefixes, "
                    "CNAMs, wildcard CNAMs, anonymous/invalid/country) and the Spam Detective on with five rates; "
                    "nothing blocked",
        **(_CLEAN | dict(dialplans=BENCH / "dialplans" / "rules", uac=BENCH / "sipp" / "uac_named.xml",
                         uac_args=fresh_named_callers)),
        prepare=prepare_rules, label="rules", compare=False,
    ),
    "redis": Scenario(
        name="redis",
        description="the clean call with [store] backend = \"redis\" (a redis-server started by the harness)",
        **_CLEAN, prepare=prepare_redis, label="redis", compare=False,
    ),
    "redis-2node": Scenario(
        name="redis-2node",
        description="two edge daemons sharing one redis-server, one sipp carrier per node at half the rate, one PBX",
        **_CLEAN, prepare=prepare_redis, label="redis x2", compare=False, nodes=2,
    ),
}


# ---------------------------------------------------------------------------------------------------
# /proc


def _read_stat(pid: int) -> tuple[int, int] | None:
    """(ppid, utime+stime ticks) of one process, None if it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = raw[raw.rindex(")") + 2 :].split()  # the comm field may hold spaces and parentheses
    return int(fields[1]), int(fields[11]) + int(fields[12])


def process_tree(root: int) -> list[int]:
    """`root` and every descendant (Kamailio forks its workers; the edge is one process)."""
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _read_stat(int(entry))
            if st is not None:
                children.setdefault(st[0], []).append(int(entry))
    out, todo = [], [root]
    while todo:
        pid = todo.pop()
        out.append(pid)
        todo.extend(children.get(pid, []))
    return out


def cpu_ticks(pids: list[int]) -> int:
    total = 0
    for pid in pids:
        st = _read_stat(pid)
        if st is not None:
            total += st[1]
    return total


def _status_kb(pid: int, key: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(key + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def peak_rss_kb(pids: list[int]) -> int:
    """VmHWM of the largest process (summing would count Kamailio's shared memory once per worker)."""
    return max((_status_kb(p, "VmHWM") for p in pids), default=0)


def rss_kb(pids: list[int]) -> int:
    """Resident set size right now (VmRSS), summed over the processes."""
    return sum(_status_kb(p, "VmRSS") for p in pids)


def pss_kb(pids: list[int]) -> int:
    """Proportional set size of the whole tree right now: shared pages split between their users."""
    total = 0
    for pid in pids:
        try:
            for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
                if line.startswith("Pss:"):
                    total += int(line.split()[1])
                    break
        except OSError:
            continue
    return total


def host_cpu() -> tuple[int, int, int]:
    """(total, idle+iowait, steal) jiffies of the whole machine, to show how loaded it was."""
    parts = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:]]
    steal = parts[7] if len(parts) > 7 else 0
    return sum(parts[:8]), parts[3] + parts[4], steal


# ---------------------------------------------------------------------------------------------------
# processes


def free_port() -> int:
    """A UDP port free on 127.0.0.1 (also free for TCP, so either transport can be used)."""
    for _ in range(200):
        u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        u.bind(("127.0.0.1", 0))
        port = u.getsockname()[1]
        t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        try:
            t.bind(("127.0.0.1", port))
            return port
        except OSError:
            continue
        finally:
            t.close()
            u.close()
    raise RuntimeError("no free port on 127.0.0.1")


def free_tcp_run(n: int) -> int:
    """The first of `n` consecutive TCP ports free on 127.0.0.1 (worker i's metrics: admin port + i)."""
    for _ in range(200):
        first = free_port()
        held = []
        try:
            for port in range(first, first + n):
                t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                held.append(t)
                t.bind(("127.0.0.1", port))
            return first
        except OSError:
            continue
        finally:
            for t in held:
                t.close()
    raise RuntimeError(f"no {n} consecutive free ports on 127.0.0.1")


def stop_process(proc: subprocess.Popen, sig: int = signal.SIGTERM, wait: float = 10.0, group: bool = False) -> None:
    """Stop one process we started (and its process group when it forks workers); SIGKILL if it lingers."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, sig) if group else proc.send_signal(sig)
        except ProcessLookupError:
            pass
        try:
            proc.wait(wait)
        except subprocess.TimeoutExpired:
            try:
                os.killpg(proc.pid, signal.SIGKILL) if group else proc.kill()
            except ProcessLookupError:
                pass
            proc.wait(5)
    if group:
        try:
            os.killpg(proc.pid, signal.SIGKILL)  # orphaned workers, if any
        except ProcessLookupError:
            pass


def read_sipp_stats(path: Path) -> dict[str, str]:
    """Last row of a sipp -trace_stat CSV as {column: value}."""
    if not path.exists():
        return {}
    with path.open(newline="") as f:
        rows = [r for r in csv.reader(f, delimiter=";") if r]
    if len(rows) < 2:
        return {}
    return dict(zip(rows[0], rows[-1]))


def stat_int(stats: dict[str, str], key: str) -> int:
    v = stats.get(key, "0").strip()
    return int(v) if v.isdigit() else 0


def stat_epoch(stats: dict[str, str], key: str) -> float:
    """sipp writes times as 'date<TAB>time<TAB>epoch.micro'."""
    v = stats.get(key, "")
    try:
        return float(v.split("\t")[-1])
    except ValueError:
        return 0.0


def percentile(values: list[int], q: float) -> float:
    """Nearest-rank percentile; NaN for no samples."""
    if not values:
        return math.nan
    s = sorted(values)
    return float(s[max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))])


def read_rtds(stepdir: Path) -> dict[str, list[int]]:
    """Per-call response times (ms, sipp's resolution) by rtd name from the -trace_rtt file."""
    out: dict[str, list[int]] = {}
    for p in stepdir.rglob("*_rtt.csv"):
        with p.open(newline="") as f:
            for row in csv.reader(f, delimiter=";"):
                if len(row) >= 3 and row[1].strip().lstrip("-").isdigit():
                    out.setdefault(row[2].strip(), []).append(int(row[1]))
    return out


class Uas:
    """The PBX: one sipp UAS for a system's whole life, its cumulative stats written every second."""

    def __init__(self, workdir: Path, port: int, scenario: Path) -> None:
        self.dir = workdir / "uas"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.stats_path = self.dir / "stats.csv"
        self.cmd = [SIPP, "-i", "127.0.0.1", "-p", str(port), "-sf", str(scenario), "-aa", "-nostdin",
                    "-buff_size", str(BUFF), "-trace_stat", "-stf", str(self.stats_path), "-fd", "1",
                    "-trace_err", "-error_file", str(self.dir / "errors.log")]
        self._out = open(self.dir / "stdout.log", "wb")
        self.proc = subprocess.Popen(self.cmd, cwd=self.dir, stdout=self._out, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)

    def counters_after(self, t: float, timeout: float = 5.0) -> dict[str, int]:
        """Cumulative counters from the first stats row written after time `t` (all step calls ended)."""
        deadline = time.time() + timeout
        while True:
            stats = read_sipp_stats(self.stats_path)
            if stats and stat_epoch(stats, "CurrentTime") > t:
                break
            if time.time() > deadline or self.proc.poll() is not None:
                break
            time.sleep(0.1)
        return {k: stat_int(stats, k) for k in ("SuccessfulCall(C)", "FailedCall(C)", "Retransmissions(C)",
                                                  "OutOfCallMsgs(C)", "DeadCallMsgs(C)", "CurrentCall")}

    def stop(self) -> None:
        stop_process(self.proc, signal.SIGUSR1, wait=3)
        self._out.close()


# ---------------------------------------------------------------------------------------------------
# systems under test


class System(abc.ABC):
    """A proxy under test: started once, measured over many steps, always stopped."""

    label = ""
    root_pid = 0

    def __init__(self, scenario: Scenario, workdir: Path) -> None:
        self.scenario = scenario
        self.workdir = workdir
        self.port = free_port()
        self.uas_port = free_port()
        self.uac_port = free_port()
        self.admin_port = free_port()
        self.probe_port = free_port()  # the overload step's OPTIONS prober sends from here
        self.uas: Uas | None = None
        self.proc: subprocess.Popen | None = None
        self.ctx = ScenarioContext(workdir, workdir / "dialplans",
                                   {"edge": self.port, "uas": self.uas_port, "uac": self.uac_port})

    def start(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.uas = Uas(self.workdir, self.uas_port, self.scenario.uas)
        time.sleep(0.2)
        if self.uas.proc.poll() is not None:
            raise RuntimeError(f"sipp UAS exited: {(self.uas.dir / 'stdout.log').read_text(errors='replace')}")
        self.scenario.prepare(self.ctx)
        self._start()

    @abc.abstractmethod
    def _start(self) -> None:
        """Start the proxy itself and return once it serves."""

    def entries(self) -> list[tuple[int, int]]:
        """(sipp UAC port, proxy port) per node: the load is split evenly over them."""
        return [(self.uac_port, self.port)]

    def pids(self) -> list[int]:
        return process_tree(self.root_pid)

    def helper_pids(self) -> list[int]:
        """Processes a scenario started next to the proxy (redis-server): measured, but reported apart."""
        return [p.pid for p in self.ctx.helpers if p.poll() is None]

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def log_tail(self, n: int = 3000) -> str:
        return ""

    def checks(self) -> str:
        """What the proxy itself counted (e.g. STIR results), read before it stops; '' when nothing to say."""
        return ""

    def counted_503(self) -> int:
        """How many 503s the proxy says it sent so far; -1 when it cannot say."""
        return -1

    def stop(self) -> None:
        if self.proc is not None:
            stop_process(self.proc, signal.SIGTERM, wait=15, group=True)
        if self.uas is not None:
            self.uas.stop()
        self._stop_helpers()

    def _stop_helpers(self) -> None:
        for proc in self.ctx.helpers:
            stop_process(proc, signal.SIGTERM, wait=5, group=True)
        for cleanup in self.ctx.cleanups:
            cleanup()
        self.ctx.helpers.clear()
        self.ctx.cleanups.clear()


def render_template(src: Path, dst: Path, values: dict[str, str]) -> None:
    dst.write_text(string.Template(src.read_text()).substitute(values))


class _EdgeNode:
    """One daemon process of an EdgeSystem (a scenario may run several sharing a redis-server)."""

    def __init__(self, index: int, port: int, uac_port: int, admin_port: int, workdir: Path) -> None:
        self.index = index
        self.port = port
        self.uac_port = uac_port
        self.admin_port = admin_port
        self.state_dir = workdir / ("var" if index == 0 else f"var-{index + 1}")
        self.log_path = workdir / ("edge.log" if index == 0 else f"edge-{index + 1}.log")
        self.config = workdir / ("edge.toml" if index == 0 else f"edge-{index + 1}.toml")
        self.proc: subprocess.Popen | None = None
        self.log = None


class EdgeSystem(System):
    """The sip-edge daemon (`python -m edge.cli run`) with the scenario's config and dialplans; `scenario.nodes`
    daemons when the scenario shares state between nodes (each with its own port and carrier, one PBX)."""

    def __init__(self, scenario: Scenario, workdir: Path, log_calls: bool, python_args: list[str], workers: int = 1) -> None:
        super().__init__(scenario, workdir)
        self.log_calls = log_calls
        self.python_args = python_args  # e.g. ['-m', 'cProfile', '-o', 'edge.prof'] to profile the daemon
        self.workers = workers  # [daemon] workers: a supervisor and N worker processes (redis store)
        if workers > 1:
            self.admin_port = free_tcp_run(workers)
        flag = "on" if log_calls else "off"
        self.label = f"edge {scenario.label} log={flag}" if scenario.label else f"edge log_calls={flag}"
        if workers > 1:
            self.label += f" workers={workers}"
        self.log_path = workdir / "edge.log"
        self.nodes = [_EdgeNode(0, self.port, self.uac_port, self.admin_port, workdir)]
        for k in range(1, scenario.nodes):
            self.nodes.append(_EdgeNode(k, free_port(), free_port(), free_tcp_run(workers), workdir))

    def entries(self) -> list[tuple[int, int]]:
        return [(n.uac_port, n.port) for n in self.nodes]

    def _values(self, node: _EdgeNode) -> dict[str, str]:
        return {"EDGE_PORT": str(node.port), "UAC_PORT": str(node.uac_port), "UAS_PORT": str(self.uas_port),
                "ADMIN_PORT": str(node.admin_port), "PROBE_PORT": str(self.probe_port), "LOG_CALLS": "true" if self.log_calls else "false",
                "STATE_DIR": str(node.state_dir), "NODE": f"bench-{node.index + 1}", "STORE_BACKEND": "sqlite",
                "REDIS_PORT": "6379", "WORKERS": str(self.workers)} | self.ctx.values

    def _start(self) -> None:
        if self.workers > 1 and self.ctx.values.get("STORE_BACKEND") != "redis":
            prepare_redis(self.ctx)  # several workers share their state through redis (docs/DESIGN.md, "Several workers")
        self.ctx.dialplans.mkdir(exist_ok=True)
        for f in sorted(self.scenario.dialplans.glob("*.toml")):
            render_template(f, self.ctx.dialplans / f.name, self._values(self.nodes[0]))
        for node in self.nodes:
            render_template(self.scenario.edge_config, node.config, self._values(node))
            if self.ctx.config_extra:
                with node.config.open("a") as f:
                    f.write(self.ctx.config_extra)
            node.log = open(node.log_path, "wb")
            cmd = [sys.executable, *self.python_args, "-m", "edge.cli", "run", "--config", str(node.config),
                   str(self.ctx.dialplans)]
            if node.index == 0:
                self.cmd = cmd
            node.proc = subprocess.Popen(cmd, cwd=ROOT, stdout=node.log, stderr=subprocess.STDOUT,
                                         stdin=subprocess.DEVNULL, start_new_session=True)
        self.proc = self.nodes[0].proc
        self.root_pid = self.proc.pid
        deadline = time.monotonic() + 30
        started = b"workers_started" if self.workers > 1 else b"daemon_started"
        for node in self.nodes:
            while started not in node.log_path.read_bytes():
                if node.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"sip-edge did not start (rc={node.proc.poll()}):\n"
                                       f"{node.log_path.read_text(errors='replace')[-3000:]}")
                time.sleep(0.05)

    def pids(self) -> list[int]:
        return [pid for node in self.nodes if node.proc is not None for pid in process_tree(node.proc.pid)]

    def alive(self) -> bool:
        return all(node.proc is not None and node.proc.poll() is None for node in self.nodes)

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def metrics(self, node: _EdgeNode) -> dict[str, float]:
        """The node's Prometheus samples (GET /metrics with the admin token), name{labels} -> value."""
        token = (node.state_dir / "admin.token").read_text().strip()
        samples: dict[str, float] = {}
        # With [daemon] workers = N, worker i serves its own samples on the admin port + i: summed here.
        for i in range(self.workers):
            req = urllib.request.Request(f"http://127.0.0.1:{node.admin_port + i}/metrics",
                                         headers={"Authorization": f"Bearer {token}"})
            with urllib.request.urlopen(req, timeout=5) as resp:
                text = resp.read().decode()
            for line in text.splitlines():
                if line and not line.startswith("#"):
                    name, _, value = line.rpartition(" ")
                    try:
                        samples[name] = samples.get(name, 0.0) + float(value)
                    except ValueError:
                        continue
        return samples

    def checks(self) -> str:
        parts = []
        for node in self.nodes:
            if node.proc is None or node.proc.poll() is not None:
                continue
            try:
                m = self.metrics(node)
            except (OSError, ValueError) as exc:
                parts.append(f"node {node.index + 1}: metrics unavailable ({exc})")
                continue
            stir = {k[len('edge_stir_results_total{result="'):-2]: int(v) for k, v in m.items()
                    if k.startswith("edge_stir_results_total{")}
            finals = {k[len('edge_sip_final_responses_total{status="'):-2]: int(v) for k, v in m.items()
                      if k.startswith("edge_sip_final_responses_total{")}
            parts.append(f"node {node.index + 1}: invites={int(m.get('edge_sip_invites_total', 0))} "
                         f"rejected={int(m.get('edge_sip_rejected_total', 0))} "
                         f"rules={int(m.get('edge_policy_rules', 0))} final responses {finals} STIR results {stir}")
        return "; ".join(parts)

    def counted_503(self) -> int:
        """Final responses 503 from the core plus INVITEs the transport's overload control shed with 503
        before parsing them (`edge_overload_shed_invites_total`, where the daemon has overload control)."""
        total = 0
        for node in self.nodes:
            try:
                m = self.metrics(node)
            except (OSError, ValueError):
                return -1
            total += int(m.get('edge_sip_final_responses_total{status="503"}', 0))
            total += int(sum(v for k, v in m.items() if k.startswith("edge_overload_shed_invites")))
        return total

    def stop(self) -> None:
        for node in self.nodes:
            if node.proc is not None:
                stop_process(node.proc, signal.SIGTERM, wait=15, group=True)
            if node.log is not None:
                node.log.close()
        if self.uas is not None:
            self.uas.stop()
        self._stop_helpers()


class KamailioSystem(System):
    """Kamailio 5.6 in the foreground (-DD) with tlsf, 1 GB shared memory and N UDP workers."""

    def __init__(self, scenario: Scenario, workdir: Path, workers: int) -> None:
        super().__init__(scenario, workdir)
        self.workers = workers
        self.label = f"kamailio {workers}w"
        self.log_path = workdir / "kamailio.log"

    def _start(self) -> None:
        self.cmd = [KAMAILIO, "-f", str(self.scenario.kamailio_config), "-DD", "-E", "-x", "tlsf", "-m", "1024",
                    "-M", "32", "-n", str(self.workers), "-l", f"udp:127.0.0.1:{self.port}",
                    "-A", f'PBX="127.0.0.1:{self.uas_port}"', "-P", str(self.workdir / "kamailio.pid"),
                    "-Y", str(self.workdir), "-w", str(self.workdir)]
        self._log = open(self.log_path, "wb")
        self.proc = subprocess.Popen(self.cmd, cwd=self.workdir, stdout=self._log, stderr=subprocess.STDOUT,
                                     stdin=subprocess.DEVNULL, start_new_session=True)
        self.root_pid = self.proc.pid
        deadline = time.monotonic() + 20
        while not sip_options_ok(self.port):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"kamailio did not start (rc={self.proc.poll()}):\n{self.log_tail()}")
            time.sleep(0.1)

    def log_tail(self, n: int = 3000) -> str:
        return self.log_path.read_text(errors="replace")[-n:] if self.log_path.exists() else ""

    def stop(self) -> None:
        super().stop()
        if hasattr(self, "_log"):
            self._log.close()


def sip_options_ok(port: int, timeout: float = 0.5) -> bool:
    """True when an OPTIONS to 127.0.0.1:port gets any SIP response (the proxy is serving)."""
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", 0))
    s.settimeout(timeout)
    lport = s.getsockname()[1]
    msg = (f"OPTIONS sip:127.0.0.1:{port} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lport};branch=z9hG4bK-probe{time.monotonic_ns()}\r\n"
           f"From: <sip:probe@127.0.0.1:{lport}>;tag=probe\r\nTo: <sip:127.0.0.1:{port}>\r\n"
           f"Call-ID: probe-{time.monotonic_ns()}@127.0.0.1\r\nCSeq: 1 OPTIONS\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
    try:
        s.sendto(msg.encode(), ("127.0.0.1", port))
        return s.recv(65535).startswith(b"SIP/2.0 ")
    except OSError:
        return False
    finally:
        s.close()


# ---------------------------------------------------------------------------------------------------
# one step


@dataclass
class StepResult:
    system: str
    rate: float
    calls: int
    run: str  # "sweep" or "repeat N"
    achieved_cps: float = 0.0
    successful: int = 0
    failed_uac: int = 0
    failed_uas: int = 0
    retrans_uac: int = 0
    retrans_uas: int = 0
    unexpected: int = 0  # out-of-call and dead-call messages on either side
    ring_p50_ms: float = math.nan
    ring_p99_ms: float = math.nan
    answer_p50_ms: float = math.nan
    answer_p99_ms: float = math.nan
    cpu_us_per_call: float = math.nan
    cpu_pct: float = 0.0  # proxy CPU as a share of one core over the step
    sipp_uac_pct: float = 0.0  # the carrier sipp(s), same unit: near 100 % sipp, not the proxy, is the limit
    sipp_uas_pct: float = 0.0  # the PBX sipp
    peak_rss_mb: float = 0.0
    pss_mb: float = 0.0
    host_idle_pct: float = 0.0
    host_steal_pct: float = 0.0
    wall_s: float = 0.0
    sipp_rc: int = 0
    note: str = ""
    helper_cpu_us_per_call: float = math.nan  # processes a scenario runs beside the proxy (redis-server), per call
    min_achieved: float = 0.9  # share of the offered rate the proxy must keep up with

    @property
    def kept_up(self) -> bool:
        """A saturated proxy queues datagrams in its socket buffer: with short steps the calls still
        complete without retransmissions, only late. Completing well below the offered rate counts as
        a failure too (the 10 ms pauses and the last calls' tail cost a few percent at most)."""
        return self.achieved_cps >= self.min_achieved * self.rate

    @property
    def passed(self) -> bool:
        return (self.sipp_rc == 0 and self.successful == self.calls and self.failed_uac == 0
                and self.failed_uas == 0 and self.retrans_uac == 0 and self.retrans_uas == 0 and self.kept_up)


def run_step(system: System, rate: float, calls: int, stepdir: Path, run: str, min_achieved: float = 0.9,
             uac: Path | None = None, uac_extra: tuple[str, ...] = ()) -> StepResult:
    """Drive `calls` calls at `rate` CPS through `system`; measure the proxy's CPU and both sipp sides.
    `uac` replaces the scenario's carrier (the overload step's), `uac_extra` adds sipp arguments."""
    assert system.uas is not None
    stepdir.mkdir(parents=True, exist_ok=True)
    res = StepResult(system.label, rate, calls, run, min_achieved=min_achieved)
    budget = calls / rate + 30  # the step's bound: sending time plus slack for the last calls' timers
    uas0 = system.uas.counters_after(0.0, timeout=0)
    entries = system.entries()
    share = [calls // len(entries) + (1 if k < calls % len(entries) else 0) for k in range(len(entries))]
    cmds: list[tuple[Path, list[str]]] = []
    for k, ((uac_port, port), n) in enumerate(zip(entries, share)):
        d = stepdir if len(entries) == 1 else stepdir / f"node-{k + 1}"
        d.mkdir(parents=True, exist_ok=True)
        node_rate = rate * n / calls
        cmds.append((d, [SIPP, "-i", "127.0.0.1", "-p", str(uac_port), "-sf", str(uac or system.scenario.uac),
                         "-s", system.scenario.service, f"127.0.0.1:{port}", "-m", str(n), "-r", f"{node_rate:g}",
                         "-rp", "1000", "-l", str(n), "-nostdin", "-buff_size", str(BUFF),
                         "-trace_stat", "-stf", "stats.csv", "-fd", "1", "-trace_rtt", "-rtt_freq", str(min(100, n)),
                         "-trace_err", "-error_file", "errors.log", "-timeout", f"{int(budget)}s", "-timeout_error",
                         *uac_extra, *system.scenario.uac_args(system.ctx, d, node_rate, n)]))
    pids, helpers = system.pids(), system.helper_pids()
    uas_pid = [system.uas.proc.pid]
    host0, t0, cpu0, hcpu0 = host_cpu(), time.time(), cpu_ticks(pids), cpu_ticks(helpers)
    supervisor = [system.root_pid] if getattr(system, "workers", 1) > 1 else []  # its share, reported apart
    sup0 = cpu_ticks(supervisor)
    uas_ticks0, kids0 = cpu_ticks(uas_pid), resource.getrusage(resource.RUSAGE_CHILDREN)  # the UACs are reaped in the step
    procs = []
    try:
        for d, cmd in cmds:
            with open(d / "stdout.log", "wb") as log:
                procs.append(subprocess.Popen(cmd, cwd=d, stdout=log, stderr=subprocess.STDOUT,
                                              stdin=subprocess.DEVNULL, start_new_session=True))
        deadline = time.monotonic() + budget + 15
        for proc in procs:
            try:
                rc = proc.wait(max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                res.note = "sipp UAC overran its time budget"
                rc = -1
            res.sipp_rc = res.sipp_rc or rc
    finally:
        for proc in procs:
            stop_process(proc, signal.SIGUSR1, wait=3)
    cpu1, t1, host1, hcpu1 = cpu_ticks(pids), time.time(), host_cpu(), cpu_ticks(helpers)
    sup1 = cpu_ticks(supervisor)
    uas_ticks1, kids1 = cpu_ticks(uas_pid), resource.getrusage(resource.RUSAGE_CHILDREN)
    uas1 = system.uas.counters_after(t1)
    res.wall_s = t1 - t0
    elapsed = 0.0
    uacs = [read_sipp_stats(d / "stats.csv") for d, _ in cmds]
    for uac in uacs:
        res.successful += stat_int(uac, "SuccessfulCall(C)")
        res.failed_uac += stat_int(uac, "FailedCall(C)")
        res.retrans_uac += stat_int(uac, "Retransmissions(C)")
        res.unexpected += stat_int(uac, "OutOfCallMsgs(C)") + stat_int(uac, "DeadCallMsgs(C)")
        elapsed = max(elapsed, stat_epoch(uac, "CurrentTime") - stat_epoch(uac, "StartTime"))
    res.failed_uas = uas1["FailedCall(C)"] - uas0["FailedCall(C)"]
    res.retrans_uas = uas1["Retransmissions(C)"] - uas0["Retransmissions(C)"]
    res.unexpected += (uas1["OutOfCallMsgs(C)"] - uas0["OutOfCallMsgs(C)"]
                       + uas1["DeadCallMsgs(C)"] - uas0["DeadCallMsgs(C)"])
    res.achieved_cps = res.successful / elapsed if elapsed > 0 else 0.0
    rtds = read_rtds(stepdir)
    res.ring_p50_ms, res.ring_p99_ms = percentile(rtds.get("ring", []), 50), percentile(rtds.get("ring", []), 99)
    res.answer_p50_ms = percentile(rtds.get("answer", []), 50)
    res.answer_p99_ms = percentile(rtds.get("answer", []), 99)
    cpu_s = (cpu1 - cpu0) / CLK_TCK
    if res.successful:
        res.cpu_us_per_call = cpu_s * 1e6 / res.successful
        if helpers:
            res.helper_cpu_us_per_call = (hcpu1 - hcpu0) / CLK_TCK * 1e6 / res.successful
    res.cpu_pct = 100 * cpu_s / res.wall_s if res.wall_s > 0 else 0.0
    if res.wall_s > 0:
        uac_s = kids1.ru_utime + kids1.ru_stime - kids0.ru_utime - kids0.ru_stime
        res.sipp_uac_pct = 100 * uac_s / res.wall_s
        res.sipp_uas_pct = 100 * (uas_ticks1 - uas_ticks0) / CLK_TCK / res.wall_s
    res.peak_rss_mb = peak_rss_kb(pids) / 1024
    res.pss_mb = pss_kb(pids) / 1024
    total = host1[0] - host0[0]
    if total > 0:
        res.host_idle_pct = 100 * (host1[1] - host0[1]) / total
        res.host_steal_pct = 100 * (host1[2] - host0[2]) / total
    if not system.alive():
        res.note = (res.note + "; " if res.note else "") + "proxy process exited"
    if not res.passed and not res.note:
        uac = next((u for u in uacs if stat_int(u, "FailedCall(C)")), uacs[0])
        causes = [f"{k[6:-3]}={v}" for k, v in uac.items()
                  if k.startswith("Failed") and k.endswith("(C)") and k != "FailedCall(C)" and v.strip() not in ("", "0")]
        if res.unexpected:
            causes.append(f"unexpected msgs={res.unexpected}")
        if res.retrans_uac or res.retrans_uas:
            causes.append("retransmissions")
        if not res.kept_up:
            causes.append(f"behind: achieved < {res.min_achieved:.0%} of offered")
        res.note = ", ".join(causes)
    if helpers and not math.isnan(res.helper_cpu_us_per_call):
        res.note = (res.note + "; " if res.note else "") + f"+ redis-server {res.helper_cpu_us_per_call:.0f} us/call"
    if supervisor and res.successful:
        sup_us = (sup1 - sup0) / CLK_TCK * 1e6 / res.successful
        res.note = (res.note + "; " if res.note else "") + f"of which supervisor (hand-off) {sup_us:.0f} us/call"
    return res


# ---------------------------------------------------------------------------------------------------
# output


COLUMNS = [
    ("system", 22, "{}"), ("offered", 7, "{:g}"), ("achieved", 8, "{:.0f}"), ("ok", 6, "{}"),
    ("fail c/s", 9, "{}"), ("retr c/s", 9, "{}"), ("180 p50/p99", 11, "{}"), ("200 p50/p99", 11, "{}"),
    ("cpu us/call", 11, "{:.0f}"), ("cpu %", 6, "{:.0f}"), ("sipp % c/s", 10, "{}"), ("rss MB", 6, "{:.0f}"), ("idle %", 6, "{:.0f}"),
    ("steal", 5, "{:.1f}"), ("", 4, "{}"),
]


def _ms(a: float, b: float) -> str:
    return "-" if math.isnan(a) else f"{a:.0f}/{b:.0f}"


def row(r: StepResult) -> str:
    vals = [r.system, r.rate, r.achieved_cps, r.successful, f"{r.failed_uac}/{r.failed_uas}",
            f"{r.retrans_uac}/{r.retrans_uas}", _ms(r.ring_p50_ms, r.ring_p99_ms),
            _ms(r.answer_p50_ms, r.answer_p99_ms), r.cpu_us_per_call, r.cpu_pct,
            f"{r.sipp_uac_pct:.0f}/{r.sipp_uas_pct:.0f}", r.peak_rss_mb,
            r.host_idle_pct, r.host_steal_pct, "PASS" if r.passed else "FAIL"]
    cells = []
    for (_, width, fmt), v in zip(COLUMNS, vals):
        text = "-" if isinstance(v, float) and math.isnan(v) else fmt.format(v)
        cells.append(text.ljust(width) if width == 22 else text.rjust(width))
    line = "  ".join(cells)
    return line + (f"  {r.note}" if r.note else "") + "\n"


def header() -> str:
    cells = [name.ljust(w) if w == 22 else name.rjust(w) for name, w, _ in COLUMNS]
    line = "  ".join(cells)
    return line + "\n" + "-" * len(line) + "\n"


def out(text: str) -> None:
    sys.stdout.write(text)
    sys.stdout.flush()


def tool_version(cmd: list[str]) -> str:
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return "not installed"
    for line in (p.stdout + p.stderr).splitlines():
        if line.strip():
            return line.strip()
    return "?"


def median_result(runs: list[StepResult]) -> dict[str, float]:
    def med(attr: str) -> float:
        vals = [getattr(r, attr) for r in runs if not math.isnan(getattr(r, attr))]
        return statistics.median(vals) if vals else math.nan

    return {
        "rate": runs[0].rate,
        "passed": sum(r.passed for r in runs),
        "runs": len(runs),
        "achieved_cps": med("achieved_cps"),
        "cpu_us_per_call": med("cpu_us_per_call"),
        "ring_p50_ms": med("ring_p50_ms"),
        "ring_p99_ms": med("ring_p99_ms"),
        "answer_p50_ms": med("answer_p50_ms"),
        "answer_p99_ms": med("answer_p99_ms"),
        "peak_rss_mb": max(r.peak_rss_mb for r in runs),
    }


# ---------------------------------------------------------------------------------------------------
# the run


def rate_plan(args: argparse.Namespace) -> list[float]:
    if args.rates:
        return [float(x) for x in args.rates.split(",") if x.strip()]
    n = int((args.max - args.start) // args.step) + 1
    return [args.start + i * args.step for i in range(max(n, 0))]


def build_systems(args: argparse.Namespace, scenarios: list[Scenario], workdir: Path) -> list[System]:
    """Every scenario's edge variants (log_calls on/off), then Kamailio for the scenarios it can run."""
    systems: list[System] = []
    for scenario in scenarios:
        sdir = workdir if scenario.name == "clean" else workdir / scenario.name
        for flag in {"both": [True, False], "on": [True], "off": [False]}[args.log_calls]:
            for w in args.edge_workers:
                name = f"edge-log-{'on' if flag else 'off'}" + (f"-{w}w" if w > 1 else "")
                systems.append(EdgeSystem(scenario, sdir / name, flag, shlex.split(args.edge_python_args), w))
    if args.compare == "kamailio":
        for scenario in scenarios:
            if scenario.compare:
                for w in args.kamailio_workers:
                    systems.append(KamailioSystem(scenario, workdir / f"kamailio-{w}w", w))
    return systems


def sweep(system: System, rates: list[float], calls: int, workdir: Path, min_achieved: float) -> tuple[list[StepResult], float]:
    """Step the rate up until a step fails; returns every step and the best passing rate (0 if none)."""
    results: list[StepResult] = []
    best = 0.0
    for rate in rates:
        r = run_step(system, rate, calls, workdir / f"step-{rate:g}", "sweep", min_achieved)
        results.append(r)
        out(row(r))
        if not r.passed:
            break
        best = rate
        if not system.alive():
            break
    return results, best


def overload_step(system: System, capacity: float, lower_bound: bool, args: argparse.Namespace,
                  workdir: Path) -> overload.OverloadResult:
    """Offer `--overload-factor` x `capacity` for `--overload-seconds` with the 503-aware carrier while the
    OPTIONS prober runs, then keep probing `--overload-after` seconds; bounded by run_step's sipp timeout."""
    offered = capacity * args.overload_factor
    calls = max(1, round(offered * args.overload_seconds))
    res = overload.OverloadResult(system.label, capacity, lower_bound, offered, args.overload_seconds, calls,
                                  after_seconds=args.overload_after)
    stepdir = workdir / "overload"
    before_503 = system.counted_503()
    prober = overload.OptionsProber(system.port, port=system.probe_port)
    start = time.time()
    prober.start()
    try:
        step = run_step(system, offered, calls, stepdir, "overload", args.min_achieved,
                        uac=BENCH / "sipp" / "uac_overload.xml", uac_extra=("-trace_counts",))
        uac = read_sipp_stats(stepdir / "stats.csv")
        end = stat_epoch(uac, "CurrentTime") or time.time()
        time.sleep(max(0.0, min(end + args.overload_after - time.time(), args.overload_after)))
    finally:
        prober.close()
    res.options_during = overload.summarize_probes(prober.window(start, end))
    res.options_after = overload.summarize_probes(prober.window(end, end + args.overload_after))
    res.retrans_uac, res.retrans_uas, res.failed_uas, res.cpu_pct = (step.retrans_uac, step.retrans_uas,
                                                                      step.failed_uas, step.cpu_pct)
    res.sipp_uac_pct, res.sipp_uas_pct, res.host_idle_pct = step.sipp_uac_pct, step.sipp_uas_pct, step.host_idle_pct
    after_503 = system.counted_503() if system.alive() else -1
    res.edge_503 = after_503 - before_503 if before_503 >= 0 and after_503 >= 0 else -1
    failed = {k[:-3]: stat_int(uac, k) for k in uac if k.startswith("Failed") and k.endswith("(C)")}
    counts_path = overload.find_counts(stepdir)
    if counts_path is None:
        res.note = "sipp wrote no per-message counts"
    else:
        overload.fill(res, overload.parse_counts(counts_path), failed, stat_int(uac, "CurrentCall"))
    notes = [res.note] if res.note else []
    if not system.alive():
        notes.append("the proxy process exited")
    if step.sipp_rc not in (0, 1):
        notes.append(f"sipp exit code {step.sipp_rc} (its time budget ran out or it could not run)")
    res.note = "; ".join(notes)
    return res


def profile_step(system: EdgeSystem, rate: float, calls: int, workdir: Path, args: argparse.Namespace) -> tuple[str, profiling.Profile]:
    """One step at `rate` with py-spy attached to the daemon; the step's row and the profile.

    The sampler costs CPU on the same machine, so this step's figures are not comparable to the sweep's."""
    stepdir = workdir / "profile"
    stepdir.mkdir(parents=True, exist_ok=True)
    sampler = profiling.Sampler(system.root_pid, stepdir / "edge.collapsed")
    sampler.start()
    try:
        sampler.wait_attached()
    except RuntimeError:
        with contextlib.suppress(RuntimeError):
            sampler.stop()
        raise
    try:
        r = run_step(system, rate, calls, stepdir, "profile", args.min_achieved)
        r.system = "profiled (py-spy)"
    finally:
        prof = sampler.stop()
    return row(r), prof


def goal_lines(ratios: list[dict]) -> list[str]:
    """Goals 1 and 2 of the performance issue, for the clean call, as ratios from this run."""
    lines = []
    for r in ratios:
        if not r["edge"].startswith("edge log_calls="):
            continue
        cpu, cps = r["cpu_per_call_ratio_at_common_rate"], r["cps_ratio"]
        cpu_text = (f"{cpu:.2f} at {r['common_rate']} CPS -> {'met' if cpu <= 2.5 else 'missed'}"
                    if r["common_rate"] and not math.isnan(cpu) else "no rate passed by both -> not measured")
        cps_text = f"{cps:.2f} -> {'met' if cps >= 0.6 else 'missed'}" if not math.isnan(cps) else "-"
        lines.append(f"{r['edge']} vs {r['kamailio']}: goal 1, CPU per clean call at the highest rate both "
                     f"passed (target <= 2.5): {cpu_text}; goal 2, max zero-failure CPS (target >= 0.6): {cps_text}")
    return lines


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.run", description=__doc__.split("\n\n")[0])
    p.add_argument("--scenario", default="clean", type=lambda v: [x.strip() for x in v.split(",") if x.strip()],
                   help=f"comma-separated, run in one invocation: {', '.join(SCENARIOS)}; any scenario other than "
                        "clean also runs clean as its baseline (unless --no-baseline)")
    p.add_argument("--no-baseline", action="store_true", help="do not add the clean scenario to the others")
    p.add_argument("--compare", choices=["kamailio"], help="also measure Kamailio (the yardstick) in this run")
    p.add_argument("--edge-workers", default="1", type=lambda v: [int(x) for x in v.split(",") if x.strip()],
                   help="comma-separated [daemon] workers values to measure the edge with (e.g. 1,2; >1 uses redis)")
    p.add_argument("--kamailio-workers", default="1",
                   type=lambda s: [int(x) for x in s.split(",")], help="UDP workers, e.g. 1 or 1,2")
    p.add_argument("--log-calls", choices=["both", "on", "off"], default="both",
                   help="edge runs with log_calls=true (production default) and/or false")
    p.add_argument("--calls", type=int, default=3000, help="calls per step (the full method uses 20000)")
    p.add_argument("--rates", help="comma-separated CPS steps; overrides --start/--step/--max")
    p.add_argument("--start", type=float, default=250)
    p.add_argument("--step", type=float, default=250)
    p.add_argument("--max", type=float, default=6000)
    p.add_argument("--repeat", type=int, default=3, help="re-runs of each system's best passing step (medians)")
    p.add_argument("--min-achieved", type=float, default=0.9,
                   help="a step also fails when calls complete below this share of the offered rate")
    p.add_argument("--edge-python-args", default="",
                   help="inserted before '-m edge.cli' to profile the daemon, e.g. '-m cProfile -o edge.prof' (written in the repository root)")
    p.add_argument("--no-overload", action="store_true", help="skip the overload step after the sweep")
    p.add_argument("--overload-factor", type=float, default=2.0,
                   help="the overload step offers this multiple of each system's best zero-failure rate")
    p.add_argument("--overload-seconds", type=float, default=20.0, help="how long the overload step offers it")
    p.add_argument("--overload-base", choices=["own", "edge"], default="own",
                   help="the rate the factor multiplies: each system's own best rate, or the (first clean) edge's "
                        "for every system")
    p.add_argument("--overload-after", type=float, default=5.0,
                   help="seconds of OPTIONS probing after the overload step's calls ended")
    p.add_argument("--profile", action="store_true",
                   help="after the sweep, run one step of the first clean edge with py-spy attached and print "
                        "the top functions by own time")
    p.add_argument("--profile-rate", type=float, help="the profiled step's rate (default: that edge's best step)")
    p.add_argument("--profile-top", type=int, default=25, help="how many functions the profile prints")
    p.add_argument("--json", type=Path, help="write every step and the summary to this file")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, sipp traces)")
    args = p.parse_args(argv)
    if args.calls <= 0 or args.repeat < 0 or any(w < 1 for w in args.kamailio_workers) \
            or any(w < 1 for w in args.edge_workers):
        p.error("--calls must be positive, --repeat non-negative, workers >= 1")
    if not (args.overload_factor > 0 and 0 < args.overload_seconds <= 600 and 0 <= args.overload_after <= 60):
        p.error("--overload-factor must be positive, --overload-seconds in (0, 600], --overload-after in [0, 60]")
    if args.profile and (args.profile_top < 1 or (args.profile_rate is not None and args.profile_rate <= 0)):
        p.error("--profile-top must be >= 1 and --profile-rate positive")
    unknown = [x for x in args.scenario if x not in SCENARIOS]
    if unknown or not args.scenario:
        p.error(f"unknown scenario {', '.join(unknown) or '(none)'}; choose from {', '.join(SCENARIOS)}")
    if not args.no_baseline and "clean" not in args.scenario:
        args.scenario.insert(0, "clean")
    args.scenario = list(dict.fromkeys(args.scenario))
    return args


def preflight(args: argparse.Namespace) -> None:
    tools = [SIPP] + ([KAMAILIO] if args.compare == "kamailio" else [])
    tools += [REDIS_SERVER] if any(SCENARIOS[s].prepare is prepare_redis for s in args.scenario) \
        or max(args.edge_workers) > 1 else []
    missing = [t for t in tools if shutil.which(t) is None]
    if args.profile and profiling.py_spy_path() is None:
        missing.append("py-spy (pip install -e '.[bench]')")
    if missing:
        raise SystemExit(f"missing tools: {', '.join(missing)} (make deps-bench installs them)")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    preflight(args)
    scenarios = [SCENARIOS[name] for name in args.scenario]
    rates = rate_plan(args)
    command = f"cd {shlex.quote(str(ROOT))} && {shlex.quote(sys.executable)} -m benchmarks.run {shlex.join(argv)}".rstrip()
    machine = {
        "cpus": os.cpu_count(),
        "kernel": platform.release(),
        "python": platform.python_version(),
        "sipp": tool_version([SIPP, "-v"]),
        "kamailio": tool_version([KAMAILIO, "-v"]) if args.compare == "kamailio" else "",
        "loadavg": Path("/proc/loadavg").read_text().split()[:3],
        "git": tool_version(["git", "-C", str(ROOT), "describe", "--always", "--dirty"]),
    }
    out(f"# sip-edge call-rate benchmark\ncommand: {command}\n")
    for scenario in scenarios:
        out(f"scenario: {scenario.name} - {scenario.description}\n")
    out(f"steps: {', '.join(f'{r:g}' for r in rates)} CPS, {args.calls} calls each; repeats of the best step: "
        f"{args.repeat}\nmachine: {machine['cpus']} CPUs, Linux {machine['kernel']}, Python {machine['python']}, "
        f"{machine['sipp']}{', ' + machine['kamailio'] if machine['kamailio'] else ''}, "
        f"load {' '.join(machine['loadavg'])}\ncode: git {machine['git']}\n")
    out(f"pass: every call completed, no failed call or retransmission on either sipp side, achieved >= "
        f"{args.min_achieved:.0%} of offered\n")
    out("columns: fail/retr c/s = UAC (carrier) / UAS (PBX) side; p50/p99 in ms from sipp rtd (1 ms resolution); "
        "cpu = utime+stime of all proxy processes; sipp % = the carrier's and the PBX's sipp CPU as a share of one "
        "core (near 100: sipp is the limit); rss = peak VmHWM of the largest proxy process\n\n")

    workdir = Path(tempfile.mkdtemp(prefix="sip-edge-bench-"))
    systems = build_systems(args, scenarios, workdir)
    checks: dict[str, str] = {}
    sweeps: dict[str, list[StepResult]] = {}
    best: dict[str, float] = {}
    repeats: dict[str, list[StepResult]] = {}
    overloads: list[overload.OverloadResult] = []
    profile: tuple[str, str, profiling.Profile] | None = None  # label, step row, samples
    interrupted = False

    def _terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    old_term = signal.signal(signal.SIGTERM, _terminate)
    try:
        out(header())
        for system in systems:
            system.start()
            sweeps[system.label], best[system.label] = sweep(system, rates, args.calls, system.workdir,
                                                             args.min_achieved)
        for i in range(args.repeat):
            for system in systems:  # interleaved, so drift on the machine hits every system alike
                if best.get(system.label, 0) > 0 and system.alive():
                    r = run_step(system, best[system.label], args.calls,
                                 system.workdir / f"repeat-{i + 1}", f"repeat {i + 1}", args.min_achieved)
                    r.system = f"{system.label} #{i + 1}"
                    repeats.setdefault(system.label, []).append(r)
                    out(row(r))
        clean = [s for s in systems if s.scenario.name == "clean" and s.alive()]
        if args.profile:
            target = next((s for s in clean if isinstance(s, EdgeSystem)), None)
            if target is None:
                out("\nprofile: no clean edge system running\n")
            else:
                rate = args.profile_rate or best.get(target.label) or rates[0]
                try:
                    step_row, prof = profile_step(target, rate, args.calls, target.workdir, args)
                    profile = (target.label, step_row, prof)
                    out(step_row)
                except (RuntimeError, OSError) as exc:  # no profile is no reason to lose the overload step
                    out(f"\nprofile failed: {exc}\n")
        if not args.no_overload:
            edge_best = next((best.get(s.label, 0.0) for s in clean if isinstance(s, EdgeSystem)), 0.0)
            for system in clean:
                capacity = best.get(system.label, 0.0) if args.overload_base == "own" else edge_best
                if capacity <= 0 or not system.alive():
                    out(f"\noverload {system.label}: skipped (no passing step to take as its capacity)\n")
                    continue
                res = overload_step(system, capacity, capacity >= rates[-1], args, system.workdir)
                overloads.append(res)
                out(f"overload {system.label}: offered {res.offered_cps:g} CPS for {res.seconds:g} s, goodput "
                    f"{res.goodput_cps:.0f} calls/s, 503 {res.shed_503}, failed established {res.failed_established}\n")
    except KeyboardInterrupt:
        interrupted = True
        out("\ninterrupted: stopping every process this run started\n")
    finally:
        for system in systems:
            try:
                checks[system.label] = system.checks() if system.alive() else ""
            except Exception as exc:  # a check must never keep a process running
                checks[system.label] = f"check failed: {exc}"
            try:
                system.stop()
            except Exception as exc:  # keep stopping the others whatever one of them did
                out(f"stopping {system.label}: {exc}\n")
        signal.signal(signal.SIGTERM, old_term)

    summary = summarize(sweeps, best, repeats)
    summary["deltas"] = deltas_vs_clean(summary["systems"], {s.label: s.scenario.name for s in systems})
    summary["checks"] = {k: v for k, v in checks.items() if v}
    out(render_summary(summary))
    out(overload.render(overloads, args.overload_factor, args.overload_base))
    if profile is not None:
        out(profiling.render(profile[2], args.profile_top,
                             f"profile of {profile[0]} over one step (py-spy, busy threads; top {args.profile_top} "
                             "functions by own time)"))
    if args.json:
        doc = {"command": command, "machine": machine, "scenario": ",".join(args.scenario), "calls_per_step": args.calls,
               "steps": [asdict(r) | {"passed": r.passed} for rs in sweeps.values() for r in rs]
               + [asdict(r) | {"passed": r.passed} for rs in repeats.values() for r in rs],
               "summary": summary, "overload": [asdict(r) for r in overloads],
               "profile": ({"system": profile[0], "samples": profile[2].samples,
                            "functions": [asdict(f) for f in profile[2].functions[:args.profile_top]]}
                           if profile else None)}
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(_nan_to_none(doc)), indent=2))
        out(f"\njson: {args.json}\n")
    if args.keep:
        out(f"scratch directory kept: {workdir}\n")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 130 if interrupted else 0


def _nan_to_none(v: object) -> object:
    if isinstance(v, float) and math.isnan(v):
        return None
    if isinstance(v, dict):
        return {k: _nan_to_none(x) for k, x in v.items()}
    if isinstance(v, list):
        return [_nan_to_none(x) for x in v]
    return v


def summarize(sweeps: dict[str, list[StepResult]], best: dict[str, float],
              repeats: dict[str, list[StepResult]]) -> dict:
    """Per system: best zero-failure rate with its medians; per edge variant: ratios to each Kamailio."""
    systems: dict[str, dict] = {}
    for label, steps in sweeps.items():
        b = best.get(label, 0.0)
        at_best = [r for r in steps if r.rate == b and r.passed]
        runs = repeats.get(label) or at_best
        entry: dict = {"max_zero_failure_cps": b}
        if runs:
            entry |= median_result(runs)
        entry["cpu_us_by_rate"] = {f"{r.rate:g}": r.cpu_us_per_call for r in steps if r.passed}
        systems[label] = entry
    ratios = []
    edges = [s for s in systems if s.startswith("edge")]
    kams = [s for s in systems if s.startswith("kamailio")]
    for e in edges:
        for k in kams:
            se, sk = systems[e], systems[k]
            common = sorted(set(se["cpu_us_by_rate"]) & set(sk["cpu_us_by_rate"]), key=float)
            rate = common[-1] if common else ""
            ratios.append({
                "edge": e, "kamailio": k,
                "cps_ratio": se["max_zero_failure_cps"] / sk["max_zero_failure_cps"] if sk["max_zero_failure_cps"] else math.nan,
                "cpu_per_call_ratio": (se.get("cpu_us_per_call", math.nan) / sk["cpu_us_per_call"]
                                       if sk.get("cpu_us_per_call") else math.nan),
                "common_rate": rate,
                "cpu_per_call_ratio_at_common_rate": (se["cpu_us_by_rate"][rate] / sk["cpu_us_by_rate"][rate]
                                                      if rate else math.nan),
            })
    return {"systems": systems, "ratios": ratios}


def deltas_vs_clean(systems: dict[str, dict], scenario_of: dict[str, str]) -> list[dict]:
    """Each non-clean edge variant against the clean edge with the same log_calls, from this run: the
    difference of CPU per call at the highest rate both passed in the sweep, and at each one's best step."""
    out = []
    for label, entry in systems.items():
        name = scenario_of.get(label, "")
        if not label.startswith("edge") or name in ("", "clean"):
            continue
        base_label = "edge log_calls=" + label.rsplit("log=", 1)[-1]
        base = systems.get(base_label)
        if base is None:
            continue
        common = sorted(set(entry["cpu_us_by_rate"]) & set(base["cpu_us_by_rate"]), key=float)
        rate = common[-1] if common else ""
        out.append({
            "system": label, "baseline": base_label, "scenario": name,
            "max_cps": entry["max_zero_failure_cps"], "baseline_max_cps": base["max_zero_failure_cps"],
            "common_rate": rate,
            "cpu_us_at_common_rate": entry["cpu_us_by_rate"][rate] if rate else math.nan,
            "baseline_cpu_us_at_common_rate": base["cpu_us_by_rate"][rate] if rate else math.nan,
            "cpu_us_delta_at_common_rate": (entry["cpu_us_by_rate"][rate] - base["cpu_us_by_rate"][rate]) if rate else math.nan,
            "cpu_us_delta_at_best_steps": entry.get("cpu_us_per_call", math.nan) - base.get("cpu_us_per_call", math.nan),
        })
    return out


def render_summary(summary: dict) -> str:
    lines = ["", "summary (medians over the repeats of each system's best zero-failure step)", ""]
    lines.append(f"{'system':<22}  {'max CPS @0 fail':>15}  {'repeats ok':>10}  {'achieved':>8}  "
                 f"{'cpu us/call':>11}  {'180 p50/p99':>11}  {'200 p50/p99':>11}  {'peak rss MB':>11}")
    for label, s in summary["systems"].items():
        if "runs" not in s:
            lines.append(f"{label:<22}  {'none':>15}")
            continue
        shaky = " (!)" if s["passed"] * 2 < s["runs"] else ""
        lines.append(f"{label:<22}  {format(s['max_zero_failure_cps'], 'g') + shaky:>15}  {str(s['passed']) + '/' + str(s['runs']):>10}  "
                     f"{s['achieved_cps']:>8.0f}  {s['cpu_us_per_call']:>11.0f}  "
                     f"{_ms(s['ring_p50_ms'], s['ring_p99_ms']):>11}  {_ms(s['answer_p50_ms'], s['answer_p99_ms']):>11}  "
                     f"{s['peak_rss_mb']:>11.0f}")
    if any(s.get("passed", 1) * 2 < s.get("runs", 1) for s in summary["systems"].values()):
        lines.append("(!) the best sweep step failed in most repeats: that rate is not sustained reliably")
    if summary["ratios"]:
        lines += ["", "ratios from this run (edge / kamailio; CPS > 1 and CPU < 1 favour the edge)", ""]
        for r in summary["ratios"]:
            common = (f", CPU per call at {r['common_rate']} CPS (both passed) {r['cpu_per_call_ratio_at_common_rate']:.2f}"
                      if r["common_rate"] else "")
            lines.append(f"{r['edge']} vs {r['kamailio']}: max CPS {_ratio(r['cps_ratio'])}, "
                         f"CPU per call at each best step {_ratio(r['cpu_per_call_ratio'])}{common}")
        goals = goal_lines(summary["ratios"])
        if goals:
            lines += ["", "goals 1-2 of the performance issue (edge / kamailio, clean call, this run)", ""] + goals
    if summary.get("deltas"):
        lines += ["", "added CPU per call against the clean call of this run (same log_calls; sweep steps at the "
                  "highest rate both passed, and the medians at each one's best step)", ""]
        for d in summary["deltas"]:
            at = (f"at {d['common_rate']} CPS {d['cpu_us_at_common_rate']:.0f} vs {d['baseline_cpu_us_at_common_rate']:.0f} "
                  f"us/call = {d['cpu_us_delta_at_common_rate']:+.0f} us" if d["common_rate"] else "no common passed rate")
            best = "-" if math.isnan(d["cpu_us_delta_at_best_steps"]) else f"{d['cpu_us_delta_at_best_steps']:+.0f} us"
            lines.append(f"{d['system']} vs {d['baseline']}: max CPS {d['max_cps']:g} vs {d['baseline_max_cps']:g}; "
                         f"{at}; at the best steps {best}")
    if summary.get("checks"):
        lines += ["", "what each edge counted (GET /metrics at the end of the run)", ""]
        lines += [f"{label}: {text}" for label, text in summary["checks"].items()]
    return "\n".join(lines) + "\n"


def _ratio(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.2f}"


if __name__ == "__main__":
    sys.exit(main())
