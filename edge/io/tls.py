"""TLS contexts for SIP over TLS (RFC 3261 §26.2; RFC 5630 for sips:). TLS 1.2+ only."""

from __future__ import annotations

import ssl

from edge.config import EdgeConfig, Listen


def make_server_context(ls: Listen) -> ssl.SSLContext:
    """Server side of a TLS listener; carriers may be required to present a client certificate."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.load_cert_chain(ls.tls_cert, ls.tls_key)
    if ls.tls_ca:
        ctx.load_verify_locations(ls.tls_ca)
    ctx.verify_mode = ssl.CERT_REQUIRED if ls.tls_verify_client else (ssl.CERT_OPTIONAL if ls.tls_ca else ssl.CERT_NONE)
    return ctx


def make_client_context(ls: Listen | None) -> ssl.SSLContext:
    """Client side toward PBXs and carriers: verify the server against tls_ca (or the system store);
    present the edge's certificate so peers that require mutual TLS accept us."""
    ctx = ssl.create_default_context(cafile=ls.tls_ca if ls is not None and ls.tls_ca else None)
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    ctx.check_hostname = False  # peers are configured by address; the chain is still verified
    if ls is not None and ls.tls_cert and ls.tls_key:
        ctx.load_cert_chain(ls.tls_cert, ls.tls_key)
    return ctx


def reload_server_context(ctx: ssl.SSLContext, ls: Listen) -> None:
    """SIGHUP: new connections get the renewed certificate; established ones keep theirs."""
    ctx.load_cert_chain(ls.tls_cert, ls.tls_key)
    if ls.tls_ca:
        ctx.load_verify_locations(ls.tls_ca)


def listener_errors(cfg: EdgeConfig) -> list[tuple[str, str]]:
    """A config check (edge.config.load_config `checks`): every TLS listener's certificate and key load."""
    errs: list[tuple[str, str]] = []
    for i, ls in enumerate(cfg.listen):
        if ls.transport != "tls":
            continue
        try:
            make_server_context(ls)
        except (OSError, ValueError) as exc:
            errs.append((f"$.listen[{i}].tls_cert", f"unusable certificate or key: {exc}"))
    return errs
