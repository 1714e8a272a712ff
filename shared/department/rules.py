"""The kit for pure department rules: records, the grants ledger, dispatch, form readers.

No I/O. A department's ``domain.py`` declares its record models (subclasses of
:class:`SubjectRecord`) and one rule per action, and hands them to :func:`decide_by_rules`.

Consistency on replay: every approval is written to the record's ``grants`` ledger under
(case_id, step_index, action); a task whose case already produced a grant is approved
again with the same reference and facts, leaving the record as it is, however the record
changed since. Rejections and requests for information change nothing.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import date
from typing import TypeVar

from pydantic import BaseModel, ConfigDict, JsonValue

from shared.department.decisions import Approve, Decision, NeedsInfo, TaskFacts


class UnknownActionError(ValueError):
    """The task names an action this department does not implement (the SDK dead-letters it)."""


class MalformedTaskError(ValueError):
    """The task cannot be decided as sent: wrong applicant record, an invalid identity
    number, or a form value of the wrong type. The router checks forms against the
    catalogue, so this means a bug upstream; the SDK dead-letters the task rather than
    guessing. Messages never carry ID numbers: they end up in DLQ headers and logs."""


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class Grant(Frozen):
    """One approval a record produced; the same task is approved again with these values."""

    case_id: str
    step_index: int
    action: str
    reference: str | None
    facts: dict[str, JsonValue]


class SubjectRecord(Frozen):
    """What a department knows about one subject (a person or a company)."""

    subject_id: str
    grants: tuple[Grant, ...] = ()

    def grant_for(self, task: TaskFacts) -> Grant | None:
        """The approval this task's case and step already produced, if any."""
        for grant in self.grants:
            if (grant.case_id, grant.step_index, grant.action) == (
                task.case_id,
                task.step_index,
                task.action,
            ):
                return grant
        return None


S = TypeVar("S", bound=SubjectRecord)
P = TypeVar("P", bound=SubjectRecord)
C = TypeVar("C", bound=SubjectRecord)
Rule = Callable[[TaskFacts, S], tuple[Decision, S]]


def decide_by_rules(
    department: str,
    task: TaskFacts,
    person: P | None,
    company: C | None,
    *,
    person_rules: Mapping[str, Rule[P]],
    company_rules: Mapping[str, Rule[C]],
) -> tuple[Decision, P | None, C | None]:
    """Pick the rule for ``task.action`` and the applicant's kind, and apply it.

    Returns the decision and the records to save (the applicant's possibly updated,
    the other one as passed in).
    """
    if task.action not in person_rules and task.action not in company_rules:
        raise UnknownActionError(f"{department} does not implement action {task.action!r}")
    if task.applicant_kind == "natural":
        person_rule = person_rules.get(task.action)
        if person_rule is None:
            raise MalformedTaskError(f"action {task.action!r} is for legal applicants only")
        decision, new_person = _apply(person_rule, task, _own_record(person, task))
        return decision, new_person, company
    if task.applicant_kind == "legal":
        company_rule = company_rules.get(task.action)
        if company_rule is None:
            raise MalformedTaskError(f"action {task.action!r} is for natural applicants only")
        decision, new_company = _apply(company_rule, task, _own_record(company, task))
        return decision, person, new_company
    raise MalformedTaskError(f"unknown applicant kind {task.applicant_kind!r}")


def _own_record(record: S | None, task: TaskFacts) -> S:
    if record is None:
        raise MalformedTaskError(f"a {task.applicant_kind} applicant's task came without a record")
    if record.subject_id != task.applicant_ref:
        raise MalformedTaskError("the record passed belongs to another subject than the applicant")
    return record


def _apply(rule: Rule[S], task: TaskFacts, record: S) -> tuple[Decision, S]:
    granted = record.grant_for(task)
    if granted is not None:
        return Approve(reference=granted.reference, facts=dict(granted.facts)), record
    decision, updated = rule(task, record)
    if isinstance(decision, Approve):
        grant = Grant(
            case_id=task.case_id,
            step_index=task.step_index,
            action=task.action,
            reference=decision.reference,
            facts=dict(decision.facts),
        )
        updated = updated.model_copy(update={"grants": (*updated.grants, grant)})
    return decision, updated


# --- form readers and small helpers ---------------------------------------------------


def make_reference(prefix: str, task: TaskFacts) -> str:
    """A department reference derived from the case id: replays give the same one."""
    return f"{prefix}-{task.case_id.replace('-', '')[:12].upper()}"


def normalise_name(name: str) -> str:
    """ "Welding  basics" and "welding basics" name the same course, scheme or person."""
    return " ".join(name.split()).casefold()


def needs_info(task: TaskFacts, *names: str) -> NeedsInfo:
    missing = tuple(name for name in names if task.form.get(name) is None)
    listed = ", ".join(missing)
    return NeedsInfo(missing=missing, message=f"The form must give {listed} for this step.")


def form_str(task: TaskFacts, name: str) -> str | None:
    value = task.form.get(name)
    if value is None or isinstance(value, str):
        return value
    raise MalformedTaskError(f"form field {name!r} must be a string")


def form_int(task: TaskFacts, name: str) -> int | None:
    value = task.form.get(name)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise MalformedTaskError(f"form field {name!r} must be a whole number")


def form_date(task: TaskFacts, name: str) -> date | None:
    value = form_str(task, name)
    if value is None:
        return None
    try:
        return date.fromisoformat(value)
    except ValueError as exc:
        raise MalformedTaskError(f"form field {name!r} must be a YYYY-MM-DD date") from exc
