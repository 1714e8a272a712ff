from __future__ import annotations

import json
from datetime import date
from typing import Any
from uuid import uuid4

import pytest

import shared.contracts.audit_events  # noqa: F401 - registers the audit's own events
from shared.contracts.events import (
    Applicant,
    Event,
    EventDecodeError,
    EventRegistry,
    MalformedEventError,
    StepOutcome,
    UnknownEventTypeError,
    UnsupportedSchemaVersionError,
    parse_event,
    registry,
    wire_head,
)
from shared.contracts.identity import make_resident_id
from shared.contracts.sealing import PLAIN, legacy_ref
from tests.support.builders import sealed

pytestmark = pytest.mark.unit

CASE = uuid4()
PERSON = Applicant(
    kind="natural", name="Li Hua", id_number="11010519491231002X", phone="13800138000"
)
SEALED = sealed(PERSON, CASE)

# One example per registered type, with every payload field filled in.
SAMPLES: dict[str, dict[str, Any]] = {
    "CaseAccepted": {
        "item_code": "HR-JOB-REGISTRATION",
        "applicant": SEALED,
        "community_code": "110105001",
        "form": {"education": "bachelor", "desired_occupation": "welder"},
        "centre_id": "C01",
        "window_id": "W03",
        "operator_id": "op-7",
        "channel": "window",
        "receipt_no": "C01-20261127-0001",
    },
    "CaseRouted": {
        "item_code": "HR-JOB-REGISTRATION",
        "catalogue_version": "2026.11.1+abc",
        "steps": [{"index": 0, "department": "hr_registration", "action": "job_registration"}],
        "settle_on_spot": False,
        "promised_by": "2026-11-28T00:00:00Z",
    },
    "CaseRejected": {
        "reason_code": "unknown_item",
        "message": "no item X",
        "field": "item_code",
        "catalogue_version": "2026.11.1+abc",
    },
    "CaseClosed": {"outcome": "rejected", "reason_code": "r", "message": "m", "department": "d"},
    "DeadLetterRedriven": {
        "dlq_topic": "dept.hr_registration.tasks.dlq",
        "dlq_partition": 0,
        "dlq_offset": 3,
        "original_topic": "dept.hr_registration.tasks",
        "original_partition": 2,
        "original_offset": 17,
        "redriven_event_id": str(CASE),
        "operator": "ops-1",
        "reason": "handler bug fixed in 1.2",
    },
    "CaseAdvanced": {"step_index": 1, "department": "d", "action": "a", "review": False},
    "CaseAwaitingInfo": {"step_index": 0, "department": "d", "missing": ["f"], "message": "m"},
    "CaseReviewFlagged": {"step_index": 0, "department": "d", "reason_code": "r", "message": "m"},
    "StepAssigned": {
        "step_index": 0,
        "department": "hr_registration",
        "action": "job_registration",
        "item_code": "HR-JOB-REGISTRATION",
        "applicant": SEALED,
        "community_code": "110105001",
        "form": {"education": "bachelor"},
        "review": True,
        "follows_department": "hr_registration",
        "due_by": "2026-11-28T00:00:00Z",
        "working_days": 5,
        "warn_at": "2026-11-27T00:00:00Z",
    },
    "DeadlineWarning": {
        "step_index": 0,
        "department": "hr_registration",
        "review": False,
        "due_by": "2026-11-28T00:00:00Z",
        "warn_at": "2026-11-27T00:00:00Z",
    },
    "DeadlineMissed": {
        "step_index": 0,
        "department": "hr_registration",
        "review": True,
        "due_by": "2026-11-28T00:00:00Z",
    },
    "StepApproved": {
        "step_index": 1,
        "department": "social_security",
        "action": "benefit_claim",
        "item_code": "SS-UNEMPLOYMENT-BENEFIT",
        "applicant_ref": legacy_ref("11010519491231002X"),
        "applicant_kind": "natural",
        "reference": "SS-1",
        "facts": {"months": 12},
    },
    "StepRejected": {
        "step_index": 0,
        "department": "hr_registration",
        "action": "job_registration",
        "item_code": "HR-JOB-REGISTRATION",
        "applicant_ref": legacy_ref("11010519491231002X"),
        "applicant_kind": "natural",
        "reason_code": "already_registered",
        "message": "m",
    },
    "StepNeedsInfo": {
        "step_index": 0,
        "department": "hr_registration",
        "action": "job_registration",
        "item_code": "HR-JOB-REGISTRATION",
        "applicant_ref": legacy_ref("11010519491231002X"),
        "applicant_kind": "natural",
        "missing": ["education"],
        "message": "m",
    },
    "PersonErased": {
        "subject_ref": SEALED.ref,
        "key_ids": [str(SEALED.key_id)],
        "erased_by": "admin-1",
        "reason": "request 2026-77",
    },
    "PersonalDataAccessed": {
        "accessor": "auditor-1",
        "role": "auditor",
        "fields": ["status", "receipt_no"],
        "reason": "complaint 2026-118",
        "channel": "http",
        "resource": "GET /cases/{case_id}",
        "request_id": "r-1",
    },
    "AuditCheckpoint": {
        "partitions": [
            {"topic": "cases.accepted", "partition": 0, "reached": 3, "rows": 3, "digest": "0" * 64}
        ],
        "rows": 3,
    },
}


def _make(event_type: str) -> Event:
    cls = registry.classes()[event_type]
    return cls(case_id=CASE, producer="test", correlation_id=CASE, **SAMPLES[event_type])


def test_every_registered_type_has_a_sample() -> None:
    assert set(registry.classes()) == set(SAMPLES)


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_round_trip_through_json(event_type: str) -> None:
    event = _make(event_type)
    parsed = parse_event(event.to_json())
    assert type(parsed) is type(event)
    assert parsed == event
    assert json.loads(event.to_json())["event_type"] == event_type


def test_events_are_frozen() -> None:
    event = _make("CaseClosed")
    with pytest.raises(ValueError, match="frozen"):
        event.producer = "other"  # type: ignore[misc]


def test_caused_carries_case_and_correlation() -> None:
    first = _make("CaseAccepted")
    env = first.caused()
    assert env == {"case_id": CASE, "causation_id": first.event_id, "correlation_id": CASE}


def test_unknown_event_type_is_specific() -> None:
    with pytest.raises(UnknownEventTypeError, match="NoSuchEvent"):
        parse_event(b'{"event_type": "NoSuchEvent", "schema_version": 1}')


@pytest.mark.parametrize(
    ("raw", "fragment"),
    [
        (b"\x00\xff not json", "not JSON"),
        (b"[1, 2]", "JSON object"),
        (b'{"schema_version": 1}', "missing event_type"),
        (b'{"event_type": "CaseClosed"}', "schema_version"),
        (b'{"event_type": "CaseClosed", "schema_version": 1, "outcome": "maybe"}', "outcome"),
    ],
)
def test_malformed_records_raise_malformed_event(raw: bytes, fragment: str) -> None:
    with pytest.raises(MalformedEventError, match=fragment) as info:
        parse_event(raw)
    assert info.value.reason == "malformed"


def test_newer_schema_version_is_refused() -> None:
    body = _make("CaseClosed").to_dict() | {"schema_version": 99}
    with pytest.raises(UnsupportedSchemaVersionError, match="v99"):
        parse_event(json.dumps(body))


def test_older_version_is_upcast_on_read() -> None:
    class Renamed(Event):
        event_type = "Renamed"
        schema_version = 2
        title: str

    reg = EventRegistry()
    reg.register(Renamed)
    reg.register_upcaster(
        "Renamed", 1, lambda d: {**{k: v for k, v in d.items() if k != "name"}, "title": d["name"]}
    )
    v1 = {
        "event_type": "Renamed",
        "schema_version": 1,
        "case_id": str(CASE),
        "producer": "t",
        "correlation_id": str(CASE),
        "name": "old field",
    }
    event = reg.parse(v1)
    assert isinstance(event, Renamed)
    assert event.title == "old field"
    with pytest.raises(UnsupportedSchemaVersionError, match="no upcaster"):
        reg.parse(v1 | {"schema_version": 0})


def _verdict(raw: bytes | dict[str, Any]) -> tuple[str, Any]:
    try:
        event = parse_event(raw)
    except EventDecodeError as exc:
        return (type(exc).__name__, str(exc))
    return (type(event).__name__, event)


@pytest.mark.parametrize(
    ("old", "new"),
    [
        (b"", b""),  # unchanged
        (b'"outcome":"rejected"', b'"outcome":"maybe"'),  # a value the class refuses
        (b'"producer":"test",', b""),  # a required field missing
        (b'"producer":"test"', b'"producer":"test","colour":"red"'),  # an unknown field
        (b'"producer":"test"', b'"producer":"test","event_type":"CaseRejected"'),  # type again
        (b'"producer":"test"', b'"producer":"test","schema_version":2'),  # version again
        (b'"producer":"test"', b'"producer":"a","producer":"b"'),  # a key twice
    ],
)
def test_records_as_written_parse_as_their_json_object_does(old: bytes, new: bytes) -> None:
    # Records that start as to_json writes them take a faster path through the JSON;
    # whatever they hold, the verdict is the one the same object parsed as a dict gets.
    raw = _make("CaseClosed").to_json().replace(old, new, 1)
    assert raw.startswith(b'{"event_type":"CaseClosed","schema_version":1,')
    assert _verdict(raw) == _verdict(json.loads(raw))


def test_a_record_as_written_with_trailing_garbage_is_not_json() -> None:
    with pytest.raises(MalformedEventError, match="not JSON"):
        parse_event(_make("CaseClosed").to_json() + b" trailing")


@pytest.mark.parametrize("event_type", sorted(SAMPLES))
def test_records_as_written_skip_the_dict(event_type: str, monkeypatch: pytest.MonkeyPatch) -> None:
    def no_dict(*_: object) -> None:
        raise AssertionError("json.loads called: the record took the slow path")

    monkeypatch.setattr(json, "loads", no_dict)
    event = _make(event_type)
    assert parse_event(event.to_json()) == event


# --------------------------------------------------------------------------- step outcomes v2

OUTCOME_TYPES = ("StepApproved", "StepNeedsInfo", "StepRejected")
NATURAL_ID = "11010519491231002X"  # a valid resident ID
LEGAL_ID = "91350100M000100Y43"  # a valid unified social credit code, also 18 characters


def _outcome(event_type: str, kind: str, applicant_id: str) -> StepOutcome:
    """The outcome as a record of an older version, upcast, reads: its ref the legacy one."""
    ref = legacy_ref(applicant_id)
    sample = SAMPLES[event_type] | {"applicant_kind": kind, "applicant_ref": ref}
    event = registry.classes()[event_type](
        case_id=CASE, producer="test", correlation_id=CASE, **sample
    )
    assert isinstance(event, StepOutcome)
    return event


def _as_v2(event: StepOutcome, applicant_id: str) -> bytes:
    """The record the same outcome made before version 3 (the ID number, no ref)."""
    body = event.to_dict() | {"schema_version": 2, "applicant_id": applicant_id}
    del body["applicant_ref"]
    return json.dumps(body, separators=(",", ":")).encode()


def _as_v1(event: StepOutcome, applicant_id: str) -> bytes:
    """The record the same outcome made before version 2, as to_json wrote it then."""
    body = json.loads(_as_v2(event, applicant_id)) | {"schema_version": 1}
    del body["applicant_kind"]
    return json.dumps(body, separators=(",", ":")).encode()


@pytest.mark.parametrize("event_type", OUTCOME_TYPES)
@pytest.mark.parametrize(
    ("kind", "applicant_id"),
    [
        ("natural", NATURAL_ID),
        ("legal", LEGAL_ID),
        ("legal", NATURAL_ID[:-1] + "1"),  # a resident ID's shape, a wrong check character
        ("legal", "110105194912310"),  # the old 15-digit resident ID is not one today
    ],
)
def test_a_v1_outcome_on_the_log_parses_as_v3_with_the_applicant_kind_and_ref(
    event_type: str, kind: str, applicant_id: str
) -> None:
    event = _outcome(event_type, kind, applicant_id)
    v1 = _as_v1(event, applicant_id)
    assert v1.startswith(f'{{"event_type":"{event_type}","schema_version":1,'.encode())
    assert b"applicant_kind" not in v1
    for raw in (v1, v1.decode(), json.loads(v1)):
        parsed = parse_event(raw)
        assert type(parsed) is type(event)
        assert parsed == event  # the same event id, fields, and the inferred kind


def test_the_v1_kind_does_not_depend_on_the_day_it_is_read() -> None:
    # Checked against the wall clock, a resident ID born after today would read as legal
    # until its birth date and natural from then on: the upcast must not move with it.
    future = make_resident_id("110105", date(2099, 12, 31), 1)
    parsed = parse_event(_as_v1(_outcome("StepApproved", "natural", future), future))
    assert isinstance(parsed, StepOutcome)
    assert parsed.applicant_kind == "natural"


def test_a_v1_outcome_carrying_an_applicant_kind_is_malformed() -> None:
    body = json.loads(_as_v1(_outcome("StepApproved", "natural", NATURAL_ID), NATURAL_ID))
    with pytest.raises(MalformedEventError, match="applicant_kind"):
        parse_event(body | {"applicant_kind": "natural"})


@pytest.mark.parametrize("event_type", OUTCOME_TYPES)
@pytest.mark.parametrize(("kind", "applicant_id"), [("natural", NATURAL_ID), ("legal", LEGAL_ID)])
def test_a_v3_outcome_round_trips_on_the_one_pass_path(
    event_type: str, kind: str, applicant_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    event = _outcome(event_type, kind, applicant_id)
    raw = event.to_json()
    cls = registry.classes()[event_type]
    assert cls.schema_version == 3
    assert raw.startswith(wire_head(cls))
    assert raw.startswith(f'{{"event_type":"{event_type}","schema_version":3,'.encode())

    def no_dict(*_: object) -> None:
        raise AssertionError("json.loads called: the record took the slow path")

    with monkeypatch.context() as patch:
        patch.setattr(json, "loads", no_dict)
        parsed = parse_event(raw)
    assert parsed == event
    assert parsed.to_json() == raw


@pytest.mark.parametrize("event_type", OUTCOME_TYPES)
def test_a_v2_outcome_parses_as_v3_referring_to_the_person_by_ref(event_type: str) -> None:
    event = _outcome(event_type, "natural", NATURAL_ID)
    v2 = _as_v2(event, NATURAL_ID)
    parsed = parse_event(v2)
    assert parsed == event
    assert NATURAL_ID.encode() not in parsed.to_json()


@pytest.mark.parametrize(("event_type", "clear"), [("CaseAccepted", 1), ("StepAssigned", 2)])
def test_an_applicant_in_clear_parses_as_sealed_with_plain_tokens(
    event_type: str, clear: int
) -> None:
    """The last version with the applicant in clear upcasts to the sealed one."""
    event = _make(event_type)
    body = event.to_dict() | {"schema_version": clear, "applicant": PERSON.model_dump()}
    parsed = parse_event(json.dumps(body).encode())
    assert parsed.applicant.ref == legacy_ref(PERSON.id_number)  # type: ignore[attr-defined]
    assert parsed.applicant.sealed["id_number"] == PLAIN + PERSON.id_number  # type: ignore[attr-defined]
    assert parsed.applicant.kind == "natural"  # type: ignore[attr-defined]


def test_sealed_events_never_carry_the_clear_values() -> None:
    for event_type in ("CaseAccepted", "StepAssigned"):
        raw = _make(event_type).to_json()
        for value in (PERSON.id_number, PERSON.phone, PERSON.name):
            assert value.encode() not in raw


def test_a_v3_outcome_without_its_applicant_kind_is_malformed() -> None:
    body = _outcome("StepRejected", "natural", NATURAL_ID).to_dict()
    del body["applicant_kind"]
    with pytest.raises(MalformedEventError, match="applicant_kind"):
        parse_event(json.dumps(body, separators=(",", ":")).encode())


@pytest.mark.parametrize("event_type", ["CaseRouted", "StepAssigned"])
def test_a_v1_routing_event_parses_as_v2_with_no_working_days(event_type: str) -> None:
    body = json.loads(_make(event_type).to_json())
    current = registry.classes()[event_type].schema_version  # StepAssigned v3: sealed
    assert body["schema_version"] == current
    for name in ("working_days", "warn_at"):
        body.pop(name, None)
    body["schema_version"] = 1
    if event_type == "StepAssigned":  # version 1 carried the applicant in clear
        body["applicant"] = PERSON.model_dump()
    parsed = parse_event(json.dumps(body))
    assert parsed.schema_version == current
    assert parsed.working_days is None  # type: ignore[attr-defined]
    if event_type == "StepAssigned":
        assert parsed.warn_at is None  # type: ignore[attr-defined]
    with pytest.raises(MalformedEventError, match="no working_days"):
        parse_event(json.dumps({**body, "working_days": 3}))
