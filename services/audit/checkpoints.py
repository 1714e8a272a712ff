"""The audit's checkpoints: now and then the audit service signs, on the log itself
(``audit.checkpoints``), what its store holds of each log partition it ingests: the
offset reached, the rows below it and their rolling digest (``services.audit.keyed.fold``
over each row's offset and content hash, in offset order). Kafka and the store then vouch
for each other: ``onedoor-audit verify`` holds the store to every signed checkpoint
(``checkpoint_mismatch``), so deleting or rewriting rows a checkpoint covered shows, even
when the plain chains were recomputed.

A checkpoint is written through the audit's outbox (signed by the relay with the audit's
key, like its access records) at the first batch after ``ONEDOOR_AUDIT_CHECKPOINT_EVERY_S``
seconds or ``ONEDOOR_AUDIT_CHECKPOINT_EVERY_ROWS`` records since the previous one, and at
a clean shutdown. It names only the partitions whose rows changed since the previous
checkpoint of this replica, never the checkpoints' own topic.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable, Sequence
from uuid import UUID

import asyncpg
import structlog

from services.audit.keyed import DIGEST_START, fold
from services.audit.verifier.log import LogRecord
from shared.contracts.audit_events import AuditCheckpoint, StorePartition
from shared.contracts.topology import AUDIT, AUDIT_CHECKPOINTS
from shared.messaging.outbox import OutboxWriter
from shared.platform.db import DB_AWAY, Connection
from shared.platform.settings import Settings

NO_CASE = UUID(int=0)  # a checkpoint belongs to no case

log = structlog.get_logger("audit.checkpoints")
# What only delays a checkpoint: the database away, or refusing the statement.
_DELAYED: tuple[type[Exception], ...] = (*DB_AWAY, asyncpg.PostgresError)

# Every store row of some partitions of one deployment from an offset on, with the
# digest that the rolling digest folds (an event's content hash; the SHA-256 of the
# bytes of a conflict or a malformed record). $1 prefix; $2, $3, $4: topics,
# partitions and the offsets to start from, side by side.
STORE_ROWS_FROM = """
SELECT p.topic, p.part AS kafka_partition, r.kafka_offset, r.digest
FROM unnest($2::text[], $3::int[], $4::bigint[]) AS p(topic, part, reached)
CROSS JOIN LATERAL (
    SELECT e.kafka_offset, decode(e.content_hash, 'hex') AS digest FROM events e
    WHERE e.topic = p.topic AND e.kafka_partition = p.part AND e.kafka_offset >= p.reached
      AND e.topic_prefix = $1
    UNION ALL
    SELECT c.kafka_offset, sha256(c.value) FROM conflicts c
    WHERE c.topic = p.topic AND c.kafka_partition = p.part AND c.kafka_offset >= p.reached
      AND c.topic_prefix = $1
    UNION ALL
    SELECT m.kafka_offset, sha256(m.value) FROM malformed m
    WHERE m.topic = p.topic AND m.kafka_partition = p.part AND m.kafka_offset >= p.reached
      AND m.topic_prefix = $1
) AS r
ORDER BY 1, 2, 3, 4
"""

Place = tuple[str, int]  # (logical topic, partition)


class Tally:
    """A partition's rows so far: the offset after the last, how many, their digest."""

    __slots__ = ("digest", "reached", "rows")

    def __init__(self, reached: int = 0, rows: int = 0, digest: bytes = DIGEST_START) -> None:
        self.reached, self.rows, self.digest = reached, rows, digest

    def add(self, offset: int, content: bytes) -> None:
        self.digest = fold(self.digest, offset, content)
        self.rows += 1
        self.reached = offset + 1

    def mark(self, place: Place) -> StorePartition:
        return StorePartition(
            topic=place[0],
            partition=place[1],
            reached=self.reached,
            rows=self.rows,
            digest=self.digest.hex(),
        )


async def tally_from(
    conn: Connection, prefix: str, start: dict[Place, Tally]
) -> dict[Place, Tally]:
    """``start`` (the partitions to count and what is counted of them) carried on over
    the rows stored since; a new dict, ``start`` is left as it was."""
    places = sorted(start)
    rows = await conn.fetch(
        STORE_ROWS_FROM,
        prefix,
        [p[0] for p in places],
        [p[1] for p in places],
        [start[p].reached for p in places],
    )
    out = {p: Tally(t.reached, t.rows, t.digest) for p, t in start.items()}
    for row in rows:
        out[(row["topic"], row["kafka_partition"])].add(row["kafka_offset"], bytes(row["digest"]))
    return out


class CheckpointWriter:
    """Writes the audit's checkpoints (see the module's text)."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        writer: OutboxWriter,
        committed: Callable[[], None] = lambda: None,
    ) -> None:
        self._prefix = settings.topic_prefix
        self._every_s = settings.audit_checkpoint_every_s
        self._every_rows = settings.audit_checkpoint_every_rows
        self._pool = pool
        self._writer = writer
        self._committed = committed
        self._tallies: dict[Place, Tally] = {}
        self._pending = 0  # records ingested since the last checkpoint
        self._last = time.monotonic()
        self._lock = asyncio.Lock()
        self.written = 0

    def ingested(self, records: Iterable[LogRecord]) -> None:
        """A batch of these records was committed to the store. The checkpoints' own
        topic is left out (its rows are compared with the log like every other row): a
        checkpoint read back must not call for the next one."""
        for record in records:
            if record.topic == AUDIT_CHECKPOINTS:
                continue
            self._pending += 1
            self._tallies.setdefault((record.topic, record.partition), Tally())

    def due(self) -> bool:
        return self._pending > 0 and (
            self._pending >= self._every_rows or time.monotonic() - self._last >= self._every_s
        )

    async def after_batch(self) -> None:
        """Write a checkpoint when one is due; a database away only delays it."""
        if self.due():
            await self._write_logged("checkpoint not written, retried after the next batch")

    async def close(self) -> None:
        """At a clean shutdown: a last checkpoint when anything was ingested since."""
        if self._pending:
            await self._write_logged("no checkpoint at shutdown")

    async def _write_logged(self, failure: str) -> None:
        try:
            await self.write()
        except _DELAYED as exc:
            log.warning(failure, error=str(exc))

    async def write(self) -> AuditCheckpoint | None:
        """Count what the store holds now and write the checkpoint to the outbox (in one
        snapshot); None when no partition's rows changed."""
        async with self._lock:
            pending = self._pending
            async with (
                self._pool.acquire() as conn,
                conn.transaction(isolation="repeatable_read"),
            ):
                now = await tally_from(conn, self._prefix, self._tallies)
                changed = sorted(p for p, t in now.items() if t.rows != self._tallies[p].rows)
                event = None
                if changed:
                    event = checkpoint_event([(p, now[p]) for p in changed])
                    await self._writer.add(conn, AUDIT_CHECKPOINTS, event)
            self._tallies = now
            self._pending -= pending
            self._last = time.monotonic()
        if event is not None:
            self.written += 1
            self._committed()
        return event


def checkpoint_event(tallies: Sequence[tuple[Place, Tally]]) -> AuditCheckpoint:
    """The checkpoint of these partitions' tallies."""
    return AuditCheckpoint(
        case_id=NO_CASE,
        correlation_id=NO_CASE,
        producer=AUDIT,
        partitions=tuple(t.mark(p) for p, t in tallies),
        rows=sum(t.rows for _, t in tallies),
    )
