"""Intake's status view (GET /cases/{id}) fed with what the router really emits."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from services.intake.api import _status
from services.intake.store import VIEW_COLUMNS, apply_routing
from services.router.domain import on_outcome, route
from shared.contracts.catalogue import Catalogue
from shared.contracts.events import CaseAdvanced, Event, StepApproved, StepNeedsInfo
from shared.contracts.topology import CASES_ROUTING
from tests.unit.test_router_domain import BENEFIT_FORM, NOW, accepted, outcome

pytestmark = pytest.mark.unit


def fresh_view() -> dict[str, Any]:
    return dict.fromkeys(VIEW_COLUMNS) | {"status": "accepted", "on_spot": False}


def feed(view: dict[str, Any], emits: list[tuple[str, Event]]) -> dict[str, Any]:
    for topic, event in emits:
        if topic == CASES_ROUTING:  # the only topic intake's view consumes
            apply_routing(view, event)
    return view


def test_a_routed_case_is_in_progress_at_its_first_step(catalogue: Catalogue) -> None:
    state, emits = route(accepted("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM), catalogue, NOW)
    assert state is not None
    view = feed(fresh_view(), emits)
    assert (view["status"], view["current_step"], view["department"]) == (
        "in_progress",
        0,
        "hr_registration",
    )
    assert view["routed_at"] is not None
    state, emits = on_outcome(state, outcome(state, StepApproved, "hr_registration", 0), NOW)
    feed(view, emits)
    assert (view["status"], view["current_step"], view["department"]) == (
        "in_progress",
        1,
        "social_security",
    )
    _, emits = on_outcome(state, outcome(state, StepApproved, "social_security", 1), NOW)
    feed(view, emits)
    assert (view["status"], view["outcome"], view["current_step"]) == ("closed", "approved", 1)


def test_an_on_the_spot_case_is_closed_at_once(catalogue: Catalogue) -> None:
    form = {"employer_name": "X", "employment_start_date": "2026-11-01"}
    _, emits = route(accepted("HR-EMPLOYMENT-REGISTRATION", form), catalogue, NOW)
    view = feed(fresh_view(), emits)
    assert (view["status"], view["outcome"], view["on_spot"]) == ("closed", "approved", True)
    assert view["department"] == "hr_registration"  # the department that reviews it


def test_a_case_rejected_at_routing_is_closed_with_the_reason(catalogue: Catalogue) -> None:
    _, emits = route(accepted("NO-SUCH-ITEM", {}), catalogue, NOW)
    view = feed(fresh_view(), emits)
    assert (view["status"], view["outcome"], view["reason_code"]) == (
        "closed",
        "rejected",
        "unknown_item",
    )
    assert view["current_step"] is None


def test_a_case_waiting_for_information_says_what_is_missing(catalogue: Catalogue) -> None:
    state, emits = route(accepted("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM), catalogue, NOW)
    assert state is not None
    view = feed(fresh_view(), emits)
    state, emits = on_outcome(state, outcome(state, StepApproved, "hr_registration", 0), NOW)
    feed(view, emits)
    asked = outcome(
        state,
        StepNeedsInfo,
        "social_security",
        1,
        missing=("bank_account", "insured_months"),
        message="The form must give them.",
    )
    _, emits = on_outcome(state, asked, NOW)
    feed(view, emits)
    assert (view["status"], view["current_step"], view["department"]) == (
        "waiting_info",
        1,
        "social_security",
    )
    row = view | {
        "case_id": state.case_id,
        "receipt_no": "C01-20261127-000001",
        "item_code": state.item_code,
        "accepted_at": datetime(2026, 11, 27, tzinfo=UTC),
    }
    shown = _status(row)
    assert shown["status"] == "waiting_info"
    assert shown["summary"] == (
        "waiting for information at step 2 (social_security): "
        "missing bank_account, insured_months: The form must give them."
    )
    # Once the case moves on, what it waited for is no longer its reason.
    resumed = CaseAdvanced(
        **asked.caused(),
        producer="router",
        step_index=1,
        department="social_security",
        action="benefit_claim",
    )
    apply_routing(view, resumed)
    assert (view["status"], view["reason_code"], view["message"]) == ("in_progress", None, None)
