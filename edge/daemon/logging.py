"""structlog set-up: JSON lines when stdout is not a TTY (journald), a console renderer otherwise.

Library loggers (aiohttp, asyncio) go through the same renderer, so every line is one event.
"""

from __future__ import annotations

import logging
import sys

import msgspec
import structlog

def _json_dumps(obj: object, **_: object) -> str:
    """msgspec's encoder: several times faster than json.dumps for the per-call event line."""
    return _ENCODER.encode(obj).decode()


_ENCODER = msgspec.json.Encoder(enc_hook=str)

_LEVELS = {"debug": logging.DEBUG, "info": logging.INFO, "warning": logging.WARNING, "error": logging.ERROR}


def setup_logging(level: str = "info", fmt: str = "auto") -> None:
    use_json = fmt == "json" or (fmt == "auto" and not sys.stdout.isatty())
    shared: list = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]
    renderer = (
        structlog.processors.JSONRenderer(serializer=_json_dumps) if use_json else structlog.dev.ConsoleRenderer(colors=False)
    )
    structlog.configure(
        processors=[*shared, structlog.processors.format_exc_info, renderer] if use_json else [*shared, renderer],
        wrapper_class=structlog.make_filtering_bound_logger(_LEVELS[level]),
        logger_factory=structlog.WriteLoggerFactory(file=sys.stdout),
        cache_logger_on_first_use=True,
    )
    handler = logging.StreamHandler(sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=[structlog.stdlib.add_logger_name, *shared],
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, structlog.processors.format_exc_info, renderer],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(max(_LEVELS[level], logging.INFO))
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)
