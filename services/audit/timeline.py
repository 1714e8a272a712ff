"""One case's events in the order the audit tells its life, and whether the case waits
for the applicant. One definition, used by the projection (``waiting_info`` in the
views, so ``stats``' ``open_past_promise``) and by the verifier (``overdue``), so the
two never disagree about which events end a wait or which of two came first.

Pure code, no I/O, and nothing of ``services.audit`` imported: both sides import it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime
from typing import TypeVar
from uuid import UUID

from shared.contracts.events import (
    CaseAccepted,
    CaseAdvanced,
    CaseAwaitingInfo,
    CaseClosed,
    CaseRejected,
    CaseReviewFlagged,
    CaseRouted,
    DeadLetterRedriven,
    PersonalDataAccessed,
    StepApproved,
    StepAssigned,
    StepNeedsInfo,
    StepRejected,
)

T = TypeVar("T")

WAIT = CaseAwaitingInfo.event_type

# Ties of occurred_at within a case, broken by the order a case lives its life (a type
# registered after this code comes last), then by event id.
TYPE_ORDER: Mapping[str, float] = {
    CaseAccepted.event_type: 0,
    CaseRouted.event_type: 1,
    CaseRejected.event_type: 2,
    StepAssigned.event_type: 3,
    CaseAdvanced.event_type: 4,
    StepApproved.event_type: 5,
    StepRejected.event_type: 5,
    StepNeedsInfo.event_type: 5,
    WAIT: 5.5,
    CaseClosed.event_type: 6,
    CaseReviewFlagged.event_type: 7,
}
_LAST = 99.0

# Events after a wait that do not end it: the outcome that caused it, an operator's
# redrive, someone reading the case. Anything else (an assignment, an outcome, a close, a
# flag...) moves the case on.
KEEPS_WAITING = frozenset(
    {
        StepNeedsInfo.event_type,
        DeadLetterRedriven.event_type,
        PersonalDataAccessed.event_type,
    }
)


def order_key(at: datetime, event_type: str, event_id: UUID) -> tuple[datetime, float, UUID]:
    """Where an event sits in its case's timeline: by ``occurred_at``, ties by type
    (:data:`TYPE_ORDER`), then by event id."""
    return (at, TYPE_ORDER.get(event_type, _LAST), event_id)


def last_wait(ordered: Sequence[T], event_type: Callable[[T], str]) -> T | None:
    """The wait (a CaseAwaitingInfo) that is the case's last word, or ``None``.

    ``ordered`` is the case's events in :func:`order_key` order; the case still waits
    when nothing but :data:`KEEPS_WAITING` follows its last CaseAwaitingInfo. The
    caller decides which waits count (the verifier leaves out the unexplained ones).
    """
    for item in reversed(ordered):
        kind = event_type(item)
        if kind == WAIT:
            return item
        if kind not in KEEPS_WAITING:
            return None
    return None
