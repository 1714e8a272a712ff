"""Event contracts: the envelope, every event onedoor emits, and the registry that parses them.

Every event is a frozen pydantic model. The envelope fields (event_id, event_type,
schema_version, case_id, occurred_at, producer, causation_id, correlation_id) sit
beside the payload fields in one flat JSON object. Consumers never build events from
dicts themselves: they call :func:`parse_event`, which fails loudly on an unknown
type, an unsupported version or a malformed body, and upcasts older versions.

The same models generate the AsyncAPI document that departments read, so every field
carries a description.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar, Literal
from uuid import UUID, uuid4

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

from shared.contracts import errors as _errors  # its errors re-exported below
from shared.contracts.sealing import REF_PATTERN
from shared.contracts.upcasts import (
    upcast_clear_applicant,
    upcast_step_outcome_v1,
    upcast_step_outcome_v2,
    upcast_to_working_days,
)

EventDecodeError = _errors.EventDecodeError
MalformedEventError = _errors.MalformedEventError
UnknownEventTypeError = _errors.UnknownEventTypeError
UnsupportedSchemaVersionError = _errors.UnsupportedSchemaVersionError


def utcnow() -> datetime:
    return datetime.now(UTC)


class Event(BaseModel):
    """The envelope every event carries. Subclasses add payload fields."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    event_type: ClassVar[str]
    schema_version: ClassVar[int] = 1

    event_id: UUID = Field(default_factory=uuid4, description="Unique id of this event.")
    case_id: UUID = Field(description="The case this event belongs to; also the Kafka key.")
    occurred_at: AwareDatetime = Field(default_factory=utcnow, description="When, in UTC.")
    producer: str = Field(description="Service that emitted the event.", examples=["router"])
    causation_id: UUID | None = Field(
        default=None, description="event_id of the event that caused this one."
    )
    correlation_id: UUID = Field(
        description="Id shared by every event of one case's journey (the first event's id)."
    )

    def to_dict(self) -> dict[str, Any]:
        """The wire form: envelope and payload in one JSON-ready mapping."""
        body = self.model_dump(mode="json")
        return {"event_type": self.event_type, "schema_version": self.schema_version, **body}

    def to_json(self) -> bytes:
        """The wire bytes: the same mapping as :meth:`to_dict`, serialised by pydantic's
        Rust core rather than ``json.dumps`` of the dict (every event is serialised once
        on its way out; the relay, the signature and the audit all work on these exact
        bytes, so key order is free)."""
        return wire_head(type(self)) + self.model_dump_json().encode()[1:]

    def caused(self) -> dict[str, Any]:
        """Envelope fields for an event caused by this one (same case and correlation)."""
        return {
            "case_id": self.case_id,
            "causation_id": self.event_id,
            "correlation_id": self.correlation_id,
        }


def wire_head(cls: type[Event]) -> bytes:
    """How :meth:`Event.to_json` starts every record of ``cls``: the opening brace, the
    type and the version, up to and including the comma before the envelope."""
    return f'{{"event_type":"{cls.event_type}","schema_version":{cls.schema_version},'.encode()


# --------------------------------------------------------------------------- payload parts


class Applicant(BaseModel):
    """Who applies: a natural person (resident ID) or a legal person (credit code)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["natural", "legal"] = Field(description="natural person or legal person")
    name: str = Field(min_length=1, max_length=200, description="Person's or company's name.")
    id_number: str = Field(
        description="18-char resident ID (natural) or unified social credit code (legal).",
        examples=["11010519491231002X", "91350100M000100Y43"],
    )
    phone: str = Field(description="Contact mobile number.", examples=["13800138000"])


class SealedApplicant(BaseModel):
    """Who applies, as events carry it: the kind, a pseudonym, and the personal fields
    sealed under the person's data key (shared.contracts.sealing; erasure deletes it)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    kind: Literal["natural", "legal"] = Field(description="natural person or legal person")
    ref: str = Field(
        pattern=REF_PATTERN,
        description="The applicant's stable pseudonym (keyed hash of the ID number); "
        "what outcomes, statistics and the departments' own records key on.",
        examples=["s1-5f0c3e9a1b2d4c6e8f0a1b2c3d4e5f60"],
    )
    key_id: UUID = Field(description="The data key the sealed fields are sealed under.")
    sealed: dict[str, str] = Field(
        description="Personal fields (name, id_number, phone: only those the reader needs), "
        "each AES-256-GCM sealed: 'v1.' + base64url(nonce, ciphertext, tag).",
        examples=[{"name": "v1.q83vEjRWeJCrze8SNFZ4kKvN7xI0Vn", "id_number": "v1.Z2V0bm9u"}],
    )


class RoutedStep(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    index: int = Field(ge=0, description="Position in the routing slip, from 0.")
    department: str = Field(description="Department that owns the step.")
    action: str = Field(description="What the department is asked to do.")


# --------------------------------------------------------------------------- case events


class CaseAccepted(Event):
    """A window or the mobile terminal accepted a case (intake).

    Version 2 seals the applicant's personal fields (:class:`SealedApplicant`); version 1
    records are upcast on read (:func:`upcast_clear_applicant`).
    """

    event_type: ClassVar[str] = "CaseAccepted"
    schema_version: ClassVar[int] = 2

    item_code: str = Field(description="Catalogue item code.", examples=["SS-UNEMPLOYMENT-BENEFIT"])
    applicant: SealedApplicant = Field(description="Who applies (name, ID number, phone sealed).")
    community_code: str = Field(
        description="Applicant's community (neighbourhood committee).", examples=["110105001001"]
    )
    form: dict[str, Any] = Field(default_factory=dict, description="Item-specific form fields.")
    centre_id: str = Field(description="Service centre that accepted the case.")
    window_id: str = Field(description="Window or terminal id.")
    operator_id: str | None = Field(default=None, description="Clerk id; none for the app.")
    channel: Literal["window", "mobile"] = Field(
        description="Where it was filed: at a window or on the mobile terminal."
    )
    receipt_no: str = Field(description="Human receipt number, per centre and day, no gaps.")


class CaseRouted(Event):
    """The router matched the item and wrote the routing slip.

    Version 2 counts the promise in working days on the centre's calendar
    (``working_days``); version 1 records (calendar days) are upcast with ``None``."""

    event_type: ClassVar[str] = "CaseRouted"
    schema_version: ClassVar[int] = 2

    item_code: str = Field(description="Catalogue item code.")
    catalogue_version: str = Field(description="Catalogue version that routed the case.")
    steps: tuple[RoutedStep, ...] = Field(
        min_length=1, description="The routing slip: every step, in the order they are done."
    )
    settle_on_spot: bool = Field(description="Approved at once; departments review afterwards.")
    promised_by: AwareDatetime = Field(description="Promised completion time.")
    working_days: int | None = Field(
        default=None,
        ge=0,
        description="The catalogue's promise in working days, counted to promised_by on "
        "the working-day calendar; None on records from before version 2 (calendar days).",
    )


class CaseRejected(Event):
    """The router could not route the case (unknown item, wrong applicant, missing field)."""

    event_type: ClassVar[str] = "CaseRejected"

    reason_code: str = Field(
        description="Why, machine-readable.",
        examples=["unknown_item", "wrong_applicant_kind", "missing_field"],
    )
    message: str = Field(description="Why, for the applicant.")
    field: str | None = Field(default=None, description="The form field concerned, if any.")
    catalogue_version: str = Field(description="Catalogue version that refused the case.")


class CaseClosed(Event):
    """The case is finished: approved, or rejected with the reason."""

    event_type: ClassVar[str] = "CaseClosed"

    outcome: Literal["approved", "rejected"] = Field(description="How the case ended.")
    on_spot: bool = Field(default=False, description="Closed at once by settle-on-spot.")
    reason_code: str | None = Field(
        default=None, description="Why it was rejected, machine-readable (rejected only)."
    )
    message: str | None = Field(default=None, description="The deciding message, if any.")
    department: str | None = Field(default=None, description="Department that decided.")


class CaseAdvanced(Event):
    """The router assigned a later step (1, 2, ...) of the slip to its department; step 0
    goes out with the slip itself (CaseRouted)."""

    event_type: ClassVar[str] = "CaseAdvanced"

    step_index: int = Field(ge=0, description="Position of the step in the routing slip.")
    department: str = Field(description="Department that owns the step.")
    action: str = Field(description="What the department is asked to do.")
    review: bool = Field(
        default=False, description="True for the review of an on-the-spot approval."
    )


class CaseAwaitingInfo(Event):
    """A department answered a step with "needs information": the case waits for the
    applicant at that step (the router's explicit, audited state; nothing is assigned
    until the missing information arrives)."""

    event_type: ClassVar[str] = "CaseAwaitingInfo"

    step_index: int = Field(ge=0, description="Position of the step in the routing slip.")
    department: str = Field(description="Department that asked for more.")
    missing: tuple[str, ...] = Field(description="Form fields the applicant must supply.")
    message: str = Field(description="What is missing, for the applicant.")


class CaseReviewFlagged(Event):
    """A department's review of an on-the-spot approval failed: recorded for follow-up."""

    event_type: ClassVar[str] = "CaseReviewFlagged"

    step_index: int = Field(description="Position of the reviewed step in the routing slip.")
    department: str = Field(description="Department whose review failed.")
    reason_code: str = Field(description="Why the review failed, machine-readable.")
    message: str = Field(description="Why the review failed, for the follow-up.")


# --------------------------------------------------------------------------- department steps


class StepAssigned(Event):
    """The router asks a department to perform one step of a case (dept.<name>.tasks).

    Version 2 adds the step's promise in working days and when one is left
    (``working_days``, ``warn_at``); version 1 records are upcast with ``None``. Version 3
    carries the applicant sealed, only the fields department rules use (name, ID number).
    """

    event_type: ClassVar[str] = "StepAssigned"
    schema_version: ClassVar[int] = 3

    step_index: int = Field(ge=0, description="Position of the step in the routing slip.")
    department: str = Field(description="Department that owns the step.")
    action: str = Field(description="What the department is asked to do.")
    item_code: str = Field(description="Catalogue item code.")
    applicant: SealedApplicant = Field(description="Who applies (name and ID number sealed).")
    community_code: str = Field(description="Applicant's community (neighbourhood committee).")
    form: dict[str, Any] = Field(
        default_factory=dict, description="Item-specific form fields, as the window took them."
    )
    review: bool = Field(
        default=False, description="True for the after-the-fact review of an on-the-spot case."
    )
    follows_department: str | None = Field(
        default=None,
        description="Department whose approval released this step; its outcome event is "
        "causation_id. A department that learns from that department's outcomes waits "
        "until it has seen that event.",
    )
    due_by: AwareDatetime = Field(description="When the step should be decided.")
    working_days: int | None = Field(
        default=None,
        ge=0,
        description="Working days the step was given to due_by; None before version 2.",
    )
    warn_at: AwareDatetime | None = Field(
        default=None,
        description="When one working day is left (a DeadlineWarning falls due); None "
        "before version 2.",
    )


class StepOutcome(Event):
    """Common shape of a department's answer (dept.<name>.outcomes).

    Version 2 added ``applicant_kind``; version 3 refers to the applicant by
    ``applicant_ref`` instead of the ID number. Older records are upcast on read (see
    :func:`upcast_step_outcome_v1`, :func:`upcast_step_outcome_v2`).
    """

    schema_version: ClassVar[int] = 3

    step_index: int = Field(ge=0, description="Position of the step in the routing slip.")
    department: str = Field(description="Department that owns the step.")
    action: str = Field(description="What the department is asked to do.")
    item_code: str = Field(description="Catalogue item code.")
    applicant_ref: str = Field(
        pattern=REF_PATTERN,
        description="The applicant's pseudonym (as on the task), for departments that learn.",
        examples=["s1-5f0c3e9a1b2d4c6e8f0a1b2c3d4e5f60"],
    )
    applicant_kind: Literal["natural", "legal"] = Field(
        description="natural person or legal person (a company)."
    )
    review: bool = Field(
        default=False, description="True for the review of an on-the-spot approval."
    )


class StepApproved(StepOutcome):
    """A department approved its step: a reference and what it decided."""

    event_type: ClassVar[str] = "StepApproved"

    reference: str | None = Field(default=None, description="Department's own reference.")
    facts: dict[str, Any] = Field(default_factory=dict, description="What was decided.")


class StepRejected(StepOutcome):
    """A department refused its step, with the reason."""

    event_type: ClassVar[str] = "StepRejected"

    reason_code: str = Field(
        description="Why, machine-readable.",
        examples=["already_registered", "insufficient_insured_months"],
    )
    message: str = Field(description="Why, for the applicant.")


class StepNeedsInfo(StepOutcome):
    """A department needs more from the applicant before it can decide its step."""

    event_type: ClassVar[str] = "StepNeedsInfo"

    missing: tuple[str, ...] = Field(description="Form fields the applicant must supply.")
    message: str = Field(description="What is missing, for the applicant.")


# --------------------------------------------------------------------------- deadlines


class DeadlineNotice(Event):
    """Common shape of the deadline service's notices (topic ``cases.deadlines``): one
    step of a case, the StepAssigned that set its deadline is ``causation_id``."""

    step_index: int = Field(ge=0, description="Position of the step in the routing slip.")
    department: str = Field(description="Department that owns the step.")
    review: bool = Field(description="True for the review of an on-the-spot approval.")
    due_by: AwareDatetime = Field(description="The step's due time, as its task recorded it.")


class DeadlineWarning(DeadlineNotice):
    """One working day is left for a step that is still undecided."""

    event_type: ClassVar[str] = "DeadlineWarning"

    warn_at: AwareDatetime = Field(description="When one working day was left.")


class DeadlineMissed(DeadlineNotice):
    """A step was not decided by its due time."""

    event_type: ClassVar[str] = "DeadlineMissed"


# --------------------------------------------------------------------------- operations


class DeadLetterRedriven(Event):
    """An operator put a dead-lettered record back on its original topic after a fix
    (topic ``ops.redrives``). ``case_id`` is the record's case when it parses, else the
    nil UUID; ``event_id`` of the re-driven record travels in ``redriven_event_id``."""

    event_type: ClassVar[str] = "DeadLetterRedriven"

    dlq_topic: str = Field(description="The dead-letter queue the record was taken from.")
    dlq_partition: int = Field(description="Its partition there.")
    dlq_offset: int = Field(description="Its offset there.")
    original_topic: str = Field(description="The topic it is put back on (logical name).")
    original_partition: int = Field(description="Its partition on that topic; -1 if none.")
    original_offset: int = Field(description="Its offset on that topic; -1 if none.")
    redriven_event_id: UUID | None = Field(
        default=None, description="event_id of the re-driven record, when it parses."
    )
    operator: str = Field(description="Who re-drove it (an operator id, not a person's ID).")
    reason: str = Field(min_length=3, description="Why it is safe to process now.")


class PersonErased(Event):
    """An admin erased a person (``onedoor-admin erase``): their data keys are deleted,
    so no sealed copy of their fields can be opened again. Names the person by pseudonym
    only; ``case_id`` and ``correlation_id`` are the nil UUID (no case)."""

    event_type: ClassVar[str] = "PersonErased"

    subject_ref: str = Field(
        pattern=REF_PATTERN,
        description="The erased person's pseudonym.",
        examples=["s1-5f0c3e9a1b2d4c6e8f0a1b2c3d4e5f60"],
    )
    key_ids: tuple[UUID, ...] = Field(description="The data keys deleted (maybe none).")
    erased_by: str = Field(min_length=1, max_length=200, description="The admin account.")
    reason: str = Field(
        min_length=3,
        max_length=500,
        description="Why, as the admin gave it (a request number, never personal data).",
    )


# --------------------------------------------------------------------------- people's reads


class PersonalDataAccessed(Event):
    """A person read a case's personal data (its detail, its history, an export) over
    HTTP or the command line: recorded, signed, before the data was shown (topics
    ``access.<service>``, one per service that shows it). Names the fields read, never
    their values; ``case_id`` is the case read (no ID number ever appears here), and
    ``correlation_id`` is the case id too."""

    event_type: ClassVar[str] = "PersonalDataAccessed"

    accessor: str = Field(
        min_length=1, max_length=200, description="Who read: the account (token subject)."
    )
    role: str = Field(
        description="The accessor's role when reading.",
        examples=["clerk", "auditor", "admin", "citizen"],
    )
    accessor_centre: str | None = Field(
        default=None, description="The accessor's centre (a clerk's), if bound to one."
    )
    fields: tuple[str, ...] = Field(
        min_length=1, description="Names of the fields shown (never their values)."
    )
    reason: str | None = Field(
        default=None,
        max_length=500,
        description="Why, as the accessor gave it; required of every role but a clerk "
        "reading its own centre's case and a citizen reading their own "
        "(shared.contracts.access.needs_reason).",
    )
    channel: Literal["http", "cli"] = Field(
        description="How the data was read: over HTTP (a page or an API call) or with a CLI."
    )
    resource: str = Field(
        description="What was read, without the ids in it.",
        examples=["GET /cases/{case_id}", "onedoor-audit history"],
    )
    request_id: str = Field(
        min_length=1, max_length=100, description="The request's id (or the CLI run's)."
    )


# --------------------------------------------------------------------------- registry

Upcaster = Callable[[dict[str, Any]], dict[str, Any]]


class EventRegistry:
    """Maps (event_type, schema_version) to a class, upcasting older versions on read."""

    def __init__(self) -> None:
        self._classes: dict[str, type[Event]] = {}
        self._upcasters: dict[tuple[str, int], Upcaster] = {}
        self._heads: dict[bytes, type[Event]] = {}  # wire_head(cls) -> cls

    def register(self, cls: type[Event]) -> type[Event]:
        if cls.event_type in self._classes:
            raise ValueError(f"event type {cls.event_type} registered twice")
        self._classes[cls.event_type] = cls
        self._heads[wire_head(cls)] = cls
        return cls

    def register_upcaster(self, event_type: str, from_version: int, fn: Upcaster) -> None:
        """fn turns a version ``from_version`` body into a ``from_version + 1`` body; it
        may raise an :class:`EventDecodeError` for a body that cannot be of that version."""
        self._upcasters[(event_type, from_version)] = fn

    def classes(self) -> Mapping[str, type[Event]]:
        return dict(self._classes)

    def parse(self, raw: bytes | str | Mapping[str, Any]) -> Event:
        """Parse one record value into its event class, or raise an EventDecodeError."""
        event = self._parse_wire(raw) if isinstance(raw, bytes) else None
        return event if event is not None else self._parse_object(raw)

    def _parse_object(self, raw: bytes | str | Mapping[str, Any]) -> Event:
        if isinstance(raw, Mapping):
            data: Any = dict(raw)
        else:
            try:
                data = json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise MalformedEventError(f"not JSON: {exc}") from None
        if not isinstance(data, dict):
            raise MalformedEventError(f"expected a JSON object, got {type(data).__name__}")
        event_type = data.pop("event_type", None)
        version = data.pop("schema_version", None)
        if not isinstance(event_type, str):
            raise MalformedEventError("missing event_type")
        cls = self._classes.get(event_type)
        if cls is None:
            raise UnknownEventTypeError(f"no event type {event_type!r}")
        if not isinstance(version, int) or isinstance(version, bool):
            raise MalformedEventError(f"{event_type}: missing or non-integer schema_version")
        if version > cls.schema_version:
            raise UnsupportedSchemaVersionError(
                f"{event_type} v{version} is newer than this code (v{cls.schema_version})"
            )
        while version < cls.schema_version:
            upcast = self._upcasters.get((event_type, version))
            if upcast is None:
                raise UnsupportedSchemaVersionError(f"{event_type} v{version} has no upcaster")
            data = upcast(data)
            version += 1
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise MalformedEventError(f"{event_type}: {_first_errors(exc)}") from None

    def _parse_wire(self, raw: bytes) -> Event | None:
        """The usual record, as :meth:`Event.to_json` wrote it, in one pass of pydantic's
        JSON reader, without building a Python dict first (every consumer parses every
        record it reads).

        Only a record that starts with the exact head of a registered class at its current
        version takes this path, and only what that class accepts comes out of it (the
        head's two keys are not fields, so ``extra="forbid"`` refuses them if repeated).
        Anything else returns None, for :meth:`_parse_object`'s verdict and error message;
        that includes every record of an older version, which only :meth:`_parse_object`
        upcasts.
        """
        cut = raw.find(b",", raw.find(b",") + 1) + 1
        cls = self._heads.get(raw[:cut]) if cut else None
        if cls is None:
            return None
        try:
            return cls.model_validate_json(b"{" + raw[cut:])
        except ValidationError:
            return None


def _first_errors(exc: ValidationError, limit: int = 8) -> str:
    parts = []
    for err in exc.errors()[:limit]:
        where = ".".join(str(p) for p in err["loc"]) or "(root)"
        parts.append(f"{where}: {err['msg']}")
    return "; ".join(parts)


registry = EventRegistry()
for _cls in (
    CaseAccepted,
    CaseRouted,
    CaseRejected,
    CaseClosed,
    CaseAdvanced,
    CaseAwaitingInfo,
    CaseReviewFlagged,
    StepAssigned,
    StepApproved,
    StepRejected,
    StepNeedsInfo,
    DeadlineWarning,
    DeadlineMissed,
    DeadLetterRedriven,
    PersonalDataAccessed,
    PersonErased,
):
    registry.register(_cls)


for _outcome in (StepApproved, StepRejected, StepNeedsInfo):
    registry.register_upcaster(_outcome.event_type, 1, upcast_step_outcome_v1)
    registry.register_upcaster(_outcome.event_type, 2, upcast_step_outcome_v2)
registry.register_upcaster(CaseAccepted.event_type, 1, upcast_clear_applicant)
registry.register_upcaster(StepAssigned.event_type, 2, upcast_clear_applicant)
registry.register_upcaster(CaseRouted.event_type, 1, upcast_to_working_days)
registry.register_upcaster(StepAssigned.event_type, 1, upcast_to_working_days)


def parse_event(raw: bytes | str | Mapping[str, Any]) -> Event:
    """Parse a record value with the global registry (see :class:`EventRegistry`)."""
    return registry.parse(raw)
