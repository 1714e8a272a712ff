"""The department guide shows the example package as it is, and the example's rules
decide as the guide says (plain values, no broker, no database)."""

from __future__ import annotations

import importlib.util
from datetime import date
from types import ModuleType
from typing import Any

import pytest

from shared.contracts.identity import make_resident_id
from shared.department.decisions import Approve, NeedsInfo, Reject, TaskFacts
from tests.support.guide import EXAMPLES, guide_files

pytestmark = pytest.mark.unit


def test_the_guide_shows_every_file_of_the_example_package_as_it_is() -> None:
    shown = guide_files()
    package = {
        p.relative_to(EXAMPLES).as_posix(): p.read_text(encoding="utf-8")
        for p in sorted(EXAMPLES.rglob("*"))
        if p.suffix in {".py", ".yaml"} and "__pycache__" not in p.parts
    }
    assert shown == package


def _department() -> ModuleType:
    path = EXAMPLES / "civil_affairs" / "department.py"
    spec = importlib.util.spec_from_file_location("guide_civil_affairs_department", path)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


DEPARTMENT = _department()
ASSIGNED_ON = date(2026, 12, 1)


def _task(born: date, **form: Any) -> TaskFacts:
    return TaskFacts(
        case_id="5f2b0c0e4d6a4f0e9a1b2c3d4e5f6a7b",
        item_code="CA-SENIOR-ALLOWANCE",
        action="senior_allowance",
        step_index=0,
        applicant_kind="natural",
        applicant_ref="s1-" + "7" * 32,
        applicant_id=make_resident_id("110105", born, 7),
        applicant_name="Wang Fang",
        community_code="110105001001",
        form={"bank_account": "6222020200112233445", "lives_in_district": True} | form,
        assigned_on=ASSIGNED_ON,
    )


def _fresh(task: TaskFacts) -> Any:
    return DEPARTMENT.Senior(subject_id=task.applicant_ref)


@pytest.mark.parametrize(
    ("born", "monthly"),
    [
        (date(1946, 12, 1), 100),
        (date(1936, 12, 2), 100),
        (date(1936, 12, 1), 500),
        (date(1926, 6, 30), 800),
    ],
)
def test_residents_of_80_and_over_are_granted_by_age(born: date, monthly: int) -> None:
    task = _task(born)
    decision, senior = DEPARTMENT.decide(task, _fresh(task))
    assert decision == Approve(reference="CA-5f2b0c0e", facts={"monthly_yuan": monthly})
    assert senior.allowance_case == task.case_id


def test_a_day_short_of_80_is_under_age() -> None:
    task = _task(date(1946, 12, 2))
    decision, senior = DEPARTMENT.decide(task, _fresh(task))
    assert isinstance(decision, Reject)
    assert decision.reason_code == "under_age"
    assert "79" in decision.message
    assert senior.allowance_case is None


def test_a_second_grant_is_refused_and_residence_is_asked_for() -> None:
    task = _task(date(1940, 1, 1))
    _, granted = DEPARTMENT.decide(task, _fresh(task))
    again, _ = DEPARTMENT.decide(task, granted)
    assert isinstance(again, Reject)
    assert again.reason_code == "already_granted"
    elsewhere = _task(date(1940, 1, 1), lives_in_district=False)
    decision, _ = DEPARTMENT.decide(elsewhere, _fresh(elsewhere))
    assert isinstance(decision, NeedsInfo)
    assert decision.missing == ("lives_in_district",)
