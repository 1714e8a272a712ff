"""The audit drill's store faults (issue 19, class 3): what a PostgreSQL superuser could
do to the audit store, and what verify finds.

The drill runs the real audit service in this process over its log until the service
has stored every record, committed its offsets and signed a checkpoint on the log; then,
as the database's superuser (triggers off: ``session_replication_role = replica``), it
rewrites rows, recomputing the plain SHA-256 chains after them as a careful forger
would. The same helpers drive tests/integration/test_audit_store_proof.py.
"""

from __future__ import annotations

import asyncio
import json
import time
from typing import Any
from uuid import UUID, uuid4

import asyncpg

from services.audit import store
from services.audit.chains import GENESIS, chain_hash, content_hash
from services.audit.main import build as build_audit
from services.audit.verifier.log import log_partitions
from services.audit.verifier.storecheck import committed_offsets, end_offsets
from shared.contracts.topology import AUDIT_CHECKPOINTS
from shared.platform.db import connect
from shared.platform.runtime import running
from shared.platform.settings import Settings


async def caught_up(settings: Settings) -> bool:
    """Whether the audit's consumer group has committed every record of the log, a
    signed checkpoint included."""
    places = [
        (tp.topic.removeprefix(settings.topic_prefix), tp.partition)
        for tp in await log_partitions(settings)
    ]
    ends = await end_offsets(settings, places)
    committed = await committed_offsets(settings) or {}
    checkpoints = sum(n for (topic, _), n in ends.items() if topic == AUDIT_CHECKPOINTS)
    return checkpoints > 0 and all(committed.get(p, 0) >= n for p, n in ends.items())


async def audit_stores_the_log(settings: Settings, seconds: float = 90) -> None:
    """Run the audit service until it has stored the whole log and signed a checkpoint
    of it (one after every batch here), then stop it cleanly."""
    quiet = {"audit_nice": 0, "audit_checkpoint_every_s": 0.0, "log_level": "WARNING"}
    service = await build_audit(settings.model_copy(update=quiet))
    deadline = time.monotonic() + seconds
    async with running(service):
        while not await caught_up(settings):
            if time.monotonic() > deadline:
                raise TimeoutError(f"the audit did not store the whole log in {seconds:g} s")
            await asyncio.sleep(0.2)


async def superuser(settings: Settings) -> asyncpg.Connection:
    """A connection to the audit schema as the database's superuser."""
    return await connect(settings.dsn(), store.SCHEMA, name="audit-drill")


async def _rows(conn: asyncpg.Connection, case_id: UUID) -> list[asyncpg.Record]:
    return list(
        await conn.fetch("SELECT * FROM events WHERE case_id = $1 ORDER BY case_seq", case_id)
    )


async def rechain(conn: asyncpg.Connection, case_id: UUID) -> None:
    """Recompute the case's plain chain (sequence, content hash, links, head) as it is
    now, as someone without the audit's key would (inside a tampering transaction)."""
    prev, seq = GENESIS, 0
    for row in await _rows(conn, case_id):
        seq += 1
        digest = content_hash(bytes(row["value"]))
        link = chain_hash(prev, digest, row["event_id"])
        await conn.execute(
            "UPDATE events SET case_seq = $2, content_hash = $3, prev_hash = $4,"
            " chain_hash = $5 WHERE position = $1",
            row["position"],
            -seq,  # negative first: (case_id, case_seq) is unique
            digest,
            prev,
            link,
        )
        prev = link
    await conn.execute(
        "UPDATE events SET case_seq = -case_seq WHERE case_id = $1 AND case_seq < 0", case_id
    )
    await conn.execute(
        "UPDATE case_heads SET seq = $2, chain_hash = $3 WHERE case_id = $1", case_id, seq, prev
    )


class Tampering:
    """One superuser's session on the audit store, triggers off."""

    def __init__(self, conn: asyncpg.Connection) -> None:
        self.conn = conn
        self._tx = conn.transaction()

    async def __aenter__(self) -> Tampering:
        await self._tx.start()
        await self.conn.execute("SET LOCAL session_replication_role = replica")
        return self

    async def __aexit__(self, *exc: object) -> None:
        await (self._tx.rollback() if exc[0] else self._tx.commit())

    async def rewrite(self, case_id: UUID, event_type: str, change: dict[str, Any]) -> UUID:
        """Rewrite the case's stored event of this type and recompute the plain chain;
        the rewritten event's id."""
        row = next(r for r in await _rows(self.conn, case_id) if r["event_type"] == event_type)
        body = json.loads(bytes(row["value"])) | change
        await self.conn.execute(
            "UPDATE events SET value = $2 WHERE position = $1",
            row["position"],
            json.dumps(body, separators=(",", ":")).encode(),
        )
        await rechain(self.conn, case_id)
        return UUID(str(row["event_id"]))

    async def delete_last(self, case_id: UUID, n: int) -> list[UUID]:
        """Delete the case's last ``n`` rows (the chain still links); their event ids."""
        gone = (await _rows(self.conn, case_id))[-n:]
        await self.conn.execute(
            "DELETE FROM events WHERE position = ANY($1::bigint[])", [r["position"] for r in gone]
        )
        await rechain(self.conn, case_id)
        return [r["event_id"] for r in gone]

    async def delete(self, case_id: UUID, event_type: str) -> UUID:
        """Delete the case's stored event of this type and recompute the plain chain."""
        row = next(r for r in await _rows(self.conn, case_id) if r["event_type"] == event_type)
        await self.conn.execute("DELETE FROM events WHERE position = $1", row["position"])
        await rechain(self.conn, case_id)
        return UUID(str(row["event_id"]))

    async def insert_copy(self, case_id: UUID, event_type: str, *, beyond: int) -> UUID:
        """Append to the case's chain a copy of its event of this type under a new event
        id, at an offset ``beyond`` the log's end of that partition; its event id."""
        rows = await _rows(self.conn, case_id)
        row = next(r for r in rows if r["event_type"] == event_type)
        event_id = uuid4()
        body = json.loads(bytes(row["value"])) | {"event_id": str(event_id)}
        value = json.dumps(body, separators=(",", ":")).encode()
        digest = content_hash(value)
        prev = rows[-1]["chain_hash"]
        await self.conn.execute(
            "INSERT INTO events (event_id, case_id, case_seq, event_type, producer, occurred_at,"
            " topic, kafka_partition, kafka_offset, signer, signature, value, content_hash,"
            " prev_hash, chain_hash, topic_prefix)"
            " VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16)",
            event_id,
            case_id,
            len(rows) + 1,
            row["event_type"],
            row["producer"],
            row["occurred_at"],
            row["topic"],
            row["kafka_partition"],
            beyond,
            row["signer"],
            row["signature"],
            value,
            digest,
            prev,
            chain_hash(prev, digest, event_id),
            row["topic_prefix"],
        )
        await rechain(self.conn, case_id)
        return event_id


async def first_place(conn: asyncpg.Connection, case_id: UUID, event_type: str) -> tuple[str, int]:
    """Where the case's first stored event of this type was read from."""
    row = await conn.fetchrow(
        "SELECT topic, kafka_partition FROM events WHERE case_id = $1 AND event_type = $2"
        " ORDER BY case_seq LIMIT 1",
        case_id,
        event_type,
    )
    assert row is not None, f"no {event_type} stored for case {case_id}"
    return row["topic"], row["kafka_partition"]


async def log_end(settings: Settings, topic: str, partition: int) -> int:
    return (await end_offsets(settings, [(topic, partition)]))[(topic, partition)]


# What the drill expects of each store fault: kind, case, event, and the other kinds the
# same tampering is also reported as (for the same case).
StoreExpected = tuple[str, UUID | None, UUID | None, tuple[str, ...]]


async def store_faults(settings: Settings, cases: list[UUID]) -> list[StoreExpected]:
    """As the superuser, on four stored cases (closed, on the log, stored and counted by
    a checkpoint): rewrite one's close and recompute its chain; delete another's last
    two rows; add to a third a row the log lacks; delete a fourth's first task and
    recompute its chain. What verify must find."""
    rewritten, cut, padded, holed = cases
    conn = await superuser(settings)
    try:
        topic, partition = await first_place(conn, padded, "StepApproved")
        beyond = await log_end(settings, topic, partition) + 5
        async with Tampering(conn) as t:
            forged = await t.rewrite(
                rewritten, "CaseClosed", {"outcome": "rejected", "reason_code": "forged"}
            )
            gone = await t.delete_last(cut, 2)
            added = await t.insert_copy(padded, "StepApproved", beyond=beyond)
            deleted = await t.delete(holed, "StepAssigned")
    finally:
        await conn.close()
    return [
        ("store_tampered", rewritten, forged, ("store_differs_from_log",)),
        ("store_differs_from_log", rewritten, forged, ("store_tampered",)),
        ("missing_from_store", cut, gone[-1], ()),
        ("not_in_log", padded, added, ("store_tampered",)),
        ("missing_from_store", holed, deleted, ("store_tampered",)),
        ("checkpoint_mismatch", None, None, ()),
    ]
