"""`sip-edge` argument parsing and the run/check commands; command groups register from their modules."""

from __future__ import annotations

import argparse
import sys

DEFAULT_CONFIG = "config/edge.toml"
DEFAULT_DIALPLANS = "dialplans"


def _run(args: argparse.Namespace) -> int:
    from edge.config import ConfigError
    from edge.daemon.process import run_daemon
    from edge.dialplan.load import DialplanError

    try:
        return run_daemon(args.config, args.dialplans, args.worker)
    except (ConfigError, DialplanError) as exc:
        sys.stderr.write("\n".join(exc.errors) + "\n")
        return 1


def _check(args: argparse.Namespace) -> int:
    from edge.cli.check import check, trust_report

    errors = check(args.config, args.dialplans)
    for line in trust_report(args.config):
        sys.stdout.write(line + "\n")
    for e in errors:
        sys.stderr.write(e + "\n")
    if errors:
        sys.stderr.write(f"{len(errors)} error(s)\n")
        return 1
    from edge.build import build_info

    sys.stdout.write(build_info().describe() + "\n")
    sys.stdout.write(f"ok: {args.config} and {args.dialplans}\n")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="sip-edge", description="SIP/RTP edge proxy that screens unwanted calls")
    sub = p.add_subparsers(dest="command", required=True)
    r = sub.add_parser("run", help="run the daemon in the foreground")
    r.add_argument("--config", default=DEFAULT_CONFIG)
    r.add_argument("dialplans", nargs="?", default=DEFAULT_DIALPLANS)
    r.add_argument("--worker", default="", help=argparse.SUPPRESS)  # set by the supervisor ([daemon] workers)
    r.set_defaults(func=_run)
    c = sub.add_parser("check", help="validate config and dialplans; prints 'file:line:col: $.path: reason' per problem")
    c.add_argument("--config", default=DEFAULT_CONFIG)
    c.add_argument("dialplans", nargs="?", default=DEFAULT_DIALPLANS)
    c.set_defaults(func=_check)
    from edge.cli import activities, explain, messages, numbers, stir, users

    for module in (activities, numbers, stir, messages, users, explain):
        module.register(sub)  # activities, flag, block, voicemail / numbers / stir / messages, optouts / users / explain
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
