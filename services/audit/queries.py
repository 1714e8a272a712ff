"""The questions auditors ask, answered from the store (shared by CLI and HTTP).

Every query but ``rebuild_projection`` only reads: the CLI runs them as a role that may
only read the audit schema.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import datetime
from typing import Any
from uuid import UUID

from services.audit import access, store
from services.audit.projection import CaseView, project
from services.audit.statistics import COUNTED, tally
from shared.contracts.events import utcnow
from shared.platform.db import Connection, connect
from shared.platform.settings import Settings


async def case_view(conn: Connection, case_id: UUID) -> CaseView | None:
    return project(await store.case_events(conn, [case_id])).get(case_id)


async def history(conn: Connection, case_id: UUID) -> dict[str, Any] | None:
    view = await case_view(conn, case_id)
    return None if view is None else view.to_json()


@dataclass(frozen=True)
class Rebuilt:
    """The projection's digests before and after ``rebuild_projection``, and every case
    whose live view differed from its stored events."""

    live: str
    rebuilt: str
    differences: list[store.ViewDifference]
    replaced: bool  # the live projection was rewritten

    @property
    def identical(self) -> bool:
        return self.live == self.rebuilt and not self.differences


async def rebuild_projection(conn: Connection, *, replace: bool = False) -> Rebuilt:
    """Rebuild the projection (``case_views``) from every stored event, in one
    transaction, and compare it case by case with the live one. It is rewritten when
    they match, or with ``replace`` (each replaced view kept in ``replaced_views``);
    never the evidence tables. The one query here that writes."""
    async with conn.transaction():
        live = store.views_digest(await store.live_views(conn))
        rebuilt, differences = await store.rebuild(conn, replace=replace)
    return Rebuilt(live, rebuilt, differences, replaced=replace or not differences)


async def statistics(conn: Connection, *, now: datetime | None = None) -> dict[str, Any]:
    """The statistics of the live projection (``case_views``, refreshed with every
    ingested batch): one narrow row per case, never a replay of the stored events; and
    the reads of personal data by role (``accesses_by_role``, from the stored
    PersonalDataAccessed events)."""
    figures, outcomes = await store.view_figures(conn, list(COUNTED))
    body = tally(figures, outcomes, now=utcnow() if now is None else now).to_json()
    body["accesses_by_role"] = await access.counts_by_role(conn)
    return body


@asynccontextmanager
async def read_only(conn: Connection, role: str | None) -> AsyncIterator[Connection]:
    """``conn`` in a read-only transaction, as database role ``role`` when given (the
    auditor's: the audit's own role may write its store, its readers may not)."""
    async with conn.transaction(readonly=True):
        if role is not None:
            await conn.execute(f'SET LOCAL ROLE "{role}"')
        yield conn


@asynccontextmanager
async def migrated_store(settings: Settings) -> AsyncIterator[Connection]:
    """A connection to the audit store, once the store is known to be migrated
    (:class:`store.StoreNotReadyError` otherwise). Nothing is created or migrated here:
    that is the audit service's business, so a role that may only read the schema can
    ask every read-only question through it."""
    conn = await connect(settings.dsn(), store.SCHEMA, name="onedoor-audit")
    try:
        await store.check_migrated(conn)
        yield conn
    finally:
        await conn.close()
