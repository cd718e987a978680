"""Call-ID affinity for several worker processes: which worker owns a raw SIP message.

Read from the raw bytes before any parsing, in one linear pass over the header section:
- a response whose top Via branch carries a worker mark (`z9hG4bK` + `w<index>x`, minted by that
  worker's UserAgent) belongs to that worker: this covers the edge's own requests (OPTIONS health
  pings, texts it originates, screening B-legs) whatever their Call-ID;
- anything else by a stable hash of its Call-ID (`slot`: CRC-32, then a multiplicative mix, since
  CRC-32 alone is linear and sends sequential Call-IDs such as sipp's mostly to one worker) (`Call-ID:` or compact `i:`), with leading
  `b-` prefixes dropped so a screening call's B-leg (`b-` + the A-leg's Call-ID) stays with its A-leg;
- a message without a Call-ID goes to worker 0, whose parser answers or drops it.
"""

from __future__ import annotations

import re
import zlib

# One regex search each over the header section: every match starts at a line start, so the runs of
# blanks they scan never overlap and the search is linear in the message size.
_CALL_ID = re.compile(rb"\n(?:call-id|i)[ \t]*:[ \t]*([^\r\n]*)", re.IGNORECASE)
_TOP_VIA_BRANCH = re.compile(rb"\n(?:via|v)[ \t]*:[^\r\n,]*?;[ \t]*branch=z9hG4bKw([0-9]{1,2})x", re.IGNORECASE)
_VIA = re.compile(rb"\n(?:via|v)[ \t]*:", re.IGNORECASE)


def branch_mark(index: int) -> str:
    """What worker `index` puts right after the magic cookie of every branch it mints."""
    return f"w{index}x"


def _header_end(data: bytes) -> int:
    end = data.find(b"\r\n\r\n")
    return len(data) if end < 0 else end


def call_id_key(data: bytes) -> bytes | None:
    """The Call-ID a worker is chosen by (`b-` prefixes dropped), None when there is none."""
    m = _CALL_ID.search(data, 0, _header_end(data))
    if m is None:
        return None
    value = m.group(1).rstrip(b" \t")
    start = 0
    while value.startswith(b"b-", start):
        start += 2
    return value[start:]


def marked_worker(data: bytes) -> int | None:
    """The worker index in the top Via's branch mark of a response; None when unmarked."""
    if not data.startswith(b"SIP/2.0 "):
        return None
    end = _header_end(data)
    via = _VIA.search(data, 0, end)
    if via is None:
        return None
    m = _TOP_VIA_BRANCH.match(data, via.start(), end)
    return int(m.group(1)) if m is not None else None


def owner(data: bytes, workers: int) -> int:
    """The index (0 <= i < workers) of the worker that handles `data`."""
    if workers <= 1:
        return 0
    marked = marked_worker(data)
    if marked is not None and marked < workers:
        return marked
    key = call_id_key(data)
    if key is None:
        return 0
    return slot(key, workers)


def slot(key: bytes, workers: int) -> int:
    """The worker of a Call-ID key: the high bits of CRC-32 times the golden-ratio constant."""
    return (((zlib.crc32(key) * 0x9E3779B1) & 0xFFFFFFFF) >> 16) % workers
