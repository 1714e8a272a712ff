"""The deadline rules: which notices a step's timer owes, and the notices themselves.
Pure; ``store.py`` keeps the timers, ``clock.py`` fires them, ``handlers.py`` feeds them.

A step's timer comes from its task (StepAssigned): its due time and its warning time (one
working day left), as the router recorded them. It owes a ``DeadlineWarning`` once the
warning time has passed with the step still undecided and its clock running, and a
``DeadlineMissed`` once the due time has; never both of a kind for one step (the store's
key), never before the time (and the grace, which lets an outcome decided in time reach
the service first). The clock of a step stops when its department answers it (any
outcome: an approval, a rejection, a request for information) or, for a step of an open
case, when the case closes; a review's clock runs after its case closed on the spot.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from uuid import UUID, uuid5

from shared.contracts.events import (
    CaseClosed,
    DeadlineMissed,
    DeadlineNotice,
    DeadlineWarning,
    Event,
    StepAssigned,
    StepOutcome,
)

PRODUCER = "deadlines"
WARNING = DeadlineWarning.event_type
MISSED = DeadlineMissed.event_type


@dataclass(frozen=True, slots=True)
class Timer:
    """One task's timer and what the log said of its step so far."""

    task_id: UUID
    case_id: UUID
    correlation_id: UUID
    step_index: int
    department: str
    review: bool
    due_by: datetime
    warn_at: datetime | None
    decided_at: datetime | None = None  # first outcome of the task
    closed_at: datetime | None = None  # the case's close
    warned: bool = False  # a warning of this step was given
    missed: bool = False  # a miss of this step was given

    def running_at(self, at: datetime) -> bool:
        """The step's clock still ran at ``at``: undecided, and its case open (a review:
        whatever its case)."""
        if self.decided_at is not None and self.decided_at <= at:
            return False
        return self.review or self.closed_at is None or self.closed_at > at

    def warns(self) -> bool:
        """The task has a warning time before its due time (v1 tasks and promises of
        less than a working day have none)."""
        return self.warn_at is not None and self.warn_at < self.due_by

    def owed(self, cutoff: datetime) -> list[str]:
        """The notices owed at ``cutoff`` (now less the grace) and not given yet."""
        kinds = []
        if (
            self.warns()
            and not self.warned
            and self.warn_at is not None
            and self.warn_at <= cutoff
            and self.running_at(self.warn_at)
        ):
            kinds.append(WARNING)
        if not self.missed and self.due_by <= cutoff and self.running_at(self.due_by):
            kinds.append(MISSED)
        return kinds

    def settled(self, given: frozenset[str] = frozenset()) -> bool:
        """Nothing more can ever be owed (with ``given`` just announced): each kind was
        given, belongs to no time, or its time passed with the clock stopped."""
        warned, missed = self.warned or WARNING in given, self.missed or MISSED in given
        # running_at(t) is False only once an outcome or close at or before t is known:
        # then it stays False, whatever comes later.
        warn_done = (
            warned
            or not self.warns()
            or (self.warn_at is not None and not self.running_at(self.warn_at))
        )
        return warn_done and (missed or not self.running_at(self.due_by))

    def notice(self, kind: str, now: datetime, event_id: UUID) -> DeadlineNotice:
        """The notice of ``kind`` for this step, caused by its task."""
        body = {
            "event_id": event_id,
            "case_id": self.case_id,
            "correlation_id": self.correlation_id,
            "causation_id": self.task_id,
            "occurred_at": now,
            "producer": PRODUCER,
            "step_index": self.step_index,
            "department": self.department,
            "review": self.review,
            "due_by": self.due_by,
        }
        if kind == WARNING:
            return DeadlineWarning.model_validate({**body, "warn_at": self.warn_at})
        return DeadlineMissed.model_validate(body)


def owed_notices(events: Sequence[Event], now: datetime) -> list[DeadlineNotice]:
    """The notices the service gives by ``now`` for a case's (or a log's) ``events``
    that they do not hold yet, each dated a second after its time, with ids derived from
    the task (stable): the service's rules over a list of events, for the audit drill and
    the tests, which have no timers table."""
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
            # Never before the task itself: the service learns of it from the log.
            when = max(at, task.occurred_at) + timedelta(seconds=1)
            notice = timer.notice(kind, when, uuid5(task.event_id, kind))
            given.add((task.case_id, task.step_index, kind))
            notices.append(notice)
    return notices
