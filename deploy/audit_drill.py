"""``make audit-drill``: a fire drill for auditors.

Writes, into a fresh topic namespace on the running stack, a few clean cases and one
fault of every kind that ``onedoor-audit verify`` checks (as a buggy or malicious
producer would write it, signed with the drill's own keys), runs verify over that
namespace, and shows, fault by fault, that each one was found where it was injected and
that nothing else was reported. Exit code 0 only when that is so.

The same faults drive the integration tests (tests/integration/test_audit_verify.py).
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import sys
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple
from uuid import UUID, uuid4

import nacl.signing
from pydantic import SecretStr
from rich.console import Console
from rich.table import Table

from deploy import kafka_security
from deploy import stack as local_stack
from deploy.audit_drill_store import audit_stores_the_log, store_faults
from services.audit.verifier.report import VerifyReport
from services.audit.verifier.run import verify_log
from services.audit.verifier.signatures import allowed_signer
from services.catalogue import default_catalogue
from services.deadlines.domain import owed_notices
from services.intake.subject_keys import sealed_applicant
from services.router.domain import on_outcome as router_on_outcome
from services.router.domain import route
from shared.contracts.access import Accessor
from shared.contracts.catalogue import Catalogue
from shared.contracts.events import (
    Applicant,
    CaseAccepted,
    CaseAwaitingInfo,
    CaseClosed,
    CaseRouted,
    DeadlineMissed,
    DeadlineNotice,
    DeadlineWarning,
    Event,
    PersonalDataAccessed,
    PersonErased,
    StepAssigned,
    StepOutcome,
    utcnow,
)
from shared.contracts.identity import make_resident_id
from shared.contracts.sealing import CentreSecret, new_data_key
from shared.contracts.topology import (
    ACCESS_AUDIT,
    ACCESS_INTAKE,
    CASES_ACCEPTED,
    CASES_DEADLINES,
    CASES_ROUTING,
    PRIVACY_ERASURES,
    all_topics,
    dept_outcomes,
    dept_tasks,
)
from shared.department.adapter import outcome_event
from shared.department.decisions import Approve, Decision, NeedsInfo, Reject
from shared.messaging.access import access_event
from shared.messaging.kafka import make_producer, murmur2
from shared.messaging.keyring import KeyEntry, generate, read_registry, write_registry
from shared.messaging.signing import Signer
from shared.messaging.topics import delete_topics_with_prefix, ensure_topics
from shared.platform.db import create_database, drop_database
from shared.platform.settings import Settings, get_settings

SIGNERS = ("intake", "router", "hr_registration", "social_security", "audit", "deadlines")
BENEFIT_FORM = {
    "last_employer": "X Co.",
    "separation_date": "2026-09-30",
    "insured_months": 30,
    "education": "college",
    "desired_occupation": "cook",
}
DRILL_SECRET = CentreSecret(os.urandom(32))  # the drill's own pseudonyms
_serial = iter(range(1, 1_000_000))


class _Raw(NamedTuple):
    topic: str
    value: bytes
    headers: list[tuple[str, bytes]]
    key: bytes | None
    partition: int | None


@dataclass
class LogWriter:
    """Collects records for the real topics, each signed as its topic's producer unless
    told otherwise, and sends them in one go."""

    settings: Settings
    signers: dict[str, Signer]
    sent: list[tuple[str, Event]] = field(default_factory=list)
    signer_for: dict[UUID, str | None] = field(default_factory=dict)
    raw: list[_Raw] = field(default_factory=list)

    @classmethod
    def create(cls, settings: Settings) -> LogWriter:
        for service in SIGNERS:
            generate(settings.keys_dir, service)
        # The drill writes cases up to 60 days old, signed as they were then: its keys
        # (a test's, made a moment ago) count as valid since a year back.
        registry = settings.registry_path()
        entries = read_registry(registry)
        since = utcnow() - timedelta(days=365)
        for service in SIGNERS:
            entries[service] = [
                replace(e, valid_from=min(e.valid_from, since)) if e.valid_until is None else e
                for e in entries[service]
            ]
        write_registry(registry, entries)
        return cls(settings, {s: Signer.load(settings.keys_dir, s) for s in SIGNERS})

    def add(self, topic: str, event: Event) -> Event:
        self.sent.append((topic, event))
        return event

    def sign_as(self, event_id: UUID, signer: str | None) -> None:
        """Sign this event as another service (None: leave it unsigned)."""
        self.signer_for[event_id] = signer

    def add_raw(
        self,
        topic: str,
        value: bytes,
        headers: Sequence[tuple[str, bytes]] = (),
        *,
        key: bytes | None = None,
        partition: int | None = None,
    ) -> None:
        """Exactly these bytes; keyed like the services' records when given the case id's
        ``key``, into ``partition`` when named, and else wherever the producer puts them."""
        self.raw.append(_Raw(topic, value, list(headers), key, partition))

    def drop(self, event_id: UUID) -> None:
        self.sent = [(t, e) for t, e in self.sent if e.event_id != event_id]

    def headers(self, topic: str, event: Event, value: bytes) -> list[tuple[str, bytes]]:
        signer = self.signer_for.get(event.event_id, allowed_signer(topic))
        if signer is None:
            return []
        return [(k, v.encode()) for k, v in self.signers[signer].headers(value)]

    async def flush(self) -> None:
        await ensure_topics(self.settings, all_topics(("hr_registration", "social_security")))
        producer = make_producer(self.settings)
        await producer.start()
        try:
            futures = []
            for topic, event in self.sent:
                value = event.to_json()
                futures.append(
                    await producer.send(
                        self.settings.topic(topic),
                        value,
                        key=str(event.case_id).encode(),
                        headers=self.headers(topic, event, value),
                    )
                )
            for raw in self.raw:
                sent = await producer.send(
                    self.settings.topic(raw.topic),
                    raw.value,
                    key=raw.key,
                    partition=raw.partition,
                    headers=raw.headers,
                )
                futures.append(sent)
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        self.sent.clear()
        self.raw.clear()


def accepted(
    item: str, form: dict[str, Any], *, at: datetime | None = None, key_id: UUID | None = None
) -> CaseAccepted:
    n = next(_serial)
    eid = uuid4()
    rid = make_resident_id("110105", date(1980, 1, 1 + n % 28), n % 1000)
    case_id = uuid4()
    who = Applicant(kind="natural", name="Wu Lei", id_number=rid, phone="13612345678")
    ref = DRILL_SECRET.subject_ref(rid)
    return CaseAccepted(
        event_id=eid,
        case_id=case_id,
        correlation_id=eid,
        producer="intake",
        occurred_at=at or utcnow(),
        item_code=item,
        # Sealed as intake seals, under a throw-away key: the audit never opens them.
        applicant=sealed_applicant(who, ref, (key_id or uuid4(), new_data_key()), case_id),
        community_code="110105001001",
        form=form,
        centre_id="C01",
        window_id="W01",
        channel="window",
        receipt_no=f"C01-20261127-{n:06d}",
    )


@dataclass
class Flow:
    """One case written as the real router and departments would write it."""

    log: LogWriter
    catalogue: Catalogue
    accepted: CaseAccepted
    state: Any = None
    events: list[Event] = field(default_factory=list)

    @property
    def case_id(self) -> UUID:
        return self.accepted.case_id

    def emit(self, emits: list[tuple[str, Event]]) -> None:
        for topic, event in emits:
            self.log.add(topic, event)
            self.events.append(event)

    def start(self) -> Flow:
        self.emit([(CASES_ACCEPTED, self.accepted)])
        self.state, emits = route(self.accepted, self.catalogue, self.accepted.occurred_at)
        self.emit(emits)
        return self

    def task(self) -> StepAssigned:
        return [e for e in self.events if isinstance(e, StepAssigned)][-1]

    def last(self, cls: type[Event]) -> Any:
        return [e for e in self.events if isinstance(e, cls)][-1]

    def read(self, who: Accessor, reason: str | None, *, topic: str) -> PersonalDataAccessed:
        """``who`` reads the case through the service that writes ``topic``."""
        service = "audit" if topic == ACCESS_AUDIT else "intake"
        read = access_event(
            service,
            who,
            self.case_id,
            fields=("status", "receipt_no", "item_code"),
            reason=reason,
            channel="http",
            resource="GET /cases/{case_id}",
        )
        self.emit([(topic, read)])
        return read

    def decide(self, decision: Decision, *, route_it: bool = True) -> StepOutcome:
        task = self.task()
        outcome = outcome_event(task.department, task, decision)
        self.emit([(dept_outcomes(task.department), outcome)])
        if route_it:
            self.state, emits = router_on_outcome(self.state, outcome, outcome.occurred_at)
            self.emit(emits)
        return outcome


def awaiting_info(outcome: StepOutcome | StepAssigned, **changes: Any) -> CaseAwaitingInfo:
    """The router's CaseAwaitingInfo for a department's StepNeedsInfo (or, with
    ``changes``, a wait that is wrong in those fields)."""
    fields: dict[str, Any] = {
        **outcome.caused(),
        "producer": "router",
        "step_index": outcome.step_index,
        "department": outcome.department,
        "missing": getattr(outcome, "missing", ("separation_letter",)),
        "message": getattr(outcome, "message", "bring the letter"),
    }
    return CaseAwaitingInfo(**(fields | changes))


def flow(
    log: LogWriter,
    catalogue: Catalogue,
    item: str = "SS-UNEMPLOYMENT-BENEFIT",
    form: dict[str, Any] | None = None,
    at: datetime | None = None,
) -> Flow:
    body = BENEFIT_FORM if form is None and item == "SS-UNEMPLOYMENT-BENEFIT" else form or {}
    return Flow(log, catalogue, accepted(item, body, at=at)).start()


CLERK = Accessor("clerk-c01-w01", "clerk", "C01")
AUDITOR = Accessor("auditor-1", "auditor")


def clean_cases(log: LogWriter, catalogue: Catalogue) -> None:
    """An approved two-step case, a rejected one, an unroutable one and one that waits
    for the applicant's information; read by its centre's clerk, and by an auditor who
    says why, at intake and through the audit."""
    approved = flow(log, catalogue)
    approved.decide(Approve("HR-1"))
    approved.read(CLERK, None, topic=ACCESS_INTAKE)
    approved.decide(Approve("SS-1"))
    approved.read(AUDITOR, "complaint 2026-118", topic=ACCESS_AUDIT)
    flow(log, catalogue).decide(Reject("already_registered", "registered already"))
    flow(log, catalogue, "NO-SUCH-ITEM")
    waiting = flow(log, catalogue)
    waiting.decide(NeedsInfo(("separation_letter",), "bring the letter"))
    waiting.read(AUDITOR, "yearly sample", topic=ACCESS_INTAKE)


@dataclass(frozen=True)
class Expected:
    """Where a fault must be found: its kind, case and (when it has one) event."""

    kind: str
    case_id: UUID | None
    event_id: UUID | None
    severity: str = "error"
    also: tuple[str, ...] = ()  # kinds the same bad record is also reported as
    # Kinds the same case shows at other records, as its scenario must (a deadline
    # missed is also a case past its promise).
    elsewhere: tuple[str, ...] = ()


Fault = Callable[[LogWriter, Catalogue], Expected]


def duplicate_event_conflict(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue)
    outcome = case.decide(Approve("HR-1"))
    log.add(dept_outcomes(outcome.department), outcome.model_copy(update={"reference": "X"}))
    return Expected("duplicate_event_conflict", case.case_id, outcome.event_id)


def unknown_case(log: LogWriter, catalogue: Catalogue) -> Expected:
    ghost = uuid4()
    log.add(
        CASES_ROUTING,
        CaseClosed(case_id=ghost, correlation_id=ghost, producer="router", outcome="approved"),
    )
    return Expected("unknown_case", ghost, None)


def catalogue_mismatch(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(
        log, catalogue, "HR-JOB-REGISTRATION", {"education": "a", "desired_occupation": "b"}
    )
    routed = case.last(CaseRouted)
    log.drop(routed.event_id)
    stale = routed.model_copy(update={"catalogue_version": "2020.1.1+000000000000"})
    log.add(CASES_ROUTING, stale)
    case.decide(Approve("HR-1"))
    return Expected("catalogue_mismatch", case.case_id, stale.event_id)


def step_out_of_order(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue)
    first = case.task()
    early = StepAssigned(
        **first.model_dump(
            exclude={"event_id", "step_index", "department", "action", "follows_department"}
        ),
        step_index=1,
        department="social_security",
        action="benefit_claim",
    )
    log.add(dept_tasks("social_security"), early)
    case.decide(Reject("already_registered", "m"))
    return Expected("step_out_of_order", case.case_id, early.event_id)


def unassigned_outcome(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue)
    elsewhere = case.task().model_copy(update={"department": "social_security"})
    stray = outcome_event("social_security", elsewhere, Approve("X"))
    log.add(dept_outcomes("social_security"), stray)
    case.decide(Reject("already_registered", "m"))
    return Expected("unassigned_outcome", case.case_id, stray.event_id)


def duplicate_outcome(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue)
    case.decide(Reject("already_registered", "m"))
    second = outcome_event("hr_registration", case.task(), Reject("already_registered", "again"))
    log.add(dept_outcomes("hr_registration"), second)
    return Expected("duplicate_outcome", case.case_id, second.event_id)


def unexplained_wait(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue)
    # The router says the case waits for information no department asked for.
    wait = awaiting_info(case.task(), producer="router", missing=("separation_letter",))
    log.add(CASES_ROUTING, wait)
    return Expected("unexplained_wait", case.case_id, wait.event_id)


def closed_twice(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue)
    case.decide(Reject("already_registered", "m"))
    first = case.last(CaseClosed)
    # A second close, written a moment after the first (the later one is the violation).
    later = first.occurred_at + timedelta(seconds=1)
    again = first.model_copy(update={"event_id": uuid4(), "occurred_at": later})
    log.add(CASES_ROUTING, again)
    return Expected("closed_twice", case.case_id, again.event_id)


def inconsistent_close(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue)
    outcome = case.decide(Approve("HR-1"), route_it=False)
    closed = CaseClosed(**outcome.caused(), producer="router", outcome="approved")
    log.add(CASES_ROUTING, closed)
    return Expected("inconsistent_close", case.case_id, closed.event_id)


def review_failed(log: LogWriter, catalogue: Catalogue) -> Expected:
    form = {"employer_name": "X", "employment_start_date": "2026-11-01"}
    case = flow(log, catalogue, "HR-EMPLOYMENT-REGISTRATION", form)
    outcome = case.decide(Reject("not_employed", "the employer denies it"))
    return Expected("review_failed", case.case_id, outcome.event_id, severity="flag")


def overdue(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue, at=datetime.now(UTC) - timedelta(days=60))
    return Expected("overdue", case.case_id, case.accepted.event_id)


def missing_signature(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue)
    outcome = case.decide(Reject("already_registered", "m"))
    log.sign_as(outcome.event_id, None)
    return Expected("missing_signature", case.case_id, outcome.event_id)


def bad_signature(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue)
    outcome = case.decide(Reject("already_registered", "m"))
    log.drop(outcome.event_id)
    value = outcome.to_json()
    signed_other_bytes = log.signers["hr_registration"].headers(value + b" ")
    log.add_raw(
        dept_outcomes("hr_registration"),
        value,
        [(k, v.encode()) for k, v in signed_other_bytes],
        key=str(case.case_id).encode(),
    )
    return Expected("bad_signature", case.case_id, outcome.event_id)


def wrong_signer(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue)
    outcome = case.decide(Reject("already_registered", "m"))
    log.sign_as(outcome.event_id, "social_security")
    return Expected("wrong_signer", case.case_id, outcome.event_id)


def access_without_reason(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue)
    case.decide(Reject("already_registered", "m"))
    # An auditor's read recorded without the reason every auditor owes.
    read = case.read(AUDITOR, None, topic=ACCESS_AUDIT)
    return Expected("access_without_reason", case.case_id, read.event_id)


def access_by_wrong_role(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue)
    case.decide(Reject("already_registered", "m"))
    # Intake showed a C01 case to a clerk of C02 (who even said why): a broken door.
    other_clerk = Accessor("clerk-c02-w01", "clerk", "C02")
    read = case.read(other_clerk, "asked by phone", topic=ACCESS_INTAKE)
    return Expected("access_by_wrong_role", case.case_id, read.event_id)


def malformed_record(log: LogWriter, catalogue: Catalogue) -> Expected:
    log.add_raw(CASES_ROUTING, b"\x00 not an event")
    return Expected("malformed_record", None, None)


# Every kind verify finds in the Kafka log. (broken_hash_chain lives in the audit store;
# tests/integration/test_audit_store.py tampers with a stored row to prove it. The
# store's faults against the log are drill_store's: see ``drill``.)
FAULTS: dict[str, Fault] = {
    fault.__name__: fault
    for fault in (
        duplicate_event_conflict,
        unknown_case,
        catalogue_mismatch,
        step_out_of_order,
        unassigned_outcome,
        duplicate_outcome,
        unexplained_wait,
        closed_twice,
        inconsistent_close,
        review_failed,
        overdue,
        missing_signature,
        bad_signature,
        wrong_signer,
        access_without_reason,
        access_by_wrong_role,
        malformed_record,
    )
}


# ----------------------------------------------------------------- issue 19: audit proof
# What a dishonest insider (holding a real service key) or a subtle bug would write.


def event_on_two_topics(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue)
    task = case.task()  # hr_registration's step 0, copied byte for byte to another topic
    value = task.to_json()
    log.add_raw(
        dept_tasks("social_security"),
        value,
        log.headers(dept_tasks("hr_registration"), task, value),
        key=str(case.case_id).encode(),
    )
    case.decide(Reject("already_registered", "m"))
    return Expected("event_on_two_topics", case.case_id, task.event_id)


def forged_copy(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue)
    outcome = case.decide(Approve("HR-1"))
    case.decide(Approve("SS-1"))
    # The genuine signature over other bytes: the approval's reference rewritten.
    topic = dept_outcomes(outcome.department)
    headers = log.headers(topic, outcome, outcome.to_json())
    forged = outcome.model_copy(update={"reference": "FORGED"}).to_json()
    log.add_raw(topic, forged, headers, key=str(case.case_id).encode())
    return Expected("forged_copy", case.case_id, outcome.event_id, also=("bad_signature",))


def subject_mismatch(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue)
    case.decide(Approve("HR-1"))
    task = case.task()
    stranger = make_resident_id("110105", date(1979, 5, 5), 999)
    other = task.model_copy(
        update={
            "applicant": task.applicant.model_copy(
                update={"ref": DRILL_SECRET.subject_ref(stranger)}
            )
        }
    )
    # The benefit paid to someone else, on the genuine case's slip; the router closes it.
    paid = outcome_event("social_security", other, Approve("SS-1"))
    case.emit([(dept_outcomes("social_security"), paid)])
    case.state, emits = router_on_outcome(case.state, paid, paid.occurred_at)
    case.emit(emits)
    return Expected("subject_mismatch", case.case_id, paid.event_id)


def uncaused_close(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue)
    first = case.decide(Approve("HR-1"))  # the router assigns step 1
    closed = CaseClosed(**first.caused(), producer="router", outcome="approved")
    log.add(CASES_ROUTING, closed)
    case.decide(Approve("SS-1"), route_it=False)  # the last decision, after the close
    return Expected("uncaused_close", case.case_id, closed.event_id)


def wrong_key(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue)
    case.decide(Reject("already_registered", "m"))
    routed = case.last(CaseRouted)
    log.drop(routed.event_id)
    value = routed.to_json()
    # Keyed by another case id: the producer puts it in that key's partition.
    headers = log.headers(CASES_ROUTING, routed, value)
    log.add_raw(CASES_ROUTING, value, headers, key=str(uuid4()).encode())
    return Expected("wrong_key", case.case_id, routed.event_id)


def wrong_partition(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue)
    case.decide(Reject("already_registered", "m"))
    closed = case.last(CaseClosed)
    log.drop(closed.event_id)
    key = str(case.case_id).encode()
    count = log.settings.topic_partitions
    home = (murmur2(key) & 0x7FFFFFFF) % count
    value = closed.to_json()
    log.add_raw(
        CASES_ROUTING,
        value,
        log.headers(CASES_ROUTING, closed, value),
        key=key,
        partition=(home + 1) % count,
    )
    return Expected("wrong_partition", case.case_id, closed.event_id)


def clock_skew(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue)
    outcome = case.decide(Reject("already_registered", "m"), route_it=False)
    # The router's clock two days behind: the close is dated before the rejection.
    closed = CaseClosed(
        **outcome.caused(),
        producer="router",
        outcome="rejected",
        reason_code="already_registered",
        department=outcome.department,
        occurred_at=outcome.occurred_at - timedelta(days=2),
    )
    log.add(CASES_ROUTING, closed)
    return Expected("clock_skew", case.case_id, closed.event_id)


def late_close(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue, at=datetime.now(UTC) - timedelta(days=60))
    case.decide(Reject("already_registered", "m"))
    return Expected("late_close", case.case_id, case.last(CaseClosed).event_id)


def stalled_case(log: LogWriter, catalogue: Catalogue) -> Expected:
    # Accepted an hour ago (well within its promise) and never routed.
    lost = accepted("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM, at=utcnow() - timedelta(hours=1))
    log.add(CASES_ACCEPTED, lost)
    return Expected("stalled_case", lost.case_id, lost.event_id)


def step_overdue(log: LogWriter, catalogue: Catalogue) -> Expected:
    form = {"employer_name": "X", "employment_start_date": "2026-11-01"}
    at = datetime.now(UTC) - timedelta(days=10)
    case = flow(log, catalogue, "HR-EMPLOYMENT-REGISTRATION", form, at=at)
    # Settled on the spot ten days ago; the review, due in five, never came.
    return Expected("step_overdue", case.case_id, case.task().event_id)


def key_not_valid(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = flow(log, catalogue)
    case.decide(Reject("already_registered", "m"))
    closed = case.last(CaseClosed)
    log.drop(closed.event_id)
    # A router key retired 300 days ago (still in the registry, for the history it
    # signed) signs today's close.
    retired = Signer("router", nacl.signing.SigningKey.generate())
    registry = log.settings.registry_path()
    entries = read_registry(registry)
    now = utcnow()
    entries["router"].append(
        KeyEntry(retired.public_key(), now - timedelta(days=400), now - timedelta(days=300))
    )
    write_registry(registry, entries)
    value = closed.to_json()
    headers = [(k, v.encode()) for k, v in retired.headers(value)]
    log.add_raw(CASES_ROUTING, value, headers, key=str(case.case_id).encode())
    return Expected("key_not_valid", case.case_id, closed.event_id)


def sealed_under_erased_key(log: LogWriter, catalogue: Catalogue) -> Expected:
    nil, erased_at = UUID(int=0), utcnow() - timedelta(hours=2)

    def erasure(key_id: UUID) -> PersonErased:
        return PersonErased(
            case_id=nil,
            correlation_id=nil,
            producer="intake",
            occurred_at=erased_at,
            subject_ref=DRILL_SECRET.subject_ref(str(key_id)),
            key_ids=(key_id,),
            erased_by="admin-1",
            reason="drill: request 2026-1",
        )

    # A clean erasure (nothing sealed under its key afterwards) is no violation.
    log.add(PRIVACY_ERASURES, erasure(uuid4()))
    # An erased key sealing a case accepted after the erasure: the key survived.
    key_id = uuid4()
    log.add(PRIVACY_ERASURES, erasure(key_id))
    case = Flow(log, catalogue, accepted("SS-UNEMPLOYMENT-BENEFIT", BENEFIT_FORM, key_id=key_id))
    case.start().decide(Reject("already_registered", "registered already"))
    return Expected("sealed_under_erased_key", case.case_id, case.accepted.event_id)


FAULTS.update(
    {
        fault.__name__: fault
        for fault in (
            sealed_under_erased_key,
            event_on_two_topics,
            forged_copy,
            subject_mismatch,
            uncaused_close,
            wrong_key,
            wrong_partition,
            clock_skew,
            late_close,
            stalled_case,
            step_overdue,
            key_not_valid,
        )
    }
)


# --------------------------------------------------------------------------- deadlines (issue 20)


def _late(log: LogWriter, catalogue: Catalogue, days: int = 60) -> Flow:
    """A case accepted ``days`` ago whose department never answered."""
    return flow(log, catalogue, at=datetime.now(UTC) - timedelta(days=days))


def _notices(case: Flow) -> list[DeadlineNotice]:
    """What the deadline service gives for this case by now (not yet on the log)."""
    return owed_notices(case.events, utcnow())


def deadline_not_announced(log: LogWriter, catalogue: Catalogue) -> Expected:
    # The deadline service warned, then was down for good: the miss never came.
    case = _late(log, catalogue)
    UNANNOUNCED.add(case.case_id)
    case.emit([(CASES_DEADLINES, n) for n in _notices(case) if isinstance(n, DeadlineWarning)])
    return Expected(
        "deadline_not_announced", case.case_id, case.task().event_id, elsewhere=("overdue",)
    )


def deadline_announced_twice(log: LogWriter, catalogue: Catalogue) -> Expected:
    case = _late(log, catalogue)
    notices = _notices(case)
    missed = next(n for n in notices if isinstance(n, DeadlineMissed))
    later = missed.occurred_at + timedelta(seconds=1)
    again = missed.model_copy(update={"event_id": uuid4(), "occurred_at": later})
    case.emit([(CASES_DEADLINES, n) for n in [*notices, again]])
    return Expected(
        "deadline_announced_twice", case.case_id, again.event_id, elsewhere=("overdue",)
    )


def deadline_announced_early(log: LogWriter, catalogue: Catalogue) -> Expected:
    # Accepted now and warned at once, days before one working day is left.
    case = flow(log, catalogue)
    future = owed_notices(case.events, utcnow() + timedelta(days=400))
    warning = next(n for n in future if isinstance(n, DeadlineWarning))
    early = warning.model_copy(update={"occurred_at": utcnow()})
    case.emit([(CASES_DEADLINES, early)])
    return Expected("deadline_announced_early", case.case_id, early.event_id)


def deadline_announced_wrongly(log: LogWriter, catalogue: Catalogue) -> Expected:
    # Decided at once, well in time, and warned about all the same.
    case = flow(log, catalogue)
    task = case.task()
    case.decide(Reject("already_registered", "m"))
    assert task.warn_at is not None
    wrong = DeadlineWarning(
        **task.caused(),
        producer="deadlines",
        step_index=task.step_index,
        department=task.department,
        review=task.review,
        due_by=task.due_by,
        warn_at=task.warn_at,
    )
    case.emit([(CASES_DEADLINES, wrong)])
    return Expected("deadline_announced_wrongly", case.case_id, wrong.event_id)


UNANNOUNCED: set[UUID] = set()  # cases whose notices the drill's deadline service skips
FAULTS.update(
    {
        fault.__name__: fault
        for fault in (
            deadline_not_announced,
            deadline_announced_twice,
            deadline_announced_early,
            deadline_announced_wrongly,
        )
    }
)


def announce_deadlines(log: LogWriter) -> int:
    """What a working deadline service gives for every late case of the drill (a late
    close, an overdue case...), so that only the deadline faults above go unannounced."""
    events = [e for _, e in log.sent if e.case_id not in UNANNOUNCED]
    notices = owed_notices(events, utcnow())
    for notice in notices:
        log.add(CASES_DEADLINES, notice)
    return len(notices)


def found(report: VerifyReport, expected: Expected) -> bool:
    return any(
        v.kind == expected.kind
        and v.case_id == expected.case_id
        and (expected.event_id is None or v.event_id == expected.event_id)
        and v.severity == expected.severity
        for v in report.violations
    )


async def drill(settings: Settings, console: Console) -> int:
    catalogue = default_catalogue(settings.catalogue_dirs)
    log = LogWriter.create(settings)
    clean_cases(log, catalogue)
    expected = [fault(log, catalogue) for fault in FAULTS.values()]
    # The store's faults (issue 19, class 3): four clean cases, stored by the real audit
    # service, then rewritten in the store by its superuser.
    kept = [flow(log, catalogue) for _ in range(4)]
    for case in kept:
        case.decide(Approve("HR-1"))
        case.decide(Approve("SS-1"))
    announce_deadlines(log)
    await log.flush()
    await audit_stores_the_log(settings)
    expected += [
        Expected(kind, case_id, event_id, also=also)
        for kind, case_id, event_id, also in await store_faults(settings, [c.case_id for c in kept])
    ]
    report = await verify_log(settings)
    seconds = report.seconds
    table = Table(title=f"audit drill on topics {settings.topic_prefix}*")
    for column in ("injected fault", "severity", "case", "found"):
        table.add_column(column)
    for item in expected:
        table.add_row(
            item.kind,
            item.severity,
            str(item.case_id or "-"),
            "yes" if found(report, item) else "NO",
        )
    console.print(table)
    missed = [e for e in expected if not found(report, e)]
    extra = [
        v
        for v in report.violations
        if not any(
            v.kind in (e.kind, *e.also, *e.elsewhere) and v.case_id == e.case_id for e in expected
        )
    ]
    console.print(
        f"verify read {report.records} records ({report.cases} cases) in {seconds:.2f} s: "
        f"{len(report.errors())} violations, {len(report.violations) - len(report.errors())} flags"
    )
    for v in extra:
        console.print(f"[red]unexpected[/] {v.kind} case {v.case_id}: {v.detail}")
    ok = not missed and not extra
    console.print(
        "[green]every injected fault was found, nothing else[/]" if ok else "[red]drill failed[/]"
    )
    return 0 if ok else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="audit-drill", description=__doc__.splitlines()[0])
    parser.parse_args(argv)
    # Fresh topics answer "not leader" for a moment after creation; the producer retries.
    logging.getLogger("aiokafka").setLevel(logging.ERROR)
    cfg = local_stack.StackConfig.from_env()
    base = kafka_security.as_admin(get_settings(), cfg)
    name = f"drill{uuid4().hex[:8]}"
    # A database of its own, as its owner: the drill runs the audit service into it and
    # then tampers with the store as its superuser.
    database_url = asyncio.run(create_database(cfg.admin_dsn(), name))
    with tempfile.TemporaryDirectory(prefix="onedoor-drill-keys-") as keys:
        settings = base.model_copy(
            update={
                "topic_prefix": f"{name}.",
                "keys_dir": Path(keys),
                "database_url": SecretStr(database_url),
                "database_password_file": cfg.superuser_password_file,
            }
        )
        try:
            return asyncio.run(drill(settings, Console()))
        finally:
            # The drill's namespace is throw-away: leave the broker as it was.
            asyncio.run(delete_topics_with_prefix(settings, settings.topic_prefix))
            asyncio.run(drop_database(cfg.admin_dsn(), name))


if __name__ == "__main__":
    sys.exit(main())
