"""The auditor's read-only commands on the real PostgreSQL: they never migrate, they work
as the auditor's role (onedoor_auditor, which may only read the audit schema), and
statistics come from the live projection (case_views), never from a replay of every
stored event."""

from __future__ import annotations

import json
import subprocess
import sys
from collections import Counter
from collections.abc import Mapping
from datetime import UTC, datetime
from secrets import token_urlsafe
from uuid import uuid4

import asyncpg
import pytest

from deploy import dbroles, kafka_security
from deploy.audit_drill import LogWriter, clean_cases, flow
from services.audit import queries, store
from services.audit.projection import project
from services.audit.statistics import stats
from services.audit.verifier.log import read_log
from shared.contracts.catalogue import Catalogue
from shared.contracts.decoding import decode_record
from shared.contracts.events import Event, EventDecodeError, PersonalDataAccessed, parse_event
from shared.department.decisions import NeedsInfo
from shared.messaging import MESSAGING_MIGRATIONS
from shared.platform.db import connect, create_database, drop_database, migrate_dsn
from shared.platform.settings import Settings, compose_dsn
from shared.platform.tokens import TokenIssuer, generate_key, load_signing_key
from tests.conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SCHEMA = store.SCHEMA
MIGRATIONS = [store.MIGRATIONS_DIR]


async def ingest_log(settings: Settings) -> list[Event]:
    """What the audit service does with every record of the log: store it, refresh views."""
    batch = []
    for record in await read_log(settings):
        event = decode_record(record.value)
        batch.append((record, None if isinstance(event, EventDecodeError) else event))
    conn = await connect(settings.dsn(), SCHEMA, name="test-ingest")
    try:
        async with conn.transaction():
            _, cases = await store.ingest(conn, batch)
            await store.refresh_views(conn, cases)
    finally:
        await conn.close()
    return [e for _, e in batch if e is not None]


@pytest.fixture
async def stored(settings: Settings, catalogue: Catalogue) -> list[Event]:
    """A migrated audit store holding a few clean cases (one waiting for information)."""
    await migrate_dsn(settings.dsn(), SCHEMA, [MESSAGING_MIGRATIONS, *MIGRATIONS])
    log = LogWriter.create(settings)
    clean_cases(log, catalogue)  # one of them waits for information
    flow(log, catalogue).decide(NeedsInfo(("separation_letter",), "bring the letter"))
    await log.flush()
    return await ingest_log(settings)


@pytest.fixture
async def reader(settings: Settings, stack: Stack, stored: list[Event]) -> dict[str, str]:
    """The auditor's connection (DATABASE_URL and password file): onedoor_auditor, which
    may only read the audit schema. The store was migrated here by the test as the owner;
    provisioning again hands its tables to the audit's role and lets the auditor read
    them, as on a deployment where the audit service migrated them."""
    await dbroles.provision(settings.dsn(), [SCHEMA], stack.secrets_dir)
    return dbroles.service_env(settings.dsn(), "auditor", stack.secrets_dir)


def token_file(settings: Settings) -> str:
    """An auditor's access token in a file, as ``onedoor-audit history`` reads it (the
    token key made as intake makes it)."""
    generate_key(settings.token_key_path())
    token = TokenIssuer(load_signing_key(settings.token_key_path()), 900).issue(
        {"sub": "auditor-1", "role": "auditor"}
    )
    path = settings.keys_dir.parent / "auditor.token"
    path.write_text(token)
    path.chmod(0o600)
    return str(path)


WHY = ("--reason", "read-only role check")


def audit_cli(
    settings: Settings, database: Mapping[str, str], *args: str
) -> subprocess.CompletedProcess[str]:
    env = {
        "ONEDOOR_TOKEN_FILE": token_file(settings),
        "PATH": "/usr/bin:/bin",
        **kafka_security.env_of(settings),
        **database,
        "ONEDOOR_TOPIC_PREFIX": settings.topic_prefix,
        "ONEDOOR_KEYS_DIR": str(settings.keys_dir),
        "ONEDOOR_LOG_JSON": "true",
    }
    return subprocess.run(
        [sys.executable, "-m", "services.audit.cli", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_history_stats_and_verify_work_for_the_auditor_role(
    settings: Settings, stored: list[Event], reader: dict[str, str]
) -> None:
    case_id = str(stored[0].case_id)
    history = audit_cli(settings, reader, "history", case_id, "--json", *WHY)
    assert history.returncode == 0, history.stdout + history.stderr
    assert json.loads(history.stdout)["case_id"] == case_id
    stats_run = audit_cli(settings, reader, "stats", "--json")
    assert stats_run.returncode == 0, stats_run.stdout + stats_run.stderr
    figures = json.loads(stats_run.stdout)
    assert sum(c["accepted"] for c in figures["per_item"].values()) == 5
    verify = audit_cli(settings, reader, "verify", "--json", "--processes", "1")
    assert verify.returncode == 0, verify.stdout + verify.stderr
    assert json.loads(verify.stdout)["violations"] == 0


async def test_read_only_commands_never_migrate(settings: Settings, stack: Stack) -> None:
    name = f"t_{uuid4().hex[:12]}"
    empty = await create_database(stack.database_url, name)
    try:
        for args in (("stats",), ("history", str(uuid4()), *WHY), ("stats", "--json")):
            result = audit_cli(settings, {"DATABASE_URL": empty}, *args)
            assert result.returncode == 2, result.stdout + result.stderr
            said = " ".join(result.stderr.lower().split())
            assert "start the audit service" in said, result.stderr
        conn = await asyncpg.connect(empty)
        try:
            assert await conn.fetchval("SELECT to_regnamespace($1) IS NULL", SCHEMA)
        finally:
            await conn.close()
    finally:
        await drop_database(stack.database_url, name)


async def test_statistics_come_from_the_live_views_not_the_events(
    settings: Settings, stored: list[Event]
) -> None:
    """A session that may read case_views (and the list of reads, access_reads) but not
    events gets the statistics of a rebuild of the projection from every stored event."""
    now = datetime.now(UTC)
    role = f"viewer_{uuid4().hex[:8]}"
    owner = await asyncpg.connect(settings.dsn())
    try:
        rebuilt = [
            parse_event(bytes(r["value"]))
            for r in await owner.fetch("SELECT value FROM audit.events")
        ]
        expected = stats(project(rebuilt), now=now).to_json()
        roles = Counter(e.role for e in rebuilt if isinstance(e, PersonalDataAccessed))
        expected["accesses_by_role"] = dict(roles)
        assert roles["auditor"] >= 2  # the drill's clean cases are read
        assert sum(c["accepted"] for c in expected["per_item"].values()) >= 5
        password = token_urlsafe(16)
        await owner.execute(
            f"CREATE ROLE {role} LOGIN PASSWORD '{dbroles.scram_verifier(password)}'"
        )
        database = await owner.fetchval("SELECT current_database()")
        await owner.execute(f'GRANT CONNECT ON DATABASE "{database}" TO {role}')
        await owner.execute(f"GRANT USAGE ON SCHEMA {SCHEMA} TO {role}")
        await owner.execute(f"GRANT SELECT ON {SCHEMA}.case_views TO {role}")
        await owner.execute(f"GRANT SELECT ON {SCHEMA}.access_reads TO {role}")
        as_viewer = compose_dsn(dbroles.role_dsn(settings.dsn(), role), password=password)
        conn = await connect(as_viewer, SCHEMA, name="test-viewer")
        try:
            with pytest.raises(asyncpg.InsufficientPrivilegeError):
                await conn.fetchval("SELECT count(*) FROM events")
            assert await queries.statistics(conn, now=now) == expected
        finally:
            await conn.close()
    finally:
        await owner.execute(f"DROP OWNED BY {role}")
        await owner.execute(f"DROP ROLE IF EXISTS {role}")
        await owner.close()
