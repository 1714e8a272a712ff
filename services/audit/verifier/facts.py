"""What the rules keep of each event (a :class:`Fact`), and one case's facts by kind
(a :class:`CaseLog`): the replay's memory between reading the log and judging cases."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Literal, NamedTuple, TypeVar, cast

from services.audit.timeline import order_key
from services.audit.verifier.report import Violation
from shared.contracts import topology
from shared.contracts.audit_events import AuditCheckpoint
from shared.contracts.decoding import decode_record
from shared.contracts.events import (
    CaseAccepted,
    CaseAdvanced,
    CaseAwaitingInfo,
    CaseClosed,
    CaseRejected,
    CaseReviewFlagged,
    CaseRouted,
    DeadLetterRedriven,
    Event,
    EventDecodeError,
    PersonalDataAccessed,
    PersonErased,
    StepApproved,
    StepAssigned,
    StepNeedsInfo,
    StepOutcome,
    StepRejected,
    registry,
)

if TYPE_CHECKING:
    from collections.abc import Mapping
    from uuid import UUID

    from services.audit.verifier.log import LogRecord


class Accepted(NamedTuple):
    item_code: str
    applicant_kind: str
    centre_id: str
    receipt_no: str


class Access(NamedTuple):
    """A person's read of the case (PersonalDataAccessed)."""

    accessor: str
    role: str
    accessor_centre: str | None
    reason: str | None


# Who and what a fact is about, kept as two hashes (never the values: a replay keeps its
# facts to the end, and holding each event's strings and form would cost it memory and
# time): ``subject``, of (item code, applicant kind, applicant reference), for an
# acceptance, a task and an outcome; ``particulars``, of (sealed applicant name, community code,
# form), for an acceptance and a task. Equal hashes are taken as equal; unequal ones are
# compared again from the decoded events before anything is reported.


class Routed(NamedTuple):
    item_code: str
    catalogue_version: str
    steps: tuple[tuple[int, str, str], ...]  # (index, department, action)
    settle_on_spot: bool
    promised_by: datetime
    working_days: int | None  # None: a promise in calendar days (CaseRouted v1)


class Rejected(NamedTuple):
    catalogue_version: str
    reason_code: str


class Closed(NamedTuple):
    outcome: str
    on_spot: bool


# str: a step rejection's reason code; datetime: a task's due date
Head = Accepted | Routed | Rejected | Closed | Access | str | datetime | None
H = TypeVar("H", Accepted, Routed, Rejected, Closed, Access)


# A NamedTuple's own constructor is Python code (a lambda); tuple.__new__ builds the same
# instance in C, from exactly its fields in order.
_new = tuple.__new__


# What Fact keeps of each class of event, decided once per class: isinstance on a
# pydantic model runs ABCMeta's check in Python code, and a replay would make several
# per record. In the order Fact tests them; the flag says "a DeadLetterRedriven" (or an
# AuditCheckpoint: neither is a step of a case).
_STEP, _STEP_REJECTED, _WAITING, _ACCEPTED, _ROUTED, _REJECTED, _CLOSED, _ACCESS, _PLAIN = range(9)
SHAPES: dict[type, tuple[int, bool]] = {}
_OUTCOME_TYPES = frozenset(cls.event_type for cls in (StepApproved, StepRejected, StepNeedsInfo))
_ASSIGNED = StepAssigned.event_type


def shape(cls: type) -> tuple[int, bool]:
    """The class's shape for Fact, and whether it is an operator's redrive."""
    found = SHAPES.get(cls)
    if found is None:
        if issubclass(cls, StepAssigned | CaseAdvanced | StepOutcome):
            kind = _STEP_REJECTED if issubclass(cls, StepRejected) else _STEP
        elif issubclass(cls, CaseAwaitingInfo):
            kind = _WAITING
        elif issubclass(cls, CaseAccepted):
            kind = _ACCEPTED
        elif issubclass(cls, CaseRouted):
            kind = _ROUTED
        elif issubclass(cls, CaseRejected):
            kind = _REJECTED
        elif issubclass(cls, CaseClosed):
            kind = _CLOSED
        elif issubclass(cls, PersonalDataAccessed):
            kind = _ACCESS
        else:
            kind = _PLAIN
        # Not a step of a case: an operator's redrive, the audit's checkpoint, an admin's
        # erasure (its own check is services.audit.verifier.erasures).
        aside = DeadLetterRedriven | AuditCheckpoint | PersonErased
        found = SHAPES[cls] = (kind, issubclass(cls, aside))
    return found


class Fact:
    """One event as the rules need it, and where it sits in the log.

    A replay keeps one per event until the end. The pydantic models are several times
    heavier (applicant, form, four UUIDs...), and building this light copy also makes
    the replay faster. What only a rare check needs (a CaseAccepted's form, the full
    content of a duplicate) is decoded again from ``value``.
    """

    __slots__ = (
        "action",
        "at",
        "case_id",
        "causation_id",
        "department",
        "event_id",
        "event_type",
        "head",
        "offset",
        "particulars",
        "partition",
        "review",
        "step_index",
        "subject",
        "topic",
        "value",
    )

    def __init__(self, event: Event, record: LogRecord, kind: int | None = None) -> None:
        """``kind``: ``shape(type(event))[0]`` when the caller has it already."""
        self.event_type = event.event_type
        self.event_id = event.event_id
        self.case_id = event.case_id
        self.causation_id = event.causation_id
        self.at = event.occurred_at
        self.topic = record.topic
        self.partition = record.partition
        self.offset = record.offset
        self.value = record.value
        self.head: Head = None
        self.subject: int | None = None
        self.particulars: int | None = None
        if kind is None:
            kind = shape(type(event))[0]
        if kind <= _WAITING:
            step = cast("StepAssigned | CaseAdvanced | StepOutcome | CaseAwaitingInfo", event)
            self.step_index: int | None = step.step_index
            self.department: str | None = step.department
            if kind == _WAITING:
                self.action: str | None = None
                self.review = False
                return
            step = cast("StepAssigned | CaseAdvanced | StepOutcome", event)
            self.action = step.action
            self.review = step.review
            if self.event_type in _OUTCOME_TYPES:
                outcome = cast("StepOutcome", event)
                self.subject = hash(
                    (outcome.item_code, outcome.applicant_kind, outcome.applicant_ref)
                )
            elif self.event_type == _ASSIGNED:
                self._task(cast("StepAssigned", event))
            if kind == _STEP_REJECTED:
                self.head = cast("StepRejected", event).reason_code
            return
        self.step_index = self.department = self.action = None
        self.review = False
        if kind == _ACCEPTED:
            self._accepted(cast("CaseAccepted", event))
        elif kind == _ROUTED:
            routed = cast("CaseRouted", event)
            steps = tuple((s.index, s.department, s.action) for s in routed.steps)
            self.head = _new(
                Routed,
                (
                    routed.item_code,
                    routed.catalogue_version,
                    steps,
                    routed.settle_on_spot,
                    routed.promised_by,
                    routed.working_days,
                ),
            )
        elif kind == _REJECTED:
            rejected = cast("CaseRejected", event)
            self.head = _new(Rejected, (rejected.catalogue_version, rejected.reason_code))
        elif kind == _CLOSED:
            closed = cast("CaseClosed", event)
            self.head = _new(Closed, (closed.outcome, closed.on_spot))
        elif kind == _ACCESS:
            read = cast("PersonalDataAccessed", event)
            self.head = _new(Access, (read.accessor, read.role, read.accessor_centre, read.reason))

    def _accepted(self, accepted: CaseAccepted) -> None:
        a = accepted.applicant
        self.head = _new(
            Accepted, (accepted.item_code, a.kind, accepted.centre_id, accepted.receipt_no)
        )
        self.subject = hash((accepted.item_code, a.kind, a.ref))
        # The sealed name: the router copies it byte for byte into each task.
        name = a.sealed.get("name")
        self.particulars = hash((name, accepted.community_code, form_hash(accepted.form)))

    def _task(self, task: StepAssigned) -> None:
        self.head = task.due_by
        a = task.applicant
        self.subject = hash((task.item_code, a.kind, a.ref))
        name = a.sealed.get("name")
        self.particulars = hash((name, task.community_code, form_hash(task.form)))

    @property
    def position(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)

    def payload(self, kind: type[H]) -> H:
        assert isinstance(self.head, kind)
        return self.head

    def event(self) -> Event:
        """The full event, decoded again from the record."""
        event = decode_record(self.value)
        assert not isinstance(event, EventDecodeError)
        return event

    def violation(
        self, kind: str, detail: str, severity: Literal["error", "flag"] = "error"
    ) -> Violation:
        return Violation(
            kind=kind,
            case_id=self.case_id,
            event_id=self.event_id,
            topic=self.topic,
            partition=self.partition,
            offset=self.offset,
            detail=detail,
            severity=severity,
        )


def form_hash(form: Mapping[str, object]) -> int:
    """A hash of a form (flat forms at C speed; any other by its repr)."""
    try:
        return hash(tuple(form.items()))
    except TypeError:  # a list or a mapping among the values
        return hash(repr(form))


_HOMES: dict[tuple[str, str | None], str] = {}


def home_topic(fact: Fact) -> str:
    """The topic the fact's event belongs on (its department's, for a task or an
    outcome), as the topology declares it."""
    found = _HOMES.get((fact.event_type, fact.department))
    if found is None:
        declared = topology.topic_of(registry.classes()[fact.event_type])
        try:
            found = declared.name(fact.department)
        except ValueError:
            found = declared.template
        _HOMES[(fact.event_type, fact.department)] = found
    return found


def time_key(fact: Fact) -> tuple[datetime, float, UUID]:
    """Where the fact sits in its case's timeline, as the projection orders it."""
    return order_key(fact.at, fact.event_type, fact.event_id)


def fact_type(fact: Fact) -> str:
    return fact.event_type


def in_time_order(facts: list[Fact]) -> list[Fact]:
    # Nearly every group holds one fact: skip the sort and its key calls then.
    return sorted(facts, key=time_key) if len(facts) > 1 else facts


@dataclass
class CaseLog:
    """One case's facts, by kind."""

    accepted: list[Fact] = field(default_factory=list)
    routed: list[Fact] = field(default_factory=list)
    rejected: list[Fact] = field(default_factory=list)
    closed: list[Fact] = field(default_factory=list)
    assigned: list[Fact] = field(default_factory=list)
    advanced: list[Fact] = field(default_factory=list)
    outcomes: list[Fact] = field(default_factory=list)
    waiting: list[Fact] = field(default_factory=list)
    flagged: list[Fact] = field(default_factory=list)
    accesses: list[Fact] = field(default_factory=list)  # people's reads of the case
    other: list[Fact] = field(default_factory=list)  # a type registered after this code
    # Records of the case that failed a signature or signer check, by UUID.int of their
    # event id: never part of its story, known only so that their consequences are not
    # reported again (the fault is reported at the bad record).
    tainted: dict[int, Fact] = field(default_factory=dict)

    def add(self, fact: Fact) -> None:
        getattr(self, _SLOT.get(fact.event_type, "other")).append(fact)

    def remove(self, fact: Fact) -> None:
        getattr(self, _SLOT.get(fact.event_type, "other")).remove(fact)

    def everything(self) -> list[Fact]:
        return [fact for name in _SLOTS for fact in getattr(self, name)]


# Which list of a CaseLog holds each event type.
_SLOT: Mapping[str, str] = {
    CaseAccepted.event_type: "accepted",
    CaseRouted.event_type: "routed",
    CaseRejected.event_type: "rejected",
    CaseClosed.event_type: "closed",
    StepAssigned.event_type: "assigned",
    CaseAdvanced.event_type: "advanced",
    StepApproved.event_type: "outcomes",
    StepRejected.event_type: "outcomes",
    StepNeedsInfo.event_type: "outcomes",
    CaseAwaitingInfo.event_type: "waiting",
    CaseReviewFlagged.event_type: "flagged",
    PersonalDataAccessed.event_type: "accesses",
}
_SLOTS = (*dict.fromkeys(_SLOT.values()), "other")
