"""Operator commands for the activities log and block rules: `sip-edge activities|activity|flag|block`.

Each talks to the running daemon's admin API (see edge.cli.admin_client for where it connects).
"""

from __future__ import annotations

import argparse
import sys

from edge.cli.admin_client import AdminClient, client_options, command, fmt_time, write_fields, write_json, write_table
from edge.policy.facts import Action
from edge.policy.rules import Scope

_ACTIONS = [a.value for a in Action if a not in (Action.ALLOW, Action.INTERCEPT)]
_SCOPES = [s.value for s in Scope]


def _activities(client: AdminClient, args: argparse.Namespace) -> int:
    page = client.get(
        "/activities",
        since=args.since,
        until=args.until,
        number=args.number,
        calling=args.calling,
        called=args.called,
        decision=args.decision,
        flagged=True if args.flagged else None,
        limit=args.limit,
        cursor=args.cursor,
    )
    if args.json:
        write_json(page)
        return 0
    rows = [
        (a["id"], fmt_time(a["received_at"]), a["kind"], a["calling_number"], a["called_number"], a["cnam"],
         a["decision"], a["final_status"] or "", a["rule_id"], "yes" if a["flagged"] else "")
        for a in page["items"]
    ]
    write_table(["ID", "RECEIVED (UTC)", "KIND", "CALLING", "CALLED", "CNAM", "DECISION", "STATUS", "RULE", "FLAGGED"], rows)
    if page["next_cursor"]:
        sys.stdout.write(f"more: --cursor {page['next_cursor']}\n")
    return 0


def _voicemail(client: AdminClient, args: argparse.Namespace) -> int:
    page = client.get("/voicemail", since=args.since, number=args.number, called=args.called, limit=args.limit,
                      cursor=args.cursor)
    if args.json:
        write_json(page)
        return 0
    rows = [
        (v["activity_id"], fmt_time(v["received_at"]), v["calling_number"], v["called_number"], v["cnam"],
         v["bytes"] if v["bytes"] is not None else "missing", v["path"])
        for v in page["voicemail"]
    ]
    write_table(["ACTIVITY", "RECEIVED (UTC)", "CALLING", "CALLED", "CNAM", "BYTES", "FILE"], rows)
    if page["next_cursor"]:
        sys.stdout.write(f"more: --cursor {page['next_cursor']}\n")
    return 0


def _activity(client: AdminClient, args: argparse.Namespace) -> int:
    a = client.get(f"/activities/{args.id}")
    if args.json:
        write_json(a)
    else:
        write_fields(a, order=("id", "kind", "received_at", "calling_number", "called_number", "cnam", "decision", "rule_id", "reason"))
    return 0


def _flag(client: AdminClient, args: argparse.Namespace) -> int:
    body = {"by": args.by, "action": args.action, "sip_status": args.status, "created_by": "cli"}
    if args.scope:
        body["scope"] = args.scope
    if args.expires:
        body["expires_in"] = args.expires
    if args.reason:
        body["reason"] = args.reason
    result = client.post(f"/activities/{args.id}/flag", body)
    if args.json:
        write_json(result)
        return 0
    rule = result["rule"]
    verb = "created" if result["created"] else "already present"
    sys.stdout.write(f"{rule['id']} {verb}: {rule['action']} {rule['kind']} {rule['value']!r} ({_scope_text(rule)})"
                     f"{', expires ' + fmt_time(rule['expires_at']) + ' UTC' if rule['expires_at'] else ''}\n")
    return 0


def _cool_off(client: AdminClient, args: argparse.Namespace) -> int:
    path = f"/cool-off/{args.number}"
    if args.clear:
        result = client.delete(path)
        if args.json:
            write_json(result)
        else:
            sys.stdout.write(f"{result['cleared']}: cool-off lifted\n")
        return 0
    flag = client.get(path)
    if args.json:
        write_json(flag)
    else:
        shown = {**flag, "until": f"{fmt_time(flag['until'])} UTC", "score": f"{flag['score']:g}"}
        write_fields(shown, order=["number", "until", "seconds_left", "action", "score", "rule_id", "reason"])
    return 0


def _scope_text(rule: dict) -> str:
    return rule["scope"] + (f" {rule['scope_value']}" if rule["scope_value"] else "")


def _block_add(client: AdminClient, args: argparse.Namespace) -> int:
    kind, value = next((k, v) for k, v in (
        ("number", args.number), ("cnam", args.cnam), ("prefix", args.prefix), ("country", args.country),
        ("anonymous", "" if args.anonymous else None), ("invalid", "" if args.invalid else None),
    ) if v is not None)
    scope, scope_value = args.scope, args.scope_value or ""
    if args.customer:
        scope, scope_value = "customer", args.customer
    elif args.called:
        scope, scope_value = "number", args.called
    body = {
        "kind": kind, "value": value, "scope": scope, "scope_value": scope_value, "allow": args.allow,
        "action": args.action, "sip_status": args.status, "dry_run": args.dry_run, "reason": args.reason, "created_by": "cli",
    }
    if args.expires:
        body["expires_in"] = args.expires
    rule = client.post("/blocks", body)
    if args.json:
        write_json(rule)
    else:
        sys.stdout.write(f"{rule['id']} added: {'allow' if rule['allow'] else rule['action']} {rule['kind']} {rule['value']!r} ({_scope_text(rule)})\n")
    return 0


def _block_rm(client: AdminClient, args: argparse.Namespace) -> int:
    result = client.delete(f"/blocks/{args.id}")
    if args.json:
        write_json(result)
    else:
        sys.stdout.write(f"{result['removed']} removed\n")
    return 0


def _block_ls(client: AdminClient, args: argparse.Namespace) -> int:
    rules = client.get("/blocks")["blocks"]
    if args.json:
        write_json(rules)
        return 0
    rows = [
        (r["id"], "allow" if r["allow"] else r["action"], r["kind"], r["value"], _scope_text(r),
         fmt_time(r["expires_at"]) if r["expires_at"] else "never", "yes" if r["dry_run"] else "", r["reason"])
        for r in rules
    ]
    write_table(["ID", "ACTION", "KIND", "VALUE", "SCOPE", "EXPIRES (UTC)", "DRY-RUN", "REASON"], rows)
    return 0


def register(subparsers: argparse._SubParsersAction) -> None:
    opts = client_options()

    p = subparsers.add_parser("activities", parents=[opts], help="list recent calls and messages with their decisions")
    p.add_argument("--since", help="unix seconds, ISO 8601, or a look-back like 1h")
    p.add_argument("--until")
    p.add_argument("--number", help="calling or called number")
    p.add_argument("--calling")
    p.add_argument("--called")
    p.add_argument("--decision", choices=[a.value for a in Action] + ["deliver", "hold", "send", "queued", "refuse", "challenge"])
    p.add_argument("--flagged", action="store_true", help="only flagged activities")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--cursor", help="continue from a previous page")
    p.set_defaults(func=command(_activities))

    p = subparsers.add_parser("voicemail", parents=[opts], help="voicemail messages callers left (WAV files)")
    p.add_argument("--since", help="unix seconds, ISO 8601, or a look-back like 1d")
    p.add_argument("--number", help="calling or called number")
    p.add_argument("--called")
    p.add_argument("--limit", type=int, default=50)
    p.add_argument("--cursor")
    p.set_defaults(func=command(_voicemail))

    p = subparsers.add_parser("activity", parents=[opts], help="show one activity with its evidence")
    p.add_argument("id")
    p.set_defaults(func=command(_activity))

    p = subparsers.add_parser("flag", parents=[opts], help="block future contacts like this activity")
    p.add_argument("id")
    p.add_argument("--by", choices=["number", "cnam", "name", "email", "ip"], required=True)
    p.add_argument("--scope", choices=_SCOPES, help="customer (default): the activity's customer, or its called number when it has "
                   "no customer; number: its called number; global: every customer")
    p.add_argument("--action", choices=_ACTIONS, default="reject")
    p.add_argument("--status", type=int, default=603, help="SIP status for reject (default 603 Decline)")
    p.add_argument("--expires", help="e.g. 1d, 12h (default never)")
    p.add_argument("--reason", default="")
    p.set_defaults(func=command(_flag))

    p = subparsers.add_parser("cool-off", parents=[opts], help="show (or --clear) a caller's Spam Detective cool-off")
    p.add_argument("number")
    p.add_argument("--clear", action="store_true", help="lift it: the next call is judged on its own evidence")
    p.set_defaults(func=command(_cool_off))

    block = subparsers.add_parser("block", help="runtime block and allow rules")
    bsub = block.add_subparsers(dest="block_command", required=True)
    a = bsub.add_parser("add", parents=[opts], help="add a block (or --allow) rule")
    what = a.add_mutually_exclusive_group(required=True)
    what.add_argument("--number")
    what.add_argument("--cnam", help="caller name; '*' wildcards allowed")
    what.add_argument("--prefix", help="E.164 prefix, e.g. +1900")
    what.add_argument("--country", help="ISO 3166 code, e.g. NG")
    what.add_argument("--anonymous", action="store_true")
    what.add_argument("--invalid", action="store_true", help="caller numbers phonenumbers says are not valid")
    a.add_argument("--scope", choices=_SCOPES, default="global")
    a.add_argument("--scope-value", help="customer name or called number for a scoped rule")
    a.add_argument("--customer", help="shorthand for --scope customer --scope-value NAME")
    a.add_argument("--called", help="shorthand for --scope number --scope-value NUMBER")
    a.add_argument("--allow", action="store_true", help="an allow entry: overrides blocks in the same or wider scope")
    a.add_argument("--action", choices=_ACTIONS, default="reject")
    a.add_argument("--status", type=int, default=603)
    a.add_argument("--expires", help="e.g. 1d (default never)")
    a.add_argument("--dry-run", action="store_true", help="record what it would do without enforcing")
    a.add_argument("--reason", default="")
    a.set_defaults(func=command(_block_add))
    r = bsub.add_parser("rm", parents=[opts], help="remove a runtime rule")
    r.add_argument("id")
    r.set_defaults(func=command(_block_rm))
    ls = bsub.add_parser("ls", parents=[opts], help="list runtime rules")
    ls.set_defaults(func=command(_block_ls))
