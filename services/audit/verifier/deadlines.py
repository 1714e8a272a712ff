"""The promise rules of one case: its promise counted as the catalogue says, and the
deadline service's notices (DeadlineWarning, DeadlineMissed) given for every step that
was owed one, once, not early, not for a step decided in time. Pure; the judge runs
:func:`check_notices` after the case's clock.

A step is owed a warning when it was still undecided when one working day was left
(its task's ``warn_at``), and a miss when it was still undecided at its ``due_by``; a
step of an open case is not owed anything once the case closed (a withdrawal), a review
is. Owed means owed by now: ``Timing.stall_after`` past the time, the service's grace
(``deadlines_grace_s``) and its lag included. The times are those the router recorded
on the task, never recounted: a replay with another calendar judges the same.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from services.audit.projection import iso
from services.audit.verifier.report import (
    DEADLINE_ANNOUNCED_EARLY,
    DEADLINE_ANNOUNCED_TWICE,
    DEADLINE_ANNOUNCED_WRONGLY,
    DEADLINE_NOT_ANNOUNCED,
    Violation,
)
from shared.contracts.events import DeadlineMissed, DeadlineNotice, DeadlineWarning, StepAssigned

if TYPE_CHECKING:
    from services.audit.verifier.clock import Timing
    from services.audit.verifier.facts import CaseLog, Fact, Routed

WARNING = DeadlineWarning.event_type
MISSED = DeadlineMissed.event_type
NOTICES = frozenset({WARNING, MISSED})
# A warning comes at most one working day before the due time: a working day is at most
# a calendar day (the test clock's is shorter), so an outcome a day before due_by was
# surely in before the warning time, and the task need not be decoded to know it.
_LONGEST_WORKING_DAY = timedelta(days=1)


def promise_problems(routed: Routed, promised_days: int, accepted_at: datetime) -> list[str]:
    """What is wrong with a slip's promise, given the catalogue's ``promised_days``: a
    version 2 slip must count exactly those working days (the date is the calendar's,
    recorded, not recounted); a version 1 slip promised calendar days."""
    if routed.working_days is not None:
        if routed.working_days != promised_days:
            return [
                f"promised {routed.working_days} working days, the catalogue promises "
                f"{promised_days}"
            ]
        if routed.promised_by < accepted_at:
            return [f"promised by {iso(routed.promised_by)}, before it was accepted"]
        return []
    promised = accepted_at + timedelta(days=promised_days)
    if routed.promised_by != promised:
        return [f"promised by {iso(routed.promised_by)}, the catalogue promises {iso(promised)}"]
    return []


def _task(fact: Fact) -> StepAssigned:
    event = fact.event()
    assert isinstance(event, StepAssigned)
    return event


def _notice(fact: Fact) -> DeadlineNotice:
    event = fact.event()
    assert isinstance(event, DeadlineNotice)
    return event


class _Step:
    """One task of the case and what the notices need of it."""

    def __init__(self, fact: Fact, decided: datetime | None) -> None:
        self.fact = fact
        self.due: datetime = fact.head  # type: ignore[assignment]  # a task's head: due_by
        self.decided = decided
        self._event: StepAssigned | None = None

    @property
    def event(self) -> StepAssigned:
        if self._event is None:
            self._event = _task(self.fact)
        return self._event

    def warn_at(self) -> datetime | None:
        """When one working day was left; None when no warning belongs to the task (a
        version 1 task, or a promise of less than a day)."""
        if self.decided is not None and self.decided <= self.due - _LONGEST_WORKING_DAY:
            return None  # decided before any warning time it could have
        warn_at = self.event.warn_at
        return warn_at if warn_at is not None and warn_at < self.due else None

    def time_of(self, kind: str) -> datetime | None:
        return self.due if kind == MISSED else self.warn_at()


def check_notices(
    log: CaseLog, now: datetime, timing: Timing, closed: Fact | None, found: list[Violation]
) -> None:
    """Every notice owed was given, once, in time, for a late step (``closed``: the
    case's first close, which ends its open steps' clocks)."""
    notices = [f for f in log.other if f.event_type in NOTICES]
    if not notices and not log.assigned:
        return
    decided: dict[int, datetime] = {}
    for outcome in log.outcomes:
        cause = outcome.causation_id
        if cause is not None and (cause.int not in decided or outcome.at < decided[cause.int]):
            decided[cause.int] = outcome.at
    steps = {t.event_id.int: _Step(t, decided.get(t.event_id.int)) for t in log.assigned}
    ended = closed.at if closed is not None else None
    given = _check_given(notices, steps, ended, timing, found)
    owed_by = now - timing.stall_after
    for step in steps.values():
        index = step.fact.step_index
        for kind in (MISSED, WARNING):
            if (index, kind) in given:
                continue
            at = step.time_of(kind)
            if at is None or at >= owed_by or not _late(step, at, ended):
                continue
            given.add((index, kind))  # one finding per step and kind
            found.append(
                step.fact.violation(
                    DEADLINE_NOT_ANNOUNCED,
                    f"step {index} undecided at {iso(at)}, and no {kind} was announced",
                )
            )


def _late(step: _Step, at: datetime, ended: datetime | None) -> bool:
    """The step was still undecided, and its clock running, at ``at``."""
    if step.decided is not None and step.decided <= at:
        return False
    return step.fact.review or ended is None or ended > at


def _check_given(
    notices: list[Fact],
    steps: dict[int, _Step],
    ended: datetime | None,
    timing: Timing,
    found: list[Violation],
) -> set[tuple[int | None, str]]:
    """Each notice given: for a task of the case, not before its time, for a late step,
    the first of its step and kind. Returns the (step, kind) pairs announced."""
    given: set[tuple[int | None, str]] = set()
    for fact in sorted(notices, key=lambda f: (f.at, f.event_id.int)):
        notice = _notice(fact)
        kind = fact.event_type
        cause = fact.causation_id
        step = steps.get(cause.int) if cause is not None else None
        if step is None or step.fact.step_index != notice.step_index:
            found.append(
                fact.violation(
                    DEADLINE_ANNOUNCED_WRONGLY,
                    f"{kind} of step {notice.step_index} names no task of that step",
                )
            )
            continue
        if (notice.step_index, kind) in given:
            found.append(
                fact.violation(
                    DEADLINE_ANNOUNCED_TWICE, f"a second {kind} for step {notice.step_index}"
                )
            )
            continue
        given.add((notice.step_index, kind))
        at = step.time_of(kind)
        if at is None:
            found.append(
                fact.violation(
                    DEADLINE_ANNOUNCED_WRONGLY,
                    f"{kind} for step {notice.step_index}, which was owed none",
                )
            )
        elif fact.at < at - timing.skew:
            found.append(
                fact.violation(
                    DEADLINE_ANNOUNCED_EARLY,
                    f"{kind} for step {notice.step_index} at {iso(fact.at)}, before {iso(at)}",
                )
            )
        elif not _late(step, at, ended):
            found.append(
                fact.violation(
                    DEADLINE_ANNOUNCED_WRONGLY,
                    f"{kind} for step {notice.step_index}, decided or closed by {iso(at)}",
                )
            )
    return given
