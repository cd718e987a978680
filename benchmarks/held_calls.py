"""Memory per established call: N dialogs held open through one sip-edge daemon (issue 12, goal 5).

One daemon on the benchmark config (production defaults), one sipp PBX and one sipp carrier on loopback.
After a short warm-up of ordinary calls (so imports, caches and pools are in place) and once its
transactions have ended, the daemon's resident set size is read from /proc. The carrier then places N calls at a bounded rate, each holding its dialog
between ACK and BYE for (N / rate + margin) seconds, so every call is established before the first one
hangs up. Once the edge reports N active dialogs (`edge_active_calls` on /metrics), RSS is read again
(the highest of three readings a second apart while all N are up); the difference over N is the memory
one established call costs, including whatever the daemon keeps per call besides the dialog (transactions
still in their wait states, the activity record queued for the store, log buffers).

Then every call hangs up (BYE, at the same rate), and the run checks that all N ended well on the
carrier's side and that the edge's active dialogs went back to 0. RSS after the release is printed too:
CPython seldom returns freed memory to the system, so it shows what the daemon keeps for reuse.

Bounded: sipp's -timeout is 2 N / rate + margin + 60 s, and every wait below has a deadline.

    python -m benchmarks.held_calls [--calls 10000] [--rate 500] [--margin 15] [--json FILE] [--keep]
"""

from __future__ import annotations

import argparse
import math
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import msgspec

from benchmarks.run import (BENCH, BUFF, ROOT, SCENARIOS, SIPP, EdgeSystem, fresh_callers, out, read_sipp_stats,
                            row, rss_kb, run_step, stat_int, stop_process, tool_version)

GOAL_KIB = 16  # issue 12, goal 5: at most 16 KiB per established call


@dataclass
class HeldResult:
    calls: int
    rate: float
    hold_s: float
    rss_before_kb: int = 0
    rss_plateau_kb: int = 0
    rss_after_kb: int = 0
    plateau_active: int = 0  # the edge's active dialogs when RSS was read at the plateau
    plateau_server_txns: int = 0
    plateau_client_txns: int = 0
    peak_active: int = 0
    active_after: int = -1
    successful: int = 0
    failed: int = 0
    retransmissions: int = 0
    failed_uas: int = 0
    note: str = ""

    @property
    def per_call_kib(self) -> float:
        if not self.plateau_active:
            return math.nan
        return (self.rss_plateau_kb - self.rss_before_kb) / self.plateau_active

    @property
    def all_ended(self) -> bool:
        return self.successful == self.calls and self.failed == 0 and self.active_after == 0


def edge_gauges(system: EdgeSystem) -> dict[str, int]:
    """The edge's live dialog and transaction counts (GET /metrics)."""
    m = system.metrics(system.nodes[0])
    return {"active": int(m.get("edge_active_calls", 0)), "server_txns": int(m.get("edge_server_transactions", 0)),
            "client_txns": int(m.get("edge_client_transactions", 0))}


def wait_active(system: EdgeSystem, target: int, timeout: float) -> int:
    """Poll until the edge has `target` active dialogs or `timeout` passes; returns the last count."""
    deadline = time.monotonic() + timeout
    while True:
        active = edge_gauges(system)["active"]
        if active == target or time.monotonic() > deadline:
            return active
        time.sleep(0.5)


def wait_settled(system: EdgeSystem, timeout: float) -> dict[str, int]:
    """Poll until no dialog and no server transaction is left (the warm-up's transactions leave their
    wait states after 64*T1) and at most the health checks' client transactions are; returns the last gauges."""
    deadline = time.monotonic() + timeout
    while True:
        g = edge_gauges(system)
        if (g["active"] == 0 and g["server_txns"] == 0 and g["client_txns"] <= 2) or time.monotonic() > deadline:
            return g
        time.sleep(1.0)


def hold(system: EdgeSystem, args: argparse.Namespace, workdir: Path) -> HeldResult:
    ramp = args.calls / args.rate
    res = HeldResult(args.calls, args.rate, ramp + args.margin)
    stepdir = workdir / "held"
    stepdir.mkdir(parents=True, exist_ok=True)
    pid = system.root_pid
    assert system.uas is not None
    uas_failed0 = system.uas.counters_after(0.0, timeout=0)["FailedCall(C)"]
    res.rss_before_kb = rss_kb([pid])
    budget = 2 * ramp + args.margin + 60
    cmd = [SIPP, "-i", "127.0.0.1", "-p", str(system.uac_port), "-sf", str(BENCH / "sipp" / "uac_held.xml"),
           "-s", system.scenario.service, f"127.0.0.1:{system.port}", "-m", str(args.calls), "-r", f"{args.rate:g}",
           "-rp", "1000", "-l", str(args.calls), "-d", str(int(res.hold_s * 1000)), "-nostdin", "-buff_size", str(BUFF),
           "-trace_stat", "-stf", "stats.csv", "-fd", "1", "-trace_err", "-error_file", "errors.log",
           "-timeout", f"{int(budget)}s", "-timeout_error",
           *fresh_callers(system.ctx, stepdir, args.rate, args.calls)]
    start = time.monotonic()
    first_bye = start + res.hold_s  # the first call hangs up about then: the plateau ends
    with open(stepdir / "stdout.log", "wb") as log:
        proc = subprocess.Popen(cmd, cwd=stepdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                start_new_session=True)
    try:
        while time.monotonic() < first_bye - 1 and proc.poll() is None:
            g = edge_gauges(system)
            res.peak_active = max(res.peak_active, g["active"])
            if g["active"] >= args.calls:
                break
            time.sleep(0.5)
        readings = []
        for _ in range(3):  # the plateau: every call up, none hung up yet
            if time.monotonic() >= first_bye - 0.5:
                break
            g = edge_gauges(system)
            res.peak_active = max(res.peak_active, g["active"])
            if g["active"] < res.plateau_active:
                break  # calls started ending: the plateau is over
            readings.append(rss_kb([pid]))
            res.plateau_active, res.plateau_server_txns, res.plateau_client_txns = (
                g["active"], g["server_txns"], g["client_txns"])
            time.sleep(1.0)
        res.rss_plateau_kb = max(readings, default=0)
        if res.plateau_active < args.calls:
            res.note = (f"only {res.plateau_active} of {args.calls} dialogs were up when RSS was read "
                        "(the machine could not keep the rate; try a lower --rate or a larger --margin)")
        try:
            proc.wait(max(1.0, start + budget + 15 - time.monotonic()))
        except subprocess.TimeoutExpired:
            res.note = "; ".join(n for n in (res.note, "sipp overran its time budget") if n)
    finally:
        stop_process(proc, signal.SIGUSR1, wait=3)
    stats = read_sipp_stats(stepdir / "stats.csv")
    res.successful = stat_int(stats, "SuccessfulCall(C)")
    res.failed = stat_int(stats, "FailedCall(C)")
    res.retransmissions = stat_int(stats, "Retransmissions(C)")
    res.failed_uas = system.uas.counters_after(time.time())["FailedCall(C)"] - uas_failed0
    res.active_after = wait_active(system, 0, 15.0)
    res.rss_after_kb = rss_kb([pid])
    return res


def render(res: HeldResult) -> str:
    per_call = res.per_call_kib
    verdict = "-" if math.isnan(per_call) else ("met" if per_call <= GOAL_KIB else "missed")
    mb = 1024
    lines = [
        "",
        f"held dialogs: {res.calls} calls at {res.rate:g} CPS, each held {res.hold_s:.0f} s between ACK and BYE",
        f"  RSS before {res.rss_before_kb / mb:.1f} MB, at the plateau {res.rss_plateau_kb / mb:.1f} MB "
        f"with {res.plateau_active} active dialogs ({res.plateau_server_txns} server / {res.plateau_client_txns} "
        f"client transactions live), after the release {res.rss_after_kb / mb:.1f} MB",
        f"  memory per established call: {'-' if math.isnan(per_call) else f'{per_call:.1f}'} KiB "
        f"(goal <= {GOAL_KIB} KiB: {verdict})",
        f"  release: carrier {res.successful}/{res.calls} calls ended well, {res.failed} failed, "
        f"{res.retransmissions} retransmissions; PBX failed {res.failed_uas}; edge active dialogs after: "
        f"{res.active_after} -> {'all ended' if res.all_ended else 'NOT all ended'}",
    ]
    if res.note:
        lines.append(f"  note: {res.note}")
    return "\n".join(lines) + "\n"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m benchmarks.held_calls", description=__doc__.split("\n\n")[0])
    p.add_argument("--calls", type=int, default=10_000, help="dialogs held open at once")
    p.add_argument("--rate", type=float, default=500, help="CPS at which they are set up (and released)")
    p.add_argument("--margin", type=float, default=15,
                   help="seconds every call stays up after the last one was placed (the plateau)")
    p.add_argument("--warmup", type=int, default=300, help="ordinary calls before the first RSS reading")
    p.add_argument("--settle", type=float, default=45,
                   help="at most this many seconds for the warm-up's transactions to end before the first reading")
    p.add_argument("--log-calls", choices=["on", "off"], default="on", help="the daemon's log_calls")
    p.add_argument("--json", type=Path, help="write the result to this file")
    p.add_argument("--keep", action="store_true", help="keep the scratch directory (logs, sipp statistics)")
    args = p.parse_args(argv)
    if not (0 < args.calls <= 200_000 and 0 < args.rate <= 5000 and 5 <= args.margin <= 600 and args.warmup >= 0
            and 0 <= args.settle <= 120):
        p.error("--calls in 1..200000, --rate in (0, 5000], --margin in [5, 600] s, --warmup >= 0, --settle in [0, 120]")
    return args


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if shutil.which(SIPP) is None:
        raise SystemExit("missing tool: sipp (make deps-test installs it)")
    out(f"# sip-edge memory per held dialog\ncommand: cd {ROOT} && {sys.executable} -m benchmarks.held_calls "
        f"{' '.join(argv)}\ncode: git {tool_version(['git', '-C', str(ROOT), 'describe', '--always', '--dirty'])}\n")
    workdir = Path(tempfile.mkdtemp(prefix="sip-edge-held-"))
    system = EdgeSystem(SCENARIOS["clean"], workdir / "edge", args.log_calls == "on", [])
    res: HeldResult | None = None
    try:
        system.start()
        if args.warmup:
            warm = run_step(system, min(args.rate, 200.0), args.warmup, workdir / "warmup", "warm-up")
            warm.system = "warm-up"
            out(row(warm))
            g = wait_settled(system, args.settle)
            out(f"after the warm-up: {g['active']} dialogs, {g['server_txns']} server / {g['client_txns']} client "
                "transactions live\n")
        res = hold(system, args, workdir)
    except KeyboardInterrupt:
        out("\ninterrupted: stopping every process this run started\n")
        return 130
    finally:
        system.stop()
        if args.keep:
            out(f"scratch directory kept: {workdir}\n")
        else:
            shutil.rmtree(workdir, ignore_errors=True)
    out(render(res))
    if args.json:
        doc = asdict(res) | {"per_call_kib": res.per_call_kib, "all_ended": res.all_ended}
        args.json.write_bytes(msgspec.json.format(msgspec.json.encode(doc), indent=2))
    return 0 if res.all_ended and res.plateau_active == res.calls else 1


if __name__ == "__main__":
    sys.exit(main())
