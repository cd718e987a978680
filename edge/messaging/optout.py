"""Opt-out, opt-in and help keywords (CTIA messaging principles; the FCC's consent-revocation words),
and the book of who opted out of which campaign.

A keyword counts only as the whole message: case-insensitive, surrounding spaces and trailing
punctuation ignored ("Stop!", " stop ", "opt out"). STOPALL opts out of every campaign of the brand
that owns the number written to; the others apply to the one campaign of that number.
"""

from __future__ import annotations

import enum

import msgspec

from edge.messaging.text import normalise_text


class Keyword(str, enum.Enum):
    STOP = "stop"
    STOP_ALL = "stopall"
    START = "start"
    HELP = "help"


_WORDS = {
    "stop": Keyword.STOP, "unsubscribe": Keyword.STOP, "cancel": Keyword.STOP, "end": Keyword.STOP,
    "quit": Keyword.STOP, "revoke": Keyword.STOP, "optout": Keyword.STOP,
    "stopall": Keyword.STOP_ALL,
    "start": Keyword.START, "unstop": Keyword.START, "yes": Keyword.START,
    "help": Keyword.HELP, "info": Keyword.HELP,
}
_MAX_KEYWORD = 32


def keyword(body: str) -> Keyword | None:
    """The keyword a whole message is, or None."""
    if len(body) > _MAX_KEYWORD * 2:
        return None
    word = normalise_text(body).rstrip(".!?,;:'\"")
    return _WORDS.get(word)


class OptOut(msgspec.Struct, frozen=True):
    """One recipient's opt-out from one campaign, as stored and shared between nodes."""

    campaign: str
    recipient: str  # E.164
    at: float
    keyword: str = "stop"


class OptOutBook:
    """(campaign, recipient) -> opt-out; capped: past `cap` new opt-outs are still returned for the
    store to persist but counted in `overflow` (and enforced after the next start-up load)."""

    def __init__(self, cap: int = 1_000_000) -> None:
        self.cap = cap
        self._by_key: dict[tuple[str, str], OptOut] = {}
        self.overflow = 0

    def add(self, o: OptOut) -> None:
        key = (o.campaign, o.recipient)
        if key not in self._by_key and len(self._by_key) >= self.cap:
            self.overflow += 1
            return
        self._by_key[key] = o

    def remove(self, campaign: str, recipient: str) -> bool:
        return self._by_key.pop((campaign, recipient), None) is not None

    def opted_out(self, campaign: str, recipient: str) -> OptOut | None:
        return self._by_key.get((campaign, recipient))

    def __len__(self) -> int:
        return len(self._by_key)

    def all(self) -> list[OptOut]:
        return list(self._by_key.values())
