"""Recording a person's read of personal data before it is shown (issue 16, item 6).

A service that shows a case's personal data records a signed ``PersonalDataAccessed``
on its own access topic (``access.<service>``, see the topology) through its outbox, in
a transaction that commits before the answer goes out: no record, no data (the caller
answers 503). The relay publishes it like any other event; the audit stores it and
``onedoor-audit access`` answers "who read this case" and "what did this account read".

    recorder = AccessRecorder(pool, writer, service="intake", committed=relay.wake)
    await recorder.record(Accessor(claims.sub, claims.role, claims.centre), case_id,
                          fields=("status", ...), reason=None, channel="http",
                          resource="GET /cases/{case_id}")
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable
from typing import Literal
from uuid import UUID

import asyncpg

from shared.contracts.access import Accessor
from shared.contracts.events import PersonalDataAccessed
from shared.contracts.topology import access_topic
from shared.messaging.outbox import OutboxWriter
from shared.platform.db import DB_AWAY, Connection

# What keeps a read from being recorded: the database away, or refusing the row.
NOT_RECORDED: tuple[type[Exception], ...] = (*DB_AWAY, asyncpg.PostgresError)


class AccessNotRecordedError(RuntimeError):
    """The read could not be recorded: show nothing (HTTP 503, the CLI exits non-zero)."""


def access_event(
    service: str,
    who: Accessor,
    case_id: UUID,
    *,
    fields: Iterable[str],
    reason: str | None,
    channel: Literal["http", "cli"],
    resource: str,
    request_id: str | None = None,
) -> PersonalDataAccessed:
    """The event that records ``who`` reading ``fields`` of a case through ``service``."""
    return PersonalDataAccessed(
        case_id=case_id,
        correlation_id=case_id,
        producer=service,
        accessor=who.name,
        role=who.role,
        accessor_centre=who.centre,
        fields=tuple(fields),
        reason=(reason or "").strip() or None,
        channel=channel,
        resource=resource,
        request_id=request_id or uuid.uuid4().hex,
    )


class AccessRecorder:
    """Records reads on ``service``'s access topic through its outbox."""

    def __init__(
        self,
        pool: asyncpg.Pool,
        writer: OutboxWriter,
        *,
        service: str,
        committed: Callable[[], None] = lambda: None,
    ) -> None:
        """``committed``: called after each committed record (the relay's ``wake``)."""
        self._pool = pool
        self._writer = writer
        self.service = service
        self.topic = access_topic(service)
        self._committed = committed

    async def write(self, conn: Connection, event: PersonalDataAccessed) -> None:
        """Add the record inside the caller's transaction (which must commit before the
        data is shown; then call the relay's wake)."""
        await self._writer.add(conn, self.topic, event)

    async def record(
        self,
        who: Accessor,
        case_id: UUID,
        *,
        fields: Iterable[str],
        reason: str | None,
        channel: Literal["http", "cli"] = "http",
        resource: str,
        request_id: str | None = None,
    ) -> PersonalDataAccessed:
        """Record the read in a transaction of its own and return the event once it is
        committed; :class:`AccessNotRecordedError` when the database would not take it."""
        event = access_event(
            self.service,
            who,
            case_id,
            fields=fields,
            reason=reason,
            channel=channel,
            resource=resource,
            request_id=request_id,
        )
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                await self.write(conn, event)
        except NOT_RECORDED as exc:
            raise AccessNotRecordedError(
                f"the read could not be recorded ({type(exc).__name__})"
            ) from exc
        self._committed()
        return event
