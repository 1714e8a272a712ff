"""Intake's checks on what a window submits: every problem, each with its field."""

from __future__ import annotations

from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from services.intake.domain import CaseRequest, check
from shared.contracts.catalogue import Catalogue
from shared.contracts.identity import make_resident_id, make_uscc

pytestmark = pytest.mark.unit

RESIDENT = make_resident_id("110105", date(1988, 8, 8), 21)
COMPANY = make_uscc("91350100M000100Y4")
JOB_FORM = {"education": "college", "desired_occupation": "cook"}


def request(item: str = "HR-JOB-REGISTRATION", **changes: Any) -> CaseRequest:
    body: dict[str, Any] = {
        "item_code": item,
        "applicant": {
            "kind": "natural",
            "name": "Li Hua",
            "id_number": RESIDENT,
            "phone": "13800138000",
        },
        "community_code": "110105001001",
        "form": JOB_FORM,
    }
    applicant_changes = changes.pop("applicant", {})
    body["applicant"] = body["applicant"] | applicant_changes
    return CaseRequest.model_validate(body | changes)


def fields(errors: list[tuple[tuple[str | int, ...], str, str]]) -> list[tuple[str | int, ...]]:
    return [loc for loc, _, _ in errors]


def test_a_good_request_has_no_problems(catalogue: Catalogue) -> None:
    assert check(request(), catalogue) == []


def test_a_company_item_with_a_valid_credit_code(catalogue: Catalogue) -> None:
    form = {
        "company_name": "A",
        "legal_representative": "B",
        "employee_count": 3,
        "registered_address": "C",
    }
    req = request(
        "SS-COMPANY-INSURANCE-REGISTRATION",
        applicant={"kind": "legal", "id_number": COMPANY},
        form=form,
    )
    assert check(req, catalogue) == []


def test_bad_check_digit_names_the_id_field(catalogue: Catalogue) -> None:
    bad = RESIDENT[:-1] + ("0" if RESIDENT[-1] != "0" else "1")
    errors = check(request(applicant={"id_number": bad}), catalogue)
    assert fields(errors) == [("body", "applicant", "id_number")]
    assert "check" in errors[0][1]


def test_bad_credit_code_names_the_id_field(catalogue: Catalogue) -> None:
    bad = COMPANY[:-1] + ("0" if COMPANY[-1] != "0" else "1")
    form = {
        "company_name": "A",
        "legal_representative": "B",
        "employee_count": 3,
        "registered_address": "C",
    }
    req = request(
        "SS-COMPANY-INSURANCE-REGISTRATION",
        applicant={"kind": "legal", "id_number": bad},
        form=form,
    )
    assert fields(check(req, catalogue)) == [("body", "applicant", "id_number")]


def test_bad_phone(catalogue: Catalogue) -> None:
    assert fields(check(request(applicant={"phone": "12345"}), catalogue)) == [
        ("body", "applicant", "phone")
    ]


def test_unknown_item_stops_further_item_checks(catalogue: Catalogue) -> None:
    errors = check(request("NO-SUCH-ITEM"), catalogue)
    assert errors == [
        (("body", "item_code"), "unknown item 'NO-SUCH-ITEM'", "value_error.unknown_item")
    ]


def test_wrong_applicant_kind_and_missing_fields_are_all_reported(catalogue: Catalogue) -> None:
    errors = check(request("SS-COMPANY-INSURANCE-REGISTRATION", form={}), catalogue)
    assert fields(errors) == [
        ("body", "applicant", "kind"),
        ("body", "form", "company_name"),
        ("body", "form", "employee_count"),
        ("body", "form", "legal_representative"),
        ("body", "form", "registered_address"),
    ]
    assert all(kind == "missing" for _, _, kind in errors[1:])


def test_mistyped_form_field(catalogue: Catalogue) -> None:
    form = {
        "company_name": "A",
        "legal_representative": "B",
        "employee_count": "many",
        "registered_address": "C",
    }
    req = request(
        "SS-COMPANY-INSURANCE-REGISTRATION",
        applicant={"kind": "legal", "id_number": COMPANY},
        form=form,
    )
    errors = check(req, catalogue)
    assert fields(errors) == [("body", "form", "employee_count")]
    assert errors[0][2] == "value_error.form"


def test_fingerprint_tells_a_retry_from_another_request() -> None:
    assert request().fingerprint() == request().fingerprint()
    assert request().fingerprint() != request(channel="mobile").fingerprint()
    # The same body from another clerk is another request (keys are global).
    assert request().fingerprint("clerk-a") != request().fingerprint("clerk-b")


def test_the_window_and_the_clerk_never_come_from_the_body() -> None:
    for field in ("window_id", "operator_id"):
        with pytest.raises(ValidationError, match="extra_forbidden"):
            request(**{field: "W09"})
