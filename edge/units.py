"""Config values with their units visible: durations ("500ms", "30s", "5m", "1h", "90d") and rates ("5/60s").

The one parser for both, shared by the daemon config, the dialplans, the flood guard and the CLI, so a
value that validates in one place means the same everywhere. Callers with a narrower range (a rate
window of at least a second for the Spam Detective) pass the bounds; the grammar never differs.
"""

from __future__ import annotations

import math
import re

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$", re.ASCII)
_RATE = re.compile(r"^\s*(\d{1,9})\s*/\s*(\d{1,9}(?:\.\d{1,9})?)?\s*(ms|s|m|h|d)\s*$", re.ASCII)
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


def _span(seconds: float) -> str:
    """A bound for an error message in the largest unit that divides it ('1s', '24h', '2d')."""
    for unit in ("d", "h", "m", "s"):
        f = _FACTOR[unit]
        if seconds >= f and seconds % f == 0 and not (unit == "d" and seconds == f):
            return f"{seconds / f:g}{unit}"
    return f"{seconds * 1000:g}ms"


def parse_rate(text: str, min_window: float = 0.0, max_window: float = math.inf) -> tuple[int, float]:
    """(count, window seconds) from '<count>/<duration>': '5/60s', '100/1h', '10/m' (one minute),
    '1/500ms'. The count is at least 1; the window is positive and, when bounds are given, within
    [min_window, max_window]. Raises ValueError with the reason."""
    m = _RATE.match(text) if isinstance(text, str) else None
    if m is None:
        raise ValueError(f"invalid rate {text!r}: expected '<count>/<duration>' such as '5/60s'")
    count = int(m.group(1))
    window = float(m.group(2) or 1) * _FACTOR[m.group(3)]
    if count < 1:
        raise ValueError(f"invalid rate {text!r}: count must be at least 1")
    if window <= 0:
        raise ValueError(f"invalid rate {text!r}: window must be positive")
    if not min_window <= window <= max_window:
        raise ValueError(f"invalid rate {text!r}: window must be between {_span(min_window)} and {_span(max_window)}")
    return count, window


__all__ = ["parse_duration", "parse_rate"]
