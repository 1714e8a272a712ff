"""The audit's rules: the case-history projection and the zero-error invariants.

Pure code, no I/O: the store feeds records and events in, the CLI and API print what
comes out.

``verify`` replays the event log and reports every violation. The replay interleaves
topics and partitions in any order, so nothing here depends on arrival order across
topics: the records are first collected per case, then every case is judged causally,
by event ids, causation ids and step indexes. Where one of two copies or facts has to
be called "the first", it is the one with the lowest log position (duplicate event
ids) or the earliest ``(occurred_at, event_id)`` (two facts of one case), never the
one read first.

``project`` builds the audit's case history from events, and ``stats`` counts over
it. Neither keeps the applicant's ID number or phone: only the applicant's kind.

No I/O here. The one process-wide effect: ``verify`` pauses the cyclic garbage
collector while it runs (see ``gc_paused``).
"""

from __future__ import annotations

import gc
import hashlib
import json
import math
from collections.abc import Container, Iterable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta, timezone
from typing import Annotated, Any, Literal, NamedTuple, TypeVar, Union, cast
from uuid import UUID

from pydantic import Field, Strict, TypeAdapter, create_model
from pydantic_core import from_json

from shared.contracts import topology
from shared.contracts.catalogue import Catalogue, Item
from shared.contracts.events import (
    CaseAccepted,
    CaseAdvanced,
    CaseClosed,
    CaseRejected,
    CaseReviewFlagged,
    CaseRouted,
    DeadLetterRedriven,
    Event,
    EventDecodeError,
    StepApproved,
    StepAssigned,
    StepNeedsInfo,
    StepOutcome,
    StepRejected,
    parse_event,
    registry,
)
from shared.contracts.topology import (
    INTAKE,
    ROUTER,
    dept_outcomes,
    dept_tasks,
)
from shared.messaging.signing import PublicKeys, digest_prefix, signer_digest

__all__ = [
    "BAD_SIGNATURE",
    "BROKEN_HASH_CHAIN",
    "CATALOGUE_MISMATCH",
    "CLOSED_TWICE",
    "DUPLICATE_EVENT_CONFLICT",
    "DUPLICATE_OUTCOME",
    "INCONSISTENT_CLOSE",
    "MALFORMED_RECORD",
    "MISSING_SIGNATURE",
    "OVERDUE",
    "REVIEW_FAILED",
    "STEP_OUT_OF_ORDER",
    "UNASSIGNED_OUTCOME",
    "UNKNOWN_CASE",
    "VIOLATION_KINDS",
    "WRONG_SIGNER",
    "CaseView",
    "LogRecord",
    "ShardReport",
    "Stats",
    "TimelineEntry",
    "VerifyReport",
    "Violation",
    "allowed_signer",
    "decode",
    "digest",
    "merge_shards",
    "project",
    "project_case",
    "stats",
    "verify",
    "verify_shard",
]

MALFORMED_RECORD = "malformed_record"
DUPLICATE_EVENT_CONFLICT = "duplicate_event_conflict"
UNKNOWN_CASE = "unknown_case"
CATALOGUE_MISMATCH = "catalogue_mismatch"
STEP_OUT_OF_ORDER = "step_out_of_order"
UNASSIGNED_OUTCOME = "unassigned_outcome"
DUPLICATE_OUTCOME = "duplicate_outcome"
CLOSED_TWICE = "closed_twice"
INCONSISTENT_CLOSE = "inconsistent_close"
REVIEW_FAILED = "review_failed"
OVERDUE = "overdue"
MISSING_SIGNATURE = "missing_signature"
BAD_SIGNATURE = "bad_signature"
WRONG_SIGNER = "wrong_signer"
BROKEN_HASH_CHAIN = "broken_hash_chain"  # checked by the store, over its own hash chain

VIOLATION_KINDS: tuple[str, ...] = (
    MALFORMED_RECORD,
    DUPLICATE_EVENT_CONFLICT,
    UNKNOWN_CASE,
    CATALOGUE_MISMATCH,
    STEP_OUT_OF_ORDER,
    UNASSIGNED_OUTCOME,
    DUPLICATE_OUTCOME,
    CLOSED_TWICE,
    INCONSISTENT_CLOSE,
    REVIEW_FAILED,
    OVERDUE,
    MISSING_SIGNATURE,
    BAD_SIGNATURE,
    WRONG_SIGNER,
    BROKEN_HASH_CHAIN,
)

# Dates in the statistics are the centre's calendar days (China keeps no summer time).
CENTRE_TZ = timezone(timedelta(hours=8), "Asia/Shanghai")

_DETAIL_LIMIT = 300

E = TypeVar("E", bound=Event)


# --------------------------------------------------------------------------- records


@dataclass(frozen=True, slots=True)
class LogRecord:
    topic: str  # logical topic name, without any deployment prefix, e.g. "cases.accepted"
    partition: int
    offset: int
    value: bytes  # the record value as stored in Kafka
    signer: str | None  # header "onedoor-signer"
    signature: str | None  # header "onedoor-signature" (base64)


def _decode(value: bytes) -> Event | EventDecodeError:
    # pydantic-core's JSON reader is about twice as fast as json.loads; anything it
    # refuses goes through parse_event untouched, so the verdict and its reason are
    # always parse_event's own.
    try:
        data = from_json(value)
    except ValueError:
        data = None
    try:
        return parse_event(data if isinstance(data, dict) else value)
    except EventDecodeError as exc:
        return exc


def _wire_model(cls: type[Event]) -> type[Event]:
    """``cls`` as it travels: ``event_type`` and ``schema_version`` become (excluded)
    fields beside the others, so one validator takes the record's JSON bytes straight
    to a ``cls`` instance (a subclass: isinstance, attributes and to_dict all agree).

    It accepts no more than parse_event does: the type must be this one, the version
    exactly the current one (a strict int, so neither ``true`` nor ``1.0``; older
    versions need parse_event's upcasters), every other field is ``cls``'s own with
    ``cls``'s config (``extra="forbid"`` included).
    """
    version = cls.schema_version
    tag: Any = Literal[cls.event_type]  # a type built at run time, one per event type
    wire: type[Event] = create_model(
        f"_Wire{cls.__name__}",
        __base__=cls,
        __module__=__name__,
        wire_event_type=(tag, Field(alias="event_type", exclude=True)),
        wire_schema_version=(
            Annotated[int, Strict()],
            Field(alias="schema_version", exclude=True, ge=version, le=version),
        ),
    )
    return wire


def _wire_validator(classes: Iterable[type[Event]]) -> Any:
    # A model validator would see the wire fields too: such a class keeps to parse_event.
    wires: Any = tuple(
        _wire_model(cls) for cls in classes if not cls.__pydantic_decorators__.model_validators
    )
    union: Any = Annotated[Union[wires], Field(discriminator="wire_event_type")]  # noqa: UP007
    return TypeAdapter(union).validator


# Every event type registered when this module was imported; a record of any other
# type (or version, or shape) takes parse_event's path and gets its exact verdict.
_WIRE = _wire_validator(registry.classes().values())


def _decode_fast(value: bytes) -> Event | EventDecodeError:
    """:func:`_decode`, in one pass over the bytes for the usual record: the wire
    validator accepts only what parse_event accepts, with the same field values, and
    whatever it refuses goes to :func:`_decode` for parse_event's own verdict."""
    try:
        event: Event = _WIRE.validate_json(value)
    except ValueError:
        return _decode(value)
    return event


def decode(record: LogRecord) -> Event | None:
    """The record's event, or ``None`` when it does not parse as a registered event."""
    result = _decode(record.value)
    return None if isinstance(result, EventDecodeError) else result


def allowed_signer(topic: str) -> str | None:
    """The one service allowed to publish on ``topic``; ``None`` for a topic nobody owns."""
    return topology.writer(topic)


# The service that publishes each type of event; None for a department's outcome
# (which department is the topic's business, see unassigned_outcome).
_TYPE_OWNER: Mapping[str, str | None] = {
    name: topology.event_writer(name) for name in registry.classes()
}


def _type_owner(event: Event) -> str | None:
    return _TYPE_OWNER.get(event.event_type)


# --------------------------------------------------------------------------- violations


@dataclass(frozen=True)
class Violation:
    kind: str  # one of VIOLATION_KINDS
    case_id: UUID | None
    event_id: UUID | None
    topic: str
    partition: int
    offset: int
    detail: str  # a sentence for people; never an ID number or a phone number
    severity: Literal["error", "flag"] = "error"


@dataclass
class VerifyReport:
    records: int  # records read, duplicates and malformed ones included
    events: int  # distinct event ids
    cases: int  # distinct accepted cases
    violations: list[Violation] = field(default_factory=list)
    signatures_checked: int = 0  # Ed25519 checks made by this replay
    signatures_reused: int = 0  # good verdicts reused for byte-identical records
    processes: int = 1  # how many processes shared the replay (see merge_shards)

    def errors(self) -> list[Violation]:
        """The violations that break the zero-error promise (flags excluded)."""
        return [v for v in self.violations if v.severity == "error"]

    def by_kind(self) -> dict[str, int]:
        """Violation counts per kind, only kinds that occur, in ``VIOLATION_KINDS`` order."""
        counts = dict.fromkeys(VIOLATION_KINDS, 0)
        for v in self.violations:
            counts[v.kind] = counts.get(v.kind, 0) + 1
        return {kind: n for kind, n in counts.items() if n}


class _Accepted(NamedTuple):
    item_code: str
    applicant_kind: str


class _Routed(NamedTuple):
    item_code: str
    catalogue_version: str
    steps: tuple[tuple[int, str, str], ...]  # (index, department, action)
    settle_on_spot: bool
    promised_by: datetime


class _Rejected(NamedTuple):
    catalogue_version: str
    reason_code: str


class _Closed(NamedTuple):
    outcome: str
    on_spot: bool


_Head = _Accepted | _Routed | _Rejected | _Closed | str | None
H = TypeVar("H", _Accepted, _Routed, _Rejected, _Closed)


# What _Fact keeps of each class of event, decided once per class: isinstance on a
# pydantic model runs ABCMeta's check in Python code, and a replay would make several
# per record. In the order _Fact tests them; the flag says "a DeadLetterRedriven".
_STEP, _STEP_REJECTED, _ACCEPTED, _ROUTED, _REJECTED, _CLOSED, _PLAIN = range(7)
_SHAPES: dict[type, tuple[int, bool]] = {}


def _shape(cls: type) -> tuple[int, bool]:
    found = _SHAPES.get(cls)
    if found is None:
        if issubclass(cls, StepAssigned | CaseAdvanced | StepOutcome):
            shape = _STEP_REJECTED if issubclass(cls, StepRejected) else _STEP
        elif issubclass(cls, CaseAccepted):
            shape = _ACCEPTED
        elif issubclass(cls, CaseRouted):
            shape = _ROUTED
        elif issubclass(cls, CaseRejected):
            shape = _REJECTED
        elif issubclass(cls, CaseClosed):
            shape = _CLOSED
        else:
            shape = _PLAIN
        found = _SHAPES[cls] = (shape, issubclass(cls, DeadLetterRedriven))
    return found


class _Fact:
    """One event as the rules need it, and where it sits in the log.

    A replay keeps one per event until the end. The pydantic models weigh about 2.4 kB
    each (applicant, form, four UUIDs...), this about a quarter of that, which also
    makes the replay faster. What only a rare check needs (a CaseAccepted's form, the
    full content of a duplicate) is decoded again from ``value``.
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
        "partition",
        "review",
        "step_index",
        "topic",
        "value",
    )

    def __init__(self, event: Event, record: LogRecord) -> None:
        self.event_type = event.event_type
        self.event_id = event.event_id
        self.case_id = event.case_id
        self.causation_id = event.causation_id
        self.at = event.occurred_at
        self.topic = record.topic
        self.partition = record.partition
        self.offset = record.offset
        self.value = record.value
        self.head: _Head = None
        shape = _shape(type(event))[0]
        if shape <= _STEP_REJECTED:
            step = cast("StepAssigned | CaseAdvanced | StepOutcome", event)
            self.step_index: int | None = step.step_index
            self.department: str | None = step.department
            self.action: str | None = step.action
            self.review = step.review
            if shape == _STEP_REJECTED:
                self.head = cast("StepRejected", event).reason_code
            return
        self.step_index = self.department = self.action = None
        self.review = False
        if shape == _ACCEPTED:
            accepted = cast("CaseAccepted", event)
            self.head = _Accepted(accepted.item_code, accepted.applicant.kind)
        elif shape == _ROUTED:
            routed = cast("CaseRouted", event)
            steps = tuple((s.index, s.department, s.action) for s in routed.steps)
            self.head = _Routed(
                routed.item_code,
                routed.catalogue_version,
                steps,
                routed.settle_on_spot,
                routed.promised_by,
            )
        elif shape == _REJECTED:
            rejected = cast("CaseRejected", event)
            self.head = _Rejected(rejected.catalogue_version, rejected.reason_code)
        elif shape == _CLOSED:
            closed = cast("CaseClosed", event)
            self.head = _Closed(closed.outcome, closed.on_spot)

    @property
    def position(self) -> tuple[str, int, int]:
        return (self.topic, self.partition, self.offset)

    def payload(self, kind: type[H]) -> H:
        assert isinstance(self.head, kind)
        return self.head

    def event(self) -> Event:
        """The full event, decoded again from the record."""
        event = _decode(self.value)
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


def _record_violation(record: LogRecord, kind: str, detail: str) -> Violation:
    return Violation(kind, None, None, record.topic, record.partition, record.offset, detail)


def _short(text: str) -> str:
    return text if len(text) <= _DETAIL_LIMIT else text[: _DETAIL_LIMIT - 3] + "..."


def _time_key(fact: _Fact) -> tuple[datetime, int]:
    return (fact.at, fact.event_id.int)


def _in_time_order(facts: list[_Fact]) -> list[_Fact]:
    # Nearly every group holds one fact: skip the sort and its key calls then.
    return sorted(facts, key=_time_key) if len(facts) > 1 else facts


class _SignatureCache:
    """PublicKeys.verify, with two shortcuts that never trust a verdict for bytes it was
    not computed on. Every record is named by its ``record_digest`` (the signer's public
    key in this registry, the signer and signature headers, the exact value bytes):

    - a digest in ``verified`` (the good verdicts the audit store recorded at ingest)
      is a good signature: the very same check was made on the very same input;
    - a digest seen earlier in this replay (a re-delivered record) gets the same answer.

    Anything else, a record altered after ingest included, is checked with Ed25519 here.
    A stored verdict can only excuse the exact bytes it was computed on; it never
    condemns (a bad signature is always checked again)."""

    def __init__(self, keys: PublicKeys, verified: Container[bytes]) -> None:
        self._keys = keys
        self._verified = verified
        self._seen: dict[bytes, bool] = {}
        self._prefixes: dict[str, bytes] = {}  # signer -> its digest_prefix
        self.reused = 0
        self.checked = 0

    def ok(self, signer: str, value: bytes, signature: str) -> bool:
        prefix = self._prefixes.get(signer)
        if prefix is None:
            raw = self._keys.raw(signer)
            if raw is None:
                return False  # PublicKeys.verify's answer for a signer without a key
            prefix = self._prefixes[signer] = digest_prefix(raw, signer)
        digest = signer_digest(prefix, signature, value)
        if digest in self._verified:
            self.reused += 1
            return True
        result = self._seen.get(digest)
        if result is None:
            self.checked += 1
            result = self._seen[digest] = self._keys.verify(signer, value, signature)
        return result


def _signer_problems(topic: str, signer: str, event: Event | None) -> list[str]:
    problems: list[str] = []
    owner = allowed_signer(topic)
    if owner is None:
        problems.append(f"no service may publish on topic {topic}")
    elif signer != owner:
        problems.append(f"signed by {signer}, but only {owner} publishes on {topic}")
    if event is not None:
        producer = _type_owner(event)
        if producer is None and signer in (INTAKE, ROUTER):
            problems.append(f"{event.event_type} is a department's outcome, not {signer}'s")
        elif producer is not None and producer != signer:
            problems.append(f"{event.event_type} is published by {producer}, not {signer}")
        if event.producer != signer:
            problems.append(f"the event names producer {event.producer} but {signer} signed it")
    return problems


# --------------------------------------------------------------------------- verify


@dataclass
class _CaseLog:
    accepted: list[_Fact] = field(default_factory=list)
    routed: list[_Fact] = field(default_factory=list)
    rejected: list[_Fact] = field(default_factory=list)
    closed: list[_Fact] = field(default_factory=list)
    assigned: list[_Fact] = field(default_factory=list)
    advanced: list[_Fact] = field(default_factory=list)
    outcomes: list[_Fact] = field(default_factory=list)
    flagged: list[_Fact] = field(default_factory=list)
    other: list[_Fact] = field(default_factory=list)  # a type registered after this code

    def add(self, fact: _Fact) -> None:
        getattr(self, _SLOT.get(fact.event_type, "other")).append(fact)

    def remove(self, fact: _Fact) -> None:
        getattr(self, _SLOT.get(fact.event_type, "other")).remove(fact)

    def everything(self) -> list[_Fact]:
        return [fact for name in _SLOTS for fact in getattr(self, name)]


# Which list of a _CaseLog holds each event type.
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
    CaseReviewFlagged.event_type: "flagged",
}
_SLOTS = (*dict.fromkeys(_SLOT.values()), "other")


class _Reader:
    """The first pass: per record, the header checks and the parse; per event id, one
    canonical copy (the lowest log position) and every copy that contradicts it."""

    def __init__(
        self, keys: PublicKeys, check_signatures: bool, verified: Container[bytes]
    ) -> None:
        self.found: list[Violation] = []
        self.records = 0
        self.redrives = 0
        # Keyed by UUID.int: uuid.UUID hashes and compares in Python code, an int in C,
        # and these dicts see every record.
        self.events: dict[int, _Fact] = {}
        self.cases: dict[int, _CaseLog] = {}
        self._again: dict[int, list[_Fact]] = {}
        self.signatures = _SignatureCache(keys, verified) if check_signatures else None
        self._owners: dict[str, str | None] = {}

    def _signed_right(self, topic: str, signer: str, event: Event) -> bool:
        """The fast yes for the usual record; _signer_problems says what is wrong."""
        owner = self._owners.get(topic, "")
        if owner == "":
            owner = self._owners[topic] = allowed_signer(topic)
        expected = _TYPE_OWNER.get(event.event_type)
        return (
            signer == owner
            and event.producer == signer
            and (signer == expected if expected else signer not in (INTAKE, ROUTER))
        )

    def read(self, record: LogRecord) -> None:
        self.records += 1
        event = _decode_fast(record.value)
        if isinstance(event, EventDecodeError):
            # Not an event at all: that is the finding; who signed the bytes is moot.
            detail = _short(f"not an event: {event}")
            self.found.append(_record_violation(record, MALFORMED_RECORD, detail))
            return
        fact = _Fact(event, record)
        signer, signature = record.signer, record.signature
        if not signer or not signature:
            self.found.append(fact.violation(MISSING_SIGNATURE, "record is not signed"))
        elif self.signatures is not None and not self.signatures.ok(
            signer, record.value, signature
        ):
            self.found.append(
                fact.violation(BAD_SIGNATURE, f"signature does not verify as {signer}")
            )
        if signer and not self._signed_right(record.topic, signer, event):
            problems = _signer_problems(record.topic, signer, event)
            self.found.append(fact.violation(WRONG_SIGNER, "; ".join(problems)))
        if _shape(type(event))[1]:
            # A DeadLetterRedriven, an operator's action, not a step of the case: counted,
            # signature-checked, and kept out of the case invariants.
            self.redrives += 1
            return
        event_id = fact.event_id.int
        if self.events.setdefault(event_id, fact) is fact:
            self._case(fact.case_id).add(fact)
        else:
            self._again.setdefault(event_id, []).append(fact)

    def _case(self, case_id: UUID) -> _CaseLog:
        log = self.cases.get(case_id.int)
        if log is None:
            log = self.cases[case_id.int] = _CaseLog()
        return log

    def resolve_duplicates(self) -> None:
        """An identical re-delivery is no violation; a copy with other content is."""
        for event_id, copies in self._again.items():
            candidates = [self.events[event_id], *copies]
            canonical = min(candidates, key=lambda c: c.position)
            if canonical is not candidates[0]:
                self._case(candidates[0].case_id).remove(candidates[0])
                self._case(canonical.case_id).add(canonical)
                self.events[event_id] = canonical
            content: dict[str, Any] | None = None
            where = f"{canonical.topic}[{canonical.partition}]@{canonical.offset}"
            for other in candidates:
                if other is canonical or other.value == canonical.value:
                    continue
                # Same event, other bytes: compare what they say, not how it is spelt.
                if content is None:
                    content = canonical.event().to_dict()
                if other.event().to_dict() != content:
                    self.found.append(
                        other.violation(
                            DUPLICATE_EVENT_CONFLICT,
                            f"event id also at {where}, with different content",
                        )
                    )


def verify(
    records: Iterable[LogRecord],
    *,
    catalogue: Catalogue,
    keys: PublicKeys,
    now: datetime,
    check_signatures: bool = True,
    verified: Container[bytes] = frozenset(),
) -> VerifyReport:
    """Replay the log and report every violation of the zero-error invariants.

    ``check_signatures=False`` skips the Ed25519 checks only (the costly part); a
    missing header and a signer not allowed on the topic are reported either way.
    ``verified`` holds the ``shared.messaging.signing.record_digest`` of records whose signature
    was already found good (by the audit service, at ingest): a record whose digest is
    in it needs no Ed25519 check again; any other record, one whose bytes or headers
    changed since included, is checked here. Empty (the default): every signature is
    checked. Violations come sorted by log position, then kind.

    Beyond the letter of each kind, decided here:

    - a case fact held once (CaseAccepted, CaseRouted, CaseRejected) seen again under
      another event id is a ``duplicate_event_conflict`` on the later one;
    - ``wrong_signer`` also covers an event type its signer never publishes (an
      outcome signed by the router) and an event whose ``producer`` is not its signer;
    - a StepAssigned on another department's tasks topic, or with a ``review`` flag
      that contradicts the slip, is ``step_out_of_order``; CaseAdvanced is held to the
      same slip and causation rules;
    - an outcome must also match its assignment's action and review flag;
    - ``catalogue_mismatch`` also covers a CaseRouted for another item or with
      another promise than the catalogue's, and a CaseRejected for an application the
      catalogue routes (and, where both exist, a CaseRouted for one it rejects);
    - one record with several problems of one kind gives one violation, its detail
      naming them all; a problem is reported where it starts, not at its consequences
      (an outcome reported as unassigned still counts as the case's outcome).
    """
    return verify_shard(
        records,
        catalogue=catalogue,
        keys=keys,
        now=now,
        check_signatures=check_signatures,
        verified=verified,
    ).report


@dataclass
class ShardReport:
    """``verify`` over one shard of the log (some of its partitions), with what a merge
    needs to prove the shards independent: every event id and case id the shard saw."""

    report: VerifyReport
    event_ids: set[int]  # UUID.int of every event id read (redrives aside)
    case_ids: set[int]  # UUID.int of every case an event of this shard names


def verify_shard(
    records: Iterable[LogRecord],
    *,
    catalogue: Catalogue,
    keys: PublicKeys,
    now: datetime,
    check_signatures: bool = True,
    verified: Container[bytes] = frozenset(),
) -> ShardReport:
    """``verify`` over some of the log's records (all of them, for ``verify``), with the
    ids a merge needs; see ``merge_shards``."""
    with gc_paused():
        return _verify(
            records, catalogue, keys, now, check_signatures=check_signatures, verified=verified
        )


def merge_shards(shards: Iterable[ShardReport]) -> VerifyReport | None:
    """One report for the whole log from shards checked apart, or ``None`` when they are
    not independent.

    The rules judge each case from its own events and deduplicate by event id, and every
    per-record check looks at that record alone. So when no event id and no case id
    occurs in two shards, the union of the shards' findings is exactly what ``verify``
    finds over all their records together. When one does (a case whose events sit in
    partitions of two shards, or one event id in both), the caller checks the whole log
    in one ``verify`` instead."""
    parts = list(shards)
    events: set[int] = set()
    cases: set[int] = set()
    for part in parts:
        if not events.isdisjoint(part.event_ids) or not cases.isdisjoint(part.case_ids):
            return None
        events |= part.event_ids
        cases |= part.case_ids
    violations = [v for part in parts for v in part.report.violations]
    violations.sort(key=_violation_order)
    return VerifyReport(
        records=sum(p.report.records for p in parts),
        events=sum(p.report.events for p in parts),
        cases=sum(p.report.cases for p in parts),
        violations=violations,
        signatures_checked=sum(p.report.signatures_checked for p in parts),
        signatures_reused=sum(p.report.signatures_reused for p in parts),
        processes=len(parts),
    )


def _violation_order(v: Violation) -> tuple[str, int, int, str, str]:
    return (v.topic, v.partition, v.offset, v.kind, str(v.event_id))


@contextmanager
def gc_paused() -> Iterator[None]:
    """Rest CPython's cyclic collector during a replay (reading the log and checking it).

    A replay keeps every record and event alive until its case is judged, and the
    collector would rescan that growing heap (and every imported module) over and over:
    measured, it triples the time of a 100k-record replay and more than doubles the time
    spent reading from Kafka. Nothing here makes reference cycles; reference counting
    frees everything as usual while the collector rests. Nesting is fine: only the
    outermost use turns the collector back on."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _verify(
    records: Iterable[LogRecord],
    catalogue: Catalogue,
    keys: PublicKeys,
    now: datetime,
    *,
    check_signatures: bool,
    verified: Container[bytes],
) -> ShardReport:
    reader = _Reader(keys, check_signatures, verified)
    for record in records:
        reader.read(record)
    reader.resolve_duplicates()
    found = reader.found
    accepted_cases = 0
    for log in reader.cases.values():
        if log.accepted:
            accepted_cases += 1
            _CaseJudge(log, catalogue, found).judge(now)
        else:
            found.extend(
                f.violation(UNKNOWN_CASE, f"{f.event_type} for a case never accepted")
                for f in log.everything()
            )

    found.sort(key=_violation_order)
    signatures = reader.signatures
    report = VerifyReport(
        records=reader.records,
        events=len(reader.events),
        cases=accepted_cases,
        violations=found,
        signatures_checked=signatures.checked if signatures else 0,
        signatures_reused=signatures.reused if signatures else 0,
    )
    return ShardReport(report, set(reader.events), set(reader.cases))


def _routable(item: Item | None, accepted: _Fact) -> bool:
    """Whether the router must route (not reject) this application under ``item``."""
    if item is None or item.applicant_kind != accepted.payload(_Accepted).applicant_kind:
        return False
    event = accepted.event()
    assert isinstance(event, CaseAccepted)
    return not item.validate_form(event.form)


def _slip(steps: list[tuple[str, str]]) -> str:
    return " > ".join(f"{d}/{a}" for d, a in steps) or "(empty)"


class _CaseJudge:
    """The second pass, for one accepted case: every rule judged from the whole case,
    by event ids, causation ids and step indexes, whatever order the log came in."""

    def __init__(self, log: _CaseLog, catalogue: Catalogue, found: list[Violation]) -> None:
        self.log = log
        self.catalogue = catalogue
        self.found = found
        accepted = self._one(log.accepted, "accepted")
        assert accepted is not None
        self.accepted = accepted
        self.item_code = accepted.payload(_Accepted).item_code
        self.item = catalogue.get(self.item_code)
        self.routed_fact = self._one(log.routed, "routed")
        self.routed = self.routed_fact.payload(_Routed) if self.routed_fact else None
        self.rejected_fact = self._one(log.rejected, "rejected by the router")
        # Keyed by UUID.int, as in _Reader.
        self.assignments = {f.event_id.int: f for f in log.assigned}
        # Every outcome counts for what follows it, even one reported as unassigned:
        # a violation is reported where it starts, not again at each consequence.
        self.approvals: dict[int, _Fact] = {}
        self.step_rejected = False
        for fact in log.outcomes:
            if fact.event_type == StepApproved.event_type:
                self.approvals[fact.event_id.int] = fact
            elif fact.event_type == StepRejected.event_type:
                self.step_rejected = True

    def judge(self, now: datetime) -> None:
        self._check_routed()
        self._check_rejected()
        self._check_steps(self.log.assigned)
        self._check_steps(self.log.advanced)
        self._check_outcomes()
        closes = _in_time_order(self.log.closed)
        if closes:
            first = closes[0].event_id
            if len(closes) > 1:
                self.found.extend(
                    extra.violation(CLOSED_TWICE, f"case already closed by {first}")
                    for extra in closes[1:]
                )
            self._check_close(closes[0])
        else:
            deadline = self._deadline()
            if deadline is not None and now > deadline:
                self.found.append(
                    self.accepted.violation(
                        OVERDUE, f"open past its promised time {_iso(deadline)}"
                    )
                )

    def _one(self, facts: list[_Fact], what: str) -> _Fact | None:
        """The earliest of facts a case holds once; the others are reported."""
        if not facts:
            return None
        if len(facts) == 1:
            return facts[0]
        ordered = _in_time_order(facts)
        first = ordered[0].event_id
        self.found.extend(
            extra.violation(
                DUPLICATE_EVENT_CONFLICT,
                f"the case was {what} again under another event id (first {first})",
            )
            for extra in ordered[1:]
        )
        return ordered[0]

    def _check_routed(self) -> None:
        if self.routed_fact is None or self.routed is None:
            return
        routed, item = self.routed, self.item
        problems: list[str] = []
        if routed.catalogue_version != self.catalogue.version:
            problems.append(
                f"routed by catalogue {routed.catalogue_version}, not {self.catalogue.version}"
            )
        if routed.item_code != self.item_code:
            problems.append(f"routed item {routed.item_code}, but {self.item_code} came in")
        if item is None:
            problems.append(f"item {self.item_code} is not in the catalogue")
        else:
            expected = [(s.department, s.action) for s in item.steps]
            actual = [(department, action) for _, department, action in routed.steps]
            indexes = [index for index, _, _ in routed.steps]
            if actual != expected or indexes != list(range(len(actual))):
                problems.append(f"slip {_slip(actual)} is not the catalogue's {_slip(expected)}")
            if routed.settle_on_spot != item.settle_on_spot:
                problems.append(f"settle_on_spot {routed.settle_on_spot} is not the catalogue's")
            promised = self.accepted.at + timedelta(days=item.promised_days)
            if routed.promised_by != promised:
                problems.append(
                    f"promised by {_iso(routed.promised_by)}, "
                    f"the catalogue promises {_iso(promised)}"
                )
            if item.applicant_kind != self.accepted.payload(_Accepted).applicant_kind or (
                # The form check is the costly part: run it where it settles a dispute.
                self.rejected_fact is not None
                and not problems
                and not _routable(item, self.accepted)
            ):
                problems.append("the catalogue rejects this application, yet it was routed")
        if problems:
            self.found.append(self.routed_fact.violation(CATALOGUE_MISMATCH, "; ".join(problems)))

    def _check_rejected(self) -> None:
        if self.rejected_fact is None:
            return
        rejected = self.rejected_fact.payload(_Rejected)
        detail: str | None = None
        if rejected.catalogue_version != self.catalogue.version:
            detail = (
                f"rejected by catalogue {rejected.catalogue_version}, not {self.catalogue.version}"
            )
        elif _routable(self.item, self.accepted):
            detail = (
                f"rejected as {rejected.reason_code}, but the catalogue routes this application"
            )
        if detail is not None:
            self.found.append(self.rejected_fact.violation(CATALOGUE_MISMATCH, detail))

    def _assignment_problems(self, step: _Fact) -> list[str]:
        problems: list[str] = []
        routed, index = self.routed, step.step_index
        assert index is not None
        if routed is None:
            problems.append("the case has no routing slip (no CaseRouted)")
        elif index >= len(routed.steps):
            problems.append(f"step {index} is beyond the {len(routed.steps)}-step slip")
        else:
            _, department, action = routed.steps[index]
            if (department, action) != (step.department, step.action):
                problems.append(
                    f"step {index} is {step.department}/{step.action}, "
                    f"the slip says {department}/{action}"
                )
            if step.review != routed.settle_on_spot:
                problems.append(
                    "a review of a case not settled on the spot"
                    if step.review
                    else "a decision on a case already settled on the spot"
                )
        cause = step.causation_id
        if index == 0:
            if cause is None or cause.int != self.accepted.event_id.int:
                problems.append("step 0 was not caused by the case's acceptance")
        else:
            approval = self.approvals.get(cause.int) if cause is not None else None
            if approval is None or approval.step_index != index - 1:
                problems.append(f"assigned without an approval of step {index - 1}")
        if step.event_type == StepAssigned.event_type and step.department is not None:
            expected_topic = dept_tasks(step.department)
            if step.topic != expected_topic:
                problems.append(f"published on {step.topic}, not {expected_topic}")
        return problems

    def _check_steps(self, facts: list[_Fact]) -> None:
        """StepAssigned (or CaseAdvanced) records: each fits the slip and follows the
        previous step's approval; no step is assigned twice."""
        fitting: dict[int, list[_Fact]] = {}
        for step in facts:
            problems = self._assignment_problems(step)
            if problems:
                self.found.append(step.violation(STEP_OUT_OF_ORDER, "; ".join(problems)))
            else:
                assert step.step_index is not None
                fitting.setdefault(step.step_index, []).append(step)
        for index, group in fitting.items():
            if len(group) == 1:
                continue
            ordered = _in_time_order(group)
            first = ordered[0]
            verb = "assigned" if first.event_type == StepAssigned.event_type else "advanced"
            self.found.extend(
                extra.violation(
                    STEP_OUT_OF_ORDER, f"step {index} was already {verb} by {first.event_id}"
                )
                for extra in ordered[1:]
            )

    def _check_outcomes(self) -> None:
        answered: dict[int, list[_Fact]] = {}
        on_spot = self.routed is not None and self.routed.settle_on_spot
        for outcome in self.log.outcomes:
            problems = self._outcome_problems(outcome)
            if problems:
                self.found.append(outcome.violation(UNASSIGNED_OUTCOME, "; ".join(problems)))
            else:
                assert outcome.step_index is not None
                answered.setdefault(outcome.step_index, []).append(outcome)
            if on_spot and outcome.event_type == StepRejected.event_type:
                detail = (
                    f"review of step {outcome.step_index} by {outcome.department} "
                    f"failed: {outcome.head}"
                )
                self.found.append(outcome.violation(REVIEW_FAILED, detail, severity="flag"))
        for index, group in answered.items():
            if len(group) == 1:
                continue
            ordered = _in_time_order(group)
            first = ordered[0].event_id
            self.found.extend(
                extra.violation(DUPLICATE_OUTCOME, f"step {index} already decided by {first}")
                for extra in ordered[1:]
            )

    def _outcome_problems(self, outcome: _Fact) -> list[str]:
        problems: list[str] = []
        cause = outcome.causation_id
        task = self.assignments.get(cause.int) if cause is not None else None
        if task is None:
            problems.append(f"step {outcome.step_index} outcome answers no assignment of the case")
        elif (task.step_index, task.department, task.action, task.review) != (
            outcome.step_index,
            outcome.department,
            outcome.action,
            outcome.review,
        ):
            problems.append(
                f"outcome of step {outcome.step_index} by {outcome.department} answers "
                f"the assignment of step {task.step_index} to {task.department}"
            )
        expected_topic = dept_outcomes(outcome.department or "")
        if outcome.topic != expected_topic:
            problems.append(f"outcome of {outcome.department} published on {outcome.topic}")
        return problems

    def _check_close(self, close: _Fact) -> None:
        closed = close.payload(_Closed)
        routed = self.routed
        problem: str | None = None
        if closed.on_spot:
            if routed is None or not routed.settle_on_spot or closed.outcome != "approved":
                problem = (
                    f"closed {closed.outcome} on the spot, "
                    "but only an approval of a settle-on-spot item closes on the spot"
                )
        elif closed.outcome == "approved":
            if routed is None:
                problem = "closed approved without a routing slip"
            else:
                approved = {a.step_index for a in self.approvals.values()}
                missing = [str(i) for i in range(len(routed.steps)) if i not in approved]
                if missing:
                    problem = f"closed approved, but step(s) {', '.join(missing)} never approved"
        elif not self.step_rejected and self.rejected_fact is None:
            problem = "closed rejected, but neither a department nor the router rejected it"
        if problem is not None:
            self.found.append(close.violation(INCONSISTENT_CLOSE, problem))

    def _deadline(self) -> datetime | None:
        if self.routed is not None:
            return self.routed.promised_by
        if self.item is None:
            return None
        return self.accepted.at + timedelta(days=self.item.promised_days)


# --------------------------------------------------------------------------- projection

_TYPE_ORDER: Mapping[str, int] = {
    CaseAccepted.event_type: 0,
    CaseRouted.event_type: 1,
    CaseRejected.event_type: 2,
    StepAssigned.event_type: 3,
    CaseAdvanced.event_type: 4,
    StepApproved.event_type: 5,
    StepRejected.event_type: 5,
    StepNeedsInfo.event_type: 5,
    CaseClosed.event_type: 6,
    CaseReviewFlagged.event_type: 7,
}


def _iso(at: datetime) -> str:
    return at.astimezone(UTC).isoformat()


def _iso_or_none(at: datetime | None) -> str | None:
    return None if at is None else _iso(at)


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
            "at": _iso(self.at),
            "event_type": self.event_type,
            "event_id": str(self.event_id),
            "step_index": self.step_index,
            "department": self.department,
            "detail": self.detail,
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

    def to_json(self) -> dict[str, Any]:
        """JSON-ready and deterministic: same case history, same dict."""
        return {
            "case_id": str(self.case_id),
            "receipt_no": self.receipt_no,
            "item_code": self.item_code,
            "applicant_kind": self.applicant_kind,
            "community_code": self.community_code,
            "centre_id": self.centre_id,
            "channel": self.channel,
            "accepted_at": _iso(self.accepted_at),
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


def _event_key(event: Event) -> tuple[datetime, int, UUID]:
    return (event.occurred_at, _TYPE_ORDER.get(event.event_type, 99), event.event_id)


def _describe(event: Event) -> tuple[int | None, str | None, str]:  # noqa: PLR0911 - one per type
    """Step index, department and a detail line; never the applicant's data or free text."""
    if isinstance(event, CaseAccepted):
        return None, None, f"accepted {event.item_code} at {event.centre_id} ({event.channel})"
    if isinstance(event, CaseRouted):
        how = "settled on the spot, " if event.settle_on_spot else ""
        slip = " > ".join(s.department for s in event.steps)
        return None, None, f"routed to {slip} ({how}promised by {_iso(event.promised_by)})"
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
    if isinstance(event, CaseClosed):
        how = " on the spot" if event.on_spot else ""
        reason = f": {event.reason_code}" if event.reason_code else ""
        return None, event.department, f"closed {event.outcome}{how}{reason}"
    if isinstance(event, CaseReviewFlagged):
        return event.step_index, event.department, f"review failed: {event.reason_code}"
    return None, None, event.event_type


def _scrub(text: str, secrets: tuple[str, ...]) -> str:
    # A department's reference is free text: never let it carry the applicant's data.
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, "***")
    return text


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
    so the choice never depends on order (verify reports the conflict)."""
    distinct: dict[UUID, Event] = {}
    for event in events:
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
    secrets = (accepted.applicant.id_number, accepted.applicant.phone)
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


# --------------------------------------------------------------------------- statistics


@dataclass(frozen=True)
class Stats:
    per_item: dict[str, dict[str, int]]  # item -> accepted / approved / rejected / open
    per_department: dict[str, dict[str, int]]  # department -> approved / rejected / needs_info
    per_community: dict[str, dict[str, int]]  # community -> as per_item
    per_day: dict[str, dict[str, int]]  # centre's calendar day of acceptance -> as per_item
    on_spot_share: float  # on-the-spot closes / all closes
    reasons: dict[str, int]  # reason_code of closed rejected cases -> count
    accept_to_close_ms: dict[str, float]  # "p50", "p90", "p99", "count"
    open_past_promise: list[str]  # case ids open past promised_by, sorted

    def to_json(self) -> dict[str, Any]:
        """JSON-ready with every mapping's keys sorted."""
        return {
            "per_item": _sorted_nested(self.per_item),
            "per_department": _sorted_nested(self.per_department),
            "per_community": _sorted_nested(self.per_community),
            "per_day": _sorted_nested(self.per_day),
            "on_spot_share": self.on_spot_share,
            "reasons": dict(sorted(self.reasons.items())),
            "accept_to_close_ms": dict(self.accept_to_close_ms),
            "open_past_promise": sorted(self.open_past_promise),
        }


def _sorted_nested(table: Mapping[str, Mapping[str, int]]) -> dict[str, dict[str, int]]:
    return {key: dict(table[key]) for key in sorted(table)}


def _case_counters() -> dict[str, int]:
    return {"accepted": 0, "approved": 0, "rejected": 0, "open": 0}


def _percentile(ordered: list[float], p: float) -> float:
    """Nearest-rank percentile of sorted values; 0.0 when there are none."""
    if not ordered:
        return 0.0
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


_OUTCOME_COUNTER = {
    StepApproved.event_type: "approved",
    StepRejected.event_type: "rejected",
    StepNeedsInfo.event_type: "needs_info",
}


def stats(views: Mapping[UUID, CaseView], *, now: datetime) -> Stats:
    """Counts over the projection; ``now`` decides which open cases are past promise."""
    per_item: dict[str, dict[str, int]] = {}
    per_department: dict[str, dict[str, int]] = {}
    per_community: dict[str, dict[str, int]] = {}
    per_day: dict[str, dict[str, int]] = {}
    reasons: dict[str, int] = {}
    durations: list[float] = []
    closes = on_spot = 0
    late: list[str] = []
    for view in views.values():
        state = "open" if view.outcome is None else view.outcome
        day = view.accepted_at.astimezone(CENTRE_TZ).date().isoformat()
        for table, key in (
            (per_item, view.item_code),
            (per_community, view.community_code),
            (per_day, day),
        ):
            counters = table.setdefault(key, _case_counters())
            counters["accepted"] += 1
            counters[state] = counters.get(state, 0) + 1
        for entry in view.timeline:
            counter = _OUTCOME_COUNTER.get(entry.event_type)
            if counter is not None and entry.department is not None:
                dept = per_department.setdefault(
                    entry.department, {"approved": 0, "rejected": 0, "needs_info": 0}
                )
                dept[counter] += 1
        if view.closed_at is not None:
            closes += 1
            on_spot += view.on_spot
            durations.append((view.closed_at - view.accepted_at) / timedelta(milliseconds=1))
            if view.outcome == "rejected":
                reason = view.reason_code or "unspecified"
                reasons[reason] = reasons.get(reason, 0) + 1
        elif view.promised_by is not None and view.promised_by < now:
            late.append(str(view.case_id))
    durations.sort()
    return Stats(
        per_item=_sorted_nested(per_item),
        per_department=_sorted_nested(per_department),
        per_community=_sorted_nested(per_community),
        per_day=_sorted_nested(per_day),
        on_spot_share=on_spot / closes if closes else 0.0,
        reasons=dict(sorted(reasons.items())),
        accept_to_close_ms={
            "p50": _percentile(durations, 50),
            "p90": _percentile(durations, 90),
            "p99": _percentile(durations, 99),
            "count": float(len(durations)),
        },
        open_past_promise=sorted(late),
    )
