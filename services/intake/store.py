"""Intake's SQL (schema ``intake``)."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from shared.contracts.events import (
    CaseAdvanced,
    CaseAwaitingInfo,
    CaseClosed,
    CaseRejected,
    CaseReviewFlagged,
    CaseRouted,
    Event,
)
from shared.platform.db import Connection


async def get_case(conn: Connection, case_id: UUID) -> dict[str, Any] | None:
    row = await conn.fetchrow("SELECT * FROM cases WHERE case_id = $1", case_id)
    return None if row is None else dict(row)


VIEW_COLUMNS = (
    "status",
    "current_step",
    "department",
    "outcome",
    "on_spot",
    "reason_code",
    "message",
    "review_flag",
    "routed_at",
    "closed_at",
)


async def load_views(conn: Connection, case_ids: list[UUID]) -> dict[UUID, dict[str, Any]]:
    """The status columns of these cases, locked until the batch commits."""
    rows = await conn.fetch(
        f"SELECT c.case_id, {', '.join('c.' + col for col in VIEW_COLUMNS)} "  # noqa: S608
        "FROM unnest($1::uuid[]) AS u(id) JOIN cases c ON c.case_id = u.id "
        "ORDER BY c.case_id FOR UPDATE OF c",
        list(set(case_ids)),
    )
    return {r["case_id"]: dict(r) for r in rows}


async def save_views(conn: Connection, views: list[dict[str, Any]]) -> None:
    if not views:
        return
    await conn.execute(
        """UPDATE cases SET status = u.status, current_step = u.current_step,
                  department = u.department, outcome = u.outcome, on_spot = u.on_spot,
                  reason_code = u.reason_code, message = u.message,
                  review_flag = u.review_flag, routed_at = u.routed_at,
                  closed_at = u.closed_at, updated_at = now()
           FROM unnest($1::uuid[], $2::text[], $3::int[], $4::text[], $5::text[],
                       $6::bool[], $7::text[], $8::text[], $9::text[], $10::timestamptz[],
                       $11::timestamptz[])
                AS u(case_id, status, current_step, department, outcome, on_spot,
                     reason_code, message, review_flag, routed_at, closed_at)
           WHERE cases.case_id = u.case_id""",
        [v["case_id"] for v in views],
        *([v[c] for v in views] for c in VIEW_COLUMNS),
    )


NEEDS_INFO = "needs_info"  # reason_code of a case waiting for the applicant's information


def apply_routing(view: dict[str, Any], event: Event) -> None:
    """Bring one case's status view up to date with one cases.routing event."""
    at = event.occurred_at
    if isinstance(event, CaseRouted):
        # The slip's first step is assigned with it (no CaseAdvanced for step 0).
        view["routed_at"] = at
        if view["status"] == "accepted":
            view["status"] = "in_progress"
            view["current_step"] = 0
            view["department"] = event.steps[0].department if event.steps else None
    elif isinstance(event, CaseAdvanced):
        _stop_waiting(view)
        view["current_step"] = event.step_index
        view["department"] = event.department
        if view["status"] != "closed":
            view["status"] = "in_progress"
    elif isinstance(event, CaseRejected):
        view["reason_code"] = event.reason_code
        view["message"] = event.message
    elif isinstance(event, CaseClosed):
        _stop_waiting(view)
        view["status"] = "closed"
        view["outcome"] = event.outcome
        view["on_spot"] = event.on_spot
        view["reason_code"] = event.reason_code or view["reason_code"]
        view["message"] = event.message or view["message"]
        view["department"] = event.department or view["department"]
        view["closed_at"] = at
    elif isinstance(event, CaseAwaitingInfo):
        # The view has no column of its own for the missing fields: the message names
        # them, and reason_code says why the case stands still.
        view["status"] = "waiting_info"
        view["current_step"] = event.step_index
        view["department"] = event.department
        view["reason_code"] = NEEDS_INFO
        view["message"] = f"missing {', '.join(event.missing)}: {event.message}"
    elif isinstance(event, CaseReviewFlagged):
        view["review_flag"] = f"{event.department}: {event.reason_code}: {event.message}"


def _stop_waiting(view: dict[str, Any]) -> None:
    # The case moves on: what it waited for is no longer its reason or message.
    if view["reason_code"] == NEEDS_INFO:
        view["reason_code"] = view["message"] = None


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
    accepted_at, id_masked, phone, applicant_ref) per case, in one statement: the case
    rows and their citizen contacts (the citizen's lookup, services.intake.citizen)."""
    columns = list(zip(*rows, strict=True))
    await conn.execute(
        """WITH made AS (
               INSERT INTO cases (case_id, receipt_no, item_code, applicant_kind, centre_id,
                                  window_id, channel, accepted_at, applicant_ref)
               SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::text[],
                                    $5::text[], $6::text[], $7::text[], $8::timestamptz[],
                                    $11::text[]))
           INSERT INTO citizen_contacts (case_id, id_masked, phone)
           SELECT * FROM unnest($1::uuid[], $9::text[], $10::text[])""",
        *(list(c) for c in columns),
    )


async def claim_keys(conn: Connection, claims: list[tuple[str, str, UUID]]) -> None:
    await conn.executemany(
        "INSERT INTO idempotency_keys (key, request_hash, case_id) VALUES ($1, $2, $3)", claims
    )
