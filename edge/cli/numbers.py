"""Operator commands for the number lifecycle: `sip-edge numbers release|status|available|assign`."""

from __future__ import annotations

import argparse
import sys

from edge.cli.admin_client import AdminClient, client_options, command, fmt_time, write_fields, write_json, write_table

_HEADERS = ["NUMBER", "STATE", "CUSTOMER", "RELEASED (UTC)", "DAYS", "RESIDUAL", "ELIGIBLE FROM (UTC)", "WHY NOT YET"]


def _row(s: dict) -> tuple:
    return (s["number"], s["state"], s["customer"], fmt_time(s["released_at"]), s["days_in_quarantine"],
            s["total_residual"], fmt_time(s["eligible_at"]), s["reason"])


def _write_status(s: dict) -> None:
    write_fields(
        {k: v for k, v in s.items() if k != "residual_per_day"},
        order=("number", "state", "customer", "released_at", "days_in_quarantine", "eligible_at", "reason", "total_residual"),
    )
    if s["residual_per_day"]:
        sys.stdout.write("residual traffic per day:\n")
        for day, count in sorted(s["residual_per_day"].items()):
            sys.stdout.write(f"  {day}  {count}\n")


def _release(client: AdminClient, args: argparse.Namespace) -> int:
    s = client.post(f"/numbers/{args.number}/release", {"customer": args.customer} if args.customer else {})
    if args.json:
        write_json(s)
    else:
        sys.stdout.write(f"{s['number']} released; eligible from {fmt_time(s['eligible_at'])} UTC at the earliest\n")
    return 0


def _status(client: AdminClient, args: argparse.Namespace) -> int:
    if args.number:
        s = client.get(f"/numbers/{args.number}")
        if args.json:
            write_json(s)
        else:
            _write_status(s)
        return 0
    numbers = client.get("/numbers")["numbers"]
    if args.json:
        write_json(numbers)
    else:
        write_table(_HEADERS, [_row(s) for s in numbers])
    return 0


def _available(client: AdminClient, args: argparse.Namespace) -> int:
    numbers = client.get("/numbers-available")["numbers"]
    if args.json:
        write_json(numbers)
    else:
        write_table(_HEADERS[:6], [_row(s)[:6] for s in numbers])
    return 0


def _assign(client: AdminClient, args: argparse.Namespace) -> int:
    s = client.post(f"/numbers/{args.number}/assign", {"customer": args.customer, "force": args.force, "reason": args.reason})
    if args.json:
        write_json(s)
    else:
        forced = " (forced override recorded)" if args.force and s["overrides"] else ""
        sys.stdout.write(f"{s['number']} assigned to {s['customer']}{forced}\n")
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    opts = client_options()
    numbers = subparsers.add_parser("numbers", help="number lifecycle: release, quarantine, reassignment")
    sub = numbers.add_subparsers(dest="numbers_command", required=True)

    p = sub.add_parser("release", parents=[opts], help="release a number into quarantine (calls get the intercept)")
    p.add_argument("number")
    p.add_argument("--customer", default="", help="the customer giving it up (recorded)")
    p.set_defaults(func=command(_release))

    p = sub.add_parser("status", parents=[opts], help="state, days in quarantine, residual traffic, eligibility")
    p.add_argument("number", nargs="?")
    p.set_defaults(func=command(_status))

    p = sub.add_parser("available", parents=[opts], help="released numbers now eligible for reassignment")
    p.set_defaults(func=command(_available))

    p = sub.add_parser("assign", parents=[opts], help="reassign a released number (refused before it is eligible)")
    p.add_argument("number")
    p.add_argument("--customer", required=True)
    p.add_argument("--force", action="store_true", help="override the refusal; needs --reason, recorded")
    p.add_argument("--reason", default="")
    p.set_defaults(func=command(_assign))
