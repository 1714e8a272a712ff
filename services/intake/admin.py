"""``onedoor-admin``: staff accounts and the token signing key.

    onedoor-admin create NAME --role clerk --centre C01 --window W03
    onedoor-admin create NAME --role department_officer --department social_security
    onedoor-admin create NAME --role auditor            (operator, admin alike)
    onedoor-admin disable NAME | enable NAME
    onedoor-admin reset-password NAME
    onedoor-admin list [--json]
    onedoor-admin token-key                             (create intake's token key, 0600)

A password is read from ``--password-file`` or from stdin (on a terminal: asked twice,
not echoed), never from the command line, and never printed. The commands work in
intake's schema of ``DATABASE_URL`` (applying intake's migrations first, so the first
accounts can be made before intake ever ran).
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from dataclasses import asdict
from pathlib import Path

from services.intake import accounts
from shared.messaging import MESSAGING_MIGRATIONS
from shared.platform.db import connect, migrate
from shared.platform.settings import get_settings
from shared.platform.tokens import ROLES, generate_key

SCHEMA = "intake"
# Intake's migrations as the service applies them (the shared ones first).
MIGRATIONS = [MESSAGING_MIGRATIONS, Path(__file__).parent / "migrations"]


def read_password(file: Path | None) -> str:
    if file is not None:
        return file.read_text().rstrip("\r\n")
    if sys.stdin.isatty():
        first = getpass.getpass("password: ")
        if getpass.getpass("again: ") != first:
            raise accounts.AccountError("the two passwords differ")
        return first
    return sys.stdin.readline().rstrip("\r\n")


async def _run(args: argparse.Namespace) -> int:
    settings = get_settings()
    conn = await connect(settings.dsn(), SCHEMA, name="onedoor-admin")
    try:
        await migrate(conn, SCHEMA, MIGRATIONS)
        await conn.execute(f'SET search_path TO "{SCHEMA}"')
        if args.command == "create":
            account = await accounts.create(
                conn,
                args.name,
                args.role,
                read_password(args.password_file),
                centre_id=args.centre,
                window_id=args.window,
                department=args.department,
            )
            print(f"created {account.name} ({account.role})")
        elif args.command in ("disable", "enable"):
            await accounts.set_disabled(conn, args.name, args.command == "disable")
            print(f"{args.command}d {args.name}")
        elif args.command == "reset-password":
            await accounts.reset_password(conn, args.name, read_password(args.password_file))
            print(f"password reset for {args.name}; its refresh tokens are revoked")
        else:
            found = await accounts.listing(conn)
            if args.json:
                print(json.dumps([asdict(a) for a in found], indent=2))
            for a in [] if args.json else found:
                where = a.department or "/".join(filter(None, [a.centre_id, a.window_id]))
                state = "disabled" if a.disabled else "enabled"
                print(f"{a.name:<24} {a.role:<20} {where or '-':<20} {state}")
    finally:
        await conn.close()
    return 0


async def provision(
    dsn: str,
    name: str,
    role: str,
    password: str,
    *,
    centre_id: str | None = None,
    window_id: str | None = None,
    department: str | None = None,
) -> None:
    """An enabled account with this password (created, or its password reset): for the
    demo, the bench and the tests, which sign in as the staff they need."""
    conn = await connect(dsn, SCHEMA, name="onedoor-admin")
    try:
        await migrate(conn, SCHEMA, MIGRATIONS)
        await conn.execute(f'SET search_path TO "{SCHEMA}"')
        if await accounts.get(conn, name) is None:
            await accounts.create(
                conn,
                name,
                role,
                password,
                centre_id=centre_id,
                window_id=window_id,
                department=department,
            )
        else:
            await accounts.reset_password(conn, name, password)
            await accounts.set_disabled(conn, name, False)
    finally:
        await conn.close()


def main(argv: list[str] | None = None) -> int:
    """Manage staff accounts (in intake's schema) and intake's token signing key."""
    parser = argparse.ArgumentParser(prog="onedoor-admin", description=main.__doc__)
    sub = parser.add_subparsers(dest="command", required=True)
    create = sub.add_parser("create", help="a new account")
    create.add_argument("name")
    create.add_argument("--role", required=True, choices=ROLES)
    create.add_argument("--centre", help="a clerk's or a centre head's centre (e.g. C01)")
    create.add_argument("--window", help="a clerk's window (e.g. W03)")
    create.add_argument("--department", help="a department officer's department")
    for name in ("disable", "enable", "reset-password"):
        one = sub.add_parser(name)
        one.add_argument("name")
    for command in (create, sub.choices["reset-password"]):
        command.add_argument(
            "--password-file", type=Path, help="read the password from this file (else stdin)"
        )
    listing = sub.add_parser("list", help="every account")
    listing.add_argument("--json", action="store_true")
    key = sub.add_parser("token-key", help="create intake's token signing key (mode 0600)")
    key.add_argument("--path", type=Path, default=None, help="ONEDOOR_TOKEN_KEY_FILE")
    args = parser.parse_args(argv)
    if args.command == "token-key":
        path = args.path or get_settings().token_key_path()
        made = generate_key(path)
        print(f"{'created' if made else 'kept the existing'} {path} (public half: .pub)")
        return 0
    try:
        return asyncio.run(_run(args))
    except accounts.AccountError as exc:
        print(f"onedoor-admin: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
