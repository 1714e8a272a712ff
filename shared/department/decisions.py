"""What a department handler decides about one step: approve, reject, or ask for more.

The adapter SDK turns a decision into the matching outcome event (StepApproved,
StepRejected, StepNeedsInfo) on ``dept.<name>.outcomes``.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Any


@dataclass(frozen=True)
class Approve:
    """The step is granted. ``reference`` is the department's own number for it."""

    reference: str | None = None
    facts: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reject:
    """The step is refused, with a machine-readable code and a message for the applicant."""

    reason_code: str
    message: str


@dataclass(frozen=True)
class NeedsInfo:
    """The applicant must supply more before the department can decide."""

    missing: tuple[str, ...]
    message: str


Decision = Approve | Reject | NeedsInfo


@dataclass(frozen=True)
class TaskFacts:
    """The parts of a StepAssigned that department rules look at (no I/O, no envelope).

    ``assigned_on`` is the centre's calendar day on which the router assigned the step
    (the StepAssigned's ``occurred_at``). Rules that need "today" use it, never the wall
    clock: a redelivered or replayed task is then decided as it was the first time.

    ``applicant_ref`` is the applicant's pseudonym (what the department's records key
    on); ``applicant_id`` and ``applicant_name`` are opened from the task's sealed fields
    for this decision only: keep them out of records, outcome facts and messages.
    """

    case_id: str
    item_code: str
    action: str
    step_index: int
    applicant_kind: str
    applicant_ref: str
    applicant_id: str
    applicant_name: str
    community_code: str
    form: Mapping[str, Any]
    assigned_on: date
    review: bool = False
