"""`sip-edge users add|ls|rm|passwd`: console users, written straight into the store the daemon reads.

Users live in the SQLite file named by `[store] path` (with the redis backend too: each node that
serves a console keeps its own users). The running daemon sees a new or changed user at the next
login; removing a user or changing its password ends its sessions at their next request.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
import time
from pathlib import Path

from edge.console.users import ConsoleUser, Role, hash_secret, new_secret, validate_user

DEFAULT_CONFIG = "config/edge.toml"


async def _open(config: str):  # type: ignore[no-untyped-def]
    from edge.config import load_config
    from edge.store.sqlite import SqliteStore

    cfg = load_config(config)
    if cfg.store.backend == "memory":
        raise SystemExit("error: [store] backend = 'memory' keeps nothing between runs: console users need sqlite or redis")
    return await SqliteStore.open(Path(cfg.store.path), retention=None)


def _secret(args: argparse.Namespace) -> tuple[str, bool]:
    """The password: from stdin (--password-stdin), typed twice on a terminal, or generated and printed."""
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n"), False
    if args.generate or not sys.stdin.isatty():
        return new_secret(), True
    first = getpass.getpass("password: ")
    if first != getpass.getpass("again: "):
        raise SystemExit("error: the passwords differ")
    return first, False


def _add(args: argparse.Namespace) -> int:
    role = Role(args.role)
    secret, generated = _secret(args)
    errors = validate_user(args.name, role, args.customer or "", secret)
    if errors:
        sys.stderr.write("".join(f"error: {e}\n" for e in errors))
        return 1

    async def run() -> int:
        store = await _open(args.config)
        try:
            if await store.get_user(args.name) is not None:
                sys.stderr.write(f"error: user {args.name!r} exists (use `sip-edge users passwd` or `rm`)\n")
                return 1
            await store.put_user(ConsoleUser(name=args.name, role=role, customer=args.customer or "",
                                             secret_hash=hash_secret(secret), created_at=time.time()))
        finally:
            await store.close()
        scope = "every customer" if role is Role.OPERATOR else f"customer {args.customer}"
        sys.stdout.write(f"added {args.name} ({role.value}, {scope})\n")
        if generated:
            sys.stdout.write(f"password: {secret}\n")
        return 0

    return asyncio.run(run())


def _passwd(args: argparse.Namespace) -> int:
    secret, generated = _secret(args)

    async def run() -> int:
        store = await _open(args.config)
        try:
            user = await store.get_user(args.name)
            if user is None:
                sys.stderr.write(f"error: no user {args.name!r}\n")
                return 1
            errors = validate_user(user.name, user.role, user.customer, secret)
            if errors:
                sys.stderr.write("".join(f"error: {e}\n" for e in errors))
                return 1
            await store.put_user(ConsoleUser(name=user.name, role=user.role, customer=user.customer,
                                             secret_hash=hash_secret(secret), created_at=user.created_at))
        finally:
            await store.close()
        sys.stdout.write(f"password of {args.name} changed\n" + (f"password: {secret}\n" if generated else ""))
        return 0

    return asyncio.run(run())


def _ls(args: argparse.Namespace) -> int:
    from edge.daemon.admin_client import fmt_time, write_table

    async def run() -> list[ConsoleUser]:
        store = await _open(args.config)
        try:
            return await store.list_users()
        finally:
            await store.close()

    users = asyncio.run(run())
    write_table(["USER", "ROLE", "CUSTOMER", "CREATED (UTC)"],
                [(u.name, u.role.value, u.customer or "(all)", fmt_time(u.created_at)) for u in users])
    return 0


def _rm(args: argparse.Namespace) -> int:
    async def run() -> bool:
        store = await _open(args.config)
        try:
            return await store.remove_user(args.name)
        finally:
            await store.close()

    if not asyncio.run(run()):
        sys.stderr.write(f"error: no user {args.name!r}\n")
        return 1
    sys.stdout.write(f"removed {args.name}\n")
    return 0


def register(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    u = sub.add_parser("users", help="console users: add, ls, rm, passwd")
    u.add_argument("--config", default=DEFAULT_CONFIG)
    us = u.add_subparsers(dest="users_command", required=True)

    def secret_options(p: argparse.ArgumentParser) -> None:
        g = p.add_mutually_exclusive_group()
        g.add_argument("--password-stdin", action="store_true", help="read the password from the first line of stdin")
        g.add_argument("--generate", action="store_true", help="generate a password and print it once")

    a = us.add_parser("add", help="add a user (a customer's viewer or editor, or an operator)")
    a.add_argument("name")
    a.add_argument("--role", choices=[r.value for r in Role], required=True)
    a.add_argument("--customer", default="", help="the customer this user belongs to (not for operators)")
    secret_options(a)
    a.set_defaults(func=_add)
    p = us.add_parser("passwd", help="set a new password (ends the user's sessions)")
    p.add_argument("name")
    secret_options(p)
    p.set_defaults(func=_passwd)
    ls = us.add_parser("ls", help="list users")
    ls.set_defaults(func=_ls)
    r = us.add_parser("rm", help="remove a user (ends its sessions)")
    r.add_argument("name")
    r.set_defaults(func=_rm)
