"""Media engine capacity: N concurrent sessions playing prompts on the one shared pacer.

Each session answers an offer pointing at a UDP sink in a separate process; the sink
timestamps every packet per SSRC. Printed per N: sender-side pacer lateness p50/p99
(wake-up vs absolute deadline), receiver-side interarrival deviation |Δt - 20 ms| p50/p99,
packets lost, and CPU milliseconds per session-second of the engine process.
All sessions share one sink socket (demultiplexed by SSRC): for the sender that is the
same work as N sinks, and it keeps the sink process light.

    .venv/bin/python benchmarks/media_sessions.py --sessions 100,250,500,750 --seconds 8

With `--relay`, N is the number of bridged calls instead: a blaster process sends one 20 ms
PCMU packet per call to each A-leg every period, the engine relays A -> B (SSRC, sequence and
timestamp rewritten) toward the sink, and the figure is the engine's CPU per relayed packet.

    .venv/bin/python benchmarks/media_sessions.py --relay --sessions 250,500 --seconds 8
"""

from __future__ import annotations

import argparse
import asyncio
import multiprocessing as mp
import resource
import socket
import struct
import sys
import time

import structlog
import uvloop

from edge.io.rtp_udp import MediaEngine
from edge.media.engine_config import MediaConfig

log = structlog.get_logger()


def sink(port_queue: mp.Queue, result_queue: mp.Queue, seconds: float) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
    sock.bind(("127.0.0.1", 0))
    port_queue.put(sock.getsockname()[1])
    sock.settimeout(0.5)
    arrivals: dict[int, list[float]] = {}
    seqs: dict[int, set[int]] = {}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            data = sock.recv(2048)
        except socket.timeout:
            continue
        now = time.monotonic()
        seq, ssrc = struct.unpack_from("!H", data, 2)[0], struct.unpack_from("!I", data, 8)[0]
        arrivals.setdefault(ssrc, []).append(now)
        seqs.setdefault(ssrc, set()).add(seq)
    deviations = []
    for times in arrivals.values():
        deviations += [abs((b - a) - 0.02) for a, b in zip(times[50:], times[51:])]  # skip warm-up
    deviations.sort()
    received = sum(len(t) for t in arrivals.values())
    result_queue.put((len(arrivals), received, deviations[len(deviations) // 2], deviations[int(len(deviations) * 0.99)]))


async def run(n: int, seconds: float, first_port: int, slots: int | None = None) -> dict[str, float]:
    ctx = mp.get_context("spawn")
    port_q, result_q = ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=sink, args=(port_q, result_q, seconds + 2.0))
    proc.start()
    sink_port = port_q.get()
    loop = asyncio.get_running_loop()
    config = MediaConfig(
        rtp_port_min=first_port, rtp_port_max=first_port + 2 * n + 20, max_sessions=n + 10, prompts_dir="config/prompts",
        **({} if slots is None else {"pacer_slots": slots}),
    )
    engine = MediaEngine(config, loop)
    await engine.load_prompts()
    offer = (
        "v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
        f"m=audio {sink_port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
    )
    playlist = ["captcha-intro", "digit-4", "digit-7", "digit-1", "digit-9"]
    sessions = []
    for _ in range(n):
        session, _ = await engine.open(offer)
        session.play(playlist * 4)
        sessions.append(session)
    await asyncio.sleep(1.0)  # warm-up, then measure
    assert engine.pacer is not None
    engine.pacer.reset_samples()
    engine.burst_lateness.clear()
    usage0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    await asyncio.sleep(seconds - 1.0)
    usage1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    stats = engine.stats()
    await engine.aclose()
    ssrcs, received, rx_p50, rx_p99 = result_q.get()
    proc.join()
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return {
        "sessions": n,
        "pacer_p50_ms": stats["pacer_lateness_p50_ms"],
        "pacer_p99_ms": stats["pacer_lateness_p99_ms"],
        "last_packet_p99_ms": stats["last_packet_lateness_p99_ms"],
        "rx_dev_p50_ms": rx_p50 * 1000,
        "rx_dev_p99_ms": rx_p99 * 1000,
        "skipped_periods": stats["pacer_skipped_total"],
        "streams_seen": ssrcs,
        "packets": received,
        "cpu_ms_per_session_s": 1000 * cpu / (t1 - t0) / n,
        "cpu_total_pct": 100 * cpu / (t1 - t0),
    }


def blaster(port_queue: mp.Queue, targets: list[int], seconds: float) -> None:
    """One PCMU stream per A-leg port on the absolute 20 ms schedule, as a carrier would send."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 8 << 20)
    sock.bind(("127.0.0.1", 0))
    port_queue.put(sock.getsockname()[1])
    port_queue.get()  # go
    header = struct.Struct("!BBHII")
    payload = b"\xff" * 160
    t0 = time.monotonic()
    for i in range(int(seconds / 0.02)):
        for k, port in enumerate(targets):
            try:
                sock.sendto(header.pack(0x80, 0, i & 0xFFFF, (160 * i) & 0xFFFFFFFF, 0x5EED0000 + k) + payload,
                            ("127.0.0.1", port))
            except BlockingIOError:
                pass
        time.sleep(max(0.0, t0 + (i + 1) * 0.02 - time.monotonic()))


async def run_relay(n: int, seconds: float, first_port: int) -> dict[str, float]:
    """N bridged calls relaying one direction; CPU of this (engine) process per relayed packet."""
    ctx = mp.get_context("spawn")
    port_q, result_q, blast_q = ctx.Queue(), ctx.Queue(), ctx.Queue()
    proc = ctx.Process(target=sink, args=(port_q, result_q, seconds + 4.0))
    proc.start()
    sink_port = port_q.get()
    config = MediaConfig(rtp_port_min=first_port, rtp_port_max=first_port + 4 * n + 20, max_sessions=2 * n + 10,
                         prompts_dir="config/prompts", send_silence=False)
    engine = MediaEngine(config, asyncio.get_running_loop())

    def offer(port: int) -> str:
        return ("v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
                f"m=audio {port} RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n")

    pairs = []
    for _ in range(n):
        a, _ = await engine.open(offer(9))  # latches to the blaster's address on its first packet
        b, _ = await engine.open(offer(sink_port))
        a.bridge(b)
        pairs.append((a, b))
    bproc = ctx.Process(target=blaster, args=(blast_q, [a.local_port for a, _ in pairs], seconds + 1.0))
    bproc.start()
    blast_q.get()
    blast_q.put("go")
    await asyncio.sleep(1.0)  # warm-up: every A-leg latched
    forwarded0 = sum(a.session.bridge.counters["a_to_b_forwarded"] for a, _ in pairs)
    usage0, t0 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    await asyncio.sleep(seconds - 1.0)
    usage1, t1 = resource.getrusage(resource.RUSAGE_SELF), time.monotonic()
    forwarded = sum(a.session.bridge.counters["a_to_b_forwarded"] for a, _ in pairs) - forwarded0
    bproc.join()
    await engine.aclose()
    ssrcs, received, rx_p50, rx_p99 = result_q.get()
    proc.join()
    cpu = (usage1.ru_utime - usage0.ru_utime) + (usage1.ru_stime - usage0.ru_stime)
    return {
        "calls": n,
        "forwarded_per_s": forwarded / (t1 - t0),
        "cpu_us_per_packet": 1e6 * cpu / max(1, forwarded),
        "cpu_total_pct": 100 * cpu / (t1 - t0),
        "rx_dev_p99_ms": rx_p99 * 1000,
        "streams_seen": ssrcs,
    }


def main_relay(args: argparse.Namespace) -> None:
    lines = ["calls  relayed_pkt/s  cpu_us/pkt  cpu%  rx_dev_p99  streams"]
    for n in (int(x) for x in args.sessions.split(",")):
        r = uvloop.run(run_relay(n, args.seconds, args.first_port))
        lines.append(f"{n:5d} {r['forwarded_per_s']:14.0f} {r['cpu_us_per_packet']:11.2f} {r['cpu_total_pct']:5.1f} "
                     f"{r['rx_dev_p99_ms']:9.2f}ms {r['streams_seen']:8d}")
        log.info("media_relay_bench_run", **r)
    sys.stdout.write("\n".join(lines) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sessions", default="100,250,500", help="comma-separated session counts")
    parser.add_argument("--seconds", type=float, default=6.0)
    parser.add_argument("--first-port", type=int, default=42000)
    parser.add_argument("--slots", type=int, help="[media] pacer_slots (default: the configured default)")
    parser.add_argument("--relay", action="store_true", help="N bridged calls relayed instead of N prompt players")
    args = parser.parse_args()
    if args.relay:
        main_relay(args)
        return
    header = "sessions wake_p50 wake_p99 last_pkt_p99 rx_dev_p50 rx_dev_p99 cpu_ms/sess/s cpu%  ok(rx p99<5ms)"
    lines = [header]
    best = 0
    for n in (int(x) for x in args.sessions.split(",")):
        r = uvloop.run(run(n, args.seconds, args.first_port, args.slots))
        # Pacing jitter per stream = deviation of each interarrival from 20 ms at the sink (it also
        # includes the sink process's own scheduling, so it is conservative). last_pkt is the
        # mostly constant offset of the tick's final packet, reported for context.
        ok = r["rx_dev_p99_ms"] < 5.0 and r["skipped_periods"] == 0
        best = n if ok else best
        lines.append(
            f"{n:8d} {r['pacer_p50_ms']:7.2f}ms {r['pacer_p99_ms']:7.2f}ms {r['last_packet_p99_ms']:10.2f}ms {r['rx_dev_p50_ms']:9.2f}ms "
            f"{r['rx_dev_p99_ms']:9.2f}ms {r['cpu_ms_per_session_s']:12.3f} {r['cpu_total_pct']:5.1f}  {ok}"
        )
        log.info("media_bench_run", **r)
    lines.append(f"largest N with per-stream jitter p99 < 5 ms: {best}")
    sys.stdout.write("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
