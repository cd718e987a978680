"""Operator commands for texts: `sip-edge messages held|release|drop` and `sip-edge optouts` (admin API clients)."""

from __future__ import annotations

import argparse
import sys

from edge.daemon.admin_client import AdminClient, client_options, command, fmt_time, write_json, write_table


def _held(client: AdminClient, args: argparse.Namespace) -> int:
    items = client.get("/messages/held", **({"customer": args.customer} if args.customer else {}))["held"]
    if args.json:
        write_json(items)
    else:
        write_table(["ID", "RECEIVED (UTC)", "CUSTOMER", "FROM", "TO", "WHY", "TEXT"],
                    [(h["id"], fmt_time(h["received_at"]), h["customer"], h["sender"], h["recipient"], h["reason"],
                      " ".join(h["body"].split())[:60]) for h in items])
    return 0


def _release(client: AdminClient, args: argparse.Namespace) -> int:
    out = client.post(f"/messages/held/{args.id}/release")
    write_json(out) if args.json else sys.stdout.write(f"{args.id} released to the PBX\n")
    return 0


def _drop(client: AdminClient, args: argparse.Namespace) -> int:
    out = client.delete(f"/messages/held/{args.id}")
    write_json(out) if args.json else sys.stdout.write(f"{args.id} dropped\n")
    return 0


def _optouts(client: AdminClient, args: argparse.Namespace) -> int:
    items = client.get("/optouts")["optouts"]
    if args.json:
        write_json(items)
    else:
        write_table(["CAMPAIGN", "RECIPIENT", "SINCE (UTC)", "KEYWORD"],
                    [(o["campaign"], o["recipient"], fmt_time(o["at"]), o["keyword"]) for o in items])
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    opts = client_options()
    messages = subparsers.add_parser("messages", help="texts held for review: list, release, drop")
    sub = messages.add_subparsers(dest="messages_command", required=True)
    p = sub.add_parser("held", parents=[opts], help="messages held for review, oldest first")
    p.add_argument("--customer", default="")
    p.set_defaults(func=command(_held))
    p = sub.add_parser("release", parents=[opts], help="deliver a held message to its number's PBX")
    p.add_argument("id")
    p.set_defaults(func=command(_release))
    p = sub.add_parser("drop", parents=[opts], help="drop a held message")
    p.add_argument("id")
    p.set_defaults(func=command(_drop))
    p = subparsers.add_parser("optouts", parents=[opts], help="recipients who opted out of a campaign (STOP)")
    p.set_defaults(func=command(_optouts))
