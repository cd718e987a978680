"""Console users: who may log in, for which customer, with which role; secrets kept only as scrypt hashes.

hashlib.scrypt (RFC 7914) from the standard library: memory-hard, so a stolen store does not give
cheap guesses. The hash string carries its parameters, so they can be raised later without
invalidating existing users.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import re
import secrets

import msgspec

# n=2**14, r=8 costs 16 MiB and ~50 ms per check: fine for logins (which are rate limited).
SCRYPT_N = 1 << 14
SCRYPT_R = 8
SCRYPT_P = 1
MIN_SECRET = 10
MAX_SECRET = 1024  # hashing cost must not depend on what a stranger sends

_NAME = re.compile(r"^[a-z0-9][a-z0-9._@-]{0,63}$")
_CUSTOMER = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class Role(str, enum.Enum):
    VIEWER = "viewer"  # reads its customer's activities, rules, numbers, voicemail
    EDITOR = "editor"  # ... and flags, blocks, releases, deletes voicemail for its customer
    OPERATOR = "operator"  # every customer, global rules, forced assignments


class ConsoleUser(msgspec.Struct, frozen=True):
    name: str
    role: Role
    customer: str = ""  # '' only for operators
    secret_hash: str = ""
    created_at: float = 0.0


def _b64(raw: bytes) -> str:
    return base64.b64encode(raw).decode()


def hash_secret(secret: str, salt: bytes | None = None) -> str:
    """'scrypt$n$r$p$salt$hash' (base64 fields)."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    digest = hashlib.scrypt(secret.encode(), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P, dklen=32)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_secret(secret: str, stored: str) -> bool:
    """Constant-time check; a malformed stored hash or an oversized secret never matches."""
    if len(secret) > MAX_SECRET:
        return False
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        want = base64.b64decode(digest)
        got = hashlib.scrypt(secret.encode(), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p),
                             dklen=len(want), maxmem=64 << 20)
    except (ValueError, TypeError):
        return False
    return hmac.compare_digest(got, want)


def new_secret() -> str:
    return secrets.token_urlsafe(18)


def validate_user(name: str, role: Role, customer: str, secret: str | None = None) -> list[str]:
    """Reasons the user cannot be created (empty when it can)."""
    errors = []
    if not _NAME.match(name):
        errors.append(f"invalid user name {name!r}: lower-case letters, digits and . _ @ - (at most 64)")
    if role is Role.OPERATOR and customer:
        errors.append("an operator sees every customer: give no --customer")
    if role is not Role.OPERATOR and not _CUSTOMER.match(customer):
        errors.append(f"role {role.value} needs --customer (letters, digits, . _ -)")
    if secret is not None and not MIN_SECRET <= len(secret) <= MAX_SECRET:
        errors.append(f"password must be {MIN_SECRET}-{MAX_SECRET} characters")
    return errors
