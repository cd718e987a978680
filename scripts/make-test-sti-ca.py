#!/usr/bin/env python3
"""Make a throw-away STI PKI for development and tests (ATIS-1000080 shape, RFC 8226 TNAuthList).

Writes into OUT (default config/sti-ca):
  root.pem                  trust anchor (self-signed CA; other certificates at the top level are chain material only)
  signing/key.pem           EC P-256 private key of the STI leaf certificate (TEST ONLY, never for carriers)
  signing/cert-bundle.pem   leaf certificate then intermediate: what an x5u URL serves
Run: .venv/bin/python scripts/make-test-sti-ca.py [--out DIR] [--spc 709J] [--days 730]
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TNAUTHLIST_OID = x509.ObjectIdentifier("1.3.6.1.5.5.7.1.26")


def tnauthlist(spc: str) -> x509.UnrecognizedExtension:
    ia5 = bytes([0x16, len(spc)]) + spc.encode("ascii")
    entry = bytes([0xA0, len(ia5)]) + ia5
    return x509.UnrecognizedExtension(TNAUTHLIST_OID, bytes([0x30, len(entry)]) + entry)


def cert(cn: str, key, issuer: x509.Name | None, issuer_key, *, ca: bool, days: int, spc: str | None = None):
    now = dt.datetime.now(dt.timezone.utc)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                         x509.NameAttribute(NameOID.ORGANIZATION_NAME, "sip-edge TEST STI-CA")])
    b = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer or subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(digital_signature=not ca, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=ca, crl_sign=ca,
                                     encipher_only=False, decipher_only=False), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if spc:
        b = b.add_extension(tnauthlist(spc), critical=False)
    return b.sign(issuer_key, hashes.SHA256())


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out", default="config/sti-ca")
    p.add_argument("--spc", default="709J", help="Service Provider Code put in TNAuthList")
    p.add_argument("--days", type=int, default=730, help="leaf validity")
    args = p.parse_args(argv)

    rk, ik, lk = (ec.generate_private_key(ec.SECP256R1()) for _ in range(3))
    root = cert("sip-edge TEST STI root", rk, None, rk, ca=True, days=3650)
    inter = cert("sip-edge TEST STI intermediate", ik, root.subject, rk, ca=True, days=1825)
    leaf = cert(f"sip-edge TEST SHAKEN {args.spc}", lk, inter.subject, ik, ca=False, days=args.days, spc=args.spc)

    out = Path(args.out)
    (out / "signing").mkdir(parents=True, exist_ok=True)
    pem = serialization.Encoding.PEM
    (out / "root.pem").write_bytes(root.public_bytes(pem))
    (out / "signing" / "cert-bundle.pem").write_bytes(leaf.public_bytes(pem) + inter.public_bytes(pem))
    key_file = out / "signing" / "key.pem"
    key_file.write_bytes(lk.private_bytes(pem, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
    key_file.chmod(0o600)
    sys.stdout.write(f"wrote {out}/root.pem, {out}/signing/cert-bundle.pem, {key_file}\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
