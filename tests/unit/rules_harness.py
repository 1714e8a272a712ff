"""What the department-rules tests share: catalogue-shaped tasks, forms and decide calls."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import date
from functools import cache
from typing import Any, Generic, TypeVar

from services.catalogue import default_catalogue
from shared.contracts.catalogue import Catalogue, FieldSpec, Item
from shared.department.decisions import Approve, Decision, Reject, TaskFacts
from shared.department.rules import SubjectRecord

P = TypeVar("P", bound=SubjectRecord)
C = TypeVar("C", bound=SubjectRecord)


@cache
def catalogue() -> Catalogue:
    return default_catalogue()


# The day tasks are assigned on unless a test says otherwise: rules never read the clock.
ASSIGNED_ON = date(2026, 11, 27)


def case_id(n: int) -> str:
    # Distinct, stable ids whose first 12 hex digits differ (references use them).
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"onedoor-test-case-{n}"))


def ref(prefix: str, case: int) -> str:
    return f"{prefix}-{case_id(case).replace('-', '')[:12].upper()}"


def _sample(spec: FieldSpec, min_int: int) -> object:
    if spec.type == "int":
        low = spec.min if spec.min is not None else 0
        high = spec.max if spec.max is not None else 10_000
        return min(max(min_int, low), high)
    if spec.type == "date":
        return "2026-03-02"
    if spec.type == "bool":
        return False
    return f"sample {spec.name}"


def valid_form(item: Item, min_int: int = 40) -> dict[str, Any]:
    """A form that passes the catalogue's checks for the item (ints at least ``min_int``)."""
    return {spec.name: _sample(spec, min_int) for spec in item.required_fields}


def approved(decision: Decision) -> Approve:
    assert isinstance(decision, Approve), decision
    return decision


def rejected(decision: Decision, reason_code: str) -> Reject:
    assert isinstance(decision, Reject), decision
    assert decision.reason_code == reason_code
    assert decision.message.strip()
    return decision


@dataclass(frozen=True)
class RulesHarness(Generic[P, C]):
    """One department's rules, called the way the adapter glue calls them."""

    department: str
    decide: Callable[[TaskFacts, P | None, C | None], tuple[Decision, P | None, C | None]]
    person_model: type[P]
    company_model: type[C]
    person: str
    company: str
    applicant_name: str

    def items(self) -> list[str]:
        """Codes of the catalogue items with a step for this department."""
        return sorted(
            code
            for code, item in catalogue().items.items()
            if any(step.department == self.department for step in item.steps)
        )

    def task(
        self,
        item_code: str,
        form: dict[str, Any] | None = None,
        *,
        case: int = 1,
        applicant: str | None = None,
        review: bool = False,
        replace_form: bool = False,
        assigned_on: date = ASSIGNED_ON,
    ) -> TaskFacts:
        """This department's step of a catalogue item, as the router would assign it."""
        item = catalogue().items[item_code]
        index, step = next(
            (i, s) for i, s in enumerate(item.steps) if s.department == self.department
        )
        if applicant is None:
            applicant = self.person if item.applicant_kind == "natural" else self.company
        full_form = dict(form or {}) if replace_form else {**valid_form(item), **(form or {})}
        return TaskFacts(
            case_id=case_id(case),
            item_code=item_code,
            action=step.action,
            step_index=index,
            applicant_kind=item.applicant_kind,
            applicant_ref=applicant,
            applicant_id=applicant,
            applicant_name=self.applicant_name,
            community_code="110105001001",
            form=full_form,
            assigned_on=assigned_on,
            review=review,
        )

    def run(
        self, t: TaskFacts, person: P | None = None, company: C | None = None
    ) -> tuple[Decision, P | None, C | None]:
        """Decide as the glue does: the applicant's record, a fresh one when unseen."""
        if t.applicant_kind == "natural" and person is None:
            person = self.person_model(subject_id=t.applicant_id)
        if t.applicant_kind == "legal" and company is None:
            company = self.company_model(subject_id=t.applicant_id)
        return self.decide(t, person, company)

    def run_person(self, t: TaskFacts, person: P | None = None) -> tuple[Decision, P]:
        decision, new_person, company = self.run(t, person)
        assert company is None
        assert new_person is not None
        return decision, new_person

    def run_company(self, t: TaskFacts, company: C | None = None) -> tuple[Decision, C]:
        decision, person, new_company = self.run(t, company=company)
        assert person is None
        assert new_company is not None
        return decision, new_company
