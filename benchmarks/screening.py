"""Concurrent screened calls: how many audio-captcha sessions one sip-edge process sustains (issue 5).

Each step N starts a fresh daemon, PBX (sipp UAS) and RTP sink, then one sipp carrier places 2N calls at
N / (call length) CPS with at most N in progress (`sipp -l N`), so the concurrency ramps to N, holds for one
call length and drains. Every call is answered by the edge, hears the captcha (intro ~3.9 s, four digits
~2 s), keys the code as RFC 4733 events from the pcaps shipped in /usr/share/sip-tester, is bridged to the
PBX with `X-Edge-Screening: captcha=passed` (checked by the PBX scenario), stays 1 s and hangs up.

Measured per step:
- DTMF misses: calls that did not pass (the carrier's failed calls; a failed captcha is hung up by the
  edge) and calls that reached the PBX without `captcha=passed` (the PBX's failed calls);
- outbound RTP pacing at a receiver: one call in `--sample` offers the harness's RTP sink as its media
  address; the sink stamps every packet in the kernel (SO_TIMESTAMPNS, so its own scheduling does not
  matter) and reports |D| (RFC 3550 §6.4.1: arrival spacing minus RTP-timestamp spacing of consecutive
  packets of a stream) p50/p99/max and the RFC 3550 interarrival jitter J; the edge's own pacer
  lateness p99 (GET /metrics, edge_media_*) is read at the plateau too;
- CPU: utime+stime of the daemon over the plateau (concurrency >= 90 % of its peak) per session, and
  per call over the whole step; the sipp carrier's CPU, to see whether sipp is the limit.

A step passes with zero failed calls on both sides, every call passed at the PBX, a peak concurrency of
at least 95 % of N and |D| p99 under 5 ms. Not a test: read by a person, not asserted.

    python -m benchmarks.screening [--sessions 100,200,300,400,500,600] [--sample 5] [--json FILE] [--keep]
"""

from __future__ import annotations

import argparse
import json
import math
import random
import shlex
import shutil
import signal
import socket
import string
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from benchmarks.run import (BENCH, BUFF, CLK_TCK, ROOT, SIPP, EdgeSystem, Scenario, ScenarioContext, caller_number,
                            cpu_ticks, free_port, out, percentile, read_sipp_stats, stat_int, stop_process,
                            tool_version)

PCAP = "/usr/share/sip-tester/dtmf_2833_{}.pcap"
WAIT_MS = 7000  # intro ~3.9 s + four spoken digits ~2 s, as tests/e2e/test_media_e2e.py
GAP_MS = 400  # between two digits
HOLD_MS = 1000  # bridged to the PBX before the caller hangs up
CALL_S = (WAIT_MS + 4 * GAP_MS + HOLD_MS) / 1000 + 0.2  # call length as the carrier sees it
SERVICE = "12025550100"
JITTER_LIMIT_MS = 5.0
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux; Python's socket module does not export it


def distinct_code_seed(length: int = 4) -> tuple[int, str]:
    """A seed whose captcha code repeats no digit: each shipped pcap carries one fixed RTP timestamp, so a
    repeated digit would be deduplicated as one event (tests/e2e/test_media_e2e.py does the same)."""
    from edge.media.captcha import new_code

    for seed in range(1, 1000):
        code = new_code(random.Random(seed), length)
        if len(set(code)) == length:
            return seed, code
    raise RuntimeError("no seed gives a code without repeated digits")


# ---------------------------------------------------------------------------------------------------
# RTP sink (a subprocess: its CPU is its own, its timestamps are the kernel's)


def sink_main(port: int, out_path: Path) -> int:
    """Receive RTP on 127.0.0.1:port until SIGTERM; write per-packet |D| statistics as JSON."""
    stop = False

    def _stop(signum: int, frame: object) -> None:
        nonlocal stop
        stop = True

    signal.signal(signal.SIGTERM, _stop)
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, BUFF)
    s.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
    s.bind(("127.0.0.1", port))
    s.settimeout(0.2)
    streams: dict[tuple[int, int], list[tuple[int, int, int]]] = {}
    anc = socket.CMSG_SPACE(16)
    while not stop:
        try:
            data, cmsgs, _flags, addr = s.recvmsg(2048, anc)
        except socket.timeout:
            continue
        except InterruptedError:
            continue
        if len(data) < 12 or data[0] >> 6 != 2:
            continue
        arrival = 0
        for level, kind, blob in cmsgs:
            if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS:
                sec, nsec = struct.unpack("qq", blob[:16])
                arrival = sec * 1_000_000_000 + nsec
        if not arrival:
            arrival = time.time_ns()
        seq, ts, ssrc = struct.unpack("!HII", data[2:12])
        streams.setdefault((addr[1], ssrc), []).append((arrival, seq, ts))
    out_path.write_text(json.dumps(jitter_stats(streams)))
    return 0


def jitter_stats(streams: dict[tuple[int, int], list[tuple[int, int, int]]]) -> dict[str, float]:
    """|D(i-1, i)| over consecutive packets of every stream (RFC 3550 §6.4.1) and the running J per stream."""
    d_ms: list[float] = []
    j_final: list[float] = []
    packets = lost = 0
    for pkts in streams.values():
        pkts.sort()
        packets += len(pkts)
        j = 0.0
        for (a0, s0, t0), (a1, s1, t1) in zip(pkts, pkts[1:]):
            step = (s1 - s0) & 0xFFFF
            if step != 1:
                lost += max(0, step - 1) if step < 1000 else 0
                continue
            d = (a1 - a0) / 1e6 - ((t1 - t0) & 0xFFFFFFFF) / 8.0
            d_ms.append(abs(d))
            j += (abs(d) - j) / 16
        j_final.append(j)
    return {
        "streams": len(streams), "packets": packets, "seq_gaps": lost,
        "d_p50_ms": _pct(d_ms, 50), "d_p99_ms": _pct(d_ms, 99), "d_p999_ms": _pct(d_ms, 99.9),
        "d_max_ms": max(d_ms) if d_ms else math.nan,
        "j_max_ms": max(j_final) if j_final else math.nan, "j_median_ms": _pct(j_final, 50),
    }


def _pct(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    s = sorted(values)
    return s[max(0, min(len(s) - 1, math.ceil(q / 100 * len(s)) - 1))]


# ---------------------------------------------------------------------------------------------------
# the daemon and one step


#: `[media] pacer_slots` of the daemon under test (`--pacer-slots`; 0 leaves the production default).
PACER_SLOTS = [0]


def prepare_screening(ctx: ScenarioContext) -> None:
    seed, _code = distinct_code_seed()
    ctx.values["CAPTCHA_SEED"] = str(seed)
    ctx.config_extra += (
        "\n# screening benchmark: media engine settings (production defaults otherwise)\n[media]\n"
        f'prompts_dir = "{ROOT / "config" / "prompts"}"\n'
        f'voicemail_dir = "{ctx.workdir / "voicemail"}"\n'
        'media_timeout = "20s"\n'
        + (f"pacer_slots = {PACER_SLOTS[0]}\n" if PACER_SLOTS[0] else "")
    )


SCREENING = Scenario(
    name="screening",
    description="audio captcha, RFC 4733 DTMF from the sip-tester pcaps, bridged to the PBX",
    edge_config=BENCH / "edge-bench.toml",
    dialplans=BENCH / "dialplans" / "screening",
    kamailio_config=BENCH / "kamailio" / "kamailio.cfg",
    uac=BENCH / "sipp" / "uac_captcha.xml",
    uas=BENCH / "sipp" / "uas_screening.xml",
    service=SERVICE,
    prepare=prepare_screening,
    label="screening",
    compare=False,
)


def uac_scenario(workdir: Path, code: str) -> Path:
    keys = "\n".join(f'  <nop><action><exec play_pcap_audio="{PCAP.format(d)}"/></action></nop>\n'
                     f'  <pause milliseconds="{GAP_MS}"/>' for d in code)
    text = string.Template(SCREENING.uac.read_text()).substitute(WAIT_MS=WAIT_MS, KEYS=keys, HOLD_MS=HOLD_MS)
    path = workdir / "uac_captcha.xml"
    path.write_text(text)
    return path


def run_step(n: int, sample: int, workdir: Path, serial: int) -> dict:
    """One step at N concurrent screened calls; returns the measured figures."""
    workdir.mkdir(parents=True, exist_ok=True)
    _seed, code = distinct_code_seed()
    calls, rate = 2 * n, n / CALL_S
    system = EdgeSystem(SCREENING, workdir / "edge", log_calls=True, python_args=[])
    sink_port, media_port = free_port(), free_port()
    sink_out = workdir / "sink.json"
    res: dict = {"sessions": n, "calls": calls, "rate": round(rate, 1), "code": code}
    sink = uac = None
    try:
        system.start()
        sink = subprocess.Popen([sys.executable, "-m", "benchmarks.screening", "sink", "--port", str(sink_port),
                                 "--out", str(sink_out)], cwd=ROOT, stdin=subprocess.DEVNULL, start_new_session=True)
        inf = workdir / "calls.csv"
        inf.write_text("SEQUENTIAL\n" + "".join(
            f"{caller_number(serial + i)};{sink_port if i % sample == 0 else media_port};\n" for i in range(calls)))
        cmd = [SIPP, "-i", "127.0.0.1", "-p", str(system.uac_port), "-mi", "127.0.0.1", "-mp", str(media_port),
               "-sf", str(uac_scenario(workdir, code)), "-s", SERVICE, f"127.0.0.1:{system.port}",
               "-m", str(calls), "-r", f"{rate:.3f}", "-l", str(n), "-nostdin", "-buff_size", str(BUFF),
               "-inf", str(inf), "-trace_stat", "-stf", "stats.csv", "-fd", "1", "-trace_err",
               "-error_file", "errors.log", "-timeout", f"{int(calls / rate + 60)}s", "-timeout_error"]
        pids, uas0 = system.pids(), system.uas.counters_after(0.0, timeout=0)
        t0, cpu0 = time.time(), cpu_ticks(pids)
        with open(workdir / "uac.log", "wb") as log:
            uac = subprocess.Popen(cmd, cwd=workdir, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                                   start_new_session=True)
        samples = []  # (time, edge cpu ticks, sipp cpu ticks, media sessions, pacer p99, last-packet p99)
        deadline = time.monotonic() + calls / rate + 90
        while uac.poll() is None and time.monotonic() < deadline:
            time.sleep(0.5)
            try:
                m = system.metrics(system.nodes[0])
            except (OSError, ValueError):
                continue
            samples.append((time.time(), cpu_ticks(pids), cpu_ticks([uac.pid]), m.get("edge_media_sessions", 0.0),
                            m.get("edge_media_pacer_lateness_p99_ms", math.nan),
                            m.get("edge_media_last_packet_lateness_p99_ms", math.nan)))
        rc = uac.poll()
        res["sipp_rc"] = -1 if rc is None else rc
        t1, cpu1 = time.time(), cpu_ticks(pids)
        uas1 = system.uas.counters_after(t1)
        stats = read_sipp_stats(workdir / "stats.csv")
        res["ok"] = stat_int(stats, "SuccessfulCall(C)")
        res["failed_uac"] = stat_int(stats, "FailedCall(C)")
        res["fail_causes"] = {k[6:-3]: v for k, v in stats.items() if k.startswith("Failed") and k.endswith("(C)")
                              and k != "FailedCall(C)" and v.strip() not in ("", "0")}
        res["passed_at_pbx"] = uas1["SuccessfulCall(C)"] - uas0["SuccessfulCall(C)"]
        res["failed_uas"] = uas1["FailedCall(C)"] - uas0["FailedCall(C)"]
        res["retrans"] = stat_int(stats, "Retransmissions(C)") + uas1["Retransmissions(C)"] - uas0["Retransmissions(C)"]
        res["peak_concurrent"] = max((int(r["CurrentCall"]) for r in _stat_rows(workdir / "stats.csv")
                                      if r.get("CurrentCall", "").isdigit()), default=0)
        res["wall_s"] = t1 - t0
        res["cpu_ms_per_call"] = (cpu1 - cpu0) / CLK_TCK * 1e3 / max(1, res["ok"])
        res["cpu_pct_step"] = 100 * (cpu1 - cpu0) / CLK_TCK / res["wall_s"]
        res |= plateau(samples)
    finally:
        if uac is not None:
            stop_process(uac, signal.SIGUSR1, wait=3)
        if sink is not None:
            stop_process(sink, signal.SIGTERM, wait=30)
        system.stop()
    try:
        res |= {f"rx_{k}": v for k, v in json.loads(sink_out.read_text()).items()}
    except (OSError, ValueError):
        res["rx_streams"] = 0
    res["passed"] = (res.get("sipp_rc") == 0 and res.get("ok") == calls and res.get("failed_uac") == 0
                     and res.get("passed_at_pbx") == calls and res.get("failed_uas") == 0
                     and res.get("peak_concurrent", 0) >= 0.95 * n
                     and res.get("rx_d_p99_ms", math.inf) < JITTER_LIMIT_MS)
    return res


def _stat_rows(path: Path) -> list[dict[str, str]]:
    import csv

    if not path.exists():
        return []
    with path.open(newline="") as f:
        rows = [r for r in csv.reader(f, delimiter=";") if r]
    return [dict(zip(rows[0], r)) for r in rows[1:]]


def plateau(samples: list[tuple]) -> dict:
    """Figures over the samples where the edge's RTP sessions were >= 90 % of their peak."""
    if len(samples) < 3:
        return {}
    peak = max(s[3] for s in samples)
    idx = [i for i, s in enumerate(samples) if s[3] >= 0.9 * peak and i > 0]
    if len(idx) < 2:
        return {"peak_media_sessions": peak}
    a, b = samples[idx[0] - 1], samples[idx[-1]]
    wall = b[0] - a[0]
    mean_sessions = sum(samples[i][3] for i in idx) / len(idx)
    cpu = (b[1] - a[1]) / CLK_TCK
    return {
        "peak_media_sessions": peak,
        "plateau_s": wall,
        "plateau_mean_media_sessions": mean_sessions,
        "plateau_cpu_pct": 100 * cpu / wall,
        "plateau_cpu_pct_per_100_sessions": 100 * 100 * cpu / wall / mean_sessions if mean_sessions else math.nan,
        "plateau_sipp_uac_cpu_pct": 100 * (b[2] - a[2]) / CLK_TCK / wall,
        "pacer_p99_ms": max((samples[i][4] for i in idx), default=math.nan),
        "last_packet_p99_ms": max((samples[i][5] for i in idx), default=math.nan),
    }


# ---------------------------------------------------------------------------------------------------
# output


def row(r: dict) -> str:
    def f(key: str, fmt: str = "{:.0f}") -> str:
        v = r.get(key, math.nan)
        return "-" if isinstance(v, float) and math.isnan(v) else fmt.format(v)

    verdict = "PASS" if r["passed"] else "FAIL"
    causes = ", ".join(f"{k}={v}" for k, v in r.get("fail_causes", {}).items())
    return (f"{r['sessions']:>8}  {r['rate']:>5.1f}  {f('peak_concurrent'):>9}  {f('peak_media_sessions'):>8}  "
            f"{r.get('ok', 0):>5}/{r['calls']:<5}  {f('passed_at_pbx'):>6}  {f('failed_uac')}/{f('failed_uas')}  "
            f"{f('rx_d_p50_ms', '{:.2f}'):>6}/{f('rx_d_p99_ms', '{:.2f}'):<6}/{f('rx_d_max_ms', '{:.1f}'):<6}  "
            f"{f('rx_j_max_ms', '{:.2f}'):>6}  {f('rx_streams'):>4}/{f('rx_packets'):<7}  "
            f"{f('pacer_p99_ms', '{:.2f}'):>6}/{f('last_packet_p99_ms', '{:.2f}'):<6}  "
            f"{f('plateau_cpu_pct'):>5}  {f('plateau_cpu_pct_per_100_sessions', '{:.1f}'):>7}  "
            f"{f('cpu_ms_per_call', '{:.1f}'):>6}  {f('plateau_sipp_uac_cpu_pct'):>5}  {verdict}"
            + (f"  {causes}" if causes else "") + "\n")


HEADER = ("sessions    cps  peak conc  rtp sess     ok/calls  pbx ok  fail c/s  |D| p50/p99/max ms   J max  "
          "rx streams/pkts  pacer/last p99 ms  cpu %  %/100 s  ms/call  sipp %\n")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if argv[:1] == ["sink"]:
        p = argparse.ArgumentParser(prog="python -m benchmarks.screening sink")
        p.add_argument("--port", type=int, required=True)
        p.add_argument("--out", type=Path, required=True)
        a = p.parse_args(argv[1:])
        return sink_main(a.port, a.out)
    p = argparse.ArgumentParser(prog="python -m benchmarks.screening", description=__doc__.split("\n\n")[0])
    p.add_argument("--sessions", default="100,200,300,400,500,600",
                   type=lambda s: [int(x) for x in s.split(",") if x.strip()], help="concurrent sessions per step")
    p.add_argument("--sample", type=int, default=5, help="one call in SAMPLE sends its RTP to the jitter sink")
    p.add_argument("--all", action="store_true", help="run every step (default: stop at the first failing one)")
    p.add_argument("--pacer-slots", type=int, default=0,
                   help="[media] pacer_slots of the daemon: the sessions in this many phases, a wake-up every 20/k ms "
                        "(default: the config's default)")
    p.add_argument("--json", type=Path)
    p.add_argument("--keep", action="store_true", help="keep the scratch directory")
    args = p.parse_args(argv)
    PACER_SLOTS[0] = args.pacer_slots
    if shutil.which(SIPP) is None:
        raise SystemExit("sipp is not installed (make deps-bench)")
    _seed, code = distinct_code_seed()
    out(f"# sip-edge screening benchmark\ncommand: cd {ROOT} && {sys.executable} -m benchmarks.screening "
        f"{shlex.join(argv)}\nmachine: {tool_version([SIPP, '-v'])}, load "
        f"{' '.join(Path('/proc/loadavg').read_text().split()[:3])}, code: git "
        f"{tool_version(['git', '-C', str(ROOT), 'describe', '--always', '--dirty'])}\n"
        f"calls: captcha {code} keyed after {WAIT_MS} ms, {GAP_MS} ms apart, bridged {HOLD_MS} ms; ~{CALL_S:.1f} s per "
        f"call; 2N calls per step at N/{CALL_S:.1f} CPS, sipp -l N; 1 call in {args.sample} to the RTP sink\n"
        "columns: peak conc = sipp carrier CurrentCall max; rtp sess = edge_media_sessions max; pbx ok = calls that "
        "reached the PBX with captcha=passed; |D| = receiver arrival spacing minus RTP timestamp spacing (RFC 3550); "
        "pacer/last p99 = the edge's own tick and last-packet-of-tick lateness (/metrics, plateau max); cpu % = the "
        "daemon over the plateau (100 = one core); %/100 s = that per 100 sessions; ms/call = whole step; sipp % = "
        "the carrier sipp over the plateau\n\n" + HEADER)
    workdir = Path(tempfile.mkdtemp(prefix="sip-edge-screening-"))
    results, serial = [], 0
    old = signal.signal(signal.SIGTERM, lambda *a: (_ for _ in ()).throw(KeyboardInterrupt()))
    try:
        for n in args.sessions:
            r = run_step(n, max(1, args.sample), workdir / f"n-{n}", serial)
            serial += r["calls"]
            results.append(r)
            out(row(r))
            if not r["passed"] and not args.all:
                break
    except KeyboardInterrupt:
        out("interrupted\n")
    finally:
        signal.signal(signal.SIGTERM, old)
    best = max((r["sessions"] for r in results if r["passed"]), default=0)
    out(f"\nmax concurrent captcha sessions with zero misses and |D| p99 < {JITTER_LIMIT_MS:g} ms: {best or 'none'}\n")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"argv": argv, "results": results, "best": best}, indent=2, default=str))
    if args.keep:
        out(f"scratch directory kept: {workdir}\n")
    else:
        shutil.rmtree(workdir, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
