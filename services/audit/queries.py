"""Read-only questions auditors ask, answered from the store (shared by CLI and HTTP)."""

from __future__ import annotations

from typing import Any
from uuid import UUID

from services.audit import store
from services.audit.domain import CaseView, project, stats
from shared.contracts.events import parse_event, utcnow
from shared.platform.db import Connection


async def case_view(conn: Connection, case_id: UUID) -> CaseView | None:
    return project(await store.case_events(conn, [case_id])).get(case_id)


async def history(conn: Connection, case_id: UUID) -> dict[str, Any] | None:
    view = await case_view(conn, case_id)
    return None if view is None else view.to_json()


async def all_views(conn: Connection) -> dict[UUID, CaseView]:
    async with conn.transaction():
        events = [parse_event(row["value"]) async for row in store.stream_events(conn)]
    return project(events)


async def statistics(conn: Connection) -> dict[str, Any]:
    return stats(await all_views(conn), now=utcnow()).to_json()
