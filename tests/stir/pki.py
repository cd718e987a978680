"""Throw-away STI PKI for the tests: root, intermediate, leaf with TNAuthList, and the broken variants."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from edge.stir.certs import TNAUTHLIST_OID

NOW = float(int(time.time()))  # tokens and certificates are made around the real clock (secsipidx uses it)
X5U = "https://cert.example.net/sti/leaf.pem"
CALLER = "12025550123"
CALLED = "12025550199"


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn), x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sip-edge test")])


def tnauthlist(spc: str) -> x509.UnrecognizedExtension:
    """TNAuthList with one SPC entry: SEQUENCE { [0] EXPLICIT IA5String spc } (RFC 8226 §9)."""
    ia5 = bytes([0x16, len(spc)]) + spc.encode()
    entry = bytes([0xA0, len(ia5)]) + ia5
    return x509.UnrecognizedExtension(TNAUTHLIST_OID, bytes([0x30, len(entry)]) + entry)


def _tlv(tag: int, content: bytes) -> bytes:
    n = len(content)
    length = bytes([n]) if n < 0x80 else bytes([0x80 | ((n.bit_length() + 7) // 8)]) + n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag]) + length + content


def tnauthlist_entries(spcs: tuple[str, ...] = (), tns: tuple[str, ...] = (),
                       ranges: tuple[tuple[str, int], ...] = (), implicit: bool = False) -> x509.UnrecognizedExtension:
    """TNAuthList with any mix of entries (RFC 8226 §9, EXPLICIT TAGS): spc [0], range [1], one [2];
    `implicit` encodes the tags the IMPLICIT way some CAs do."""
    body = b""
    for spc in spcs:
        body += _tlv(0xA0, _tlv(0x16, spc.encode()))
    for start, count in ranges:
        inner = _tlv(0x16, start.encode()) + _tlv(0x02, count.to_bytes((count.bit_length() + 8) // 8, "big"))
        body += _tlv(0xA1, inner if implicit else _tlv(0x30, inner))
    for tn in tns:
        body += _tlv(0x82, tn.encode()) if implicit else _tlv(0xA2, _tlv(0x16, tn.encode()))
    return x509.UnrecognizedExtension(TNAUTHLIST_OID, _tlv(0x30, body))


def make_cert(
    cn: str,
    key: ec.EllipticCurvePrivateKey,
    issuer_cn: str,
    issuer_key: ec.EllipticCurvePrivateKey,
    *,
    ca: bool,
    spc: str | None = None,
    tnal: x509.UnrecognizedExtension | None = None,
    not_before: float = NOW - 86400,
    not_after: float = NOW + 30 * 86400,
    serial: int | None = None,
) -> x509.Certificate:
    b = (
        x509.CertificateBuilder()
        .subject_name(_name(cn))
        .issuer_name(_name(issuer_cn))
        .public_key(key.public_key())
        .serial_number(serial or x509.random_serial_number())
        .not_valid_before(dt.datetime.fromtimestamp(not_before, dt.timezone.utc))
        .not_valid_after(dt.datetime.fromtimestamp(not_after, dt.timezone.utc))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=not ca, content_commitment=False, key_encipherment=False,
                data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                encipher_only=False, decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if spc is not None:
        b = b.add_extension(tnauthlist(spc), critical=False)
    elif tnal is not None:
        b = b.add_extension(tnal, critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@dataclass
class Pki:
    root_key: ec.EllipticCurvePrivateKey
    root: x509.Certificate
    inter_key: ec.EllipticCurvePrivateKey
    inter: x509.Certificate
    leaf_key: ec.EllipticCurvePrivateKey
    leaf: x509.Certificate
    other_root_key: ec.EllipticCurvePrivateKey
    other_root: x509.Certificate
    extra: dict[str, bytes] = field(default_factory=dict)

    @property
    def bundle(self) -> bytes:
        return pem(self.leaf, self.inter)

    def leaf_variant(self, **kw: object) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        """A new leaf under the intermediate with different properties; returns (key, PEM bundle)."""
        key = ec.generate_private_key(ec.SECP256R1())
        if "tnal" not in kw:
            kw.setdefault("spc", "709J")
        cert = make_cert("variant leaf", key, "STI test intermediate", self.inter_key, ca=False, **kw)  # type: ignore[arg-type]
        return key, pem(cert, self.inter)

    def crl(self, *serials: int) -> bytes:
        b = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.inter.subject)
            .last_update(dt.datetime.fromtimestamp(NOW - 3600, dt.timezone.utc))
            .next_update(dt.datetime.fromtimestamp(NOW + 86400, dt.timezone.utc))
        )
        for s in serials:
            b = b.add_revoked_certificate(
                x509.RevokedCertificateBuilder()
                .serial_number(s)
                .revocation_date(dt.datetime.fromtimestamp(NOW - 60, dt.timezone.utc))
                .build()
            )
        return b.sign(self.inter_key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def build_pki() -> Pki:
    rk, ik, lk, ok = (ec.generate_private_key(ec.SECP256R1()) for _ in range(4))
    root = make_cert("STI test root", rk, "STI test root", rk, ca=True, not_after=NOW + 3650 * 86400)
    inter = make_cert("STI test intermediate", ik, "STI test root", rk, ca=True, not_after=NOW + 365 * 86400)
    leaf = make_cert("STI test leaf", lk, "STI test intermediate", ik, ca=False, spc="709J")
    other = make_cert("Other root", ok, "Other root", ok, ca=True)
    return Pki(rk, root, ik, inter, lk, leaf, ok, other)
