"""STI certificates: chain to STI-CA trust anchors, CRLs, TNAuthList, and the x5u cache (RFC 8226, RFC 8588 §6,
ATIS-1000080 certificate profile, RFC 8224 §6.2.2 on dereferencing `info`).

Chain building uses cryptography's `x509.verification.PolicyBuilder` (RFC 5280 path building, signature checks,
validity at `now`, CA basic constraints and key usage via the WebPKI CA profile), with the end-entity extension
policy relaxed to `permit_all`: STI leaf certificates carry TNAuthList and no clientAuth EKU or SAN, which the
WebPKI leaf profile would reject. What PolicyBuilder does not do is added explicitly: CRL lookup (it has no
revocation support) and the TNAuthList/SPC requirement on the leaf.
"""

from __future__ import annotations

import collections
import datetime as dt
import re
from collections.abc import Iterable

import msgspec
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import verification

from edge.stir.failures import StirFailure

TNAUTHLIST_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.26")
_CRL_PEM = re.compile(rb"-----BEGIN X509 CRL-----.+?-----END X509 CRL-----", re.S)
_CERT_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", re.S)


def is_anchor(cert: x509.Certificate) -> bool:
    """A trust anchor is a self-signed CA certificate: issuer == subject, CA basic constraint, and its
    signature verifies with its own key. Anything else in the trust directory is chain material only."""
    if cert.issuer != cert.subject:
        return False
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        return False
    if not bc.ca:
        return False
    try:
        cert.verify_directly_issued_by(cert)
    except (ValueError, TypeError, InvalidSignature):
        return False
    return True


class TrustEntry(msgspec.Struct, frozen=True):
    """One certificate of the trust directory and the role it plays, for `sip-edge check`."""

    role: str  # 'anchor' | 'chain'
    subject: str
    issuer: str


class TrustStore:
    """STI-CA trust anchors (self-signed CA certificates only), other CA certificates found with them (used to
    build paths, never trusted on their own), and the CRLs that apply to certificates they issued."""

    def __init__(self, anchors: list[x509.Certificate], crls: list[x509.CertificateRevocationList],
                 intermediates: list[x509.Certificate] | None = None) -> None:
        self.anchors = anchors
        self.intermediates = intermediates or []
        self._crls: dict[x509.Name, list[x509.CertificateRevocationList]] = collections.defaultdict(list)
        for crl in crls:
            self._crls[crl.issuer].append(crl)
        self._store = verification.Store(anchors) if anchors else None

    @property
    def crl_count(self) -> int:
        return sum(len(v) for v in self._crls.values())

    @staticmethod
    def entries(blob: bytes) -> list[TrustEntry]:
        """The certificates of one trust file and whether each is an anchor or chain material."""
        return [
            TrustEntry("anchor" if is_anchor(c) else "chain", c.subject.rfc4514_string(), c.issuer.rfc4514_string())
            for c in (x509.load_pem_x509_certificate(b) for b in _CERT_PEM.findall(blob))
        ]

    @classmethod
    def from_blobs(cls, blobs: Iterable[bytes]) -> TrustStore:
        """Build from file contents: PEM certificates, PEM CRLs or DER CRLs, in any mix."""
        anchors: list[x509.Certificate] = []
        chain: list[x509.Certificate] = []
        crls: list[x509.CertificateRevocationList] = []
        for blob in blobs:
            for block in _CERT_PEM.findall(blob):
                cert = x509.load_pem_x509_certificate(block)
                (anchors if is_anchor(cert) else chain).append(cert)
            for block in _CRL_PEM.findall(blob):
                crls.append(x509.load_pem_x509_crl(block))
            if b"-----BEGIN" not in blob and blob:
                crls.append(x509.load_der_x509_crl(blob))
        return cls(anchors, crls, chain)

    def crls_for(self, issuer: x509.Name) -> list[x509.CertificateRevocationList]:
        return self._crls.get(issuer, [])

    def verifier(self, now: float) -> verification.ClientVerifier:
        if self._store is None:
            raise StirFailure("untrusted_chain", "no STI-CA trust anchors configured")
        return (
            verification.PolicyBuilder()
            .store(self._store)
            .time(dt.datetime.fromtimestamp(now, dt.timezone.utc))
            .extension_policies(
                ca_policy=verification.ExtensionPolicy.webpki_defaults_ca(),
                ee_policy=verification.ExtensionPolicy.permit_all(),
            )
            .build_client_verifier()
        )


class TnAuthList(msgspec.Struct, frozen=True):
    """TNAuthList entries (RFC 8226 §9): SPCs, single TNs and TN ranges (start, count)."""

    spcs: tuple[str, ...] = ()
    tns: tuple[str, ...] = ()
    ranges: tuple[tuple[str, int], ...] = ()

    def __bool__(self) -> bool:
        return bool(self.spcs or self.tns or self.ranges)

    def covers(self, tn: str) -> bool:
        """An SPC covers any number (the STI-PA vouched for the provider); a certificate with only TN entries
        (RFC 9060 delegate certificates) must list the number or a range holding it (same length, digits)."""
        if self.spcs:
            return True
        digits = "".join(c for c in tn if c.isdigit())
        if not digits:
            return False
        if digits in self.tns:
            return True
        n = int(digits)
        for start, count in self.ranges:
            if len(start) == len(digits) and int(start) <= n < int(start) + count:
                return True
        return False


class VerifiedCert(msgspec.Struct, frozen=True):
    """What the signature check needs from a validated x5u: the key, the earliest notAfter, the TNAuthList."""

    public_key: ec.EllipticCurvePublicKey
    not_after: float
    spcs: tuple[str, ...]
    subject: str
    tnauthlist: TnAuthList = msgspec.field(default_factory=TnAuthList)


def parse_bundle(body: bytes) -> tuple[x509.Certificate, list[x509.Certificate]]:
    """x5u content: a PEM bundle (leaf first, then intermediates) or one DER certificate."""
    try:
        if b"-----BEGIN CERTIFICATE-----" in body:
            certs = x509.load_pem_x509_certificates(body)
        else:
            certs = [x509.load_der_x509_certificate(body)]
    except ValueError as exc:
        raise StirFailure("bad_certificate", f"x5u content is not a certificate: {exc}") from exc
    if not certs:
        raise StirFailure("bad_certificate", "x5u content holds no certificate")
    return certs[0], certs[1:]


def _der_items(data: bytes) -> list[tuple[int, bytes]]:
    """Split DER TLVs at one level; definite lengths only (DER forbids indefinite)."""
    items: list[tuple[int, bytes]] = []
    i = 0
    while i < len(data):
        if i + 2 > len(data):
            raise ValueError("truncated TLV")
        tag = data[i]
        length = data[i + 1]
        i += 2
        if length & 0x80:
            n = length & 0x7F
            if n == 0 or n > 4 or i + n > len(data):
                raise ValueError("bad length")
            length = int.from_bytes(data[i : i + n], "big")
            i += n
        if i + length > len(data):
            raise ValueError("truncated value")
        items.append((tag, data[i : i + length]))
        i += length
    return items


def _ia5(tag: int, content: bytes) -> str:
    if tag != 0x16:
        raise ValueError("not an IA5String")
    return content.decode("ascii")


def _explicit_or_implicit(content: bytes, inner_tag: int) -> bytes:
    """The value of a context tag, EXPLICIT (RFC 8226's module) or IMPLICIT (seen from some CAs)."""
    items = _der_items(content)
    if len(items) == 1 and items[0][0] == inner_tag:
        return items[0][1]
    return content


def _range(content: bytes) -> tuple[str, int]:
    """TelephoneNumberRange ::= SEQUENCE { start TelephoneNumber, count INTEGER (2..MAX) }."""
    items = _der_items(_explicit_or_implicit(content, 0x30))
    if len(items) < 2 or items[1][0] != 0x02:
        raise ValueError("bad TelephoneNumberRange")
    start = _ia5(*items[0])
    count = int.from_bytes(items[1][1], "big", signed=True)
    if not start.isdigit() or count < 1 or len(items[1][1]) > 8:
        raise ValueError("bad TelephoneNumberRange")
    return start, count


def tnauthlist(cert: x509.Certificate) -> TnAuthList:
    """TNAuthList (RFC 8226 §9): SEQUENCE OF TNEntry, spc [0], range [1], one [2]; tagged EXPLICIT as in the
    RFC's module, implicit tags accepted too. An undecodable extension counts as absent."""
    try:
        ext = cert.extensions.get_extension_for_oid(TNAUTHLIST_OID)
    except x509.ExtensionNotFound:
        return TnAuthList()
    value = ext.value
    raw = value.value if isinstance(value, x509.UnrecognizedExtension) else b""
    spcs: list[str] = []
    tns: list[str] = []
    ranges: list[tuple[str, int]] = []
    try:
        (outer,) = _der_items(raw)
        if outer[0] != 0x30:
            return TnAuthList()
        for tag, content in _der_items(outer[1]):
            if tag == 0xA0:  # [0] EXPLICIT ServiceProviderCode
                inner = _der_items(content)
                if len(inner) == 1:
                    spcs.append(_ia5(*inner[0]))
            elif tag == 0x80:  # implicitly tagged IA5String
                spcs.append(content.decode("ascii"))
            elif tag == 0xA1:  # [1] TelephoneNumberRange
                ranges.append(_range(content))
            elif tag == 0xA2:  # [2] EXPLICIT TelephoneNumber
                inner = _der_items(content)
                if len(inner) == 1:
                    tns.append(_ia5(*inner[0]))
            elif tag == 0x82:  # implicitly tagged TelephoneNumber
                tns.append(content.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return TnAuthList()
    return TnAuthList(tuple(s for s in spcs if s), tuple(t for t in tns if t), tuple(ranges))


def tnauthlist_spcs(cert: x509.Certificate) -> tuple[str, ...]:
    """Service Provider Codes in TNAuthList."""
    return tnauthlist(cert).spcs


def _check_revocation(chain: list[x509.Certificate], store: TrustStore) -> None:
    for cert, issuer in zip(chain, chain[1:]):
        for crl in store.crls_for(issuer.subject):
            if not crl.is_signature_valid(issuer.public_key()):  # type: ignore[arg-type]
                continue
            if crl.get_revoked_certificate_by_serial_number(cert.serial_number) is not None:
                raise StirFailure("cert_revoked", f"certificate {cert.subject.rfc4514_string()} is revoked")


def validate(body: bytes, store: TrustStore, now: float) -> VerifiedCert:
    """Cheap checks first (key type, dates, TNAuthList), then path building, then CRLs."""
    leaf, intermediates = parse_bundle(body)
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise StirFailure("bad_key", "leaf key is not EC P-256 (required for ES256)")
    for cert in [leaf, *intermediates]:
        nb = cert.not_valid_before_utc.timestamp()
        na = cert.not_valid_after_utc.timestamp()
        if now < nb or now > na:
            raise StirFailure(
                "cert_expired",
                f"certificate {cert.subject.rfc4514_string()} valid {cert.not_valid_before_utc.isoformat()}"
                f" .. {cert.not_valid_after_utc.isoformat()}, not at {dt.datetime.fromtimestamp(now, dt.timezone.utc).isoformat()}",
            )
    tnal = tnauthlist(leaf)
    if not tnal:
        raise StirFailure("missing_tnauthlist", "leaf has no TNAuthList extension with an SPC, TN or TN range")
    try:
        chain = store.verifier(now).verify(leaf, [*intermediates, *store.intermediates]).chain
    except verification.VerificationError as exc:
        raise StirFailure("untrusted_chain", f"no chain to an STI-CA trust anchor: {exc}") from exc
    _check_revocation(chain, store)
    not_after = min(c.not_valid_after_utc.timestamp() for c in chain)
    return VerifiedCert(public_key=key, not_after=not_after, spcs=tnal.spcs, subject=leaf.subject.rfc4514_string(),
                        tnauthlist=tnal)


def cache_ttl(cache_control: str | None, default_ttl: float, max_ttl: float) -> float:
    """Cache lifetime from Cache-Control (RFC 9111 §5.2.2): max-age wins, no-store/no-cache mean none."""
    if not cache_control:
        return min(default_ttl, max_ttl)
    ttl: float | None = None
    for directive in cache_control.lower().split(","):
        name, _, val = directive.strip().partition("=")
        if name in ("no-store", "no-cache"):
            return 0.0
        if name == "max-age":
            try:
                ttl = max(0.0, float(int(val.strip().strip('"'))))
            except ValueError:
                ttl = 0.0
    return min(default_ttl if ttl is None else ttl, max_ttl)


class CacheEntry(msgspec.Struct):
    expires_at: float
    cert: VerifiedCert | None = None
    failure_code: str = ""
    failure_reason: str = ""
    single_use: bool = False  # no-store / max-age=0: good only for the verification that fetched it


class CertCache:
    """Bounded LRU of validated x5u certificates and of recent failures (negative cache), keyed by URL."""

    def __init__(self, max_entries: int, default_ttl: float, max_ttl: float, negative_ttl: float) -> None:
        self.max_entries = max(1, max_entries)
        self.default_ttl = default_ttl
        self.max_ttl = max_ttl
        self.negative_ttl = negative_ttl
        self._entries: collections.OrderedDict[str, CacheEntry] = collections.OrderedDict()
        self.evictions = 0

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, url: str, now: float) -> CacheEntry | None:
        entry = self._entries.get(url)
        if entry is None:
            return None
        if now > entry.expires_at:
            del self._entries[url]
            return None
        self._entries.move_to_end(url)
        return entry

    def discard(self, url: str) -> None:
        """Drop a single-use entry once the verification that fetched it has finished."""
        self._entries.pop(url, None)

    def _put(self, url: str, entry: CacheEntry) -> None:
        self._entries[url] = entry
        self._entries.move_to_end(url)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)
            self.evictions += 1

    def put_cert(self, url: str, cert: VerifiedCert, cache_control: str | None, now: float) -> CacheEntry:
        ttl = cache_ttl(cache_control, self.default_ttl, self.max_ttl)
        entry = CacheEntry(expires_at=min(now + ttl, cert.not_after), cert=cert, single_use=ttl <= 0)
        self._put(url, entry)
        return entry

    def put_failure(self, url: str, failure: StirFailure, now: float) -> CacheEntry:
        entry = CacheEntry(
            expires_at=now + self.negative_ttl,
            failure_code=failure.code,
            failure_reason=failure.reason,
            single_use=self.negative_ttl <= 0,
        )
        self._put(url, entry)
        return entry

    def clear(self) -> None:
        self._entries.clear()
