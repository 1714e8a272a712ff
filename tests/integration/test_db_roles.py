"""Each service's PostgreSQL role may touch its own schema and nothing else; the auditor
may only read the audit schema; every login proves its password. Asked of the real
server, as each role, statement by statement.

``pytest -s`` prints the matrix (role x schema x action -> result).
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import sys
from pathlib import Path

import asyncpg
import pytest

from deploy import dbroles
from deploy import stack as local_stack
from services.audit import queries
from services.audit.store import MIGRATIONS_DIR as AUDIT_MIGRATIONS
from services.intake.main import MIGRATIONS as INTAKE_MIGRATIONS
from services.router.main import MIGRATIONS as ROUTER_MIGRATIONS
from shared.department.adapter import SDK_MIGRATIONS
from shared.messaging import MESSAGING_MIGRATIONS
from shared.platform.db import MigrationError, migrate_dsn
from shared.platform.settings import compose_dsn
from tests.conftest import Stack
from tests.e2e.harness import free_port

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# "parks": a department added from a catalogue folder gets its role by the same rule.
SCHEMAS = ("intake", "router", "hr_registration", "social_security", "parks", "audit")
MIGRATIONS: dict[str, list[Path]] = {
    "intake": INTAKE_MIGRATIONS,
    "router": [ROUTER_MIGRATIONS],
    "hr_registration": [SDK_MIGRATIONS],
    "social_security": [SDK_MIGRATIONS],
    "parks": [SDK_MIGRATIONS],
    "audit": [AUDIT_MIGRATIONS],
}
ACTIONS = {
    "SELECT": "SELECT count(*) FROM {s}.schema_migrations",
    "INSERT": "INSERT INTO {s}.schema_migrations (version, name, checksum) VALUES ('p','p','p')",
    "UPDATE": "UPDATE {s}.schema_migrations SET name = name WHERE false",
    "DELETE": "DELETE FROM {s}.schema_migrations WHERE false",
    "CREATE": "CREATE TABLE {s}.probe (x int)",
}
# What no service role may do in the database at all.
OUTSIDE = {
    "CREATE SCHEMA": "CREATE SCHEMA probe",
    "CREATE in public": "CREATE TABLE public.probe (x int)",
    "CREATE TEMP": "CREATE TEMP TABLE probe (x int)",
}
AUDITOR = "auditor"


@pytest.fixture(scope="module")
async def provisioned(database_url: str, stack: Stack) -> str:
    """The module's database with every schema provisioned and migrated by its own
    role, as the services do at start-up; the owner's DSN."""
    await dbroles.provision(database_url, SCHEMAS, stack.secrets_dir)
    for schema in SCHEMAS:
        dsn = dbroles.service_dsn(database_url, schema, stack.secrets_dir)
        await migrate_dsn(dsn, schema, [MESSAGING_MIGRATIONS, *MIGRATIONS[schema]])
    return database_url


async def attempt(conn: asyncpg.Connection, sql: str) -> str:
    """Run ``sql`` in a transaction that is rolled back: what the server answered."""
    tr = conn.transaction()
    await tr.start()
    try:
        await conn.execute(sql)
    except asyncpg.InsufficientPrivilegeError:
        return "denied"
    except asyncpg.ReadOnlySQLTransactionError:
        return "read-only"
    finally:
        await tr.rollback()
    return "ok"


async def as_role(owner_dsn: str, name: str, secrets: Path) -> asyncpg.Connection:
    conn: asyncpg.Connection = await asyncpg.connect(dbroles.service_dsn(owner_dsn, name, secrets))
    return conn


async def test_each_role_reaches_its_own_schema_only(provisioned: str, stack: Stack) -> None:
    results: dict[tuple[str, str, str], str] = {}
    for who in [*SCHEMAS, AUDITOR]:
        conn = await as_role(provisioned, who, stack.secrets_dir)
        try:
            # The auditor's sessions start read-only (a role default); the matrix asks
            # what its grants allow, so it turns that default off first, as it could.
            await conn.execute("SET default_transaction_read_only = off")
            for schema in SCHEMAS:
                for action, sql in ACTIONS.items():
                    results[who, schema, action] = await attempt(conn, sql.format(s=schema))
            for action, sql in OUTSIDE.items():
                results[who, "(database)", action] = await attempt(conn, sql)
        finally:
            await conn.close()
    print_matrix(results)

    expected = {}
    for who in [*SCHEMAS, AUDITOR]:
        for schema in SCHEMAS:
            for action in ACTIONS:
                own = who == schema
                reads_audit = who == AUDITOR and schema == "audit" and action == "SELECT"
                expected[who, schema, action] = "ok" if own or reads_audit else "denied"
        for action in OUTSIDE:
            expected[who, "(database)", action] = "denied"
    wrong = {k: (v, expected[k]) for k, v in results.items() if v != expected[k]}
    assert not wrong, f"(role, schema, action): (got, expected): {wrong}"
    # The cases the issue names, spelled out.
    assert results["router", "intake", "SELECT"] == "denied"
    assert results["router", "intake", "INSERT"] == "denied"
    assert results["hr_registration", "social_security", "SELECT"] == "denied"
    assert results["parks", "hr_registration", "UPDATE"] == "denied"
    assert results[AUDITOR, "audit", "SELECT"] == "ok"
    assert {results[AUDITOR, "audit", a] for a in ("INSERT", "UPDATE", "DELETE")} == {"denied"}


async def test_departments_read_data_keys_through_intakes_function_only(
    provisioned: str, stack: Stack
) -> None:
    """A department opens its tasks' sealed fields with a data key it may read only
    through ``intake.subject_data_keys`` (docs/privacy.md); the router and the audit,
    which never open them, may not even call it, and nobody but intake reads the table."""
    key = "SELECT count(*) FROM intake.subject_data_keys(ARRAY['s1-0'])"  # any ref
    answers = {}
    for who in [*SCHEMAS, AUDITOR]:
        conn = await as_role(provisioned, who, stack.secrets_dir)
        try:
            answers[who] = (
                await attempt(conn, key),
                await attempt(conn, "SELECT * FROM intake.subject_keys"),
            )
        finally:
            await conn.close()
    departments = {"hr_registration", "social_security", "parks"}
    assert {w for w, (call, _) in answers.items() if call == "ok"} == departments | {"intake"}
    assert {w for w, (_, table) in answers.items() if table == "ok"} == {"intake"}


def print_matrix(results: dict[tuple[str, str, str], str]) -> None:
    roles = list(dict.fromkeys(k[0] for k in results))
    places = list(dict.fromkeys((k[1], k[2]) for k in results))
    width = max(len(f"{s} {a}") for s, a in places)
    print("\nPostgreSQL roles: schema x action (rows) by role (columns); ok / denied")
    names = [AUDITOR if r == AUDITOR else dbroles.role_for(r) for r in roles]
    print(" " * width + " | " + " | ".join(n.removeprefix("onedoor_")[:8].ljust(8) for n in names))
    for schema, action in places:
        cells = [results[r, schema, action].ljust(8) for r in roles]
        print(f"{schema} {action}".ljust(width) + " | " + " | ".join(cells))


async def test_the_auditor_reads_the_store_and_its_sessions_cannot_write(
    provisioned: str, stack: Stack
) -> None:
    conn = await as_role(provisioned, AUDITOR, stack.secrets_dir)
    try:
        assert await conn.fetchval("SELECT count(*) FROM audit.events") == 0
        assert await conn.fetchval("SELECT count(*) FROM audit.case_views") == 0
        # Its default, without the grants' help: a session of the auditor is read-only.
        result = await attempt(conn, ACTIONS["DELETE"].format(s="audit"))
        assert result == "read-only"
    finally:
        await conn.close()


async def test_a_wrong_or_missing_password_is_refused(provisioned: str, stack: Stack) -> None:
    for role in ("onedoor_intake", dbroles.AUDITOR, "postgres"):
        for password in ("not-the-password", ""):
            dsn = compose_dsn(dbroles.role_dsn(provisioned, role), password=password)
            with pytest.raises(asyncpg.InvalidPasswordError):
                await asyncpg.connect(dsn)
    # The right one opens (the same path, so the refusals above are the password's).
    conn = await as_role(provisioned, "intake", stack.secrets_dir)
    assert await conn.fetchval("SELECT current_user") == "onedoor_intake"
    await conn.close()


async def test_a_role_cannot_migrate_a_schema_nobody_provisioned(
    provisioned: str, stack: Stack
) -> None:
    dsn = dbroles.service_dsn(provisioned, "router", stack.secrets_dir)
    with pytest.raises(MigrationError, match=r"python -m deploy\.dbroles provision"):
        await migrate_dsn(dsn, "not_provisioned", [MESSAGING_MIGRATIONS])


def test_no_password_is_printed_or_logged(provisioned: str, stack: Stack) -> None:
    cfg = stack.local
    assert cfg is not None, "this test reads the local stack's own output and logs"
    secrets = sorted(cfg.secrets_dir.glob("*.password"))
    assert {p.name for p in secrets} >= {"postgres.password", "onedoor_auditor.password"}
    for path in secrets:
        assert path.stat().st_mode & 0o777 == 0o600, path
    passwords = {p.name: p.read_text().strip() for p in secrets}
    said = ""
    for args in (["up"], ["status"], ["env"], ["env", "intake"], ["env", "auditor"]):
        run = subprocess.run(
            [sys.executable, "-m", "deploy.stack", *args],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert run.returncode == 0, run.stdout + run.stderr
        said += run.stdout + run.stderr
    assert "ONEDOOR_DATABASE_PASSWORD_FILE" in said  # what is printed: the file's name
    provision = subprocess.run(
        [sys.executable, "-m", "deploy.dbroles", "provision", "--secrets", str(cfg.secrets_dir)],
        env={
            "PATH": "/usr/bin:/bin",
            "DATABASE_URL": cfg.database_url,
            "ONEDOOR_DATABASE_PASSWORD_FILE": str(cfg.superuser_password_file),
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert provision.returncode == 0, provision.stdout + provision.stderr
    said += provision.stdout + provision.stderr
    logs = [cfg.pg_log, *cfg.data_dir.glob("logs/**/*.log")]
    written = "".join(p.read_text(errors="replace") for p in logs if p.is_file())
    leaked = [name for name, pw in passwords.items() if pw in said or pw in written]
    assert not leaked, f"passwords found in output or logs: {leaked}"


async def test_the_audits_http_reads_run_as_the_auditor(provisioned: str, stack: Stack) -> None:
    """The audit service's own role may write its store; its HTTP queries borrow the
    auditor's role for their read-only transaction (queries.read_only)."""
    conn = await as_role(provisioned, "audit", stack.secrets_dir)
    try:
        await conn.execute("SET search_path TO audit")
        async with queries.read_only(conn, dbroles.AUDITOR):
            assert await conn.fetchval("SELECT current_user") == dbroles.AUDITOR
            figures = await queries.statistics(conn)
        assert figures["per_item"] == {}
        assert await conn.fetchval("SELECT current_user") == "onedoor_audit"  # LOCAL: over
        async with queries.read_only(conn, dbroles.AUDITOR):
            with pytest.raises(asyncpg.ReadOnlySQLTransactionError):
                await conn.execute(ACTIONS["DELETE"].format(s="audit"))
    finally:
        await conn.close()


def test_a_data_folder_from_before_passwords_comes_up_asking_for_them(tmp_path: Path) -> None:
    """Developers have data folders made with trust authentication: `stack-up` gives the
    superuser a password and rewrites pg_hba.conf, and the data is still there."""
    cfg = local_stack.StackConfig(
        data_dir=tmp_path / "data",
        kafka_port=free_port(),
        kafka_controller_port=free_port(),
        pg_port=free_port(),
        kafka_heap="256m",
        start_timeout_s=60,
    )
    user = local_stack._pg_user()
    cfg.pg_dir.mkdir(parents=True)
    if user is not None:
        local_stack._let_user_reach(cfg.pg_dir)
        shutil.chown(cfg.pg_dir, user=user, group=user)
    initdb = ["-D", str(cfg.pg_data), "-U", "postgres", "--auth=trust", "--no-sync"]
    local_stack._run_pg("initdb", initdb, user=user)
    assert not cfg.superuser_password_file.exists()
    try:
        local_stack.start_postgres(cfg)
        hba = (cfg.pg_data / "pg_hba.conf").read_text().splitlines()
        assert {ln.split()[-1] for ln in hba if ln.strip() and ln[0] != "#"} == {"scram-sha-256"}
        assert cfg.superuser_password_file.stat().st_mode & 0o777 == 0o600

        async def logins() -> tuple[int, type[Exception] | None]:
            conn = await asyncpg.connect(cfg.admin_dsn())
            n = await conn.fetchval("SELECT count(*) FROM pg_database WHERE datname = 'onedoor'")
            await conn.close()
            try:
                await asyncpg.connect(cfg.admin_dsn().replace("postgres:", "postgres:x", 1))
            except asyncpg.InvalidPasswordError as exc:
                return n, type(exc)
            return n, None

        assert asyncio.run(logins()) == (1, asyncpg.InvalidPasswordError)
        # A second start finds nothing to upgrade and comes up as any other day.
        local_stack.restart_postgres(cfg)
        assert asyncio.run(logins()) == (1, asyncpg.InvalidPasswordError)
    finally:
        local_stack.stop_postgres(cfg)


async def test_provisioning_again_restores_a_roles_password_and_rights(
    provisioned: str, stack: Stack
) -> None:
    """A role whose password is not its file's any more (made from another secrets
    folder), or that was given a right it must not have, is corrected by running the
    provisioning again; what is already right is left alone."""
    owner = await asyncpg.connect(provisioned)
    try:
        other = dbroles.scram_verifier("another-secrets-folder")
        await owner.execute(f"ALTER ROLE onedoor_parks CREATEDB PASSWORD '{other}'")
    finally:
        await owner.close()
    with pytest.raises(asyncpg.InvalidPasswordError):
        await as_role(provisioned, "parks", stack.secrets_dir)
    await dbroles.provision(provisioned, ["parks"], stack.secrets_dir)
    conn = await as_role(provisioned, "parks", stack.secrets_dir)
    try:
        assert (
            await conn.fetchval("SELECT rolcreatedb FROM pg_roles WHERE rolname = 'onedoor_parks'")
            is False
        )
        assert await attempt(conn, ACTIONS["INSERT"].format(s="parks")) == "ok"
    finally:
        await conn.close()
