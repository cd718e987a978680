"""`sip-edge explain`: what would happen to a contact right now, without placing it (edge.call.explain).

From files alone (config and dialplans, zero counts) by default; `--live` asks the running daemon
through the admin API, whose answer carries its current rate counts, cool-offs, runtime blocks and
captcha passes.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

import msgspec

from edge.call.explain import ExplainRequest, Explanation, carrier_source, explain, render, validate_request
from edge.cli.admin_client import DEFAULT_CONFIG, AdminError, client_from_args, client_options, default_config

DEFAULT_DIALPLANS = "dialplans"


def _dialplans_beside(config: str) -> str:
    """A checkout keeps dialplans/ at its root; an installed config keeps them next to it (/etc/sip-edge/dialplans)."""
    return DEFAULT_DIALPLANS if config == DEFAULT_CONFIG else str(Path(config).parent / "dialplans")


def _request(args: argparse.Namespace) -> ExplainRequest:
    return ExplainRequest(called=args.to, calling=args.calling, name=args.name, source=args.source,
                          stir=args.stir, attestation=args.attestation, fax=args.fax)


def _from_files(req: ExplainRequest, config: str, dialplans: str) -> Explanation | list[str]:
    """Build what the daemon builds at start (plan, rules, verifier) with a fresh engine: every count zero."""
    from edge.call.admission import Gatekeeper
    from edge.call.peers import PeerDirectory
    from edge.cli.check import prompt_names
    from edge.config import ConfigError, load_config
    from edge.dialplan.load import DialplanError, load_dialplans
    from edge.policy.pipeline import PolicyEngine

    try:
        cfg = load_config(config)
        plan, _ = load_dialplans(dialplans, {p.name for p in cfg.pbx}, prompts=prompt_names(cfg))
    except (ConfigError, DialplanError) as exc:
        return exc.errors
    engine = PolicyEngine(cfg.policy)
    engine.replace_static_rules(plan.rules)
    verifier = None
    if cfg.stir.enabled:  # so the number's STIR policy applies as in the daemon
        from edge.io.cert_fetch import load_trust_store
        from edge.stir.verifier import Verifier, VerifierSettings

        verifier = Verifier(load_trust_store(cfg.stir.trust_dir, cfg.stir.crl_dir), VerifierSettings.from_config(cfg.stir))
    gate = Gatekeeper(engine, cfg.stir, verifier)
    src = carrier_source(req.source, [c.sources for c in cfg.carriers], PeerDirectory(cfg.call_settings()))
    if isinstance(src, str):
        return [src]
    return explain(req, plan, gate, src[0], src[1], time.time())


def _explain(args: argparse.Namespace) -> int:
    import logging

    import structlog

    # Loading logs (rules replaced, ...) are for the daemon's journal, not this command's output.
    saved = structlog.get_config()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING))
    try:
        return _run(args)
    finally:
        structlog.configure(**saved)


def _run(args: argparse.Namespace) -> int:
    req = _request(args)
    problems = validate_request(req)
    if problems:
        sys.stderr.write("".join(f"error: {p}\n" for p in problems))
        return 1
    if args.live:
        try:
            body = client_from_args(args).post("/explain", msgspec.to_builtins(req))
        except AdminError as exc:
            sys.stderr.write(f"error: {exc.message}\n")
            return 2 if exc.status == 0 else 1
        result: Explanation | list[str] = msgspec.convert(body, Explanation)
    else:
        config = getattr(args, "config", None) or default_config() or DEFAULT_CONFIG
        result = _from_files(req, config, args.dialplans or _dialplans_beside(config))
    if isinstance(result, list):
        sys.stderr.write("".join(f"{p}\n" for p in result))
        return 1
    if args.json:
        sys.stdout.write(json.dumps(msgspec.to_builtins(result), indent=2, sort_keys=True) + "\n")
    else:
        sys.stdout.write(render(result))
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "explain", parents=[client_options()],
        help="the decision path a call would take now (dialplan entry, rules, rates, signals, score, treatment)")
    p.add_argument("--from", dest="calling", default="", help="calling number (omit for an anonymous caller)")
    p.add_argument("--name", default="", help="caller name (CNAM)")
    p.add_argument("--to", required=True, help="called number")
    p.add_argument("--source", default="", help="carrier source IP (default: the first carrier's)")
    p.add_argument("--stir", choices=["absent", "passed", "failed"], default="absent", help="assumed STIR/SHAKEN outcome")
    p.add_argument("--attestation", choices=["A", "B", "C"], default="A", help="with --stir passed")
    p.add_argument("--fax", action="store_true", help="the INVITE offers T.38")
    p.add_argument("--live", action="store_true", help="ask the running daemon (live counts) through the admin API")
    p.add_argument("--dialplans", default="", help="dialplan directory (files alone; default: dialplans/ of a checkout, "
                   "else the dialplans/ next to the config)")
    p.set_defaults(func=_explain)
