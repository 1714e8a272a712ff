"""PostgreSQL plumbing: one asyncpg pool per service, and a per-service migration runner.

Each service owns one schema. Its pool sets ``search_path`` to that schema, so service
SQL names its tables without a schema prefix and can never reach another service's
tables by accident.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import asyncpg
import psutil
from asyncpg.pool import PoolConnectionProxy

# What handlers and stores receive: a plain connection or one borrowed from a pool.
Connection = asyncpg.Connection | PoolConnectionProxy
_MIGRATION_NAME = re.compile(r"^(\d{3})_[a-z0-9_]+\.sql$")
_SCHEMA_NAME = re.compile(r"^[a-z_][a-z0-9_]{0,62}$")


# The database is away or went away mid-exchange: retry, the data is not at fault.
DB_AWAY: tuple[type[Exception], ...] = (
    OSError,
    TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.InterfaceError,
    asyncpg.CannotConnectNowError,
    asyncpg.TooManyConnectionsError,
    asyncpg.exceptions.OperatorInterventionError,
    # Raised when the server goes away in the middle of a protocol exchange (seen when
    # PostgreSQL restarts under load): the connection is unusable, the record is fine.
    asyncpg.exceptions.InternalClientError,
)


class MigrationError(RuntimeError):
    """A migration file is misnamed, or an applied one was edited afterwards."""


async def _init_connection(conn: asyncpg.Connection) -> None:
    # json/jsonb columns round-trip as Python objects, not strings.
    for typename in ("json", "jsonb"):
        await conn.set_type_codec(
            typename,
            encoder=lambda v: json.dumps(v, separators=(",", ":"), default=str),
            decoder=json.loads,
            schema="pg_catalog",
        )
    await share_niceness(conn)


async def share_niceness(conn: asyncpg.Connection) -> int | None:
    """Give the session's server process this process's CPU niceness, when this process
    runs niced (the audit) and the server process is a PostgreSQL backend on this host
    that it may renice; return the backend's niceness then, else None.

    A process that yields the CPU to the pipeline would otherwise have its database
    work done at full priority: under load the audit's statements took more of
    PostgreSQL's time than the whole pipeline's, while the audit itself was idle,
    behind, waiting for a core (docs/performance.md). The backend is recognised by its
    process id, its name and its start time (the server may be in another container
    with its own process ids, where the same number is some other process); anything
    else is left alone, as are backends of other users, unless this process may renice
    them.
    """
    nice = os.getpriority(os.PRIO_PROCESS, 0)
    if nice <= 0:
        return None
    row = await conn.fetchrow(
        "SELECT pid, backend_start FROM pg_stat_activity WHERE pid = pg_backend_pid()"
    )
    if row is None or row["backend_start"] is None:
        return None
    try:
        backend = psutil.Process(row["pid"])
        started = backend.create_time()
        if backend.name() != "postgres" or abs(started - row["backend_start"].timestamp()) > 2:
            return None
        if os.getpriority(os.PRIO_PROCESS, backend.pid) < nice:
            os.setpriority(os.PRIO_PROCESS, backend.pid, nice)
        return os.getpriority(os.PRIO_PROCESS, backend.pid)
    except (psutil.Error, OSError):
        return None


async def create_database(dsn: str, name: str) -> str:
    """Create the empty database ``name`` on ``dsn``'s server; return its DSN (a test
    module's or a benchmark run's own database)."""
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    return urlunsplit(urlsplit(dsn)._replace(path=f"/{name}"))


async def drop_database(dsn: str, name: str) -> None:
    """Drop database ``name`` on ``dsn``'s server, whoever is still connected to it."""
    admin = await asyncpg.connect(dsn)
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _check_schema(schema: str) -> str:
    if not _SCHEMA_NAME.match(schema):
        raise ValueError(f"invalid schema name {schema!r}")
    return schema


async def create_pool(
    dsn: str, schema: str, *, min_size: int = 1, max_size: int = 8
) -> asyncpg.Pool:
    """Open a pool whose connections work in ``schema`` and speak JSON."""
    pool = await asyncpg.create_pool(
        dsn,
        min_size=min_size,
        max_size=max_size,
        init=_init_connection,
        # asyncpg's default reset sends "RESET ALL; UNLISTEN *; ..." to the server on
        # every release: a round trip per transaction that bought us nothing (services
        # keep no session state on pooled connections; open transactions are still
        # rolled back by the pool itself).
        reset=_keep_session,
        server_settings={"search_path": _check_schema(schema), "application_name": schema},
    )
    assert pool is not None
    return pool


async def _keep_session(_: asyncpg.Connection) -> None:
    return None


async def connect(
    dsn: str, schema: str, *, name: str, settings: dict[str, str] | None = None
) -> asyncpg.Connection:
    """One connection outside the pool, set up like the pool's (for session state such
    as a relay's advisory lock, which must not travel to another borrower)."""
    conn = await asyncpg.connect(
        dsn,
        server_settings={"search_path": _check_schema(schema), "application_name": name}
        | (settings or {}),
    )
    await _init_connection(conn)
    return conn


@dataclass(frozen=True)
class Migration:
    version: str
    name: str
    sql: str

    @property
    def checksum(self) -> str:
        return hashlib.sha256(self.sql.encode()).hexdigest()


def collect_migrations(directories: Sequence[Path]) -> list[Migration]:
    """Migrations from each directory in order; names are ``NNN_description.sql``.

    Versions are prefixed with the directory's position, so shared migrations (first)
    always run before a service's own.
    """
    found: list[Migration] = []
    for position, directory in enumerate(directories):
        for path in sorted(directory.glob("*.sql")):
            match = _MIGRATION_NAME.match(path.name)
            if match is None:
                raise MigrationError(f"{path}: migration files are named NNN_description.sql")
            found.append(Migration(f"{position}.{match.group(1)}", path.name, path.read_text()))
    return found


async def migrate(conn: Connection, schema: str, directories: Sequence[Path]) -> list[str]:
    """Apply the pending migrations to ``schema``; return the names applied now.

    Runs in one transaction under an advisory lock, so two replicas starting together
    cannot both apply a file. An applied file whose text changed is an error: migrations
    are append-only history.
    """
    _check_schema(schema)
    migrations = collect_migrations(directories)
    applied_now: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock(hashtext($1))", f"migrate:{schema}")
        await _ensure_schema(conn, schema)
        await conn.execute(f'SET LOCAL search_path TO "{schema}"')
        await conn.execute(
            """CREATE TABLE IF NOT EXISTS schema_migrations (
                   version text PRIMARY KEY,
                   name text NOT NULL,
                   checksum text NOT NULL,
                   applied_at timestamptz NOT NULL DEFAULT now())"""
        )
        rows = await conn.fetch("SELECT version, name, checksum FROM schema_migrations")
        done = {r["version"]: r for r in rows}
        for migration in migrations:
            previous = done.get(migration.version)
            if previous is not None:
                if previous["checksum"] != migration.checksum:
                    raise MigrationError(
                        f"{schema}: migration {migration.name} was changed after it was applied; "
                        "add a new migration instead of editing an applied one"
                    )
                continue
            await conn.execute(migration.sql)
            await conn.execute(
                "INSERT INTO schema_migrations (version, name, checksum) VALUES ($1, $2, $3)",
                migration.version,
                migration.name,
                migration.checksum,
            )
            applied_now.append(migration.name)
    return applied_now


async def _ensure_schema(conn: Connection, schema: str) -> None:
    # Not CREATE SCHEMA IF NOT EXISTS: PostgreSQL checks the right to create schemas
    # before it looks whether the schema exists, and a service's role has no such right:
    # its schema is made for it by provisioning (deploy/dbroles.py), owned by it.
    row = await conn.fetchrow("SELECT to_regnamespace($1) IS NULL, current_user::text", schema)
    assert row is not None
    missing, user = row
    if not missing:
        return
    try:
        await conn.execute(f'CREATE SCHEMA "{schema}"')
    except asyncpg.InsufficientPrivilegeError:
        raise MigrationError(
            f"schema {schema} does not exist and role {user} may not create it: provision "
            f"it first, as the database owner: python -m deploy.dbroles provision {schema}"
        ) from None


async def migrate_dsn(dsn: str, schema: str, directories: Sequence[Path]) -> list[str]:
    """Connect, migrate, disconnect: for start-up and for tests."""
    conn: Any = await asyncpg.connect(dsn)
    try:
        return await migrate(conn, schema, directories)
    finally:
        await conn.close()


async def pending_migrations(dsn: str, schema: str, directories: Sequence[Path]) -> list[str]:
    """The migrations of ``directories`` not applied to ``schema`` yet (all of them when
    the schema or its table is missing): what a service started with
    ``ONEDOOR_MIGRATE_AT_START=false`` waits for ``onedoor-migrate`` to apply.

    Raises:
        MigrationError: an applied migration's text changed (the image and the schema
            disagree; add a new migration instead).
    """
    _check_schema(schema)
    migrations = collect_migrations(directories)
    conn: Any = await asyncpg.connect(dsn)
    try:
        if await conn.fetchval("SELECT to_regclass($1) IS NULL", f'"{schema}".schema_migrations'):
            return [m.name for m in migrations]
        # The schema's name was checked by _check_schema: a quoted identifier, no input.
        rows = await conn.fetch(f'SELECT version, checksum FROM "{schema}".schema_migrations')  # noqa: S608
    finally:
        await conn.close()
    done = {r["version"]: r["checksum"] for r in rows}
    for m in migrations:
        if m.version in done and done[m.version] != m.checksum:
            raise MigrationError(
                f"{schema}: migration {m.name} was changed after it was applied; "
                "add a new migration instead of editing an applied one"
            )
    return [m.name for m in migrations if m.version not in done]
