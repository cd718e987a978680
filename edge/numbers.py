"""Telephone number canonicalisation (E.164) shared by policy, STIR/SHAKEN and the dialplan.

phonenumbers costs ~40 µs per parse+validate, so results are memoised in a bounded LRU:
the same callers and called numbers recur constantly at an edge.
"""

from __future__ import annotations

from functools import lru_cache

import msgspec
import phonenumbers

DEFAULT_REGION = "US"
MAX_DIAL_STRING = 64  # E.164 is 15 digits; room for separators, extensions and a tel: context


class Number(msgspec.Struct, frozen=True):
    """A parsed telephone number: `e164` is '+' and digits, empty when unparseable."""

    raw: str
    e164: str

    @property
    def country(self) -> str:
        """ISO region code ('US'), '' when unknown; from phonenumbers' metadata on first use."""
        return number_country(self.e164)

    @property
    def valid(self) -> bool:
        """phonenumbers' validity (allocated ranges); computed on first use, it is the costly part."""
        return number_valid(self.e164)

    @property
    def digits(self) -> str:
        """E.164 without '+', the SHAKEN `tn` canonical form (RFC 8224 §8.3)."""
        return self.e164[1:] if self.e164 else ""


def _strip(raw: str) -> str:
    # Visual separators allowed in tel URIs (RFC 3966 §5.1.1) and common dial strings.
    return "".join(ch for ch in raw if ch not in " -.()")


@lru_cache(maxsize=65536)
def parse_number(raw: str, region: str = DEFAULT_REGION) -> Number:
    """Parse a user part or dial string into E.164; never raises.

    Only ASCII is a number: phonenumbers would quietly fold full-width or Arabic-Indic digits, but a
    SIP user part carrying them is no telephone number any carrier routes, and a rule stored from one
    would never match the ASCII form that arrives.
    """
    s = _strip(raw)
    if not s or not s.isascii() or len(s) > MAX_DIAL_STRING:
        return Number(raw, "")
    if s[0] != "+" and s.isdigit() and len(s) > 10 and not s.startswith("0"):
        # Carriers commonly send E.164 without '+' (e.g. 12025550123).
        s = "+" + s
    if s[0] == "+" and s[1:].isdigit() and 8 <= len(s) <= 16 and s[1] != "0":
        return Number(raw, s)  # already E.164: no metadata lookup on the per-call path
    try:
        pn = phonenumbers.parse(s, region)
    except phonenumbers.NumberParseException:
        return Number(raw, "")
    return Number(raw, phonenumbers.format_number(pn, phonenumbers.PhoneNumberFormat.E164))


@lru_cache(maxsize=65536)
def number_country(e164: str) -> str:
    """ISO region of an E.164 number ('' when unknown). Never raises."""
    if not e164:
        return ""
    try:
        return phonenumbers.region_code_for_number(phonenumbers.parse(e164, None)) or ""
    except phonenumbers.NumberParseException:
        return ""


@lru_cache(maxsize=65536)
def number_valid(e164: str) -> bool:
    """Is this E.164 number in an allocated range (phonenumbers.is_valid_number)? Never raises."""
    if not e164:
        return False
    try:
        return phonenumbers.is_valid_number(phonenumbers.parse(e164, None))
    except phonenumbers.NumberParseException:
        return False


def canonical_tn(raw: str, region: str = DEFAULT_REGION) -> str:
    """Digits-only canonical form for comparing SHAKEN `tn` values; falls back to the digits given."""
    n = parse_number(raw, region)
    if n.e164:
        return n.digits
    return "".join(ch for ch in raw if "0" <= ch <= "9")
