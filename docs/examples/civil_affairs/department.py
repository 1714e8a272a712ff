"""Civil affairs as a onedoor department: the senior citizens' allowance."""

from __future__ import annotations

from pydantic import BaseModel

from shared.contracts.events import StepAssigned
from shared.contracts.identity import resident_id_birth_date
from shared.department.adapter import Department, StepContext
from shared.department.decisions import Approve, Decision, NeedsInfo, Reject, TaskFacts

department = Department("civil_affairs")


class Senior(BaseModel):
    """What civil affairs remembers about a person (in its own schema)."""

    subject_id: str  # the person's pseudonym (applicant_ref), never the ID number
    allowance_case: str | None = None  # the case that granted the allowance


def monthly_allowance(age: int) -> int:
    """Yuan per month by age: 100 from 80, 500 from 90, 800 from 100."""
    return 800 if age >= 100 else 500 if age >= 90 else 100


def decide(task: TaskFacts, senior: Senior) -> tuple[Decision, Senior]:
    """The rules, pure: the same task and record give the same decision on every replay
    (``task.assigned_on`` is the day the step was assigned, never the wall clock)."""
    if senior.allowance_case is not None:
        paid = "已在领取高龄津贴。 / The allowance is paid already."
        return Reject("already_granted", paid), senior
    if not task.form["lives_in_district"]:
        proof = "请提供本区户籍证明。 / Proof of residence in the district is needed."
        return NeedsInfo(("lives_in_district",), proof), senior
    born = resident_id_birth_date(task.applicant_id)
    on = task.assigned_on
    age = on.year - born.year - ((on.month, on.day) < (born.month, born.day))
    if age < 80:
        young = f"申请人{age}岁，未满80岁。 / The applicant is {age}, under 80."
        return Reject("under_age", young), senior
    granted = senior.model_copy(update={"allowance_case": task.case_id})
    amount = monthly_allowance(age)
    return Approve(reference=f"CA-{task.case_id[:8]}", facts={"monthly_yuan": amount}), granted


@department.action("senior_allowance")
async def senior_allowance(ctx: StepContext, task: StepAssigned) -> Decision:
    senior = await ctx.load(Senior, "person", task.applicant.ref)
    decision, senior = decide(ctx.facts(task), senior)
    await ctx.save("person", senior)
    return decision
