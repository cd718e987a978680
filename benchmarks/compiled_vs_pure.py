"""Compiled vs pure-Python hot path in one run: `benchmarks.core_micro --cpu` in fresh processes, the two
builds interleaved (compiled, pure, compiled, ...) so machine noise hits both alike. Prints each run,
the median CPU us per call of each build and their ratio.

    .venv/bin/python -m benchmarks.compiled_vs_pure [--calls 5000] [--rounds 5] [--policy]
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


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=5000)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--policy", action="store_true")
    a = ap.parse_args()
    runs: dict[bool, list[float]] = {False: [], True: []}
    for r in range(a.rounds):
        for pure in (False, True):
            build, us = one(a.calls, pure, a.policy)
            if pure != build.startswith("pure"):
                raise SystemExit(f"asked for {'pure' if pure else 'compiled'}, core_micro ran {build}")
            runs[pure].append(us)
            print(f"round {r + 1} {build:9s} {us:7.1f} us/call", flush=True)
    comp, pure_ = statistics.median(runs[False]), statistics.median(runs[True])
    spread = max(runs[False] + runs[True]) / min(runs[False] + runs[True])
    print(f"command: {' '.join(sys.argv)}")
    print(f"median CPU per clean call: compiled {comp:.1f} us, pure {pure_:.1f} us, pure/compiled {pure_ / comp:.2f}x "
          f"(calls={a.calls} rounds={a.rounds}, max/min over all runs {spread:.2f})")


if __name__ == "__main__":
    main()
