"""The overload step of the call-rate benchmark: what a proxy does when offered more calls than it can carry.

A proxy past its capacity should keep completing calls at about its capacity and turn the excess away
early (`503` with `Retry-After`), instead of falling behind until timers fire on both sides and
retransmissions add to the load (congestion collapse). The step offers a multiple of the proxy's own
best zero-failure rate for a fixed time with `sipp/uac_overload.xml`, and reads:

- from sipp's per-message counts (`-trace_counts`, one row a second): INVITEs answered 200, BYEs answered
  200 (completed calls), 503s received, and when the completions happened;
- from sipp's statistics: calls failed by cause, among them 503s without a numeric `Retry-After`
  (the scenario checks the header, so such a 503 fails its call);
- from an OPTIONS prober in the harness (`OptionsProber`): how fast the proxy answers a keep-alive while
  overloaded and in the seconds after.

This module holds no process management: `run.py` starts the step and hands the step directory here.
"""

from __future__ import annotations

import csv
import math
import re
import selectors
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

# ---------------------------------------------------------------------------------------------------
# sipp per-message counts

_COUNT_COLUMN = re.compile(r"^(\d+)_(.+)_(Sent|Recv|Retrans|Timeout|Unexp|Sessions)$")


@dataclass(frozen=True)
class CallCounts:
    """Cumulative per-message counts of one overload step, and when completed calls were counted."""

    started: int = 0  # INVITEs sent (first transmissions): calls placed
    answered: int = 0  # 200 to the INVITE
    completed: int = 0  # 200 to the BYE: the call went all the way through
    shed: int = 0  # 503 to the INVITE
    first_time: float = math.nan  # epoch of the first counts row
    last_completion_time: float = math.nan  # epoch of the first row showing the final completed count


def _epoch(cell: str) -> float:
    """sipp writes its CurrentTime column as 'date<TAB>time<TAB>epoch.micro'."""
    try:
        return float(cell.split("\t")[-1])
    except ValueError:
        return math.nan


def parse_counts(path: Path) -> CallCounts:
    """Read a `uac_overload.xml` counts file: the 503 step, the first 200 (answer) and the last 200 (BYE).

    The columns are named `<index>_<message>_<what>`; the indexes follow the scenario's commands, so the
    200 with the lowest index is the INVITE's answer and the one with the highest the BYE's."""
    with path.open(newline="") as f:
        rows = [r for r in csv.reader(f, delimiter=";") if r]
    if len(rows) < 2:
        return CallCounts()
    header = rows[0]
    recv: dict[str, list[tuple[int, int]]] = {}
    sent: dict[str, list[tuple[int, int]]] = {}
    for col, name in enumerate(header):
        m = _COUNT_COLUMN.match(name.strip())
        if m and m.group(3) in ("Recv", "Sent"):
            (recv if m.group(3) == "Recv" else sent).setdefault(m.group(2), []).append((int(m.group(1)), col))
    oks = sorted(recv.get("200", []))
    if len(oks) < 2:
        raise ValueError(f"{path.name}: expected two 200 receive steps (answer, BYE), found {len(oks)}")
    answer_col, bye_col = oks[0][1], oks[-1][1]
    shed_cols = [c for _, c in recv.get("503", [])]
    invite_cols = sorted(sent.get("INVITE", []))

    def value(row: list[str], col: int) -> int:
        v = row[col].strip() if col < len(row) else ""
        return int(v) if v.isdigit() else 0

    data = rows[1:]
    last = data[-1]
    completed = value(last, bye_col)
    done_at = next((_epoch(r[0]) for r in data if value(r, bye_col) >= completed), math.nan) if completed else math.nan
    return CallCounts(started=value(last, invite_cols[0][1]) if invite_cols else 0,
                      answered=value(last, answer_col), completed=completed,
                      shed=sum(value(last, c) for c in shed_cols), first_time=_epoch(data[0][0]),
                      last_completion_time=done_at)


def find_counts(stepdir: Path) -> Path | None:
    """sipp names the file after the scenario and its pid."""
    found = sorted(stepdir.glob("*_counts.csv"))
    return found[-1] if found else None


# ---------------------------------------------------------------------------------------------------
# OPTIONS prober


@dataclass
class Probe:
    sent: float  # epoch (comparable with sipp's timestamps)
    sent_mono: float  # the response time is measured on the monotonic clock
    rtt_ms: float = math.nan  # NaN: no answer
    status: int = 0


class OptionsProber:
    """Sends one OPTIONS every `interval` seconds from its own loopback port and times each answer.

    It runs on a thread of the harness, never retransmits (a lost probe counts as unanswered) and is
    bounded: `stop()` ends it, and probes unanswered `timeout` seconds after they were sent are given up.
    It sends from `port` (the port the proxy's config names as a carrier source; 0 for any)."""

    def __init__(self, target_port: int, port: int = 0, interval: float = 0.1, timeout: float = 2.0) -> None:
        self.target = ("127.0.0.1", target_port)
        self.interval = interval
        self.timeout = timeout
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", port))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]
        self.probes: list[Probe] = []
        self._pending: dict[str, Probe] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._stop.clear()
        self._thread = threading.Thread(target=self._run, name="options-prober", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop sending, wait up to `timeout` for the last answers, then return."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(self.timeout + 2)
            self._thread = None

    def close(self) -> None:
        self.stop()
        self.sock.close()

    def window(self, start: float, end: float) -> list[Probe]:
        """Probes sent in [start, end) (epoch seconds)."""
        return [p for p in self.probes if start <= p.sent < end]

    def _request(self, n: int) -> tuple[str, bytes]:
        call_id = f"probe-{self.port}-{n}"
        msg = (f"OPTIONS sip:127.0.0.1:{self.target[1]} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK-probe-{self.port}-{n}\r\n"
               f"From: <sip:probe@127.0.0.1:{self.port}>;tag=probe{self.port}\r\n"
               f"To: <sip:127.0.0.1:{self.target[1]}>\r\nCall-ID: {call_id}\r\nCSeq: {n + 1} OPTIONS\r\n"
               "Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
        return call_id, msg.encode()

    def _run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        n = 0
        next_send = time.monotonic()
        drain_until = math.inf
        try:
            while True:
                now = time.monotonic()
                if self._stop.is_set() and drain_until == math.inf:
                    drain_until = now + self.timeout
                if now >= drain_until or (self._stop.is_set() and not self._pending):
                    break
                if not self._stop.is_set() and now >= next_send:
                    call_id, data = self._request(n)
                    n += 1
                    probe = Probe(sent=time.time(), sent_mono=now)
                    self.probes.append(probe)
                    self._pending[call_id] = probe
                    try:
                        self.sock.sendto(data, self.target)
                    except OSError:
                        pass  # counts as unanswered
                    next_send += self.interval
                    if next_send < now:  # the harness itself was descheduled: do not burst to catch up
                        next_send = now + self.interval
                for call_id in [c for c, p in self._pending.items() if now - p.sent_mono > self.timeout]:
                    del self._pending[call_id]
                wait = max(0.0, min(next_send, drain_until) - time.monotonic())
                for _ in sel.select(min(wait, 0.05)):
                    self._receive()
        finally:
            sel.close()

    def _receive(self) -> None:
        while True:
            try:
                data = self.sock.recv(65535)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:
                return
            now = time.monotonic()
            status, call_id = parse_response(data)
            probe = self._pending.pop(call_id, None) if status >= 200 else None
            if probe is not None:
                probe.rtt_ms = (now - probe.sent_mono) * 1000
                probe.status = status


def parse_response(data: bytes) -> tuple[int, str]:
    """(status, Call-ID) of a SIP response; (0, '') for anything else."""
    head = data.split(b"\r\n\r\n", 1)[0].decode("latin-1")
    lines = head.split("\r\n")
    parts = lines[0].split(" ", 2)
    if len(parts) < 2 or parts[0] != "SIP/2.0" or not parts[1].isdigit():
        return 0, ""
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if sep and name.strip().lower() in ("call-id", "i"):
            return int(parts[1]), value.strip()
    return int(parts[1]), ""


@dataclass(frozen=True)
class ProbeSummary:
    sent: int = 0
    answered: int = 0
    over_1s: int = 0  # answered later than 1 s, or never
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    max_ms: float = math.nan
    statuses: dict[int, int] = field(default_factory=dict)


def summarize_probes(probes: list[Probe]) -> ProbeSummary:
    rtts = sorted(p.rtt_ms for p in probes if not math.isnan(p.rtt_ms))
    statuses: dict[int, int] = {}
    for p in probes:
        if p.status:
            statuses[p.status] = statuses.get(p.status, 0) + 1

    def pct(q: float) -> float:
        return rtts[max(0, min(len(rtts) - 1, math.ceil(q / 100 * len(rtts)) - 1))] if rtts else math.nan

    return ProbeSummary(sent=len(probes), answered=len(rtts),
                        over_1s=sum(1 for p in probes if math.isnan(p.rtt_ms) or p.rtt_ms > 1000),
                        p50_ms=pct(50), p99_ms=pct(99), max_ms=rtts[-1] if rtts else math.nan, statuses=statuses)


# ---------------------------------------------------------------------------------------------------
# result


@dataclass
class OverloadResult:
    system: str
    capacity_cps: float  # the system's best zero-failure rate in this run
    capacity_is_lower_bound: bool  # the sweep passed its last step: the real capacity is higher
    offered_cps: float
    seconds: float
    calls: int
    answered: int = 0
    completed: int = 0
    failed_established: int = 0  # answered 200 but the call did not complete (its BYE failed or never got its 200)
    shed_503: int = 0
    shed_without_retry_after: int = 0
    never_answered: int = 0  # placed, but neither a 200 nor a 503 came back (e.g. 408, or no answer at all)
    in_progress: int = 0  # calls sipp still had open when its time budget ran out
    failure_causes: dict[str, int] = field(default_factory=dict)  # the carrier's failed calls by sipp cause
    goodput_cps: float = 0.0
    goodput_pct: float = math.nan  # of capacity_cps
    retrans_uac: int = 0
    retrans_uas: int = 0
    failed_uas: int = 0
    cpu_pct: float = 0.0
    sipp_uac_pct: float = 0.0  # near 100 %: the carrier sipp, not the proxy, was the limit
    sipp_uas_pct: float = 0.0
    host_idle_pct: float = math.nan
    edge_503: int = -1  # the edge's own count (edge_sip_final_responses_total{status="503"}), -1 when unknown
    options_during: ProbeSummary = field(default_factory=ProbeSummary)
    options_after: ProbeSummary = field(default_factory=ProbeSummary)
    after_seconds: float = 0.0
    note: str = ""


def goodput(counts: CallCounts, offered_seconds: float) -> float:
    """Completed calls per second over the time they took to complete: from the step's start to the
    counts row where the last completion showed (1 s resolution), never shorter than the offered time."""
    if not counts.completed or math.isnan(counts.first_time):
        return 0.0
    span = counts.last_completion_time - counts.first_time if not math.isnan(counts.last_completion_time) else 0.0
    return counts.completed / max(span, offered_seconds)


def fill(res: OverloadResult, counts: CallCounts, uac_failed: dict[str, int], in_progress: int) -> None:
    """Derive the result's call figures from the counts, the UAC's Failed* statistics and its CurrentCall.

    Every placed call ends up in one of: completed, answered but not completed (a failed established
    call), shed with 503, never answered; `in_progress` says how many of the last two were cut short by
    the step's time budget rather than failed by sipp."""
    res.answered, res.completed, res.shed_503 = counts.answered, counts.completed, counts.shed
    res.failed_established = max(0, counts.answered - counts.completed)
    res.never_answered = max(0, counts.started - counts.answered - counts.shed)
    res.in_progress = in_progress
    res.shed_without_retry_after = (uac_failed.get("FailedRegexpHdrNotFound", 0)
                                    + uac_failed.get("FailedRegexpDoesntMatch", 0))
    res.failure_causes = {k: v for k, v in uac_failed.items() if k != "FailedCall" and v}
    res.goodput_cps = goodput(counts, res.seconds)
    res.goodput_pct = 100 * res.goodput_cps / res.capacity_cps if res.capacity_cps else math.nan


def verdict(r: OverloadResult) -> str:
    """Goal 3, part by part: met or missed, with why when missed."""
    def part(name: str, ok: bool, why: str = "") -> str:
        return f"{name}: {'met' if ok else 'missed' + (f' ({why})' if why else '')}"

    goodput_ok = not math.isnan(r.goodput_pct) and r.goodput_pct >= 90
    shed_ok = r.shed_503 > 0 and r.shed_without_retry_after == 0
    shed_why = ("no 503 at all" if r.shed_503 == 0 else f"{r.shed_without_retry_after} without Retry-After")
    probes_late = r.options_during.over_1s + r.options_after.over_1s
    return "; ".join([part("goodput >= 90 %", goodput_ok),
                      part("excess shed with 503 + Retry-After", shed_ok, shed_why),
                      part("no failed established call", r.failed_established == 0, str(r.failed_established)),
                      part("OPTIONS within 1 s", probes_late == 0 and r.options_during.sent > 0,
                           f"{probes_late} late or unanswered")])


def _ms(v: float) -> str:
    return "-" if math.isnan(v) else f"{v:.0f}"


def _probe_text(p: ProbeSummary) -> str:
    if not p.sent:
        return "no probes"
    return (f"{p.answered}/{p.sent} answered, p50/p99/max {_ms(p.p50_ms)}/{_ms(p.p99_ms)}/{_ms(p.max_ms)} ms, "
            f"{p.over_1s} later than 1 s or unanswered")


def render(results: list[OverloadResult], factor: float, base: str = "own") -> str:
    """The overload block of the summary (goal 3 of the performance issue: goodput >= 90 % of capacity,
    the excess shed with 503 + Retry-After, no established call lost, OPTIONS answered within 1 s)."""
    if not results:
        return ""
    of = "each system's best zero-failure rate" if base == "own" else "the edge's best zero-failure rate, for every system,"
    lines = ["", f"overload step: {factor:g}x {of} of this run "
             "(goal: goodput >= 90 % of capacity, excess 503 + Retry-After, 0 failed established calls, "
             "OPTIONS within 1 s during and after)", ""]
    for r in results:
        bound = " (a lower bound: its sweep passed every step)" if r.capacity_is_lower_bound else ""
        lines.append(f"{r.system}: base rate {r.capacity_cps:g} CPS{bound}, offered {r.offered_cps:g} CPS for "
                     f"{r.seconds:g} s ({r.calls} calls)")
        pct = "-" if math.isnan(r.goodput_pct) else f"{r.goodput_pct:.0f} %"
        lines.append(f"  goodput {r.goodput_cps:.0f} calls/s = {pct} of the base rate; completed {r.completed}, "
                     f"answered {r.answered}, failed established (answered, not completed) {r.failed_established}")
        edge = f" (the edge counted {r.edge_503})" if r.edge_503 >= 0 else ""
        causes = ", ".join(f"{k[6:]}={v}" for k, v in r.failure_causes.items())
        lines.append(f"  503 received {r.shed_503}{edge}, of them without a numeric Retry-After "
                     f"{r.shed_without_retry_after}; never answered {r.never_answered}; "
                     f"carrier's failed calls by cause: {causes or 'none'}; still open at the time budget {r.in_progress}")
        lines.append(f"  retransmissions c/s {r.retrans_uac}/{r.retrans_uas}, PBX failed {r.failed_uas}; CPU % of a "
                     f"core: proxy {r.cpu_pct:.0f}, sipp carrier/PBX {r.sipp_uac_pct:.0f}/{r.sipp_uas_pct:.0f}, "
                     f"machine idle {'-' if math.isnan(r.host_idle_pct) else f'{r.host_idle_pct:.0f}'} %"
                     + (" (sipp near a full core: the load generator, not the proxy, set the limit)"
                        if max(r.sipp_uac_pct, r.sipp_uas_pct) >= 90 else ""))
        lines.append(f"  OPTIONS during: {_probe_text(r.options_during)}")
        lines.append(f"  OPTIONS in the {r.after_seconds:g} s after: {_probe_text(r.options_after)}")
        lines.append(f"  goal 3: {verdict(r)}")
        if r.note:
            lines.append(f"  note: {r.note}")
    return "\n".join(lines) + "\n"
