"""CPU per INVITE decision with shared (Redis) rate windows versus local counting only.

Run: .venv/bin/python -m benchmarks.redis_bench [--decisions N] [--cps N] [--batch 20ms]
Starts its own redis-server on a free loopback port. The policy path is PolicyEngine.decide with the
Spam Detective's five rate rules (benchmarks.policy_micro's plan); decisions are paced at `--cps` on
the event loop (a burst every 10 ms) so the RedisStore batcher (one EVALSHA per batch) runs between
them as it does in the daemon at that call rate.
Reported: this process's CPU µs per decision (decisions + batching + redis client), and the
redis-server's own CPU µs per decision from /proc. Not a test: read by a person, not asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
import uuid
from pathlib import Path

from benchmarks.policy_micro import build_rules, facts_for
from edge.numbers import parse_number
from edge.policy.facts import Action
from edge.policy.pipeline import PolicyEngine
from edge.policy.plan import NumberPolicy
from edge.policy.rates import RateKey, SharedRates
from edge.policy.schema import RateSpec, SpamSpec, ThresholdSpec, compile_spam
from edge.store.memory import MemoryStore
from edge.store.redis import RedisStore
from tests.redis_server import RedisServer


def _cpu_of(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _engine_and_plan() -> tuple[PolicyEngine, NumberPolicy]:
    engine = PolicyEngine()
    for rule in build_rules(1000, random.Random(7)):
        engine.rules.add(rule)
    spam, errors = compile_spam(SpamSpec(
        rate=[RateSpec(key=RateKey.CALLER, rate="5/60s", weight=40), RateSpec(key=RateKey.SOURCE, rate="500/1s", weight=20),
              RateSpec(key=RateKey.PAIR, rate="3/60s", weight=40), RateSpec(key=RateKey.CALLED, rate="60/60s", weight=20),
              RateSpec(key=RateKey.CNAM, rate="20/60s", weight=20)],
        threshold=[ThresholdSpec(score=80, action=Action.REJECT), ThresholdSpec(score=50, action=Action.VOICEMAIL)],
    ))
    assert not errors, errors
    return engine, NumberPolicy(number="+13125550111", customer="cust7", spam=spam, voicemail="main")


async def _run(label: str, facts: list, cps: int, store: RedisStore | None, server_pid: int | None) -> None:
    engine, plan = _engine_and_plan()
    if store is not None:
        engine.detective.rates.shared = store.rates
    srv0 = _cpu_of(server_pid) if server_pid else 0.0
    cpu0, wall0 = time.process_time(), time.perf_counter()
    chunk = max(1, cps // 100)
    tick = time.monotonic()
    for start in range(0, len(facts), chunk):
        now = time.time()
        for f in facts[start:start + chunk]:
            engine.decide(f, plan, now)
        tick += 0.01
        await asyncio.sleep(max(0.0, tick - time.monotonic()))  # the batcher gets its turns in between
    if store is not None:
        await store.flush()
    cpu = (time.process_time() - cpu0) / len(facts) * 1e6
    wall = time.perf_counter() - wall0
    line = f"{label:<26} {cpu:7.2f} CPU µs/decision (edge process)"
    if server_pid:
        line += f", redis-server {(_cpu_of(server_pid) - srv0) / len(facts) * 1e6:6.2f} µs/decision"
    if store is not None:
        s = store.redis_stats()
        line += f", {s['rate_batches']} batches, {s['rate_hits_sent'] / max(s['rate_batches'], 1):.0f} hits/batch"
    sys.stdout.write(f"{line}  [{len(facts)} decisions in {wall:.2f}s]\n")


async def main_async(args: argparse.Namespace) -> int:
    rng = random.Random(11)
    callers: list[str] = []
    while len(callers) < 2000:
        c = f"+1{rng.randrange(200, 999)}{rng.randrange(2000000, 9999999):07d}"
        if parse_number(c).valid:
            callers.append(c)
    facts = [facts_for(callers[i % len(callers)], f"Caller {i % 300}", i, f"+1312555{i % 500:04d}")
             for i in range(args.decisions)]
    sys.stdout.write(f"command: {' '.join([sys.executable, '-m', 'benchmarks.redis_bench', *sys.argv[1:]])}\n")
    await _run("local rates only", facts, args.cps, None, None)
    with tempfile.TemporaryDirectory() as tmp:
        server = RedisServer(Path(tmp))
        server.start()
        try:
            assert server.proc is not None
            batch = float(args.batch.rstrip("ms")) / 1000.0
            store = await RedisStore.open(server.url, MemoryStore(), prefix=f"bench-{uuid.uuid4().hex[:6]}",
                                          rates=SharedRates(), rate_batch=batch)
            await _run(f"shared rates (batch {args.batch})", facts, args.cps, store, server.proc.pid)
            await store.close()
        finally:
            server.stop()
    return 0


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--decisions", type=int, default=10_000)
    ap.add_argument("--cps", type=int, default=2000, help="decisions per second (paced in 10 ms bursts)")
    ap.add_argument("--batch", default="20ms", help="rate batch interval in ms, e.g. 20ms")
    return asyncio.run(main_async(ap.parse_args()))


if __name__ == "__main__":
    raise SystemExit(main())
