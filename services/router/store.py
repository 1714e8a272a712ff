"""The router's SQL: load and save the routing state of a batch's cases (schema ``router``).

One query loads (and locks) every case a batch touches and one statement per kind of
change writes them back, whatever the batch size.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, cast
from uuid import UUID

from services.router.domain import CaseState
from shared.db import Connection
from shared.events import CaseAccepted, RoutedStep, parse_event


def _state(row: Any) -> CaseState:
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


async def load_for_update(
    conn: Connection, case_ids: Sequence[UUID]
) -> tuple[dict[UUID, CaseState], set[UUID]]:
    """The routed cases among ``case_ids`` (locked: router replicas handling outcomes of
    one case serialise here) and the ids that were rejected at routing."""
    ids = list(set(case_ids))
    rows = await conn.fetch(
        "SELECT * FROM cases WHERE case_id = ANY($1::uuid[]) ORDER BY case_id FOR UPDATE", ids
    )
    rejected = await conn.fetch(
        "SELECT case_id FROM rejected_cases WHERE case_id = ANY($1::uuid[])", ids
    )
    return {r["case_id"]: _state(r) for r in rows}, {r["case_id"] for r in rejected}


async def insert(conn: Connection, states: Sequence[CaseState]) -> None:
    if not states:
        return
    await conn.executemany(
        """INSERT INTO cases (case_id, correlation_id, item_code, catalogue_version, steps,
                              accepted, status, on_spot, current_step, outcome, promised_by)
           VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)""",
        [
            (
                s.case_id,
                s.correlation_id,
                s.item_code,
                s.catalogue_version,
                [step.model_dump(mode="json") for step in s.steps],
                s.accepted.to_dict(),
                s.status,
                s.on_spot,
                s.current_step,
                s.outcome,
                s.promised_by,
            )
            for s in states
        ],
    )


async def insert_rejected(conn: Connection, rejected: Sequence[tuple[UUID, str]]) -> None:
    if rejected:
        await conn.executemany(
            "INSERT INTO rejected_cases (case_id, reason_code) VALUES ($1, $2)", rejected
        )


async def update(conn: Connection, states: Sequence[CaseState]) -> None:
    if not states:
        return
    await conn.executemany(
        """UPDATE cases SET status = $2, current_step = $3, outcome = $4, updated_at = now()
           WHERE case_id = $1""",
        [(s.case_id, s.status, s.current_step, s.outcome) for s in states],
    )
