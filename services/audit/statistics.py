"""Statistics over the case-history projection: per item, department, community and
day; the on-the-spot share; accept-to-close times; open cases past their promise.

Pure code, no I/O. The figures are a tally of a few fields of each case view
(:class:`CaseFigures`) and of the departments' outcomes in the views' timelines, so the
same tally runs over views built here (``stats``) and over the live ``case_views``
table, where SQL hands over just those fields (``services.audit.queries.statistics``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from services.audit.projection import CaseView
from shared.contracts.events import StepApproved, StepNeedsInfo, StepRejected

# Dates in the statistics are the centre's calendar days (China keeps no summer time).
CENTRE_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")

# Timeline entries that count as a department's outcome, and under which measure.
OUTCOME_COUNTER: Mapping[str, str] = {
    StepApproved.event_type: "approved",
    StepRejected.event_type: "rejected",
    StepNeedsInfo.event_type: "needs_info",
}


@dataclass(frozen=True)
class Stats:
    per_item: dict[str, dict[str, int]]  # item -> accepted / approved / rejected / open
    per_department: dict[str, dict[str, int]]  # department -> approved / rejected / needs_info
    per_community: dict[str, dict[str, int]]  # community -> as per_item
    per_day: dict[str, dict[str, int]]  # centre's calendar day of acceptance -> as per_item
    on_spot_share: float  # on-the-spot closes / all closes
    reasons: dict[str, int]  # reason_code of closed rejected cases -> count
    accept_to_close_ms: dict[str, float]  # "p50", "p90", "p99", "count"
    open_past_promise: list[str]  # case ids open past promised_by, sorted

    def to_json(self) -> dict[str, Any]:
        """JSON-ready with every mapping's keys sorted."""
        return {
            "per_item": _sorted_nested(self.per_item),
            "per_department": _sorted_nested(self.per_department),
            "per_community": _sorted_nested(self.per_community),
            "per_day": _sorted_nested(self.per_day),
            "on_spot_share": self.on_spot_share,
            "reasons": dict(sorted(self.reasons.items())),
            "accept_to_close_ms": dict(self.accept_to_close_ms),
            "open_past_promise": sorted(self.open_past_promise),
        }


@dataclass(frozen=True, slots=True)
class CaseFigures:
    """What the statistics read of one case view."""

    case_id: str
    item_code: str
    community_code: str
    accepted_at: datetime
    closed_at: datetime | None
    outcome: str | None
    on_spot: bool
    reason_code: str | None
    promised_by: datetime | None
    waiting: bool  # waits for the applicant's information (not past any promise then)

    @classmethod
    def of(cls, view: CaseView) -> CaseFigures:
        return cls(
            case_id=str(view.case_id),
            item_code=view.item_code,
            community_code=view.community_code,
            accepted_at=view.accepted_at,
            closed_at=view.closed_at,
            outcome=view.outcome,
            on_spot=view.on_spot,
            reason_code=view.reason_code,
            promised_by=view.promised_by,
            waiting=view.waiting_info is not None,
        )


def _sorted_nested(table: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    return {key: dict(table[key]) for key in sorted(table)}


def _case_counters() -> dict[str, int]:
    return {"accepted": 0, "approved": 0, "rejected": 0, "open": 0}


def _percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values; 0.0 when there are none."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def department_outcomes(views: Iterable[CaseView]) -> dict[tuple[str, str], int]:
    """(department, outcome event type) -> how many, over the views' timelines."""
    counts: dict[tuple[str, str], int] = {}
    for view in views:
        for entry in view.timeline:
            if entry.event_type in OUTCOME_COUNTER and entry.department is not None:
                key = (entry.department, entry.event_type)
                counts[key] = counts.get(key, 0) + 1
    return counts


def stats(views: Mapping[UUID, CaseView], *, now: datetime) -> Stats:
    """Counts over the projection; ``now`` decides which open cases are past promise."""
    return tally(
        (CaseFigures.of(view) for view in views.values()),
        department_outcomes(views.values()),
        now=now,
    )


def tally(
    cases: Iterable[CaseFigures], outcomes: Mapping[tuple[str, str], int], *, now: datetime
) -> Stats:
    """The statistics of these cases and these department outcome counts (see
    ``department_outcomes``); ``now`` decides which open cases are past promise. A case
    waiting for the applicant's information counts as open, but never as past promise."""
    per_item: dict[str, dict[str, int]] = {}
    per_community: dict[str, dict[str, int]] = {}
    per_day: dict[str, dict[str, int]] = {}
    reasons: dict[str, int] = {}
    durations: list[float] = []
    closes = on_spot = 0
    late: list[str] = []
    for case in cases:
        state = "open" if case.outcome is None else case.outcome
        day = case.accepted_at.astimezone(CENTRE_TZ).date().isoformat()
        for table, key in (
            (per_item, case.item_code),
            (per_community, case.community_code),
            (per_day, day),
        ):
            counters = table.setdefault(key, _case_counters())
            counters["accepted"] += 1
            counters[state] = counters.get(state, 0) + 1
        if case.closed_at is not None:
            closes += 1
            on_spot += case.on_spot
            durations.append((case.closed_at - case.accepted_at) / timedelta(milliseconds=1))
            if case.outcome == "rejected":
                reason = case.reason_code or "unspecified"
                reasons[reason] = reasons.get(reason, 0) + 1
        elif case.promised_by is not None and case.promised_by < now and not case.waiting:
            late.append(case.case_id)
    per_department: dict[str, dict[str, int]] = {}
    for (department, event_type), n in outcomes.items():
        dept = per_department.setdefault(
            department, {"approved": 0, "rejected": 0, "needs_info": 0}
        )
        dept[OUTCOME_COUNTER[event_type]] += n
    durations.sort()
    return Stats(
        per_item=_sorted_nested(per_item),
        per_department=_sorted_nested(per_department),
        per_community=_sorted_nested(per_community),
        per_day=_sorted_nested(per_day),
        on_spot_share=on_spot / closes if closes else 0.0,
        reasons=dict(sorted(reasons.items())),
        accept_to_close_ms={
            "p50": _percentile(durations, 50),
            "p90": _percentile(durations, 90),
            "p99": _percentile(durations, 99),
            "count": float(len(durations)),
        },
        open_past_promise=sorted(late),
    )
