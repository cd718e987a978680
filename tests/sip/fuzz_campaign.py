"""Fuzzing at scale (`make fuzz`): generated and mutated SIP messages through the parser, the stream framer
and `Proxy.receive`, bounded by a message count and a time cap.

Sources, interleaved:
- hypothesis: the strategies of tests/sip/test_fuzz.py (mutated seeds, random bytes), each drawn message
  also feeding a burst of fast mutants;
- mutation: the RFC 4475-style torture vectors (tests/vectors) and the messages the e2e sipp scenarios send
  (tests/e2e/scenarios/*.xml and the scenarios the e2e harness writes), with sipp keywords filled in, mutated
  line by line and byte by byte (odd digits, unterminated quotes, wildcard-laden names, huge numbers, ...).

What may happen to a message: the parser raises SipParseError (never anything else); the framer yields it or
raises FramingError; the proxy answers 100/200 of its own, a 4xx/5xx or a policy 6xx, forwards it with its own Via, or
drops it (counted). Anything else, or a `core_errors` count above zero, or tables that do not drain once
every timer has fired, fails the run; the offending input is written next to the report for replay.

    python -m tests.sip.fuzz_campaign --count 1000000 --seconds 3600
"""

from __future__ import annotations

import argparse
import logging
import random
import re
import sys
import time
from collections import Counter
from pathlib import Path

import msgspec
import structlog
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge.call.admission import Gatekeeper
from edge.call.proxy import Proxy
from edge.config import EdgeConfig
from edge.policy.pipeline import PolicyEngine
from edge.policy.rules import BlockRule, RuleKind
from edge.sip.errors import FramingError, SipParseError
from edge.sip.framing import StreamFramer
from edge.sip.message import MAGIC_COOKIE, parse
from edge.sip.transaction import Destination
from edge.stir.schema import StirConfig
from tests.call.proxy_harness import CARRIER, PBX_A, PBX_B, STRANGER, config_dict, make_plan
from tests.sip.test_fuzz import SEEDS, inputs

ROOT = Path(__file__).resolve().parent.parent
VECTORS = ROOT / "vectors"
SCENARIOS = ROOT / "e2e" / "scenarios"
SOURCES = (CARRIER, CARRIER, CARRIER, PBX_A, PBX_B, STRANGER, Destination("tcp", "192.0.2.5", 5080, 1))
RESET_EVERY = 500  # messages per proxy instance before its timers are run out and its tables checked

# -- corpus ------------------------------------------------------------------------------------------------

_SIPP = {
    "service": "+12025550100", "remote_ip": "127.0.0.1", "remote_port": "5060", "local_ip": "192.0.2.5",
    "local_port": "5080", "branch": "z9hG4bKfuzzbranch", "call_id": "fuzz-call@192.0.2.5", "pid": "4242",
    "call_number": "1", "transport": "UDP", "media_ip": "192.0.2.5", "media_port": "40000",
    "local_ip_type": "4", "media_ip_type": "4", "cseq": "1",
}
_LAST = {
    "Via": "Via: SIP/2.0/UDP 127.0.0.1:5060;branch=z9hG4bKedge1;rport\r\n"
           "Via: SIP/2.0/UDP 192.0.2.5:5080;branch=z9hG4bKcarrier1;rport=5080",
    "From": 'From: "Fuzz" <sip:+13035550111@192.0.2.5>;tag=c1',
    "To": "To: <sip:+12025550100@127.0.0.1>",
    "Call-ID": "Call-ID: fuzz-call@192.0.2.5",
    "CSeq": "CSeq: 1 INVITE",
    "Record-Route": "Record-Route: <sip:127.0.0.1:5060;lr>",
    "Contact": "Contact: <sip:pbx@10.0.0.1:5070>",
}
_FORMAT = {"caller": "+13035550111", "from_name": '"Spam Likely" ', "extra": "", "code": "486", "hold": "50"}
_CDATA = re.compile(r"<send[^>]*>\s*<!\[CDATA\[(.*?)\]\]>", re.S)


def _fill(text: str) -> bytes:
    text = re.sub(r"\[last_([A-Za-z-]+):\]", lambda m: _LAST.get(m.group(1), f"{m.group(1)}: x"), text)
    text = re.sub(r"\[(\w+)\]", lambda m: _SIPP.get(m.group(1), "x") if m.group(1) != "len" else "[len]", text)
    text = re.sub(r"\{(\w+)\}", lambda m: _FORMAT.get(m.group(1), ""), text)
    lines = [ln.strip("\r") for ln in text.strip("\n").split("\n")]
    head, body = lines, []
    if "" in lines:
        i = lines.index("")
        head, body = lines[:i], lines[i + 1 :]
    raw_body = ("\r\n".join(body) + "\r\n").encode() if body else b""
    out = "\r\n".join(head).replace("[len]", str(len(raw_body))) + "\r\n\r\n"
    return out.encode() + raw_body


def scenario_messages() -> list[bytes]:
    """Every message an e2e sipp scenario sends, keywords filled in as sipp would."""
    texts = [p.read_text() for p in sorted(SCENARIOS.glob("*.xml"))]
    texts.append((ROOT / "e2e" / "harness.py").read_text())
    return [_fill(m) for text in texts for m in _CDATA.findall(text)]


def corpus() -> list[bytes]:
    vectors = [p.read_bytes() for kind in ("valid", "invalid") for p in sorted((VECTORS / kind).glob("*.sip"))]
    return [*SEEDS, *vectors, *scenario_messages()]


# -- mutation ----------------------------------------------------------------------------------------------

ODD_VALUES = [
    "\uff11\uff12\uff10\uff12\uff15\uff15\uff15\uff10\uff11\uff10\uff10", "\u0661\u0662\u0663", "\u00b2", "9" * 5000,
    "1_0", "+5", "-1", "0x10", "\u0000", "", " ", '"unterminated <sip:+13035550188@host>;tag=x', "<sip:a@b",
    '"' + "a" * 128 + '" <sip:+13035550188@host>', "*a*a*a*a*a*a*a*a*b", "sip:%00@[::ffff:127.0.0.1]",
    "https://\uff11\uff12\uff17.\uff10.\uff10.\uff11/c.pem", "<sip:+12025550100@127.0.0.1;lr>", "\xff\xfe",
    "a" * 4000, ";" * 300, "," * 300, "<" * 200, '"' * 201, "\\" * 99,
]
HEADERS = ["Via", "v", "From", "f", "To", "t", "Call-ID", "i", "CSeq", "Max-Forwards", "Route", "Record-Route",
           "Contact", "m", "Content-Length", "l", "Content-Type", "P-Asserted-Identity", "Identity", "Privacy",
           "Expires", "Require", "Supported", "Allow", "Reason"]


def mutate(rng: random.Random, data: bytes, pool: list[bytes]) -> bytes:
    """1-3 random edits of a message: header-line edits most of the time, raw byte edits otherwise."""
    head, sep, body = data.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        op = rng.randrange(14)
        i = rng.randrange(len(lines)) if lines else 0
        if not lines:
            lines = [b""]
        if op == 0 and len(lines) > 1:
            del lines[i]
        elif op == 1:
            lines.insert(i, lines[i])
        elif op in (2, 3):
            name = lines[i].partition(b":")[0] if i else rng.choice(HEADERS).encode()
            lines[i] = name + b": " + rng.choice(ODD_VALUES).encode("utf-8", "surrogatepass")
        elif op == 4:
            lines.insert(rng.randint(1, len(lines)), (rng.choice(HEADERS) + ": " + rng.choice(ODD_VALUES)).encode())
        elif op == 5:
            line = lines[i]
            if line:
                j = rng.randrange(len(line))
                lines[i] = line[:j] + bytes([rng.randrange(256)]) + line[j + 1 :]
        elif op == 6:
            lines[i] = re.sub(rb"[0-9]+", lambda _: rng.choice([b"\xef\xbc\x91", b"\xd9\xa1", b"\xc2\xb2", b"99999999999"]),
                              lines[i], count=1)
        elif op == 7:
            lines[i] = lines[i].replace(b'"', b"", 1) if b'"' in lines[i] else lines[i].replace(b"<", b'"<', 1)
        elif op == 8:
            lines.append(b"Content-Length: " + str(rng.choice([0, -1, 10**6, len(body) + 1, len(body)])).encode())
        elif op == 9:
            lines[0] = rng.choice([b"OPTIONS", b"INVITE", b"BYE", b"ACK", b"CANCEL", b"MESSAGE", b"SIP/2.0"]) + b" " + \
                (lines[0].split(b" ", 1)[1] if b" " in lines[0] else b"sip:x SIP/2.0")
        elif op == 10:
            other = rng.choice(pool)
            lines += other.partition(b"\r\n\r\n")[0].split(b"\r\n")[1:][: rng.randint(1, 5)]
        elif op == 11:
            lines.insert(rng.randint(1, len(lines)), rng.choice([b" ", b"\t"]) + rng.choice(ODD_VALUES).encode())
        elif op == 12:
            body = bytes(rng.randrange(256) for _ in range(rng.randint(0, 64)))
        else:
            lines[i] = lines[i][: rng.randint(0, len(lines[i]))]
    out = b"\r\n".join(lines) + sep + body
    if rng.randrange(12) == 0:
        out = out[: rng.randint(0, len(out))]
    return out


# -- the system under test -----------------------------------------------------------------------------------


class Failure(AssertionError):
    def __init__(self, message: str, data: bytes) -> None:
        super().__init__(message)
        self.data = data


def _engine() -> PolicyEngine:
    """Policy with the rule shapes a stranger's name or number could make expensive."""
    engine = PolicyEngine()
    rules = [
        BlockRule(id="w1", kind=RuleKind.CNAM, value="*a*a*a*a*a*a*a*b"),
        BlockRule(id="w2", kind=RuleKind.CNAM, value="spam*likely*"),
        BlockRule(id="n1", kind=RuleKind.NUMBER, value="+13035550188"),
        BlockRule(id="p1", kind=RuleKind.PREFIX, value="+1900"),
        BlockRule(id="anon", kind=RuleKind.ANONYMOUS),
    ]
    for r in rules:
        engine.rules.add(r)
    return engine


class Target:
    """One proxy (with policy) and one stream framer; `feed` pushes a message through all three layers."""

    def __init__(self) -> None:
        cfg = msgspec.convert(config_dict(limits={"max_transactions": 200, "max_dialogs": 50, "dialog_max_age": "1h"}),
                              EdgeConfig)
        self.proxy = Proxy(cfg, make_plan(), Gatekeeper(_engine(), StirConfig(enabled=False)))
        self.framer = StreamFramer(max_message=65536)
        self.now = 1000.0
        self.fed = 0

    def feed(self, data: bytes, src: Destination, tally: Counter) -> None:
        try:
            m = parse(data)
            tally["parse_ok"] += 1
            _ = (m.vias, m.call_id, m.cseq_num, m.from_tag, m.to_tag, m.max_forwards, m.routes)
        except SipParseError as exc:
            if not str(exc):
                raise Failure("SipParseError without a reason", data) from exc
            tally["parse_refused"] += 1
        except Exception as exc:
            raise Failure(f"parse raised {type(exc).__name__}: {exc}", data) from exc
        try:
            tally["framed"] += len(self.framer.feed(data))
        except FramingError:
            tally["framer_refused"] += 1
            self.framer = StreamFramer(max_message=65536)  # the transport closes the connection
        except Exception as exc:
            raise Failure(f"framer raised {type(exc).__name__}: {exc}", data) from exc
        requests = not data.lstrip(b"\r\n").startswith(b"SIP/")
        try:
            self.proxy.receive(data, src, self.now)
        except Exception as exc:
            raise Failure(f"Proxy.receive raised {type(exc).__name__}: {exc}", data) from exc
        for out, dest in self.proxy.outbox:
            start = out.split(b"\r\n", 1)[0]
            if start.startswith(b"SIP/2.0 "):
                status = int(start.split(b" ")[1])
                tally[f"answered_{status // 100}xx"] += 1
                if dest == src and requests and not (status in (100, 200) or 400 <= status <= 699):
                    raise Failure(f"edge answered a request with {start!r}", data)
            else:
                tally["forwarded"] += 1
                try:  # the edge may lengthen a header it received at the cap (Via, verstat): no cap here
                    fwd = parse(out, max_headers=10_000, max_header_length=1 << 20)
                except SipParseError as exc:
                    raise Failure(f"forwarded a message the parser refuses: {exc}", data) from exc
                if fwd.top_via.host != "127.0.0.1" or not fwd.branch.startswith(MAGIC_COOKIE):
                    raise Failure(f"forwarded without the edge's Via: {start!r}", data)
        self.proxy.outbox.clear()
        if self.proxy.stats.core_errors:
            raise Failure("core_errors counted", data)
        self.now += 0.01
        self.fed += 1

    def drain(self) -> None:
        """Run out every timer: transaction and dialog tables must be empty again."""
        end = self.now + 4000.0
        while (d := self.proxy.next_deadline()) is not None and d <= end:
            self.now = max(self.now, d)
            self.proxy.handle_timers(self.now)
        self.proxy.outbox.clear()
        p = self.proxy
        if (len(p.server_txns), len(p.client_txns), len(p.dialogs)) != (0, 0, 0) or p.stats.core_errors:
            raise Failure("tables not drained after every timer fired", b"")


# -- the campaign ----------------------------------------------------------------------------------------------


class Campaign:
    def __init__(self, count: int, seconds: float, seed: int, burst: int = 20, progress: bool = False) -> None:
        self.count = count
        self.progress = progress
        self.deadline = time.monotonic() + seconds
        self.rng = random.Random(seed)
        self.pool = corpus()
        self.burst = burst
        self.tally: Counter = Counter()
        self.target = Target()
        self.sent = 0
        self.generated = 0
        self.mutated = 0
        self.failure: Failure | None = None

    def done(self) -> bool:
        return self.failure is not None or self.sent >= self.count or time.monotonic() >= self.deadline

    def send(self, data: bytes) -> None:
        self.target.feed(data, self.rng.choice(SOURCES), self.tally)
        self.sent += 1
        if self.progress and self.sent % 100_000 == 0:
            sys.stderr.write(f"fuzz: {self.sent} messages, no failure so far\n")
        if self.target.fed >= RESET_EVERY:
            self.target.drain()
            self.target = Target()

    def run_mutants(self, seed_msg: bytes | None) -> None:
        for _ in range(self.burst):
            if self.done():
                return
            base = seed_msg if seed_msg is not None and self.rng.randrange(2) else self.rng.choice(self.pool)
            self.send(mutate(self.rng, base, self.pool))
            self.mutated += 1

    def run(self) -> None:
        @settings(max_examples=200, deadline=None, database=None,
                  suppress_health_check=list(HealthCheck))
        @given(inputs)
        def generated(data: bytes) -> None:
            if self.done():
                return
            try:
                self.send(data)
                self.generated += 1
                self.run_mutants(data)
            except Failure as exc:  # kept, not raised: hypothesis would retry and shrink at length
                self.failure = exc

        while not self.done():
            generated()
        if self.failure is not None:
            raise self.failure
        self.target.drain()

    def report(self) -> dict[str, object]:
        return {"messages": self.sent, "generated": self.generated, "mutated": self.mutated,
                "corpus": len(self.pool), **dict(sorted(self.tally.items()))}


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--count", type=int, default=1_000_000, help="messages to send (default 1,000,000)")
    ap.add_argument("--seconds", type=float, default=3600.0, help="time cap (default 3600)")
    ap.add_argument("--seed", type=int, default=int(time.time()), help="mutation seed (printed, for replay)")
    ap.add_argument("--failure-file", default="var/fuzz-failure.sip", help="where a failing input is written")
    args = ap.parse_args(argv)
    # Only errors reach the terminal: a million messages of debug and info lines would cost more than the fuzzing.
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    started = time.monotonic()
    c = Campaign(args.count, args.seconds, args.seed, progress=True)
    try:
        c.run()
    except Failure as exc:
        path = Path(args.failure_file)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(exc.data)
        sys.stdout.write(msgspec.json.encode({"result": "FAILED", "error": str(exc), "input": str(path),
                                              "seed": args.seed, **c.report()}).decode() + "\n")
        return 1
    elapsed = time.monotonic() - started
    capped = c.sent < args.count
    sys.stdout.write(msgspec.json.encode({"result": "passed", "seed": args.seed, "seconds": round(elapsed, 1),
                                          "stopped_by": "time cap" if capped else "count", **c.report()}).decode() + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
