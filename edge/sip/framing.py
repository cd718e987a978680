"""Stream framing for SIP over TCP/TLS (RFC 3261 §18.3) and CRLF keep-alives (RFC 5626 §3.5.1).

On a stream, Content-Length is mandatory and cuts one message from the next. A double CRLF
between messages is a keep-alive ping answered by a single CRLF pong.
"""

from __future__ import annotations

import re

from edge.sip.errors import FramingError

_CLEN = re.compile(rb"^(?:content-length|l)[ \t]*:[ \t]*([0-9]+)[ \t]*$", re.IGNORECASE | re.MULTILINE)


class StreamFramer:
    """Feed bytes, get complete messages; bounded by `max_message`.

    Linear in the bytes fed, however they are split: the search for the end of the headers resumes
    where the last one stopped, and a message whose headers are read waits for its body without
    being scanned again (a peer sending one byte at a time costs O(n), not O(n²))."""

    __slots__ = ("buf", "max_message", "pings", "_scanned", "_total")

    def __init__(self, max_message: int = 65536) -> None:
        self.buf = bytearray()
        self.max_message = max_message
        self.pings = 0  # keep-alive pings seen since last read, each needs a CRLF pong
        self._scanned = 0  # bytes of the pending message already searched for the header end
        self._total = 0  # length of the pending message once its headers are read, else 0

    def feed(self, data: bytes) -> list[bytes]:
        """Return every complete message now in the buffer; raise FramingError on a broken stream."""
        self.buf += data
        out: list[bytes] = []
        buf = self.buf
        while buf:
            if self._total:  # headers already read: wait for the body
                if len(buf) < self._total:
                    break
                total, self._total, self._scanned = self._total, 0, 0
                out.append(bytes(buf[:total]))
                del buf[:total]
                continue
            # Keep-alives and stray CRLFs between messages.
            if buf[:4] == b"\r\n\r\n":
                del buf[:4]
                self.pings += 1
                continue
            if buf[:2] == b"\r\n":
                if len(buf) < 4 and all(c in (13, 10) for c in buf):
                    break  # may become a ping
                del buf[:2]
                continue
            end = buf.find(b"\r\n\r\n", self._scanned)
            if end < 0:
                if len(buf) > self.max_message:
                    raise FramingError("Message too large")
                self._scanned = max(0, len(buf) - 3)  # a terminator may straddle this read and the next
                break
            head = bytes(buf[:end])
            m = _CLEN.search(head)
            if m is None:
                raise FramingError("Missing Content-Length on stream")
            digits = m.group(1)
            if len(digits) > 10:  # int() would refuse over 4300 digits; anything this long is too large anyway
                raise FramingError("Message too large")
            clen = int(digits)
            total = end + 4 + clen
            if total > self.max_message:
                raise FramingError("Message too large")
            if len(buf) < total:
                self._total = total
                break
            self._scanned = 0
            out.append(bytes(buf[:total]))
            del buf[:total]
        return out

    def take_pings(self) -> int:
        n, self.pings = self.pings, 0
        return n
