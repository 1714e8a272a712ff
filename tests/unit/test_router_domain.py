"""The routing rules, with plain values: no broker, no database."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from uuid import uuid4

import pytest

from services.router.domain import CaseState, RoutingViolationError, on_outcome, route
from shared.contracts.catalogue import Catalogue
from shared.contracts.events import (
    Applicant,
    CaseAccepted,
    CaseAdvanced,
    CaseAwaitingInfo,
    CaseClosed,
    CaseRejected,
    CaseReviewFlagged,
    CaseRouted,
    Event,
    StepApproved,
    StepAssigned,
    StepNeedsInfo,
    StepOutcome,
    StepRejected,
)
from tests.support.builders import TEST_SECRET, sealed

pytestmark = pytest.mark.unit

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
PERSON = Applicant(
    kind="natural", name="Li Hua", id_number="11010519491231002X", phone="13800138000"
)
BENEFIT_FORM = {
    "last_employer": "X",
    "separation_date": "2026-09-30",
    "insured_months": 40,
    "education": "college",
    "desired_occupation": "cook",
}


def accepted(item: str, form: Mapping[str, object], applicant: Applicant = PERSON) -> CaseAccepted:
    eid = uuid4()
    case_id = uuid4()
    return CaseAccepted(
        event_id=eid,
        case_id=case_id,
        correlation_id=eid,
        producer="intake",
        item_code=item,
        applicant=sealed(applicant, case_id),
        community_code="110105001001",
        form=dict(form),
        centre_id="C01",
        window_id="W01",
        channel="window",
        receipt_no="C01-20261127-000001",
        occurred_at=NOW,
    )


def types(emits: list[tuple[str, Event]]) -> list[tuple[str, str]]:
    return [(topic, e.event_type) for topic, e in emits]


def outcome(
    state: CaseState, cls: type[StepOutcome], department: str, step: int, **kw: Any
) -> StepOutcome:
    return cls(
        case_id=state.case_id,
        correlation_id=state.correlation_id,
        producer=department,
        step_index=step,
        department=department,
        action=state.steps[step].action,
        item_code=state.item_code,
        applicant_ref=TEST_SECRET.subject_ref(PERSON.id_number),
        applicant_kind=PERSON.kind,
        **kw,
    )


def decide(
    state: CaseState, cls: type[StepOutcome], department: str, **kw: Any
) -> tuple[CaseState, list[tuple[str, Event]]]:
    assert state.current_step is not None
    return on_outcome(state, outcome(state, cls, department, state.current_step, **kw), NOW)


def test_two_step_slip_assigns_step_two_only_after_step_one(catalogue: Catalogue) -> None:
    state, emits = route(accepted("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM), catalogue, NOW)
    assert state is not None
    assert types(emits) == [
        ("cases.routing", "CaseRouted"),
        ("dept.hr_registration.tasks", "StepAssigned"),
    ]
    routed = emits[0][1]
    assert isinstance(routed, CaseRouted)
    assert routed.catalogue_version == catalogue.version
    state, emits = decide(state, StepApproved, "hr_registration")
    assert types(emits) == [
        ("dept.social_security.tasks", "StepAssigned"),
        ("cases.routing", "CaseAdvanced"),
    ]
    task = emits[0][1]
    assert isinstance(task, StepAssigned)
    assert (task.step_index, task.follows_department) == (1, "hr_registration")
    state, emits = decide(state, StepApproved, "social_security")
    closed = emits[0][1]
    assert isinstance(closed, CaseClosed)
    assert (closed.outcome, closed.on_spot, closed.department) == (
        "approved",
        False,
        "social_security",
    )
    assert state.closed


def test_any_rejection_closes_the_case_with_its_reason(catalogue: Catalogue) -> None:
    state, _ = route(accepted("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM), catalogue, NOW)
    assert state is not None
    state, emits = decide(
        state, StepRejected, "hr_registration", reason_code="already_registered", message="m"
    )
    assert len(emits) == 1
    closed = emits[0][1]
    assert isinstance(closed, CaseClosed)
    assert (closed.outcome, closed.reason_code) == ("rejected", "already_registered")
    assert state.current_step is None


@pytest.mark.parametrize(
    ("item", "form", "reason", "field"),
    [
        ("NO-SUCH-ITEM", {}, "unknown_item", "item_code"),
        (
            "SS-COMPANY-INSURANCE-REGISTRATION",
            {},
            "wrong_applicant_kind",
            "applicant.kind",
        ),
        (
            "SS-UNEMPLOYMENT-BENEFIT",
            {**BENEFIT_FORM, "insured_months": None},
            "missing_field",
            "form.insured_months",
        ),
        (
            "SS-UNEMPLOYMENT-BENEFIT",
            {**BENEFIT_FORM, "insured_months": "many"},
            "invalid_field",
            "form.insured_months",
        ),
    ],
)
def test_unroutable_cases_are_rejected_and_closed(
    catalogue: Catalogue, item: str, form: dict[str, object], reason: str, field: str
) -> None:
    state, emits = route(accepted(item, form), catalogue, NOW)
    assert state is None
    assert types(emits) == [("cases.routing", "CaseRejected"), ("cases.routing", "CaseClosed")]
    rejected = emits[0][1]
    assert isinstance(rejected, CaseRejected)
    assert (rejected.reason_code, rejected.field) == (reason, field)


def test_on_the_spot_item_closes_at_once_and_is_still_reviewed(catalogue: Catalogue) -> None:
    form = {"employer_name": "X", "employment_start_date": "2026-11-01"}
    state, emits = route(accepted("HR-EMPLOYMENT-REGISTRATION", form), catalogue, NOW)
    assert state is not None
    assert types(emits)[:2] == [("cases.routing", "CaseRouted"), ("cases.routing", "CaseClosed")]
    closed = emits[1][1]
    assert isinstance(closed, CaseClosed)
    assert closed.on_spot
    task = emits[2][1]
    assert isinstance(task, StepAssigned)
    assert task.review
    # A failed review is flagged; the case is not closed a second time.
    state, emits = decide(state, StepRejected, "hr_registration", reason_code="bad", message="m")
    assert types(emits) == [("cases.routing", "CaseReviewFlagged")]
    assert isinstance(emits[0][1], CaseReviewFlagged)
    assert state.outcome == "approved"


def test_outcomes_that_do_not_fit_the_slip_are_violations(catalogue: Catalogue) -> None:
    state, _ = route(accepted("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM), catalogue, NOW)
    assert state is not None
    with pytest.raises(RoutingViolationError, match="belongs to hr_registration"):
        decide(state, StepApproved, "social_security")
    done, _ = decide(state, StepRejected, "hr_registration", reason_code="r", message="m")
    with pytest.raises(RoutingViolationError, match="awaits no step"):
        on_outcome(done, outcome(done, StepApproved, "hr_registration", 0), NOW)
    with pytest.raises(RoutingViolationError, match="unknown case"):
        on_outcome(None, outcome(state, StepApproved, "hr_registration", 0), NOW)


def test_every_step_assignment_is_announced_on_cases_routing(catalogue: Catalogue) -> None:
    # Step 0 is announced by the slip itself (CaseRouted); each later step by CaseAdvanced.
    state, emits = route(accepted("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM), catalogue, NOW)
    assert state is not None
    routed = [e for _, e in emits if isinstance(e, CaseRouted)]
    assert [s.department for s in routed[0].steps][:1] == ["hr_registration"]
    assert not [e for _, e in emits if isinstance(e, CaseAdvanced)]
    _, emits = decide(state, StepApproved, "hr_registration")
    advanced = [e for _, e in emits if isinstance(e, CaseAdvanced)]
    assert [(a.step_index, a.department) for a in advanced] == [(1, "social_security")]


def test_needs_info_parks_the_case_at_its_step_with_an_event(catalogue: Catalogue) -> None:
    state, _ = route(accepted("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM), catalogue, NOW)
    assert state is not None
    state, _ = decide(state, StepApproved, "hr_registration")
    asked = outcome(
        state, StepNeedsInfo, "social_security", 1, missing=("bank_account",), message="m"
    )
    waiting, emits = on_outcome(state, asked, NOW)
    assert types(emits) == [("cases.routing", "CaseAwaitingInfo")]
    event = emits[0][1]
    assert isinstance(event, CaseAwaitingInfo)
    assert (event.step_index, event.department, event.missing, event.message) == (
        1,
        "social_security",
        ("bank_account",),
        "m",
    )
    assert (event.causation_id, event.case_id, event.correlation_id) == (
        asked.event_id,
        state.case_id,
        state.correlation_id,
    )
    assert (waiting.status, waiting.current_step, waiting.outcome) == ("waiting_info", 1, None)
    assert not waiting.closed
    # No department outcome is awaited while the applicant is: a second answer for the
    # step, of any kind, is a violation (dead-lettered), and so is one for another step.
    for cls, kw in (
        (StepApproved, {}),
        (StepRejected, {"reason_code": "r", "message": "m"}),
        (StepNeedsInfo, {"missing": ("bank_account",), "message": "m"}),
    ):
        with pytest.raises(RoutingViolationError, match="waits for information"):
            on_outcome(waiting, outcome(waiting, cls, "social_security", 1, **kw), NOW)
    with pytest.raises(RoutingViolationError, match="awaits step 1"):
        on_outcome(waiting, outcome(waiting, StepApproved, "hr_registration", 0), NOW)


def test_an_on_the_spot_review_that_needs_info_is_flagged(catalogue: Catalogue) -> None:
    form = {"employer_name": "X", "employment_start_date": "2026-11-01"}
    state, _ = route(accepted("HR-EMPLOYMENT-REGISTRATION", form), catalogue, NOW)
    assert state is not None
    asked = outcome(state, StepNeedsInfo, "hr_registration", 0, missing=("a", "b"), message="m")
    state, emits = on_outcome(state, asked, NOW)
    # The case stays closed as approved (it was, on the spot); the review is flagged.
    assert types(emits) == [("cases.routing", "CaseReviewFlagged")]
    flag = emits[0][1]
    assert isinstance(flag, CaseReviewFlagged)
    assert (flag.step_index, flag.department, flag.reason_code, flag.causation_id) == (
        0,
        "hr_registration",
        "needs_info",
        asked.event_id,
    )
    assert "a, b" in flag.message
    assert (state.status, state.outcome, state.current_step) == ("closed", "approved", None)
    with pytest.raises(RoutingViolationError, match="awaits no step"):
        on_outcome(state, outcome(state, StepApproved, "hr_registration", 0), NOW)
