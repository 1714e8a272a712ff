"""The audit store's per-case hash chains: how a row links to the previous row of its
case, and the walk that finds every row that does not (``broken_hash_chain``), in
PostgreSQL (what a replay runs) or in Python (the reference the tests hold it to)."""

from __future__ import annotations

import asyncio
import hashlib
import re
from typing import Any
from uuid import UUID

from services.audit.verifier.report import BROKEN_HASH_CHAIN, Violation
from shared.platform.db import Connection

GENESIS = "0" * 64


def content_hash(value: bytes) -> str:
    return hashlib.sha256(value).hexdigest()


def chain_hash(prev_hash: str, content: str, event_id: UUID) -> str:
    """A row's link: covers the previous row of the case, this row's bytes and its id."""
    return hashlib.sha256(f"{prev_hash}:{content}:{event_id}".encode()).hexdigest()


# The walk of check_chains, in the database: same order (case, sequence), same hashes
# (content_hash is sha256 hex of the stored bytes; chain_hash is sha256 hex of
# "prev:content:event_id" with the canonical lowercase UUID text), each problem a flag.
# $2: the cases to walk (NULL: every case).
_CHAIN_WALK = """
WITH walk AS (
    SELECT case_id, event_id, case_seq, topic, kafka_partition, kafka_offset,
           prev_hash, content_hash, chain_hash,
           encode(sha256(value), 'hex') AS actual_content,
           row_number() OVER w AS expected_seq,
           coalesce(lag(chain_hash) OVER w, $1::text) AS expected_prev
    FROM events
    WHERE $2::uuid[] IS NULL OR case_id = ANY($2::uuid[])
    WINDOW w AS (PARTITION BY case_id ORDER BY case_seq)
), judged AS (
    SELECT *,
           case_seq <> expected_seq AS bad_seq,
           prev_hash <> expected_prev AS bad_prev,
           content_hash <> actual_content AS bad_content,
           chain_hash <> encode(sha256(convert_to(
               expected_prev || ':' || actual_content || ':' || event_id::text, 'UTF8')), 'hex')
               AS bad_link
    FROM walk
)
SELECT * FROM judged WHERE bad_seq OR bad_prev OR bad_content OR bad_link
ORDER BY case_id, case_seq
"""

# The walk in two halves that two backends run side by side. Where a row's stored bytes
# match its content_hash, "prev:content_hash:event_id" is exactly what the walk hashes;
# so the walk's findings are the links half's for every case the content half clears,
# and _CHAIN_WALK's own for the (rare) cases it does not.
_ALTERED_CASES = """
SELECT DISTINCT case_id FROM events WHERE content_hash <> encode(sha256(value), 'hex')
"""
_LINKS = """
WITH walk AS (
    SELECT case_id, event_id, case_seq, topic, kafka_partition, kafka_offset,
           prev_hash, content_hash, chain_hash,
           row_number() OVER w AS expected_seq,
           coalesce(lag(chain_hash) OVER w, $1::text) AS expected_prev
    FROM events
    WINDOW w AS (PARTITION BY case_id ORDER BY case_seq)
), judged AS (
    SELECT *,
           case_seq <> expected_seq AS bad_seq,
           prev_hash <> expected_prev AS bad_prev,
           false AS bad_content,
           chain_hash <> encode(sha256(convert_to(
               expected_prev || ':' || content_hash || ':' || event_id::text, 'UTF8')), 'hex')
               AS bad_link
    FROM walk
)
SELECT * FROM judged WHERE bad_seq OR bad_prev OR bad_link
"""
_SNAPSHOT_ID = re.compile(r"^[0-9A-Fa-f-]+$")


async def check_chains_in_database(
    conn: Connection, other: Connection | None = None
) -> list[Violation]:
    """:func:`check_chains`, computed by PostgreSQL: only the rows that do not link travel.

    The same walk, hashes and findings (tests compare the two). Given a second
    connection, its two halves run on two backends at once, in one snapshot; a replay
    runs this while it reads Kafka itself.
    """
    async with conn.transaction(isolation="repeatable_read", readonly=True):
        if other is None:
            altered = await conn.fetch(_ALTERED_CASES)
            links = await conn.fetch(_LINKS, GENESIS)
        else:
            snapshot = str(await conn.fetchval("SELECT pg_export_snapshot()"))
            if not _SNAPSHOT_ID.match(snapshot):
                raise ValueError(f"unexpected snapshot id {snapshot!r}")
            async with other.transaction(isolation="repeatable_read", readonly=True):
                await other.execute(f"SET TRANSACTION SNAPSHOT '{snapshot}'")
                altered, links = await asyncio.gather(
                    conn.fetch(_ALTERED_CASES), other.fetch(_LINKS, GENESIS)
                )
        cases = [r["case_id"] for r in altered]
        rows = [r for r in links if r["case_id"] not in set(cases)]
        if cases:
            rows.extend(await conn.fetch(_CHAIN_WALK, GENESIS, cases))
    rows.sort(key=lambda r: (r["case_id"], r["case_seq"]))
    found: list[Violation] = []
    for row in rows:
        problems = []
        if row["bad_seq"]:
            problems.append(f"sequence {row['case_seq']} where {row['expected_seq']} was expected")
        if row["bad_prev"]:
            problems.append("prev_hash does not match the previous row")
        if row["bad_content"]:
            problems.append("stored bytes do not match their content hash")
        if row["bad_link"]:
            problems.append("chain_hash does not cover this row")
        found.append(_chain_break(row, problems))
    return found


async def check_chains(conn: Connection) -> list[Violation]:
    """Walk every case's hash chain in the store; report each row that does not link."""
    found: list[Violation] = []
    current: UUID | None = None
    prev = GENESIS
    seq = 0
    # Every stored row in case chain order (call inside a transaction).
    rows = conn.cursor("SELECT * FROM events ORDER BY case_id, case_seq", prefetch=5000)
    async for row in rows:
        if row["case_id"] != current:
            current, prev, seq = row["case_id"], GENESIS, 0
        seq += 1
        digest = content_hash(bytes(row["value"]))
        problems = []
        if row["case_seq"] != seq:
            problems.append(f"sequence {row['case_seq']} where {seq} was expected")
        if row["prev_hash"] != prev:
            problems.append("prev_hash does not match the previous row")
        if row["content_hash"] != digest:
            problems.append("stored bytes do not match their content hash")
        if row["chain_hash"] != chain_hash(prev, digest, row["event_id"]):
            problems.append("chain_hash does not cover this row")
        if problems:
            found.append(_chain_break(row, problems))
        prev = row["chain_hash"]
    return found


def _chain_break(row: Any, problems: list[str]) -> Violation:
    """A broken_hash_chain violation at a stored row (the database's walk or Python's)."""
    return Violation(
        kind=BROKEN_HASH_CHAIN,
        case_id=row["case_id"],
        event_id=row["event_id"],
        topic=row["topic"],
        partition=row["kafka_partition"],
        offset=row["kafka_offset"],
        detail="; ".join(problems),
    )
