"""The figures behind the auditor's and the centre head's dashboard, and behind the
window's community page: exact counts from the live projection (``case_views``), each
chart as one table (labels down, series across) that the page draws with Chart.js,
shows beside the chart and offers as CSV, so the three can never disagree.

Pure code but for :func:`case_rows` (one narrow SQL read). No personal data: the views
hold none, and a case is named by its id and receipt number only.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from services.audit.statistics import CENTRE_TZ
from shared.platform.db import Connection

NEAR = timedelta(hours=48)  # an open case this close to its promised date is "near"
LISTED = 200  # cases listed by name (near or past their promise) at most
# Accept-to-close buckets: (key, upper bound); the last has none.
CLOSE_BUCKETS: tuple[tuple[str, timedelta | None], ...] = (
    ("lt_1m", timedelta(minutes=1)),
    ("1m_10m", timedelta(minutes=10)),
    ("10m_1h", timedelta(hours=1)),
    ("1h_1d", timedelta(days=1)),
    ("1d_3d", timedelta(days=3)),
    ("3d_10d", timedelta(days=10)),
    ("ge_10d", None),
)
STATUSES = ("open", "waiting_info", "approved", "rejected")
DUE = ("past", "near", "later", "waiting_info", "no_date")
NO_DEPARTMENT = "-"  # a case rejected before routing has no department
COMMUNITY_CODE = r"^[0-9A-Za-z-]{1,40}$"  # a community (neighbourhood committee) code


@dataclass(frozen=True, slots=True)
class CaseRow:
    """What the dashboard reads of one case view."""

    case_id: str
    receipt_no: str
    item_code: str
    community_code: str
    centre_id: str
    accepted_at: datetime
    closed_at: datetime | None
    outcome: str | None
    on_spot: bool
    promised_by: datetime | None
    waiting: bool
    departments: tuple[str, ...]

    @property
    def status(self) -> str:
        if self.outcome is not None:
            return self.outcome
        return "waiting_info" if self.waiting else "open"

    def due(self, now: datetime) -> str | None:
        """Where an open case stands against its promise (None when closed)."""
        if self.outcome is not None:
            return None
        if self.waiting:
            return "waiting_info"
        if self.promised_by is None:
            return "no_date"
        if self.promised_by < now:
            return "past"
        return "near" if self.promised_by - now <= NEAR else "later"

    def listed(self, now: datetime) -> dict[str, Any]:
        return {
            "case_id": self.case_id,
            "receipt_no": self.receipt_no,
            "item_code": self.item_code,
            "community_code": self.community_code,
            "status": self.status,
            "due": self.due(now),
            "accepted_at": self.accepted_at.isoformat(),
            "promised_by": None if self.promised_by is None else self.promised_by.isoformat(),
        }


_ROWS = """
SELECT view->>'case_id' AS case_id,
       view->>'receipt_no' AS receipt_no,
       view->>'item_code' AS item_code,
       view->>'community_code' AS community_code,
       view->>'centre_id' AS centre_id,
       (view->>'accepted_at')::timestamptz AS accepted_at,
       (view->>'closed_at')::timestamptz AS closed_at,
       view->>'outcome' AS outcome,
       (view->>'on_spot')::boolean AS on_spot,
       (view->>'promised_by')::timestamptz AS promised_by,
       view ? 'waiting_info' AS waiting,
       view->'departments' AS departments
FROM case_views
WHERE ($1::text IS NULL OR view->>'centre_id' = $1)
  AND ($2::text IS NULL OR view->>'community_code' = $2)
"""


async def case_rows(
    conn: Connection, *, centre: str | None = None, community: str | None = None
) -> list[CaseRow]:
    """The cases of one centre (None: all) and one community (None: all)."""
    rows = await conn.fetch(_ROWS, centre, community)
    made = []
    for r in rows:
        fields = dict(r)
        departments = fields.pop("departments")
        if isinstance(departments, str):  # no JSON codec on this connection
            departments = json.loads(departments)
        made.append(CaseRow(**fields, departments=tuple(departments or ())))
    return made


def day_of(at: datetime) -> str:
    """The centre's calendar day of a moment (ISO)."""
    return at.astimezone(CENTRE_TZ).date().isoformat()


def chart(kind: str, labels: Sequence[str], series: dict[str, list[int]]) -> dict[str, Any]:
    """One chart's table: ``labels`` down, one column of exact counts per series."""
    return {
        "kind": kind,
        "labels": list(labels),
        "series": [{"key": key, "values": values} for key, values in series.items()],
    }


def _count_table(
    rows: Iterable[CaseRow], label: Any, column: Any, labels: Sequence[str] | None = None
) -> tuple[list[str], dict[str, dict[str, int]]]:
    counts: dict[str, dict[str, int]] = {}
    for row in rows:
        for key in column(row):
            counts.setdefault(key, {})
            at = label(row)
            counts[key][at] = counts[key].get(at, 0) + 1
    found = sorted({lab for by in counts.values() for lab in by}) if labels is None else labels
    return list(found), counts


def per_day_department(rows: Sequence[CaseRow]) -> dict[str, Any]:
    """Cases accepted per day, by each department on the case's slip (a two-step case
    counts once under each of its two departments)."""
    labels, counts = _count_table(
        rows, lambda r: day_of(r.accepted_at), lambda r: r.departments or (NO_DEPARTMENT,)
    )
    series = {dept: [counts[dept].get(day, 0) for day in labels] for dept in sorted(counts)}
    return chart("bar", labels, series)


def _by_status(rows: Sequence[CaseRow], label: Any) -> dict[str, Any]:
    """A bar chart of the cases under each ``label(row)``, one series per status now."""
    labels, counts = _count_table(rows, label, lambda r: (r.status,))
    return chart(
        "bar", labels, {s: [counts.get(s, {}).get(at, 0) for at in labels] for s in STATUSES}
    )


def per_day_cases(rows: Sequence[CaseRow]) -> dict[str, Any]:
    """Cases accepted per day, by their status now."""
    return _by_status(rows, lambda r: day_of(r.accepted_at))


def on_spot(rows: Sequence[CaseRow]) -> tuple[dict[str, Any], float]:
    """Closed on the spot, closed otherwise, still open; and the on-the-spot share of
    the closed cases."""
    spot = sum(1 for r in rows if r.closed_at is not None and r.on_spot)
    other = sum(1 for r in rows if r.closed_at is not None and not r.on_spot)
    still = sum(1 for r in rows if r.closed_at is None)
    share = spot / (spot + other) if spot + other else 0.0
    made = chart("doughnut", ["on_spot", "closed_later", "open"], {"cases": [spot, other, still]})
    return made, share


def close_times(rows: Sequence[CaseRow]) -> dict[str, Any]:
    """Closed cases by how long acceptance to close took."""
    counts = dict.fromkeys((key for key, _ in CLOSE_BUCKETS), 0)
    for row in rows:
        if row.closed_at is None:
            continue
        took = row.closed_at - row.accepted_at
        for key, bound in CLOSE_BUCKETS:
            if bound is None or took < bound:
                counts[key] += 1
                break
    return chart("bar", list(counts), {"cases": list(counts.values())})


def due(rows: Sequence[CaseRow], now: datetime) -> dict[str, Any]:
    """Open cases against their promised date."""
    counts = dict.fromkeys(DUE, 0)
    for row in rows:
        state = row.due(now)
        if state is not None:
            counts[state] += 1
    return chart("bar", list(DUE), {"cases": list(counts.values())})


def per_community(rows: Sequence[CaseRow]) -> dict[str, Any]:
    """Cases per community by their status now."""
    return _by_status(rows, lambda r: r.community_code)


def per_item_status(rows: Sequence[CaseRow]) -> dict[str, Any]:
    """Cases per item by their status now."""
    return _by_status(rows, lambda r: r.item_code)


def late_cases(rows: Sequence[CaseRow], now: datetime) -> list[dict[str, Any]]:
    """Open cases past or near their promise, the most overdue first."""
    late = [r for r in rows if r.due(now) in ("past", "near")]
    late.sort(key=lambda r: (r.promised_by or now, r.case_id))
    return [r.listed(now) for r in late[:LISTED]]


def dashboard(rows: Sequence[CaseRow], now: datetime) -> dict[str, Any]:
    """Every chart of the dashboard, with the totals it is read against."""
    spot, share = on_spot(rows)
    return {
        "now": now.isoformat(),
        "cases": len(rows),
        "on_spot_share": share,
        "charts": {
            "per_day_department": per_day_department(rows),
            "on_spot": spot,
            "close_time": close_times(rows),
            "due": due(rows, now),
            "per_community": per_community(rows),
        },
        "late": late_cases(rows, now),
    }


def community(rows: Sequence[CaseRow], code: str, now: datetime) -> dict[str, Any]:
    """One community's cases: by item and status, due and overdue, per day."""
    return {
        "now": now.isoformat(),
        "community_code": code,
        "cases": len(rows),
        "charts": {
            "per_item": per_item_status(rows),
            "per_day": per_day_cases(rows),
            "due": due(rows, now),
        },
        "late": late_cases(rows, now),
    }


def communities(rows: Sequence[CaseRow]) -> list[dict[str, Any]]:
    """Each community with cases, with its counts by status."""
    table = per_community(rows)
    return [
        {"community_code": code, **{s["key"]: s["values"][i] for s in table["series"]}}
        for i, code in enumerate(table["labels"])
    ]
