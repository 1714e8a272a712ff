"""PostgreSQL roles of a deployment: one login role per service, owning its schema and
nothing else, and a read-only auditor. Run once by the database owner (idempotent):

    python -m deploy.dbroles provision [NAME ...] [--secrets DIR]

NAME is a service or department (default: the five services and every department of
the catalogue, ONEDOOR_CATALOGUE_DIRS included); each gets role ``onedoor_<name>`` and
schema ``<name>`` owned by it, and ``onedoor_auditor`` may read the audit schema. The
owner's connection is DATABASE_URL with ONEDOOR_DATABASE_PASSWORD_FILE, like a
service's. Each role's password is kept in ``<secrets>/<role>.password`` (mode 0600,
made when missing; default ONEDOOR_DB_SECRETS_DIR, else the local stack's
``.data/secrets``): mount that one file into the service's container and point its
ONEDOOR_DATABASE_PASSWORD_FILE at it. Passwords are never printed; the server is only
ever sent their SCRAM-SHA-256 verifiers.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import hmac
import os
import re
import secrets
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import asyncpg

from shared.platform.settings import compose_dsn, get_settings

REPO_ROOT = Path(__file__).resolve().parent.parent
SERVICES = ("intake", "router", "hr_registration", "social_security", "audit", "deadlines")
AUDIT_SCHEMA = "audit"
NOT_DEPARTMENTS = frozenset({"intake", "router", "audit"})
AUDITOR = "onedoor_auditor"
SUPERUSER_FILE = "postgres.password"
_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,53}$")  # role onedoor_<name> stays within 63 bytes
_VERIFIER = re.compile(r"^SCRAM-SHA-256\$\d+:[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+:[A-Za-z0-9+/=]+$")


class ProvisionError(RuntimeError):
    """Provisioning cannot go on; the message names the cause and the fix."""


def role_for(name: str) -> str:
    """The login role of service or department ``name`` (whose schema is ``name``)."""
    if not _NAME.match(name):
        raise ProvisionError(
            f"{name!r} is not a service or department name (lower-case letters, digits, _)"
        )
    return f"onedoor_{name}"


def default_secrets_dir() -> Path:
    """ONEDOOR_DB_SECRETS_DIR, else ``secrets`` in the local stack's data folder."""
    explicit = os.environ.get("ONEDOOR_DB_SECRETS_DIR")
    if explicit:
        return Path(explicit).resolve()
    return Path(os.environ.get("ONEDOOR_DATA_DIR", REPO_ROOT / ".data")).resolve() / "secrets"


def password_file(secrets_dir: Path, role: str) -> Path:
    return secrets_dir / f"{role}.password"


def ensure_password(path: Path) -> str:
    """The password kept in ``path``; a new random one (mode 0600) when there is none."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.parent.chmod(0o700)
    try:
        # O_EXCL: two provisioning runs never write two different passwords.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_text().strip()
        if not secret:
            raise ProvisionError(
                f"{path} is empty; delete it to have a new password made"
            ) from None
        return secret
    secret = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as out:
        out.write(secret + "\n")
    return secret


def scram_verifier(password: str, *, salt: bytes | None = None, iterations: int = 4096) -> str:
    """PostgreSQL's SCRAM-SHA-256 verifier of ``password`` (RFC 5802/7677), what
    ``ALTER ROLE ... PASSWORD`` stores: the server can check a login against it but
    cannot recover the password, and no statement or log line ever holds the password.
    Our passwords are URL-safe ASCII, which SASLprep leaves as it is."""
    salt = salt if salt is not None else secrets.token_bytes(16)
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.digest(salted, b"Client Key", "sha256")
    stored_key = hashlib.sha256(client_key).digest()
    server_key = hmac.digest(salted, b"Server Key", "sha256")

    def b64(raw: bytes) -> str:
        return base64.b64encode(raw).decode()

    return f"SCRAM-SHA-256${iterations}:{b64(salt)}${b64(stored_key)}:{b64(server_key)}"


def role_dsn(dsn: str, role: str) -> str:
    """``dsn``'s server and database, as ``role`` and without any password."""
    parts = urlsplit(dsn)
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{role}@{host}"))


def _role_of(name: str) -> str:
    return AUDITOR if name == "auditor" else role_for(name)


def service_env(dsn: str, name: str, secrets_dir: Path) -> dict[str, str]:
    """The environment that connects service ``name`` (or ``auditor``) as its own role."""
    role = _role_of(name)
    return {
        "DATABASE_URL": role_dsn(dsn, role),
        "ONEDOOR_DATABASE_PASSWORD_FILE": str(password_file(secrets_dir, role)),
    } | ({"ONEDOOR_AUDIT_READER_ROLE": AUDITOR} if name == AUDIT_SCHEMA else {})


def service_dsn(dsn: str, name: str, secrets_dir: Path) -> str:
    """The DSN (with its password: a secret) that connects as ``name``'s role in this
    process: for the tools that act in one service's schema (the demo's clerks)."""
    role = _role_of(name)
    password = password_file(secrets_dir, role).read_text().strip()
    return compose_dsn(role_dsn(dsn, role), password=password)


def default_names(catalogue_dirs: Sequence[Path] = ()) -> list[str]:
    """The five services and every department of the catalogue."""
    from services.catalogue import default_catalogue  # noqa: PLC0415 - the CLI's default only

    return [*SERVICES, *sorted(set(default_catalogue(catalogue_dirs).departments()) - {*SERVICES})]


@dataclass(frozen=True)
class Provisioned:
    role: str
    schema: str  # what the role owns ("audit" read-only for the auditor)
    password_file: Path


_READ_ONLY_SET = """SELECT EXISTS (SELECT 1 FROM pg_db_role_setting
                    WHERE setrole = $1::regrole AND setdatabase = 0
                      AND 'default_transaction_read_only=on' = ANY(setconfig))"""


def _ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


# A service needs to log in and nothing more: no right to create databases or roles, to
# replicate, to bypass row security, nor any role's rights by membership.
_ATTRIBUTES = "LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT"
_AS_WANTED = """SELECT rolcanlogin AND NOT (rolsuper OR rolcreatedb OR rolcreaterole
                  OR rolreplication OR rolbypassrls OR rolinherit)
                FROM pg_roles WHERE rolname = $1"""


async def _ensure_role(conn: asyncpg.Connection, role: str, password: str) -> bool:
    """Create ``role`` with ``password``, or correct its attributes; return whether it
    existed already (its password is then checked by logging in, see ``provision``).

    Nothing is written when all is as wanted: roles are the cluster's, and two runs
    provisioning two databases at once (a test session and a demo) must not update the
    same catalogue row together ("tuple concurrently updated")."""
    as_wanted = await conn.fetchval(_AS_WANTED, role)
    if as_wanted is None:
        verifier = scram_verifier(password)
        assert _VERIFIER.match(verifier)  # inlined: utility statements take no parameters
        try:
            async with conn.transaction():  # a savepoint: another run may create it first
                await conn.execute(
                    f"CREATE ROLE {_ident(role)} WITH {_ATTRIBUTES} PASSWORD '{verifier}'"
                )
        except asyncpg.DuplicateObjectError:
            return True
        return False
    if not as_wanted:
        await conn.execute(f"ALTER ROLE {_ident(role)} WITH {_ATTRIBUTES}")
    return True


async def _set_password_unless_it_opens(dsn: str, role: str, password: str) -> None:
    """Log in as ``role`` with ``password``; when the server refuses it (a role made
    from another secrets folder, a lost file), give the role that password."""
    try:
        probe = await asyncpg.connect(compose_dsn(role_dsn(dsn, role), password=password))
    except asyncpg.InvalidPasswordError:
        pass
    else:
        await probe.close()
        return
    conn = await asyncpg.connect(dsn)
    try:
        await conn.execute(f"ALTER ROLE {_ident(role)} PASSWORD '{scram_verifier(password)}'")
    finally:
        await conn.close()


async def _own_schema(conn: asyncpg.Connection, schema: str, role: str) -> None:
    """``schema`` exists, is owned by ``role`` and so is everything in it (a data folder
    from before roles has the superuser's tables there)."""
    owner = await conn.fetchval(
        "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1", schema
    )
    if owner is None:
        await conn.execute(f"CREATE SCHEMA {_ident(schema)} AUTHORIZATION {_ident(role)}")
        return
    if owner.strip('"') != role:
        await conn.execute(f"ALTER SCHEMA {_ident(schema)} OWNER TO {_ident(role)}")
    await conn.execute(f"REVOKE ALL ON SCHEMA {_ident(schema)} FROM PUBLIC")
    # Tables first: ALTER TABLE also hands over their indexes and serial sequences.
    for kinds, command in ((("r", "p", "v", "m", "f"), "TABLE"), (("S",), "SEQUENCE")):
        for rel in await conn.fetch(
            """SELECT c.oid::regclass::text AS name FROM pg_class c
               WHERE c.relnamespace = $1::regnamespace AND c.relkind::text = ANY($2::text[])
                 AND c.relowner <> $3::regrole""",
            schema,
            list(kinds),
            role,
        ):
            await conn.execute(f"ALTER {command} {rel['name']} OWNER TO {_ident(role)}")
    for fn in await conn.fetch(
        """SELECT p.oid::regprocedure::text AS name FROM pg_proc p
           WHERE p.pronamespace = $1::regnamespace AND p.proowner <> $2::regrole""",
        schema,
        role,
    ):
        await conn.execute(f"ALTER ROUTINE {fn['name']} OWNER TO {_ident(role)}")


async def _grant_data_keys(conn: asyncpg.Connection, roles: list[tuple[str, str]]) -> None:
    """Departments open the applicant fields their tasks carry sealed: they may run
    intake's ``subject_data_keys`` (a SECURITY DEFINER function, executable by all who
    may use the schema) and nothing else of intake's (its tables are not granted). The
    router and the audit get no such right."""
    if await conn.fetchval("SELECT to_regnamespace('intake') IS NOT NULL"):
        for role, schema in roles:
            if schema not in NOT_DEPARTMENTS:
                await conn.execute(f"GRANT USAGE ON SCHEMA intake TO {_ident(role)}")


async def provision(dsn: str, names: Iterable[str], secrets_dir: Path) -> list[Provisioned]:
    """Make (or correct) each name's role and schema, and the auditor, in ``dsn``'s
    database, connected as its owner; return what each role was given. Roles are the
    cluster's, schemas and grants the database's: run it once per database."""
    names = list(dict.fromkeys(names))
    roles = [(role_for(n), n) for n in names]
    passwords = {r: ensure_password(password_file(secrets_dir, r)) for r, _ in roles}
    passwords[AUDITOR] = ensure_password(password_file(secrets_dir, AUDITOR))
    conn = await asyncpg.connect(dsn)
    try:
        database = await conn.fetchval("SELECT current_database()")
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock(hashtext('onedoor-dbroles'))")
            # Only the roles named here may connect; nobody but the owner creates schemas
            # or temporary tables, and the public schema is nobody's playground.
            await conn.execute(f"REVOKE ALL ON DATABASE {_ident(database)} FROM PUBLIC")
            if await conn.fetchval("SELECT to_regnamespace('public') IS NOT NULL"):
                await conn.execute("REVOKE ALL ON SCHEMA public FROM PUBLIC")
            existed = []
            for role, schema in [*roles, (AUDITOR, None)]:
                if await _ensure_role(conn, role, passwords[role]):
                    existed.append(role)
                await conn.execute(f"GRANT CONNECT ON DATABASE {_ident(database)} TO {role}")
                if schema is not None:
                    await _own_schema(conn, schema, role)
            await _grant_data_keys(conn, roles)
            # Its sessions start read-only too: a grant given by mistake later does not
            # let a plain session of the auditor write.
            if not await conn.fetchval(_READ_ONLY_SET, AUDITOR):
                await conn.execute(f"ALTER ROLE {AUDITOR} SET default_transaction_read_only = on")
            audit_owner = await conn.fetchval(
                "SELECT nspowner::regrole::text FROM pg_namespace WHERE nspname = $1",
                AUDIT_SCHEMA,
            )
            if audit_owner is not None:
                await conn.execute(f"GRANT USAGE ON SCHEMA {AUDIT_SCHEMA} TO {AUDITOR}")
                await conn.execute(
                    f"GRANT SELECT ON ALL TABLES IN SCHEMA {AUDIT_SCHEMA} TO {AUDITOR}"
                )
                # Tables the audit's later migrations create are readable too.
                await conn.execute(
                    f"ALTER DEFAULT PRIVILEGES FOR ROLE {audit_owner} IN SCHEMA {AUDIT_SCHEMA} "
                    f"GRANT SELECT ON TABLES TO {AUDITOR}"
                )
                # The audit's HTTP reads run as the auditor (SET LOCAL ROLE): membership
                # without inheritance (service roles are NOINHERIT) lends no rights.
                if audit_owner == role_for(AUDIT_SCHEMA) and not await conn.fetchval(
                    "SELECT pg_has_role($1, $2, 'MEMBER')", audit_owner, AUDITOR
                ):
                    await conn.execute(f"GRANT {AUDITOR} TO {audit_owner}")
    except asyncpg.InsufficientPrivilegeError as exc:
        raise ProvisionError(
            f"the database refused: {exc}. Provision as the database owner (a superuser, or "
            "a role with CREATEROLE that is a member of the service roles)."
        ) from None
    finally:
        await conn.close()
    # Now that each may connect here: a role that does not open with its file's password
    # is given it (the only write to a role that already existed).
    for role in existed:
        await _set_password_unless_it_opens(dsn, role, passwords[role])
    made = [Provisioned(r, s, password_file(secrets_dir, r)) for r, s in roles]
    return [
        *made,
        Provisioned(AUDITOR, f"{AUDIT_SCHEMA} (read)", password_file(secrets_dir, AUDITOR)),
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="onedoor-dbroles", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    prov = sub.add_parser("provision", help="create or correct the roles and schemas")
    prov.add_argument("names", nargs="*", help="services or departments (default: all)")
    prov.add_argument("--secrets", type=Path, default=None, help="where password files live")
    args = parser.parse_args(argv)
    settings = get_settings()
    secrets_dir = args.secrets or default_secrets_dir()
    try:
        names = args.names or default_names(settings.catalogue_dirs)
        done = asyncio.run(provision(settings.dsn(), names, secrets_dir))
    except (ProvisionError, ValueError) as exc:
        print(f"dbroles: error: {exc}", file=sys.stderr)
        return 1
    except (OSError, asyncpg.PostgresError) as exc:
        print(
            f"dbroles: error: cannot reach the database as its owner ({type(exc).__name__}: "
            f"{exc}). Set DATABASE_URL (and ONEDOOR_DATABASE_PASSWORD_FILE) to the owner's.",
            file=sys.stderr,
        )
        return 1
    for item in done:
        print(f"{item.role:<32} {item.schema:<24} {item.password_file}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
