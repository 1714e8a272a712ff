"""The audit store on the real PostgreSQL: append-only in the database itself, one row per
event, a per-case hash chain that exposes tampering, and a rebuildable projection."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator
from dataclasses import replace
from pathlib import Path
from uuid import uuid4

import asyncpg
import pytest

from services.audit import chains, queries, store
from services.audit.ingest import AuditIngest, SignatureJudge
from services.audit.verifier.log import LogRecord
from shared.contracts.decoding import decode_record
from shared.contracts.events import (
    CaseAccepted,
    CaseClosed,
    CaseReviewFlagged,
    Event,
    EventDecodeError,
)
from shared.messaging import MESSAGING_MIGRATIONS
from shared.messaging.consumer import Record
from shared.messaging.signing import (
    SIGNATURE_HEADER,
    SIGNER_HEADER,
    PublicKeys,
    verdict_mac_key,
)
from shared.messaging.testing import signer_for
from shared.platform.db import create_pool, migrate_dsn
from shared.platform.settings import Settings
from tests.support import builders

pytestmark = pytest.mark.integration

MIGRATIONS = [store.MIGRATIONS_DIR]


def decode(record: LogRecord) -> Event | None:
    event = decode_record(record.value)
    return None if isinstance(event, EventDecodeError) else event


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[asyncpg.Pool]:
    schema = f"audit_{uuid4().hex[:8]}"
    await migrate_dsn(database_url, schema, [MESSAGING_MIGRATIONS, *MIGRATIONS])
    pool = await create_pool(database_url, schema)
    yield pool
    await pool.close()


def accepted(n: int = 1) -> CaseAccepted:
    receipt_no = f"C01-20261127-{n:06d}"
    return builders.accepted(
        "HR-JOB-REGISTRATION", builders.applicant(n), builders.JOB_FORM, receipt_no=receipt_no
    )


def record(event: Event, offset: int, value: bytes | None = None) -> tuple[LogRecord, Event | None]:
    entry = LogRecord("cases.accepted", 0, offset, value or event.to_json(), "intake", "sig")
    return entry, decode(entry)


async def ingest(
    pool: asyncpg.Pool, batch: list[tuple[LogRecord, Event | None]]
) -> store.IngestResult:
    async with pool.acquire() as conn, conn.transaction():
        result, cases = await store.ingest(conn, batch)
        await store.refresh_views(conn, cases)
    return result


async def test_update_delete_and_truncate_are_refused_by_the_database(pool: asyncpg.Pool) -> None:
    await ingest(pool, [record(accepted(), 0)])
    for statement in (
        "UPDATE events SET producer = 'someone else'",
        "DELETE FROM events",
        "TRUNCATE events",
        "DELETE FROM conflicts",
        "UPDATE malformed SET value = ''",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await pool.execute(statement)
    assert await pool.fetchval("SELECT count(*) FROM events") == 1


async def test_each_event_is_stored_once_and_a_conflict_is_kept_apart(pool: asyncpg.Pool) -> None:
    event = accepted()
    first = await ingest(pool, [record(event, 0), record(event, 1)])
    assert (first.stored, first.duplicates) == (1, 1)
    altered = event.model_copy(update={"window_id": "W99"}).to_json()
    second = await ingest(pool, [record(event, 2, altered), record(event, 3)])
    assert (second.stored, second.duplicates, second.conflicts) == (0, 1, 1)
    assert await pool.fetchval("SELECT count(*) FROM events") == 1
    assert await pool.fetchval("SELECT count(*) FROM conflicts") == 1
    junk = LogRecord("cases.routing", 0, 9, b"\x00junk", None, None)
    third = await ingest(pool, [(junk, decode(junk)), (junk, decode(junk))])
    assert third.malformed == 1


async def test_tampering_breaks_the_hash_chain(pool: asyncpg.Pool) -> None:
    event = accepted()
    closed = CaseClosed(**event.caused(), producer="router", outcome="approved")
    await ingest(pool, [record(event, 0), record(closed, 1)])
    async with pool.acquire() as conn, conn.transaction():
        assert await chains.check_chains(conn) == []
    # Someone with the database owner's rights switches the guard off and edits history.
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        await conn.execute(
            "UPDATE events SET value = $1 WHERE event_id = $2",
            event.model_copy(update={"item_code": "SS-PENSION"}).to_json(),
            event.event_id,
        )
        await conn.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
    async with pool.acquire() as conn, conn.transaction():
        found = await chains.check_chains(conn)
    assert [(v.kind, v.case_id, v.event_id) for v in found] == [
        ("broken_hash_chain", event.case_id, event.event_id)
    ]


async def test_rebuild_gives_the_live_digest_twice(pool: asyncpg.Pool) -> None:
    events = [accepted(n) for n in range(5)]
    await ingest(pool, [record(e, i) for i, e in enumerate(events)])
    closed = CaseClosed(
        **events[0].caused(), producer="router", outcome="rejected", reason_code="r"
    )
    await ingest(pool, [record(closed, 10)])
    async with pool.acquire() as conn:
        first = await queries.rebuild_projection(conn)
        second = await queries.rebuild_projection(conn)
    assert first.identical
    assert second.identical
    assert first.rebuilt == second.live == second.rebuilt
    assert await pool.fetchval("SELECT count(*) FROM case_views") == 5
    # A live view that drifted from the events: every rebuild names each case and
    # leaves the live view as it is; --replace rebuilds it, keeping the replaced views.
    await pool.execute("UPDATE case_views SET view = jsonb_set(view, '{community_code}', '\"x\"')")
    async with pool.acquire() as conn:
        drifted = await queries.rebuild_projection(conn)
        again = await queries.rebuild_projection(conn)
        replaced = await queries.rebuild_projection(conn, replace=True)
        repaired = await queries.rebuild_projection(conn)
    cases = sorted(e.case_id for e in events)
    for result in (drifted, again, replaced):
        assert not result.identical
        assert sorted(d.case_id for d in result.differences) == cases
        assert {d.fields for d in result.differences} == {("community_code",)}
    assert drifted.rebuilt == first.rebuilt
    assert not again.replaced
    assert replaced.replaced
    assert await pool.fetchval("SELECT count(*) FROM replaced_views") == 5
    assert repaired.identical


async def test_views_refreshed_with_parsed_events_match_a_rebuild(pool: asyncpg.Pool) -> None:
    """The ingest's cache of parsed events (bounded) changes no view."""
    parsed = store.ParsedEvents(limit=3)
    events = [accepted(n) for n in range(4)]
    closes = [
        CaseClosed(**e.caused(), producer="router", outcome="approved", on_spot=True)
        for e in events
    ]
    batches: list[list[Event]] = [[*events[:2]], [*events[2:], closes[0]], [*closes[1:]]]
    for offset, batch in enumerate(batches):
        async with pool.acquire() as conn, conn.transaction():
            _, cases = await store.ingest(
                conn, [record(e, offset * 10 + i) for i, e in enumerate(batch)], parsed
            )
            await store.refresh_views(conn, cases, parsed)
        parsed.commit()
    assert len(parsed) == 3  # bounded: the oldest were dropped
    async with pool.acquire() as conn, conn.transaction():
        live = store.views_digest(await store.live_views(conn))
        assert (live, []) == await store.rebuild(conn)


async def test_a_conflicting_copy_never_replaces_the_stored_event_in_the_cache(
    pool: asyncpg.Pool,
) -> None:
    parsed = store.ParsedEvents()
    case = accepted()
    closed = CaseClosed(**case.caused(), producer="router", outcome="approved", on_spot=True)
    forged = closed.model_copy(update={"outcome": "rejected"}).to_json()
    flags = [
        CaseReviewFlagged(
            **closed.caused(),
            producer="router",
            step_index=0,
            department="hr_registration",
            reason_code="unclear",
            message=f"photo unreadable ({n})",
        )
        for n in range(2)
    ]
    batches = [
        [record(case, 0), record(closed, 1)],
        [record(closed, 2, forged), record(flags[0], 3)],  # the conflict beside a fresh one
        [record(flags[1], 4)],  # refreshes the view from what the cache holds
    ]
    for batch in batches:
        async with pool.acquire() as conn, conn.transaction():
            _, cases = await store.ingest(conn, batch, parsed)
            await store.refresh_views(conn, cases, parsed)
        parsed.commit()
    async with pool.acquire() as conn, conn.transaction():
        (view,) = await store.live_views(conn)
        assert view["outcome"] == "approved"
        assert (store.views_digest([view]), []) == await store.rebuild(conn)


def verdict(event: Event, valid: bool = True, mac: bytes | None = b"m" * 32) -> store.Verdict:
    return store.Verdict(
        event_id=event.event_id,
        record_hash=os.urandom(32),
        signer="intake",
        key_fingerprint=os.urandom(32),
        valid=valid,
        topic="cases.accepted",
        partition=0,
        offset=0,
        mac=mac,
    )


async def test_signature_verdicts_are_append_only(pool: asyncpg.Pool) -> None:
    async with pool.acquire() as conn, conn.transaction():
        assert await store.record_verdicts(conn, "p.", [verdict(accepted())]) == 1
    for statement in (
        "UPDATE signature_verdicts SET valid = NOT valid",
        "UPDATE signature_verdicts SET record_hash = record_hash WHERE false",
        "DELETE FROM signature_verdicts",
        "TRUNCATE signature_verdicts",
    ):
        with pytest.raises(asyncpg.InsufficientPrivilegeError, match="append-only"):
            await pool.execute(statement)
    assert await pool.fetchval("SELECT count(*) FROM signature_verdicts") == 1


async def test_a_replay_loads_only_good_verdicts_whose_mac_checks(
    pool: asyncpg.Pool, tmp_path: Path
) -> None:
    mac_key = verdict_mac_key(signer_for(tmp_path, "audit"))
    events = [accepted(n) for n in range(5)]
    records = [record(e, i) for i, e in enumerate(events)]
    signed = [
        (replace(r, signature=signer_for(tmp_path, "intake").sign(r.value)), e) for r, e in records
    ]
    judge = SignatureJudge(tmp_path, PublicKeys.load(tmp_path), mac_key)
    good = judge.verdicts(signed[:2])
    bad = judge.verdicts([(replace(signed[2][0], value=b"{}"), signed[2][1])])
    forged = replace(judge.verdicts(signed[3:4])[0], mac=b"x" * 32)  # written by someone else
    assert [v.valid for v in good + bad] == [True, True, False]
    async with pool.acquire() as conn, conn.transaction():
        assert await store.record_verdicts(conn, "p.", [*good, *bad, forged]) == 4
        assert await store.record_verdicts(conn, "p.", good) == 0  # a redelivery adds nothing
        elsewhere = judge.verdicts(signed[4:])
        assert await store.record_verdicts(conn, "other.", elsewhere) == 1
    async with pool.acquire() as conn:
        loaded = await store.verified_digests(conn, "p.", mac_key)
        assert loaded == {v.record_hash for v in good}
        assert await store.verified_digests(conn, "other.", mac_key) == {elsewhere[0].record_hash}
        assert await store.verified_digests(conn, "p.", b"another key" * 3) == set()


async def test_the_database_walks_the_chains_exactly_as_python_does(pool: asyncpg.Pool) -> None:
    cases = [accepted(n) for n in range(4)]
    closes = [CaseClosed(**e.caused(), producer="router", outcome="approved") for e in cases]
    await ingest(pool, [record(e, i) for i, e in enumerate([*cases, *closes])])
    async with pool.acquire() as conn, pool.acquire() as other:
        assert await chains.check_chains_in_database(conn) == []
        assert await chains.check_chains_in_database(conn, other) == []
    async with pool.acquire() as conn, conn.transaction():
        await conn.execute("ALTER TABLE events DISABLE TRIGGER events_append_only")
        # case 0: other bytes; case 1: a row's link forged; case 2: its first row deleted;
        # case 3: other bytes with a content hash to match (the link still tells).
        other_bytes = cases[0].model_copy(update={"item_code": "SS-PENSION"}).to_json()
        await conn.execute(
            "UPDATE events SET value = $1 WHERE event_id = $2", other_bytes, cases[0].event_id
        )
        await conn.execute(
            "UPDATE events SET chain_hash = $1 WHERE event_id = $2", "f" * 64, cases[1].event_id
        )
        await conn.execute("DELETE FROM events WHERE event_id = $1", cases[2].event_id)
        rewritten = cases[3].model_copy(update={"window_id": "W99"}).to_json()
        await conn.execute(
            "UPDATE events SET value = $1, content_hash = $2 WHERE event_id = $3",
            rewritten,
            chains.content_hash(rewritten),
            cases[3].event_id,
        )
        await conn.execute("ALTER TABLE events ENABLE TRIGGER events_append_only")
    async with pool.acquire() as conn, conn.transaction():
        in_python = await chains.check_chains(conn)
    async with pool.acquire() as conn, pool.acquire() as other:
        assert await chains.check_chains_in_database(conn) == in_python
        assert await chains.check_chains_in_database(conn, other) == in_python
    assert {v.event_id for v in in_python} == {
        cases[0].event_id,
        cases[1].event_id,
        closes[1].event_id,
        closes[2].event_id,
        cases[3].event_id,
    }


async def test_records_the_database_refuses_are_kept_as_evidence_and_the_rest_stored(
    pool: asyncpg.Pool, settings: Settings
) -> None:
    """Issue 17: one event with U+0000 in ``producer``, one with it in a signature header.
    PostgreSQL refuses the batch (text holds no NUL); the careful mode stores the other
    records, keeps the two in ``malformed`` with their bytes and the reason, and a
    redelivery of the batch changes nothing."""
    good, nul_producer, nul_header, last = (accepted(n) for n in (1, 2, 3, 4))
    nul_producer = nul_producer.model_copy(update={"producer": "int\x00ake"})
    topic = settings.topic("cases.accepted")
    plain = ((SIGNER_HEADER, b"intake"), (SIGNATURE_HEADER, b"sig"))
    records = [
        Record(topic, 0, 0, None, good.to_json(), plain),
        Record(topic, 0, 1, None, nul_producer.to_json(), plain),
        Record(topic, 0, 2, None, nul_header.to_json(), ((SIGNER_HEADER, b"in\x00take"),)),
        Record(topic, 0, 3, None, last.to_json(), plain),
    ]
    audit = AuditIngest(settings, pool)
    result = await audit.process(records)
    assert result.processed == 2
    assert audit.totals.stored == 2
    assert audit.totals.unstorable == 2
    stored = await pool.fetch("SELECT event_id FROM events ORDER BY kafka_offset")
    assert [r["event_id"] for r in stored] == [good.event_id, last.event_id]
    kept = await pool.fetch(
        "SELECT kafka_offset, value, reason, signer FROM malformed ORDER BY kafka_offset"
    )
    assert [(r["kafka_offset"], bytes(r["value"])) for r in kept] == [
        (1, records[1].value),
        (2, records[2].value),
    ]
    assert all("DataError" in r["reason"] or "Error" in r["reason"] for r in kept)
    assert bytes(kept[1]["signer"]) == b"in\x00take"
    async with pool.acquire() as conn:
        assert await queries.history(conn, good.case_id) is not None
        assert await queries.history(conn, last.case_id) is not None
    # Redelivered: nothing new, nothing lost.
    await audit.process(records)
    assert await pool.fetchval("SELECT count(*) FROM events") == 2
    assert await pool.fetchval("SELECT count(*) FROM malformed") == 2
