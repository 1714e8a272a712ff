"""The PostgreSQL plumbing against the real server of the local stack."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest
from aiokafka import TopicPartition

from shared.contracts.events import CaseClosed
from shared.contracts.topology import CASES_ROUTING
from shared.messaging import MESSAGING_MIGRATIONS
from shared.messaging.kafka import read_to_end
from shared.messaging.outbox import OutboxRelay, OutboxRow, OutboxWriter
from shared.messaging.signing import SIGNATURE_HEADER, SIGNER_HEADER, PublicKeys
from shared.messaging.testing import signer_for
from shared.messaging.topics import ensure_topics
from shared.platform.db import MigrationError, create_pool, migrate_dsn
from shared.platform.settings import Settings

pytestmark = pytest.mark.integration


async def test_migrations_applied_twice_are_a_no_op(database_url: str, tmp_path: Path) -> None:
    own = tmp_path / "migrations"
    own.mkdir()
    (own / "001_things.sql").write_text("CREATE TABLE things (id int PRIMARY KEY, doc jsonb);")
    first = await migrate_dsn(database_url, "svc_a", [MESSAGING_MIGRATIONS, own])
    assert first == [
        "001_outbox_inbox.sql",
        "002_inbox_dead_letter.sql",
        "003_outbox_without_sent_at.sql",
        "004_outbox_dead_letters.sql",
        "001_things.sql",
    ]
    assert await migrate_dsn(database_url, "svc_a", [MESSAGING_MIGRATIONS, own]) == []

    # The same files in another schema are that schema's own tables.
    assert len(await migrate_dsn(database_url, "svc_b", [MESSAGING_MIGRATIONS, own])) == 5

    (own / "001_things.sql").write_text("CREATE TABLE things (id bigint PRIMARY KEY);")
    with pytest.raises(MigrationError, match="changed after it was applied"):
        await migrate_dsn(database_url, "svc_a", [MESSAGING_MIGRATIONS, own])


async def test_misnamed_migration_is_refused(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "things.sql").write_text("SELECT 1;")
    with pytest.raises(MigrationError, match=r"NNN_description\.sql"):
        await migrate_dsn(database_url, "svc_c", [tmp_path])


async def test_pool_round_trips_json_in_its_own_schema(database_url: str, tmp_path: Path) -> None:
    (tmp_path / "001_docs.sql").write_text(
        "CREATE TABLE docs (id int PRIMARY KEY, doc jsonb, j json);"
    )
    await migrate_dsn(database_url, "svc_json", [tmp_path])
    pool = await create_pool(database_url, "svc_json")
    doc = {"name": "Li", "fields": [1, 2.5, None, True], "nested": {"k": "值"}}
    try:
        async with pool.acquire() as conn, conn.transaction():
            await conn.execute("INSERT INTO docs VALUES (1, $1, $2)", doc, doc)
        row = await pool.fetchrow("SELECT doc, j FROM docs WHERE id = 1")
        assert row is not None
        assert row["doc"] == doc
        assert row["j"] == doc
        # search_path confines the pool to its schema: another schema's table is invisible.
        with pytest.raises(asyncpg.UndefinedTableError):
            await pool.fetch("SELECT * FROM schema_migrations_nope")
    finally:
        await pool.close()


async def test_outbox_batch_keeps_its_order_and_headers(database_url: str, tmp_path: Path) -> None:
    """One statement writes a batch: ids (the relay's publishing order) follow the batch."""
    await migrate_dsn(database_url, "svc_outbox", [MESSAGING_MIGRATIONS])
    pool = await create_pool(database_url, "svc_outbox")
    try:
        rows = [
            OutboxRow(uuid4(), f"topic.{i % 3}", f"k{i}".encode(), b"v" * i, (("n", str(i)),))
            for i in range(40)
        ]
        writer = OutboxWriter(signer_for(tmp_path, "svc"))
        async with pool.acquire() as conn, conn.transaction():
            await writer.write(conn, rows)
        stored = await pool.fetch("SELECT event_id, value, headers FROM outbox ORDER BY id")
        assert [r["event_id"] for r in stored] == [r.event_id for r in rows]
        assert [r["value"] for r in stored] == [r.value for r in rows]
        assert stored[7]["headers"] == [["n", "7"]]
    finally:
        await pool.close()


async def test_events_written_together_are_signed_as_one_batch(
    database_url: str, tmp_path: Path
) -> None:
    """The writer signs a transaction's events together: each stored row verifies alone,
    rows beside them (a dead letter keeps its original headers) are left unsigned."""
    await migrate_dsn(database_url, "svc_signed", [MESSAGING_MIGRATIONS])
    pool = await create_pool(database_url, "svc_signed")
    writer = OutboxWriter(signer_for(tmp_path, "router"))
    events = [
        CaseClosed(case_id=case, correlation_id=case, producer="router", outcome="approved")
        for case in (uuid4() for _ in range(5))
    ]
    rows = [writer.row("cases.routing", e) for e in events]
    rows.insert(2, OutboxRow(uuid4(), "x.dlq", None, b"poison", (("dlq.reason", "r"),)))
    try:
        async with pool.acquire() as conn, conn.transaction():
            await writer.write(conn, rows)
        stored = await pool.fetch("SELECT value, headers FROM outbox ORDER BY id")
    finally:
        await pool.close()
    keys = PublicKeys.load(tmp_path)
    signatures = []
    for row in stored:
        headers = dict(row["headers"])
        if row["value"] == b"poison":
            assert headers == {"dlq.reason": "r"}
            continue
        assert headers[SIGNER_HEADER] == "router"
        signatures.append(headers[SIGNATURE_HEADER])
        assert keys.verify("router", row["value"], headers[SIGNATURE_HEADER])
        assert not keys.verify("router", row["value"] + b" ", headers[SIGNATURE_HEADER])
    assert len(signatures) == 5
    # One Ed25519 signature for the five, each with its own proof.
    assert {s.split(".")[3] for s in signatures} == {signatures[0].split(".")[3]}
    assert len({s.split(".")[4] for s in signatures}) == 5


async def test_the_relay_deletes_what_it_published_and_the_outbox_holds_only_unsent_rows(
    settings: Settings, database_url: str
) -> None:
    """The outbox keeps no "sent" rows: the relay deletes each row once the broker has it,
    so the table is the backlog, and no column claims a sent time nothing ever sets."""
    await migrate_dsn(database_url, "svc_relay", [MESSAGING_MIGRATIONS])
    await ensure_topics(settings, [CASES_ROUTING])
    pool = await create_pool(database_url, "svc_relay")
    relay = OutboxRelay(settings, pool, name="svc_relay")
    writer = OutboxWriter(signer_for(settings.keys_dir, "router"))
    events = [
        CaseClosed(case_id=case, correlation_id=case, producer="router", outcome="approved")
        for case in (uuid4() for _ in range(7))
    ]
    try:
        columns = await pool.fetch(
            "SELECT column_name FROM information_schema.columns "
            "WHERE table_schema = 'svc_relay' AND table_name = 'outbox'"
        )
        assert "sent_at" not in {c["column_name"] for c in columns}
        async with pool.acquire() as conn, conn.transaction():
            await writer.add(conn, CASES_ROUTING, *events)
        assert await relay.backlog() == 7
        assert await relay.publish_pending() == 7
        assert await relay.backlog() == 0
        assert await pool.fetchval("SELECT count(*) FROM outbox") == 0
        assert await relay.publish_pending() == 0  # nothing is published twice
    finally:
        await relay.run(_stopped())  # the last drain, then its producer and connection close
        await pool.close()
    name = settings.topic(CASES_ROUTING)
    published = await read_to_end(
        settings, [TopicPartition(name, p) for p in range(settings.topic_partitions)]
    )
    assert sorted(r.value for r in published) == sorted(e.to_json() for e in events)


def _stopped() -> asyncio.Event:
    stop = asyncio.Event()
    stop.set()
    return stop


_NICED_CHILD = """
import asyncio, os, sys
from shared.platform.db import connect

async def main():
    os.nice(int(sys.argv[2]))
    conn = await connect(sys.argv[1], "public", name="niced")
    pid = conn.get_server_pid()
    print(pid, os.getpriority(os.PRIO_PROCESS, pid))
    await conn.close()

asyncio.run(main())
"""


@pytest.mark.parametrize("nice", [0, 7])
def test_a_niced_process_gives_its_sessions_its_niceness(database_url: str, nice: int) -> None:
    # The audit runs niced so that the pipeline goes first; its database sessions are
    # PostgreSQL backends on the same host, and they go last with it.
    child = subprocess.run(
        [sys.executable, "-c", _NICED_CHILD, database_url, str(nice)],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        cwd=Path(__file__).resolve().parents[2],
    )
    _, backend_nice = child.stdout.split()
    assert int(backend_nice) == nice
