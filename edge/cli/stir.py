"""`sip-edge stir verify` and `sip-edge stir sign`: operator tools for debugging a carrier's Identity headers
(RFC 8224 §6.2 checks, one line per check) and producing test headers (RFC 8588 §4)."""

from __future__ import annotations

import argparse
import asyncio
import sys
import time
from pathlib import Path

import msgspec

from edge.io.cert_fetch import CertFetcher, FetchSettings, load_trust_store
from edge.io.cert_fetch import verify as verify_async
from edge.stir.failures import SIP_REASONS
from edge.stir.result import StirResult, StirStatus
from edge.units import parse_duration
from edge.stir.signer import Signer, origid_for
from edge.stir.verifier import Check, NeedCertificate, Verifier, VerifierSettings


def register(subparsers: argparse._SubParsersAction) -> None:
    stir = subparsers.add_parser("stir", help="STIR/SHAKEN tools: verify or sign an Identity header")
    sub = stir.add_subparsers(dest="stir_command", required=True)

    v = sub.add_parser("verify", help="verify Identity header value(s) and print every check")
    v.add_argument("--identity", action="append", required=True, help="Identity header value (repeat for several)")
    v.add_argument("--from", dest="calling", required=True, help="calling number (PAI user part, else From)")
    v.add_argument("--to", dest="called", required=True, help="called number (Request-URI user part)")
    v.add_argument("--call-id", default="sip-edge-stir-verify")
    v.add_argument("--trust-dir", default="config/sti-ca", help="STI-CA trust anchors and CRLs")
    v.add_argument("--crl-dir", default="")
    v.add_argument("--now", type=float, default=None, help="unix time to verify at (default: now)")
    v.add_argument("--max-age", default="60s", help="freshness window, e.g. 60s")
    v.add_argument("--cert-file", default=None, help="offline: use this PEM bundle instead of fetching x5u")
    v.add_argument("--fetch-timeout", default="2s")
    v.add_argument("--allow-insecure-host", action="append", default=[], help="allow http:// for this host")
    v.add_argument("--allow-private-network", action="append", default=[], help="allow x5u in this CIDR")
    v.add_argument("--json", action="store_true", help="JSON output")
    v.set_defaults(func=cmd_verify)

    s = sub.add_parser("sign", help="print a signed SHAKEN Identity header value")
    s.add_argument("--key", required=True, help="PEM EC P-256 private key")
    s.add_argument("--x5u", required=True, help="URL of the signing certificate")
    s.add_argument("--from", dest="calling", required=True)
    s.add_argument("--to", dest="called", action="append", required=True, help="called number (repeatable)")
    s.add_argument("--attest", choices=("A", "B", "C"), default="C")
    s.add_argument("--origid", default=None, help="default: uuid5 of --customer")
    s.add_argument("--customer", default="sip-edge")
    s.add_argument("--iat", type=int, default=None, help="unix time (default: now)")
    s.set_defaults(func=cmd_sign)


def _out(line: str) -> None:
    sys.stdout.write(line + "\n")


def _run_offline(verifier: Verifier, args: argparse.Namespace, now: float, trace: list[Check]) -> StirResult:
    body = Path(args.cert_file).read_bytes()
    for _ in range(len(args.identity) + 2):
        trace.clear()
        out = verifier.verify(args.identity, args.calling, args.called, args.call_id, now, trace)
        if not isinstance(out, NeedCertificate):
            return out
        verifier.certificate_fetched(out.url, body, None, "", now)
    raise RuntimeError("verification did not settle")


async def _run_online(verifier: Verifier, args: argparse.Namespace, now: float | None, trace: list[Check]) -> StirResult:
    fetcher = CertFetcher(
        FetchSettings(
            timeout=parse_duration(args.fetch_timeout),
            allow_insecure_hosts=tuple(args.allow_insecure_host),
            allow_private_networks=tuple(args.allow_private_network),
        )
    )
    clock = (lambda: now) if now is not None else time.time
    try:
        return await verify_async(verifier, fetcher, args.identity, args.calling, args.called, args.call_id, clock, trace)
    finally:
        await fetcher.close()


def cmd_verify(args: argparse.Namespace) -> int:
    try:
        trust = load_trust_store(args.trust_dir, args.crl_dir)
    except (OSError, ValueError) as exc:
        sys.stderr.write(f"stir verify: cannot load trust directory: {exc}\n")
        return 2
    if not trust.anchors:
        sys.stderr.write(f"stir verify: no trust anchors in {args.trust_dir}\n")
        return 2
    verifier = Verifier(trust, VerifierSettings(max_age=parse_duration(args.max_age)))
    trace: list[Check] = []
    now = args.now
    if args.cert_file:
        result = _run_offline(verifier, args, now if now is not None else time.time(), trace)
    else:
        result = asyncio.run(_run_online(verifier, args, now, trace))
    passed = result.status is StirStatus.PASSED
    if args.json:
        doc = {
            "verdict": result.status.value,
            "verstat": result.verstat,
            "result": msgspec.to_builtins(result),
            "checks": msgspec.to_builtins(trace),
        }
        sys.stdout.write(msgspec.json.encode(doc).decode() + "\n")
    else:
        for c in trace:
            _out(f"{'ok  ' if c.ok else 'FAIL'}  {c.step:<27} {c.detail}")
        if passed:
            _out(f"verdict: passed, attestation {result.attestation}, origid {result.origid}"
                 + (f", rcd name {result.rcd_name!r}" if result.rcd_name else ""))
        else:
            phrase = SIP_REASONS.get(result.sip_status, "")
            _out(f"verdict: {result.status.value}, {result.code} ({result.layer}) -> {result.sip_status} {phrase}: {result.reason}")
        _out(f"verstat: {result.verstat}")
    return 0 if passed else 1


def cmd_sign(args: argparse.Namespace) -> int:
    try:
        signer = Signer(Path(args.key).read_bytes(), args.x5u)
    except (OSError, ValueError, TypeError) as exc:
        sys.stderr.write(f"stir sign: cannot load key {args.key}: {exc}\n")
        return 2
    iat = args.iat if args.iat is not None else int(time.time())
    origid = args.origid or origid_for(args.customer)
    _out(signer.sign(args.calling, args.called, args.attest, origid, iat))
    return 0
