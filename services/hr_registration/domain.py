"""The Human Resources bureau's rules: pure functions of a task and what the bureau knows.

No I/O here. The adapter glue loads the applicant's record (stored as JSONB keyed by
subject id), calls :func:`decide`, and saves the records it returns in the same
transaction as the outcome event.

Consistency on replay. The SDK drops redelivered tasks, but the rules are consistent on
their own: every approval is written to the record's ``grants`` ledger under
(case_id, step_index, action), and a task whose case already produced a grant is approved
again with the same reference and facts, leaving the record as it is, however the record
changed since. Rejections and requests for information change nothing, so deciding them
again on the same record gives the same answer. References are derived from the case id.

Catalogue items refine an action where the catalogue shares one action between items
that need different handling (e.g. a service card re-issue); each such case is noted at
its rule.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date

from pydantic import JsonValue

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
    "ALREADY_REGISTERED",
    "CARD_ALREADY_ISSUED",
    "COURSE_TOO_SHORT",
    "CURRENTLY_EMPLOYED",
    "INVALID_EMPLOYEE_COUNT",
    "MIN_COURSE_HOURS",
    "NOT_REGISTERED_JOB_SEEKER",
    "SUBSIDY_ALREADY_GRANTED",
    "CompanyRecord",
    "Grant",
    "MalformedTaskError",
    "PersonRecord",
    "Registration",
    "UnknownActionError",
    "decide",
]

# --- reason codes -----------------------------------------------------------------

ALREADY_REGISTERED = "already_registered"
CURRENTLY_EMPLOYED = "currently_employed"
CARD_ALREADY_ISSUED = "card_already_issued"
COURSE_TOO_SHORT = "course_too_short"
SUBSIDY_ALREADY_GRANTED = "subsidy_already_granted"
NOT_REGISTERED_JOB_SEEKER = "not_registered_job_seeker"
INVALID_EMPLOYEE_COUNT = "invalid_employee_count"

MIN_COURSE_HOURS = 40

# The head-count field each legal item uses; the first one present on the form counts.
_COUNT_FIELDS = ("employee_count", "new_hires", "positions", "contract_count", "employees_covered")
# Fields that date the start of a job, for natural employment registrations.
_EMPLOYMENT_START_FIELDS = ("employment_start_date", "flexible_employment_start")


# --- records ----------------------------------------------------------------------


class Registration(Frozen):
    """A registration in force and the case that made it; ``since`` when the form dated it."""

    reference: str
    case_id: str
    since: date | None = None


class PersonRecord(SubjectRecord):
    """What HR knows about one natural person;
    ``subject_id`` is the person's pseudonym (applicant_ref).

    Attributes:
        job_seeker: the job-seeker (unemployment) registration in force, if any.
        employment: the employment registration in force, if any.
        service_card: number of the employment service card currently valid.
        service_cards_issued: cards issued so far, re-issues included.
        subsidised_courses: normalised names of courses already subsidised.
        startup_subsidies: item codes of the start-up subsidies already granted.
        grants: every approval, for replays (see the module docstring).
    """

    job_seeker: Registration | None = None
    employment: Registration | None = None
    service_card: str | None = None
    service_cards_issued: int = 0
    subsidised_courses: tuple[str, ...] = ()
    startup_subsidies: tuple[str, ...] = ()


class CompanyRecord(SubjectRecord):
    """What HR knows about one company;
    ``subject_id`` is the company's pseudonym (applicant_ref).

    Attributes:
        employment_registrations: employment registrations filed by the company.
        employees_registered: head count those registrations declared in total.
        recruitment_filings: recruitment filings (plans, job-fair booths).
        labour_contract_filings: labour contract, termination and working-hours filings.
        subsidised_courses: normalised names of in-service courses already subsidised.
        grants: every approval, for replays (see the module docstring).
    """

    employment_registrations: int = 0
    employees_registered: int = 0
    recruitment_filings: int = 0
    labour_contract_filings: int = 0
    subsidised_courses: tuple[str, ...] = ()


_Facts = dict[str, JsonValue]


# --- entry point ------------------------------------------------------------------


def decide(
    task: TaskFacts, person: PersonRecord | None, company: CompanyRecord | None
) -> tuple[Decision, PersonRecord | None, CompanyRecord | None]:
    """Decide one hr_registration step.

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
            else, the action does not apply to this kind of applicant, or a form value
            has the wrong type.
    """
    return decide_by_rules(
        "hr_registration",
        task,
        person,
        company,
        person_rules=_PERSON_RULES,
        company_rules=_COMPANY_RULES,
    )


# --- helpers ------------------------------------------------------------------------


def _first_date(task: TaskFacts, names: tuple[str, ...]) -> date | None:
    for name in names:
        value = form_date(task, name)
        if value is not None:
            return value
    return None


def _head_count(task: TaskFacts) -> tuple[str, int] | None:
    for name in _COUNT_FIELDS:
        value = form_int(task, name)
        if value is not None:
            return name, value
    return None


def _invalid_count(count: tuple[str, int] | None) -> Reject | None:
    if count is None or count[1] >= 1:
        return None
    name, value = count
    return Reject(
        INVALID_EMPLOYEE_COUNT, f"The {name.replace('_', ' ')} must be at least 1, not {value}."
    )


# --- natural persons ------------------------------------------------------------------


def _job_registration(task: TaskFacts, person: PersonRecord) -> tuple[Decision, PersonRecord]:
    if person.job_seeker is not None:
        message = (
            f"The applicant is already registered as a job seeker ({person.job_seeker.reference})."
        )
        return Reject(ALREADY_REGISTERED, message), person
    employment = person.employment
    if employment is not None:
        # A form stating when the last job ended (unemployment registration, unemployment
        # benefit) ends the employment on record, unless that job began after the stated
        # separation: then the separation is an older one and the person is still employed.
        separation = form_date(task, "separation_date")
        if separation is None or (employment.since is not None and separation < employment.since):
            message = (
                f"The applicant's employment is registered ({employment.reference}); "
                "an employed person cannot register as a job seeker."
            )
            return Reject(CURRENTLY_EMPLOYED, message), person
    reference = make_reference("HR-JR", task)
    facts: _Facts = {"registration": "job_seeker"}
    if employment is not None:
        facts["ended_employment_registration"] = employment.reference
    updated = person.model_copy(
        update={
            "job_seeker": Registration(reference=reference, case_id=task.case_id),
            "employment": None,
        }
    )
    return Approve(reference, facts), updated


def _person_employment(task: TaskFacts, person: PersonRecord) -> tuple[Decision, PersonRecord]:
    reference = make_reference("HR-ER", task)
    facts: _Facts = {"registration": "employment"}
    if person.job_seeker is not None:
        facts["ended_job_seeker_registration"] = person.job_seeker.reference
    if person.employment is not None:
        # A new job replaces the one on record: people change jobs without telling HR.
        facts["replaced_employment_registration"] = person.employment.reference
    since = _first_date(task, _EMPLOYMENT_START_FIELDS)
    updated = person.model_copy(
        update={
            "job_seeker": None,
            "employment": Registration(reference=reference, case_id=task.case_id, since=since),
        }
    )
    return Approve(reference, facts), updated


def _service_card(task: TaskFacts, person: PersonRecord) -> tuple[Decision, PersonRecord]:
    # A form carrying the lost card's number (HR-EMPLOYMENT-SERVICE-CARD-REISSUE) asks for
    # a re-issue: it replaces the card on record, or records a card issued before the
    # bureau's records reached this platform.
    reissue = task.form.get("card_number") is not None
    if not reissue and person.service_card is not None:
        message = f"An employment service card ({person.service_card}) has already been issued."
        return Reject(CARD_ALREADY_ISSUED, message), person
    reference = make_reference("HR-SC", task)
    facts: _Facts = {"card": "employment_service", "card_number": reference, "reissue": reissue}
    if reissue and person.service_card is not None:
        facts["replaces_card"] = person.service_card
    updated = person.model_copy(
        update={"service_card": reference, "service_cards_issued": person.service_cards_issued + 1}
    )
    return Approve(reference, facts), updated


def _course(task: TaskFacts, done: tuple[str, ...]) -> tuple[str, int] | Decision:
    course = form_str(task, "course_name")
    hours = form_int(task, "course_hours")
    if course is None or hours is None:
        return needs_info(task, "course_name", "course_hours")
    if hours < MIN_COURSE_HOURS:
        message = f"The course lasted {hours} hours; a subsidy needs at least {MIN_COURSE_HOURS}."
        return Reject(COURSE_TOO_SHORT, message)
    if normalise_name(course) in done:
        # Form text is not repeated in messages (they reach the case view and the log).
        return Reject(
            SUBSIDY_ALREADY_GRANTED, "The course in the form has already been subsidised."
        )
    return course, hours


def _person_training(task: TaskFacts, person: PersonRecord) -> tuple[Decision, PersonRecord]:
    checked = _course(task, person.subsidised_courses)
    if not isinstance(checked, tuple):
        return checked, person
    course, hours = checked
    # Training subsidies serve registered job seekers (vocational training) and people in
    # registered employment (skill certificates for workers); anyone else must register first.
    if person.job_seeker is not None:
        eligibility = "job_seeker"
    elif person.employment is not None:
        eligibility = "employed"
    else:
        message = (
            "The applicant is neither a registered job seeker nor in registered employment; "
            "register first."
        )
        return Reject(NOT_REGISTERED_JOB_SEEKER, message), person
    reference = make_reference("HR-TS", task)
    facts: _Facts = {
        "subsidy": "training",
        "course_name": course,
        "course_hours": hours,
        "eligibility": eligibility,
    }
    updated = person.model_copy(
        update={"subsidised_courses": (*person.subsidised_courses, normalise_name(course))}
    )
    return Approve(reference, facts), updated


def _startup_subsidy(task: TaskFacts, person: PersonRecord) -> tuple[Decision, PersonRecord]:
    # One of each start-up subsidy (one-off grant, loan interest, premises rent) per
    # person: they are separate programmes sharing one action in the catalogue.
    if task.item_code in person.startup_subsidies:
        message = f"The applicant has already received this start-up subsidy ({task.item_code})."
        return Reject(SUBSIDY_ALREADY_GRANTED, message), person
    if person.job_seeker is None:
        message = "Start-up subsidies are for registered job seekers; register first."
        return Reject(NOT_REGISTERED_JOB_SEEKER, message), person
    reference = make_reference("HR-SS", task)
    facts: _Facts = {"subsidy": "startup", "item_code": task.item_code}
    updated = person.model_copy(
        update={"startup_subsidies": (*person.startup_subsidies, task.item_code)}
    )
    return Approve(reference, facts), updated


def _certificate(task: TaskFacts, person: PersonRecord) -> tuple[Decision, PersonRecord]:
    reference = make_reference("HR-CT", task)
    return Approve(reference, {"document": "certificate", "item_code": task.item_code}), person


# --- legal persons --------------------------------------------------------------------


def _company_employment(task: TaskFacts, company: CompanyRecord) -> tuple[Decision, CompanyRecord]:
    count = _head_count(task)
    invalid = _invalid_count(count)
    if invalid is not None:
        return invalid, company
    hired = 0 if count is None else count[1]
    reference = make_reference("HR-ER", task)
    facts: _Facts = {
        "registration": "employment",
        "employees_registered": hired,
    }
    updated = company.model_copy(
        update={
            "employment_registrations": company.employment_registrations + 1,
            "employees_registered": company.employees_registered + hired,
        }
    )
    return Approve(reference, facts), updated


def _company_training(task: TaskFacts, company: CompanyRecord) -> tuple[Decision, CompanyRecord]:
    checked = _course(task, company.subsidised_courses)
    if not isinstance(checked, tuple):
        return checked, company
    course, hours = checked
    reference = make_reference("HR-TS", task)
    facts: _Facts = {
        "subsidy": "training",
        "course_name": course,
        "course_hours": hours,
        "eligibility": "enterprise",
    }
    updated = company.model_copy(
        update={"subsidised_courses": (*company.subsidised_courses, normalise_name(course))}
    )
    return Approve(reference, facts), updated


def _filing(task: TaskFacts, kind: str, prefix: str) -> Decision:
    count = _head_count(task)
    invalid = _invalid_count(count)
    if invalid is not None:
        return invalid
    facts: _Facts = {"filing": kind}
    if count is not None:
        facts[count[0]] = count[1]
    return Approve(make_reference(prefix, task), facts)


def _recruitment_filing(task: TaskFacts, company: CompanyRecord) -> tuple[Decision, CompanyRecord]:
    decision = _filing(task, "recruitment", "HR-RF")
    if isinstance(decision, Approve):
        company = company.model_copy(
            update={"recruitment_filings": company.recruitment_filings + 1}
        )
    return decision, company


def _labour_contract_filing(
    task: TaskFacts, company: CompanyRecord
) -> tuple[Decision, CompanyRecord]:
    # Contracts, terminations and special working-hours schemes: one action in the catalogue.
    decision = _filing(task, "labour_contract", "HR-LC")
    if isinstance(decision, Approve):
        company = company.model_copy(
            update={"labour_contract_filings": company.labour_contract_filings + 1}
        )
    return decision, company


_PERSON_RULES: Mapping[str, Rule[PersonRecord]] = {
    "job_registration": _job_registration,
    "employment_registration": _person_employment,
    "employment_service_card": _service_card,
    "training_subsidy": _person_training,
    "startup_subsidy": _startup_subsidy,
    "certificate": _certificate,
}
_COMPANY_RULES: Mapping[str, Rule[CompanyRecord]] = {
    "employment_registration": _company_employment,
    "training_subsidy": _company_training,
    "recruitment_filing": _recruitment_filing,
    "labour_contract_filing": _labour_contract_filing,
}

ACTIONS: frozenset[str] = frozenset(_PERSON_RULES) | frozenset(_COMPANY_RULES)
"""Every action :func:`decide` implements; equals the ``actions:`` list in catalogue.yaml."""
