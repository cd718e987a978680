"""Compiled vs pure-Python hot path in one run: `benchmarks.core_micro --cpu` (the whole sans-IO proxy core)
and a parser loop (parse, envelope, Via/Route edits, serialisation of core_micro's INVITE) in fresh
processes, the two builds interleaved (compiled, pure, compiled, ...) so machine noise hits both alike.
Prints each run, the median CPU us of each build and their ratio.

    .venv/bin/python -m benchmarks.compiled_vs_pure [--calls 5000] [--rounds 5] [--policy | --parser]
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import subprocess
import sys

_US = re.compile(r"core time in Proxy.receive: ([0-9.]+) us/call")
_BUILD = re.compile(r"build=(\S+)")


def one(calls: int, pure: bool, policy: bool) -> tuple[str, float]:
    env = dict(os.environ, SIP_EDGE_PURE="1" if pure else "0")
    cmd = [sys.executable, "-m", "benchmarks.core_micro", "--cpu", "--calls", str(calls)] + (["--policy"] if policy else [])
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True).stdout
    us, build = _US.search(out), _BUILD.search(out)
    if us is None or build is None:
        raise SystemExit(f"unexpected core_micro output:\n{out}")
    return build.group(1), float(us.group(1))


def parser_loop(messages: int) -> float:
    """CPU us per message for what the proxy does to every INVITE's bytes before routing."""
    import time

    from benchmarks.core_micro import invite
    from edge.sip.message import parse

    data = [invite(i) for i in range(1000)]
    t = time.process_time()
    for n in range(messages):
        m = parse(data[n % 1000])
        _ = (m.top_via.branch, m.call_id, m.cseq_num, m.from_tag, m.to_tag, m.max_forwards)
        fwd = m.copy()
        fwd.prepend("via", "SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bK-edge")
        fwd.pop_first_value("route")
        fwd.set("max-forwards", "69")
        fwd.set_uri("sip:12025550100@10.0.0.1:5070")
        fwd.to_bytes()
    return (time.process_time() - t) / messages * 1e6


def one_parser(messages: int, pure: bool) -> tuple[str, float]:
    env = dict(os.environ, SIP_EDGE_PURE="1" if pure else "0")
    code = ("from edge.build import build_info; from benchmarks.compiled_vs_pure import parser_loop; "
            f"print(build_info().label, parser_loop({messages}))")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True).stdout
    label, _, us = out.strip().rpartition(" ")
    return label, float(us)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--policy", action="store_true")
    ap.add_argument("--parser", action="store_true", help="time the parser loop instead of the proxy core")
    a = ap.parse_args()
    runs: dict[bool, list[float]] = {False: [], True: []}
    unit = "message" if a.parser else "call"
    for r in range(a.rounds):
        for pure in (False, True):
            build, us = one_parser(a.calls * 6, pure) if a.parser else one(a.calls, pure, a.policy)
            if pure != build.startswith("pure"):
                raise SystemExit(f"asked for {'pure' if pure else 'compiled'}, core_micro ran {build}")
            runs[pure].append(us)
            print(f"round {r + 1} {build:9s} {us:7.1f} us/{unit}", flush=True)
    comp, pure_ = statistics.median(runs[False]), statistics.median(runs[True])
    spread = max(runs[False] + runs[True]) / min(runs[False] + runs[True])
    print(f"command: {' '.join(sys.argv)}")
    print(f"median CPU per {'message (parser loop)' if a.parser else 'clean call (proxy core)'}: compiled {comp:.1f} us, pure {pure_:.1f} us, pure/compiled {pure_ / comp:.2f}x "
          f"(calls={a.calls} rounds={a.rounds}, max/min over all runs {spread:.2f})")


if __name__ == "__main__":
    main()
