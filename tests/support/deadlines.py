"""The deadline service's rules run over a list of events, as a test's stand-in for the
service: which notices a log owes by a time (services/deadlines/domain.py decides)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from uuid import uuid5

from services.deadlines.domain import MISSED, WARNING, Timer
from shared.contracts.events import (
    CaseClosed,
    DeadlineNotice,
    Event,
    StepAssigned,
    StepOutcome,
)


def owed_notices(events: Sequence[Event], now: datetime) -> list[DeadlineNotice]:
    """The notices the service would give by ``now`` that ``events`` do not hold yet,
    each dated one second after its time (ids derived from the task: stable)."""
    decided: dict[object, datetime] = {}
    closed: dict[object, datetime] = {}
    given: set[tuple[object, int, str]] = set()
    for e in events:
        if isinstance(e, StepOutcome) and e.causation_id is not None:
            decided[e.causation_id] = min(decided.get(e.causation_id, e.occurred_at), e.occurred_at)
        elif isinstance(e, CaseClosed):
            closed[e.case_id] = min(closed.get(e.case_id, e.occurred_at), e.occurred_at)
        elif isinstance(e, DeadlineNotice):
            given.add((e.case_id, e.step_index, e.event_type))
    notices: list[DeadlineNotice] = []
    for task in (e for e in events if isinstance(e, StepAssigned)):
        timer = Timer(
            task_id=task.event_id,
            case_id=task.case_id,
            correlation_id=task.correlation_id,
            step_index=task.step_index,
            department=task.department,
            review=task.review,
            due_by=task.due_by,
            warn_at=task.warn_at,
            decided_at=decided.get(task.event_id),
            closed_at=closed.get(task.case_id),
            warned=(task.case_id, task.step_index, WARNING) in given,
            missed=(task.case_id, task.step_index, MISSED) in given,
        )
        for kind in timer.owed(now):
            at = (timer.warn_at if kind == WARNING else timer.due_by) or timer.due_by
            notice = timer.notice(kind, at + timedelta(seconds=1), uuid5(task.event_id, kind))
            given.add((task.case_id, task.step_index, kind))
            notices.append(notice)
    return notices
