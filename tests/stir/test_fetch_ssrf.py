"""x5u SSRF guard (issue 13 item 2): hosts the HTTP client would normalise into a refused address, and the
last check on the address each connection really goes to. A throw-away HTTP server on 127.0.0.1 stands in
for an internal service; every refused URL must leave it untouched."""

from __future__ import annotations

import socket

import aiohttp
import aiohttp.abc
import pytest
from aiohttp import web

from edge.io.cert_fetch import CertFetcher, FetchSettings, plain_host


@pytest.fixture
async def internal():
    """An 'internal' HTTP service on loopback counting the requests that reach it."""
    hits: list[str] = []

    async def anything(request: web.Request) -> web.Response:
        hits.append(request.path)
        return web.Response(body=b"-----BEGIN CERTIFICATE-----\n")

    app = web.Application()
    app.router.add_get("/{tail:.*}", anything)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield port, hits
    await runner.cleanup()


#: Spellings of 127.0.0.1 that yarl or the C library turn into loopback; each must be refused by name.
LOOPBACK_SPELLINGS = {
    "fullwidth-digits": ("\uff11\uff12\uff17.\uff10.\uff10.\uff11", "not plain ASCII"),
    "ideographic-full-stops": ("127\u30020\u30020\u30021", "not plain ASCII"),
    "fullwidth-full-stops": ("127\uff0e0\uff0e0\uff0e1", "not plain ASCII"),
    "integer": ("2130706433", "non-canonical form"),
    "octal": ("0177.0.0.1", "non-canonical form"),
    "hex": ("0x7f.0.0.1", "non-canonical form"),
    "hex-integer": ("0x7f000001", "non-canonical form"),
    "short": ("127.1", "non-canonical form"),
    "leading-zero": ("127.000.000.001", "non-canonical form"),
    "ipv4-mapped": ("[::ffff:127.0.0.1]", "embedding an IPv4 address"),
    "ipv4-mapped-hex": ("[::ffff:7f00:1]", "embedding an IPv4 address"),
    "percent-escaped": ("%31%32%37.0.0.1", "letters, digits and hyphens"),
}


@pytest.mark.parametrize("name", sorted(LOOPBACK_SPELLINGS))
@pytest.mark.parametrize("scheme", ["https", "http"])
async def test_x5u_loopback_spellings_refused_before_connecting(internal, name: str, scheme: str) -> None:
    port, hits = internal
    host, why = LOOPBACK_SPELLINGS[name]
    # Even with the spelling itself listed as an insecure host, nothing may reach loopback.
    f = CertFetcher(FetchSettings(timeout=2.0, allow_insecure_hosts=(host,)))
    res = await f.fetch(f"{scheme}://{host}:{port}/c.pem")
    await f.close()
    assert res.body is None
    assert "refused" in res.error and why in res.error, res.error
    assert hits == []


@pytest.mark.parametrize(
    ("host", "ok"),
    [("cert.example.net", True), ("sti-cert.example.", True), ("xn--bcher-kva.example", True), ("8.8.8.8", True),
     ("2001:db8::1", True), ("b\u00fccher.example", False), ("under_score.example", False), ("-lead.example", False),
     ("1.2.3", False), ("256.1.1.1", False), ("", False)],
)
def test_plain_host_accepts_only_ldh_and_canonical_literals(host: str, ok: bool) -> None:
    assert (plain_host(host) == "") is ok


class _UnguardedResolver(aiohttp.abc.AbstractResolver):
    """A resolver that checks nothing (as if the name check were fooled): the socket-level check must hold."""

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET):
        return [{"hostname": host, "host": "127.0.0.1", "port": port, "family": socket.AF_INET, "proto": 0,
                 "flags": socket.AI_NUMERICHOST}]

    async def close(self) -> None:
        pass


async def test_x5u_connection_to_refused_address_stopped_at_the_socket(internal) -> None:
    port, hits = internal
    f = CertFetcher(FetchSettings(timeout=2.0, allow_insecure_hosts=("cert.example.net",)), resolver=_UnguardedResolver())
    res = await f.fetch(f"http://cert.example.net:{port}/c.pem")
    await f.close()
    assert res.body is None
    assert "refused address 127.0.0.1" in res.error, res.error
    assert hits == []


async def test_x5u_socket_check_lets_configured_private_networks_through(internal) -> None:
    port, hits = internal
    settings = FetchSettings(timeout=2.0, allow_insecure_hosts=("cert.example.net",), allow_private_networks=("127.0.0.1/32",))
    f = CertFetcher(settings, resolver=_UnguardedResolver())
    res = await f.fetch(f"http://cert.example.net:{port}/c.pem")
    await f.close()
    assert res.error == "" and res.body is not None
    assert hits == ["/c.pem"]
