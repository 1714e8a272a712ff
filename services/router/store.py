"""The router's SQL: load and save the routing state of a batch's cases (schema ``router``).

One query loads (and locks) every case a batch touches and one statement per kind of
change writes them back, whatever the batch size.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any
from uuid import UUID

from services.router.domain import CaseState
from shared.contracts.events import RoutedStep
from shared.platform.db import Connection


def _state(row: Any) -> CaseState:
    return CaseState(
        case_id=row["case_id"],
        correlation_id=row["correlation_id"],
        item_code=row["item_code"],
        catalogue_version=row["catalogue_version"],
        steps=tuple(RoutedStep.model_validate(s) for s in row["steps"]),
        accepted_wire=row["accepted"],
        status=row["status"],
        on_spot=row["on_spot"],
        current_step=row["current_step"],
        outcome=row["outcome"],
        promised_by=row["promised_by"],
        warn_at=row["warn_at"],
        working_days=row["working_days"],
    )


async def load_for_update(
    conn: Connection, case_ids: Sequence[UUID]
) -> tuple[dict[UUID, CaseState], set[UUID]]:
    """The routed cases among ``case_ids`` (locked: router replicas handling outcomes of
    one case serialise here) and the ids that were rejected at routing."""
    ids = list(set(case_ids))
    rows = await conn.fetch(
        "SELECT c.* FROM unnest($1::uuid[]) AS u(id) JOIN cases c ON c.case_id = u.id "
        "ORDER BY c.case_id FOR UPDATE OF c",
        ids,
    )
    rejected = await conn.fetch(
        "SELECT r.case_id FROM unnest($1::uuid[]) AS u(id) "
        "JOIN rejected_cases r ON r.case_id = u.id",
        ids,
    )
    return {r["case_id"]: _state(r) for r in rows}, {r["case_id"] for r in rejected}


async def insert(conn: Connection, states: Sequence[CaseState]) -> None:
    if not states:
        return
    # One statement per batch (executemany runs one per row on the server).
    await conn.execute(
        """INSERT INTO cases (case_id, correlation_id, item_code, catalogue_version, steps,
                              accepted, status, on_spot, current_step, outcome, promised_by,
                              warn_at, working_days)
           SELECT id, corr, item, cat, steps::jsonb, acc, st, spot, step, outc, due, warn, days
           FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::text[],
                       $6::bytea[], $7::text[], $8::bool[], $9::int[], $10::text[],
                       $11::timestamptz[], $12::timestamptz[], $13::int[])
                AS u(id, corr, item, cat, steps, acc, st, spot, step, outc, due, warn, days)""",
        [s.case_id for s in states],
        [s.correlation_id for s in states],
        [s.item_code for s in states],
        [s.catalogue_version for s in states],
        [_json([step.model_dump(mode="json") for step in s.steps]) for s in states],
        [s.accepted_wire for s in states],
        [s.status for s in states],
        [s.on_spot for s in states],
        [s.current_step for s in states],
        [s.outcome for s in states],
        [s.promised_by for s in states],
        [s.warn_at for s in states],
        [s.working_days for s in states],
    )


def _json(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


async def insert_rejected(conn: Connection, rejected: Sequence[tuple[UUID, str]]) -> None:
    if rejected:
        await conn.executemany(
            "INSERT INTO rejected_cases (case_id, reason_code) VALUES ($1, $2)", rejected
        )


async def update(conn: Connection, states: Sequence[CaseState]) -> None:
    if not states:
        return
    await conn.execute(
        """UPDATE cases SET status = u.status, current_step = u.step, outcome = u.outcome,
                  updated_at = now()
           FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[])
                AS u(case_id, status, step, outcome)
           WHERE cases.case_id = u.case_id""",
        [s.case_id for s in states],
        [s.status for s in states],
        [s.current_step for s in states],
        [s.outcome for s in states],
    )
