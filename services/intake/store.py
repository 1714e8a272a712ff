"""Intake's SQL (schema ``intake``)."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from shared.db import Connection
from shared.events import (
    CaseAdvanced,
    CaseClosed,
    CaseRejected,
    CaseReviewFlagged,
    CaseRouted,
    Event,
)


async def get_case(conn: Connection, case_id: UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)
    return None if row is None else dict(row)


async def apply_routing(conn: Connection, event: Event) -> None:
    """Keep the status view current from one cases.routing event."""
    at = event.occurred_at
    if isinstance(event, CaseRouted):
        await conn.execute(
            "UPDATE cases SET routed_at = $2, updated_at = now(),"
            " status = CASE WHEN status = 'accepted' THEN 'routed' ELSE status END"
            " WHERE case_id = $1",
            event.case_id,
            at,
        )
    elif isinstance(event, CaseAdvanced):
        await conn.execute(
            "UPDATE cases SET current_step = $2, department = $3, updated_at = now(),"
            " status = CASE WHEN status = 'closed' THEN status ELSE 'in_progress' END"
            " WHERE case_id = $1",
            event.case_id,
            event.step_index,
            event.department,
        )
    elif isinstance(event, CaseRejected):
        await conn.execute(
            "UPDATE cases SET reason_code = $2, message = $3, updated_at = now()"
            " WHERE case_id = $1",
            event.case_id,
            event.reason_code,
            event.message,
        )
    elif isinstance(event, CaseClosed):
        await conn.execute(
            """UPDATE cases SET status = 'closed', outcome = $2, on_spot = $3,
                   reason_code = COALESCE($4, reason_code), message = COALESCE($5, message),
                   department = COALESCE($6, department), closed_at = $7, updated_at = now()
               WHERE case_id = $1""",
            event.case_id,
            event.outcome,
            event.on_spot,
            event.reason_code,
            event.message,
            event.department,
            at,
        )
    elif isinstance(event, CaseReviewFlagged):
        await conn.execute(
            "UPDATE cases SET review_flag = $2, updated_at = now() WHERE case_id = $1",
            event.case_id,
            f"{event.department}: {event.reason_code}: {event.message}",
        )


async def take_receipts(conn: Connection, centre_id: str, day: date, count: int) -> int:
    """Reserve ``count`` consecutive receipt numbers; return the last one."""
    value = await conn.fetchval(
        """INSERT INTO receipt_counters (centre_id, day, last) VALUES ($1, $2, $3)
           ON CONFLICT (centre_id, day) DO UPDATE SET last = receipt_counters.last + $3
           RETURNING last""",
        centre_id,
        day,
        count,
    )
    return int(value)


async def find_keys(conn: Connection, keys: list[str]) -> dict[str, tuple[str, UUID]]:
    rows = await conn.fetch(
        "SELECT key, request_hash, case_id FROM idempotency_keys WHERE key = ANY($1::text[])",
        keys,
    )
    return {r["key"]: (r["request_hash"], r["case_id"]) for r in rows}


async def get_cases(conn: Connection, case_ids: list[UUID]) -> dict[UUID, dict[str, Any]]:
    rows = await conn.fetch("SELECT * FROM cases WHERE case_id = ANY($1::uuid[])", case_ids)
    return {r["case_id"]: dict(r) for r in rows}


async def insert_cases(conn: Connection, rows: list[tuple[Any, ...]]) -> None:
    """(case_id, receipt_no, item_code, applicant_kind, centre_id, window_id, channel,
    accepted_at) per case, in one round trip."""
    await conn.executemany(
        """INSERT INTO cases (case_id, receipt_no, item_code, applicant_kind, centre_id,
                              window_id, channel, accepted_at)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
        rows,
    )


async def claim_keys(conn: Connection, claims: list[tuple[str, str, UUID]]) -> None:
    await conn.executemany(
        "INSERT INTO idempotency_keys (key, request_hash, case_id) VALUES ($1, $2, $3)", claims
    )
