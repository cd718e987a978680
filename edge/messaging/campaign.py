"""Campaign detection: the same (normalised) body sent by many senders to many recipients within a window.

Memory is fixed whatever the traffic: a count-min sketch counts, per body hash, how many distinct
senders and distinct recipients sent or received it; distinctness comes from a Bloom filter of
(body, sender) and (body, recipient) pairs. Both live in two generations (current and previous
window) that rotate every `window` seconds, so an estimate covers between one and two windows.
Count-min only over-estimates and the Bloom filter only under-counts (a false positive hides a new
pair), with error bounds set by `width`, `depth` and `bloom_bits`.

The body is normalised like text rules (case, spacing) and digits are folded to '0' so per-recipient
codes or amounts ("your code 4411") do not split one campaign into many.
"""

from __future__ import annotations

import hashlib
import re

import msgspec

from edge.messaging.text import normalise_text

_DIGITS = re.compile(r"\d+")


def body_key(body: str) -> bytes:
    """16-byte hash of the body's campaign form."""
    return hashlib.blake2b(_DIGITS.sub("0", normalise_text(body)).encode(), digest_size=16).digest()


class CampaignEstimate(msgspec.Struct, frozen=True):
    senders: int
    recipients: int


class _Generation:
    __slots__ = ("senders", "recipients", "bloom", "started")

    def __init__(self, width: int, depth: int, bloom_bits: int, started: float) -> None:
        self.senders = [[0] * width for _ in range(depth)]
        self.recipients = [[0] * width for _ in range(depth)]
        self.bloom = bytearray(bloom_bits // 8)
        self.started = started


class CampaignSketch:
    def __init__(self, window: float, width: int = 4096, depth: int = 4, bloom_bits: int = 1 << 21) -> None:
        if width < 1 or depth < 1 or depth > 8 or bloom_bits < 64:
            raise ValueError("sketch width >= 1, 1 <= depth <= 8, bloom_bits >= 64")
        self.window = window
        self.width = width
        self.depth = depth
        self.bits = bloom_bits - bloom_bits % 8
        self._cur = _Generation(width, depth, self.bits, 0.0)
        self._prev: _Generation | None = None

    def _rotate(self, now: float) -> None:
        cur = self._cur
        if now - cur.started < self.window:
            return
        if now - cur.started < 2 * self.window:
            self._prev = cur
        else:
            self._prev = None  # silent for two windows: nothing recent to remember
        self._cur = _Generation(self.width, self.depth, self.bits, now)

    def _cells(self, key: bytes) -> list[int]:
        return [int.from_bytes(key[2 * i: 2 * i + 2] + key[8 + i: 9 + i], "little") % self.width for i in range(self.depth)]

    def _bloom_add(self, gen: _Generation, pair: bytes) -> bool:
        """Set the pair's bits in `gen`; True when it was (probably) absent from both generations."""
        h = hashlib.blake2b(pair, digest_size=12).digest()
        idx = [int.from_bytes(h[4 * i: 4 * i + 4], "little") % self.bits for i in range(3)]
        seen = all(gen.bloom[i >> 3] & (1 << (i & 7)) for i in idx)
        prev = self._prev
        if not seen and prev is not None:
            seen = all(prev.bloom[i >> 3] & (1 << (i & 7)) for i in idx)
        for i in idx:
            gen.bloom[i >> 3] |= 1 << (i & 7)
        return not seen

    def observe(self, body: str, sender: str, recipient: str, now: float) -> CampaignEstimate:
        """Count one message and return the body's estimate including it."""
        self._rotate(now)
        key = body_key(body)
        cells = self._cells(key)
        gen = self._cur
        if self._bloom_add(gen, b"s" + key + sender.encode()):
            for row, c in zip(gen.senders, cells):
                row[c] += 1
        if self._bloom_add(gen, b"r" + key + recipient.encode()):
            for row, c in zip(gen.recipients, cells):
                row[c] += 1
        return self._estimate(cells)

    def estimate(self, body: str, now: float) -> CampaignEstimate:
        self._rotate(now)
        return self._estimate(self._cells(body_key(body)))

    def _estimate(self, cells: list[int]) -> CampaignEstimate:
        def est(rows_cur: list[list[int]], rows_prev: list[list[int]] | None) -> int:
            best = None
            for d, c in enumerate(cells):
                v = rows_cur[d][c] + (rows_prev[d][c] if rows_prev is not None else 0)
                best = v if best is None or v < best else best
            return best or 0

        prev = self._prev
        return CampaignEstimate(
            est(self._cur.senders, prev.senders if prev else None),
            est(self._cur.recipients, prev.recipients if prev else None),
        )
