"""Number lifecycle state machine: assigned -> released (quarantine, residual traffic monitored) -> eligible -> reassigned.

Sans-IO: every operation takes `now` and returns the record that changed; the caller persists it
(`StateStore.put_number`). `is_released()` is the synchronous lookup the call path uses.
Quarantine floor: 47 CFR §52.15(f)(1)(ii) (45 days aging for disconnected numbers).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from edge.lifecycle.record import MAX_OVERRIDES, NumberRecord, NumberState, NumberStatus, Override
from edge.lifecycle.schema import LifecycleConfig, validate_lifecycle
from edge.units import parse_duration

DAY = 86400.0


class LifecycleRefused(Exception):
    """An operation the lifecycle rules forbid; `reason` is shown to the operator as is."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def day_of(ts: float) -> int:
    return int(ts // DAY)


def date_of(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, tz=dt.timezone.utc).strftime("%Y-%m-%d")


def conflicts(released_numbers: Iterable[str], dialplan_numbers: Iterable[str]) -> list[str]:
    """Numbers both released (quarantined) and routed by a dialplan: `sip-edge check` reports each one."""
    return sorted(set(released_numbers) & set(dialplan_numbers))


class Lifecycle:
    """In-memory index of number records, kept in sync with the store by the caller."""

    def __init__(self, cfg: LifecycleConfig | None = None) -> None:
        cfg = cfg or LifecycleConfig()
        errors = validate_lifecycle(cfg)
        if errors:
            raise ValueError("; ".join(f"{path}: {reason}" for path, reason in errors))
        self.cfg = cfg
        self.quarantine = parse_duration(cfg.quarantine)
        self.quiet_days = int(parse_duration(cfg.quiet_period) // DAY)
        self.max_per_day = cfg.residual_max_per_day
        self._records: dict[str, NumberRecord] = {}
        self._released: set[str] = set()
        self.evicted = 0

    # --- index -------------------------------------------------------------------------------
    def load(self, records: Iterable[NumberRecord]) -> None:
        """Replace the index with records read from the store (startup, reload, resync)."""
        self._records = {r.number: r for r in records}
        self._released = {n for n, r in self._records.items() if r.state is NumberState.RELEASED}

    def apply(self, record: NumberRecord) -> None:
        """Adopt a record changed elsewhere (another node, the store)."""
        self._store(record)

    def is_released(self, called_number: str) -> bool:
        """Hot-path check: O(1), no I/O."""
        return called_number in self._released

    def released_numbers(self) -> frozenset[str]:
        return frozenset(self._released)

    def get(self, number: str) -> NumberRecord | None:
        return self._records.get(number)

    def records(self) -> list[NumberRecord]:
        return list(self._records.values())

    def _store(self, record: NumberRecord) -> None:
        if record.number not in self._records and len(self._records) >= self.cfg.max_numbers:
            self._evict()
        self._records[record.number] = record
        if record.state is NumberState.RELEASED:
            self._released.add(record.number)
        else:
            self._released.discard(record.number)

    def _evict(self) -> None:
        # Only history (reassigned numbers) may be forgotten; quarantined numbers must stay intercepted.
        history = [r for r in self._records.values() if r.state is not NumberState.RELEASED]
        if not history:
            raise LifecycleRefused(f"lifecycle table full ({self.cfg.max_numbers} released numbers)")
        oldest = min(history, key=lambda r: r.updated_at)
        del self._records[oldest.number]
        self.evicted += 1

    # --- operations --------------------------------------------------------------------------
    def release(self, number: str, now: float, customer: str = "") -> NumberRecord:
        old = self._records.get(number)
        if old is not None and old.state is NumberState.RELEASED:
            raise LifecycleRefused(f"{number} is already released (since {date_of(old.released_at or now)})")
        record = NumberRecord(
            number=number,
            state=NumberState.RELEASED,
            customer=customer or (old.customer if old else ""),
            released_at=now,
            assigned_at=old.assigned_at if old else None,
            overrides=list(old.overrides) if old else [],
            updated_at=now,
        )
        self._store(record)
        return record

    def record_traffic(self, number: str, now: float) -> NumberRecord | None:
        """Count one call/message to a released number; None when the number is not released."""
        record = self._records.get(number)
        if record is None or record.state is not NumberState.RELEASED:
            return None
        today = day_of(now)
        oldest_kept = today - self.quiet_days + 1
        daily = {d: c for d, c in record.daily.items() if d >= oldest_kept}
        daily[today] = daily.get(today, 0) + 1
        record.daily = daily
        record.total_residual += 1
        record.updated_at = now
        return record

    def status(self, number: str, now: float) -> NumberStatus | None:
        record = self._records.get(number)
        if record is None:
            return None
        if record.state is not NumberState.RELEASED or record.released_at is None:
            return NumberStatus(
                number=record.number,
                state=record.state,
                customer=record.customer,
                released_at=record.released_at,
                days_in_quarantine=0,
                residual_per_day={},
                total_residual=record.total_residual,
                eligible_at=None,
                reason="",
                overrides=list(record.overrides),
            )
        released_at = record.released_at
        today = day_of(now)
        window = [d for d in range(today - self.quiet_days + 1, today + 1) if d >= day_of(released_at)]
        per_day = {date_of(d * DAY): record.daily.get(d, 0) for d in window}
        noisy = [d for d in window if record.daily.get(d, 0) > self.max_per_day]
        quarantine_end = released_at + self.quarantine
        eligible_at = quarantine_end
        reasons: list[str] = []
        if now < quarantine_end:
            left = int(-(-(quarantine_end - now) // DAY))
            reasons.append(f"in quarantine until {date_of(quarantine_end)} ({left} days left)")
        if noisy:
            last = max(noisy)
            quiet_end = (last + self.quiet_days) * DAY
            eligible_at = max(eligible_at, quiet_end)
            reasons.append(
                f"residual traffic {record.daily[last]} on {date_of(last * DAY)} is above {self.max_per_day}/day; "
                f"needs {self.quiet_days} quiet days (until {date_of(quiet_end)})"
            )
        eligible = not reasons
        return NumberStatus(
            number=record.number,
            state=NumberState.ELIGIBLE if eligible else NumberState.RELEASED,
            customer=record.customer,
            released_at=released_at,
            days_in_quarantine=int((now - released_at) // DAY),
            residual_per_day=per_day,
            total_residual=record.total_residual,
            eligible_at=eligible_at,
            reason="; ".join(reasons),
            overrides=list(record.overrides),
        )

    def statuses(self, now: float) -> list[NumberStatus]:
        out = [self.status(n, now) for n in sorted(self._records)]
        return [s for s in out if s is not None]

    def available(self, now: float) -> list[NumberStatus]:
        return [s for s in self.statuses(now) if s.state is NumberState.ELIGIBLE]

    def assign(self, number: str, customer: str, now: float, force: bool = False, reason: str = "") -> NumberRecord:
        """Give a released number to `customer`; refused before eligibility unless forced with a reason."""
        if not customer:
            raise LifecycleRefused("a customer is required")
        status = self.status(number, now)
        if status is None:
            raise LifecycleRefused(f"{number} is not a released number (no lifecycle record)")
        if status.state not in (NumberState.RELEASED, NumberState.ELIGIBLE):
            raise LifecycleRefused(f"{number} is not released (state {status.state.value})")
        if force and not reason.strip():
            raise LifecycleRefused("--force needs --reason: the override is recorded")
        record = self._records[number]
        overrides = list(record.overrides)
        if status.state is not NumberState.ELIGIBLE:
            if not force:
                raise LifecycleRefused(f"{number} is not eligible for reassignment: {status.reason}")
            overrides = (overrides + [Override(at=now, customer=customer, reason=reason.strip(), refused_because=status.reason)])[-MAX_OVERRIDES:]
        new = NumberRecord(
            number=number,
            state=NumberState.REASSIGNED,
            customer=customer,
            released_at=record.released_at,
            assigned_at=now,
            daily={},
            total_residual=record.total_residual,
            overrides=overrides,
            updated_at=now,
        )
        self._store(new)
        return new
