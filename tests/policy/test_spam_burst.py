"""A legitimate burst on one carrier trunk through the shipped dialplans: refused while it lasts, and no
caller in it is punished afterwards (aggregate rates never put a caller under cool-off)."""

from __future__ import annotations

from pathlib import Path

import pytest

from edge.call.admission import Gatekeeper
from edge.call.peers import Peer
from edge.dialplan.load import load_dialplans
from edge.dialplan.plan import NumberEntry
from edge.policy.facts import Action
from edge.policy.pipeline import PolicyEngine
from edge.sip.message import parse
from edge.sip.transaction import Destination
from edge.stir.schema import StirConfig

ROOT = Path(__file__).resolve().parents[2]
TRUNK = Destination("udp", "192.0.2.10", 5060)
CARRIER = Peer("carrier", "carrier-a")
T0 = 1_000_000.0


def invite(caller: str, called: str, i: int) -> bytes:
    return (
        f"INVITE sip:{called}@127.0.0.1 SIP/2.0\r\n"
        f"Via: SIP/2.0/UDP 192.0.2.10:5060;branch=z9hG4bK-{i}\r\n"
        f"From: \"Caller {i}\" <sip:{caller}@192.0.2.10>;tag={i}\r\n"
        f"To: <sip:{called}@127.0.0.1>\r\n"
        f"Call-ID: burst-{i}\r\nCSeq: 1 INVITE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n"
    ).encode()


def shipped_entries() -> list[NumberEntry]:
    plan, _ = load_dialplans(ROOT / "dialplans", {"pbx-a", "pbx-b"})
    return [e for e in plan.numbers() if e.exact and e.policy.spam is not None]


@pytest.mark.parametrize("entry", shipped_entries(), ids=lambda e: e.key)
def test_burst_from_one_trunk_puts_no_caller_in_cool_off(entry: NumberEntry) -> None:
    plan, _ = load_dialplans(ROOT / "dialplans", {"pbx-a", "pbx-b"})
    engine = PolicyEngine()
    engine.replace_static_rules(plan.rules)
    gk = Gatekeeper(engine, StirConfig())
    callers = [f"+1303555{1000 + i}" for i in range(250)]

    def decide(caller: str, i: int, now: float) -> Action:
        return gk.admit(parse(invite(caller, entry.key, i)), TRUNK, CARRIER, entry, now).decision.action

    baseline = decide("+13125550100", 0, T0 - 7200)  # a caller outside the burst, on a quiet trunk
    burst = [decide(c, i, T0 + 0.75 * i / len(callers)) for i, c in enumerate(callers)]
    assert burst.count(Action.REJECT) > 0, "the burst must exceed the shipped source rate for this test to mean anything"
    later = [decide(c, 1000 + i, T0 + 1800 + i) for i, c in enumerate(callers)]  # 30 minutes later, 1/s
    assert later.count(baseline) == len(callers), [a for a in later if a is not baseline][:3]
    assert engine.stats["flagged_callers"] == 0
