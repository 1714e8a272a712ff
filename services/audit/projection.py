"""The case-history projection: each accepted case's view, built from its events.

Pure code, no I/O: the store feeds events in (at ingest, for the live ``case_views``,
and on ``rebuild``), the CLI and the API print what comes out. A view never keeps the
applicant's ID number or phone: only the applicant's kind. Any order of the same events
gives the same view, and a rebuild from the log must give exactly the live projection
(``digest``).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, TypeVar
from uuid import UUID

from services.audit.timeline import last_wait, order_key
from shared.contracts.events import (
    CaseAccepted,
    CaseAdvanced,
    CaseAwaitingInfo,
    CaseClosed,
    CaseRejected,
    CaseReviewFlagged,
    CaseRouted,
    DeadlineMissed,
    DeadlineWarning,
    Event,
    PersonalDataAccessed,
    StepApproved,
    StepAssigned,
    StepNeedsInfo,
    StepOutcome,
    StepRejected,
)
from shared.contracts.sealing import PLAIN
from shared.platform.logs import mask_text

E = TypeVar("E", bound=Event)


def iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def _iso_or_none(at: datetime | None) -> str | None:
    return None if at is None else iso(at)


@dataclass(frozen=True)
class TimelineEntry:
    at: datetime
    event_type: str
    event_id: UUID
    step_index: int | None
    department: str | None
    detail: str  # e.g. "approved (HR-JR-...)", "rejected: already_registered"

    def to_json(self) -> dict[str, Any]:
        return {
            "at": iso(self.at),
            "event_type": self.event_type,
            "event_id": str(self.event_id),
            "step_index": self.step_index,
            "department": self.department,
            "detail": self.detail,
        }


@dataclass(frozen=True)
class WaitingInfo:
    """The case waits for the applicant: which step, for whom, what is missing."""

    step_index: int
    department: str
    missing: tuple[str, ...]  # form field names
    since: datetime

    def to_json(self) -> dict[str, Any]:
        return {
            "step_index": self.step_index,
            "department": self.department,
            "missing": list(self.missing),
            "since": iso(self.since),
        }


@dataclass(frozen=True)
class CaseView:
    """One case's history as the audit keeps it: no ID number, no phone."""

    case_id: UUID
    receipt_no: str
    item_code: str
    applicant_kind: str
    community_code: str
    centre_id: str
    channel: str
    accepted_at: datetime
    catalogue_version: str | None
    routed_at: datetime | None
    promised_by: datetime | None
    closed_at: datetime | None
    outcome: str | None
    on_spot: bool
    reason_code: str | None
    departments: tuple[str, ...]  # the slip's departments, in order
    review_flags: tuple[str, ...]  # "dept: reason_code" for failed reviews
    timeline: tuple[TimelineEntry, ...]
    # Set while the case waits for information (its last word is a CaseAwaitingInfo, as
    # services.audit.timeline.last_wait decides for verify too).
    waiting_info: WaitingInfo | None = None

    @property
    def status(self) -> str:
        """``waiting_info``, ``open``, or the outcome of a closed case."""
        if self.waiting_info is not None:
            return "waiting_info"
        return "open" if self.outcome is None else self.outcome

    def to_json(self) -> dict[str, Any]:
        """JSON-ready and deterministic: same case history, same dict. ``waiting_info``
        appears only while the case waits, so the views of every other case (and the
        digests over them) are what they were before the audit knew of waiting."""
        body: dict[str, Any] = {
            "case_id": str(self.case_id),
            "receipt_no": self.receipt_no,
            "item_code": self.item_code,
            "applicant_kind": self.applicant_kind,
            "community_code": self.community_code,
            "centre_id": self.centre_id,
            "channel": self.channel,
            "accepted_at": iso(self.accepted_at),
            "catalogue_version": self.catalogue_version,
            "routed_at": _iso_or_none(self.routed_at),
            "promised_by": _iso_or_none(self.promised_by),
            "closed_at": _iso_or_none(self.closed_at),
            "outcome": self.outcome,
            "on_spot": self.on_spot,
            "reason_code": self.reason_code,
            "departments": list(self.departments),
            "review_flags": list(self.review_flags),
            "timeline": [entry.to_json() for entry in self.timeline],
        }
        if self.waiting_info is not None:
            body["waiting_info"] = self.waiting_info.to_json()
        return body


def _event_key(event: Event) -> tuple[datetime, float, UUID]:
    return order_key(event.occurred_at, event.event_type, event.event_id)


def _event_type(event: Event) -> str:
    return event.event_type


def _describe(event: Event) -> tuple[int | None, str | None, str]:  # noqa: PLR0911 - one per type
    """Step index, department and a detail line; never the applicant's data or free text."""
    if isinstance(event, CaseAccepted):
        return None, None, f"accepted {event.item_code} at {event.centre_id} ({event.channel})"
    if isinstance(event, CaseRouted):
        how = "settled on the spot, " if event.settle_on_spot else ""
        slip = " > ".join(s.department for s in event.steps)
        return None, None, f"routed to {slip} ({how}promised by {iso(event.promised_by)})"
    if isinstance(event, CaseRejected):
        return None, None, f"rejected: {event.reason_code}"
    if isinstance(event, StepAssigned | CaseAdvanced):
        verb = "assigned" if isinstance(event, StepAssigned) else "advanced to"
        review = " (review)" if event.review else ""
        return event.step_index, event.department, f"{verb} {event.action}{review}"
    if isinstance(event, StepOutcome):
        review = " (review)" if event.review else ""
        if isinstance(event, StepApproved):
            ref = f" ({event.reference})" if event.reference else ""
            return event.step_index, event.department, f"approved{ref}{review}"
        if isinstance(event, StepRejected):
            return event.step_index, event.department, f"rejected: {event.reason_code}{review}"
        assert isinstance(event, StepNeedsInfo)
        missing = ", ".join(event.missing)
        return event.step_index, event.department, f"needs info: {missing}{review}"
    if isinstance(event, CaseAwaitingInfo):
        missing = ", ".join(event.missing)
        return event.step_index, event.department, f"waiting for information: {missing}"
    if isinstance(event, CaseClosed):
        how = " on the spot" if event.on_spot else ""
        reason = f": {event.reason_code}" if event.reason_code else ""
        return None, event.department, f"closed {event.outcome}{how}{reason}"
    if isinstance(event, CaseReviewFlagged):
        return event.step_index, event.department, f"review failed: {event.reason_code}"
    if isinstance(event, DeadlineWarning):
        return event.step_index, event.department, f"one working day left (due {iso(event.due_by)})"
    if isinstance(event, DeadlineMissed):
        return event.step_index, event.department, f"missed its due time {iso(event.due_by)}"
    return None, None, event.event_type


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    # A department's reference is free text: never let it carry the applicant's data.
    # The audit holds no data key, so a sealed applicant's values are unknown here: any
    # ID number or mobile number in the text is masked as logs mask them.
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "***")
    return mask_text(text)


def project_case(events: Iterable[Event]) -> CaseView | None:
    """The view of one case from its events (any order, duplicates allowed); ``None``
    while its CaseAccepted has not been seen."""
    distinct = _distinct(events)
    accepts = sorted((e for e in distinct.values() if isinstance(e, CaseAccepted)), key=_event_key)
    if not accepts:
        return None
    return _view(accepts[0], sorted(distinct.values(), key=_event_key))


def _distinct(events: Iterable[Event]) -> dict[UUID, Event]:
    """One event per event id; of two different copies the smaller canonical JSON wins,
    so the choice never depends on order (verify reports the conflict). Reads of
    personal data are left out: a read is no step of the case's life, and reading a
    history must not change it (``onedoor-audit access`` lists them)."""
    distinct: dict[UUID, Event] = {}
    for event in events:
        if isinstance(event, PersonalDataAccessed):
            continue
        seen = distinct.setdefault(event.event_id, event)
        if seen is not event and event.to_json() < seen.to_json():
            distinct[event.event_id] = event
    return distinct


def _first_of(events: list[Event], cls: type[E]) -> E | None:
    for event in events:
        if isinstance(event, cls):
            return event
    return None


def _view(accepted: CaseAccepted, ordered: list[Event]) -> CaseView:
    routed = _first_of(ordered, CaseRouted)
    rejected = _first_of(ordered, CaseRejected)
    closed = _first_of(ordered, CaseClosed)
    # The audit holds no data key: only a record from before sealing (upcast, its fields
    # "plain.") shows values to scrub; sealed ones cannot leak what the audit never has.
    secrets = tuple(
        token.removeprefix(PLAIN)
        for field, token in accepted.applicant.sealed.items()
        if field in ("id_number", "phone") and token.startswith(PLAIN)
    )
    flags: set[tuple[int, str, str]] = set()
    timeline: list[TimelineEntry] = []
    for event in ordered:
        step_index, department, detail = _describe(event)
        timeline.append(
            TimelineEntry(
                at=event.occurred_at,
                event_type=event.event_type,
                event_id=event.event_id,
                step_index=step_index,
                department=department,
                detail=_scrub(detail, secrets),
            )
        )
        if isinstance(event, CaseReviewFlagged) or (
            isinstance(event, StepRejected) and event.review
        ):
            flags.add((event.step_index, event.department, event.reason_code))
    waiting = last_wait(ordered, _event_type)
    assert waiting is None or isinstance(waiting, CaseAwaitingInfo)
    version = (
        routed.catalogue_version
        if routed is not None
        else rejected.catalogue_version
        if rejected is not None
        else None
    )
    return CaseView(
        case_id=accepted.case_id,
        receipt_no=accepted.receipt_no,
        item_code=accepted.item_code,
        applicant_kind=accepted.applicant.kind,
        community_code=accepted.community_code,
        centre_id=accepted.centre_id,
        channel=accepted.channel,
        accepted_at=accepted.occurred_at,
        catalogue_version=version,
        routed_at=routed.occurred_at if routed is not None else None,
        promised_by=routed.promised_by if routed is not None else None,
        closed_at=closed.occurred_at if closed is not None else None,
        outcome=closed.outcome if closed is not None else None,
        on_spot=closed.on_spot if closed is not None else False,
        reason_code=closed.reason_code if closed is not None else None,
        departments=tuple(s.department for s in routed.steps) if routed is not None else (),
        review_flags=tuple(f"{dept}: {reason}" for _, dept, reason in sorted(flags)),
        timeline=tuple(timeline),
        waiting_info=None
        if waiting is None
        else WaitingInfo(
            step_index=waiting.step_index,
            department=waiting.department,
            missing=tuple(_scrub(name, secrets) for name in waiting.missing),
            since=waiting.occurred_at,
        ),
    )


def project(events: Iterable[Event]) -> dict[UUID, CaseView]:
    """Every accepted case's view. Order-insensitive; duplicate event ids count once;
    events of cases never accepted are left out (verify reports them)."""
    by_case: dict[UUID, list[Event]] = {}
    for event in _distinct(events).values():
        by_case.setdefault(event.case_id, []).append(event)
    views: dict[UUID, CaseView] = {}
    for case_id in sorted(by_case, key=str):
        ordered = sorted(by_case[case_id], key=_event_key)
        accepted = _first_of(ordered, CaseAccepted)
        if accepted is not None:
            views[case_id] = _view(accepted, ordered)
    return views


def _canonical(value: Any) -> bytes:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def digest(views: Mapping[UUID, CaseView]) -> str:
    """SHA-256 (hex) of the canonical JSON of every view, sorted by case id: a rebuild
    from the log must give the same digest as the live projection."""
    ordered = [views[case_id].to_json() for case_id in sorted(views, key=str)]
    return hashlib.sha256(_canonical(ordered)).hexdigest()
