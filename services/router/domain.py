"""Routing rules: pure functions from a case's state and an event to the next state and
the events to emit. No I/O here; ``handlers.py`` loads and saves the state.

The routing slip is the catalogue item's ordered steps. Step i+1 is assigned only after
step i is approved; any rejection closes the case as rejected with its reason. A
settle-on-spot item closes at once as approved and its steps still go to the
departments, in order, as reviews; a failed review is flagged, the case stays closed.
A step answered with "needs information" holds an open case in ``waiting_info`` at that
step (CaseAwaitingInfo), where no department outcome is taken; on an on-the-spot case
the review is flagged instead (the case stays closed as approved).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from datetime import datetime
from typing import Literal
from uuid import UUID

from shared.contracts.catalogue import Catalogue
from shared.contracts.events import (
    CaseAccepted,
    CaseAdvanced,
    CaseAwaitingInfo,
    CaseClosed,
    CaseRejected,
    CaseReviewFlagged,
    CaseRouted,
    Event,
    RoutedStep,
    SealedApplicant,
    StepApproved,
    StepAssigned,
    StepNeedsInfo,
    StepOutcome,
    StepRejected,
    parse_event,
)
from shared.contracts.topology import CASES_ROUTING, dept_tasks
from shared.contracts.workdays import CalendarError, Deadline, Workdays, workdays_for

PRODUCER = "router"
REVIEW_DAYS = 5  # working days a department has to review an on-the-spot approval
# reason_code of the flag raised when a review cannot be done without more information
REVIEW_NEEDS_INFO = "needs_info"

Emit = tuple[str, Event]
Status = Literal["in_progress", "waiting_info", "closed"]


class RoutingViolationError(ValueError):
    """An outcome that does not fit the case's slip (unknown case, wrong step or department).

    Never applied: the record goes to the dead-letter queue with this message.
    """


@dataclass(frozen=True)
class CaseState:
    case_id: UUID
    correlation_id: UUID
    item_code: str
    catalogue_version: str
    steps: tuple[RoutedStep, ...]
    # The CaseAccepted that opened the case, as its wire bytes: only a step after the
    # first needs its contents, so most outcomes never pay for parsing it.
    accepted_wire: bytes
    status: Status
    on_spot: bool
    # The step in hand: awaiting its outcome, or (waiting_info) the applicant's
    # information; None when none is.
    current_step: int | None
    outcome: Literal["approved", "rejected"] | None
    promised_by: datetime
    # When one working day of the promise is left (the steps' warning time); None for a
    # case routed before promises were counted in working days.
    warn_at: datetime | None = None
    working_days: int | None = None  # the promise in working days (None: as warn_at)

    @property
    def closed(self) -> bool:
        return self.status == "closed"

    def accepted(self) -> CaseAccepted:
        event = parse_event(self.accepted_wire)
        if not isinstance(event, CaseAccepted):
            raise RoutingViolationError(f"case {self.case_id} holds a {event.event_type}")
        return event


# What department rules read of the applicant (shared.department.decisions.TaskFacts):
# the name and the ID number. The phone stays with intake, which alone contacts people.
DEPARTMENT_FIELDS = ("name", "id_number")


def for_departments(applicant: SealedApplicant) -> SealedApplicant:
    """The applicant as a task carries it: only the sealed fields departments use, each
    copied byte for byte (the router holds no key and opens nothing)."""
    sealed = {f: applicant.sealed[f] for f in DEPARTMENT_FIELDS if f in applicant.sealed}
    return applicant.model_copy(update={"sealed": sealed})


def _assign(
    state: CaseState,
    accepted: CaseAccepted,
    index: int,
    cause: Event,
    now: datetime,
    *,
    workdays: Workdays,
    follows: str | None,
) -> list[Emit]:
    step = state.steps[index]
    review = state.on_spot
    warn_at: datetime | None
    if review:
        promise = _count(workdays, now, REVIEW_DAYS)
        due, warn_at = promise.due_by, promise.warn_at
    else:
        # A step of an open case shares the case's promise (the catalogue promises the
        # item, not each step); a later step has what is left of it.
        due, warn_at = state.promised_by, state.warn_at
    due = max(due, now)
    env = cause.caused()
    emits: list[Emit] = [
        (
            dept_tasks(step.department),
            StepAssigned(
                **env,
                producer=PRODUCER,
                step_index=index,
                department=step.department,
                action=step.action,
                item_code=state.item_code,
                applicant=for_departments(accepted.applicant),
                community_code=accepted.community_code,
                form=accepted.form,
                review=review,
                follows_department=follows,
                due_by=due,
                working_days=REVIEW_DAYS if review else state.working_days,
                warn_at=None if warn_at is None else min(max(warn_at, now), due),
            ),
        )
    ]
    if index > 0:
        # Step 0 goes out with the slip: CaseRouted already says which department has it.
        emits.append(
            (
                CASES_ROUTING,
                CaseAdvanced(
                    **env,
                    producer=PRODUCER,
                    step_index=index,
                    department=step.department,
                    action=step.action,
                    review=review,
                ),
            )
        )
    return emits


def _count(workdays: Workdays, start: datetime, days: int) -> Deadline:
    try:
        return workdays.deadline(start, days)
    except CalendarError as exc:  # a year without its calendar file: dead-lettered, loudly
        raise RoutingViolationError(str(exc)) from None


def route(
    accepted: CaseAccepted,
    catalogue: Catalogue,
    now: datetime,
    workdays: Workdays | None = None,
) -> tuple[CaseState | None, list[Emit]]:
    """A new case: write its slip and assign step 0, or reject it with a reason.
    ``workdays``: the calendar promises are counted on (default: the shipped one)."""
    workdays = workdays or workdays_for(None, None)
    env = accepted.caused()
    item = catalogue.get(accepted.item_code)
    problem: tuple[str, str, str] | None = None
    if item is None:
        problem = ("unknown_item", f"no item {accepted.item_code!r} in the catalogue", "item_code")
    elif item.applicant_kind != accepted.applicant.kind:
        problem = (
            "wrong_applicant_kind",
            f"item {item.code} is for {item.applicant_kind} persons, "
            f"not {accepted.applicant.kind} persons",
            "applicant.kind",
        )
    else:
        errors = item.validate_form(accepted.form)
        if errors:
            name, message = sorted(errors.items())[0]
            missing = "required" in message
            problem = (
                "missing_field" if missing else "invalid_field",
                f"form.{name}: {message}",
                f"form.{name}",
            )
    if problem is not None or item is None:
        assert problem is not None
        code, message, field = problem
        return None, [
            (
                CASES_ROUTING,
                CaseRejected(
                    **env,
                    producer=PRODUCER,
                    reason_code=code,
                    message=message,
                    field=field,
                    catalogue_version=catalogue.version,
                ),
            ),
            (
                CASES_ROUTING,
                CaseClosed(
                    **env, producer=PRODUCER, outcome="rejected", reason_code=code, message=message
                ),
            ),
        ]
    steps = tuple(
        RoutedStep(index=i, department=s.department, action=s.action)
        for i, s in enumerate(item.steps)
    )
    promise = _count(workdays, accepted.occurred_at, item.promised_days)
    state = CaseState(
        case_id=accepted.case_id,
        correlation_id=accepted.correlation_id,
        item_code=item.code,
        catalogue_version=catalogue.version,
        steps=steps,
        accepted_wire=accepted.to_json(),
        status="closed" if item.settle_on_spot else "in_progress",
        on_spot=item.settle_on_spot,
        current_step=0,
        outcome="approved" if item.settle_on_spot else None,
        promised_by=promise.due_by,
        warn_at=promise.warn_at,
        working_days=item.promised_days,
    )
    emits: list[Emit] = [
        (
            CASES_ROUTING,
            CaseRouted(
                **env,
                producer=PRODUCER,
                item_code=item.code,
                catalogue_version=catalogue.version,
                steps=steps,
                settle_on_spot=item.settle_on_spot,
                promised_by=promise.due_by,
                working_days=item.promised_days,
            ),
        )
    ]
    if item.settle_on_spot:
        emits.append(
            (
                CASES_ROUTING,
                CaseClosed(**env, producer=PRODUCER, outcome="approved", on_spot=True),
            )
        )
    emits += _assign(state, accepted, 0, accepted, now, workdays=workdays, follows=None)
    return state, emits


def on_outcome(
    state: CaseState | None,
    outcome: StepOutcome,
    now: datetime,
    workdays: Workdays | None = None,
) -> tuple[CaseState, list[Emit]]:
    """A department decided a step: advance the slip, close the case, or flag a review."""
    workdays = workdays or workdays_for(None, None)
    if state is None:
        raise RoutingViolationError(f"outcome for unknown case {outcome.case_id}")
    if state.current_step is None or outcome.step_index != state.current_step:
        raise RoutingViolationError(
            f"outcome for step {outcome.step_index}, but the case awaits "
            f"{'no step' if state.current_step is None else f'step {state.current_step}'}"
        )
    step = state.steps[outcome.step_index]
    if outcome.department != step.department:
        raise RoutingViolationError(
            f"step {step.index} belongs to {step.department}, not {outcome.department}"
        )
    if state.status == "waiting_info":
        # The step waits for the applicant, not for its department: until the supplement
        # re-assigns it, a second answer for it is out of turn.
        raise RoutingViolationError(
            f"outcome for step {outcome.step_index}, but the case waits for information "
            "at that step; no outcome is awaited"
        )
    env = outcome.caused()
    if isinstance(outcome, StepNeedsInfo):
        return _needs_info(state, step, outcome)
    if isinstance(outcome, StepRejected):
        if state.on_spot:
            return _review_flagged(state, step, outcome, outcome.reason_code, outcome.message)
        return replace(state, status="closed", outcome="rejected", current_step=None), [
            (
                CASES_ROUTING,
                CaseClosed(
                    **env,
                    producer=PRODUCER,
                    outcome="rejected",
                    reason_code=outcome.reason_code,
                    message=outcome.message,
                    department=step.department,
                ),
            )
        ]
    assert isinstance(outcome, StepApproved)
    following = step.index + 1
    if following < len(state.steps):
        advanced = replace(state, current_step=following)
        return advanced, _assign(
            advanced,
            state.accepted(),
            following,
            outcome,
            now,
            workdays=workdays,
            follows=step.department,
        )
    if state.on_spot:
        return replace(state, current_step=None), []
    return replace(state, status="closed", outcome="approved", current_step=None), [
        (
            CASES_ROUTING,
            CaseClosed(**env, producer=PRODUCER, outcome="approved", department=step.department),
        )
    ]


def _review_flagged(
    state: CaseState, step: RoutedStep, outcome: StepOutcome, reason_code: str, message: str
) -> tuple[CaseState, list[Emit]]:
    """An on-the-spot case's review did not pass: flagged for follow-up, the case stays
    closed as approved, and no later review step is assigned."""
    flagged = CaseReviewFlagged(
        **outcome.caused(),
        producer=PRODUCER,
        step_index=step.index,
        department=step.department,
        reason_code=reason_code,
        message=message,
    )
    return replace(state, current_step=None), [(CASES_ROUTING, flagged)]


def _needs_info(
    state: CaseState, step: RoutedStep, outcome: StepNeedsInfo
) -> tuple[CaseState, list[Emit]]:
    """The department cannot decide the step without more from the applicant.

    An open case waits at that step (``waiting_info``, CaseAwaitingInfo says so and
    what is missing); the step stays current so the supplement can resume it. An
    on-the-spot case is already closed as approved and stays so: its review could not
    be done, which is flagged for follow-up like a failed review, and no later review
    step is assigned.
    """
    env = outcome.caused()
    if state.on_spot:
        message = f"{outcome.message} (missing: {', '.join(outcome.missing)})"
        return _review_flagged(state, step, outcome, REVIEW_NEEDS_INFO, message)
    return replace(state, status="waiting_info"), [
        (
            CASES_ROUTING,
            CaseAwaitingInfo(
                **env,
                producer=PRODUCER,
                step_index=step.index,
                department=step.department,
                missing=outcome.missing,
                message=outcome.message,
            ),
        )
    ]
