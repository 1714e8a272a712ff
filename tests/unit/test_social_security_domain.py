"""Social security rules: learning HR's outcomes, every action's branches, replays, records."""

from __future__ import annotations

from dataclasses import replace
from datetime import date

import pytest
from pydantic import ValidationError

from services.social_security.domain import (
    ALREADY_ENROLLED,
    BELOW_PENSION_AGE,
    BENEFIT_ALREADY_ACTIVE,
    BENEFIT_ALREADY_GRANTED,
    COMPANY_NOT_INSURED,
    DUPLICATE_CREDIT_CODE,
    INSUFFICIENT_INSURED_MONTHS,
    MIN_INSURED_MONTHS,
    NO_ACTIVE_BENEFIT,
    NO_HR_REGISTRATION,
    NOT_ENROLLED,
    PENSION_ALREADY_CLAIMED,
    SUBSIDY_ALREADY_GRANTED,
    CompanyRecord,
    HrRegistration,
    MalformedTaskError,
    PersonRecord,
    UnknownActionError,
    benefit_terms,
    decide,
    learn_hr_outcome,
)
from shared.contracts.identity import make_resident_id, make_uscc
from shared.department.decisions import NeedsInfo
from tests.unit.rules_harness import (
    RulesHarness,
    approved,
    case_id,
    ref,
    rejected,
)

pytestmark = pytest.mark.unit

DEPARTMENT = "social_security"
PERSON = make_resident_id("110105", date(1990, 5, 17), 123)  # far from pension age
RETIREE = make_resident_id("440106", date(1950, 3, 10), 245)  # long past it
OTHER_PERSON = make_resident_id("310101", date(1985, 1, 2), 44)
COMPANY = make_uscc("91350100M000100Y4")


_rules = RulesHarness(
    DEPARTMENT,
    decide,
    PersonRecord,
    CompanyRecord,
    person=PERSON,
    company=COMPANY,
    applicant_name="Wang Fang",
)
task = _rules.task
run = _rules.run
run_person = _rules.run_person
run_company = _rules.run_company


def hr_registered(subject: str = PERSON, case: int = 100) -> PersonRecord:
    """A person social security has seen HR register as a job seeker."""
    return learn_hr_outcome(
        PersonRecord(subject_id=subject),
        "job_registration",
        True,
        ref("HR-JR", case),
        case_id(case),
    )


def on_benefit(case: int = 101, insured_months: int = 36) -> PersonRecord:
    form = {"insured_months": insured_months}
    _, person = run_person(task("SS-UNEMPLOYMENT-BENEFIT", form, case=case), hr_registered())
    assert person.benefit is not None
    return person


def enrolled(subject: str = PERSON, case: int = 102) -> PersonRecord:
    t = task("SS-RESIDENT-PENSION-ENROLMENT", case=case, applicant=subject)
    _, person = run_person(t, PersonRecord(subject_id=subject))
    assert person.enrolments
    return person


def insured_company(case: int = 103) -> CompanyRecord:
    _, company = run_company(task("SS-COMPANY-INSURANCE-REGISTRATION", case=case))
    assert company.insurance is not None
    return company


# --- learning from HR ---------------------------------------------------------------------


def test_an_approved_job_registration_is_learned() -> None:
    person = learn_hr_outcome(
        PersonRecord(subject_id=PERSON), "job_registration", True, "HR-JR-1", case_id(1)
    )
    assert person.hr_job_seeker == HrRegistration(reference="HR-JR-1", case_id=case_id(1))


def test_an_approved_employment_registration_ends_registration_and_benefit() -> None:
    person = on_benefit()
    assert person.hr_job_seeker is not None
    after = learn_hr_outcome(person, "employment_registration", True, "HR-ER-2", case_id(2))
    assert after.hr_job_seeker is None
    assert after.benefit is None
    assert after.grants == person.grants


@pytest.mark.parametrize("action", ["job_registration", "employment_registration"])
def test_a_rejected_hr_outcome_changes_nothing(action: str) -> None:
    person = on_benefit()
    assert learn_hr_outcome(person, action, False, None, case_id(3)) == person


@pytest.mark.parametrize("action", ["training_subsidy", "certificate", "startup_subsidy"])
def test_other_hr_approvals_change_nothing(action: str) -> None:
    person = hr_registered()
    assert learn_hr_outcome(person, action, True, "HR-X-1", case_id(4)) == person


def test_learning_the_same_outcome_twice_gives_the_same_record() -> None:
    once = hr_registered()
    twice = learn_hr_outcome(once, "job_registration", True, ref("HR-JR", 100), case_id(100))
    assert twice == once
    ended = learn_hr_outcome(once, "employment_registration", True, "HR-ER-5", case_id(5))
    assert learn_hr_outcome(ended, "employment_registration", True, "HR-ER-5", case_id(5)) == ended


# --- benefit_claim: unemployment benefit ---------------------------------------------------


@pytest.mark.parametrize(
    ("insured_months", "amount", "months_payable"),
    [
        (12, 1_820, 12),
        (59, 1_880, 12),
        (60, 1_900, 18),
        (119, 1_980, 18),
        (120, 2_000, 24),
        (240, 2_200, 24),
        (600, 2_200, 24),
    ],
)
def test_benefit_terms(insured_months: int, amount: int, months_payable: int) -> None:
    assert benefit_terms(insured_months) == (amount, months_payable)


def test_unemployment_benefit_is_approved_after_hr_registration() -> None:
    t = task("SS-UNEMPLOYMENT-BENEFIT", {"insured_months": 75}, case=10)
    decision, person = run_person(t, hr_registered())
    approval = approved(decision)
    assert approval.reference == ref("SS-BC", 10)
    assert approval.facts["monthly_amount_cny"] == 1_920
    assert approval.facts["months_payable"] == 18
    assert approval.facts["hr_registration"] == ref("HR-JR", 100)
    assert person.benefit is not None
    assert person.benefit.reference == approval.reference
    assert person.benefit.case_id == t.case_id
    assert person.benefit.months_payable == 18


def test_unemployment_benefit_needs_an_hr_registration() -> None:
    decision, person = run_person(task("SS-UNEMPLOYMENT-BENEFIT", case=11))
    rejected(decision, NO_HR_REGISTRATION)
    assert person == PersonRecord(subject_id=PERSON)


def test_unemployment_benefit_needs_a_year_of_insurance() -> None:
    person = hr_registered()
    form = {"insured_months": MIN_INSURED_MONTHS - 1}
    decision, after = run_person(task("SS-UNEMPLOYMENT-BENEFIT", form, case=12), person)
    rejected(decision, INSUFFICIENT_INSURED_MONTHS)
    assert after == person

    enough = {"insured_months": MIN_INSURED_MONTHS}
    decision, _ = run_person(task("SS-UNEMPLOYMENT-BENEFIT", enough, case=12), person)
    assert approved(decision).facts["months_payable"] == 12


def test_unemployment_benefit_is_not_paid_twice_at_once() -> None:
    person = on_benefit(case=101)
    decision, after = run_person(task("SS-UNEMPLOYMENT-BENEFIT", case=13), person)
    rejected(decision, BENEFIT_ALREADY_ACTIVE)
    assert after == person


def test_a_new_claim_is_possible_after_employment_ended_the_last_one() -> None:
    person = on_benefit(case=101)
    person = learn_hr_outcome(person, "employment_registration", True, "HR-ER-1", case_id(14))
    rejected(run_person(task("SS-UNEMPLOYMENT-BENEFIT", case=15), person)[0], NO_HR_REGISTRATION)
    person = learn_hr_outcome(person, "job_registration", True, "HR-JR-2", case_id(16))
    approved(run_person(task("SS-UNEMPLOYMENT-BENEFIT", case=16), person)[0])


# --- benefit_claim: the other items sharing the action ----------------------------------------


def test_unemployment_medical_subsidy_runs_with_the_benefit() -> None:
    person = on_benefit(case=101)
    decision, after = run_person(task("SS-UNEMPLOYMENT-MEDICAL-SUBSIDY", case=20), person)
    approval = approved(decision)
    assert approval.facts["benefit_reference"] == ref("SS-BC", 101)
    assert after.benefit is not None
    assert after.benefit.medical_subsidy_reference == ref("SS-BC", 20)

    again, same = run_person(task("SS-UNEMPLOYMENT-MEDICAL-SUBSIDY", case=21), after)
    rejected(again, SUBSIDY_ALREADY_GRANTED)
    assert same == after


def test_unemployment_medical_subsidy_needs_an_active_benefit() -> None:
    decision, _ = run_person(task("SS-UNEMPLOYMENT-MEDICAL-SUBSIDY", case=22), hr_registered())
    rejected(decision, NO_ACTIVE_BENEFIT)


def test_skill_upgrade_subsidy_is_paid_once_per_certificate() -> None:
    form = {"certificate_number": "CERT-0042"}
    # Employees claim it: no HR registration needed.
    decision, person = run_person(task("SS-SKILL-UPGRADE-SUBSIDY", form, case=23))
    approved(decision)
    assert person.skill_subsidy_certificates == ("CERT-0042",)

    again, after = run_person(task("SS-SKILL-UPGRADE-SUBSIDY", form, case=24), person)
    rejected(again, SUBSIDY_ALREADY_GRANTED)
    assert after == person

    short = task("SS-SKILL-UPGRADE-SUBSIDY", {"insured_months": 11}, case=25)
    rejected(run_person(short)[0], INSUFFICIENT_INSURED_MONTHS)
    enough = task("SS-SKILL-UPGRADE-SUBSIDY", {"insured_months": 12}, case=26)
    approved(run_person(enough)[0])


# --- insurance_enrolment ---------------------------------------------------------------------


def test_person_enrolment_is_once_per_scheme() -> None:
    decision, person = run_person(task("SS-RESIDENT-PENSION-ENROLMENT", case=30))
    approval = approved(decision)
    assert approval.reference == ref("SS-IE", 30)
    assert approval.facts == {"enrolment": "resident_pension"}

    again, after = run_person(task("SS-RESIDENT-PENSION-ENROLMENT", case=31), person)
    rejected(again, ALREADY_ENROLLED)
    assert after == person

    # Another scheme is a separate enrolment.
    approved(run_person(task("SS-FLEXIBLE-EMPLOYMENT-ENROLMENT", case=32), person)[0])


def test_residents_medical_insurance_is_enrolled_year_by_year() -> None:
    _, person = run_person(task("SS-RESIDENT-MEDICAL-ENROLMENT", {"coverage_year": 2026}, case=33))
    same_year = task("SS-RESIDENT-MEDICAL-ENROLMENT", {"coverage_year": 2026}, case=34)
    rejected(run_person(same_year, person)[0], ALREADY_ENROLLED)
    next_year = task("SS-RESIDENT-MEDICAL-ENROLMENT", {"coverage_year": 2027}, case=35)
    assert approved(run_person(next_year, person)[0]).facts == {
        "enrolment": "resident_medical:2027"
    }


def test_company_adds_and_removes_an_employee() -> None:
    company = insured_company()
    add = task("SS-EMPLOYEE-ENROLMENT", {"employee_name": "Zhao Lei"}, case=36)
    decision, company = run_company(add, company)
    assert approved(decision).facts == {"enrolment": "employee_added", "employee_name": "Zhao Lei"}
    assert company.enrolled_employees == ("zhao lei",)

    add_again = task("SS-EMPLOYEE-ENROLMENT", {"employee_name": "ZHAO  Lei"}, case=37)
    rejected(run_company(add_again, company)[0], ALREADY_ENROLLED)

    remove = task("SS-EMPLOYEE-REMOVAL", {"employee_name": "Zhao Lei"}, case=38)
    decision, company = run_company(remove, company)
    assert approved(decision).facts["enrolment"] == "employee_removed"
    assert company.enrolled_employees == ()

    remove_again = task("SS-EMPLOYEE-REMOVAL", {"employee_name": "Zhao Lei"}, case=39)
    rejected(run_company(remove_again, company)[0], NOT_ENROLLED)


@pytest.mark.parametrize("item_code", ["SS-EMPLOYEE-ENROLMENT", "SS-EMPLOYEE-REMOVAL"])
def test_company_enrolment_needs_the_company_registered(item_code: str) -> None:
    decision, company = run_company(task(item_code, case=40))
    rejected(decision, COMPANY_NOT_INSURED)
    assert company == CompanyRecord(subject_id=COMPANY)


# --- company_insurance_registration -------------------------------------------------------


@pytest.mark.parametrize(
    "item_code", ["SS-COMPANY-INSURANCE-REGISTRATION", "SS-NEW-COMPANY-EMPLOYMENT-AND-INSURANCE"]
)
def test_company_registration_is_once_per_credit_code(item_code: str) -> None:
    t = task(item_code, {"employee_count": 25}, case=41)
    decision, company = run_company(t)
    approval = approved(decision)
    assert approval.reference == ref("SS-CR", 41)
    assert COMPANY not in approval.facts.values()  # outcomes name the case, not the person
    assert company.insurance is not None
    assert company.insurance.case_id == t.case_id
    assert company.employee_count == 25

    again, after = run_company(task(item_code, case=42), company)
    rejected(again, DUPLICATE_CREDIT_CODE)
    assert after == company


def test_company_registration_change_needs_the_registration() -> None:
    change = task("SS-COMPANY-INSURANCE-CHANGE", {"employee_count": 60}, case=43)
    rejected(run_company(change)[0], COMPANY_NOT_INSURED)

    decision, company = run_company(change, insured_company(case=103))
    assert approved(decision).facts["insurance_reference"] == ref("SS-CR", 103)
    assert company.registration_changes == 1
    assert company.employee_count == 60


# --- insurance_transfer ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "item_code", ["SS-PENSION-INSURANCE-TRANSFER", "SS-MEDICAL-INSURANCE-TRANSFER"]
)
def test_insurance_transfer_needs_an_enrolment(item_code: str) -> None:
    form = {"destination_region": "Shenzhen"}
    rejected(run_person(task(item_code, form, case=50))[0], NOT_ENROLLED)

    decision, person = run_person(task(item_code, form, case=51), enrolled())
    approval = approved(decision)
    assert approval.reference == ref("SS-IT", 51)
    assert approval.facts["destination_region"] == "Shenzhen"
    assert person.insurance_transfers == 1


# --- pension_claim ---------------------------------------------------------------------------


def test_residents_pension_for_someone_over_sixty() -> None:
    t = task("SS-RESIDENT-PENSION-CLAIM", case=60, applicant=RETIREE)
    decision, person = run_person(t, PersonRecord(subject_id=RETIREE))
    approval = approved(decision)
    assert approval.reference == ref("SS-PC", 60)
    assert approval.facts["pension"] == "resident"
    assert person.pension is not None

    again, after = run_person(
        task("SS-RETIREMENT-PENSION-CLAIM", case=61, applicant=RETIREE), person
    )
    rejected(again, PENSION_ALREADY_CLAIMED)
    assert after == person


def test_residents_pension_for_someone_under_sixty_is_refused() -> None:
    decision, person = run_person(task("SS-RESIDENT-PENSION-CLAIM", case=62))
    rejected(decision, BELOW_PENSION_AGE)
    assert person == PersonRecord(subject_id=PERSON)


def test_a_pension_claim_without_a_date_is_judged_on_the_day_it_was_assigned() -> None:
    # Someone who turned 60 on 1 July 2022: a claim assigned the day before is refused,
    # one assigned that day granted, whatever the clock says when either is decided
    # (or decided again on a replay, years later).
    subject = make_resident_id("320102", date(1962, 7, 1), 18)
    record = PersonRecord(subject_id=subject)
    early = task(
        "SS-RESIDENT-PENSION-CLAIM", case=66, applicant=subject, assigned_on=date(2022, 6, 30)
    )
    for _ in range(2):
        refusal = rejected(run_person(early, record)[0], BELOW_PENSION_AGE)
        assert "59 on 2022-06-30" in refusal.message
    on_time = replace(early, assigned_on=date(2022, 7, 1))
    assert approved(run_person(on_time, record)[0]).facts["claim_date"] == "2022-07-01"


@pytest.mark.parametrize(
    ("birth", "retirement_date", "expected"),
    [
        (date(1966, 7, 15), "2026-07-14", "below"),
        (date(1966, 7, 15), "2026-07-15", "approved"),
        (date(1964, 2, 29), "2024-02-28", "below"),
        (date(1964, 2, 29), "2024-02-29", "approved"),
    ],
)
def test_retirement_pension_is_judged_on_the_retirement_date(
    birth: date, retirement_date: str, expected: str
) -> None:
    subject = make_resident_id("320102", birth, 17)
    form = {"retirement_date": retirement_date}
    t = task("SS-RETIREMENT-PENSION-CLAIM", form, case=63, applicant=subject)
    decision, _ = run_person(t, PersonRecord(subject_id=subject))
    if expected == "below":
        rejected(decision, BELOW_PENSION_AGE)
    else:
        assert approved(decision).facts["age_on_claim_date"] == 60


def test_survivor_pension_has_no_age_rule_and_is_paid_once_per_deceased() -> None:
    form = {"deceased_name": "Wang Jian"}
    decision, person = run_person(task("SS-FUNERAL-GRANT-AND-SURVIVOR-PENSION", form, case=64))
    approved(decision)
    assert person.pension is None

    again = task("SS-FUNERAL-GRANT-AND-SURVIVOR-PENSION", form, case=65)
    rejected(run_person(again, person)[0], BENEFIT_ALREADY_GRANTED)


# --- medical_card ----------------------------------------------------------------------------


def test_medical_cards_can_be_reissued_and_are_counted() -> None:
    decision, person = run_person(task("SS-MEDICAL-CARD-APPLICATION", case=70))
    assert approved(decision).facts["cards_issued"] == 1
    decision, person = run_person(task("SS-MEDICAL-CARD-REISSUE", case=71), person)
    approval = approved(decision)
    assert approval.reference == ref("SS-MC", 71)
    assert approval.facts["cards_issued"] == 2
    assert person.medical_cards_issued == 2


# --- maternity_benefit -----------------------------------------------------------------------


def test_maternity_benefit_needs_an_enrolment() -> None:
    rejected(run_person(task("SS-MATERNITY-ALLOWANCE", case=80))[0], NOT_ENROLLED)


def test_maternity_benefit_is_paid_once_per_birth() -> None:
    born = {"birth_date": "2026-02-14"}
    decision, person = run_person(task("SS-MATERNITY-ALLOWANCE", born, case=81), enrolled())
    approval = approved(decision)
    assert approval.reference == ref("SS-MB", 81)
    assert approval.facts["birth_date"] == "2026-02-14"

    again, after = run_person(task("SS-MATERNITY-ALLOWANCE", born, case=82), person)
    rejected(again, BENEFIT_ALREADY_GRANTED)
    assert after == person

    # Another birth, or the medical expenses of the same birth, are other benefits.
    later = {"birth_date": "2028-09-01"}
    approved(run_person(task("SS-MATERNITY-ALLOWANCE", later, case=83), person)[0])
    approved(run_person(task("SS-MATERNITY-MEDICAL-EXPENSES", born, case=84), person)[0])


# --- work_injury_filing ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "item_code", ["SS-WORK-INJURY-RECOGNITION", "SS-WORK-INJURY-TREATMENT-FILING"]
)
def test_work_injury_filing_needs_an_insured_company(item_code: str) -> None:
    decision, company = run_company(task(item_code, case=90))
    rejected(decision, COMPANY_NOT_INSURED)
    assert company == CompanyRecord(subject_id=COMPANY)

    decision, company = run_company(task(item_code, case=91), insured_company())
    assert approved(decision).reference == ref("SS-WI", 91)
    assert company.work_injury_filings == 1


# --- certificate ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "item_code", ["SS-PENSION-ELIGIBILITY-CERTIFICATE", "SS-PAYMENT-CERTIFICATE"]
)
def test_certificate_is_approved_with_a_reference_only(item_code: str) -> None:
    start = PersonRecord(subject_id=PERSON)
    decision, person = run_person(task(item_code, case=95), start)
    approval = approved(decision)
    assert approval.reference == ref("SS-CT", 95)
    assert person.model_copy(update={"grants": ()}) == start


# --- references, replays, reviews ---------------------------------------------------------


def test_references_are_derived_from_the_case() -> None:
    first = approved(run_person(task("SS-MEDICAL-CARD-APPLICATION", case=96))[0])
    again = approved(run_person(task("SS-MEDICAL-CARD-APPLICATION", case=96))[0])
    other = approved(run_person(task("SS-MEDICAL-CARD-APPLICATION", case=97))[0])
    assert first.reference == again.reference == ref("SS-MC", 96)
    assert first.reference != other.reference


def test_the_same_case_decided_twice_is_approved_again_without_a_second_claim() -> None:
    t = task("SS-UNEMPLOYMENT-BENEFIT", case=110)
    first, person = run_person(t, hr_registered())
    second, after = run_person(t, person)
    assert second == first
    assert after == person
    assert len(after.grants) == 1


def test_a_replay_after_later_changes_gives_the_original_approval() -> None:
    t = task("SS-COMPANY-INSURANCE-REGISTRATION", case=111)
    first, company = run_company(t)
    _, company = run_company(task("SS-WORK-INJURY-RECOGNITION", case=112), company)
    replay, after = run_company(t, company)
    assert replay == first
    assert after == company
    rejected(
        run_company(task("SS-COMPANY-INSURANCE-REGISTRATION", case=113), company)[0],
        DUPLICATE_CREDIT_CODE,
    )


def test_a_replayed_card_is_not_counted_twice() -> None:
    t = task("SS-MEDICAL-CARD-REISSUE", case=114)
    first, person = run_person(t)
    second, after = run_person(t, person)
    assert second == first
    assert after.medical_cards_issued == 1


def test_a_review_follows_the_same_rules() -> None:
    t = task("SS-EMPLOYEE-ENROLMENT", case=115, review=True)
    rejected(run_company(t)[0], COMPANY_NOT_INSURED)
    approved(run_company(t, insured_company())[0])


# --- records ------------------------------------------------------------------------------


def test_fresh_records_are_never_seen_before() -> None:
    person = PersonRecord(subject_id=PERSON)
    assert person.hr_job_seeker is None
    assert person.benefit is None
    assert person.enrolments == ()
    assert person.pension is None
    assert person.grants == ()
    company = CompanyRecord(subject_id=COMPANY)
    assert company.insurance is None
    assert company.grants == ()


def test_records_survive_a_json_round_trip() -> None:
    person = on_benefit()
    _, person = run_person(task("SS-UNEMPLOYMENT-MEDICAL-SUBSIDY", case=120), person)
    _, person = run_person(task("SS-RESIDENT-MEDICAL-ENROLMENT", case=121), person)
    _, person = run_person(task("SS-MATERNITY-ALLOWANCE", case=122), person)
    assert len(person.grants) == 4
    assert PersonRecord.model_validate(person.model_dump(mode="json")) == person

    company = insured_company()
    _, company = run_company(task("SS-EMPLOYEE-ENROLMENT", case=123), company)
    assert CompanyRecord.model_validate(company.model_dump(mode="json")) == company


def test_records_are_frozen_and_strict() -> None:
    person = PersonRecord(subject_id=PERSON)
    with pytest.raises(ValidationError):
        person.medical_cards_issued = 3  # type: ignore[misc]
    with pytest.raises(ValidationError):
        PersonRecord.model_validate({"subject_id": PERSON, "benefits": []})


# --- tasks that cannot be decided ---------------------------------------------------------


def test_an_unknown_action_raises() -> None:
    unknown = replace(task("SS-MEDICAL-CARD-APPLICATION"), action="job_registration")
    with pytest.raises(UnknownActionError, match="job_registration"):
        run(unknown)
    assert issubclass(UnknownActionError, ValueError)


def test_a_legal_only_action_for_a_natural_applicant_raises() -> None:
    t = task("SS-WORK-INJURY-RECOGNITION")
    natural = replace(t, applicant_kind="natural", applicant_id=PERSON)
    with pytest.raises(MalformedTaskError, match="legal"):
        run(natural)


def test_a_record_of_someone_else_raises() -> None:
    with pytest.raises(MalformedTaskError):
        run(task("SS-MEDICAL-CARD-APPLICATION"), PersonRecord(subject_id=OTHER_PERSON))


def test_an_invalid_resident_id_on_a_pension_claim_raises() -> None:
    bad = PERSON[:-1] + ("0" if PERSON[-1] != "0" else "1")
    t = task("SS-RESIDENT-PENSION-CLAIM", applicant=bad)
    with pytest.raises(MalformedTaskError, match="resident ID"):
        run(t)


def test_a_form_value_of_the_wrong_type_raises() -> None:
    t = task("SS-UNEMPLOYMENT-BENEFIT", {"insured_months": "36"})
    with pytest.raises(MalformedTaskError, match="insured_months"):
        run(t, hr_registered())


def test_a_missing_field_asks_for_it() -> None:
    t = task("SS-MATERNITY-ALLOWANCE", {}, replace_form=True)
    decision, person = run_person(t, enrolled())
    assert isinstance(decision, NeedsInfo)
    assert decision.missing == ("birth_date",)
    assert person == enrolled()
