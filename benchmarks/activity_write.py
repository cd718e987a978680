"""CPU cost of what every call leaves behind besides SIP: its activity written to the SQLite store twice
(answered, then ended, in different batches, as in production where calls outlast a batch) and its
`contact_decided` JSON log line. Process CPU time (every thread, the store's writer included), so a busy
machine inflates the figures less than wall time would.

    .venv/bin/python -m benchmarks.activity_write [--calls 20000] [--batch 50]
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import sys
import tempfile
import time
from pathlib import Path

import structlog

from edge.call.activity import Activity, log_contact_decided, new_activity_id
from edge.daemon.logging import setup_logging
from edge.store.sqlite import SqliteStore


def activities(calls: int) -> list[Activity]:
    return [
        Activity(id=new_activity_id(1000.0 + i / 1000), call_id=f"call-{i}@192.0.2.5", kind="call",
                 received_at=1000.0 + i / 1000, calling_number=f"+1303555{i % 10000:04d}", called_number="+12025550100",
                 source="192.0.2.5:5080", carrier="c", customer="acme", decision="allow", rule_id="default",
                 stir_status="absent", target="pbx-a#0")
        for i in range(calls)
    ]


async def store_cpu(calls: int, batch: int, directory: Path) -> float:
    """CPU seconds for `calls` activities queued and flushed twice (answered, ended)."""
    store = await SqliteStore.open(directory / "edge.db", batch_interval=3600.0, batch_max=10**9, retention=None)
    acts = activities(calls)
    t = time.process_time()
    for field, after in (("answered_at", 1), ("ended_at", 30)):  # each call written when answered, then ended
        for i, a in enumerate(acts, 1):
            setattr(a, field, a.received_at + after)
            store.queue_activity(a)
            if i % batch == 0:
                await store.flush()
        await store.flush()
    cpu = time.process_time() - t
    await store.close()
    return cpu


def log_cpu(calls: int) -> float:
    """CPU seconds for `calls` contact_decided lines rendered as the daemon does (JSON) into /dev/null."""
    acts = activities(min(calls, 1000))
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        setup_logging("info", "json")
        log = structlog.get_logger("edge.proxy")
        t = time.process_time()
        for i in range(calls):
            log_contact_decided(log, acts[i % len(acts)], 200)
        cpu = time.process_time() - t
        sys.stdout.flush()
    return cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calls", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=50, help="activities per store transaction")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as d, open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        store = asyncio.run(store_cpu(a.calls, a.batch, Path(d)))  # (the schema migration logs to stdout)
    line = log_cpu(a.calls)
    sys.stdout.write(f"command: {' '.join(sys.argv)}\n")
    sys.stdout.write(f"store: {store / a.calls * 1e6:.1f} us CPU per call (activity written twice, {a.batch} per batch)\n")
    sys.stdout.write(f"log line: {line / a.calls * 1e6:.1f} us CPU per contact_decided line\n")


if __name__ == "__main__":
    main()
