"""HR bureau rules: every action's approvals and rejections, replays, references, records."""

from __future__ import annotations

from dataclasses import replace
from datetime import date
from typing import Any

import pytest
from pydantic import ValidationError

from services.hr_registration.domain import (
    ALREADY_REGISTERED,
    CARD_ALREADY_ISSUED,
    COURSE_TOO_SHORT,
    CURRENTLY_EMPLOYED,
    INVALID_EMPLOYEE_COUNT,
    MIN_COURSE_HOURS,
    NOT_REGISTERED_JOB_SEEKER,
    SUBSIDY_ALREADY_GRANTED,
    CompanyRecord,
    MalformedTaskError,
    PersonRecord,
    UnknownActionError,
    decide,
)
from shared.contracts.identity import make_resident_id, make_uscc
from shared.department.decisions import NeedsInfo
from tests.unit.rules_harness import (
    RulesHarness,
    approved,
    ref,
    rejected,
)

pytestmark = pytest.mark.unit

DEPARTMENT = "hr_registration"
PERSON = make_resident_id("110105", date(1990, 5, 17), 123)
OTHER_PERSON = make_resident_id("310101", date(1985, 1, 2), 44)
COMPANY = make_uscc("91350100M000100Y4")


_rules = RulesHarness(
    DEPARTMENT,
    decide,
    PersonRecord,
    CompanyRecord,
    person=PERSON,
    company=COMPANY,
    applicant_name="Li Hua",
)
task = _rules.task
run = _rules.run
run_person = _rules.run_person
run_company = _rules.run_company


def job_seeker(case: int = 100) -> PersonRecord:
    _, person = run_person(task("HR-JOB-REGISTRATION", case=case))
    assert person.job_seeker is not None
    return person


def employed(case: int = 200, start: str = "2026-01-05") -> PersonRecord:
    _, person = run_person(
        task("HR-EMPLOYMENT-REGISTRATION", {"employment_start_date": start}, case=case)
    )
    assert person.employment is not None
    return person


# --- job_registration -----------------------------------------------------------------


def test_job_registration_approves_and_records_the_registration() -> None:
    t = task("HR-JOB-REGISTRATION", case=1)
    decision, person = run_person(t)
    approval = approved(decision)
    assert approval.reference == ref("HR-JR", 1)
    assert approval.facts["registration"] == "job_seeker"
    assert PERSON not in approval.facts.values()  # outcomes name the case, not the person
    assert person.job_seeker is not None
    assert person.job_seeker.reference == approval.reference
    assert person.job_seeker.case_id == t.case_id
    assert person.employment is None


def test_job_registration_rejects_a_second_registration_from_another_case() -> None:
    person = job_seeker(case=1)
    decision, after = run_person(task("HR-UNEMPLOYMENT-REGISTRATION", case=2), person)
    rejected(decision, ALREADY_REGISTERED)
    assert after == person


def test_job_registration_rejects_an_employed_person() -> None:
    person = employed()
    decision, after = run_person(task("HR-JOB-REGISTRATION", case=2), person)
    rejected(decision, CURRENTLY_EMPLOYED)
    assert after == person


def test_job_registration_with_a_separation_date_ends_the_employment() -> None:
    person = employed(case=200, start="2025-06-01")
    form = {"separation_date": "2026-02-28"}
    decision, after = run_person(task("HR-UNEMPLOYMENT-REGISTRATION", form, case=3), person)
    approval = approved(decision)
    assert approval.facts["ended_employment_registration"] == ref("HR-ER", 200)
    assert after.employment is None
    assert after.job_seeker is not None


def test_job_registration_with_a_separation_before_the_current_job_is_rejected() -> None:
    person = employed(case=200, start="2026-01-05")
    form = {"separation_date": "2025-12-31"}
    decision, after = run_person(task("SS-UNEMPLOYMENT-BENEFIT", form, case=3), person)
    rejected(decision, CURRENTLY_EMPLOYED)
    assert after == person


# --- employment_registration -------------------------------------------------------------


def test_employment_registration_ends_the_job_seeker_registration() -> None:
    person = job_seeker(case=100)
    t = task("HR-EMPLOYMENT-REGISTRATION", {"employment_start_date": "2026-04-01"}, case=5)
    decision, after = run_person(t, person)
    approval = approved(decision)
    assert approval.reference == ref("HR-ER", 5)
    assert approval.facts["registration"] == "employment"
    assert approval.facts["ended_job_seeker_registration"] == ref("HR-JR", 100)
    assert after.job_seeker is None
    assert after.employment is not None
    assert after.employment.since == date(2026, 4, 1)


def test_employment_registration_of_an_unknown_person_marks_them_employed() -> None:
    decision, person = run_person(task("HR-GRADUATE-EMPLOYMENT-REPORT", case=6))
    approval = approved(decision)
    assert "ended_job_seeker_registration" not in approval.facts
    assert person.employment is not None
    assert person.employment.since is None


def test_a_new_job_replaces_the_employment_on_record() -> None:
    person = employed(case=200)
    decision, after = run_person(task("HR-FLEXIBLE-EMPLOYMENT-INSURANCE-SUBSIDY", case=7), person)
    assert approved(decision).facts["replaced_employment_registration"] == ref("HR-ER", 200)
    assert after.employment is not None
    assert after.employment.reference == ref("HR-ER", 7)


@pytest.mark.parametrize(
    ("item_code", "field", "count"),
    [
        ("HR-COMPANY-EMPLOYMENT-REGISTRATION", "new_hires", 12),
        ("SS-NEW-COMPANY-EMPLOYMENT-AND-INSURANCE", "employee_count", 30),
    ],
)
def test_company_employment_registration_is_recorded_on_the_company(
    item_code: str, field: str, count: int
) -> None:
    start = CompanyRecord(subject_id=COMPANY, employment_registrations=1, employees_registered=5)
    decision, company = run_company(task(item_code, {field: count}, case=8), start)
    approval = approved(decision)
    assert approval.reference == ref("HR-ER", 8)
    assert approval.facts == {
        "registration": "employment",
        "employees_registered": count,
    }
    assert company.employment_registrations == 2
    assert company.employees_registered == 5 + count


def test_company_employment_registration_rejects_a_head_count_below_one() -> None:
    decision, company = run_company(
        task("HR-COMPANY-EMPLOYMENT-REGISTRATION", {"new_hires": 0}, case=9)
    )
    rejected(decision, INVALID_EMPLOYEE_COUNT)
    assert company == CompanyRecord(subject_id=COMPANY)


# --- employment_service_card -----------------------------------------------------------


def test_service_card_is_issued_once() -> None:
    decision, person = run_person(task("HR-EMPLOYMENT-SERVICE-CARD", case=10))
    approval = approved(decision)
    assert approval.reference == ref("HR-SC", 10)
    assert approval.facts["reissue"] is False
    assert person.service_card == approval.reference
    assert person.service_cards_issued == 1

    again, after = run_person(task("HR-EMPLOYMENT-SERVICE-CARD", case=11), person)
    rejected(again, CARD_ALREADY_ISSUED)
    assert after == person


def test_service_card_reissue_replaces_the_card_on_record() -> None:
    _, person = run_person(task("HR-EMPLOYMENT-SERVICE-CARD", case=10))
    decision, after = run_person(task("HR-EMPLOYMENT-SERVICE-CARD-REISSUE", case=12), person)
    approval = approved(decision)
    assert approval.facts["reissue"] is True
    assert approval.facts["replaces_card"] == ref("HR-SC", 10)
    assert after.service_card == ref("HR-SC", 12)
    assert after.service_cards_issued == 2


def test_service_card_reissue_without_a_card_on_record_is_approved() -> None:
    decision, person = run_person(task("HR-EMPLOYMENT-SERVICE-CARD-REISSUE", case=13))
    assert "replaces_card" not in approved(decision).facts
    assert person.service_cards_issued == 1


# --- training_subsidy ---------------------------------------------------------------------


def _course(name: str = "Welding basics", hours: int = MIN_COURSE_HOURS) -> dict[str, Any]:
    return {"course_name": name, "course_hours": hours}


def test_training_subsidy_for_a_job_seeker_at_the_minimum_hours() -> None:
    decision, person = run_person(
        task("HR-VOCATIONAL-TRAINING-SUBSIDY", _course(), case=20), job_seeker()
    )
    approval = approved(decision)
    assert approval.reference == ref("HR-TS", 20)
    assert approval.facts["eligibility"] == "job_seeker"
    assert approval.facts["course_hours"] == MIN_COURSE_HOURS
    assert person.subsidised_courses == ("welding basics",)


def test_training_subsidy_for_an_employed_person() -> None:
    decision, _ = run_person(task("HR-SKILL-CERTIFICATE-SUBSIDY", _course(), case=21), employed())
    assert approved(decision).facts["eligibility"] == "employed"


def test_training_subsidy_rejects_a_short_course() -> None:
    person = job_seeker()
    t = task("HR-VOCATIONAL-TRAINING-SUBSIDY", _course(hours=MIN_COURSE_HOURS - 1), case=22)
    decision, after = run_person(t, person)
    rejected(decision, COURSE_TOO_SHORT)
    assert after == person


def test_training_subsidy_rejects_the_same_course_twice() -> None:
    _, person = run_person(task("HR-VOCATIONAL-TRAINING-SUBSIDY", _course(), case=23), job_seeker())
    # Same course written differently: still the same course.
    t = task("HR-SKILL-CERTIFICATE-SUBSIDY", _course("  WELDING   Basics "), case=24)
    decision, after = run_person(t, person)
    rejected(decision, SUBSIDY_ALREADY_GRANTED)
    assert after == person

    other_course = task("HR-VOCATIONAL-TRAINING-SUBSIDY", _course("Forklift"), case=25)
    approved(run_person(other_course, person)[0])


def test_training_subsidy_rejects_someone_neither_registered_nor_employed() -> None:
    decision, person = run_person(task("HR-VOCATIONAL-TRAINING-SUBSIDY", _course(), case=26))
    rejected(decision, NOT_REGISTERED_JOB_SEEKER)
    assert person == PersonRecord(subject_id=PERSON)


def test_enterprise_training_subsidy_is_recorded_on_the_company() -> None:
    t = task("HR-ENTERPRISE-TRAINING-SUBSIDY", _course(), case=27)
    decision, company = run_company(t)
    assert approved(decision).facts["eligibility"] == "enterprise"
    assert company.subsidised_courses == ("welding basics",)

    again, after = run_company(task("HR-ENTERPRISE-TRAINING-SUBSIDY", _course(), case=28), company)
    rejected(again, SUBSIDY_ALREADY_GRANTED)
    assert after == company

    short = task("HR-ENTERPRISE-TRAINING-SUBSIDY", _course("Safety", 8), case=29)
    rejected(run_company(short, company)[0], COURSE_TOO_SHORT)


# --- startup_subsidy ------------------------------------------------------------------------


def test_startup_subsidy_for_a_registered_job_seeker() -> None:
    decision, person = run_person(task("HR-STARTUP-SUBSIDY", case=30), job_seeker())
    approval = approved(decision)
    assert approval.reference == ref("HR-SS", 30)
    assert person.startup_subsidies == ("HR-STARTUP-SUBSIDY",)


def test_startup_subsidy_rejects_someone_not_registered() -> None:
    decision, _ = run_person(task("HR-STARTUP-SUBSIDY", case=31), employed())
    rejected(decision, NOT_REGISTERED_JOB_SEEKER)


def test_startup_subsidy_is_granted_once_per_person_and_programme() -> None:
    _, person = run_person(task("HR-STARTUP-SUBSIDY", case=32), job_seeker())
    decision, after = run_person(task("HR-STARTUP-SUBSIDY", case=33), person)
    rejected(decision, SUBSIDY_ALREADY_GRANTED)
    assert after == person

    # The loan interest subsidy is another programme.
    other, _ = run_person(task("HR-STARTUP-LOAN-INTEREST-SUBSIDY", case=34), person)
    approved(other)


# --- filings --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("item_code", "field", "prefix", "counter"),
    [
        ("HR-RECRUITMENT-FILING", "positions", "HR-RF", "recruitment_filings"),
        ("HR-JOB-FAIR-BOOTH", "positions", "HR-RF", "recruitment_filings"),
        ("HR-LABOUR-CONTRACT-FILING", "contract_count", "HR-LC", "labour_contract_filings"),
        (
            "HR-SPECIAL-WORKING-HOURS-APPROVAL",
            "employees_covered",
            "HR-LC",
            "labour_contract_filings",
        ),
    ],
)
def test_filings_are_approved_and_counted(
    item_code: str, field: str, prefix: str, counter: str
) -> None:
    decision, company = run_company(task(item_code, {field: 7}, case=40))
    approval = approved(decision)
    assert approval.reference == ref(prefix, 40)
    assert approval.facts[field] == 7
    assert getattr(company, counter) == 1

    rejection, after = run_company(task(item_code, {field: 0}, case=41), company)
    rejected(rejection, INVALID_EMPLOYEE_COUNT)
    assert after == company


def test_contract_termination_filing_has_no_head_count_and_is_approved() -> None:
    decision, company = run_company(task("HR-LABOUR-CONTRACT-TERMINATION-FILING", case=42))
    assert approved(decision).facts == {"filing": "labour_contract"}
    assert company.labour_contract_filings == 1


# --- certificate ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "item_code", ["HR-UNEMPLOYMENT-CERTIFICATE", "HR-EMPLOYMENT-RECORD-CERTIFICATE"]
)
def test_certificate_is_approved_with_a_reference_only(item_code: str) -> None:
    start = PersonRecord(subject_id=PERSON)
    decision, person = run_person(task(item_code, case=50), start)
    approval = approved(decision)
    assert approval.reference == ref("HR-CT", 50)
    assert approval.facts == {"document": "certificate", "item_code": item_code}
    assert person.model_copy(update={"grants": ()}) == start


# --- references, replays, reviews ---------------------------------------------------------


def test_references_are_derived_from_the_case() -> None:
    first = approved(run_person(task("HR-JOB-REGISTRATION", case=60))[0])
    again = approved(run_person(task("HR-JOB-REGISTRATION", case=60))[0])
    other = approved(run_person(task("HR-JOB-REGISTRATION", case=61))[0])
    assert first.reference == again.reference
    assert first.reference != other.reference
    assert first.reference is not None
    assert first.reference.startswith("HR-JR-")
    assert len(first.reference) == len("HR-JR-") + 12


def test_the_same_case_decided_twice_is_approved_again_without_registering_twice() -> None:
    t = task("HR-JOB-REGISTRATION", case=62)
    first, person = run_person(t)
    second, after = run_person(t, person)
    assert second == first
    assert after == person
    assert len(after.grants) == 1


def test_a_replay_after_later_changes_gives_the_original_approval() -> None:
    registration = task("HR-JOB-REGISTRATION", case=63)
    first, person = run_person(registration)
    _, person = run_person(task("HR-EMPLOYMENT-REGISTRATION", case=64), person)
    # Now employed: a new case would be rejected, but case 63 already registered.
    replay, after = run_person(registration, person)
    assert replay == first
    assert after == person
    rejected(run_person(task("HR-JOB-REGISTRATION", case=65), person)[0], CURRENTLY_EMPLOYED)


def test_a_replay_of_a_subsidy_is_not_refused_as_already_granted() -> None:
    t = task("HR-STARTUP-SUBSIDY", case=66)
    first, person = run_person(t, job_seeker())
    second, after = run_person(t, person)
    assert second == first
    assert after.startup_subsidies == ("HR-STARTUP-SUBSIDY",)


def test_a_rejected_task_decided_again_is_rejected_again() -> None:
    t = task("HR-JOB-REGISTRATION", case=67)
    person = employed()
    first, after = run_person(t, person)
    second, again = run_person(t, after)
    assert first == second
    assert again == person


def test_a_review_follows_the_same_rules() -> None:
    t = task("HR-EMPLOYMENT-SERVICE-CARD", case=68, review=True)
    approved(run_person(t)[0])
    _, person = run_person(task("HR-EMPLOYMENT-SERVICE-CARD", case=69))
    rejected(run_person(t, person)[0], CARD_ALREADY_ISSUED)


# --- records ------------------------------------------------------------------------------


def test_fresh_records_are_never_seen_before() -> None:
    person = PersonRecord(subject_id=PERSON)
    assert person.job_seeker is None
    assert person.employment is None
    assert person.service_card is None
    assert person.grants == ()
    company = CompanyRecord(subject_id=COMPANY)
    assert company.employment_registrations == 0
    assert company.grants == ()


def test_records_survive_a_json_round_trip() -> None:
    _, person = run_person(task("HR-EMPLOYMENT-REGISTRATION", case=70))
    _, person = run_person(task("HR-UNEMPLOYMENT-REGISTRATION", case=71), person)
    _, person = run_person(task("HR-VOCATIONAL-TRAINING-SUBSIDY", _course(), case=72), person)
    _, person = run_person(task("HR-EMPLOYMENT-SERVICE-CARD", case=73), person)
    assert len(person.grants) == 4
    assert PersonRecord.model_validate(person.model_dump(mode="json")) == person

    _, company = run_company(task("HR-RECRUITMENT-FILING", case=74))
    _, company = run_company(task("HR-ENTERPRISE-TRAINING-SUBSIDY", case=75), company)
    assert CompanyRecord.model_validate(company.model_dump(mode="json")) == company


def test_records_are_frozen_and_strict() -> None:
    person = PersonRecord(subject_id=PERSON)
    with pytest.raises(ValidationError):
        person.service_cards_issued = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        PersonRecord.model_validate({"subject_id": PERSON, "jobseeker": None})


def test_deciding_does_not_change_the_records_passed_in() -> None:
    person = job_seeker()
    snapshot = person.model_dump()
    run_person(task("HR-EMPLOYMENT-REGISTRATION", case=76), person)
    assert person.model_dump() == snapshot


# --- tasks that cannot be decided ---------------------------------------------------------


def test_an_unknown_action_raises() -> None:
    t = task("HR-JOB-REGISTRATION")
    unknown = replace(t, action="pension_claim")
    with pytest.raises(UnknownActionError, match="pension_claim"):
        run(unknown)
    assert issubclass(UnknownActionError, ValueError)


def test_a_legal_only_action_for_a_natural_applicant_raises() -> None:
    t = task("HR-RECRUITMENT-FILING")
    natural = replace(t, applicant_kind="natural", applicant_id=PERSON)
    with pytest.raises(MalformedTaskError, match="legal"):
        run(natural)


def test_a_record_of_someone_else_raises() -> None:
    with pytest.raises(MalformedTaskError):
        run(task("HR-JOB-REGISTRATION"), PersonRecord(subject_id=OTHER_PERSON))


def test_a_missing_record_raises() -> None:
    with pytest.raises(MalformedTaskError):
        decide(task("HR-JOB-REGISTRATION"), None, None)


def test_a_form_value_of_the_wrong_type_raises() -> None:
    t = task("HR-VOCATIONAL-TRAINING-SUBSIDY", {"course_hours": "forty"})
    with pytest.raises(MalformedTaskError, match="course_hours"):
        run(t, job_seeker())


def test_a_missing_field_asks_for_it() -> None:
    t = task("HR-VOCATIONAL-TRAINING-SUBSIDY", {"course_name": "Welding"}, replace_form=True)
    decision, person = run_person(t, job_seeker())
    assert isinstance(decision, NeedsInfo)
    assert decision.missing == ("course_hours",)
    assert person == job_seeker()
