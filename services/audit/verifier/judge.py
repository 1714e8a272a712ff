"""Judging one accepted case: every rule from the whole case, by event ids, causation ids
and step indexes, whatever order the log came in (the replay's second pass)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from uuid import UUID

from services.audit.projection import iso
from services.audit.timeline import WAIT, last_wait
from services.audit.verifier.catalogued import outcomes_topic, slip_of, tasks_topic
from services.audit.verifier.clock import CaseClock, Timing
from services.audit.verifier.deadlines import check_notices, promise_problems
from services.audit.verifier.facts import (
    Accepted,
    Access,
    CaseLog,
    Closed,
    Fact,
    Rejected,
    Routed,
    fact_type,
    in_time_order,
    time_key,
)
from services.audit.verifier.report import (
    ACCESS_BY_WRONG_ROLE,
    ACCESS_WITHOUT_REASON,
    CATALOGUE_MISMATCH,
    CLOSED_TWICE,
    DUPLICATE_EVENT_CONFLICT,
    DUPLICATE_OUTCOME,
    INCONSISTENT_CLOSE,
    OVERDUE,
    REVIEW_FAILED,
    STEP_OUT_OF_ORDER,
    SUBJECT_MISMATCH,
    UNASSIGNED_OUTCOME,
    UNCAUSED_CLOSE,
    UNEXPLAINED_WAIT,
    Violation,
)
from shared.contracts import topology
from shared.contracts.access import needs_reason, role_problem
from shared.contracts.catalogue import Catalogue, Item
from shared.contracts.events import (
    CaseAccepted,
    CaseRouted,
    StepApproved,
    StepAssigned,
    StepNeedsInfo,
    StepOutcome,
    StepRejected,
)


def _particulars(fact: Fact) -> dict[str, object]:
    """What an acceptance, a task or an outcome says of its applicant and item, decoded
    again (only where the hashes of ``Fact`` differ), by the names a violation uses."""
    event = fact.event()
    if isinstance(event, StepOutcome):
        return {
            "item code": event.item_code,
            "applicant kind": event.applicant_kind,
            "applicant reference": event.applicant_ref,
        }
    assert isinstance(event, CaseAccepted | StepAssigned)
    return {
        "item code": event.item_code,
        "applicant kind": event.applicant.kind,
        "applicant reference": event.applicant.ref,
        "applicant name (sealed)": event.applicant.sealed.get("name"),
        "community code": event.community_code,
        "form": event.form,
    }


def _routable(item: Item | None, accepted: Fact) -> bool:
    """Whether the router must route (not reject) this application under ``item``."""
    if item is None or item.applicant_kind != accepted.payload(Accepted).applicant_kind:
        return False
    event = accepted.event()
    assert isinstance(event, CaseAccepted)
    return not item.validate_form(event.form)


def _slip(steps: list[tuple[str, str]]) -> str:
    return " > ".join(f"{d}/{a}" for d, a in steps) or "(empty)"


class CaseJudge:
    """The second pass, for one accepted case: every rule judged from the whole case,
    by event ids, causation ids and step indexes, whatever order the log came in."""

    def __init__(
        self,
        log: CaseLog,
        catalogue: Catalogue,
        found: list[Violation],
        timing: Timing | None = None,
        published: Mapping[str, Catalogue] | None = None,
    ) -> None:
        """``catalogue``: today's; ``published``: every catalogue version ever published,
        by version (today's included): a case is judged by the one that routed it."""
        self.log = log
        self.timing = timing or Timing()
        self.current = catalogue
        self.published = published or {catalogue.version: catalogue}
        self.found = found
        accepted = self._one(log.accepted, "accepted")
        assert accepted is not None
        self.accepted = accepted
        self.item_code = accepted.payload(Accepted).item_code
        self.routed_fact = self._one(log.routed, "routed")
        self.routed = self.routed_fact.payload(Routed) if self.routed_fact else None
        self.rejected_fact = self._one(log.rejected, "rejected by the router")
        version = (
            self.routed.catalogue_version
            if self.routed is not None
            else self.rejected_fact.payload(Rejected).catalogue_version
            if self.rejected_fact is not None
            else None
        )
        self.catalogue = self.published.get(version, catalogue) if version else catalogue
        self.item = self.catalogue.get(self.item_code)
        self.tainted = log.tainted
        # Keyed by UUID.int, as in Reader.
        self.assignments = {f.event_id.int: f for f in log.assigned}
        self.outcome_ids = {f.event_id.int: f for f in log.outcomes}
        # Every outcome counts for what follows it, even one reported as unassigned:
        # a violation is reported where it starts, not again at each consequence.
        self.approvals: dict[int, Fact] = {}
        self.step_rejected = False
        for fact in log.outcomes:
            if fact.event_type == StepApproved.event_type:
                self.approvals[fact.event_id.int] = fact
            elif fact.event_type == StepRejected.event_type:
                self.step_rejected = True

    def judge(self, now: datetime) -> None:
        self._check_routed()
        self._check_rejected()
        self._check_steps(self.log.assigned)
        self._check_steps(self.log.advanced)
        self._check_outcomes()
        if self.log.accesses:
            self._check_accesses()
        self._check_subjects()
        closes = in_time_order(self.log.closed)
        waits = self._check_waits(closes[0] if closes else None) if self.log.waiting else []
        if closes:
            first = closes[0].event_id
            if len(closes) > 1:
                self.found.extend(
                    extra.violation(CLOSED_TWICE, f"case already closed by {first}")
                    for extra in closes[1:]
                )
            self._check_close(closes[0])
        deadline = self._deadline()
        # Waiting for the applicant stops the centre's clock, but only an explained
        # wait that is still the case's last word does.
        if (
            not closes
            and deadline is not None
            and now > deadline
            and not self._still_waiting(waits)
        ):
            self.found.append(
                self.accepted.violation(OVERDUE, f"open past its promised time {iso(deadline)}")
            )
        settled = self.routed_fact or self.rejected_fact
        causes = {self.accepted.event_id.int: self.accepted, **self.assignments, **self.outcome_ids}
        clock = CaseClock(
            self.log, self.accepted, self.routed, settled, causes, self.timing, self.found
        )
        clock.check(now, closes[0] if closes else None, deadline, bool(waits))
        check_notices(self.log, now, self.timing, closes[0] if closes else None, self.found)

    def _one(self, facts: list[Fact], what: str) -> Fact | None:
        """The earliest of facts a case holds once; the others are reported."""
        if not facts:
            return None
        if len(facts) == 1:
            return facts[0]
        ordered = in_time_order(facts)
        first = ordered[0].event_id
        self.found.extend(
            extra.violation(
                DUPLICATE_EVENT_CONFLICT,
                f"the case was {what} again under another event id (first {first})",
            )
            for extra in ordered[1:]
        )
        return ordered[0]

    def _check_routed(self) -> None:
        if self.routed_fact is None or self.routed is None:
            return
        routed, item = self.routed, self.item
        if (
            item is not None
            and self.rejected_fact is None
            and routed.item_code == self.item_code
            and routed.catalogue_version in self.published
        ):
            # The usual case: the slip is the catalogue's to the letter (one comparison
            # of tuples); anything else is looked at rule by rule below.
            slip = slip_of(item)
            if (
                routed.steps == slip.steps
                and routed.settle_on_spot == slip.settle_on_spot
                and slip.applicant_kind == self.accepted.payload(Accepted).applicant_kind
                and not promise_problems(routed, item.promised_days, self.accepted.at)
            ):
                return
        problems: list[str] = []
        if routed.catalogue_version not in self.published:
            problems.append(
                f"routed by catalogue {routed.catalogue_version}, which was never published "
                f"(today's is {self.current.version})"
            )
        if routed.item_code != self.item_code:
            problems.append(f"routed item {routed.item_code}, but {self.item_code} came in")
        if item is None:
            problems.append(f"item {self.item_code} is not in the catalogue")
        else:
            expected = [(s.department, s.action) for s in item.steps]
            actual = [(department, action) for _, department, action in routed.steps]
            indexes = [index for index, _, _ in routed.steps]
            if actual != expected or indexes != list(range(len(actual))):
                problems.append(f"slip {_slip(actual)} is not the catalogue's {_slip(expected)}")
            if routed.settle_on_spot != item.settle_on_spot:
                problems.append(f"settle_on_spot {routed.settle_on_spot} is not the catalogue's")
            problems += promise_problems(routed, item.promised_days, self.accepted.at)
            if item.applicant_kind != self.accepted.payload(Accepted).applicant_kind or (
                # The form check is the costly part: run it where it settles a dispute.
                self.rejected_fact is not None
                and not problems
                and not _routable(item, self.accepted)
            ):
                problems.append("the catalogue rejects this application, yet it was routed")
        if problems:
            self.found.append(self.routed_fact.violation(CATALOGUE_MISMATCH, "; ".join(problems)))

    def _check_rejected(self) -> None:
        if self.rejected_fact is None:
            return
        rejected = self.rejected_fact.payload(Rejected)
        detail: str | None = None
        if rejected.catalogue_version not in self.published:
            detail = (
                f"rejected by catalogue {rejected.catalogue_version}, which was never "
                f"published (today's is {self.current.version})"
            )
        elif _routable(self.item, self.accepted):
            detail = (
                f"rejected as {rejected.reason_code}, but the catalogue routes this application"
            )
        if detail is not None:
            self.found.append(self.rejected_fact.violation(CATALOGUE_MISMATCH, detail))

    def _assignment_problems(self, step: Fact) -> list[str]:
        problems: list[str] = []
        routed, index = self.routed, step.step_index
        assert index is not None
        if routed is None:
            if not self._tainted_kind(CaseRouted.event_type):
                problems.append("the case has no routing slip (no CaseRouted)")
        elif index >= len(routed.steps):
            problems.append(f"step {index} is beyond the {len(routed.steps)}-step slip")
        else:
            _, department, action = routed.steps[index]
            if (department, action) != (step.department, step.action):
                problems.append(
                    f"step {index} is {step.department}/{step.action}, "
                    f"the slip says {department}/{action}"
                )
            if step.review != routed.settle_on_spot:
                problems.append(
                    "a review of a case not settled on the spot"
                    if step.review
                    else "a decision on a case already settled on the spot"
                )
        cause = self._cause_problem(step, index)
        if cause is not None:
            problems.append(cause)
        if step.event_type == StepAssigned.event_type and step.department is not None:
            expected_topic = tasks_topic(step.department)
            if step.topic != expected_topic:
                problems.append(f"published on {step.topic}, not {expected_topic}")
        return problems

    def _cause_problem(self, step: Fact, index: int) -> str | None:
        """A step is caused by the acceptance (step 0) or the previous step's approval."""
        cause = step.causation_id
        if self._tainted(cause):
            return None  # caused by a record that failed its signature checks: reported there
        if index == 0:
            if cause is None or cause.int != self.accepted.event_id.int:
                return "step 0 was not caused by the case's acceptance"
            return None
        approval = self.approvals.get(cause.int) if cause is not None else None
        if approval is None or approval.step_index != index - 1:
            return f"assigned without an approval of step {index - 1}"
        return None

    def _check_steps(self, facts: list[Fact]) -> None:
        """StepAssigned (or CaseAdvanced) records: each fits the slip and follows the
        previous step's approval; no step is assigned twice."""
        fitting: dict[int, list[Fact]] = {}
        for step in facts:
            problems = self._assignment_problems(step)
            if problems:
                self.found.append(step.violation(STEP_OUT_OF_ORDER, "; ".join(problems)))
            else:
                assert step.step_index is not None
                fitting.setdefault(step.step_index, []).append(step)
        for index, group in fitting.items():
            if len(group) == 1:
                continue
            ordered = in_time_order(group)
            first = ordered[0]
            verb = "assigned" if first.event_type == StepAssigned.event_type else "advanced"
            self.found.extend(
                extra.violation(
                    STEP_OUT_OF_ORDER, f"step {index} was already {verb} by {first.event_id}"
                )
                for extra in ordered[1:]
            )

    def _check_outcomes(self) -> None:
        answered: dict[int, list[Fact]] = {}
        on_spot = self.routed is not None and self.routed.settle_on_spot
        for outcome in self.log.outcomes:
            problems = self._outcome_problems(outcome)
            if problems:
                self.found.append(outcome.violation(UNASSIGNED_OUTCOME, "; ".join(problems)))
            else:
                assert outcome.step_index is not None
                answered.setdefault(outcome.step_index, []).append(outcome)
            if on_spot and outcome.event_type == StepRejected.event_type:
                detail = (
                    f"review of step {outcome.step_index} by {outcome.department} "
                    f"failed: {outcome.head}"
                )
                self.found.append(outcome.violation(REVIEW_FAILED, detail, severity="flag"))
        for index, group in answered.items():
            if len(group) == 1:
                continue
            ordered = in_time_order(group)
            first = ordered[0].event_id
            self.found.extend(
                extra.violation(DUPLICATE_OUTCOME, f"step {index} already decided by {first}")
                for extra in ordered[1:]
            )

    def _outcome_problems(self, outcome: Fact) -> list[str]:
        problems: list[str] = []
        cause = outcome.causation_id
        task = self.assignments.get(cause.int) if cause is not None else None
        if task is None and self._tainted(cause):
            pass  # answers a task that failed its signature checks: reported there
        elif task is None:
            problems.append(f"step {outcome.step_index} outcome answers no assignment of the case")
        elif (task.step_index, task.department, task.action, task.review) != (
            outcome.step_index,
            outcome.department,
            outcome.action,
            outcome.review,
        ):
            problems.append(
                f"outcome of step {outcome.step_index} by {outcome.department} answers "
                f"the assignment of step {task.step_index} to {task.department}"
            )
        expected_topic = outcomes_topic(outcome.department or "")
        if outcome.topic != expected_topic:
            problems.append(f"outcome of {outcome.department} published on {outcome.topic}")
        return problems

    def _check_waits(self, close: Fact | None) -> list[Fact]:
        """CaseAwaitingInfo records: each follows (is caused by) a StepNeedsInfo of the
        same step, from the department assigned that step, on a case not settled on the
        spot (its review is flagged instead) and not closed before (``close``: the
        case's first close); one wait per StepNeedsInfo, a second being reported as a
        step's second assignment is. Returns the explained ones."""
        outcomes = self.outcome_ids
        fitting: dict[int, list[Fact]] = {}
        for wait in self.log.waiting:
            problems = self._wait_problems(wait, outcomes, close)
            if problems:
                self.found.append(wait.violation(UNEXPLAINED_WAIT, "; ".join(problems)))
            else:
                assert wait.causation_id is not None
                fitting.setdefault(wait.causation_id.int, []).append(wait)
        explained: list[Fact] = []
        for group in fitting.values():
            ordered = in_time_order(group)
            explained.append(ordered[0])
            first = ordered[0].event_id
            self.found.extend(
                extra.violation(
                    UNEXPLAINED_WAIT,
                    f"the case already waits at step {extra.step_index} on this "
                    f"StepNeedsInfo (by {first})",
                )
                for extra in ordered[1:]
            )
        return explained

    def _wait_problems(
        self, wait: Fact, outcomes: dict[int, Fact], close: Fact | None
    ) -> list[str]:
        problems: list[str] = []
        cause = wait.causation_id
        asked = outcomes.get(cause.int) if cause is not None else None
        if asked is None and self._tainted(cause):
            pass  # follows a record that failed its signature checks: reported there
        elif asked is None or asked.event_type != StepNeedsInfo.event_type:
            problems.append(f"waits at step {wait.step_index} without a StepNeedsInfo behind it")
        else:
            problems += self._asked_problems(wait, asked)
        if self.routed is not None and self.routed.settle_on_spot:
            problems.append(
                "the case was settled on the spot: a review that needs information is "
                "flagged, the case never waits"
            )
        if close is not None and time_key(close) < time_key(wait):
            problems.append(f"waits after the case was closed by {close.event_id}")
        return problems

    def _asked_problems(self, wait: Fact, asked: Fact) -> list[str]:
        """A wait against the StepNeedsInfo it names as its cause."""
        problems: list[str] = []
        if (asked.step_index, asked.department) != (wait.step_index, wait.department):
            problems.append(
                f"waits at step {wait.step_index} for {wait.department}, but the "
                f"StepNeedsInfo is of step {asked.step_index} by {asked.department}"
            )
        task = self.assignments.get(asked.causation_id.int) if asked.causation_id else None
        if task is None or (task.step_index, task.department) != (
            asked.step_index,
            asked.department,
        ):
            problems.append(
                f"{asked.department} was not assigned step {asked.step_index}, "
                "yet the case waits on its StepNeedsInfo"
            )
        return problems

    def _still_waiting(self, explained: list[Fact]) -> bool:
        """Whether an explained wait is the case's last word (``timeline.last_wait``, as
        the projection's ``waiting_info``): the waits that are not explained neither
        start nor end one."""
        if not explained:
            return False
        timeline = [f for f in self.log.everything() if f.event_type != WAIT]
        timeline += explained
        timeline.sort(key=time_key)
        return last_wait(timeline, fact_type) is not None

    def _tainted(self, cause: UUID | None) -> bool:
        """Whether ``cause`` names a record of the case that failed its signature checks."""
        return cause is not None and cause.int in self.tainted

    def _tainted_kind(self, event_type: str) -> bool:
        return any(f.event_type == event_type for f in self.tainted.values())

    def _check_subjects(self) -> None:
        """Every task and every outcome is about the accepted case's applicant and item
        (a task also carries its name, community and form unchanged)."""
        mine = self.accepted
        accepted: dict[str, object] | None = None
        for fact in (*self.log.assigned, *self.log.outcomes):
            if fact.subject == mine.subject and fact.particulars in (None, mine.particulars):
                continue
            if accepted is None:
                accepted = _particulars(mine)
            theirs = _particulars(fact)
            differ = [name for name, value in theirs.items() if accepted[name] != value]
            if not differ:
                continue  # the same, spelt otherwise (a form's keys in another order)
            detail = f"{fact.event_type} of step {fact.step_index} carries another " + (
                ", ".join(differ) + " than the accepted case"
            )
            if "item code" in differ:
                detail += f" (item {theirs['item code']}, not {accepted['item code']})"
            self.found.append(fact.violation(SUBJECT_MISMATCH, detail))

    def _close_cause_problem(self, close: Fact, closed: Closed) -> str | None:
        """Whether the close follows from the decision that ends the case: the
        acceptance for a case settled on the spot or rejected by the router, the
        department's rejection, or the approval of the slip's last step."""
        cause = close.causation_id
        decision = None
        if cause is not None:
            decision = self.outcome_ids.get(cause.int)
        if closed.on_spot or self.rejected_fact is not None:
            if cause is None or cause.int != self.accepted.event_id.int:
                return "a close on the spot or after the router's rejection follows the acceptance"
            return None
        if decision is None:
            return f"closed {closed.outcome}, caused by {cause}, which is no decision of the case"
        last = len(self.routed.steps) - 1 if self.routed is not None else 0
        if closed.outcome == "rejected":
            wrong = decision.event_type != StepRejected.event_type
        else:
            wrong = decision.event_type != StepApproved.event_type or decision.step_index != last
        if not wrong:
            return None
        ends = (
            "a rejection"
            if closed.outcome == "rejected"
            else f"the approval of the last step {last}"
        )
        return (
            f"closed {closed.outcome}, caused by the {decision.event_type} of step "
            f"{decision.step_index}, not by {ends}"
        )

    def _check_close(self, close: Fact) -> None:
        if self._tainted(close.causation_id):
            return  # follows a record that failed its signature checks: reported there
        closed = close.payload(Closed)
        routed = self.routed
        problem: str | None = None
        if closed.on_spot:
            if routed is None or not routed.settle_on_spot or closed.outcome != "approved":
                problem = (
                    f"closed {closed.outcome} on the spot, "
                    "but only an approval of a settle-on-spot item closes on the spot"
                )
        elif closed.outcome == "approved":
            if routed is None:
                problem = "closed approved without a routing slip"
            else:
                approved = {a.step_index for a in self.approvals.values()}
                # An approval that failed its signature checks is reported there.
                approved |= {
                    f.step_index
                    for f in self.tainted.values()
                    if f.event_type == StepApproved.event_type
                }
                missing = [str(i) for i in range(len(routed.steps)) if i not in approved]
                if missing:
                    problem = f"closed approved, but step(s) {', '.join(missing)} never approved"
        elif not self.step_rejected and self.rejected_fact is None:
            problem = "closed rejected, but neither a department nor the router rejected it"
        if problem is not None:
            self.found.append(close.violation(INCONSISTENT_CLOSE, problem))
            return
        problem = self._close_cause_problem(close, closed)
        if problem is not None:
            self.found.append(close.violation(UNCAUSED_CLOSE, problem))

    def _check_accesses(self) -> None:
        """PersonalDataAccessed records: each read by a role its service shows cases to
        (a clerk only its own centre's, a citizen only their own), with a reason where
        the reader must give one (``shared.contracts.access``). Who signed it is the
        signer rule's business."""
        accepted = self.accepted.payload(Accepted)
        centre = accepted.centre_id
        services = topology.access_topics()
        for fact in self.log.accesses:
            read = fact.payload(Access)
            service = services.get(fact.topic)
            wrong = (
                f"recorded on {fact.topic}, which is no access topic"
                if service is None
                else role_problem(
                    service,
                    read.role,
                    read.accessor_centre,
                    centre,
                    accessor=read.accessor,
                    case_receipt=accepted.receipt_no,
                )
            )
            if wrong is not None:
                self.found.append(fact.violation(ACCESS_BY_WRONG_ROLE, f"{read.accessor}: {wrong}"))
            required = needs_reason(read.role, read.accessor_centre, centre)
            if required and not (read.reason or "").strip():
                self.found.append(
                    fact.violation(
                        ACCESS_WITHOUT_REASON,
                        f"{read.accessor} ({read.role}) read the case without a reason",
                    )
                )

    def _deadline(self) -> datetime | None:
        if self.routed is not None:
            return self.routed.promised_by
        if self.item is None:
            return None
        return self.accepted.at + timedelta(days=self.item.promised_days)
