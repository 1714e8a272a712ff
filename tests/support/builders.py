"""Builders of what the tests send: HTTP request bodies, applicants, events and forms.

One place, so that a contract change (a new required field of an event, say) is made
once for every tier.
"""

from __future__ import annotations

import itertools
from collections.abc import Mapping
from datetime import UTC, date, datetime
from typing import Any
from uuid import NAMESPACE_URL, UUID, uuid4, uuid5

from services.intake.subject_keys import sealed_applicant
from shared.contracts.events import (
    Applicant,
    CaseAccepted,
    CaseAwaitingInfo,
    DeadLetterRedriven,
    Event,
    SealedApplicant,
    StepAssigned,
    StepOutcome,
)
from shared.contracts.identity import make_resident_id
from shared.contracts.sealing import PLAIN, CentreSecret, legacy_ref
from shared.contracts.topology import OPERATOR, dlq

NOW = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
COMMUNITY = "110105001001"

# Forms that pass the catalogue's checks for these items.
JOB_FORM: Mapping[str, Any] = {"education": "college", "desired_occupation": "cook"}
BENEFIT_FORM: Mapping[str, Any] = {  # SS-UNEMPLOYMENT-BENEFIT (HR, then social security)
    "last_employer": "Beijing Foods Co.",
    "separation_date": "2026-09-30",
    "insured_months": 40,
    "education": "high school",
    "desired_occupation": "cook",
}
EMPLOYMENT_FORM: Mapping[str, Any] = {  # HR-EMPLOYMENT-REGISTRATION (settled on the spot)
    "employer_name": "Shanghai Tech Co.",
    "employment_start_date": "2026-11-01",
}

_seq = itertools.count(1)

# The tests' centre secret and the one data key every person sealed here shares.
TEST_SECRET = CentreSecret(bytes(range(32)))
TEST_KEY = bytes(range(32, 64))


def fixed_key_id(ref: str) -> UUID:
    return uuid5(NAMESPACE_URL, ref)


def sealed(who: Applicant, case_id: UUID) -> SealedApplicant:
    """``who`` as intake seals it for ``case_id`` (under TEST_SECRET and TEST_KEY)."""
    ref = TEST_SECRET.subject_ref(who.id_number)
    return sealed_applicant(who, ref, (fixed_key_id(ref), TEST_KEY), case_id)


def in_clear(who: Applicant) -> SealedApplicant:
    """``who`` as a record from before sealing is upcast: ``plain.`` tokens that open
    without a key (for tests that hand a department a task no intake sealed)."""
    values = who.model_dump()
    return SealedApplicant(
        kind=who.kind,
        ref=legacy_ref(who.id_number),
        key_id=UUID(int=0),
        sealed={f: PLAIN + values[f] for f in ("name", "id_number")},
    )


def applicant(n: int) -> Applicant:
    """The ``n``-th natural person (the same ``n`` gives the same person)."""
    rid = make_resident_id("110105", date(1980, 1, 1 + n % 28), n % 1000)
    return Applicant(kind="natural", name="Chen Jing", id_number=rid, phone="13712345678")


def person() -> dict[str, str]:
    """A fresh natural-person applicant, as an HTTP request carries it."""
    rid = make_resident_id("110105", date(1985, 3, next(_seq) % 28 + 1), int(uuid4().int % 1000))
    return {"kind": "natural", "name": "Zhang Min", "id_number": rid, "phone": "13912345678"}


def case_body(item: str, applicant: Mapping[str, str], form: Mapping[str, Any]) -> dict[str, Any]:
    """The JSON body of ``POST /cases`` (the window and the clerk come from the token)."""
    return {
        "item_code": item,
        "applicant": dict(applicant),
        "community_code": COMMUNITY,
        "form": dict(form),
        "channel": "window",
    }


def accepted(
    item: str,
    who: Applicant,
    form: Mapping[str, Any],
    *,
    case_id: UUID | None = None,
    receipt_no: str = "C01-20261127-000001",
) -> CaseAccepted:
    """The CaseAccepted intake publishes for such a request."""
    eid = uuid4()
    case_id = case_id or uuid4()
    return CaseAccepted(
        event_id=eid,
        case_id=case_id,
        correlation_id=eid,
        producer="intake",
        item_code=item,
        applicant=sealed(who, case_id),
        community_code=COMMUNITY,
        form=dict(form),
        centre_id="C01",
        window_id="W01",
        channel="window",
        receipt_no=receipt_no,
    )


def outcome(task: StepAssigned, cls: type[StepOutcome], **kw: Any) -> StepOutcome:
    """The department's answer ``cls`` to ``task`` (``kw``: the outcome's own fields)."""
    fields: dict[str, Any] = {
        **task.caused(),
        "producer": task.department,
        "step_index": task.step_index,
        "department": task.department,
        "action": task.action,
        "item_code": task.item_code,
        "applicant_ref": task.applicant.ref,
        "review": task.review,
    }
    if "applicant_kind" in cls.model_fields:
        fields["applicant_kind"] = task.applicant.kind
    return cls(**fields, **kw)


def awaiting_info(cause: StepOutcome | StepAssigned, **changes: Any) -> CaseAwaitingInfo:
    """The router's CaseAwaitingInfo for a department's StepNeedsInfo ``cause``: its
    step, department, missing fields and message. ``changes``: a wait wrong in those
    fields; a ``cause`` that is no StepNeedsInfo (a StepAssigned, say) gives a wait
    nobody asked for."""
    fields: dict[str, Any] = {
        **cause.caused(),
        "producer": "router",
        "step_index": cause.step_index,
        "department": cause.department,
        "missing": getattr(cause, "missing", ("separation_letter",)),
        "message": getattr(cause, "message", "bring the letter"),
    }
    return CaseAwaitingInfo(**(fields | changes))


def redriven(
    event: Event, topic: str, *, original_offset: int, operator: str = "ops-1"
) -> DeadLetterRedriven:
    """An operator's DeadLetterRedriven for ``event``, dead-lettered from ``topic`` (its
    DLQ at partition 0, offset 0) after it was read at ``original_offset``."""
    return DeadLetterRedriven(
        case_id=event.case_id,
        correlation_id=event.case_id,
        producer=OPERATOR,
        dlq_topic=dlq(topic),
        dlq_partition=0,
        dlq_offset=0,
        original_topic=topic,
        original_partition=0,
        original_offset=original_offset,
        redriven_event_id=event.event_id,
        operator=operator,
        reason="fixed in 1.3",
    )
