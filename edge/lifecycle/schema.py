"""`[lifecycle]` settings: quarantine length, residual-traffic threshold, what callers of released numbers get.

The quarantine floor of 45 days follows the FCC aging rule for disconnected numbers (47 CFR §52.15(f)(1)(ii)).
"""

from __future__ import annotations

import msgspec

from edge.units import parse_duration

QUARANTINE_FLOOR_DAYS = 45
RELEASED_ACTIONS = ("intercept", "404", "410")


class LifecycleConfig(msgspec.Struct, forbid_unknown_fields=True):
    quarantine: str = "90d"  # minimum time a released number is held back
    residual_max_per_day: int = 2  # calls+messages per day still counted as quiet
    quiet_period: str = "14d"  # every day of this trailing window must be quiet
    released_action: str = "intercept"  # 'intercept' | '404' | '410'
    max_numbers: int = 1_000_000  # records kept; oldest reassigned history evicted beyond this


def validate_lifecycle(cfg: LifecycleConfig, prefix: str = "$.lifecycle") -> list[tuple[str, str]]:
    errors: list[tuple[str, str]] = []
    quarantine = quiet = None
    try:
        quarantine = parse_duration(cfg.quarantine)
    except ValueError as exc:
        errors.append((f"{prefix}.quarantine", str(exc)))
    else:
        if quarantine < QUARANTINE_FLOOR_DAYS * 86400:
            errors.append((f"{prefix}.quarantine", f"must be at least {QUARANTINE_FLOOR_DAYS}d (regulatory floor for aging numbers)"))
    try:
        quiet = parse_duration(cfg.quiet_period)
    except ValueError as exc:
        errors.append((f"{prefix}.quiet_period", str(exc)))
    else:
        if quiet < 86400 or quiet % 86400:
            errors.append((f"{prefix}.quiet_period", "must be a whole number of days, at least 1d"))
    if quarantine is not None and quiet is not None and quiet > quarantine:
        errors.append((f"{prefix}.quiet_period", "must not be longer than the quarantine"))
    if cfg.residual_max_per_day < 0:
        errors.append((f"{prefix}.residual_max_per_day", "must be 0 or more"))
    if cfg.released_action not in RELEASED_ACTIONS:
        errors.append((f"{prefix}.released_action", f"must be one of {', '.join(RELEASED_ACTIONS)}"))
    if cfg.max_numbers < 1:
        errors.append((f"{prefix}.max_numbers", "must be at least 1"))
    return errors
