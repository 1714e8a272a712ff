"""The time rules of one case: clocks that disagree, closes after the promise, cases the
router left waiting, steps past their due date. Pure; ``CaseJudge`` runs them last."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from services.audit.projection import iso
from services.audit.verifier.report import (
    CLOCK_SKEW,
    LATE_CLOSE,
    STALLED_CASE,
    STEP_OVERDUE,
    Violation,
)
from shared.contracts.events import (
    CaseClosed,
    CaseRejected,
    CaseRouted,
    StepApproved,
    StepAssigned,
    StepRejected,
)

if TYPE_CHECKING:
    from collections.abc import Mapping

    from services.audit.verifier.facts import CaseLog, Fact, Routed
    from shared.platform.settings import Settings


@dataclass(frozen=True)
class Timing:
    """How verify judges time (``Settings.audit_clock_skew_s``, ``audit_stall_after_s``)."""

    skew: timedelta = timedelta(minutes=5)
    stall_after: timedelta = timedelta(minutes=15)

    @classmethod
    def of(cls, settings: Settings) -> Timing:
        return cls(
            timedelta(seconds=settings.audit_clock_skew_s),
            timedelta(seconds=settings.audit_stall_after_s),
        )


_ASSIGNED = StepAssigned.event_type
_APPROVED = StepApproved.event_type
_REJECTED = StepRejected.event_type
_CLOSED = CaseClosed.event_type
_ROUTED = CaseRouted.event_type
_ROUTER_REJECTED = CaseRejected.event_type


class CaseClock:
    """The time rules over one accepted case, once its other rules were judged."""

    def __init__(  # noqa: PLR0917 - the judged case's parts
        self,
        log: CaseLog,
        accepted: Fact,
        routed: Routed | None,
        settled: Fact | None,
        causes: Mapping[int, Fact],
        timing: Timing,
        found: list[Violation],
    ) -> None:
        """``causes``: what may cause an event of the case, by UUID.int of its event id
        (its acceptance, its tasks, its outcomes: the router's causation model)."""
        self.log = log
        self.causes = causes
        self.accepted = accepted
        self.routed = routed
        self.settled = settled  # the case's CaseRouted or CaseRejected fact, if any
        self.timing = timing
        self.found = found

    def check(
        self, now: datetime, close: Fact | None, deadline: datetime | None, waited: bool
    ) -> None:
        """``close``: the case's first close; ``deadline``: its promise; ``waited``: it
        waited for the applicant (an explained wait), which stops the centre's clock."""
        self._check_causes()
        late = False
        if close is not None and deadline is not None and not waited:
            on_spot = self.routed is not None and self.routed.settle_on_spot
            if not on_spot and close.at > deadline + self.timing.skew:
                late = True
                self.found.append(
                    close.violation(
                        LATE_CLOSE, f"closed {iso(close.at)}, after its promise {iso(deadline)}"
                    )
                )
        case_late = late or (close is None and deadline is not None and now > deadline)
        if not case_late:
            self._check_steps(now)
        if close is None and not waited:
            self._check_stalls(now)

    def _check_causes(self) -> None:
        """No event is dated before the event that caused it (beyond the skew)."""
        log, causes, skew = self.log, self.causes, self.timing.skew
        for facts in (
            log.routed,
            log.rejected,
            log.closed,
            log.assigned,
            log.advanced,
            log.outcomes,
            log.waiting,
            log.flagged,
            log.other,
        ):
            for fact in facts:
                cause = fact.causation_id
                before = causes.get(cause.int) if cause is not None else None
                if before is not None and before.at - fact.at > skew:
                    self._skewed(fact, before)

    def _skewed(self, fact: Fact, before: Fact) -> None:
        self.found.append(
            fact.violation(
                CLOCK_SKEW,
                f"{fact.event_type} dated {iso(fact.at)}, before its cause "
                f"{before.event_type} {before.event_id} dated {iso(before.at)}",
            )
        )

    def _check_steps(self, now: datetime) -> None:
        """Each step decided by its due date; an undecided one not past it."""
        answered: dict[int, Fact] = {}
        for outcome in self.log.outcomes:
            if outcome.causation_id is not None:
                answered.setdefault(outcome.causation_id.int, outcome)
        skew = self.timing.skew
        for task in self.log.assigned:
            due = task.head
            if not isinstance(due, datetime):
                continue
            decided = answered.get(task.event_id.int)
            if decided is not None:
                if decided.at > due + skew:
                    self.found.append(
                        decided.violation(
                            STEP_OVERDUE,
                            f"step {task.step_index} decided {iso(decided.at)}, "
                            f"after its due date {iso(due)}",
                        )
                    )
            elif now > due + skew:
                self.found.append(
                    task.violation(
                        STEP_OVERDUE,
                        f"step {task.step_index} undecided past its due date {iso(due)}",
                    )
                )

    def _check_stalls(self, now: datetime) -> None:
        """The router owes the case a move for longer than ``stall_after``."""
        limit = now - self.timing.stall_after
        # A move made by a record that failed its signature checks is reported there.
        tainted = {f.event_type: f for f in self.log.tainted.values()}
        if _CLOSED in tainted:
            return
        if self.settled is None and not {_ROUTED, _ROUTER_REJECTED} & tainted.keys():
            if self.accepted.at < limit:
                self.found.append(
                    self.accepted.violation(
                        STALLED_CASE,
                        f"accepted {iso(self.accepted.at)} and neither routed nor rejected",
                    )
                )
            return
        routed = self.routed
        if routed is None or routed.settle_on_spot:
            return
        moves = [*self.log.assigned, *(f for f in tainted.values() if f.event_type == _ASSIGNED)]
        followed = {f.causation_id.int for f in moves if f.causation_id is not None}
        tasks = {f.event_id.int for f in self.log.assigned}
        last = len(routed.steps) - 1
        for outcome in self.log.outcomes:
            cause = outcome.causation_id
            if outcome.at >= limit or cause is None or cause.int not in tasks:
                continue  # recent, or answers no task (reported as unassigned_outcome)
            if outcome.event_type == _APPROVED and outcome.step_index != last:
                if outcome.event_id.int not in followed:
                    self.found.append(
                        outcome.violation(
                            STALLED_CASE,
                            f"step {outcome.step_index} approved {iso(outcome.at)}, and step "
                            f"{(outcome.step_index or 0) + 1} never assigned",
                        )
                    )
            elif outcome.event_type in {_APPROVED, _REJECTED}:
                self.found.append(
                    outcome.violation(
                        STALLED_CASE,
                        f"{outcome.event_type} of step {outcome.step_index} at "
                        f"{iso(outcome.at)}, and the case never closed",
                    )
                )
