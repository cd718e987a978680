"""x5u certificate fetching and STIR file loading: the I/O half of the STI-VS (RFC 8224 §6.2.2, RFC 8588 §6,
ATIS-1000074 §5.3.1 on fetching the STI certificate).

An attacker controls the `info` URL of every INVITE it sends, so the fetch is an SSRF surface: HTTPS only,
no redirects, a total timeout, a body cap, and three address checks:

1. the host must be plain ASCII LDH (a name whose last label starts with a letter) or a canonical IP
   literal (dotted quad without leading zeros, or a bracketed IPv6 address that is not IPv4-mapped), and
   the HTTP client's own parse (yarl) must see the same host. Full-width digits, ideographic full stops,
   percent-escapes and integer/octal/hex/short IPv4 forms are refused before any connection: yarl and the
   C library would turn them into an address the literal check never saw;
2. names are resolved by a guarded resolver that refuses private, loopback and link-local answers, so the
   address checked is the address used;
3. every connection attempt's destination address (aiohttp's socket factory sees it, literal or resolved)
   is checked again before connect(), so nothing the first two checks missed reaches a refused range.

Concurrent verifications of the same URL share one request.
"""

from __future__ import annotations

import asyncio
import ipaddress
import re
import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import aiohttp
import aiohttp.abc
import msgspec
import structlog
import yarl

from edge.stir.certs import TrustStore
from edge.stir.failures import StirFailure
from edge.stir.result import StirResult
from edge.stir.schema import StirConfig, parse_duration
from edge.stir.schema import validate as validate_schema
from edge.stir.signer import Signer
from edge.stir.verifier import Check, Verifier

log = structlog.get_logger()

MAX_IN_FLIGHT = 256  # distinct URLs fetched concurrently; more is a flood of bogus info URLs

_OCTET = r"(?:25[0-5]|2[0-4][0-9]|1[0-9][0-9]|[1-9]?[0-9])"
_CANONICAL_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}\Z")
_LABEL = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")
_TOP_LABEL = re.compile(r"[a-z][a-z0-9-]*\Z")  # never all digits or 0x...: no integer/hex/short IPv4 forms


class FetchSettings(msgspec.Struct, frozen=True, kw_only=True):
    timeout: float = 2.0
    max_bytes: int = 65_536
    allow_insecure_hosts: tuple[str, ...] = ()
    allow_private_networks: tuple[str, ...] = ()

    @classmethod
    def from_config(cls, cfg: StirConfig) -> FetchSettings:
        return cls(
            timeout=parse_duration(cfg.fetch_timeout),
            max_bytes=cfg.fetch_max_bytes,
            allow_insecure_hosts=tuple(cfg.allow_insecure_hosts),
            allow_private_networks=tuple(cfg.allow_private_networks),
        )


class FetchResult(msgspec.Struct, frozen=True):
    body: bytes | None
    cache_control: str | None = None
    error: str = ""


class FetchRefused(Exception):
    """The URL or its destination address is not allowed."""


class AddressRefused(OSError):
    """Raised inside aiohttp's connector when a resolved address is in a refused range."""


def plain_host(host: str) -> str:
    """Why `host` (as written in the URL, brackets stripped) is not plain ASCII LDH or a canonical IP
    literal; '' when it is."""
    if not host.isascii():
        return "not plain ASCII (full-width digits or dots, or an unencoded international name)"
    if ":" in host:
        try:
            ip6 = ipaddress.IPv6Address(host)
        except ValueError:
            return "not a valid IPv6 literal"
        if ip6.ipv4_mapped is not None or ip6.sixtofour is not None or ip6.teredo is not None:
            return "an IPv6 literal embedding an IPv4 address"
        return ""
    if _CANONICAL_IPV4.match(host):
        return ""
    name = host[:-1] if host.endswith(".") else host
    labels = name.split(".")
    if len(name) > 253 or not all(_LABEL.match(label) for label in labels):
        return "not a host name of letters, digits and hyphens"
    if not _TOP_LABEL.match(labels[-1]):
        return "a numeric address in a non-canonical form (integer, octal, hex or short)"
    return ""


def address_allowed(address: str, allowed: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> bool:
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    if any(ip in net for net in allowed):
        return True
    return not (
        ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
        or ip.is_reserved or ip.is_unspecified
    )


class GuardedResolver(aiohttp.abc.AbstractResolver):
    """Resolves, then refuses the whole name if any address lies in a forbidden range (no partial answers)."""

    def __init__(self, allowed: list[ipaddress.IPv4Network | ipaddress.IPv6Network]) -> None:
        self._inner = aiohttp.ThreadedResolver()
        self._allowed = allowed

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[aiohttp.abc.ResolveResult]:
        results = await self._inner.resolve(host, port, family)
        for r in results:
            if not address_allowed(r["host"], self._allowed):
                raise AddressRefused(f"x5u host {host} resolves to refused address {r['host']}")
        return results

    async def close(self) -> None:
        await self._inner.close()


class CertFetcher:
    """Fetches x5u URLs under the SSRF rules above; one request in flight per URL."""

    def __init__(self, settings: FetchSettings, resolver: aiohttp.abc.AbstractResolver | None = None) -> None:
        """`resolver` replaces the guarded resolver (tests use it to prove the peer-address check)."""
        self.settings = settings
        self._allowed = [ipaddress.ip_network(n, strict=False) for n in settings.allow_private_networks]
        self._resolver = resolver
        self._session: aiohttp.ClientSession | None = None
        self._inflight: dict[str, asyncio.Future[FetchResult]] = {}

    def check_url(self, url: str) -> None:
        """Scheme, userinfo and host checks, on our parse and on the HTTP client's (aiohttp skips the
        resolver for IP literals, so a literal must be refused here)."""
        try:
            parts = urlsplit(url)
            host = parts.hostname or ""
            client_host = (yarl.URL(url).host or "").lower()
        except ValueError as exc:
            raise FetchRefused(f"x5u {url[:200]!r} is not a valid URL: {exc}") from None
        if not host:
            raise FetchRefused(f"x5u {url!r} has no host")
        if parts.username or parts.password:
            raise FetchRefused("x5u with userinfo refused")
        why = plain_host(host)
        if why:
            raise FetchRefused(f"x5u host {host!r} refused: {why}")
        if client_host.strip("[]") != host:
            raise FetchRefused(f"x5u host {host!r} refused: the HTTP client reads it as {client_host!r}")
        if parts.scheme == "http":
            if host not in self.settings.allow_insecure_hosts:
                raise FetchRefused(f"x5u {url!r} is not https")
        elif parts.scheme != "https":
            raise FetchRefused(f"x5u scheme {parts.scheme!r} refused, https only")
        try:
            ipaddress.ip_address(host)
        except ValueError:
            return
        if not address_allowed(host, self._allowed):
            raise FetchRefused(f"x5u address {host} is in a refused range")

    def _session_for_loop(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            resolver = self._resolver or GuardedResolver(self._allowed)
            connector = aiohttp.TCPConnector(resolver=resolver, limit=64, ttl_dns_cache=60,
                                             socket_factory=self._guarded_socket)
            self._session = aiohttp.ClientSession(
                connector=connector,
                timeout=aiohttp.ClientTimeout(total=self.settings.timeout),
                trust_env=False,
                headers={"Accept": "application/pem-certificate-chain, application/x-pem-file, */*"},
            )
        return self._session

    async def fetch(self, url: str) -> FetchResult:
        pending = self._inflight.get(url)
        if pending is not None:
            return await asyncio.shield(pending)
        if len(self._inflight) >= MAX_IN_FLIGHT:
            return FetchResult(None, None, "too many certificate fetches in flight")
        future: asyncio.Future[FetchResult] = asyncio.get_running_loop().create_future()
        self._inflight[url] = future
        try:
            result = await self._fetch(url)
        except BaseException as exc:  # cancellation: waiters get an error, not a hang
            future.set_result(FetchResult(None, None, f"fetch cancelled: {type(exc).__name__}"))
            raise
        finally:
            self._inflight.pop(url, None)
        future.set_result(result)
        return result

    async def _fetch(self, url: str) -> FetchResult:
        try:
            self.check_url(url)
        except FetchRefused as exc:
            log.info("x5u_fetch_refused", url=url, reason=str(exc))
            return FetchResult(None, None, str(exc))
        cap = self.settings.max_bytes
        try:
            async with self._session_for_loop().get(url, allow_redirects=False) as resp:
                if 300 <= resp.status < 400:
                    return FetchResult(None, None, f"redirect refused (HTTP {resp.status})")
                if resp.status != 200:
                    return FetchResult(None, None, f"HTTP {resp.status}")
                if resp.content_length is not None and resp.content_length > cap:
                    return FetchResult(None, None, f"certificate larger than {cap} bytes")
                body = bytearray()
                async for chunk in resp.content.iter_chunked(8192):
                    body += chunk
                    if len(body) > cap:
                        return FetchResult(None, None, f"certificate larger than {cap} bytes")
                return FetchResult(bytes(body), resp.headers.get("Cache-Control"), "")
        except (aiohttp.ClientError, OSError) as exc:
            cause = getattr(exc, "os_error", None)
            if isinstance(cause, AddressRefused):
                log.info("x5u_fetch_refused", url=url, reason=str(cause))
                return FetchResult(None, None, str(cause))
            log.info("x5u_fetch_failed", url=url, error=str(exc))
            return FetchResult(None, None, f"fetch failed: {exc}")
        except asyncio.TimeoutError:
            return FetchResult(None, None, f"timeout after {self.settings.timeout}s")

    def _guarded_socket(self, addr_info: tuple) -> socket.socket:
        """aiohttp's socket factory: sees the exact address each connection attempt goes to, literal or
        resolved, and refuses it before connect() like the resolver would."""
        family, type_, proto, _, sockaddr = addr_info
        if not address_allowed(str(sockaddr[0]), self._allowed):
            raise AddressRefused(f"x5u connection to refused address {sockaddr[0]}")
        sock = socket.socket(family=family, type=type_, proto=proto)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def verify(
    verifier: Verifier,
    fetcher: CertFetcher,
    identity_values: list[str],
    calling_raw: str,
    called_raw: str,
    call_id: str,
    clock: Callable[[], float] = time.time,
    trace: list[Check] | None = None,
) -> StirResult:
    """Run the sans-IO verifier to a result, fetching each certificate it asks for (at most one per header)."""
    for _ in range(len(identity_values) + 2):
        if trace is not None:
            trace.clear()
        out = verifier.verify(identity_values, calling_raw, called_raw, call_id, clock(), trace)
        if isinstance(out, StirResult):
            return out
        fetched = await fetcher.fetch(out.url)
        verifier.certificate_fetched(out.url, fetched.body, fetched.cache_control, fetched.error, clock())
    return StirFailure("fetch_failed", "certificate fetching did not settle").result()


# -- files ------------------------------------------------------------------------------------------------

_TRUST_SUFFIXES = (".pem", ".crt", ".cer", ".crl")


def trust_files(path: str) -> list[tuple[Path, bytes]]:
    return [(p, p.read_bytes()) for p in sorted(Path(path).iterdir()) if p.suffix.lower() in _TRUST_SUFFIXES]


def load_trust_store(trust_dir: str, crl_dir: str = "") -> TrustStore:
    """Trust anchors and CRLs from the configured directories; raises ValueError naming the bad file."""
    blobs: list[bytes] = []
    for d in (trust_dir, crl_dir):
        if not d:
            continue
        for p, data in trust_files(d):
            try:
                TrustStore.from_blobs([data])
            except ValueError as exc:
                raise ValueError(f"{p}: {exc}") from exc
            blobs.append(data)
    return TrustStore.from_blobs(blobs)


def reload_trust(verifier: Verifier, cfg: StirConfig) -> TrustStore:
    """SIGHUP: re-read the trust and CRL directories into the running verifier; raises (and leaves the
    verifier as it was) when a file cannot be read."""
    trust = load_trust_store(cfg.trust_dir, cfg.crl_dir)
    verifier.set_trust(trust)
    return trust


def load_signer(cfg: StirConfig) -> Signer | None:
    if not cfg.signing.enabled:
        return None
    return Signer(Path(cfg.signing.key_file).read_bytes(), cfg.signing.x5u)


def validate_stir(cfg: StirConfig, path: str = "$.stir") -> list[tuple[str, str]]:
    """Everything `sip-edge check` reports for [stir]: schema checks plus readable trust dir and key."""
    errors = validate_schema(cfg, path)
    if cfg.enabled and cfg.trust_dir:
        try:
            store = load_trust_store(cfg.trust_dir, cfg.crl_dir)
            if not store.anchors:
                errors.append((f"{path}.trust_dir", f"no STI-CA trust anchors (self-signed CA certificates) in {cfg.trust_dir}"))
        except (OSError, ValueError) as exc:
            errors.append((f"{path}.trust_dir", f"cannot load trust anchors: {exc}"))
    if cfg.signing.enabled and cfg.signing.key_file:
        try:
            load_signer(cfg)
        except OSError as exc:
            errors.append((f"{path}.signing.key_file", f"cannot read key: {exc}"))
        except (ValueError, TypeError) as exc:
            errors.append((f"{path}.signing.key_file", f"not a usable EC P-256 private key: {exc}"))
    return errors
