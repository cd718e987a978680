"""Interop with secsipidx (asipto, Go; Debian package): both directions, certificates served on 127.0.0.1.

secsipidx's CLI `-check` only verifies against a local public key file; its x5u-fetching verifier with CA
checking is the HTTP API (`-http-srv`, POST /v1/check), so that is what checks our headers against the
test STI-CA (`-cert-verify 5`: validity dates + custom root CA file, intermediates taken from the bundle).
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import time
from pathlib import Path

import aiohttp
import pytest
from aiohttp import web
from cryptography.hazmat.primitives import serialization

from edge.io.cert_fetch import CertFetcher, FetchSettings, verify
from edge.stir.result import StirStatus
from edge.stir.signer import Signer
from edge.stir.verifier import Verifier
from tests.stir.pki import CALLED, CALLER, Pki, key_pem, pem

SECSIPIDX = shutil.which("secsipidx") or "/usr/bin/secsipidx"
LOOPBACK_OK = FetchSettings(timeout=2.0, allow_insecure_hosts=("127.0.0.1",), allow_private_networks=("127.0.0.1/32",))


def test_interop_secsipidx_installed() -> None:
    assert Path(SECSIPIDX).exists(), "secsipidx missing: install the Debian package (make test does)"


@pytest.fixture
async def cert_server(pki: Pki):
    async def leaf(request: web.Request) -> web.Response:
        return web.Response(body=pki.bundle)

    app = web.Application()
    app.router.add_get("/leaf.pem", leaf)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    yield f"http://127.0.0.1:{port}/leaf.pem"
    await runner.cleanup()


async def _run(*args: str) -> tuple[int, str]:
    proc = await asyncio.create_subprocess_exec(
        SECSIPIDX, *args, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT
    )
    out, _ = await asyncio.wait_for(proc.communicate(), timeout=20)
    return proc.returncode or 0, out.decode()


async def test_interop_secsipidx_signed_header_verifies_in_sip_edge(
    tmp_path: Path, pki: Pki, verifier: Verifier, cert_server: str
) -> None:
    key = tmp_path / "key.pem"
    key.write_bytes(key_pem(pki.leaf_key))
    rc, out = await _run("-sign-full", "-orig-tn", CALLER, "-dest-tn", CALLED, "-attest", "B",
                         "-orig-id", "0e2b1c2a-1111-4a5b-9c00-0123456789ab", "-x5u", cert_server, "-k", str(key))
    assert rc == 0, out
    value = out.strip().splitlines()[-1]
    fetcher = CertFetcher(LOOPBACK_OK)
    res = await verify(verifier, fetcher, [value], "+" + CALLER, CALLED, "interop-1")
    await fetcher.close()
    assert (res.status, res.attestation, res.origid) == (StirStatus.PASSED, "B", "0e2b1c2a-1111-4a5b-9c00-0123456789ab")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
async def secsipidx_server(tmp_path: Path, pki: Pki):
    """secsipidx HTTP verifier trusting only the test root; yields a check(value, ca) -> (status, body)."""
    servers: list[asyncio.subprocess.Process] = []

    async def start(ca_pem: bytes) -> str:
        ca = tmp_path / f"ca{len(servers)}.pem"
        ca.write_bytes(ca_pem)
        port = _free_port()
        proc = await asyncio.create_subprocess_exec(
            SECSIPIDX, "-http-srv", f"127.0.0.1:{port}", "-expire", "60", "-timeout", "2",
            "-cert-verify", "5", "-ca-file", str(ca),
            stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL,
        )
        servers.append(proc)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                _, w = await asyncio.open_connection("127.0.0.1", port)
                w.close()
                return f"http://127.0.0.1:{port}/v1/check"
            except OSError:
                await asyncio.sleep(0.05)
        raise AssertionError("secsipidx HTTP server did not start")

    yield start
    for proc in servers:
        proc.terminate()
        await proc.wait()


async def _check(url: str, value: str) -> tuple[int, str]:
    async with aiohttp.ClientSession() as s, s.post(url, data=value.encode()) as r:
        return r.status, (await r.text()).strip()


async def test_interop_sip_edge_signed_header_verifies_in_secsipidx(
    pki: Pki, cert_server: str, secsipidx_server
) -> None:
    url = await secsipidx_server(pem(pki.root))
    value = Signer(key_pem(pki.leaf_key), cert_server).sign(CALLER, [CALLED], "A", "abc-origid", int(time.time()))
    assert await _check(url, value) == (200, "OK")
    # The same checker refuses a signature that does not match, so the OK above means something.
    head, payload, sig = value.split(";")[0].split(".")
    forged = f"{head}.{payload}.{sig[:-4]}AAAA" + value[value.index(";"):]
    assert (await _check(url, forged))[0] != 200


async def test_interop_secsipidx_refuses_sip_edge_header_with_other_ca(
    pki: Pki, cert_server: str, secsipidx_server
) -> None:
    url = await secsipidx_server(pem(pki.other_root))
    value = Signer(key_pem(pki.leaf_key), cert_server).sign(CALLER, [CALLED], "A", "abc", int(time.time()))
    assert (await _check(url, value))[0] != 200


async def test_interop_secsipidx_cli_check_with_public_key(tmp_path: Path, pki: Pki) -> None:
    pub = tmp_path / "pub.pem"
    pub.write_bytes(pki.leaf.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))
    value = Signer(key_pem(pki.leaf_key), "https://cert.example.net/x.pem").sign(
        CALLER, [CALLED], "C", "abc", int(time.time()))
    rc, out = await _run("-check", "-identity", value, "-fpubkey", str(pub), "-expire", "60")
    assert rc == 0, out
