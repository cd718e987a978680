"""x5u fetching against a throw-away aiohttp server on 127.0.0.1 (loopback allowed only via config)."""

from __future__ import annotations

import asyncio
import time

import pytest
from aiohttp import web

from edge.io.cert_fetch import CertFetcher, FetchSettings, address_allowed, verify
from edge.stir.result import StirStatus
from edge.stir.verifier import Verifier
from tests.stir.pki import CALLED, CALLER, Pki
from tests.stir.tokens import claims, header, identity

LOOPBACK_OK = FetchSettings(timeout=2.0, max_bytes=8192, allow_insecure_hosts=("127.0.0.1",),
                            allow_private_networks=("127.0.0.1/32",))


@pytest.fixture
async def server(pki: Pki):
    hits: dict[str, int] = {}

    async def cert(request: web.Request) -> web.Response:
        hits["cert"] = hits.get("cert", 0) + 1
        await asyncio.sleep(0.05)  # keep the request open so concurrent fetches overlap
        return web.Response(body=pki.bundle, headers={"Cache-Control": "max-age=600"})

    async def redirect(request: web.Request) -> web.Response:
        raise web.HTTPFound("/cert.pem")

    async def big(request: web.Request) -> web.Response:
        return web.Response(body=b"A" * 20000)

    async def missing(request: web.Request) -> web.Response:
        return web.Response(status=404)

    app = web.Application()
    app.router.add_get("/cert.pem", cert)
    app.router.add_get("/redirect", redirect)
    app.router.add_get("/big", big)
    app.router.add_get("/missing", missing)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}", hits
    await runner.cleanup()


async def test_fetch_loopback_allowed_by_config(server) -> None:
    base, _ = server
    f = CertFetcher(LOOPBACK_OK)
    res = await f.fetch(f"{base}/cert.pem")
    await f.close()
    assert res.error == "" and res.body is not None and b"BEGIN CERTIFICATE" in res.body
    assert res.cache_control == "max-age=600"


@pytest.mark.parametrize(
    ("settings", "path", "error"),
    [
        (FetchSettings(allow_insecure_hosts=("127.0.0.1",)), "/cert.pem", "refused range"),
        (FetchSettings(allow_private_networks=("127.0.0.1/32",)), "/cert.pem", "is not https"),
        (LOOPBACK_OK, "/redirect", "redirect refused (HTTP 302)"),
        (LOOPBACK_OK, "/big", "larger than 8192 bytes"),
        (LOOPBACK_OK, "/missing", "HTTP 404"),
    ],
    ids=["loopback-not-listed", "http-not-listed", "redirect", "oversize", "not-found"],
)
async def test_fetch_refusals(server, settings: FetchSettings, path: str, error: str) -> None:
    base, _ = server
    f = CertFetcher(settings)
    res = await f.fetch(base + path)
    await f.close()
    assert res.body is None
    assert error in res.error


@pytest.mark.parametrize(
    ("url", "error"),
    [
        ("ftp://cert.example.net/c.pem", "scheme 'ftp' refused"),
        ("https://user:pw@cert.example.net/c.pem", "userinfo refused"),
        ("https://10.1.2.3/c.pem", "refused range"),
        ("https://169.254.169.254/latest", "refused range"),
        ("https://[::1]/c.pem", "refused range"),
        ("https://[::ffff:192.168.1.1]/c.pem", "embedding an IPv4 address"),
    ],
    ids=["ftp", "userinfo", "rfc1918", "link-local-metadata", "ipv6-loopback", "v4-mapped-private"],
)
async def test_fetch_url_refused_before_connecting(url: str, error: str) -> None:
    f = CertFetcher(FetchSettings())
    res = await f.fetch(url)
    assert res.body is None and error in res.error


async def test_fetch_hostname_resolving_to_loopback_refused() -> None:
    f = CertFetcher(FetchSettings(timeout=2.0))
    res = await f.fetch("https://localhost:1/c.pem")
    await f.close()
    assert res.body is None and "refused address" in res.error


@pytest.mark.parametrize(
    ("address", "allowed"),
    [("8.8.8.8", True), ("127.0.0.1", False), ("192.168.0.1", False), ("fe80::1", False), ("100.64.0.1", True)],
)
def test_fetch_address_allowed(address: str, allowed: bool) -> None:
    assert address_allowed(address, []) is allowed


async def test_fetch_coalesces_concurrent_requests(server) -> None:
    base, hits = server
    f = CertFetcher(LOOPBACK_OK)
    results = await asyncio.gather(*(f.fetch(f"{base}/cert.pem") for _ in range(5)))
    await f.close()
    assert hits["cert"] == 1
    assert all(r.body == results[0].body and r.body for r in results)


async def test_fetch_async_verify_end_to_end(server, verifier: Verifier, pki: Pki) -> None:
    base, hits = server
    x5u = f"{base}/cert.pem"
    f = CertFetcher(LOOPBACK_OK)
    # verify() reads the real clock: the token is made now, not when the module was imported.
    value = identity(pki.leaf_key, header(x5u=x5u), claims(iat=int(time.time())))
    res = await verify(verifier, f, [value], CALLER, CALLED, "call-1")
    res2 = await verify(verifier, f, [value], CALLER, CALLED, "call-1")
    await f.close()
    assert res.status is StirStatus.PASSED and res2.status is StirStatus.PASSED
    assert hits["cert"] == 1  # second verification served from the cache


async def test_fetch_async_verify_fetch_failure_is_436(server, verifier: Verifier, pki: Pki) -> None:
    base, _ = server
    f = CertFetcher(LOOPBACK_OK)
    fresh = claims(iat=int(time.time()))
    res = await verify(verifier, f, [identity(pki.leaf_key, header(x5u=f"{base}/redirect"), fresh)], CALLER, CALLED, "c")
    await f.close()
    assert (res.code, res.sip_status) == ("fetch_failed", 436)
    assert "redirect refused" in res.reason
