"""Social security (insurance, benefits) as a onedoor department.

It knows HR registrations only from HR's outcome events on
``dept.hr_registration.outcomes``, never from HR's tables.
"""

from __future__ import annotations

from services.social_security import domain
from shared.contracts.events import StepApproved, StepOutcome, StepRejected
from shared.department.adapter import Department, StepContext, register_subject_rules

department = Department("social_security")
register_subject_rules(
    department, domain.ACTIONS, domain.decide, domain.PersonRecord, domain.CompanyRecord
)


@department.learns_from("hr_registration")
async def learn_from_hr(ctx: StepContext, outcome: StepOutcome) -> None:
    """Remember what HR decided about a person (companies are not tracked here)."""
    if not isinstance(outcome, StepApproved | StepRejected):
        return
    if outcome.applicant_kind != "natural":
        return
    person = await ctx.load(domain.PersonRecord, "person", outcome.applicant_ref)
    learned = domain.learn_hr_outcome(
        person,
        outcome.action,
        isinstance(outcome, StepApproved),
        outcome.reference if isinstance(outcome, StepApproved) else None,
        str(outcome.case_id),
    )
    await ctx.save("person", learned)
