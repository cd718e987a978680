"""The daemon's log set-up: one JSON event per line on stdout, call-id bound, ISO UTC timestamps,
structlog events and library (stdlib) records interleaved in order, exceptions inside their event."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import textwrap

from edge.daemon.logging import UtcStamper

SCRIPT = textwrap.dedent(
    """
    import logging, structlog
    from edge.call.activity import Activity, log_contact_decided
    from edge.daemon.logging import setup_logging
    print("before set-up", flush=True)
    setup_logging("info", "json")
    log = structlog.get_logger("edge.proxy")
    structlog.contextvars.bind_contextvars(call_id="abc@host")
    log_contact_decided(log, Activity(id="1", call_id="abc@host", kind="call", received_at=1.0,
                                      calling_number="+13035550100", called_number="+12025550100", decision="allow"), 200)
    logging.getLogger("aiohttp.server").warning("library says %s", "hi")
    log.debug("not shown at info")
    try:
        1 / 0
    except ZeroDivisionError:
        log.exception("core_error", detail="caf\\u00e9 \\u2603")
    """
)


def test_json_logging_one_event_per_line_in_order_with_call_id_bound():
    out = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, check=True, timeout=60).stdout.decode()
    lines = out.splitlines()
    assert lines[0] == "before set-up"
    events = [json.loads(line) for line in lines[1:]]
    assert [e["event"] for e in events] == ["contact_decided", "library says hi", "core_error"]
    decided, library, error = events
    assert decided["call_id"] == "abc@host" and decided["status"] == 200 and decided["decision"] == "allow"
    assert decided["level"] == "info" and library["level"] == "warning" and error["level"] == "error"
    assert library["call_id"] == "abc@host" and library["logger"] == "aiohttp.server"
    assert "ZeroDivisionError" in error["exception"] and error["detail"] == "caf\u00e9 \u2603"
    for e in events:
        assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z", e["timestamp"]), e["timestamp"]


def test_utc_stamper_matches_the_clock_across_a_second_boundary(monkeypatch):
    import edge.daemon.logging as mod

    stamp = UtcStamper()
    for now, want in ((1767225599.999999, "2025-12-31T23:59:59.999999Z"), (1767225600.0, "2026-01-01T00:00:00.000000Z"),
                      (1767225600.25, "2026-01-01T00:00:00.250000Z"), (1767225661.5, "2026-01-01T00:01:01.500000Z"),
                      (1767225661.000001, "2026-01-01T00:01:01.000001Z")):
        monkeypatch.setattr(mod.time, "time", lambda now=now: now)
        assert stamp(None, "info", {})["timestamp"] == want
