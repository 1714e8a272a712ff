"""The audit's SQL (schema ``audit``): the append-only event store, its hash chains, and
the case-history projection built from it."""

from __future__ import annotations

import hashlib
import json
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from services.audit.domain import BROKEN_HASH_CHAIN, LogRecord, Violation, project
from shared.db import Connection
from shared.events import Event, parse_event

GENESIS = "0" * 64


def content_hash(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def chain_hash(prev_hash: str, content: str, event_id: UUID) -> str:
    """A row's link: covers the previous row of the case, this row's bytes and its id."""
    return hashlib.sha256(f"{prev_hash}:{content}:{event_id}".encode()).hexdigest()


def views_digest(views: Iterable[dict[str, Any]]) -> str:
    """sha256 over the canonical JSON of case views sorted by case id."""
    ordered = sorted(views, key=lambda v: str(v["case_id"]))
    body = json.dumps(ordered, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0
    malformed: int = 0


async def ingest(
    conn: Connection, batch: Sequence[tuple[LogRecord, Event | None]]
) -> tuple[IngestResult, set[UUID]]:
    """Append a batch to the store inside the caller's transaction.

    Returns the counts and the ids of the cases that gained events. An event already
    stored with the same bytes is a redelivery (skipped); with other bytes it is kept in
    ``conflicts`` as evidence.
    """
    result = IngestResult()
    events = [(r, e) for r, e in batch if e is not None]
    for record, _ in ((r, e) for r, e in batch if e is None):
        inserted = await conn.fetchval(
            "INSERT INTO malformed (topic, kafka_partition, kafka_offset, value) "
            "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING RETURNING id",
            record.topic,
            record.partition,
            record.offset,
            record.value,
        )
        result.malformed += inserted is not None
    if not events:
        return result, set()
    stored = {
        r["event_id"]: r["content_hash"]
        for r in await conn.fetch(
            "SELECT event_id, content_hash FROM events WHERE event_id = ANY($1::uuid[])",
            [e.event_id for _, e in events],
        )
    }
    fresh: list[tuple[LogRecord, Event, str]] = []
    for record, event in events:
        digest = content_hash(record.value)
        known = stored.get(event.event_id)
        if known is None:
            stored[event.event_id] = digest
            fresh.append((record, event, digest))
        elif known == digest:
            result.duplicates += 1
        else:
            inserted = await conn.fetchval(
                "INSERT INTO conflicts (event_id, topic, kafka_partition, kafka_offset, value,"
                " content_hash, stored_hash) VALUES ($1, $2, $3, $4, $5, $6, $7)"
                " ON CONFLICT DO NOTHING RETURNING id",
                event.event_id,
                record.topic,
                record.partition,
                record.offset,
                record.value,
                digest,
                known,
            )
            result.conflicts += inserted is not None
    if not fresh:
        return result, set()
    cases = sorted({e.case_id for _, e, _ in fresh})
    # FOR UPDATE: two audit replicas appending to one case's chain serialise here.
    heads = {
        r["case_id"]: (r["seq"], r["chain_hash"])
        for r in await conn.fetch(
            "SELECT case_id, seq, chain_hash FROM case_heads WHERE case_id = ANY($1::uuid[]) "
            "ORDER BY case_id FOR UPDATE",
            cases,
        )
    }
    rows = []
    for record, event, digest in fresh:
        seq, prev = heads.get(event.case_id, (0, GENESIS))
        link = chain_hash(prev, digest, event.event_id)
        heads[event.case_id] = (seq + 1, link)
        rows.append(
            (
                event.event_id,
                event.case_id,
                seq + 1,
                event.event_type,
                event.producer,
                event.occurred_at,
                record.topic,
                record.partition,
                record.offset,
                record.signer,
                record.signature,
                record.value,
                digest,
                prev,
                link,
            )
        )
    await conn.copy_records_to_table(
        "events",
        records=rows,
        columns=[
            "event_id",
            "case_id",
            "case_seq",
            "event_type",
            "producer",
            "occurred_at",
            "topic",
            "kafka_partition",
            "kafka_offset",
            "signer",
            "signature",
            "value",
            "content_hash",
            "prev_hash",
            "chain_hash",
        ],
    )
    await conn.executemany(
        "INSERT INTO case_heads (case_id, seq, chain_hash) VALUES ($1, $2, $3) "
        "ON CONFLICT (case_id) DO UPDATE SET seq = $2, chain_hash = $3",
        [(case, *heads[case]) for case in cases],
    )
    result.stored = len(rows)
    return result, set(cases)


async def case_events(conn: Connection, case_ids: Iterable[UUID]) -> list[Event]:
    rows = await conn.fetch(
        "SELECT value FROM events WHERE case_id = ANY($1::uuid[]) ORDER BY case_id, case_seq",
        list(case_ids),
    )
    return [parse_event(r["value"]) for r in rows]


async def refresh_views(conn: Connection, case_ids: Iterable[UUID]) -> None:
    """Recompute the projection of these cases from the store."""
    ids = list(case_ids)
    if not ids:
        return
    views = project(await case_events(conn, ids))
    await conn.executemany(
        "INSERT INTO case_views (case_id, view) VALUES ($1, $2) "
        "ON CONFLICT (case_id) DO UPDATE SET view = $2, updated_at = now()",
        [(case_id, view.to_json()) for case_id, view in views.items()],
    )


async def live_views(conn: Connection) -> list[dict[str, Any]]:
    return [r["view"] for r in await conn.fetch("SELECT view FROM case_views")]


async def stream_events(conn: Connection, batch: int = 5000) -> AsyncIterator[Any]:
    """Every stored row in case chain order (call inside a transaction)."""
    async for row in conn.cursor("SELECT * FROM events ORDER BY case_id, case_seq", prefetch=batch):
        yield row


async def rebuild(conn: Connection) -> str:
    """Drop the projection and rebuild it from the store; return the new digest."""
    await conn.execute("DELETE FROM case_views")
    events = [parse_event(row["value"]) async for row in stream_events(conn)]
    views = project(events)
    await conn.executemany(
        "INSERT INTO case_views (case_id, view) VALUES ($1, $2)",
        [(case_id, view.to_json()) for case_id, view in views.items()],
    )
    return views_digest(view.to_json() for view in views.values())


async def check_chains(conn: Connection) -> list[Violation]:
    """Walk every case's hash chain in the store; report each row that does not link."""
    found: list[Violation] = []
    current: UUID | None = None
    prev = GENESIS
    seq = 0
    async for row in stream_events(conn):
        if row["case_id"] != current:
            current, prev, seq = row["case_id"], GENESIS, 0
        seq += 1
        expected = chain_hash(prev, content_hash(bytes(row["value"])), row["event_id"])
        problems = []
        if row["case_seq"] != seq:
            problems.append(f"sequence {row['case_seq']} where {seq} was expected")
        if row["prev_hash"] != prev:
            problems.append("prev_hash does not match the previous row")
        if row["content_hash"] != content_hash(bytes(row["value"])):
            problems.append("stored bytes do not match their content hash")
        if row["chain_hash"] != expected:
            problems.append("chain_hash does not cover this row")
        if problems:
            found.append(
                Violation(
                    kind=BROKEN_HASH_CHAIN,
                    case_id=row["case_id"],
                    event_id=row["event_id"],
                    topic=row["topic"],
                    partition=row["kafka_partition"],
                    offset=row["kafka_offset"],
                    detail="; ".join(problems),
                )
            )
        prev = row["chain_hash"]
    return found
