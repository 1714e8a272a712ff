"""The router's SQL: load and save one case's routing state (schema ``router``)."""

from __future__ import annotations

from typing import cast
from uuid import UUID

from services.router.domain import CaseState
from shared.db import Connection
from shared.events import CaseAccepted, RoutedStep, parse_event


async def exists(conn: Connection, case_id: UUID) -> bool:
    found = await conn.fetchval(
        "SELECT EXISTS (SELECT 1 FROM cases WHERE case_id = $1) "
        "OR EXISTS (SELECT 1 FROM rejected_cases WHERE case_id = $1)",
        case_id,
    )
    return bool(found)


async def load_for_update(conn: Connection, case_id: UUID) -> CaseState | None:
    # FOR UPDATE: two router replicas handling outcomes of one case serialise here.
    row = await conn.fetchrow("SELECT * FROM cases WHERE case_id = $1 FOR UPDATE", case_id)
    if row is None:
        return None
    return CaseState(
        case_id=row["case_id"],
        correlation_id=row["correlation_id"],
        item_code=row["item_code"],
        catalogue_version=row["catalogue_version"],
        steps=tuple(RoutedStep.model_validate(s) for s in row["steps"]),
        accepted=cast(CaseAccepted, parse_event(row["accepted"])),
        status=row["status"],
        on_spot=row["on_spot"],
        current_step=row["current_step"],
        outcome=row["outcome"],
        promised_by=row["promised_by"],
    )


async def insert(conn: Connection, state: CaseState) -> None:
    await conn.execute(
        """INSERT INTO cases (case_id, correlation_id, item_code, catalogue_version, steps,
                              accepted, status, on_spot, current_step, outcome, promised_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
        state.case_id,
        state.correlation_id,
        state.item_code,
        state.catalogue_version,
        [s.model_dump(mode="json") for s in state.steps],
        state.accepted.to_dict(),
        state.status,
        state.on_spot,
        state.current_step,
        state.outcome,
        state.promised_by,
    )


async def insert_rejected(conn: Connection, case_id: UUID, reason_code: str) -> None:
    await conn.execute(
        "INSERT INTO rejected_cases (case_id, reason_code) VALUES ($1, $2)", case_id, reason_code
    )


async def update(conn: Connection, state: CaseState) -> None:
    await conn.execute(
        """UPDATE cases SET status = $2, current_step = $3, outcome = $4, updated_at = now()
           WHERE case_id = $1""",
        state.case_id,
        state.status,
        state.current_step,
        state.outcome,
    )
