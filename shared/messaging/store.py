"""The consumer engine's seam to its database: a transaction that claims event ids in
the inbox, marks dead letters, writes outbox rows and opens savepoints, plus the
connection handed to handlers.

:class:`PgStore` is the PostgreSQL one every service runs (the inbox and outbox tables of
``shared/messaging/migrations``); ``shared.messaging.testing.MemoryStore`` keeps the same
things in memory for unit tests of handlers and of the engine's careful mode.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from contextlib import AbstractAsyncContextManager
from typing import TYPE_CHECKING, Protocol
from uuid import UUID

import asyncpg

from shared.messaging.outbox import OutboxRow, insert_rows
from shared.platform.db import Connection

if TYPE_CHECKING:
    from shared.messaging.consumer import Record


class UnitOfWork(Protocol):
    """One open transaction of the engine's store: the inbox, the outbox and savepoints.

    Everything written through it, and through ``conn`` by the handlers, commits or rolls
    back together; a savepoint rolls back alone.
    """

    @property
    def conn(self) -> Connection:
        """The transaction's connection, handed to handlers (``Tx.conn``, ``load``, ``save``)."""
        ...

    async def reclaim(self, event_ids: Sequence[UUID]) -> set[UUID]:
        """Clear the dead-letter mark of these inbox ids; return the ids that carried it."""
        ...

    async def claim(self, entries: Sequence[tuple[UUID, Record]]) -> set[UUID]:
        """Record each (event id, record it came in) in the inbox; return the ids that
        were not there before (one id given twice is claimed once)."""
        ...

    async def mark_dead(self, event_id: UUID, record: Record) -> None:
        """Record ``event_id`` in the inbox as dead-lettered (claimed or not)."""
        ...

    async def write_outbox(self, rows: Sequence[OutboxRow]) -> None:
        """Append rows (already signed) to the outbox, in this order."""
        ...

    def savepoint(self) -> AbstractAsyncContextManager[object]:
        """A nested transaction: an exception leaving it rolls back what it wrote."""
        ...


class Store(Protocol):
    """Where a consumer keeps its inbox, its outbox and its handlers' state."""

    def transaction(self) -> AbstractAsyncContextManager[UnitOfWork]:
        """A transaction that commits when the block ends, rolls back when it raises."""
        ...


class PgUnitOfWork:
    """A :class:`UnitOfWork` on one PostgreSQL connection inside its transaction."""

    __slots__ = ("conn",)

    def __init__(self, conn: Connection) -> None:
        self.conn = conn

    async def reclaim(self, event_ids: Sequence[UUID]) -> set[UUID]:
        rows = await self.conn.fetch(
            "UPDATE inbox SET dead_letter = false WHERE event_id = ANY($1::uuid[]) "
            "AND dead_letter RETURNING event_id",
            event_ids,
        )
        return {r["event_id"] for r in rows}

    async def claim(self, entries: Sequence[tuple[UUID, Record]]) -> set[UUID]:
        # One statement for the whole batch (executemany runs one per row on the server).
        rows = await self.conn.fetch(
            "INSERT INTO inbox (event_id, topic, kafka_partition, kafka_offset) "
            "SELECT * FROM unnest($1::uuid[], $2::text[], $3::int[], $4::bigint[]) "
            "ON CONFLICT DO NOTHING RETURNING event_id",
            [event_id for event_id, _ in entries],
            [record.topic for _, record in entries],
            [record.partition for _, record in entries],
            [record.offset for _, record in entries],
        )
        return {r["event_id"] for r in rows}

    async def mark_dead(self, event_id: UUID, record: Record) -> None:
        await self.conn.execute(
            "INSERT INTO inbox (event_id, topic, kafka_partition, kafka_offset, dead_letter) "
            "VALUES ($1, $2, $3, $4, true) "
            "ON CONFLICT (event_id) DO UPDATE SET dead_letter = true",
            event_id,
            record.topic,
            record.partition,
            record.offset,
        )

    async def write_outbox(self, rows: Sequence[OutboxRow]) -> None:
        await insert_rows(self.conn, rows)

    def savepoint(self) -> AbstractAsyncContextManager[object]:
        return self.conn.transaction()


class PgStore:
    """The production :class:`Store`: a connection from the service's pool per batch."""

    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @contextlib.asynccontextmanager
    async def transaction(self) -> AsyncIterator[UnitOfWork]:
        async with self._pool.acquire() as conn, conn.transaction():
            yield PgUnitOfWork(conn)
