"""Micro-benchmark of PolicyEngine.decide: 10,000 block rules loaded, Spam Detective on.

Run: .venv/bin/python benchmarks/policy_micro.py [--decisions N] [--rules N]
Prints microseconds per decision for a clean call, a blocked call and a CNAM-wildcard call.
Not a test: the target (< 30 µs per decision) is read by a person, not asserted.
"""

from __future__ import annotations

import argparse
import random
import sys
import time

from edge.numbers import parse_number
from edge.policy.facts import Action, CallFacts, ContactKind
from edge.policy.pipeline import PolicyEngine
from edge.policy.plan import NumberPolicy
from edge.policy.rates import RateKey
from edge.policy.rules import BlockRule, RuleKind, Scope
from edge.policy.schema import RateSpec, SpamSpec, ThresholdSpec, compile_spam
from edge.stir.result import StirResult, StirStatus


def build_rules(n: int, rng: random.Random) -> list[BlockRule]:
    rules = []
    for i in range(n):
        bucket = i % 10
        if bucket < 6:
            rules.append(BlockRule(id=f"n{i}", kind=RuleKind.NUMBER, value=f"+1202{rng.randrange(2000000, 9999999):07d}"))
        elif bucket < 8:
            rules.append(BlockRule(id=f"p{i}", kind=RuleKind.PREFIX, value=f"+1{rng.randrange(200, 999)}{rng.randrange(200, 999)}"))
        elif bucket == 8:
            rules.append(BlockRule(id=f"c{i}", kind=RuleKind.CNAM, value=f"spammer{i}"))
        else:
            rules.append(
                BlockRule(
                    id=f"w{i}",
                    kind=RuleKind.CNAM,
                    value=f"{rng.choice('abcdefghijklmnopqrstuvwxyz')}{i}*offer",
                    scope=Scope.CUSTOMER,
                    scope_value=f"cust{i % 50}",
                )
            )
    return rules


def facts_for(calling: str, cnam: str, i: int, called: str = "+13125550111") -> CallFacts:
    n = parse_number(calling)
    return CallFacts(
        call_id=f"c{i}",
        kind=ContactKind.CALL,
        received_at=0.0,
        source_ip=f"192.0.2.{i % 200}",
        source_port=5060,
        transport="udp",
        carrier="carrier-a",
        calling_raw=calling,
        calling_number=n.e164,
        called_raw=called,
        called_number=called,
        cnam=cnam,
        anonymous=False,
        customer="cust7",
        stir=StirResult(status=StirStatus.PASSED, attestation="A"),
    )


def run(label: str, engine: PolicyEngine, plan: NumberPolicy, facts: list[CallFacts]) -> float:
    now = 1_000_000.0
    before = dict(engine.stats["decisions_by_action"])
    start = time.perf_counter()
    for i, f in enumerate(facts):
        engine.decide(f, plan, now + i * 0.05)
    per = (time.perf_counter() - start) / len(facts) * 1e6
    after = engine.stats["decisions_by_action"]
    split = ", ".join(f"{k}={after[k] - before[k]}" for k in after if after[k] != before[k])
    sys.stdout.write(f"{label:<20} {per:7.2f} µs/decision ({len(facts)} decisions: {split})\n")
    return per


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--decisions", type=int, default=50_000)
    ap.add_argument("--rules", type=int, default=10_000)
    args = ap.parse_args()
    rng = random.Random(7)
    engine = PolicyEngine()
    for rule in build_rules(args.rules, rng):
        engine.rules.add(rule)
    spam, errors = compile_spam(
        SpamSpec(
            rate=[
                RateSpec(key=RateKey.CALLER, rate="5/60s", weight=40),
                RateSpec(key=RateKey.SOURCE, rate="500/1s", weight=20),
                RateSpec(key=RateKey.PAIR, rate="3/60s", weight=40),
                RateSpec(key=RateKey.CALLED, rate="60/60s", weight=20),
                RateSpec(key=RateKey.CNAM, rate="20/60s", weight=20),
            ],
            threshold=[ThresholdSpec(score=80, action=Action.REJECT), ThresholdSpec(score=50, action=Action.VOICEMAIL)],
        )
    )
    assert not errors, errors
    plan = NumberPolicy(number="+13125550111", customer="cust7", spam=spam, voicemail="main")
    callers: list[str] = []
    while len(callers) < 5_000:
        c = f"+1{rng.randrange(200, 999)}{rng.randrange(2000000, 9999999):07d}"
        if parse_number(c).valid:  # also warms the shared number cache like a running edge would
            callers.append(c)
    called = [f"+1312555{i:04d}" for i in range(2_000)]
    n = args.decisions
    sys.stdout.write(f"rules loaded: {len(engine.rules)}\n")
    clean = [facts_for(callers[i % len(callers)], f"Caller {i % len(callers)}", i, called[i % len(called)]) for i in range(n)]
    run("clean calls", engine, plan, clean)
    blocked = next(r.value for r in engine.rules if r.kind is RuleKind.NUMBER)
    parse_number(blocked)
    run("blocked number", engine, plan, [facts_for(blocked, "", i) for i in range(n)])
    run("cnam wildcard scan", engine, plan, [facts_for(callers[i % len(callers)], f"q{i % 97} special offer", i, called[i % len(called)]) for i in range(n)])
    run("one-number flood", engine, plan, [facts_for(callers[i % 50], "Robo", i) for i in range(n)])
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
