"""What every department's rules owe the catalogue, checked once for all departments."""

from __future__ import annotations

from datetime import UTC, date, datetime
from pathlib import Path
from types import ModuleType
from uuid import uuid4

import pytest
import yaml

from services.hr_registration import domain as hr
from services.social_security import domain as social_security
from shared.contracts.events import Applicant, StepAssigned
from shared.contracts.identity import make_resident_id, make_uscc
from shared.department.adapter import facts
from shared.department.decisions import Approve, Reject
from shared.department.keys import DataKeys
from tests.support.builders import TEST_SECRET, in_clear
from tests.unit.rules_harness import RulesHarness, catalogue

pytestmark = pytest.mark.unit

PERSON = make_resident_id("110105", date(1990, 5, 17), 123)
DEPARTMENTS = {"hr_registration": hr, "social_security": social_security}


def harness(department: str) -> RulesHarness:  # type: ignore[type-arg]
    module: ModuleType = DEPARTMENTS[department]
    return RulesHarness(
        department,
        module.decide,
        module.PersonRecord,
        module.CompanyRecord,
        person=PERSON,
        company=make_uscc("91350100M000100Y4"),
        applicant_name="Li Hua",
    )


@pytest.mark.parametrize("department", sorted(DEPARTMENTS))
def test_actions_equal_the_catalogue_actions(department: str) -> None:
    module = DEPARTMENTS[department]
    path = Path(module.__file__ or "").parent / "catalogue.yaml"
    declared = yaml.safe_load(path.read_text(encoding="utf-8"))["actions"]
    assert frozenset(declared) == module.ACTIONS
    assert len(declared) == len(set(declared))


@pytest.mark.parametrize(
    ("department", "item_code"),
    [
        (department, code)
        for department in sorted(DEPARTMENTS)
        for code, item in sorted(catalogue().items.items())
        if any(step.department == department for step in item.steps)
    ],
)
def test_every_catalogue_item_is_decided_on_a_valid_form(department: str, item_code: str) -> None:
    # Reads the catalogue's own field names: a renamed field shows up here as NeedsInfo.
    rules = harness(department)
    decision, _, _ = rules.run(rules.task(item_code))
    assert isinstance(decision, Approve | Reject), decision


@pytest.mark.parametrize(
    ("occurred_at", "day"),
    [
        (datetime(2026, 11, 27, 15, 59, 59, tzinfo=UTC), date(2026, 11, 27)),
        (datetime(2026, 11, 27, 16, 0, tzinfo=UTC), date(2026, 11, 28)),  # midnight in China
    ],
)
def test_a_task_is_dated_by_its_assignment_in_china_time(occurred_at: datetime, day: date) -> None:
    # The rules' "today" is the task's own: the same StepAssigned always gets the same day.
    task = StepAssigned(
        case_id=uuid4(),
        correlation_id=uuid4(),
        producer="router",
        occurred_at=occurred_at,
        step_index=0,
        department="social_security",
        action="pension_claim",
        item_code="SS-RESIDENT-PENSION-CLAIM",
        applicant=in_clear(
            Applicant(kind="natural", name="Li Hua", id_number=PERSON, phone="13800138000")
        ),
        community_code="110105001001",
        due_by=occurred_at,
    )
    assert (
        facts(task, DataKeys(TEST_SECRET, 60).open(task.applicant, task.case_id)).assigned_on == day
    )


@pytest.mark.parametrize(
    ("department", "item_code"),
    [
        (department, code)
        for department in sorted(DEPARTMENTS)
        for code, item in sorted(catalogue().items.items())
        if any(step.department == department for step in item.steps)
    ],
)
def test_a_decision_message_repeats_no_form_text(department: str, item_code: str) -> None:
    # Messages reach the case view, the citizen and the log: a name or number typed into
    # the form must not come back in them. Decided twice, so "already granted" answers
    # (which name what was granted) are covered too.
    rules = harness(department)
    task = rules.task(item_code, dict.fromkeys(_text_fields(item_code), "Wang Fang 13912345678"))
    first, person, company = rules.run(task)
    second, _, _ = rules.run(rules.task(item_code, dict(task.form), case=2), person, company)
    for decision in (first, second):
        message = getattr(decision, "message", "") or ""
        assert "Wang Fang" not in message, (item_code, message)
        assert "13912345678" not in message, (item_code, message)
        assert PERSON not in message, (item_code, message)


def _text_fields(item_code: str) -> list[str]:
    """The item's free-text fields whose values are names of people."""
    fields = catalogue().items[item_code].required_fields
    return [spec.name for spec in fields if spec.name.endswith("_name") and spec.type == "str"]
