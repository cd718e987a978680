"""Config (`[messaging]` in config/edge.toml) and dialplan sections (`[brand]`, `[[campaigns]]`,
`[messages]`) of texts, chats and forms, and their compilation with `$.path: reason` errors.

```toml
[brand]                               # the customer's registered A2P 10DLC brand
id = "BXXXXXX"
entity_type = "private_profit"        # private_profit | public_profit | non_profit | government | sole_proprietor
trust_score = 82                      # vetting score 0-100

[[campaigns]]
id = "CXXXXXX"
use_case = "account_notification"     # 'mixed'/'marketing' -> mixed tiers, 'low_volume' -> tier T
numbers = ["+12025550100"]            # sending numbers assigned to the campaign
help_text = "Acme alerts. Help: +1 202 555 0100. Reply STOP to opt out."

[messages]                            # inbound content screening of this customer's numbers
hold_score = 50
reject_score = 90
hold = ["*bit.ly*"]                   # text patterns held for review
```
"""

from __future__ import annotations

import msgspec

from edge.messaging.a2p import DEFAULT_TIERS, Brand, Campaign, CarrierModel, Tier, tier_for
from edge.messaging.text import normalise_text_pattern, pattern_problem
from edge.numbers import parse_number
from edge.units import parse_duration

ENTITY_TYPES = ("private_profit", "public_profit", "non_profit", "government", "sole_proprietor")

DEFAULT_SHORTENERS = [
    "bit.ly", "tinyurl.com", "t.co", "goo.gl", "ow.ly", "is.gd", "buff.ly", "rebrand.ly", "cutt.ly",
    "shorturl.at", "rb.gy", "t.ly", "tiny.cc", "bl.ink", "s.id", "v.gd", "qrco.de", "lnkd.in",
]


class ScreeningApiClient(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    """One customer's API key for the chats-and-forms screening API (stored as its SHA-256)."""

    customer: str
    key_sha256: str


class ScreeningApiConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = False
    listen: str = "127.0.0.1:8082"
    max_body: int = 8192  # bytes; larger requests get 413
    clients: list[ScreeningApiClient] = []
    challenge_score: float = 40.0
    reject_score: float = 80.0
    rate_phone: str = "5/10m"  # submissions per phone number
    rate_email: str = "5/10m"
    rate_ip: str = "20/10m"
    max_rate_keys: int = 100_000


class MessagingConfig(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    enabled: bool = True
    campaign_window: str = "10m"
    sketch_width: int = 4096
    sketch_depth: int = 4
    bloom_bits: int = 1 << 21
    shorteners: list[str] = msgspec.field(default_factory=lambda: list(DEFAULT_SHORTENERS))
    trusted_domains: list[str] = []
    new_domain_age: str = "1d"
    max_domains: int = 100_000
    max_held: int = 1000
    hold_for: str = "7d"
    max_optouts: int = 1_000_000
    burst: int = 1
    queue_size: int = 100
    max_queue_wait: str = "20s"
    daily_reset_tz: str = "America/Los_Angeles"
    tier: list[Tier] = msgspec.field(default_factory=lambda: list(DEFAULT_TIERS))
    carrier: list[CarrierModel] = msgspec.field(default_factory=lambda: [CarrierModel("default", per_minute=True, daily_cap=True)])
    screening_api: ScreeningApiConfig = ScreeningApiConfig()


def validate_messaging(cfg: MessagingConfig, path: str = "$.messaging") -> list[tuple[str, str]]:
    errs: list[tuple[str, str]] = []
    for f in ("campaign_window", "new_domain_age", "hold_for", "max_queue_wait"):
        try:
            if parse_duration(getattr(cfg, f)) <= 0:
                errs.append((f"{path}.{f}", "must be positive"))
        except ValueError as exc:
            errs.append((f"{path}.{f}", str(exc)))
    for f in ("sketch_width", "max_domains", "max_held", "max_optouts", "burst", "queue_size"):
        if getattr(cfg, f) < 1:
            errs.append((f"{path}.{f}", "must be at least 1"))
    if not 1 <= cfg.sketch_depth <= 8:
        errs.append((f"{path}.sketch_depth", "must be between 1 and 8"))
    if cfg.bloom_bits < 1024:
        errs.append((f"{path}.bloom_bits", "must be at least 1024"))
    try:
        from zoneinfo import ZoneInfo

        ZoneInfo(cfg.daily_reset_tz)
    except Exception:  # noqa: BLE001 - any lookup failure is a config error
        errs.append((f"{path}.daily_reset_tz", f"unknown time zone {cfg.daily_reset_tz!r}"))
    seen: set[str] = set()
    for i, t in enumerate(cfg.tier):
        at = f"{path}.tier[{i}]"
        if t.message_class in seen:
            errs.append((f"{at}.message_class", f"duplicate class {t.message_class!r}"))
        seen.add(t.message_class)
        if not 0 <= t.min_trust <= t.max_trust <= 100:
            errs.append((at, "need 0 <= min_trust <= max_trust <= 100"))
        if t.per_minute < 1 or t.daily_cap < 1:
            errs.append((at, "per_minute and daily_cap must be at least 1"))
    if not cfg.carrier:
        errs.append((f"{path}.carrier", "at least one carrier model is needed"))
    names: set[str] = set()
    defaults = 0
    for i, c in enumerate(cfg.carrier):
        at = f"{path}.carrier[{i}]"
        if c.name in names:
            errs.append((f"{at}.name", f"duplicate carrier {c.name!r}"))
        names.add(c.name)
        defaults += not c.prefixes
        for j, p in enumerate(c.prefixes):
            if not (p.startswith("+") and p[1:].isascii() and p[1:].isdigit()):
                errs.append((f"{at}.prefixes[{j}]", f"{p!r}: a prefix is '+' followed by digits"))
    if cfg.carrier and defaults != 1:
        errs.append((f"{path}.carrier", "exactly one carrier model must have no prefixes (the default)"))
    api = cfg.screening_api
    for f in ("rate_phone", "rate_email", "rate_ip"):
        from edge.units import parse_rate

        try:
            parse_rate(getattr(api, f))
        except ValueError as exc:
            errs.append((f"{path}.screening_api.{f}", str(exc)))
    if not 0 < api.challenge_score <= api.reject_score:
        errs.append((f"{path}.screening_api.challenge_score", "need 0 < challenge_score <= reject_score"))
    if api.enabled and not api.clients:
        errs.append((f"{path}.screening_api.clients", "the screening API is enabled but has no API keys (every request would get 401)"))
    host, _, port = api.listen.rpartition(":")
    if not host or not (port.isascii() and port.isdigit()) or not 0 < int(port) < 65536:
        errs.append((f"{path}.screening_api.listen", f"invalid address {api.listen!r}: expected host:port"))
    if api.max_body < 256:
        errs.append((f"{path}.screening_api.max_body", "must be at least 256 bytes"))
    for i, c in enumerate(api.clients):
        k = c.key_sha256.lower()
        if len(k) != 64 or any(ch not in "0123456789abcdef" for ch in k):
            errs.append((f"{path}.screening_api.clients[{i}].key_sha256", "expected 64 hex digits (sha256 of the key)"))
    return errs


# ---------------------------------------------------------------------------------------------
# Dialplan sections


class BrandSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    entity_type: str = "private_profit"
    trust_score: int = 0


class CampaignSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    id: str
    use_case: str
    numbers: list[str]
    help_text: str = ""
    stop_text: str = ""
    start_text: str = ""
    message_class: str = ""  # carrier-assigned class overriding the derived one (special use cases)


class MessageWeights(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    campaign: float = 60.0  # same body from many senders to many recipients
    shortener: float = 30.0
    new_domain: float = 20.0
    many_urls: float = 15.0


class MessagesSpec(msgspec.Struct, frozen=True, forbid_unknown_fields=True):
    hold_score: float = 50.0
    reject_score: float = 90.0
    reject_status: int = 403
    campaign_senders: int = 5  # distinct senders of one body within the window
    campaign_recipients: int = 5
    many_urls: int = 3
    hold: list[str] = []  # text patterns held for review
    weights: MessageWeights = MessageWeights()


class MessagePolicy(msgspec.Struct, frozen=True):
    """Compiled `[messages]` of one customer."""

    hold_score: float = 50.0
    reject_score: float = 90.0
    reject_status: int = 403
    campaign_senders: int = 5
    campaign_recipients: int = 5
    many_urls: int = 3
    hold: tuple[str, ...] = ()  # normalised patterns
    weights: MessageWeights = MessageWeights()


DEFAULT_MESSAGE_POLICY = MessagePolicy()


class MessagingPlan(msgspec.Struct, frozen=True):
    """What the dialplans say about messaging: campaigns and per-customer inbound policies."""

    campaigns: tuple[Campaign, ...] = ()
    policies: dict[str, MessagePolicy] = {}  # customer -> policy

    def policy(self, customer: str) -> MessagePolicy:
        return self.policies.get(customer, DEFAULT_MESSAGE_POLICY)


def compile_messaging(files: dict[str, object], cfg: MessagingConfig) -> tuple[MessagingPlan, list[str]]:
    """Every dialplan's `[brand]`, `[[campaigns]]` and `[messages]` -> MessagingPlan, plus
    `file: $.path: reason` errors."""
    errors: list[str] = []
    campaigns: list[Campaign] = []
    policies: dict[str, MessagePolicy] = {}
    ids: dict[str, str] = {}
    numbers: dict[str, str] = {}
    brands: dict[str, str] = {}
    tiers = {t.message_class: t for t in cfg.tier}
    for name, df in files.items():
        brand_spec: BrandSpec | None = getattr(df, "brand", None)
        specs: list[CampaignSpec] = getattr(df, "campaigns", [])
        msgs: MessagesSpec | None = getattr(df, "messages", None)
        customer = getattr(df, "customer", "")
        brand = None
        if brand_spec is not None:
            if not brand_spec.id.strip():
                errors.append(f"{name}: $.brand.id: must not be empty")
            if brand_spec.entity_type not in ENTITY_TYPES:
                errors.append(f"{name}: $.brand.entity_type: {brand_spec.entity_type!r} is not one of {', '.join(ENTITY_TYPES)}")
            if not 0 <= brand_spec.trust_score <= 100:
                errors.append(f"{name}: $.brand.trust_score: must be between 0 and 100")
            if brand_spec.id in brands and brands[brand_spec.id] != customer:
                errors.append(f"{name}: $.brand.id: brand {brand_spec.id!r} already belongs to customer {brands[brand_spec.id]!r}")
            brands[brand_spec.id] = customer
            brand = Brand(brand_spec.id, brand_spec.entity_type, brand_spec.trust_score, customer)
        if specs and brand is None:
            errors.append(f"{name}: $.campaigns: campaigns need a [brand] section in the same file")
        for i, c in enumerate(specs):
            at = f"$.campaigns[{i}]"
            if c.id in ids:
                errors.append(f"{name}: {at}.id: duplicate campaign {c.id!r} (first in {ids[c.id]})")
                continue
            ids[c.id] = name
            if not c.numbers:
                errors.append(f"{name}: {at}.numbers: a campaign needs at least one sending number")
            nums: list[str] = []
            for j, raw in enumerate(c.numbers):
                n = parse_number(raw)
                if not n.e164 or not n.valid:
                    errors.append(f"{name}: {at}.numbers[{j}]: {raw!r} is not a valid E.164 number")
                    continue
                if n.e164 in numbers:
                    errors.append(f"{name}: {at}.numbers[{j}]: {n.e164} is already assigned to campaign {numbers[n.e164]}")
                    continue
                numbers[n.e164] = c.id
                nums.append(n.e164)
            if c.message_class:
                tier = tiers.get(c.message_class)
                if tier is None:
                    errors.append(f"{name}: {at}.message_class: {c.message_class!r} is not in [[messaging.tier]]")
                    continue
            else:
                tier = tier_for(cfg.tier, c.use_case, brand.trust_score if brand else 0)
                if tier is None:
                    errors.append(f"{name}: {at}.use_case: no [[messaging.tier]] row for use case {c.use_case!r}")
                    continue
            if brand is not None:
                campaigns.append(Campaign(c.id, brand, c.use_case, tuple(nums), tier, c.help_text, c.stop_text, c.start_text))
        if msgs is not None:
            bad = False
            if not 0 < msgs.hold_score <= msgs.reject_score:
                errors.append(f"{name}: $.messages.hold_score: need 0 < hold_score <= reject_score")
                bad = True
            if not 400 <= msgs.reject_status <= 699:
                errors.append(f"{name}: $.messages.reject_status: {msgs.reject_status} is not a SIP rejection code (400-699)")
                bad = True
            for f in ("campaign_senders", "campaign_recipients", "many_urls"):
                if getattr(msgs, f) < 1:
                    errors.append(f"{name}: $.messages.{f}: must be at least 1")
                    bad = True
            for j, p in enumerate(msgs.hold):
                problem = pattern_problem(p)
                if problem:
                    errors.append(f"{name}: $.messages.hold[{j}]: {problem}")
                    bad = True
            if not bad:
                policies[customer] = MessagePolicy(
                    msgs.hold_score, msgs.reject_score, msgs.reject_status, msgs.campaign_senders,
                    msgs.campaign_recipients, msgs.many_urls, tuple(normalise_text_pattern(p) for p in msgs.hold), msgs.weights,
                )
    return MessagingPlan(tuple(campaigns), policies), errors
