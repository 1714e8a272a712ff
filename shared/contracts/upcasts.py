"""How records of older versions are read (registered in shared.contracts.events): each
upcaster turns a version N body into a version N + 1 body, from the record alone."""

from __future__ import annotations

from datetime import date
from typing import Any
from uuid import UUID

from shared.contracts.errors import MalformedEventError
from shared.contracts.identity import validate_resident_id
from shared.contracts.sealing import PLAIN, legacy_ref


def upcast_step_outcome_v1(data: dict[str, Any]) -> dict[str, Any]:
    """A version 1 StepApproved / StepRejected / StepNeedsInfo body as version 2: adds
    ``applicant_kind``, which version 1 did not carry.

    The kind is read from ``applicant_id`` alone, so the same record always upcasts the
    same way: a valid 18-character resident ID (by
    :func:`~shared.contracts.identity.validate_resident_id`) is a natural person's,
    anything else (a credit code) a legal person's. The resident ID's "birth date not
    in the future" check is made against no particular day: it concerns the clock at
    intake, not the kind, and the clock must not decide a replay.
    """
    if "applicant_kind" in data:
        raise MalformedEventError("a version 1 step outcome carries no applicant_kind")
    applicant_id = data.get("applicant_id")
    natural = (
        isinstance(applicant_id, str) and validate_resident_id(applicant_id, today=date.max) is None
    )
    return {**data, "applicant_kind": "natural" if natural else "legal"}


def upcast_step_outcome_v2(data: dict[str, Any]) -> dict[str, Any]:
    """A version 2 step outcome as version 3: ``applicant_ref`` is
    :func:`~shared.contracts.sealing.legacy_ref` of ``applicant_id`` (dropped)."""
    applicant_id = data.pop("applicant_id", None)
    if not isinstance(applicant_id, str) or "applicant_ref" in data:
        raise MalformedEventError("a version 2 step outcome carries applicant_id, no ref")
    return {**data, "applicant_ref": legacy_ref(applicant_id)}


def upcast_clear_applicant(data: dict[str, Any]) -> dict[str, Any]:
    """A CaseAccepted v1 or StepAssigned v2 (applicant in clear) as the next version:
    its ref :func:`~shared.contracts.sealing.legacy_ref`, its fields ``plain.`` tokens."""
    applicant = data.get("applicant")
    if not isinstance(applicant, dict) or not isinstance(applicant.get("id_number"), str):
        raise MalformedEventError("a version 1 applicant carries an id_number")
    sealed = {k: PLAIN + v for k, v in applicant.items() if k != "kind" and isinstance(v, str)}
    ref, nil = legacy_ref(applicant["id_number"]), str(UUID(int=0))
    upcast = {"kind": applicant.get("kind"), "ref": ref, "key_id": nil, "sealed": sealed}
    return {**data, "applicant": upcast}


def upcast_to_working_days(data: dict[str, Any]) -> dict[str, Any]:
    """A version 1 CaseRouted or StepAssigned (promises in calendar days) as version 2:
    no working-day count, no warning time."""
    if "working_days" in data:
        raise MalformedEventError("a version 1 routing event carries no working_days")
    extra = {"warn_at": None} if "due_by" in data else {}
    return {**data, "working_days": None, **extra}
