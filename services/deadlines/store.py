"""The deadline service's SQL (schema ``deadlines``): timers in, due timers out."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any
from uuid import UUID

from services.deadlines.domain import Timer
from shared.contracts.events import StepAssigned
from shared.platform.db import Connection


async def add_timers(conn: Connection, tasks: Sequence[StepAssigned]) -> None:
    if not tasks:
        return
    await conn.execute(
        """INSERT INTO timers (task_id, case_id, correlation_id, step_index, department,
                               review, due_by, warn_at)
           SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::int[], $5::text[],
                                $6::bool[], $7::timestamptz[], $8::timestamptz[])
           ON CONFLICT (task_id) DO NOTHING""",
        [t.event_id for t in tasks],
        [t.case_id for t in tasks],
        [t.correlation_id for t in tasks],
        [t.step_index for t in tasks],
        [t.department for t in tasks],
        [t.review for t in tasks],
        [t.due_by for t in tasks],
        [t.warn_at for t in tasks],
    )


async def add_decided(conn: Connection, decided: Sequence[tuple[UUID, datetime]]) -> None:
    """Outcomes by the task they answer (the first, by its time, counts)."""
    if decided:
        await conn.execute(
            """INSERT INTO decided (task_id, decided_at)
               SELECT * FROM unnest($1::uuid[], $2::timestamptz[])
               ON CONFLICT (task_id) DO UPDATE
               SET decided_at = least(decided.decided_at, excluded.decided_at)""",
            [d[0] for d in decided],
            [d[1] for d in decided],
        )


async def add_closed(conn: Connection, closed: Sequence[tuple[UUID, datetime]]) -> None:
    if closed:
        await conn.execute(
            """INSERT INTO closed_cases (case_id, closed_at)
               SELECT * FROM unnest($1::uuid[], $2::timestamptz[])
               ON CONFLICT (case_id) DO UPDATE
               SET closed_at = least(closed_cases.closed_at, excluded.closed_at)""",
            [c[0] for c in closed],
            [c[1] for c in closed],
        )


async def due_timers(conn: Connection, cutoff: datetime, limit: int) -> list[Timer]:
    """Unsettled timers whose warning or due time is at or before ``cutoff``, locked
    (``SKIP LOCKED``: replicas of the service share them, never fire one twice)."""
    rows = await conn.fetch(
        """SELECT t.*, d.decided_at, c.closed_at,
                  EXISTS (SELECT 1 FROM announced a WHERE a.case_id = t.case_id
                          AND a.step_index = t.step_index
                          AND a.kind = 'DeadlineWarning') AS warned,
                  EXISTS (SELECT 1 FROM announced a WHERE a.case_id = t.case_id
                          AND a.step_index = t.step_index
                          AND a.kind = 'DeadlineMissed') AS missed
           FROM timers t
           LEFT JOIN decided d ON d.task_id = t.task_id
           LEFT JOIN closed_cases c ON c.case_id = t.case_id
           WHERE NOT t.settled AND (t.warn_at <= $1 OR t.due_by <= $1)
           ORDER BY least(t.warn_at, t.due_by)
           LIMIT $2
           FOR UPDATE OF t SKIP LOCKED""",
        cutoff,
        limit,
    )
    return [_timer(r) for r in rows]


def _timer(row: Any) -> Timer:
    return Timer(
        task_id=row["task_id"],
        case_id=row["case_id"],
        correlation_id=row["correlation_id"],
        step_index=row["step_index"],
        department=row["department"],
        review=row["review"],
        due_by=row["due_by"],
        warn_at=row["warn_at"],
        decided_at=row["decided_at"],
        closed_at=row["closed_at"],
        warned=row["warned"],
        missed=row["missed"],
    )


async def claim(
    conn: Connection, claims: Sequence[tuple[Timer, str, UUID, datetime]]
) -> set[tuple[UUID, int, str]]:
    """Record these notices as given (timer, kind, event id, time); return the (case,
    step, kind) of those recorded now: one given before (by an earlier task of the
    step) is not given again."""
    if not claims:
        return set()
    rows = await conn.fetch(
        """INSERT INTO announced (case_id, step_index, kind, event_id, task_id, at)
           SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[], $4::uuid[], $5::uuid[],
                                $6::timestamptz[])
           ON CONFLICT (case_id, step_index, kind) DO NOTHING
           RETURNING case_id, step_index, kind""",
        [t.case_id for t, _, _, _ in claims],
        [t.step_index for t, _, _, _ in claims],
        [k for _, k, _, _ in claims],
        [e for _, _, e, _ in claims],
        [t.task_id for t, _, _, _ in claims],
        [at for _, _, _, at in claims],
    )
    return {(r["case_id"], r["step_index"], r["kind"]) for r in rows}


async def settle(conn: Connection, task_ids: Sequence[UUID]) -> None:
    if task_ids:
        await conn.execute(
            "UPDATE timers SET settled = true WHERE task_id = ANY($1::uuid[])", list(task_ids)
        )
