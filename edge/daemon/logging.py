"""structlog set-up: JSON lines when stdout is not a TTY (journald), a console renderer otherwise.

Library loggers (aiohttp, asyncio) go through the same renderer, so every line is one event.
The JSON path is on every call's hot path (the `contact_decided` line), so it stays lean: msgspec
renders bytes straight into stdout's binary buffer (no str round trip), and the timestamp reuses
the formatted date and time of the current second.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Any

import msgspec
import structlog

_ENCODER = msgspec.json.Encoder(enc_hook=str)


def _json_bytes(obj: object, **_: object) -> bytes:
    """msgspec's encoder: several times faster than json.dumps for the per-call event line."""
    return _ENCODER.encode(obj)


def _json_dumps(obj: object, **_: object) -> str:
    return _ENCODER.encode(obj).decode()


class UtcStamper:
    """`timestamp`: ISO 8601 UTC with microseconds and a Z (2026-01-31T12:00:00.123456Z), like structlog's
    TimeStamper(fmt="iso", utc=True) but formatting the date and time once per second."""

    __slots__ = ("_second",)

    def __init__(self) -> None:
        self._second: tuple[int, str] = (-1, "")

    def __call__(self, _logger: Any, _name: str, event_dict: dict[str, Any]) -> dict[str, Any]:
        now = time.time()
        sec = int(now)
        cached = self._second  # one tuple, swapped whole: safe with the store's writer thread logging too
        if cached[0] != sec:
            cached = (sec, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(sec)))
            self._second = cached
        micro = min(round((now - sec) * 1_000_000), 999_999)  # as datetime rounds, never into the next second
        event_dict["timestamp"] = f"{cached[1]}.{micro:06d}Z"
        return event_dict


_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def setup_logging(level: str = "info", fmt: str = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    shared: list = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        UtcStamper(),
    ]
    text_renderer = (
        structlog.processors.JSONRenderer(serializer=_json_dumps) if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    binary = getattr(sys.stdout, "buffer", None) if use_json else None
    if binary is not None:
        renderer: Any = structlog.processors.JSONRenderer(serializer=_json_bytes)
        factory: Any = structlog.BytesLoggerFactory(file=binary)
    else:
        renderer, factory = text_renderer, structlog.WriteLoggerFactory(file=sys.stdout)
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer] if use_json else [*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=factory,
        cache_logger_on_first_use=True,
    )
    sys.stdout.flush()  # anything already written as text goes out before the first binary line
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.format_exc_info,
                        text_renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(_LEVELS[level], logging.INFO))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
