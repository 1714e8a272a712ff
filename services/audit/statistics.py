"""Statistics over the case-history projection: per item, department, community and
day; the on-the-spot share; accept-to-close times; open cases past their promise; the
promises kept (on-time share per item, community and department).

Pure code, no I/O. The figures are a tally of a few fields of each case view
(:class:`CaseFigures`) and of the departments' outcomes in the views' timelines, so the
same tally runs over views built here (``stats``) and over the live ``case_views``
table, where SQL hands over just those fields (``services.audit.queries.statistics``).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any
from uuid import UUID

from services.audit.projection import CaseView
from shared.contracts.events import (
    DeadlineMissed,
    DeadlineWarning,
    StepApproved,
    StepNeedsInfo,
    StepRejected,
)

# Dates in the statistics are the centre's calendar days (China keeps no summer time).
CENTRE_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")

# Timeline entries that count as a department's outcome, and under which measure.
OUTCOME_COUNTER: Mapping[str, str] = {
    StepApproved.event_type: "approved",
    StepRejected.event_type: "rejected",
    StepNeedsInfo.event_type: "needs_info",
}
# The deadline service's notices, counted per department like the outcomes.
NOTICE_COUNTER: Mapping[str, str] = {
    DeadlineWarning.event_type: "warned",
    DeadlineMissed.event_type: "missed",
}
COUNTED: tuple[str, ...] = (*OUTCOME_COUNTER, *NOTICE_COUNTER)


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
    # Promises kept: "per_item" / "per_community" -> key -> on_time, late (cases closed
    # by their promise, or closed after it or open past it) and share (on_time of both);
    # "per_department" -> department -> decided, missed (DeadlineMissed notices), warned,
    # share (decided steps without a DeadlineMissed, of the decided).
    promises: dict[str, dict[str, dict[str, float]]] = field(default_factory=dict)

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
            "promises": {d: _sorted_nested(t) for d, t in sorted(self.promises.items())},
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


def _sorted_nested(table: Mapping[str, Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
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
            if entry.event_type in COUNTED and entry.department is not None:
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
    kept: dict[str, dict[str, dict[str, float]]] = {"per_item": {}, "per_community": {}}
    for case in cases:
        state = "open" if case.outcome is None else case.outcome
        promise = _kept(case, now)
        if promise is not None:
            for dimension, key in (
                ("per_item", case.item_code),
                ("per_community", case.community_code),
            ):
                row = kept[dimension].setdefault(key, {"on_time": 0, "late": 0})
                row[promise] += 1
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
    notices: dict[str, dict[str, float]] = {}
    for (department, event_type), n in outcomes.items():
        if event_type in NOTICE_COUNTER:
            row = notices.setdefault(department, {"missed": 0, "warned": 0})
            row[NOTICE_COUNTER[event_type]] += n
            continue
        dept = per_department.setdefault(
            department, {"approved": 0, "rejected": 0, "needs_info": 0}
        )
        dept[OUTCOME_COUNTER[event_type]] += n
    durations.sort()
    kept["per_department"] = {
        d: {"decided": float(sum(c.values())), "missed": 0, "warned": 0, **notices.get(d, {})}
        for d, c in per_department.items()
    }
    for rows in kept.values():
        for row in rows.values():
            _share(row)
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
        promises={d: _sorted_nested(t) for d, t in kept.items()},
    )


def _kept(case: CaseFigures, now: datetime) -> str | None:
    """Whether the case kept its promise: "on_time", "late", or None (open and still
    within its promise, or waiting for the applicant, whose wait stops the centre's
    clock). An on-the-spot case closed at once: on time."""
    if case.closed_at is not None:
        late = (
            not case.on_spot and case.promised_by is not None and case.closed_at > case.promised_by
        )
        return "late" if late else "on_time"
    if case.promised_by is not None and case.promised_by < now and not case.waiting:
        return "late"
    return None


def _share(row: dict[str, float]) -> None:
    """Add the on-time share (0..1, 4 places) to a row of ``Stats.promises``."""
    if "decided" in row:
        decided = row["decided"]
        row["share"] = round(max(decided - row["missed"], 0) / decided, 4) if decided else 1.0
    else:
        total = row["on_time"] + row["late"]
        row["share"] = round(row["on_time"] / total, 4) if total else 1.0
