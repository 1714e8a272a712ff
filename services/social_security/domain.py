"""The social security bureau's rules: pure functions of a task and what the bureau knows.

No I/O here. The adapter glue loads the applicant's record (stored as JSONB keyed by
subject id), calls :func:`decide`, and saves the records it returns in the same
transaction as the outcome event. What HR decided reaches this bureau only through HR's
outcome events, which the glue feeds to :func:`learn_hr_outcome`; this module never sees
HR's own records.

Consistency on replay. The SDK drops redelivered tasks, but the rules are consistent on
their own: every approval is written to the record's ``grants`` ledger under
(case_id, step_index, action), and a task whose case already produced a grant is approved
again with the same reference and facts, leaving the record as it is, however the record
changed since. Rejections and requests for information change nothing, so deciding them
again on the same record gives the same answer. References are derived from the case id.

Catalogue items refine an action where the catalogue shares one action between items
that need different handling (e.g. removing an employee from company insurance); each
such case is noted at its rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from pydantic import JsonValue

from shared.contracts.identity import resident_id_birth_date
from shared.department.decisions import Approve, Decision, Reject, TaskFacts
from shared.department.rules import (
    Frozen,
    Grant,
    MalformedTaskError,
    Rule,
    SubjectRecord,
    UnknownActionError,
    decide_by_rules,
    form_date,
    form_int,
    form_str,
    make_reference,
    needs_info,
    normalise_name,
)

__all__ = [
    "ACTIONS",
    "ALREADY_ENROLLED",
    "BELOW_PENSION_AGE",
    "BENEFIT_ALREADY_ACTIVE",
    "BENEFIT_ALREADY_GRANTED",
    "COMPANY_NOT_INSURED",
    "DUPLICATE_CREDIT_CODE",
    "INSUFFICIENT_INSURED_MONTHS",
    "MIN_INSURED_MONTHS",
    "NOT_ENROLLED",
    "NO_ACTIVE_BENEFIT",
    "NO_HR_REGISTRATION",
    "PENSION_AGE",
    "PENSION_ALREADY_CLAIMED",
    "SUBSIDY_ALREADY_GRANTED",
    "BenefitClaim",
    "CompanyRecord",
    "Enrolment",
    "Grant",
    "HrRegistration",
    "MalformedTaskError",
    "PersonRecord",
    "Registration",
    "UnknownActionError",
    "benefit_terms",
    "decide",
    "learn_hr_outcome",
]

# --- reason codes -----------------------------------------------------------------

NO_HR_REGISTRATION = "no_hr_registration"
INSUFFICIENT_INSURED_MONTHS = "insufficient_insured_months"
BENEFIT_ALREADY_ACTIVE = "benefit_already_active"
NO_ACTIVE_BENEFIT = "no_active_benefit"
SUBSIDY_ALREADY_GRANTED = "subsidy_already_granted"
ALREADY_ENROLLED = "already_enrolled"
NOT_ENROLLED = "not_enrolled"
COMPANY_NOT_INSURED = "company_not_insured"
DUPLICATE_CREDIT_CODE = "duplicate_credit_code"
BELOW_PENSION_AGE = "below_pension_age"
PENSION_ALREADY_CLAIMED = "pension_already_claimed"
BENEFIT_ALREADY_GRANTED = "benefit_already_granted"

# --- figures ------------------------------------------------------------------------

MIN_INSURED_MONTHS = 12
# One pension age for everyone: the statutory ages differ by sex and occupation and are
# being raised in steps; the bureau's full table is out of scope for this adapter.
PENSION_AGE = 60
# Monthly unemployment benefit: a base near the local minimum wage, plus a little per full
# insured year, capped (reached after 20 insured years). Whole yuan, so always exact.
_BENEFIT_BASE_CNY = 1_800
_BENEFIT_PER_INSURED_YEAR_CNY = 20
_BENEFIT_CAP_CNY = 2_200

# Items that share an action with others but follow their own rule.
_ITEM_UNEMPLOYMENT_MEDICAL_SUBSIDY = "SS-UNEMPLOYMENT-MEDICAL-SUBSIDY"
_ITEM_SKILL_UPGRADE_SUBSIDY = "SS-SKILL-UPGRADE-SUBSIDY"
_ITEM_EMPLOYEE_REMOVAL = "SS-EMPLOYEE-REMOVAL"
_ITEM_COMPANY_INSURANCE_CHANGE = "SS-COMPANY-INSURANCE-CHANGE"
_ITEM_SURVIVOR_PENSION = "SS-FUNERAL-GRANT-AND-SURVIVOR-PENSION"

# Insurance schemes a natural person enrols in, by catalogue item; an item not listed
# is a scheme of its own, named by its code.
_SCHEMES: Mapping[str, str] = {
    "SS-RESIDENT-PENSION-ENROLMENT": "resident_pension",
    "SS-RESIDENT-MEDICAL-ENROLMENT": "resident_medical",
    "SS-FLEXIBLE-EMPLOYMENT-ENROLMENT": "employee_pension",
}
_PENSIONS: Mapping[str, str] = {
    "SS-RETIREMENT-PENSION-CLAIM": "retirement",
    "SS-RESIDENT-PENSION-CLAIM": "resident",
}

# --- records ----------------------------------------------------------------------


class Registration(Frozen):
    """Something this bureau registered, and the case that did it."""

    reference: str
    case_id: str


class HrRegistration(Frozen):
    """A job-seeker registration HR approved, as learned from HR's outcome event."""

    reference: str | None
    case_id: str


class BenefitClaim(Frozen):
    """An unemployment benefit being paid."""

    reference: str
    case_id: str
    monthly_amount_cny: int
    months_payable: int
    medical_subsidy_reference: str | None = None


class Enrolment(Frozen):
    """Membership of one insurance scheme (``scheme`` may carry a coverage year)."""

    scheme: str
    reference: str
    case_id: str


class PersonRecord(SubjectRecord):
    """What social security knows about one natural person;
    ``subject_id`` is the person's pseudonym (applicant_ref).

    Attributes:
        hr_job_seeker: HR's job-seeker registration in force, learned from HR's outcomes.
        benefit: the unemployment benefit being paid, if any.
        enrolments: insurance schemes the person is enrolled in.
        insurance_transfers: transfers of insurance relations to other regions.
        pension: the basic pension granted, if any.
        survivor_grants: normalised names of the deceased whose survivor benefits were paid.
        medical_cards_issued: social security cards issued, re-issues included.
        maternity_grants: ``<item code>:<child's birth date>`` of maternity benefits paid.
        skill_subsidy_certificates: certificate numbers a skill upgrade subsidy was paid for.
        grants: every approval, for replays (see the module docstring).
    """

    hr_job_seeker: HrRegistration | None = None
    benefit: BenefitClaim | None = None
    enrolments: tuple[Enrolment, ...] = ()
    insurance_transfers: int = 0
    pension: Registration | None = None
    survivor_grants: tuple[str, ...] = ()
    medical_cards_issued: int = 0
    maternity_grants: tuple[str, ...] = ()
    skill_subsidy_certificates: tuple[str, ...] = ()


class CompanyRecord(SubjectRecord):
    """What social security knows about one company;
    ``subject_id`` is the company's pseudonym (applicant_ref).

    Attributes:
        insurance: the company's social insurance registration, if any.
        employee_count: head count last declared at registration or change.
        registration_changes: changes of registration details filed.
        enrolled_employees: normalised names of employees in the company's insurance.
        work_injury_filings: work injury recognitions and treatment filings.
        grants: every approval, for replays (see the module docstring).
    """

    insurance: Registration | None = None
    employee_count: int | None = None
    registration_changes: int = 0
    enrolled_employees: tuple[str, ...] = ()
    work_injury_filings: int = 0


_Facts = dict[str, JsonValue]


# --- entry points -------------------------------------------------------------------


def learn_hr_outcome(
    person: PersonRecord, action: str, approved: bool, reference: str | None, case_id: str
) -> PersonRecord:
    """Apply what HR decided for a natural person (from ``dept.hr_registration.outcomes``).

    An approved ``job_registration`` gives the person an HR job-seeker registration; an
    approved ``employment_registration`` ends it (the person works again) and ends any
    unemployment benefit being paid. Rejections and other actions change nothing.
    Learning the same outcome twice gives the same record.
    """
    if not approved:
        return person
    if action == "job_registration":
        registration = HrRegistration(reference=reference, case_id=case_id)
        return person.model_copy(update={"hr_job_seeker": registration})
    if action == "employment_registration":
        return person.model_copy(update={"hr_job_seeker": None, "benefit": None})
    return person


def benefit_terms(insured_months: int) -> tuple[int, int]:
    """Monthly unemployment benefit (whole yuan) and months payable for an insured record.

    Months payable: 12 under 5 insured years, 18 from 5 to under 10, 24 from 10 years.
    """
    years = insured_months // 12
    amount = min(_BENEFIT_BASE_CNY + _BENEFIT_PER_INSURED_YEAR_CNY * years, _BENEFIT_CAP_CNY)
    if years < 5:
        return amount, 12
    if years < 10:
        return amount, 18
    return amount, 24


def decide(
    task: TaskFacts, person: PersonRecord | None, company: CompanyRecord | None
) -> tuple[Decision, PersonRecord | None, CompanyRecord | None]:
    """Decide one social_security step.

    Args:
        task: the step; ``task.action`` selects the rule. Review tasks follow the same
            rules: the decision is what the review found.
        person: the applicant's record when the applicant is a natural person.
        company: the applicant's record when the applicant is a legal person.

    Returns:
        The decision and the records to save (the applicant's possibly updated, the
        other one as passed in).

    Raises:
        UnknownActionError: the action is not one of :data:`ACTIONS`.
        MalformedTaskError: the applicant's record is missing or belongs to someone
            else, the action does not apply to this kind of applicant, the resident ID
            is invalid, or a form value has the wrong type.
    """
    return decide_by_rules(
        "social_security",
        task,
        person,
        company,
        person_rules=_PERSON_RULES,
        company_rules=_COMPANY_RULES,
    )


# --- helpers ------------------------------------------------------------------------


def _age_on(birth: date, day: date) -> int:
    # Someone born on 29 February turns a year older on 1 March in common years.
    return day.year - birth.year - ((day.month, day.day) < (birth.month, birth.day))


def _insufficient_months(months: int) -> Reject:
    message = (
        f"The applicant has {months} insured months; at least {MIN_INSURED_MONTHS} are needed."
    )
    return Reject(INSUFFICIENT_INSURED_MONTHS, message)


# --- natural persons: benefits -----------------------------------------------------


def _benefit_claim(task: TaskFacts, person: PersonRecord) -> tuple[Decision, PersonRecord]:
    # Three items share this action: the unemployment benefit itself (the default), the
    # medical contributions paid while it runs, and the employees' skill upgrade subsidy.
    if task.item_code == _ITEM_UNEMPLOYMENT_MEDICAL_SUBSIDY:
        return _medical_subsidy(task, person)
    if task.item_code == _ITEM_SKILL_UPGRADE_SUBSIDY:
        return _skill_upgrade_subsidy(task, person)
    return _unemployment_benefit(task, person)


def _unemployment_benefit(task: TaskFacts, person: PersonRecord) -> tuple[Decision, PersonRecord]:
    months = form_int(task, "insured_months")
    if months is None:
        return needs_info(task, "insured_months"), person
    if person.hr_job_seeker is None:
        message = (
            "No job-seeker registration with the HR bureau is on record; "
            "unemployment benefit needs one."
        )
        return Reject(NO_HR_REGISTRATION, message), person
    if months < MIN_INSURED_MONTHS:
        return _insufficient_months(months), person
    if person.benefit is not None:
        message = f"An unemployment benefit ({person.benefit.reference}) is already being paid."
        return Reject(BENEFIT_ALREADY_ACTIVE, message), person
    amount, payable = benefit_terms(months)
    reference = make_reference("SS-BC", task)
    facts: _Facts = {
        "benefit": "unemployment",
        "monthly_amount_cny": amount,
        "months_payable": payable,
        "hr_registration": person.hr_job_seeker.reference,
    }
    claim = BenefitClaim(
        reference=reference,
        case_id=task.case_id,
        monthly_amount_cny=amount,
        months_payable=payable,
    )
    return Approve(reference, facts), person.model_copy(update={"benefit": claim})


def _medical_subsidy(task: TaskFacts, person: PersonRecord) -> tuple[Decision, PersonRecord]:
    benefit = person.benefit
    if benefit is None:
        message = "Medical contributions are paid only while an unemployment benefit is paid."
        return Reject(NO_ACTIVE_BENEFIT, message), person
    if benefit.medical_subsidy_reference is not None:
        message = (
            f"Medical contributions for benefit {benefit.reference} are already granted "
            f"({benefit.medical_subsidy_reference})."
        )
        return Reject(SUBSIDY_ALREADY_GRANTED, message), person
    reference = make_reference("SS-BC", task)
    facts: _Facts = {
        "subsidy": "unemployment_medical",
        "benefit_reference": benefit.reference,
        "months_payable": benefit.months_payable,
    }
    claim = benefit.model_copy(update={"medical_subsidy_reference": reference})
    return Approve(reference, facts), person.model_copy(update={"benefit": claim})


def _skill_upgrade_subsidy(task: TaskFacts, person: PersonRecord) -> tuple[Decision, PersonRecord]:
    months = form_int(task, "insured_months")
    certificate = form_str(task, "certificate_number")
    if months is None or certificate is None:
        return needs_info(task, "insured_months", "certificate_number"), person
    if months < MIN_INSURED_MONTHS:
        return _insufficient_months(months), person
    if certificate in person.skill_subsidy_certificates:
        message = f"A skill upgrade subsidy was already paid for certificate {certificate}."
        return Reject(SUBSIDY_ALREADY_GRANTED, message), person
    reference = make_reference("SS-BC", task)
    facts: _Facts = {"subsidy": "skill_upgrade", "certificate_number": certificate}
    updated = person.model_copy(
        update={"skill_subsidy_certificates": (*person.skill_subsidy_certificates, certificate)}
    )
    return Approve(reference, facts), updated


def _pension_claim(task: TaskFacts, person: PersonRecord) -> tuple[Decision, PersonRecord]:
    if task.item_code == _ITEM_SURVIVOR_PENSION:
        return _survivor_pension(task, person)
    try:
        birth = resident_id_birth_date(task.applicant_id)
    except ValueError as exc:
        raise MalformedTaskError("the applicant's resident ID is not valid") from exc
    # Judged on the retirement date when the form gives one, otherwise on the day the
    # step was assigned (the task's own date, not the clock: a replay decides alike).
    on = form_date(task, "retirement_date") or task.assigned_on
    age = _age_on(birth, on)
    if age < PENSION_AGE:
        message = (
            f"The applicant is {age} on {on.isoformat()}; "
            f"the basic pension starts at {PENSION_AGE}."
        )
        return Reject(BELOW_PENSION_AGE, message), person
    if person.pension is not None:
        message = f"A basic pension ({person.pension.reference}) has already been granted."
        return Reject(PENSION_ALREADY_CLAIMED, message), person
    reference = make_reference("SS-PC", task)
    facts: _Facts = {
        "pension": _PENSIONS.get(task.item_code, "basic"),
        "age_on_claim_date": age,
        "claim_date": on.isoformat(),
    }
    pension = Registration(reference=reference, case_id=task.case_id)
    return Approve(reference, facts), person.model_copy(update={"pension": pension})


def _survivor_pension(task: TaskFacts, person: PersonRecord) -> tuple[Decision, PersonRecord]:
    # The applicant is the survivor, so no pension age applies; one grant per deceased.
    deceased = form_str(task, "deceased_name")
    if deceased is None:
        return needs_info(task, "deceased_name"), person
    if normalise_name(deceased) in person.survivor_grants:
        # Messages never repeat form text (a person's name): they reach the case view.
        message = "The funeral grant and survivors' pension for this person were already granted."
        return Reject(BENEFIT_ALREADY_GRANTED, message), person
    reference = make_reference("SS-PC", task)
    facts: _Facts = {"benefit": "funeral_grant_and_survivor_pension", "deceased_name": deceased}
    updated = person.model_copy(
        update={"survivor_grants": (*person.survivor_grants, normalise_name(deceased))}
    )
    return Approve(reference, facts), updated


def _maternity_benefit(task: TaskFacts, person: PersonRecord) -> tuple[Decision, PersonRecord]:
    born = form_date(task, "birth_date")
    if born is None:
        return needs_info(task, "birth_date"), person
    if not person.enrolments:
        message = "Maternity benefits are for insured people; the applicant is not enrolled."
        return Reject(NOT_ENROLLED, message), person
    # One of each maternity benefit (allowance, medical expenses) per birth.
    key = f"{task.item_code}:{born.isoformat()}"
    if key in person.maternity_grants:
        message = f"This maternity benefit was already granted for the birth on {born.isoformat()}."
        return Reject(BENEFIT_ALREADY_GRANTED, message), person
    reference = make_reference("SS-MB", task)
    facts: _Facts = {
        "benefit": "maternity",
        "item_code": task.item_code,
        "birth_date": born.isoformat(),
    }
    updated = person.model_copy(update={"maternity_grants": (*person.maternity_grants, key)})
    return Approve(reference, facts), updated


# --- natural persons: enrolment, transfers, cards, certificates --------------------


def _person_enrolment(task: TaskFacts, person: PersonRecord) -> tuple[Decision, PersonRecord]:
    scheme = _SCHEMES.get(task.item_code, task.item_code)
    # Residents' medical insurance is bought year by year.
    year = form_int(task, "coverage_year")
    if year is not None:
        scheme = f"{scheme}:{year}"
    for enrolment in person.enrolments:
        if enrolment.scheme == scheme:
            message = f"The applicant is already enrolled in {scheme} ({enrolment.reference})."
            return Reject(ALREADY_ENROLLED, message), person
    reference = make_reference("SS-IE", task)
    enrolment = Enrolment(scheme=scheme, reference=reference, case_id=task.case_id)
    updated = person.model_copy(update={"enrolments": (*person.enrolments, enrolment)})
    return Approve(reference, {"enrolment": scheme}), updated


def _insurance_transfer(task: TaskFacts, person: PersonRecord) -> tuple[Decision, PersonRecord]:
    if not person.enrolments:
        message = "The applicant is not enrolled here, so there is no insurance relation to move."
        return Reject(NOT_ENROLLED, message), person
    reference = make_reference("SS-IT", task)
    facts: _Facts = {"transfer": task.item_code}
    destination = form_str(task, "destination_region")
    if destination is not None:
        facts["destination_region"] = destination
    # The enrolment stays on record: the destination confirms receipt separately.
    updated = person.model_copy(update={"insurance_transfers": person.insurance_transfers + 1})
    return Approve(reference, facts), updated


def _medical_card(task: TaskFacts, person: PersonRecord) -> tuple[Decision, PersonRecord]:
    # Applications, re-issues after loss and corrections all print a new card.
    reference = make_reference("SS-MC", task)
    issued = person.medical_cards_issued + 1
    facts: _Facts = {"card": "social_security", "card_number": reference, "cards_issued": issued}
    return Approve(reference, facts), person.model_copy(update={"medical_cards_issued": issued})


def _certificate(task: TaskFacts, person: PersonRecord) -> tuple[Decision, PersonRecord]:
    reference = make_reference("SS-CT", task)
    return Approve(reference, {"document": "certificate", "item_code": task.item_code}), person


# --- legal persons ------------------------------------------------------------------


def _not_insured() -> Reject:
    message = "The company has no social insurance registration; register the company first."
    return Reject(COMPANY_NOT_INSURED, message)


def _company_insurance_registration(
    task: TaskFacts, company: CompanyRecord
) -> tuple[Decision, CompanyRecord]:
    count = form_int(task, "employee_count")
    reference = make_reference("SS-CR", task)
    if task.item_code == _ITEM_COMPANY_INSURANCE_CHANGE:
        # A change of details needs the registration it changes.
        if company.insurance is None:
            return _not_insured(), company
        facts: _Facts = {
            "registration": "company_insurance_change",
            "insurance_reference": company.insurance.reference,
        }
        changed = company.model_copy(
            update={
                "registration_changes": company.registration_changes + 1,
                "employee_count": company.employee_count if count is None else count,
            }
        )
        return Approve(reference, facts), changed
    if company.insurance is not None:
        message = (
            "A company with this unified social credit code is already registered "
            f"({company.insurance.reference})."
        )
        return Reject(DUPLICATE_CREDIT_CODE, message), company
    facts = {"registration": "company_insurance"}
    registered = company.model_copy(
        update={
            "insurance": Registration(reference=reference, case_id=task.case_id),
            "employee_count": count,
        }
    )
    return Approve(reference, facts), registered


def _company_enrolment(task: TaskFacts, company: CompanyRecord) -> tuple[Decision, CompanyRecord]:
    # Adding an employee to the company's insurance, or (SS-EMPLOYEE-REMOVAL) taking a
    # departed one off it. Employees are known by name: the forms carry no ID number.
    employee = form_str(task, "employee_name")
    if employee is None:
        return needs_info(task, "employee_name"), company
    if company.insurance is None:
        return _not_insured(), company
    key = normalise_name(employee)
    reference = make_reference("SS-IE", task)
    if task.item_code == _ITEM_EMPLOYEE_REMOVAL:
        if key not in company.enrolled_employees:
            message = "The employee named in the form is not enrolled in the company's insurance."
            return Reject(NOT_ENROLLED, message), company
        remaining = tuple(name for name in company.enrolled_employees if name != key)
        facts: _Facts = {"enrolment": "employee_removed", "employee_name": employee}
        removed = company.model_copy(update={"enrolled_employees": remaining})
        return Approve(reference, facts), removed
    if key in company.enrolled_employees:
        message = "The employee named in the form is already enrolled in the company's insurance."
        return Reject(ALREADY_ENROLLED, message), company
    facts = {"enrolment": "employee_added", "employee_name": employee}
    added = company.model_copy(update={"enrolled_employees": (*company.enrolled_employees, key)})
    return Approve(reference, facts), added


def _work_injury_filing(task: TaskFacts, company: CompanyRecord) -> tuple[Decision, CompanyRecord]:
    if company.insurance is None:
        return _not_insured(), company
    reference = make_reference("SS-WI", task)
    facts: _Facts = {"filing": "work_injury", "item_code": task.item_code}
    injured = form_str(task, "injured_employee")
    if injured is not None:
        facts["injured_employee"] = injured
    updated = company.model_copy(update={"work_injury_filings": company.work_injury_filings + 1})
    return Approve(reference, facts), updated


_PERSON_RULES: Mapping[str, Rule[PersonRecord]] = {
    "benefit_claim": _benefit_claim,
    "insurance_enrolment": _person_enrolment,
    "insurance_transfer": _insurance_transfer,
    "pension_claim": _pension_claim,
    "medical_card": _medical_card,
    "maternity_benefit": _maternity_benefit,
    "certificate": _certificate,
}
_COMPANY_RULES: Mapping[str, Rule[CompanyRecord]] = {
    "insurance_enrolment": _company_enrolment,
    "company_insurance_registration": _company_insurance_registration,
    "work_injury_filing": _work_injury_filing,
}

ACTIONS: frozenset[str] = frozenset(_PERSON_RULES) | frozenset(_COMPANY_RULES)
"""Every action :func:`decide` implements; equals the ``actions:`` list in catalogue.yaml."""
