"""Settings for STIR/SHAKEN: the [stir] table of config/edge.toml and the per-number dialplan policy.

SHAKEN (ATIS-1000074 §5.3.2, RFC 8224 §6.2.2) recommends continuing calls whose verification failed and
letting the called party's policy decide; the dialplan therefore defaults to `continue` everywhere.
"""

from __future__ import annotations

import enum
import ipaddress
import re
from urllib.parse import urlsplit

import msgspec

from edge.units import parse_duration

from edge.stir.failures import SIP_REASONS
from edge.stir.result import StirResult, StirStatus



class StirSigning(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """STI-AS for calls from the PBX toward carriers."""

    enabled: bool = False
    key_file: str = ""  # PEM EC P-256 private key of the STI certificate
    x5u: str = ""  # HTTPS URL where the certificate (PEM, leaf first then intermediates) is published
    origids: dict[str, str] = {}  # customer name -> fixed origid UUID; others get uuid5(customer)


class StirConfig(msgspec.Struct, forbid_unknown_fields=True, kw_only=True):
    """[stir] in config/edge.toml."""

    enabled: bool = True  # verify Identity headers on calls from carriers
    required: bool = False  # absent Identity counts as a 428 Use Identity Header outcome in policy
    trust_dir: str = "config/sti-ca"  # STI-CA trust anchors (*.pem) and CRLs (*.crl, PEM CRLs)
    crl_dir: str = ""  # extra CRL directory, optional
    max_age: str = "60s"  # |now - iat| allowed (RFC 8588 §4)
    cert_cache_size: int = 1000
    cert_cache_ttl: str = "1h"  # when x5u responses carry no Cache-Control max-age
    cert_cache_max_ttl: str = "24h"
    negative_cache_ttl: str = "30s"  # failed fetch / invalid certificate remembered this long
    replay_cache_size: int = 200_000
    fetch_timeout: str = "2s"
    fetch_max_bytes: int = 65_536
    allow_insecure_hosts: list[str] = []  # hosts fetched over plain http (tests only)
    allow_private_networks: list[str] = []  # CIDRs allowed as x5u destinations despite private/loopback (tests)
    verstat_in_from: bool = False  # also add verstat to From, not only P-Asserted-Identity
    # Without a PAI from the carrier: 'from' writes verstat into From (the carrier's own From is restored in
    # the responses relayed back), 'pai' adds a P-Asserted-Identity with the caller's URI and verstat instead.
    verstat_without_pai: str = "from"
    signing: StirSigning = msgspec.field(default_factory=StirSigning)


class StirAction(str, enum.Enum):
    CONTINUE = "continue"
    SCREEN = "screen"  # captcha or menu, per the number's dialplan
    REJECT = "reject"


class StirPolicy(msgspec.Struct, forbid_unknown_fields=True, kw_only=True, frozen=True):
    """[stir] section of a number's dialplan."""

    on_absent: StirAction = StirAction.CONTINUE
    on_failed: StirAction = StirAction.CONTINUE
    on_low_attestation: StirAction = StirAction.CONTINUE
    min_attestation: str = "C"  # 'A' | 'B' | 'C'; below it on_low_attestation applies


class StirVerdict(msgspec.Struct, frozen=True):
    action: StirAction
    sip_status: int  # final response when action is REJECT
    reason: str
    rule_id: str


_RANK = {"A": 0, "B": 1, "C": 2}


def decide(policy: StirPolicy, result: StirResult) -> StirVerdict:
    """Turn a StirResult into this number's action; reject codes follow RFC 8224 §6.2.2."""
    if result.status is StirStatus.ABSENT:
        return StirVerdict(policy.on_absent, 428, SIP_REASONS[428], "stir.on_absent")
    if result.status is StirStatus.FAILED:
        return StirVerdict(policy.on_failed, result.sip_status or 438, result.reason or result.code, "stir.on_failed")
    attest = result.attestation or "C"
    if _RANK.get(attest, 2) > _RANK.get(policy.min_attestation, 2):
        return StirVerdict(
            policy.on_low_attestation,
            403,
            f"attestation {attest} below minimum {policy.min_attestation}",
            "stir.on_low_attestation",
        )
    return StirVerdict(StirAction.CONTINUE, 0, f"verified, attestation {attest}", "stir.passed")


def validate_policy(policy: StirPolicy, path: str = "$.stir") -> list[tuple[str, str]]:
    if policy.min_attestation not in _RANK:
        return [(f"{path}.min_attestation", f"{policy.min_attestation!r} is not A, B or C")]
    return []


def validate(cfg: StirConfig, path: str = "$.stir") -> list[tuple[str, str]]:
    """Checks that need no files: durations, sizes, networks, URLs. edge.io.cert_fetch.validate_stir adds files."""
    errors: list[tuple[str, str]] = []
    for key in ("max_age", "cert_cache_ttl", "cert_cache_max_ttl", "negative_cache_ttl", "fetch_timeout"):
        try:
            if parse_duration(getattr(cfg, key)) < 0:
                errors.append((f"{path}.{key}", "must not be negative"))
        except ValueError as exc:
            errors.append((f"{path}.{key}", str(exc)))
    for key in ("cert_cache_size", "replay_cache_size", "fetch_max_bytes"):
        if getattr(cfg, key) <= 0:
            errors.append((f"{path}.{key}", "must be positive"))
    for i, net in enumerate(cfg.allow_private_networks):
        try:
            ipaddress.ip_network(net, strict=False)
        except ValueError:
            errors.append((f"{path}.allow_private_networks[{i}]", f"{net!r} is not an IP network"))
    if cfg.verstat_without_pai not in ("from", "pai"):
        errors.append((f"{path}.verstat_without_pai", f"{cfg.verstat_without_pai!r} is not 'from' or 'pai'"))
    if not cfg.trust_dir:
        errors.append((f"{path}.trust_dir", "a trust directory with STI-CA anchors is required"))
    s = cfg.signing
    if s.enabled:
        if not s.key_file:
            errors.append((f"{path}.signing.key_file", "required when signing is enabled"))
        url = urlsplit(s.x5u)
        if not s.x5u:
            errors.append((f"{path}.signing.x5u", "required when signing is enabled"))
        elif url.scheme != "https" and not (url.scheme == "http" and url.hostname in cfg.allow_insecure_hosts):
            errors.append((f"{path}.signing.x5u", f"{s.x5u!r} must be an https URL"))
    return errors
