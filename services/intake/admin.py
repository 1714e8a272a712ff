"""``onedoor-admin``: staff accounts and the token signing key.

    onedoor-admin create NAME --role clerk --centre C01 --window W03
    onedoor-admin create NAME --role department_officer --department social_security
    onedoor-admin create NAME --role auditor            (operator, admin alike)
    onedoor-admin disable NAME | enable NAME
    onedoor-admin reset-password NAME
    onedoor-admin list [--json]
    onedoor-admin token-key                             (create intake's token key, 0600)
    onedoor-admin privacy-key                           (create the centre's privacy secret)
    onedoor-admin erase --id-number-file F --by ADMIN --reason R   (erase a person)

A password is read from ``--password-file`` or from stdin (on a terminal: asked twice,
not echoed), never from the command line, and never printed. The commands work in
intake's schema of ``DATABASE_URL`` (applying intake's migrations first, so the first
accounts can be made before intake ever ran).

``erase`` deletes the person's data keys (and intake's clear contacts of their cases) and
queues a signed ``PersonErased`` on ``privacy.erasures`` through intake's outbox, in one
transaction: from then on no sealed copy of their fields anywhere can be opened. The ID
number is read from a file or stdin (never the command line, which ``ps`` and shell
histories keep) and never printed; the person is named by pseudonym only.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import json
import sys
from dataclasses import asdict
from pathlib import Path
from uuid import UUID

from services.intake import accounts, subject_keys
from shared.contracts.events import PersonErased
from shared.contracts.identity import validate_resident_id, validate_uscc
from shared.contracts.sealing import normalise
from shared.contracts.topology import PRIVACY_ERASURES
from shared.messaging import MESSAGING_MIGRATIONS
from shared.messaging.outbox import OutboxWriter
from shared.messaging.signing import Signer
from shared.platform.db import Connection, connect, migrate
from shared.platform.privacy_keys import generate_privacy_key, load_centre_secret
from shared.platform.secret_files import SecretFileError
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
        elif args.command == "erase":
            await _erase(conn, args)
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


async def _erase(conn: Connection, args: argparse.Namespace) -> None:
    settings = get_settings()
    secret = load_centre_secret(settings.privacy_key_path())
    id_number = normalise(read_password(args.id_number_file))
    if validate_resident_id(id_number) is not None and validate_uscc(id_number) is not None:
        raise accounts.AccountError(
            "the ID number read is neither a valid resident ID nor a credit code "
            "(check the file: one line, the 18 characters)"
        )
    admin = await accounts.get(conn, args.by)
    if admin is None or admin.role != "admin" or admin.disabled:
        raise accounts.AccountError(f"--by {args.by}: not an enabled admin account")
    ref = secret.subject_ref(id_number)
    signer = Signer.load(settings.keys_dir, SCHEMA, key_file=settings.signing_key_file)
    async with conn.transaction():
        key_ids = await subject_keys.erase(conn, ref)
        nil = UUID(int=0)
        event = PersonErased(
            case_id=nil,
            correlation_id=nil,
            producer=SCHEMA,
            subject_ref=ref,
            key_ids=tuple(key_ids),
            erased_by=admin.name,
            reason=args.reason,
        )
        await OutboxWriter(signer).add(conn, PRIVACY_ERASURES, event)
    print(
        f"erased {ref}: {len(key_ids)} data key(s) deleted; PersonErased {event.event_id} "
        f"queued on {PRIVACY_ERASURES} (intake's relay publishes it)"
    )


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
    erase = sub.add_parser("erase", help="erase a person: delete their data keys, audited")
    erase.add_argument(
        "--id-number-file",
        type=Path,
        help="read the person's ID number (or credit code) from this file (else stdin)",
    )
    erase.add_argument("--by", required=True, help="the admin account that erases")
    erase.add_argument("--reason", required=True, help="why: a request number, never personal data")
    privacy = sub.add_parser("privacy-key", help="create the centre's privacy secret (0600)")
    privacy.add_argument("--path", type=Path, default=None, help="ONEDOOR_PRIVACY_KEY_FILE")
    key = sub.add_parser("token-key", help="create intake's token signing key (mode 0600)")
    key.add_argument("--path", type=Path, default=None, help="ONEDOOR_TOKEN_KEY_FILE")
    args = parser.parse_args(argv)
    if args.command == "erase" and len(args.reason.strip()) < 3:
        parser.error("--reason: say why in 3 characters or more (a request number)")
    if args.command == "privacy-key":
        path = args.path or get_settings().privacy_key_path()
        made = generate_privacy_key(path)
        print(f"{'created' if made else 'kept the existing'} {path}")
        return 0
    if args.command == "token-key":
        path = args.path or get_settings().token_key_path()
        made = generate_key(path)
        print(f"{'created' if made else 'kept the existing'} {path} (public half: .pub)")
        return 0
    try:
        return asyncio.run(_run(args))
    except (accounts.AccountError, SecretFileError) as exc:
        print(f"onedoor-admin: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
