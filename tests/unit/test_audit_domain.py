"""The audit's rules with plain values: logs written by the real routing rules and the
real outcome builder, signed with real Ed25519 keys, then verified, projected, counted."""

from __future__ import annotations

import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar
from uuid import UUID, uuid4

import pytest

from services.audit.ingest import SignatureJudge
from services.audit.projection import CaseView, digest, project, project_case
from services.audit.statistics import stats
from services.audit.store import Verdict
from services.audit.verifier.clock import Timing
from services.audit.verifier.log import LogRecord
from services.audit.verifier.replay import verify
from services.audit.verifier.report import (
    BAD_SIGNATURE,
    CATALOGUE_MISMATCH,
    CLOSED_TWICE,
    DUPLICATE_EVENT_CONFLICT,
    DUPLICATE_OUTCOME,
    FORGED_COPY,
    INCONSISTENT_CLOSE,
    MALFORMED_RECORD,
    MISSING_SIGNATURE,
    OVERDUE,
    REVIEW_FAILED,
    STEP_OUT_OF_ORDER,
    UNASSIGNED_OUTCOME,
    UNEXPLAINED_WAIT,
    UNKNOWN_CASE,
    VIOLATION_KINDS,
    WRONG_SIGNER,
    VerifyReport,
    Violation,
)
from services.audit.verifier.shards import ShardReport, merge_shards, verify_shard
from services.audit.verifier.signatures import allowed_signer
from services.deadlines.domain import owed_notices
from services.router.domain import CaseState, on_outcome, route
from shared.contracts.calendar import CENTRE_TZ
from shared.contracts.catalogue import Catalogue, Item, Step
from shared.contracts.decoding import _decode_exact, decode_record
from shared.contracts.events import (
    Applicant,
    CaseAccepted,
    CaseAwaitingInfo,
    CaseClosed,
    CaseReviewFlagged,
    CaseRouted,
    DeadlineNotice,
    Event,
    EventDecodeError,
    StepApproved,
    StepAssigned,
    StepNeedsInfo,
    StepOutcome,
    StepRejected,
    parse_event,
)
from shared.contracts.topology import (
    CASES_ACCEPTED,
    CASES_DEADLINES,
    CASES_ROUTING,
    dept_outcomes,
    dept_tasks,
)
from shared.department.adapter import outcome_event
from shared.department.decisions import Approve, Decision, NeedsInfo, Reject
from shared.messaging.keyring import generate
from shared.messaging.signing import (
    BATCH_PREFIX,
    PublicKeys,
    Signer,
    digest_prefix,
    record_digest,
    signer_digest,
)
from shared.messaging.testing import signer_for
from tests.support import builders
from tests.support.builders import awaiting_info

pytestmark = pytest.mark.unit

T0 = datetime(2026, 11, 27, 9, 0, tzinfo=UTC)
LATER = T0 + timedelta(hours=1)  # every clean case below is closed or still in time by then
PARTITIONS = 3
SERVICES = ("intake", "router", "hr_registration", "social_security", "deadlines")
PERSON = Applicant(
    kind="natural", name="Li Hua", id_number="11010519491231002X", phone="13800138000"
)
BENEFIT_FORM = {
    "last_employer": "Harbour Logistics",
    "separation_date": "2026-09-30",
    "insured_months": 40,
    "education": "college",
    "desired_occupation": "cook",
}
EMPLOYMENT_FORM = {"employer_name": "Harbour Logistics", "employment_start_date": "2026-11-01"}
E = TypeVar("E", bound=Event)


# --------------------------------------------------------------------------- the log builder


def decode(record: LogRecord) -> Event | None:
    """The record's event (its own class), or None when it is not an event."""
    try:
        return parse_event(record.value)
    except EventDecodeError:
        return None


@dataclass(frozen=True)
class Keys:
    signers: Mapping[str, Signer]
    public: PublicKeys


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("keys")
    for service in SERVICES:
        # Valid before the first event of these logs (T0), as keys in service are.
        generate(folder, service, now=T0 - timedelta(days=30))
    return Keys({s: signer_for(folder, s) for s in SERVICES}, PublicKeys.load(folder))


class LogBuilder:
    """Drives cases through the router's own rules and the adapter SDK's outcome builder,
    and writes what they emit as signed Kafka records, one second apart."""

    def __init__(self, catalogue: Catalogue, keys: Keys) -> None:
        self.catalogue = catalogue
        self.keys = keys
        self.records: list[LogRecord] = []
        self.events: list[Event] = []
        self.clock = T0
        self.states: dict[UUID, CaseState | None] = {}
        self.tasks: dict[UUID, StepAssigned] = {}  # the open task of each case
        self._offsets: dict[tuple[str, int], int] = {}

    def tick(self) -> datetime:
        self.clock += timedelta(seconds=1)
        return self.clock

    def retime(self, event: E) -> E:
        return event.model_copy(update={"occurred_at": self.tick()})

    def publish(
        self,
        topic: str,
        event: Event,
        *,
        signer: str | None = None,
        value: bytes | None = None,
        signature: str | None = None,
    ) -> LogRecord:
        """Append one record; the signature covers exactly the value bytes."""
        body = event.to_json() if value is None else value
        name = event.producer if signer is None else signer
        return self.append(
            topic,
            body,
            event.case_id.int % PARTITIONS,
            name,
            self.keys.signers[name].sign(body) if signature is None else signature,
            event,
        )

    def append(  # noqa: PLR0917 - a record's fields, in the order Kafka gives them
        self,
        topic: str,
        value: bytes,
        partition: int,
        signer: str | None,
        signature: str | None,
        event: Event | None = None,
    ) -> LogRecord:
        offset = self._offsets.get((topic, partition), 0)
        self._offsets[(topic, partition)] = offset + 1
        record = LogRecord(topic, partition, offset, value, signer, signature)
        self.records.append(record)
        if event is not None:
            self.events.append(event)
        return record

    def redeliver(self, record: LogRecord) -> LogRecord:
        """The same record again, later in its partition (an at-least-once retry)."""
        event = decode(record)
        return self.append(
            record.topic, record.value, record.partition, record.signer, record.signature, event
        )

    def accept(
        self, item_code: str, form: Mapping[str, object], applicant: Applicant = PERSON
    ) -> CaseAccepted:
        receipt_no = f"C01-20261127-{len(self.states) + 1:06d}"
        accepted = builders.accepted(item_code, applicant, form, receipt_no=receipt_no)
        accepted = accepted.model_copy(update={"occurred_at": self.tick()})
        self.publish(CASES_ACCEPTED, accepted)
        self.states[accepted.case_id] = None
        return accepted

    def emit_all(self, emits: list[tuple[str, Event]]) -> list[Event]:
        out = []
        for topic, raw in emits:
            event = self.retime(raw)
            self.publish(topic, event)
            if isinstance(event, StepAssigned):
                self.tasks[event.case_id] = event
            out.append(event)
        return out

    def route(self, accepted: CaseAccepted) -> list[Event]:
        state, emits = route(accepted, self.catalogue, self.clock)
        self.states[accepted.case_id] = state
        return self.emit_all(emits)

    def decide(self, case_id: UUID, decision: Decision) -> StepOutcome:
        """The assigned department decides the open task, and the router reacts."""
        task = self.tasks[case_id]
        outcome = self.retime(outcome_event(task.department, task, decision))
        self.publish(dept_outcomes(task.department), outcome)
        state, emits = on_outcome(self.states[case_id], outcome, self.clock)
        self.states[case_id] = state
        self.emit_all(emits)
        return outcome

    # ------------------------------------------------------------ the five clean journeys

    def benefit_approved(self) -> CaseAccepted:
        accepted = self.accept("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM)
        self.route(accepted)
        self.decide(accepted.case_id, Approve("HR-JR-0001"))
        self.decide(accepted.case_id, Approve("SS-UB-0001", {"monthly_yuan": 1850}))
        return accepted

    def benefit_rejected(self) -> CaseAccepted:
        accepted = self.accept("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM)
        self.route(accepted)
        self.decide(accepted.case_id, Reject("already_registered", "registered since May"))
        return accepted

    def on_spot(self, review: Decision | None = None) -> CaseAccepted:
        accepted = self.accept("HR-EMPLOYMENT-REGISTRATION", EMPLOYMENT_FORM)
        self.route(accepted)
        self.decide(accepted.case_id, review or Approve("HR-ER-0001"))
        return accepted

    def approve_all(self, case_id: UUID) -> None:
        """Every remaining step (or review) approved, in slip order."""
        while (state := self.states[case_id]) is not None and state.current_step is not None:
            self.decide(case_id, Approve(f"REF-{state.current_step}"))

    def unknown_item(self) -> CaseAccepted:
        accepted = self.accept("NO-SUCH-ITEM", {})
        self.route(accepted)
        return accepted

    def waiting_for_info(self) -> CaseAccepted:
        accepted = self.accept("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM)
        self.route(accepted)
        self.decide(accepted.case_id, NeedsInfo(("separation_letter",), "bring the letter"))
        return accepted

    def undecided(self) -> CaseAccepted:
        """Routed and assigned; the department has not answered yet."""
        accepted = self.accept("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM)
        self.route(accepted)
        return accepted

    # ------------------------------------------------------------ lookups for the tests

    def find(self, case_id: UUID, cls: type[E], **fields: object) -> E:
        found = [
            e
            for e in self.events
            if e.case_id == case_id
            and isinstance(e, cls)
            and all(getattr(e, k) == v for k, v in fields.items())
        ]
        assert len(found) == 1, found
        return found[0]

    def record_of(self, event: Event) -> LogRecord:
        return next(r for r in self.records if decode(r) == event)

    def announce_deadlines(self, now: datetime) -> list[DeadlineNotice]:
        """What the deadline service would announce by ``now``, published as it would."""
        notices = owed_notices(self.events, now)
        for notice in notices:
            self.publish(CASES_DEADLINES, notice)
        return notices

    def verify(self, now: datetime = LATER, **kw: Any) -> VerifyReport:
        return verify(self.records, catalogue=self.catalogue, keys=self.keys.public, now=now, **kw)


@pytest.fixture
def log(catalogue: Catalogue, keys: Keys) -> LogBuilder:
    return LogBuilder(catalogue, keys)


def clean_log(log: LogBuilder) -> dict[str, CaseAccepted]:
    return {
        "approved": log.benefit_approved(),
        "rejected": log.benefit_rejected(),
        "on_spot": log.on_spot(),
        "review_failed": log.on_spot(Reject("not_employed", "no contract on file")),
        "unknown_item": log.unknown_item(),
    }


def only(report: VerifyReport, kind: str, *, flagged: int = 0) -> Violation:
    """The report holds exactly one violation of this kind, and nothing else but the
    ``flagged`` failed reviews the log was built with; return that violation."""
    kinds = sorted(v.kind for v in report.violations)
    assert kinds == sorted([kind] + [REVIEW_FAILED] * flagged), report.violations
    return next(v for v in report.violations if v.kind == kind)


def assert_at(violation: Violation, record: LogRecord, event: Event | None) -> None:
    assert (violation.topic, violation.partition, violation.offset) == (
        record.topic,
        record.partition,
        record.offset,
    )
    assert violation.event_id == (event.event_id if event is not None else None)
    assert violation.case_id == (event.case_id if event is not None else None)


def shuffled(records: list[LogRecord], seed: int) -> Iterator[list[LogRecord]]:
    rng = random.Random(seed)
    for _ in range(5):
        copy = list(records)
        rng.shuffle(copy)
        yield copy


# --------------------------------------------------------------------------- clean logs


def test_the_builder_writes_what_the_router_writes(log: LogBuilder) -> None:
    cases = clean_log(log)
    on_spot = cases["on_spot"].case_id
    assert [(r.topic, type(decode(r)).__name__) for r in log.records if _case(r) == on_spot] == [
        (CASES_ACCEPTED, "CaseAccepted"),
        (CASES_ROUTING, "CaseRouted"),
        (CASES_ROUTING, "CaseClosed"),
        (dept_tasks("hr_registration"), "StepAssigned"),
        (dept_outcomes("hr_registration"), "StepApproved"),
    ]
    failed = cases["review_failed"].case_id
    assert [type(decode(r)).__name__ for r in log.records if _case(r) == failed][-2:] == [
        "StepRejected",
        "CaseReviewFlagged",
    ]


def _case(record: LogRecord) -> UUID | None:
    event = decode(record)
    return event.case_id if event is not None else None


def test_clean_log_has_no_errors_in_any_order(log: LogBuilder, keys: Keys) -> None:
    cases = clean_log(log)
    log.waiting_for_info()
    failed = log.find(cases["review_failed"].case_id, StepRejected)
    for records in [log.records, *shuffled(log.records, seed=20261127)]:
        report = verify(records, catalogue=log.catalogue, keys=keys.public, now=LATER)
        assert report.errors() == []
        flag = only(report, REVIEW_FAILED)
        assert flag.severity == "flag"
        assert_at(flag, log.record_of(failed), failed)
        assert (report.records, report.events, report.cases) == (len(log.records),) * 2 + (6,)


def test_identical_redelivery_is_counted_once_and_is_no_violation(log: LogBuilder) -> None:
    clean_log(log)
    first = list(log.records)
    for record in first[::3]:
        log.redeliver(record)
    report = log.verify()
    assert report.errors() == []
    assert report.records == len(log.records) > len(first)
    assert report.events == len(first)


def test_on_the_spot_slip_of_two_steps_reviews_step_two_after_step_one(
    catalogue: Catalogue, keys: Keys
) -> None:
    two_step = Item(
        code="HR-TWO-STEP-ON-SPOT",
        name="Two-step on-the-spot item",
        applicant_kind="natural",
        level="street",
        steps=(
            Step(department="hr_registration", action="employment_registration", name="Record"),
            Step(department="social_security", action="certificate", name="Certify"),
        ),
        settle_on_spot=True,
        promised_days=0,
        required_fields=(),
    )
    wider = Catalogue.build(catalogue.declared_version, [*catalogue.items.values(), two_step])
    log = LogBuilder(wider, keys)
    accepted = log.accept(two_step.code, {})
    log.route(accepted)
    log.decide(accepted.case_id, Approve("HR-1"))
    second = log.tasks[accepted.case_id]
    assert (second.step_index, second.review) == (1, True)
    log.decide(accepted.case_id, Reject("no_record", "no record"))
    for records in [log.records, *shuffled(log.records, seed=7)]:
        report = verify(records, catalogue=wider, keys=keys.public, now=LATER)
        assert report.errors() == []
        assert (
            only(report, REVIEW_FAILED).event_id
            == log.find(accepted.case_id, StepRejected).event_id
        )


def test_an_open_case_within_its_promise_is_no_violation(log: LogBuilder) -> None:
    log.waiting_for_info()
    assert log.verify().violations == []


# --------------------------------------------------------------------------- one test per kind


def test_violation_kinds_are_listed() -> None:
    assert len(set(VIOLATION_KINDS)) == len(VIOLATION_KINDS) >= 24
    assert {"broken_hash_chain", "unexplained_wait", "forged_copy", "wrong_partition"} <= set(
        VIOLATION_KINDS
    )
    assert {"access_without_reason", "access_by_wrong_role"} <= set(VIOLATION_KINDS)


@pytest.mark.parametrize(
    "value",
    [b"not json", b"[1, 2]", b'{"event_type": "CaseExploded", "schema_version": 1}'],
    ids=["not-json", "not-object", "unknown-type"],
)
def test_malformed_record(log: LogBuilder, value: bytes) -> None:
    clean_log(log)
    bad = log.append(CASES_ROUTING, value, 0, "router", log.keys.signers["router"].sign(value))
    assert decode(bad) is None
    violation = only(log.verify(), MALFORMED_RECORD, flagged=1)
    assert_at(violation, bad, None)


def test_malformed_record_missing_a_field(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    body = json.loads(accepted.to_json())
    del body["receipt_no"]
    value = json.dumps(body).encode()
    bad = log.append(CASES_ACCEPTED, value, 0, "intake", log.keys.signers["intake"].sign(value))
    violation = only(log.verify(), MALFORMED_RECORD)
    assert_at(violation, bad, None)
    assert "receipt_no" in violation.detail
    assert PERSON.id_number not in violation.detail


def test_duplicate_event_id_with_other_content(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    clean_log(log)
    approval = log.find(accepted.case_id, StepApproved, step_index=1)
    forged = approval.model_copy(update={"facts": {"monthly_yuan": 9999}})
    copy = log.publish(dept_outcomes("social_security"), forged)
    for records in [log.records, *shuffled(log.records, seed=3)]:
        report = verify(records, catalogue=log.catalogue, keys=log.keys.public, now=LATER)
        errors = [v for v in report.violations if v.severity == "error"]
        assert [v.kind for v in errors] == [DUPLICATE_EVENT_CONFLICT]
        assert_at(errors[0], copy, forged)  # the copy at the later position is the odd one


def test_same_event_spelt_differently_is_no_conflict(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    approval = log.find(accepted.case_id, StepApproved, step_index=0)
    value = json.dumps(approval.to_dict(), indent=1).encode()  # same content, other bytes
    log.publish(dept_outcomes("hr_registration"), approval, value=value)
    report = log.verify()
    assert report.violations == []
    assert report.events == len(log.records) - 1


@pytest.mark.parametrize("cls", [CaseAccepted, CaseRouted])
def test_a_case_fact_recorded_twice_under_two_ids(log: LogBuilder, cls: type[Event]) -> None:
    accepted = log.benefit_approved()
    fact = log.find(accepted.case_id, cls)
    topic = CASES_ACCEPTED if cls is CaseAccepted else CASES_ROUTING
    again = log.retime(fact.model_copy(update={"event_id": uuid4()}))
    record = log.publish(topic, again)
    violation = only(log.verify(), DUPLICATE_EVENT_CONFLICT)
    assert_at(violation, record, again)
    assert str(fact.event_id) in violation.detail


def test_event_for_a_case_never_accepted(log: LogBuilder) -> None:
    clean_log(log)
    stray = CaseClosed(
        case_id=uuid4(), correlation_id=uuid4(), producer="router", outcome="approved"
    )
    record = log.publish(CASES_ROUTING, stray)
    assert_at(only(log.verify(), UNKNOWN_CASE, flagged=1), record, stray)


def test_every_event_of_an_unaccepted_case_is_reported(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    log.records = [r for r in log.records if not isinstance(decode(r), CaseAccepted)]
    report = log.verify()
    assert set(report.by_kind()) == {UNKNOWN_CASE}
    assert report.by_kind()[UNKNOWN_CASE] == len(log.records)
    assert report.cases == 0
    assert {v.case_id for v in report.violations} == {accepted.case_id}


def _older(catalogue: Catalogue, how: str) -> Catalogue:
    """The catalogue as it might have been when a case was routed."""
    item = catalogue.items["SS-UNEMPLOYMENT-BENEFIT"]
    changed = {
        "version": item,
        "steps": item.model_copy(update={"steps": tuple(reversed(item.steps))}),
        "short-slip": item.model_copy(update={"steps": item.steps[:1]}),
        "on-spot": item.model_copy(update={"settle_on_spot": True}),
        "promise": item.model_copy(update={"promised_days": 20}),
    }[how]
    items = {**catalogue.items, item.code: changed}
    return Catalogue.build("2026.10.1", items.values())


@pytest.mark.parametrize("how", ["version", "steps", "short-slip", "on-spot", "promise"])
def test_catalogue_mismatch(catalogue: Catalogue, keys: Keys, how: str) -> None:
    """A case routed, consistently, by other rules than the auditor's catalogue."""
    log = LogBuilder(catalogue, keys)
    clean_log(log)
    log.catalogue = _older(catalogue, how)
    accepted = log.accept("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM)
    log.route(accepted)
    log.approve_all(accepted.case_id)
    routed = log.find(accepted.case_id, CaseRouted)
    original = log.record_of(routed)
    if how != "version":  # only the item differs, the version is the auditor's own
        routed = routed.model_copy(update={"catalogue_version": catalogue.version})
        value = routed.to_json()
        signature = log.keys.signers["router"].sign(value)
        log.records[log.records.index(original)] = replace(
            original, value=value, signature=signature
        )
    report = verify(log.records, catalogue=catalogue, keys=keys.public, now=LATER)
    violation = only(report, CATALOGUE_MISMATCH, flagged=1)
    assert_at(violation, original, routed)
    assert ("2026.10.1" in violation.detail) == (how == "version")


def test_catalogue_mismatch_when_a_routable_case_is_rejected(log: LogBuilder) -> None:
    accepted = log.accept("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM)
    unroutable = accepted.model_copy(update={"item_code": "NO-SUCH-ITEM"})
    events = log.emit_all(route(unroutable, log.catalogue, log.clock)[1])
    report = log.verify()
    assert_at(only(report, CATALOGUE_MISMATCH), log.record_of(events[0]), events[0])


def test_step_assigned_before_the_previous_step_was_approved(log: LogBuilder) -> None:
    clean_log(log)
    accepted = log.benefit_approved()
    step_one = log.find(accepted.case_id, StepAssigned, step_index=1)
    original = log.record_of(step_one)
    early = step_one.model_copy(update={"causation_id": accepted.event_id})
    index = log.records.index(original)
    value = early.to_json()
    log.records[index] = replace(
        original, value=value, signature=log.keys.signers["router"].sign(value)
    )
    violation = only(log.verify(), STEP_OUT_OF_ORDER, flagged=1)
    assert_at(violation, original, step_one)
    assert "approval of step 0" in violation.detail


@pytest.mark.parametrize("how", ["department", "beyond-slip", "review", "twice"])
def test_step_that_does_not_fit_the_slip(log: LogBuilder, how: str) -> None:
    accepted = log.benefit_approved()
    step_one = log.find(accepted.case_id, StepAssigned, step_index=1)
    changes: dict[str, dict[str, object]] = {
        "department": {"department": "hr_registration"},
        "beyond-slip": {"step_index": 2},
        "review": {"review": True},
        "twice": {"due_by": step_one.due_by + timedelta(days=1)},
    }
    extra = step_one.model_copy(
        update={"event_id": uuid4(), "occurred_at": log.tick(), **changes[how]}
    )
    record = log.publish(dept_tasks(extra.department), extra)
    assert_at(only(log.verify(), STEP_OUT_OF_ORDER), record, extra)


def test_step_assigned_on_a_case_without_a_slip(log: LogBuilder) -> None:
    accepted = log.unknown_item()
    task = StepAssigned(
        **accepted.caused(),
        producer="router",
        step_index=0,
        department="hr_registration",
        action="job_registration",
        item_code=accepted.item_code,
        applicant=accepted.applicant,
        community_code=accepted.community_code,
        due_by=LATER,
    )
    record = log.publish(dept_tasks("hr_registration"), task)
    violation = only(log.verify(), STEP_OUT_OF_ORDER)
    assert_at(violation, record, task)
    assert "no routing slip" in violation.detail


def test_outcome_answering_no_assignment(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    hr_task = log.find(accepted.case_id, StepAssigned, step_index=0)
    ss_task = log.find(accepted.case_id, StepAssigned, step_index=1)
    # social_security answers step 1, citing HR's task as its cause.
    stray = log.retime(
        outcome_event("social_security", ss_task, NeedsInfo(("x",), "m")).model_copy(
            update={"causation_id": hr_task.event_id}
        )
    )
    record = log.publish(dept_outcomes("social_security"), stray)
    assert_at(only(log.verify(), UNASSIGNED_OUTCOME), record, stray)


def test_outcome_published_on_another_departments_topic(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    approval = log.find(accepted.case_id, StepApproved, step_index=1)
    original = log.record_of(approval)
    # HR's adapter publishes social_security's decision on its own topic, signed by HR.
    moved = approval.model_copy(update={"producer": "hr_registration"})
    log.records.remove(original)
    record = log.publish(dept_outcomes("hr_registration"), moved)
    violation = only(log.verify(), UNASSIGNED_OUTCOME)
    assert_at(violation, record, moved)
    assert "published on dept.hr_registration.outcomes" in violation.detail


def test_two_outcomes_for_one_step(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    task = log.find(accepted.case_id, StepAssigned, step_index=1)
    second = log.retime(outcome_event("social_security", task, Reject("late", "too late")))
    record = log.publish(dept_outcomes("social_security"), second)
    for records in [log.records, *shuffled(log.records, seed=11)]:
        report = verify(records, catalogue=log.catalogue, keys=log.keys.public, now=LATER)
        assert_at(only(report, DUPLICATE_OUTCOME), record, second)


def test_case_closed_twice(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    clean_log(log)
    closed = log.find(accepted.case_id, CaseClosed)
    again = log.retime(closed.model_copy(update={"event_id": uuid4()}))
    record = log.publish(CASES_ROUTING, again)
    for records in [log.records, *shuffled(log.records, seed=5)]:
        report = verify(records, catalogue=log.catalogue, keys=log.keys.public, now=LATER)
        errors = report.errors()
        assert [v.kind for v in errors] == [CLOSED_TWICE]
        assert_at(errors[0], record, again)


def test_failed_review_is_not_closed_twice(log: LogBuilder) -> None:
    accepted = log.on_spot(Reject("not_employed", "no contract"))
    report = log.verify()
    assert report.errors() == []
    assert len([e for e in log.events if isinstance(e, CaseClosed)]) == 1
    assert only(report, REVIEW_FAILED).case_id == accepted.case_id


def test_closed_approved_before_every_step_was_approved(log: LogBuilder) -> None:
    accepted = log.accept("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM)
    log.route(accepted)
    first = log.decide(accepted.case_id, Approve("HR-1"))
    early = log.retime(CaseClosed(**first.caused(), producer="router", outcome="approved"))
    record = log.publish(CASES_ROUTING, early)
    violation = only(log.verify(), INCONSISTENT_CLOSE)
    assert_at(violation, record, early)
    assert "step(s) 1" in violation.detail


@pytest.mark.parametrize("how", ["rejected-without-rejection", "on-spot-for-normal-item"])
def test_inconsistent_close(log: LogBuilder, how: str) -> None:
    accepted = log.accept("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM)
    log.route(accepted)
    log.decide(accepted.case_id, NeedsInfo(("separation_letter",), "bring it"))
    fields: dict[str, Any] = (
        {"outcome": "rejected", "reason_code": "applicant_withdrew"}
        if how == "rejected-without-rejection"
        else {"outcome": "approved", "on_spot": True}
    )
    close = log.retime(CaseClosed(**accepted.caused(), producer="router", **fields))
    record = log.publish(CASES_ROUTING, close)
    assert_at(only(log.verify(), INCONSISTENT_CLOSE), record, close)


def test_review_failed_is_a_flag_not_an_error(log: LogBuilder) -> None:
    accepted = log.on_spot(Reject("not_employed", "no contract"))
    rejection = log.find(accepted.case_id, StepRejected)
    report = log.verify()
    flag = only(report, REVIEW_FAILED)
    assert flag.severity == "flag"
    assert report.errors() == []
    assert_at(flag, log.record_of(rejection), rejection)


def test_open_case_past_its_promise_is_overdue(log: LogBuilder) -> None:
    accepted = log.undecided()
    promised = log.find(accepted.case_id, CaseRouted).promised_by
    # One working day before, the deadline service warned; at the promise, it missed.
    assert [n.event_type for n in log.announce_deadlines(promised)] == [
        "DeadlineWarning",
        "DeadlineMissed",
    ]
    assert log.verify(now=promised).violations == []
    violation = only(log.verify(now=promised + timedelta(seconds=1)), OVERDUE)
    assert_at(violation, log.record_of(accepted), accepted)


# --------------------------------------------------------------------------- waiting for info


def test_a_case_waiting_for_information_is_clean_and_never_overdue(log: LogBuilder) -> None:
    clean_log(log)
    accepted = log.waiting_for_info()
    wait = log.find(accepted.case_id, CaseAwaitingInfo)
    asked = log.find(accepted.case_id, StepNeedsInfo)
    assert (wait.causation_id, wait.step_index, wait.department) == (
        asked.event_id,
        asked.step_index,
        asked.department,
    )
    promised = log.find(accepted.case_id, CaseRouted).promised_by
    for now in (LATER, promised + timedelta(days=30)):
        assert log.verify(now=now).errors() == []
    views = _views(log)
    assert views[accepted.case_id].status == "waiting_info"
    assert views[accepted.case_id].to_json()["waiting_info"] == {
        "step_index": 0,
        "department": "hr_registration",
        "missing": ["separation_letter"],
        "since": wait.occurred_at.isoformat(),
    }
    assert stats(views, now=promised + timedelta(days=30)).open_past_promise == []


def test_a_wait_no_department_asked_for_is_unexplained(log: LogBuilder) -> None:
    clean_log(log)
    accepted = log.undecided()
    task = log.tasks[accepted.case_id]
    wait = log.retime(awaiting_info(task))  # caused by the assignment, not by an outcome
    log.publish(CASES_ROUTING, wait)
    violation = only(log.verify(), UNEXPLAINED_WAIT, flagged=1)
    assert_at(violation, log.record_of(wait), wait)
    assert "without a StepNeedsInfo" in violation.detail
    # An unexplained wait does not stop the clock.
    promised = log.find(accepted.case_id, CaseRouted).promised_by
    log.announce_deadlines(promised)
    late = log.verify(now=promised + timedelta(seconds=1))
    assert sorted(v.kind for v in late.errors() if v.case_id == accepted.case_id) == [
        OVERDUE,
        UNEXPLAINED_WAIT,
    ]


@pytest.mark.parametrize("how", ["other step", "other department"])
def test_a_wait_that_does_not_match_its_step_needs_info(log: LogBuilder, how: str) -> None:
    accepted = log.accept("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM)
    log.route(accepted)
    outcome = log.decide(accepted.case_id, NeedsInfo(("separation_letter",), "bring it"))
    right = log.find(accepted.case_id, CaseAwaitingInfo)
    log.records = [r for r in log.records if r is not log.record_of(right)]
    change = {"step_index": 1} if how == "other step" else {"department": "social_security"}
    wrong = log.retime(awaiting_info(outcome, **change))
    log.publish(CASES_ROUTING, wrong)
    violation = only(log.verify(), UNEXPLAINED_WAIT)
    assert_at(violation, log.record_of(wrong), wrong)
    assert "but the StepNeedsInfo is of step 0 by hr_registration" in violation.detail


def test_a_wait_on_an_unassigned_departments_needs_info_is_unexplained(
    log: LogBuilder,
) -> None:
    accepted = log.undecided()
    task = log.tasks[accepted.case_id]
    elsewhere = task.model_copy(update={"department": "social_security"})
    stray = log.retime(outcome_event("social_security", elsewhere, NeedsInfo(("x",), "m")))
    log.publish(dept_outcomes("social_security"), stray)
    wait = log.retime(awaiting_info(stray))
    log.publish(CASES_ROUTING, wait)
    report = log.verify()
    assert sorted(v.kind for v in report.violations) == [UNASSIGNED_OUTCOME, UNEXPLAINED_WAIT]
    detail = next(v.detail for v in report.violations if v.kind == UNEXPLAINED_WAIT)
    assert "social_security was not assigned step 0" in detail


def test_a_second_wait_for_one_step_needs_info_is_unexplained(log: LogBuilder) -> None:
    clean_log(log)
    accepted = log.waiting_for_info()
    first = log.find(accepted.case_id, CaseAwaitingInfo)
    asked = log.find(accepted.case_id, StepNeedsInfo)
    # The router's event written twice (under two event ids), as a doubled assignment.
    again = log.retime(awaiting_info(asked))
    record = log.publish(CASES_ROUTING, again)
    promised = log.find(accepted.case_id, CaseRouted).promised_by
    for records in [log.records, *shuffled(log.records, seed=17)]:
        report = verify(records, catalogue=log.catalogue, keys=log.keys.public, now=LATER)
        violation = only(report, UNEXPLAINED_WAIT, flagged=1)
        assert_at(violation, record, again)
        assert f"already waits at step 0 on this StepNeedsInfo (by {first.event_id})" in (
            violation.detail
        )
    # The first wait is explained and still the case's last word: not overdue.
    late = log.verify(now=promised + timedelta(days=1))
    assert [v.kind for v in late.errors()] == [UNEXPLAINED_WAIT]


def _on_spot_wait(log: LogBuilder) -> tuple[CaseAccepted, CaseAwaitingInfo]:
    """An on-the-spot case whose review needs information (the router flags it), and a
    CaseAwaitingInfo written for it all the same."""
    accepted = log.accept("HR-EMPLOYMENT-REGISTRATION", EMPLOYMENT_FORM)
    log.route(accepted)
    asked = log.decide(accepted.case_id, NeedsInfo(("contract",), "bring the contract"))
    assert [type(e).__name__ for e in log.events][-1] == "CaseReviewFlagged"
    wait = log.retime(awaiting_info(asked))
    log.publish(CASES_ROUTING, wait)
    return accepted, wait


def test_a_wait_on_a_case_settled_on_the_spot_is_unexplained(log: LogBuilder) -> None:
    clean_log(log)
    accepted, wait = _on_spot_wait(log)
    violation = only(log.verify(), UNEXPLAINED_WAIT, flagged=1)
    assert_at(violation, log.record_of(wait), wait)
    assert "settled on the spot" in violation.detail
    close = log.find(accepted.case_id, CaseClosed)
    assert f"waits after the case was closed by {close.event_id}" in violation.detail
    # Without its close, the case runs out of time: such a wait does not stop the clock.
    log.records.remove(log.record_of(close))
    promised = log.find(accepted.case_id, CaseRouted).promised_by  # promised_days 0
    violation = only(log.verify(now=promised), UNEXPLAINED_WAIT, flagged=1)
    assert "closed" not in violation.detail
    late = log.verify(now=promised + timedelta(seconds=1))
    assert sorted(v.kind for v in late.errors() if v.case_id == accepted.case_id) == [
        OVERDUE,
        UNEXPLAINED_WAIT,
    ]


def test_a_wait_after_the_case_was_closed_is_unexplained(log: LogBuilder) -> None:
    accepted = log.accept("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM)
    log.route(accepted)
    asked = log.decide(accepted.case_id, NeedsInfo(("separation_letter",), "bring it"))
    on_time = log.find(accepted.case_id, CaseAwaitingInfo)
    log.records.remove(log.record_of(on_time))
    close = log.retime(
        CaseClosed(
            **accepted.caused(),
            producer="router",
            outcome="rejected",
            reason_code="applicant_withdrew",
        )
    )
    log.publish(CASES_ROUTING, close)
    # The same wait, written after the close.
    late = log.retime(awaiting_info(asked))
    record = log.publish(CASES_ROUTING, late)
    for records in [log.records, *shuffled(log.records, seed=23)]:
        report = verify(records, catalogue=log.catalogue, keys=log.keys.public, now=LATER)
        assert sorted(v.kind for v in report.violations) == [INCONSISTENT_CLOSE, UNEXPLAINED_WAIT]
        violation = next(v for v in report.violations if v.kind == UNEXPLAINED_WAIT)
        assert_at(violation, record, late)
        assert violation.detail == f"waits after the case was closed by {close.event_id}"


def test_a_case_that_moves_on_after_waiting_is_no_longer_waiting(log: LogBuilder) -> None:
    accepted = log.waiting_for_info()
    waiting = [e for e in log.events if e.case_id == accepted.case_id]
    assert project(waiting)[accepted.case_id].status == "waiting_info"
    # The supplement arrives and the router assigns the step again: the wait is over.
    task = log.tasks[accepted.case_id]
    again = log.retime(task.model_copy(update={"event_id": uuid4()}))
    log.publish(dept_tasks(task.department), again)
    view = project([*waiting, again])[accepted.case_id]
    assert (view.waiting_info, view.status) == (None, "open")
    assert "waiting_info" not in view.to_json()
    # An open case whose last word is no wait runs out of time as any other.
    promised = log.find(accepted.case_id, CaseRouted).promised_by
    log.announce_deadlines(promised)
    late = log.verify(now=promised + timedelta(seconds=1))
    assert OVERDUE in {v.kind for v in late.violations}


def _after_the_wait(log: LogBuilder, accepted: CaseAccepted, then: str) -> None:
    """What happens to a waiting case next, as ``then`` says."""
    wait = log.find(accepted.case_id, CaseAwaitingInfo)
    task = log.tasks[accepted.case_id]
    if then.startswith("advanced"):
        # The step assigned again; at the wait's instant, with an event id above the
        # wait's, the assignment still comes first in the case's life (by type).
        same = then.endswith("same instant")
        again = task.model_copy(
            update={
                "event_id": UUID(int=2**128 - 1) if same else uuid4(),
                "occurred_at": wait.occurred_at if same else log.tick(),
            }
        )
        log.publish(dept_tasks(task.department), again)
    elif then == "flagged":
        flag = CaseReviewFlagged(
            **wait.caused(),
            occurred_at=log.tick(),
            producer="router",
            step_index=wait.step_index,
            department=wait.department,
            reason_code="needs_info",
            message="flagged for follow-up",
        )
        log.publish(CASES_ROUTING, flag)
    elif then == "closed":
        close = CaseClosed(
            **wait.caused(),
            occurred_at=log.tick(),
            producer="router",
            outcome="rejected",
            reason_code="applicant_withdrew",
        )
        log.publish(CASES_ROUTING, close)


@pytest.mark.parametrize(
    ("then", "waits"),
    [
        ("nothing", True),
        ("advanced", False),
        ("advanced at the same instant", True),
        ("flagged", False),
        ("closed", False),
    ],
)
def test_the_projection_and_verify_agree_on_whether_a_case_waits(
    log: LogBuilder, then: str, waits: bool
) -> None:
    """One definition of "still waiting" (services.audit.timeline): ``stats`` lists a
    case open past its promise exactly when ``verify`` reports it ``overdue``."""
    clean_log(log)
    accepted = log.waiting_for_info()
    _after_the_wait(log, accepted, then)
    views = _views(log)
    assert (views[accepted.case_id].status == "waiting_info") == waits
    after = log.find(accepted.case_id, CaseRouted).promised_by + timedelta(days=1)
    late = str(accepted.case_id) in stats(views, now=after).open_past_promise
    overdue = any(
        v.kind == OVERDUE and v.case_id == accepted.case_id
        for v in log.verify(now=after).violations
    )
    assert late == overdue == (not waits and then != "closed")


def test_unrouted_case_uses_the_catalogue_promise(log: LogBuilder) -> None:
    accepted = log.accept("HR-JOB-REGISTRATION", {})  # promised_days 1; the router never ran
    lost = log.accept("NO-SUCH-ITEM", {})  # no promise to break: skipped
    # (Left unrouted that long, both are stalled_case first: test_audit_proof.)
    patient = Timing(stall_after=timedelta(days=30))
    assert (
        log.verify(now=accepted.occurred_at + timedelta(hours=23), timing=patient).violations == []
    )
    report = log.verify(now=accepted.occurred_at + timedelta(days=1, seconds=1), timing=patient)
    assert_at(only(report, OVERDUE), log.record_of(accepted), accepted)
    assert lost.case_id not in {v.case_id for v in report.violations}


def test_missing_signature(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    original = log.record_of(accepted)
    index = log.records.index(original)
    log.records[index] = replace(original, signature=None)
    assert_at(only(log.verify(), MISSING_SIGNATURE), original, accepted)
    log.records[index] = replace(original, signer=None)
    assert_at(only(log.verify(check_signatures=False), MISSING_SIGNATURE), original, accepted)


def test_bad_signature(log: LogBuilder, tmp_path: Path) -> None:
    accepted = log.benefit_approved()
    closed = log.find(accepted.case_id, CaseClosed)
    original = log.record_of(closed)
    index = log.records.index(original)
    impostor = signer_for(tmp_path, "router")  # a router key nobody registered
    log.records[index] = replace(original, signature=impostor.sign(original.value))
    assert_at(only(log.verify(), BAD_SIGNATURE), original, closed)
    assert log.verify(check_signatures=False).violations == []
    # A value changed after signing fails too.
    tampered = closed.model_copy(update={"department": "hr_registration"}).to_json()
    log.records[index] = replace(original, value=tampered)
    assert_at(only(log.verify(), BAD_SIGNATURE), original, closed)


def test_batch_signed_records_verify_alone_and_fail_alone(log: LogBuilder) -> None:
    # The router signs the events of one transaction together (shared.messaging.signing): each
    # record carries the batch signature and its own Merkle proof.
    accepted = log.benefit_approved()
    case = str(accepted.case_id).encode()
    routed = [r for r in log.records if r.signer == "router" and case in r.value]
    assert len(routed) >= 3
    signatures = log.keys.signers["router"].sign_batch([r.value for r in routed])
    assert all(s.startswith(BATCH_PREFIX) for s in signatures)
    for record, signature in zip(routed, signatures, strict=True):
        log.records[log.records.index(record)] = replace(record, signature=signature)
    assert log.verify().violations == []
    # One value changed after signing: that record fails, its batch mates still verify.
    closed = log.find(accepted.case_id, CaseClosed)
    original = log.record_of(closed)
    tampered = closed.model_copy(update={"department": "hr_registration"}).to_json()
    log.records[log.records.index(original)] = replace(original, value=tampered)
    assert_at(only(log.verify(), BAD_SIGNATURE), original, closed)


def test_bad_signature_from_an_unknown_signer(log: LogBuilder, tmp_path: Path) -> None:
    accepted = log.benefit_approved()
    closed = log.find(accepted.case_id, CaseClosed)
    ghost = signer_for(tmp_path, "ghost")
    value = closed.model_copy(update={"event_id": uuid4()}).to_json()
    record = log.append(CASES_ROUTING, value, 0, "ghost", ghost.sign(value))
    report = log.verify()
    found = [v for v in report.violations if v.kind in {BAD_SIGNATURE, WRONG_SIGNER}]
    assert {v.kind for v in found} == {BAD_SIGNATURE, WRONG_SIGNER}
    assert all(v.offset == record.offset and v.topic == record.topic for v in found)


def test_a_record_that_is_not_an_event_is_only_malformed(log: LogBuilder, tmp_path: Path) -> None:
    log.benefit_approved()
    value = b"{}"
    ghost = signer_for(tmp_path, "ghost")
    record = log.append(CASES_ROUTING, value, 0, "ghost", ghost.sign(value))
    assert_at(only(log.verify(), MALFORMED_RECORD), record, None)


def test_wrong_signer_with_a_valid_signature(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    closed = log.find(accepted.case_id, CaseClosed)
    original = log.record_of(closed)
    index = log.records.index(original)
    hr = log.keys.signers["hr_registration"]
    log.records[index] = replace(
        original, signer="hr_registration", signature=hr.sign(original.value)
    )
    violation = only(log.verify(), WRONG_SIGNER)
    assert_at(violation, original, closed)
    assert "only router publishes on cases.routing" in violation.detail


def test_outcome_signed_by_the_router_is_a_wrong_signer(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    approval = log.find(accepted.case_id, StepApproved, step_index=0)
    original = log.record_of(approval)
    index = log.records.index(original)
    router = log.keys.signers["router"]
    log.records[index] = replace(
        original, topic=CASES_ROUTING, signer="router", signature=router.sign(original.value)
    )
    report = log.verify()
    # On the wrong topic too, but a record that fails its signer checks never counts
    # toward the case: it is reported once, as what it is, and nothing follows from it.
    assert set(report.by_kind()) == {WRONG_SIGNER}
    assert all(v.event_id == approval.event_id for v in report.violations)


def test_allowed_signers_per_topic() -> None:
    assert allowed_signer("cases.accepted") == "intake"
    assert allowed_signer("cases.routing") == "router"
    assert allowed_signer("dept.civil_affairs.tasks") == "router"
    assert allowed_signer("dept.civil_affairs.outcomes") == "civil_affairs"
    assert allowed_signer("dept..outcomes") is None
    assert allowed_signer("cases.routing.dlq") is None


def test_violations_are_the_same_in_any_order(log: LogBuilder) -> None:
    clean_log(log)
    accepted = log.benefit_approved()
    closed = log.find(accepted.case_id, CaseClosed)
    log.publish(CASES_ROUTING, log.retime(closed.model_copy(update={"event_id": uuid4()})))
    stray = CaseClosed(
        case_id=uuid4(), correlation_id=uuid4(), producer="router", outcome="rejected"
    )
    log.publish(CASES_ROUTING, stray)
    log.append(CASES_ROUTING, b"garbage", 1, None, None)
    expected = log.verify().violations
    assert sorted(v.kind for v in expected) == sorted(
        [CLOSED_TWICE, UNKNOWN_CASE, MALFORMED_RECORD, REVIEW_FAILED]
    )
    for records in shuffled(log.records, seed=99):
        report = verify(records, catalogue=log.catalogue, keys=log.keys.public, now=LATER)
        assert report.violations == expected


# --------------------------------------------------------------------------- projection


def _views(log: LogBuilder) -> dict[UUID, CaseView]:
    return project(log.events)


def test_projection_is_order_insensitive_and_ignores_duplicates(log: LogBuilder) -> None:
    clean_log(log)
    views = _views(log)
    rng = random.Random(42)
    for _ in range(5):
        events = log.events + rng.sample(log.events, 10)
        rng.shuffle(events)
        again = project(events)
        assert again == views
        assert list(again) == list(views)
        assert digest(again) == digest(views)


def test_projection_of_each_journey(log: LogBuilder, catalogue: Catalogue) -> None:
    cases = clean_log(log)
    views = _views(log)
    assert set(views) == {c.case_id for c in cases.values()}
    approved = views[cases["approved"].case_id]
    assert (approved.outcome, approved.on_spot, approved.reason_code) == ("approved", False, None)
    assert approved.departments == ("hr_registration", "social_security")
    assert approved.catalogue_version == catalogue.version
    # Accepted on Friday 27 November: ten working days end with Friday 11 December.
    assert approved.promised_by == datetime(2026, 12, 12, tzinfo=CENTRE_TZ)
    assert approved.applicant_kind == "natural"
    assert [t.detail for t in approved.timeline] == [
        "accepted SS-UNEMPLOYMENT-BENEFIT at C01 (window)",
        f"routed to hr_registration > social_security (promised by "
        f"{approved.promised_by.isoformat()})",
        "assigned job_registration",
        "approved (HR-JR-0001)",
        "assigned benefit_claim",
        "advanced to benefit_claim",
        "approved (SS-UB-0001)",
        "closed approved",
    ]
    rejected = views[cases["rejected"].case_id]
    assert (rejected.outcome, rejected.reason_code) == ("rejected", "already_registered")
    assert rejected.timeline[-2].detail == "rejected: already_registered"
    failed = views[cases["review_failed"].case_id]
    assert (failed.outcome, failed.on_spot) == ("approved", True)
    assert failed.review_flags == ("hr_registration: not_employed",)
    assert [t.event_type for t in failed.timeline][-3:] == [
        "StepAssigned",
        "StepRejected",
        "CaseReviewFlagged",
    ]
    assert failed.timeline[3].detail == "assigned employment_registration (review)"
    unknown = views[cases["unknown_item"].case_id]
    assert (unknown.outcome, unknown.reason_code, unknown.departments) == (
        "rejected",
        "unknown_item",
        (),
    )
    assert unknown.routed_at is None


def test_projection_skips_cases_never_accepted(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    without = [e for e in log.events if not isinstance(e, CaseAccepted)]
    assert project(without) == {}
    assert project_case(without) is None
    one = project_case(e for e in log.events if e.case_id == accepted.case_id)
    assert one == project(log.events)[accepted.case_id]


def test_timeline_ties_are_broken_by_event_type_then_id(log: LogBuilder) -> None:
    accepted = log.on_spot()
    # Every event at the same instant, listed backwards.
    same = [e.model_copy(update={"occurred_at": T0}) for e in reversed(log.events)]
    view = project(same)[accepted.case_id]
    assert [t.event_type for t in view.timeline] == [
        "CaseAccepted",
        "CaseRouted",
        "StepAssigned",
        "StepApproved",
        "CaseClosed",
    ]
    closes = [
        CaseClosed(**accepted.caused(), producer="router", outcome="approved", occurred_at=T0)
        for _ in range(3)
    ]
    view = project([*same, *closes])[accepted.case_id]
    tail = [t.event_id for t in view.timeline if t.event_type == "CaseClosed"]
    assert tail == sorted(tail)


def test_no_personal_data_in_the_projection(log: LogBuilder) -> None:
    clean_log(log)
    accepted = log.accept("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM)
    log.route(accepted)
    # A careless department puts the resident ID into its reference.
    log.decide(accepted.case_id, Approve(f"REF-{PERSON.id_number}"))
    text = json.dumps([v.to_json() for v in _views(log).values()])
    assert PERSON.id_number not in text
    assert PERSON.phone not in text
    assert PERSON.name not in text
    # The audit holds no data key: the number is masked by its shape, as logs mask it.
    assert f"REF-{PERSON.id_number[:3]}{'*' * 11}{PERSON.id_number[-4:]}" in text


def test_to_json_is_json_ready_and_deterministic(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    view = _views(log)[accepted.case_id]
    first = json.dumps(view.to_json(), sort_keys=True)
    assert (
        json.dumps(project(reversed(log.events))[accepted.case_id].to_json(), sort_keys=True)
        == first
    )
    assert view.to_json()["accepted_at"] == "2026-11-27T09:00:01+00:00"


def test_digest_is_stable_and_sensitive(log: LogBuilder) -> None:
    clean_log(log)
    views = _views(log)
    same = digest(views)
    assert same == digest(dict(reversed(list(views.items()))))
    assert len(same) == 64
    without_last = project(log.events[:-1])
    assert digest(without_last) != same
    some = next(iter(views))
    changed = dict(views)
    changed[some] = replace(views[some], community_code="999")
    assert digest(changed) != same


def test_digest_is_the_same_for_parsed_and_built_events(log: LogBuilder) -> None:
    clean_log(log)
    parsed = [decode(r) for r in log.records]
    assert digest(project(e for e in parsed if e is not None)) == digest(_views(log))


# --------------------------------------------------------------------------- statistics


def test_stats_on_a_small_known_log(log: LogBuilder) -> None:
    cases = clean_log(log)
    waiting = log.waiting_for_info()
    views = _views(log)
    promised = views[waiting.case_id].promised_by
    assert promised is not None
    result = stats(views, now=promised + timedelta(seconds=1))
    assert result.per_item == {
        "HR-EMPLOYMENT-REGISTRATION": {"accepted": 2, "approved": 2, "rejected": 0, "open": 0},
        "NO-SUCH-ITEM": {"accepted": 1, "approved": 0, "rejected": 1, "open": 0},
        "SS-UNEMPLOYMENT-BENEFIT": {"accepted": 3, "approved": 1, "rejected": 1, "open": 1},
    }
    assert result.per_department == {
        "hr_registration": {"approved": 2, "rejected": 2, "needs_info": 1},
        "social_security": {"approved": 1, "rejected": 0, "needs_info": 0},
    }
    assert result.per_community == {
        "110105001001": {"accepted": 6, "approved": 3, "rejected": 2, "open": 1}
    }
    assert result.per_day == {
        "2026-11-27": {"accepted": 6, "approved": 3, "rejected": 2, "open": 1}
    }
    assert result.on_spot_share == pytest.approx(2 / 5)
    assert result.reasons == {"already_registered": 1, "unknown_item": 1}
    # One second per record: accepted -> closed is 7 s (approved), 4 s (HR rejection),
    # 2 s (each on-the-spot close) and 2 s (unknown item); nearest-rank percentiles.
    assert result.accept_to_close_ms == {
        "p50": 2000.0,
        "p90": 7000.0,
        "p99": 7000.0,
        "count": 5.0,
    }
    # The open case waits for the applicant: not past the centre's promise.
    assert views[waiting.case_id].waiting_info is not None
    assert result.open_past_promise == []
    assert stats(views, now=LATER).open_past_promise == []
    assert json.loads(json.dumps(result.to_json())) == result.to_json()
    assert cases["approved"].case_id in views


def test_stats_count_promises_kept_per_item_community_and_department(log: LogBuilder) -> None:
    clean_log(log)
    late = log.undecided()
    promised = log.find(late.case_id, CaseRouted).promised_by
    log.announce_deadlines(promised)  # its step warned, then missed
    result = stats(_views(log), now=promised + timedelta(seconds=1))
    benefit = result.promises["per_item"]["SS-UNEMPLOYMENT-BENEFIT"]
    # The approved and the rejected case closed in time; the undecided one is late.
    assert benefit == {"on_time": 2, "late": 1, "share": round(2 / 3, 4)}
    assert result.promises["per_item"]["HR-EMPLOYMENT-REGISTRATION"]["share"] == 1.0
    assert result.promises["per_community"]["110105001001"]["late"] == 1
    assert result.promises["per_department"]["hr_registration"] == {
        "decided": 4,
        "missed": 1,
        "warned": 1,
        "share": 0.75,
    }
    assert result.to_json()["promises"]["per_department"]["social_security"]["missed"] == 0


def test_stats_list_open_cases_past_their_promise(log: LogBuilder) -> None:
    clean_log(log)
    late = log.undecided()
    log.waiting_for_info()
    views = _views(log)
    promised = views[late.case_id].promised_by
    assert promised is not None
    after = promised + timedelta(days=1)
    assert stats(views, now=after).open_past_promise == [str(late.case_id)]
    assert stats(views, now=promised).open_past_promise == []


def test_stats_day_is_the_centres_calendar_day(log: LogBuilder) -> None:
    log.clock = datetime(2026, 11, 27, 16, 30, tzinfo=UTC)  # 00:30 on the 28th in Beijing
    log.benefit_approved()
    result = stats(_views(log), now=LATER)
    assert list(result.per_day) == ["2026-11-28"]


def test_stats_of_nothing() -> None:
    empty = stats({}, now=LATER)
    assert empty.on_spot_share == 0.0
    assert empty.accept_to_close_ms == {"p50": 0.0, "p90": 0.0, "p99": 0.0, "count": 0.0}
    assert empty.to_json()["per_item"] == {}


# --------------------------------------------------------------------------- stored verdicts

MAC_KEY = b"k" * 32


def ingest_verdicts(
    records: list[LogRecord], keys: PublicKeys, mac_key: bytes = MAC_KEY
) -> list[Verdict]:
    """What the audit service stores at ingest for these records."""
    judge = SignatureJudge(Path("/nonexistent"), keys, mac_key)
    return judge.verdicts([(r, decode(r)) for r in records])


def reusable(verdicts: list[Verdict]) -> frozenset[bytes]:
    """What a replay loads: the digests of the good verdicts (MACs checked by the store)."""
    return frozenset(v.record_hash for v in verdicts if v.valid)


def test_ingest_time_verdicts_spare_every_ed25519_check_of_a_clean_log(log: LogBuilder) -> None:
    clean_log(log)
    verdicts = ingest_verdicts(log.records, log.keys.public)
    assert len(verdicts) == len(log.records)
    assert all(v.valid for v in verdicts)
    full = log.verify()
    reused = log.verify(verified=reusable(verdicts))
    assert reused.violations == full.violations
    assert (full.signatures_checked, full.signatures_reused) == (len(log.records), 0)
    assert (reused.signatures_checked, reused.signatures_reused) == (0, len(log.records))


def test_a_verdict_never_covers_bytes_it_was_not_computed_on(
    log: LogBuilder, tmp_path: Path
) -> None:
    accepted = log.benefit_approved()
    closed = log.find(accepted.case_id, CaseClosed)
    original = log.record_of(closed)
    index = log.records.index(original)
    verified = reusable(ingest_verdicts(log.records, log.keys.public))
    # Same event id and signature, other value bytes (altered after ingest).
    tampered = closed.model_copy(update={"department": "hr_registration"}).to_json()
    log.records[index] = replace(original, value=tampered)
    report = log.verify(verified=verified)
    assert_at(only(report, BAD_SIGNATURE), original, closed)
    assert report.signatures_checked == 1
    # Same value, another signature header (a key nobody registered).
    impostor = signer_for(tmp_path, "router")
    log.records[index] = replace(original, signature=impostor.sign(original.value))
    assert_at(only(log.verify(verified=verified), BAD_SIGNATURE), original, closed)
    # Same bytes and headers, but the registry holds another key for the signer now:
    # the digest names the key, so the old verdict does not apply.
    log.records[index] = original
    registry = {name: signer.public_key() for name, signer in log.keys.signers.items()}
    rotated = PublicKeys(registry | {"router": impostor.public_key()})
    report = verify(
        log.records, catalogue=log.catalogue, keys=rotated, now=LATER, verified=verified
    )
    routers = [r for r in log.records if r.signer == "router"]
    assert routers
    assert [(v.kind, v.topic, v.partition, v.offset) for v in report.violations] == sorted(
        (BAD_SIGNATURE, r.topic, r.partition, r.offset) for r in routers
    )
    assert report.signatures_checked == len(routers)


def test_a_bad_verdict_is_checked_again_not_trusted(log: LogBuilder, tmp_path: Path) -> None:
    accepted = log.benefit_approved()
    closed = log.find(accepted.case_id, CaseClosed)
    original = log.record_of(closed)
    impostor = signer_for(tmp_path, "router")
    forged = replace(original, signature=impostor.sign(original.value))
    log.records[log.records.index(original)] = forged
    verdicts = ingest_verdicts(log.records, log.keys.public)
    assert [v.valid for v in verdicts].count(False) == 1
    # Only good verdicts are reused: the bad one is checked again, and found bad again.
    report = log.verify(verified=reusable(verdicts))
    assert_at(only(report, BAD_SIGNATURE), original, closed)
    assert report.signatures_checked == 1


def test_record_digest_frames_every_field() -> None:
    key = bytes(range(32))
    base = record_digest(key, "router", "c2ln", b"{}")
    assert base == signer_digest(digest_prefix(key, "router"), "c2ln", b"{}")
    assert len(base) == 32
    others = {
        record_digest(bytes(32), "router", "c2ln", b"{}"),
        record_digest(key, "routers", "c2ln", b"{}"),
        record_digest(key, "router", "c2lu", b"{}"),
        record_digest(key, "router", "c2ln{", b"}"),  # bytes shifted between two fields
        record_digest(key, "router", "c2ln", b"{} "),
        record_digest(key, "router\ud800", "c2ln", b"{}"),  # not encodable as plain UTF-8
    }
    assert base not in others
    assert len(others) == 6


def _variants(value: bytes) -> Iterator[bytes]:
    """The record, and ways of spelling or breaking it that parse_event must judge."""
    yield value
    body = json.loads(value)
    for key in body:
        yield json.dumps({k: v for k, v in body.items() if k != key}).encode()
        odd_values: tuple[object, ...] = (True, None, 1, 1.0, "1", 2, [], {}, "x")
        for odd in odd_values:
            yield json.dumps(body | {key: odd}).encode()
    for extra in ("wire_event_type", "wire_schema_version", "eventType"):
        yield json.dumps(body | {extra: body["event_type"]}).encode()
    for version in (b"1.0", b"true", b"1e0", b'"1"', b"0", b"2"):
        yield value.replace(b'"schema_version":1', b'"schema_version":' + version)
    yield value[:-1] + b',"schema_version":2}'  # a duplicate key: the last one counts
    yield value[:-1] + b',"event_type":"CaseClosed"}'
    yield b"\xef\xbb\xbf" + value
    yield value + b" x"


def test_the_one_pass_decoder_judges_exactly_as_parse_event(log: LogBuilder) -> None:
    clean_log(log)
    accepted = 0
    for record in log.records:
        for value in _variants(record.value):
            exact, fast = _decode_exact(value), decode_record(value)
            if isinstance(exact, EventDecodeError):
                assert isinstance(fast, EventDecodeError), value
                assert str(fast) == str(exact), value
                continue
            accepted += 1
            assert isinstance(fast, type(exact)), value
            dumped, expected = fast.to_dict(), exact.to_dict()
            for defaulted in ("event_id", "occurred_at"):  # a missing one is made up anew
                if defaulted.encode() not in value:
                    dumped.pop(defaulted)
                    expected.pop(defaulted)
            assert dumped == expected, value
    assert accepted > len(log.records)


# --------------------------------------------------------------------------- shards


def shards_of(log: LogBuilder, records: list[LogRecord], count: int = 2) -> list[ShardReport]:
    """What ``count`` replay processes report, each over the partitions numbered its index
    modulo ``count`` (as onedoor-audit verify splits the log)."""
    return [
        verify_shard(
            [r for r in records if r.partition % count == index],
            catalogue=log.catalogue,
            keys=log.keys.public,
            now=LATER,
        )
        for index in range(count)
    ]


def test_shards_checked_apart_report_what_one_replay_does(log: LogBuilder) -> None:
    cases = clean_log(log)
    log.waiting_for_info()
    approval = log.find(cases["approved"].case_id, StepApproved, step_index=1)
    closed = log.find(cases["rejected"].case_id, CaseClosed)
    for record in list(log.records)[::4]:
        log.redeliver(record)
    log.publish(dept_outcomes("social_security"), approval.model_copy(update={"reference": "X"}))
    log.publish(CASES_ROUTING, closed, signer="intake")
    log.append(CASES_ROUTING, b"\x00 not an event", 1, "router", "c2ln")
    whole = log.verify()
    assert {v.kind for v in whole.errors()} == {
        DUPLICATE_EVENT_CONFLICT,
        FORGED_COPY,  # the close signed by intake copies the genuine one
        WRONG_SIGNER,
        MALFORMED_RECORD,
    }
    parts = shards_of(log, log.records)
    assert all(part.report.records for part in parts)  # both shards had work
    merged = merge_shards(parts)
    assert merged is not None
    assert merged.violations == whole.violations
    assert (merged.records, merged.events, merged.cases) == (
        whole.records,
        whole.events,
        whole.cases,
    )
    assert (merged.signatures_checked, merged.signatures_reused) == (
        whole.signatures_checked,
        whole.signatures_reused,
    )
    assert (merged.processes, whole.processes) == (2, 1)


def test_a_case_split_across_shards_is_not_merged(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    clean_log(log)
    closed = log.record_of(log.find(accepted.case_id, CaseClosed))
    moved = [r for r in log.records if r is not closed]
    moved.append(replace(closed, partition=closed.partition + 1, offset=10_000))
    assert merge_shards(shards_of(log, moved)) is None
    # The same records in one shard are judged as usual.
    whole = merge_shards(shards_of(log, moved, count=1))
    assert whole is not None
    assert whole.errors() == []


def test_an_event_id_in_two_shards_is_not_merged(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    clean_log(log)
    approval = log.find(accepted.case_id, StepApproved, step_index=1)
    # The same event id under a case of its own, in a partition of the other shard.
    elsewhere = approval.model_copy(update={"case_id": uuid4()})
    record = log.record_of(approval)
    body = elsewhere.to_json()
    signature = log.keys.signers["social_security"].sign(body)
    log.append(record.topic, body, record.partition + 1, "social_security", signature, elsewhere)
    parts = shards_of(log, log.records)
    assert all(part.case_ids.isdisjoint(parts[0].case_ids) for part in parts[1:])
    assert merge_shards(parts) is None
