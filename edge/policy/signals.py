"""Spam evidence beyond rates: number validity, neighbour spoofing, STIR/SHAKEN outcome, anonymity,
short-call history, failed screenings and calls to released numbers.

`stir_evidence` is the pipeline's STIR stage; `SignalState.evidence` yields the others.

STIR inputs follow RFC 8224 §6.2.2 / RFC 8588 attestation levels (A full, B partial, C gateway) as
reported in `StirResult`. Neighbour spoofing is the NANP pattern of faking a caller ID that shares
the called number's NPA-NXX so the call looks local. Detectors report; weights come from the
number's dialplan, and a weight of 0 switches a signal off.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from collections.abc import Callable

import msgspec

from edge.policy.facts import CallFacts, Evidence
from edge.stir.result import StirStatus


class SignalWeights(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """Score contributed by each signal (`[spam.signals]` in a dialplan)."""

    invalid: float = 30.0  # caller number not valid / unallocated
    neighbour_spoof: float = 30.0  # caller shares the called number's NPA-NXX
    stir_failed: float = 40.0
    stir_absent: float = 5.0
    stir_attestation_c: float = 15.0
    stir_attestation_b: float = 0.0
    anonymous: float = 20.0
    short_calls: float = 30.0  # most recent answered calls were hung up within seconds
    failed_screenings: float = 40.0  # captcha/menu failed repeatedly
    released_number: float = 20.0  # called number was released (nobody should call it)


class SignalConfig(msgspec.Struct, frozen=True):
    """Compiled signal settings for one dialplan."""

    weights: SignalWeights = SignalWeights()
    short_call_seconds: float = 6.0
    short_call_min_calls: int = 3  # fewer answered calls than this say nothing
    short_call_share: float = 0.6  # share of short calls that raises the signal
    failed_screenings: int = 2  # consecutive failed screenings that raise the signal
    history_window: float = 86400.0  # how far back call/screening history counts (seconds)


class _PerCaller:
    """Bounded map caller -> bounded deque of recent entries; least recently updated caller evicted."""

    __slots__ = ("max_callers", "per_caller", "evictions", "_data")

    def __init__(self, max_callers: int, per_caller: int) -> None:
        self.max_callers = max_callers
        self.per_caller = per_caller
        self.evictions = 0
        self._data: OrderedDict[str, deque[tuple[float, float]]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._data)

    def append(self, caller: str, entry: tuple[float, float]) -> None:
        ring = self._data.get(caller)
        if ring is None:
            if len(self._data) >= self.max_callers:
                self._data.popitem(last=False)
                self.evictions += 1
            ring = self._data[caller] = deque(maxlen=self.per_caller)
        else:
            self._data.move_to_end(caller)
        ring.append(entry)

    def get(self, caller: str) -> deque[tuple[float, float]] | None:
        return self._data.get(caller)


class SignalState:
    """Per-caller history fed by call ends and screening outcomes, and the evidence it yields."""

    def __init__(self, max_callers: int = 100_000, per_caller: int = 10) -> None:
        self.calls = _PerCaller(max_callers, per_caller)  # (ended_at, duration) of answered calls
        self.screenings = _PerCaller(max_callers, per_caller)  # (at, 1.0 passed / 0.0 failed)
        self.released = _PerCaller(max_callers, per_caller)  # (at, 1.0): calls to released numbers (honeypot)

    def record_call_end(self, calling_number: str, answered: bool, duration: float, now: float) -> None:
        """Remember how long an answered call lasted; unanswered calls say nothing about the caller."""
        if calling_number and answered:
            self.calls.append(calling_number, (now, max(0.0, duration)))

    def record_screening(self, calling_number: str, passed: bool, now: float) -> None:
        if calling_number:
            self.screenings.append(calling_number, (now, 1.0 if passed else 0.0))

    def record_released_call(self, calling_number: str, now: float) -> None:
        """The caller dialled a released number: nobody with a reason to call it should."""
        if calling_number:
            self.released.append(calling_number, (now, 1.0))

    def released_calls(self, calling_number: str, since: float) -> int:
        ring = self.released.get(calling_number)
        return sum(1 for at, _ in ring if at >= since) if ring else 0

    def short_calls(self, calling_number: str, short_seconds: float, since: float) -> tuple[int, int]:
        """(short, answered) among the caller's answered calls that ended after `since`."""
        ring = self.calls.get(calling_number)
        if not ring:
            return 0, 0
        short = answered = 0
        for ended, duration in ring:
            if ended >= since:
                answered += 1
                if duration < short_seconds:
                    short += 1
        return short, answered

    def failed_screenings(self, calling_number: str, since: float) -> int:
        """Failed screenings after the caller's last pass (and after `since`)."""
        ring = self.screenings.get(calling_number)
        if not ring:
            return 0
        failures = 0
        for at, passed in reversed(ring):
            if at < since or passed:
                break
            failures += 1
        return failures

    def evidence(
        self,
        facts: CallFacts,
        cfg: SignalConfig,
        now: float,
        is_released: Callable[[str], bool] | None = None,
    ) -> list[Evidence]:
        w = cfg.weights
        out: list[Evidence] = []
        calling = facts.calling_number
        if facts.anonymous:
            if w.anonymous:
                out.append(Evidence("anonymous", w.anonymous, "caller withheld its identity", "signal.anonymous"))
        elif not facts.calling_valid and w.invalid:
            detail = f"caller number {calling!r} is not valid" if calling else f"caller {facts.calling_raw!r} is not a number"
            out.append(Evidence("invalid", w.invalid, detail, "signal.invalid"))
        if w.neighbour_spoof and is_neighbour_spoof(calling, facts.called_number):
            out.append(
                Evidence("neighbour_spoof", w.neighbour_spoof, f"caller shares NPA-NXX {calling[2:8]} with called number", "signal.neighbour_spoof")
            )
        if calling:
            since = now - cfg.history_window
            if w.short_calls:
                short, answered = self.short_calls(calling, cfg.short_call_seconds, since)
                if answered >= cfg.short_call_min_calls and short >= cfg.short_call_share * answered:
                    out.append(
                        Evidence(
                            "short_calls",
                            w.short_calls,
                            f"{short}/{answered} answered calls ended within {cfg.short_call_seconds:g}s",
                            "signal.short_calls",
                        )
                    )
            if w.failed_screenings:
                failures = self.failed_screenings(calling, since)
                if failures >= cfg.failed_screenings:
                    out.append(
                        Evidence("failed_screenings", w.failed_screenings, f"{failures} screenings failed in a row", "signal.failed_screenings")
                    )
        if w.released_number:
            if is_released is not None and facts.called_number and is_released(facts.called_number):
                out.append(Evidence("released_number", w.released_number, f"{facts.called_number} is a released number", "signal.released_number"))
            elif calling:
                hits = self.released_calls(calling, now - cfg.history_window)
                if hits:
                    out.append(Evidence("released_number", w.released_number,
                                        f"caller dialled released numbers {hits} time(s) recently", "signal.released_number"))
        return out


def is_neighbour_spoof(calling: str, called: str) -> bool:
    """NANP caller ID sharing the called number's NPA-NXX (first 6 national digits) but not equal."""
    return (
        len(calling) == 12
        and len(called) == 12
        and calling.startswith("+1")
        and called.startswith("+1")
        and calling[2:8] == called[2:8]
        and calling != called
    )


def stir_evidence(facts: CallFacts, w: SignalWeights) -> list[Evidence]:
    """The STIR/SHAKEN stage's contribution (verification itself happens in edge.stir)."""
    stir = facts.stir
    if stir.status is StirStatus.FAILED:
        if w.stir_failed:
            detail = f"verification failed: {stir.code or stir.reason or 'unknown'}"
            return [Evidence("stir.failed", w.stir_failed, detail, "signal.stir.failed")]
    elif stir.status is StirStatus.ABSENT:
        if w.stir_absent:
            return [Evidence("stir.absent", w.stir_absent, "no Identity header", "signal.stir.absent")]
    elif stir.attestation == "C":
        if w.stir_attestation_c:
            return [Evidence("stir.attestation_c", w.stir_attestation_c, "gateway attestation (C)", "signal.stir.attestation_c")]
    elif stir.attestation == "B" and w.stir_attestation_b:
        return [Evidence("stir.attestation_b", w.stir_attestation_b, "partial attestation (B)", "signal.stir.attestation_b")]
    return []
