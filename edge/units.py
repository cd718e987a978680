"""Config values with their units visible: durations ("500ms", "30s", "5m", "1h", "90d") and rates ("5/60s")."""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$", re.ASCII)
_FACTOR = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}


def parse_duration(text: str) -> float:
    """Seconds in a duration string; raises ValueError naming the accepted form."""
    m = _DURATION.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"invalid duration {text!r}: expected a number with ms, s, m, h or d (e.g. '30s')")
    seconds = float(m.group(1)) * _FACTOR[m.group(2)]
    if not math.isfinite(seconds):
        raise ValueError(f"invalid duration {text[:32]!r}: too large")
    return seconds


def parse_rate(text: str) -> tuple[int, float]:
    """(count, window seconds) from '5/60s'."""
    count, sep, window = text.partition("/") if isinstance(text, str) else ("", "", "")
    if not sep or not (count.strip().isascii() and count.strip().isdigit()):
        raise ValueError(f"invalid rate {text!r}: expected COUNT/WINDOW (e.g. '5/60s')")
    seconds = parse_duration(window)
    if seconds <= 0:
        raise ValueError(f"invalid rate {text!r}: window must be positive")
    return int(count), seconds
