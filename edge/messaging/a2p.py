"""Outbound A2P 10DLC: registered brands and campaigns, the throughput each campaign gets per
destination carrier, and shaping against it.

Carriers limit registered 10DLC traffic in two ways, both kept in the config table (`[[messaging.tier]]`,
defaults after the published carrier tiers): a per-minute rate per campaign (AT&T's model, which
platforms commonly apply to carriers that publish no figure) and a daily cap per brand shared by all
its campaigns (T-Mobile's, reset at midnight Pacific). The tier comes from the campaign's use case
and the brand's vetting (trust) score.

Shaping is GCRA (a token bucket in virtual-time form) per campaign and carrier: a message within
the bucket goes at once; a burst beyond it is scheduled at the bucket's rate (the queue is the set
of scheduled sends, bounded in length and in wait); beyond that it is refused with `Retry-After`.
A sending number that belongs to no registered campaign is refused, as carriers drop unregistered
A2P traffic. State is per (campaign, carrier) and per (brand, carrier): bounded by configuration.
"""

from __future__ import annotations

import datetime as _dt
import enum
import math
from zoneinfo import ZoneInfo

import msgspec


_GSM7 = frozenset(
    "@£$¥èéùìòÇ\nØø\rÅåΔ_ΦΓΛΩΠΨΣΘΞÆæßÉ !\"#¤%&'()*+,-./0123456789:;<=>?¡ABCDEFGHIJKLMNOPQRSTUVWXYZÄÖÑÜ§¿"
    "abcdefghijklmnopqrstuvwxyzäöñüà"
)
_GSM7_EXT = frozenset("^{}\\[~]|€\f")  # two septets each (escape + character)


def segments(text: str) -> int:
    """SMS segments a text needs (carriers count per-minute throughput per segment): GSM 03.38
    7-bit text 160 septets in one, 153 per part when concatenated; anything else UCS-2, 70 / 67."""
    if all(c in _GSM7 or c in _GSM7_EXT for c in text):
        units, single, part = sum(2 if c in _GSM7_EXT else 1 for c in text), 160, 153
    else:
        units, single, part = len(text.encode("utf-16-le")) // 2, 70, 67
    return 1 if units <= single else math.ceil(units / part)


class UseCaseKind(str, enum.Enum):
    DECLARED = "declared"  # one standard use case (2FA, account notifications, customer care, ...)
    MIXED = "mixed"  # mixed or marketing
    LOW_VOLUME = "low_volume"  # basic / low-volume mixed


MIXED_USE_CASES = frozenset({"mixed", "marketing"})
LOW_VOLUME_USE_CASES = frozenset({"low_volume", "low_volume_mixed", "sole_proprietor"})


def use_case_kind(use_case: str) -> UseCaseKind:
    u = use_case.strip().lower()
    if u in LOW_VOLUME_USE_CASES:
        return UseCaseKind.LOW_VOLUME
    if u in MIXED_USE_CASES:
        return UseCaseKind.MIXED
    return UseCaseKind.DECLARED


class Tier(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One row of the throughput table: a message class and what carriers allow it."""

    message_class: str
    kind: UseCaseKind
    min_trust: int
    max_trust: int
    per_minute: int  # per campaign (per-minute carriers)
    daily_cap: int  # per brand (daily-cap carriers)


DEFAULT_TIERS: tuple[Tier, ...] = (
    Tier("A", UseCaseKind.DECLARED, 76, 100, 3600, 200_000),
    Tier("B", UseCaseKind.MIXED, 86, 100, 3600, 200_000),
    Tier("C", UseCaseKind.DECLARED, 51, 75, 600, 40_000),
    Tier("D", UseCaseKind.MIXED, 68, 85, 600, 40_000),
    Tier("E", UseCaseKind.DECLARED, 16, 50, 60, 10_000),
    Tier("F", UseCaseKind.MIXED, 26, 65, 60, 10_000),
    Tier("T", UseCaseKind.LOW_VOLUME, 15, 25, 12, 2_000),
)


def tier_for(tiers: tuple[Tier, ...] | list[Tier], use_case: str, trust: int) -> Tier | None:
    """The row for a use case and trust score: same kind with the score in range; else the
    most restrictive row of that kind (a score below every range earns the lowest tier)."""
    kind = use_case_kind(use_case)
    rows = [t for t in tiers if t.kind is kind]
    for t in rows:
        if t.min_trust <= trust <= t.max_trust:
            return t
    if not rows:
        return None
    return min(rows, key=lambda t: (t.per_minute, t.daily_cap))


class CarrierModel(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """A destination carrier and which of the tier's limits it enforces; `prefixes` pick it by the
    recipient's number (longest match; number portability is out of scope, see README)."""

    name: str
    prefixes: list[str] = []
    per_minute: bool = True
    daily_cap: bool = False


class Brand(msgspec.Struct, frozen=True):
    id: str
    entity_type: str
    trust_score: int
    customer: str = ""


class Campaign(msgspec.Struct, frozen=True):
    id: str
    brand: Brand
    use_case: str
    numbers: tuple[str, ...]
    tier: Tier
    help_text: str = ""
    stop_text: str = ""
    start_text: str = ""


class Throughput(msgspec.Struct, frozen=True):
    """What one campaign may send to one carrier."""

    per_minute: int  # 0: not limited per minute by this carrier
    daily_cap: int  # 0: no daily cap at this carrier (per brand)


class ShapeVerdict(enum.Enum):
    SEND = "send"  # forward at `send_at` (== now when within the bucket)
    REFUSE = "refuse"


class Shaped(msgspec.Struct, frozen=True):
    verdict: ShapeVerdict
    send_at: float = 0.0
    status: int = 0
    reason: str = ""
    retry_after: int = 0
    queued: bool = False
    throughput: Throughput | None = None


class ShaperSettings(msgspec.Struct, frozen=True):
    burst: int = 1  # messages a bucket lets through back to back
    queue_size: int = 100  # scheduled sends per bucket
    max_wait: float = 20.0  # seconds a queued message may wait (below a non-INVITE transaction's 32 s)
    reset_tz: str = "America/Los_Angeles"  # daily caps reset at midnight here


class _Bucket:
    __slots__ = ("tat",)

    def __init__(self) -> None:
        self.tat = 0.0  # theoretical arrival time of the next conforming message


class Shaper:
    def __init__(self, carriers: list[CarrierModel], settings: ShaperSettings | None = None) -> None:
        self.settings = settings or ShaperSettings()
        self.carriers = {c.name: c for c in carriers}
        self._prefixes = sorted(((p, c.name) for c in carriers for p in c.prefixes), key=lambda x: -len(x[0]))
        self._default = next((c.name for c in carriers if not c.prefixes), carriers[0].name if carriers else "other")
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._daily: dict[tuple[str, str], tuple[int, int]] = {}  # (brand, carrier) -> (day ordinal, count)
        self._tz = ZoneInfo(self.settings.reset_tz)
        self.refused = 0
        self.queued = 0
        self.sent = 0

    def carrier_for(self, recipient: str) -> str:
        for p, name in self._prefixes:
            if recipient.startswith(p):
                return name
        return self._default

    def throughput(self, campaign: Campaign, carrier: str) -> Throughput:
        model = self.carriers.get(carrier)
        if model is None:
            return Throughput(campaign.tier.per_minute, 0)
        return Throughput(campaign.tier.per_minute if model.per_minute else 0,
                          campaign.tier.daily_cap if model.daily_cap else 0)

    def _day(self, now: float) -> tuple[int, float]:
        """(day ordinal in the reset zone, seconds until its next midnight)."""
        local = _dt.datetime.fromtimestamp(now, self._tz)
        nxt = _dt.datetime.combine(local.date() + _dt.timedelta(days=1), _dt.time(), self._tz)
        return local.date().toordinal(), max(1.0, nxt.timestamp() - now)

    def admit(self, campaign: Campaign, recipient: str, now: float, cost: int = 1) -> Shaped:
        """Decide one outbound message of `campaign` to `recipient` at `now` (counts it when sent);
        `cost`: its SMS segments, each one unit of the per-minute rate."""
        carrier = self.carrier_for(recipient)
        tp = self.throughput(campaign, carrier)
        s = self.settings
        daily_key = (campaign.brand.id, carrier)
        if tp.daily_cap:
            day, until_reset = self._day(now)
            d, count = self._daily.get(daily_key, (day, 0))
            if d != day:
                count = 0
            if count >= tp.daily_cap:
                self.refused += 1
                return Shaped(ShapeVerdict.REFUSE, status=503, retry_after=math.ceil(until_reset), throughput=tp,
                              reason=f"daily cap reached: brand {campaign.brand.id} at {carrier} ({tp.daily_cap}/day)")
        send_at = now
        if tp.per_minute:
            interval = 60.0 / tp.per_minute
            tau = (s.burst - 1) * interval
            b = self._buckets.get((campaign.id, carrier))
            if b is None:
                b = self._buckets[(campaign.id, carrier)] = _Bucket()
            tat = max(b.tat, now)
            send_at = max(now, tat - tau)
            wait = send_at - now
            ahead = math.ceil(wait / interval - 1e-9) if wait > 0 else 0
            if wait > s.max_wait or ahead > s.queue_size:
                self.refused += 1
                # When this message would fit both bounds again (the queue drains one per interval).
                later = max(wait - s.max_wait, (ahead - s.queue_size) * interval)
                return Shaped(ShapeVerdict.REFUSE, status=503, retry_after=max(1, math.ceil(later - 1e-9)),
                              throughput=tp,
                              reason=f"campaign {campaign.id} over its {tp.per_minute}/min at {carrier}; queue full")
            b.tat = tat + interval * max(1, cost)
        if tp.daily_cap:
            day, _ = self._day(now)
            d, count = self._daily.get(daily_key, (day, 0))
            self._daily[daily_key] = (day, (count if d == day else 0) + 1)
        queued = send_at > now
        if queued:
            self.queued += 1
        self.sent += 1
        return Shaped(ShapeVerdict.SEND, send_at=send_at, queued=queued, throughput=tp)


class CampaignRegistry:
    """Sending number -> campaign, from every dialplan's `[[campaigns]]` (built at load, immutable)."""

    def __init__(self, campaigns: list[Campaign]) -> None:
        self.by_id = {c.id: c for c in campaigns}
        self.by_number: dict[str, Campaign] = {}
        for c in campaigns:
            for n in c.numbers:
                self.by_number[n] = c

    def for_number(self, number: str) -> Campaign | None:
        return self.by_number.get(number)

    def brand_campaigns(self, brand_id: str) -> list[Campaign]:
        return [c for c in self.by_id.values() if c.brand.id == brand_id]

    def __len__(self) -> int:
        return len(self.by_id)
