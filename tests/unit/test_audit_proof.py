"""Issue 19, the audit proof: faults a dishonest insider or a subtle bug would write,
each found as its own violation kind at the bad record, and nothing else. The logs are
written by the real routing rules and outcome builder (test_audit_domain's builder)."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from uuid import UUID, uuid4

import pytest

from services.audit.catalogues import ARCHIVE_DIR, archive, archived, published_catalogues
from services.audit.verifier.clock import Timing
from services.audit.verifier.log import LogRecord
from services.audit.verifier.placement import case_of_key
from services.audit.verifier.report import (
    BAD_SIGNATURE,
    CATALOGUE_MISMATCH,
    CLOCK_SKEW,
    EVENT_ON_TWO_TOPICS,
    FORGED_COPY,
    KEY_NOT_VALID,
    LATE_CLOSE,
    MALFORMED_RECORD,
    MISSING_SIGNATURE,
    STALLED_CASE,
    STEP_OVERDUE,
    SUBJECT_MISMATCH,
    UNCAUSED_CLOSE,
    WRONG_KEY,
    WRONG_PARTITION,
    VerifyReport,
)
from shared.contracts.catalogue import Catalogue
from shared.contracts.events import CaseClosed, CaseRouted, StepApproved, StepAssigned, StepRejected
from shared.contracts.sealing import legacy_ref
from shared.contracts.topology import CASES_ROUTING, dept_outcomes, dept_tasks
from shared.department.adapter import outcome_event
from shared.department.decisions import Approve, Reject
from shared.messaging.kafka import murmur2
from shared.messaging.keyring import generate
from shared.messaging.signing import PublicKeys
from shared.messaging.testing import signer_for
from tests.unit.test_audit_domain import (
    BENEFIT_FORM,
    EMPLOYMENT_FORM,
    PARTITIONS,
    SERVICES,
    T0,
    Keys,
    LogBuilder,
    assert_at,
    clean_log,
    decode,
    only,
    shuffled,
)

pytestmark = pytest.mark.unit


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Keys:
    folder = tmp_path_factory.mktemp("keys")
    for service in SERVICES:
        generate(folder, service, now=T0 - timedelta(days=30))
    return Keys({s: signer_for(folder, s) for s in SERVICES}, PublicKeys.load(folder))


@pytest.fixture
def log(catalogue: Catalogue, keys: Keys) -> LogBuilder:
    return LogBuilder(catalogue, keys)


def kinds(report: VerifyReport) -> list[str]:
    return sorted(v.kind for v in report.errors())


# ----------------------------------------------------------- 1. one event, two topics


@pytest.mark.parametrize("step", [0, 1])
def test_a_task_copied_to_another_departments_topic_is_found_either_way(
    log: LogBuilder, step: int
) -> None:
    accepted = log.benefit_approved()
    task = log.find(accepted.case_id, StepAssigned, step_index=step)
    home = log.record_of(task)
    # hr_registration sorts before social_security: step 0's copy sorts after its
    # original, step 1's before. Either way the copy is the violation.
    other = dept_tasks("social_security" if step == 0 else "hr_registration")
    copy = log.append(other, home.value, home.partition, home.signer, home.signature)
    for records in [log.records, *shuffled(log.records, seed=step)]:
        report = log.verify() if records is log.records else _verify(log, records)
        violation = only(report, EVENT_ON_TWO_TOPICS, flagged=0)
        assert_at(violation, copy, task)
        assert "same bytes" in violation.detail


def test_a_routing_event_copied_to_a_tasks_topic_is_on_two_topics(log: LogBuilder) -> None:
    accepted = log.benefit_rejected()
    closed = log.find(accepted.case_id, CaseClosed)
    home = log.record_of(closed)
    copy = log.append(
        dept_tasks("hr_registration"), home.value, home.partition, home.signer, home.signature
    )
    assert_at(only(log.verify(), EVENT_ON_TWO_TOPICS), copy, closed)


def _verify(log: LogBuilder, records: list[LogRecord]) -> VerifyReport:
    saved, log.records = log.records, records
    try:
        return log.verify()
    finally:
        log.records = saved


# ------------------------------------------- 2. a record that fails a check never counts


def test_a_forged_earlier_close_does_not_decide_the_case(log: LogBuilder) -> None:
    accepted = log.benefit_rejected()
    genuine = log.find(accepted.case_id, CaseClosed)
    forged_event = genuine.model_copy(
        update={
            "event_id": uuid4(),
            "outcome": "approved",
            "occurred_at": genuine.occurred_at - timedelta(seconds=1),
        }
    )
    value = forged_event.to_json()
    forged = log.append(
        CASES_ROUTING, value, 0, "router", log.keys.signers["router"].sign(value + b" ")
    )
    report = log.verify()
    assert_at(only(report, BAD_SIGNATURE), forged, forged_event)  # no closed_twice


def test_a_forged_copy_earlier_in_the_log_is_not_the_original(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    approval = log.find(accepted.case_id, StepApproved, step_index=1)
    genuine = log.record_of(approval)
    tampered = approval.model_copy(update={"facts": {"monthly_yuan": 99999}}).to_json()
    # Before the genuine record, with the genuine signature over other bytes.
    forged = replace(genuine, value=tampered, offset=genuine.offset - 1)
    log.records.insert(0, forged)
    report = log.verify()
    assert kinds(report) == [BAD_SIGNATURE, FORGED_COPY]
    for violation in report.violations:
        assert_at(violation, forged, approval)
    assert genuine.offset not in {v.offset for v in report.violations}


def test_an_unsigned_acceptance_is_reported_once(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    original = log.record_of(accepted)
    log.records[log.records.index(original)] = replace(original, signature=None)
    # Not "unknown_case" for everything that follows it: the fault is the record.
    assert_at(only(log.verify(), MISSING_SIGNATURE), original, accepted)


# -------------------------------------------------- 4. content followed across events


def test_an_outcome_for_another_person_is_a_subject_mismatch(log: LogBuilder) -> None:
    accepted = log.accept("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM)
    log.route(accepted)
    log.decide(accepted.case_id, Approve("HR-1"))
    task = log.tasks[accepted.case_id]
    other = task.model_copy(
        update={
            "applicant": task.applicant.model_copy(update={"ref": legacy_ref("110105194912310037")})
        }
    )
    paid = log.retime(outcome_event("social_security", other, Approve("SS-1")))
    log.publish(dept_outcomes("social_security"), paid)
    closed = CaseClosed(**paid.caused(), producer="router", outcome="approved")
    log.publish(CASES_ROUTING, log.retime(closed))
    violation = only(log.verify(), SUBJECT_MISMATCH)
    assert_at(violation, log.record_of(paid), paid)
    assert "applicant reference" in violation.detail
    assert "110105" not in violation.detail  # the pseudonyms, never the number


def test_a_task_for_another_item_is_a_subject_mismatch(log: LogBuilder) -> None:
    accepted = log.accept("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM)
    events = log.route(accepted)
    task = next(e for e in events if isinstance(e, StepAssigned))
    record = log.record_of(task)
    changed = task.model_copy(update={"item_code": "HR-JOB-REGISTRATION"})
    value = changed.to_json()
    log.records[log.records.index(record)] = replace(
        record, value=value, signature=log.keys.signers["router"].sign(value)
    )
    violation = only(log.verify(), SUBJECT_MISMATCH)
    assert_at(violation, record, task)
    assert "item HR-JOB-REGISTRATION, not SS-UNEMPLOYMENT-BENEFIT" in violation.detail


def test_a_case_closed_before_its_last_decision_is_an_uncaused_close(log: LogBuilder) -> None:
    accepted = log.accept("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM)
    log.route(accepted)
    first = log.decide(accepted.case_id, Approve("HR-1"))  # assigns step 1
    closed = log.retime(CaseClosed(**first.caused(), producer="router", outcome="approved"))
    log.publish(CASES_ROUTING, closed)
    last = log.retime(outcome_event("social_security", log.tasks[accepted.case_id], Approve("S")))
    log.publish(dept_outcomes("social_security"), last)
    violation = only(log.verify(), UNCAUSED_CLOSE)
    assert_at(violation, log.record_of(closed), closed)
    assert "not by the approval of the last step 1" in violation.detail


def test_every_clean_close_follows_its_last_decision(log: LogBuilder) -> None:
    clean_log(log)
    log.waiting_for_info()
    log.approve_all(log.on_spot().case_id)
    assert log.verify().errors() == []


# ------------------------------------------------------------ 6. Kafka's own facts


def placed(records: list[LogRecord], partitions: int = PARTITIONS) -> list[LogRecord]:
    """The records as the services write them: keyed by case id, in the key's partition."""
    offsets: dict[tuple[str, int], int] = {}
    out = []
    for record in records:
        event = decode(record)
        key = str(event.case_id).encode() if event is not None else None
        partition = (murmur2(key) & 0x7FFFFFFF) % partitions if key else 0
        offset = offsets[(record.topic, partition)] = offsets.get((record.topic, partition), -1) + 1
        out.append(replace(record, key=key, partition=partition, offset=offset))
    return out


def verify_placed(log: LogBuilder, records: list[LogRecord]) -> VerifyReport:
    counts = dict.fromkeys({r.topic for r in records}, PARTITIONS)
    saved, log.records = log.records, records
    try:
        return log.verify(partitions=counts)
    finally:
        log.records = saved


def test_a_clean_log_is_placed_right(log: LogBuilder) -> None:
    clean_log(log)
    log.waiting_for_info()
    records = placed(log.records)
    assert verify_placed(log, records).errors() == []


def test_a_record_keyed_by_another_case(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    records = placed(log.records)
    target = next(r for r in records if decode(r) == accepted)
    key = str(uuid4()).encode()
    moved = replace(target, key=key, partition=(murmur2(key) & 0x7FFFFFFF) % PARTITIONS)
    records[records.index(target)] = moved
    violation = only(verify_placed(log, records), WRONG_KEY)
    assert_at(violation, moved, accepted)
    assert f"not by its case id {accepted.case_id}" in violation.detail


def test_a_record_without_a_key(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    records = placed(log.records)
    target = next(r for r in records if decode(r) == accepted)
    records[records.index(target)] = replace(target, key=None)
    assert "has no key" in only(verify_placed(log, records), WRONG_KEY).detail


def test_a_record_in_a_partition_its_key_does_not_map_to(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    records = placed(log.records)
    closed = log.find(accepted.case_id, CaseClosed)
    target = next(r for r in records if decode(r) == closed)
    moved = replace(target, partition=(target.partition + 1) % PARTITIONS, offset=99)
    records[records.index(target)] = moved
    violation = only(verify_placed(log, records), WRONG_PARTITION)
    assert_at(violation, moved, closed)
    assert f"maps to partition {target.partition} of {PARTITIONS}" in violation.detail


def test_a_malformed_record_keeps_the_case_its_key_names(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    key = str(accepted.case_id).encode()
    home = (murmur2(key) & 0x7FFFFFFF) % PARTITIONS
    junk = LogRecord(CASES_ROUTING, home, 500, b"\x00 not an event", None, None, key)
    records = [*placed(log.records), junk]
    violation = only(verify_placed(log, records), MALFORMED_RECORD)
    assert violation.case_id == accepted.case_id
    assert (violation.topic, violation.partition, violation.offset) == (CASES_ROUTING, home, 500)


def test_case_of_key_takes_only_the_services_spelling() -> None:
    case = uuid4()
    assert case_of_key(str(case).encode()) == case
    assert case_of_key(str(case).upper().encode()) is None
    assert case_of_key(case.hex.encode()) is None
    assert case_of_key(None) is None
    assert case_of_key(b"\xff" * 36) is None
    assert isinstance(case_of_key(str(UUID(int=1)).encode()), UUID)


# ------------------------------------------------------------------------------ 5. time


def test_a_clean_log_stamped_by_kafka_keeps_time(log: LogBuilder) -> None:
    clean_log(log)
    log.waiting_for_info()
    stamped = [_stamped(r, seconds=0.01) for r in log.records]
    assert _verify(log, stamped).errors() == []


def _stamped(record: LogRecord, seconds: float) -> LogRecord:
    """The record as Kafka logged it ``seconds`` after the event's own date."""
    event = decode(record)
    assert event is not None
    return replace(record, timestamp=int((event.occurred_at.timestamp() + seconds) * 1000))


def test_a_close_dated_before_its_cause_is_clock_skew(log: LogBuilder) -> None:
    accepted = log.benefit_rejected()
    rejected = log.find(accepted.case_id, StepRejected)
    closed = log.find(accepted.case_id, CaseClosed)
    record = log.record_of(closed)
    early = closed.model_copy(update={"occurred_at": rejected.occurred_at - timedelta(days=2)})
    value = early.to_json()
    log.records[log.records.index(record)] = replace(
        record, value=value, signature=log.keys.signers["router"].sign(value)
    )
    violation = only(log.verify(), CLOCK_SKEW)
    assert_at(violation, record, closed)
    assert f"before its cause StepRejected {rejected.event_id}" in violation.detail


def test_an_event_dated_after_kafka_logged_it_is_clock_skew(log: LogBuilder) -> None:
    accepted = log.benefit_approved()
    record = log.record_of(accepted)
    log.records = [_stamped(r, seconds=0.01) for r in log.records]
    index = next(
        i
        for i, r in enumerate(log.records)
        if r.offset == record.offset and r.topic == record.topic
    )
    log.records[index] = _stamped(record, seconds=-3 * 86400)  # dated 3 days ahead
    violation = only(log.verify(), CLOCK_SKEW)
    assert_at(violation, record, accepted)
    assert "after Kafka logged it" in violation.detail
    # Within the allowed skew it is no fault.
    log.records[index] = _stamped(record, seconds=-60)
    assert log.verify().errors() == []
    assert log.verify(timing=Timing(skew=timedelta(seconds=30))).by_kind() == {CLOCK_SKEW: 1}


def test_a_case_closed_after_its_promise_is_a_late_close(log: LogBuilder) -> None:
    accepted = log.accept("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM)
    routed = log.route(accepted)
    promise = next(e for e in routed if isinstance(e, CaseRouted)).promised_by
    log.clock = promise + timedelta(days=1)
    log.decide(accepted.case_id, Reject("already_registered", "m"))
    closed = log.find(accepted.case_id, CaseClosed)
    log.announce_deadlines(log.clock)  # the step's warning and miss, as the service gives them
    violation = only(log.verify(now=log.clock + timedelta(minutes=1)), LATE_CLOSE)
    assert_at(violation, log.record_of(closed), closed)  # not again as a late step


def test_a_case_never_routed_is_stalled(log: LogBuilder) -> None:
    accepted = log.accept("HR-JOB-REGISTRATION", {})
    assert log.verify(now=accepted.occurred_at + timedelta(minutes=14)).errors() == []
    report = log.verify(now=accepted.occurred_at + timedelta(minutes=16))
    assert_at(only(report, STALLED_CASE), log.record_of(accepted), accepted)
    patient = Timing(stall_after=timedelta(hours=1))
    assert (
        log.verify(now=accepted.occurred_at + timedelta(minutes=16), timing=patient).errors() == []
    )


def test_an_approval_the_router_never_followed_is_stalled(log: LogBuilder) -> None:
    accepted = log.accept("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM)
    log.route(accepted)
    task = log.tasks[accepted.case_id]
    approval = log.retime(outcome_event(task.department, task, Approve("HR-1")))
    log.publish(dept_outcomes(task.department), approval)  # the router never reacts
    violation = only(log.verify(now=log.clock + timedelta(hours=1)), STALLED_CASE)
    assert_at(violation, log.record_of(approval), approval)
    assert "step 1 never assigned" in violation.detail


def test_a_review_undecided_past_its_due_date_is_a_step_overdue(log: LogBuilder) -> None:
    accepted = log.accept("HR-EMPLOYMENT-REGISTRATION", EMPLOYMENT_FORM)
    log.route(accepted)  # closed on the spot; the review is due in REVIEW_DAYS
    task = log.tasks[accepted.case_id]
    log.announce_deadlines(task.due_by - timedelta(hours=1))  # the review's warning
    assert log.verify(now=task.due_by - timedelta(hours=1)).errors() == []
    log.announce_deadlines(task.due_by)  # its miss
    violation = only(log.verify(now=task.due_by + timedelta(hours=1)), STEP_OVERDUE)
    assert_at(violation, log.record_of(task), task)
    # Decided late: the outcome is the late one.
    log.clock = task.due_by + timedelta(days=1)
    outcome = log.decide(accepted.case_id, Approve("HR-ER-1"))
    violation = only(log.verify(now=log.clock + timedelta(hours=1)), STEP_OVERDUE)
    assert_at(violation, log.record_of(outcome), outcome)


# ------------------------------------------------- 7. history judged by its own keys


def test_a_key_rotation_keeps_history_and_retires_the_old_key(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    for service in SERVICES:
        generate(tmp_path, service, now=T0 - timedelta(days=30))
    old = {s: signer_for(tmp_path, s) for s in SERVICES}
    rotation = T0 + timedelta(hours=1)
    generate(tmp_path, "router", rotate=True, grace=timedelta(0), now=rotation)
    new = {**old, "router": signer_for(tmp_path, "router")}
    public = PublicKeys.load(tmp_path)
    log = LogBuilder(catalogue, Keys(old, public))
    before = log.benefit_approved()  # signed by the old router key, before the rotation
    log.clock = rotation + timedelta(minutes=1)
    log.keys = Keys(new, public)
    after = log.benefit_approved()
    assert log.verify().errors() == []  # honest history on both sides of the rotation
    # The retired key signs after its end: the record fails, and counts for nothing.
    closed = log.find(after.case_id, CaseClosed)
    record = log.record_of(closed)
    log.records[log.records.index(record)] = replace(
        record, signature=old["router"].sign(record.value)
    )
    violation = only(log.verify(), KEY_NOT_VALID)
    assert_at(violation, record, closed)
    assert "not valid at" in violation.detail
    assert before.case_id not in {v.case_id for v in log.verify().violations}


# --------------------------------------------- 7. history judged by its own catalogue


def test_todays_catalogue_is_kept_among_the_published_ones(catalogue: Catalogue) -> None:
    kept = archived([ARCHIVE_DIR])
    assert catalogue.version in kept, (
        f"catalogue {catalogue.version} is not archived: run python -m services.audit.catalogues"
        " and commit the file it writes"
    )
    assert kept[catalogue.version] == catalogue


def _last_year(catalogue: Catalogue, **changes: object) -> Catalogue:
    item = catalogue.items["SS-UNEMPLOYMENT-BENEFIT"]
    items = {**catalogue.items, item.code: item.model_copy(update=changes)}
    return Catalogue.build("2025.11.1", items.values())


def test_a_case_routed_by_an_older_published_catalogue_is_judged_by_it(
    log: LogBuilder, catalogue: Catalogue, tmp_path: Path
) -> None:
    older = _last_year(catalogue, steps=catalogue.items["SS-UNEMPLOYMENT-BENEFIT"].steps[:1])
    clean_log(log)
    log.catalogue = older
    accepted = log.accept("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM)
    log.route(accepted)  # a one-step slip then
    log.approve_all(accepted.case_id)
    log.catalogue = catalogue
    archive(older, tmp_path)
    published = published_catalogues(catalogue, tmp_path)
    assert set(published) == {older.version, catalogue.version}
    report = log.verify(published=published)
    assert report.errors() == []  # honest history, by the rules it was routed under
    # Today's catalogue alone would call it a mismatch; a version never published is one.
    routed = log.find(accepted.case_id, CaseRouted)
    violation = only(log.verify(), CATALOGUE_MISMATCH, flagged=1)
    assert_at(violation, log.record_of(routed), routed)
    assert f"{older.version}, which was never published" in violation.detail


def test_a_slip_that_is_not_its_own_versions_is_a_catalogue_mismatch(
    log: LogBuilder, catalogue: Catalogue
) -> None:
    older = _last_year(catalogue, promised_days=20)
    log.catalogue = older
    accepted = log.accept("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM)
    log.catalogue = catalogue  # routed by today's rules, but naming last year's version
    log.route(accepted)
    routed = log.find(accepted.case_id, CaseRouted)
    record = log.record_of(routed)
    stale = routed.model_copy(update={"catalogue_version": older.version})
    value = stale.to_json()
    log.records[log.records.index(record)] = replace(
        record, value=value, signature=log.keys.signers["router"].sign(value)
    )
    published = {older.version: older, catalogue.version: catalogue}
    violation = only(log.verify(published=published), CATALOGUE_MISMATCH)
    assert "the catalogue promises" in violation.detail
