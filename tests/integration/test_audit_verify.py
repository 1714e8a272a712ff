"""onedoor-audit verify against the real broker: for every violation kind, the offending
records are written straight to the Kafka topics (as a buggy or malicious producer
would) and verify must report exactly that violation for that case, and nothing else."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any
from uuid import UUID, uuid4

import pytest

from services.audit.cli import run_verify
from services.router.domain import on_outcome as router_on_outcome
from services.router.domain import route
from shared.adapter import outcome_event
from shared.catalogue import Catalogue, default_catalogue
from shared.decisions import Approve, Reject
from shared.events import (
    Applicant,
    CaseAccepted,
    CaseClosed,
    CaseRouted,
    Event,
    StepAssigned,
    StepOutcome,
    utcnow,
)
from shared.identity import make_resident_id
from shared.kafka import make_producer
from shared.settings import Settings
from shared.signing import Signer, generate_keys
from shared.topics import CASES_ACCEPTED, CASES_ROUTING, all_topics, ensure_topics

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

SERVICES = ("intake", "router", "hr_registration", "social_security", "audit")
BENEFIT_FORM = {
    "last_employer": "X Co.",
    "separation_date": "2026-09-30",
    "insured_months": 30,
    "education": "college",
    "desired_occupation": "cook",
}


@pytest.fixture(scope="module")
def catalogue() -> Catalogue:
    return default_catalogue()


@dataclass
class Log:
    """Writes events to the real topics, signed as a chosen service."""

    settings: Settings
    signers: dict[str, Signer]
    sent: list[tuple[str, Event]] = field(default_factory=list)

    def add(self, topic: str, event: Event) -> Event:
        self.sent.append((topic, event))
        return event

    async def flush(
        self,
        *,
        signer_for: dict[UUID, str] | None = None,
        raw: Sequence[tuple[str, bytes, list[tuple[str, bytes]]]] = (),
    ) -> None:
        """Send what was added, each signed as its topic's producer unless ``signer_for``
        names another signer ("-" for none); then the ``raw`` records as they are."""
        producer = make_producer(self.settings)
        await producer.start()
        try:
            futures = []
            for topic, event in self.sent:
                value = event.to_json()
                signer = (signer_for or {}).get(event.event_id) or _expected_signer(topic)
                headers = (
                    []
                    if signer == "-"
                    else [(k, v.encode()) for k, v in self.signers[signer].headers(value)]
                )
                futures.append(
                    await producer.send(
                        self.settings.topic(topic),
                        value,
                        key=str(event.case_id).encode(),
                        headers=headers,
                    )
                )
            for topic, value, headers in raw:
                futures.append(
                    await producer.send(
                        self.settings.topic(topic), value, key=b"x", headers=headers
                    )
                )
            await asyncio.gather(*futures)
        finally:
            await producer.stop()
        self.sent.clear()


def _expected_signer(topic: str) -> str:
    if topic == CASES_ACCEPTED:
        return "intake"
    if topic.startswith("dept.") and topic.endswith(".outcomes"):
        return topic.split(".")[1]
    return "router"


@pytest.fixture
def log(settings: Settings) -> Log:
    for service in SERVICES:
        generate_keys(settings.keys_dir, service)
    return Log(settings, {s: Signer.load(settings.keys_dir, s) for s in SERVICES})


def accepted(
    item: str, form: dict[str, Any], *, at: datetime | None = None, n: int = 1
) -> CaseAccepted:
    eid = uuid4()
    rid = make_resident_id("110105", date(1980, 1, 1 + n % 28), n)
    return CaseAccepted(
        event_id=eid,
        case_id=uuid4(),
        correlation_id=eid,
        producer="intake",
        occurred_at=at or utcnow(),
        item_code=item,
        applicant=Applicant(kind="natural", name="Wu Lei", id_number=rid, phone="13612345678"),
        community_code="110105001001",
        form=form,
        centre_id="C01",
        window_id="W01",
        channel="window",
        receipt_no=f"C01-20261127-{n:06d}",
    )


@dataclass
class Flow:
    """One case as the real services would write it, step by step."""

    log: Log
    catalogue: Catalogue
    accepted: CaseAccepted
    state: Any = None
    events: list[Event] = field(default_factory=list)

    def emit(self, emits: list[tuple[str, Event]]) -> list[Event]:
        for topic, event in emits:
            self.log.add(topic, event)
            self.events.append(event)
        return [e for _, e in emits]

    def start(self) -> Flow:
        self.log.add(CASES_ACCEPTED, self.accepted)
        self.events.append(self.accepted)
        self.state, emits = route(self.accepted, self.catalogue, self.accepted.occurred_at)
        self.emit(emits)
        return self

    def task(self) -> StepAssigned:
        return [e for e in self.events if isinstance(e, StepAssigned)][-1]

    def decide(self, decision: Approve | Reject, *, route_it: bool = True) -> StepOutcome:
        task = self.task()
        outcome = outcome_event(task.department, task, decision)
        self.log.add(f"dept.{task.department}.outcomes", outcome)
        self.events.append(outcome)
        if route_it:
            self.state, emits = router_on_outcome(self.state, outcome, outcome.occurred_at)
            self.emit(emits)
        return outcome


def flow(log: Log, catalogue: Catalogue, item: str = "SS-UNEMPLOYMENT-BENEFIT", **kw: Any) -> Flow:
    form = BENEFIT_FORM if item == "SS-UNEMPLOYMENT-BENEFIT" else kw.pop("form", {})
    return Flow(log, catalogue, accepted(item, form, **kw)).start()


async def check(settings: Settings) -> tuple[dict[str, int], list[Any]]:
    report, _, _ = await run_verify(settings, check_signatures=True, quiet=True)
    return report.by_kind(), report.violations


@pytest.fixture
async def topics(settings: Settings, catalogue: Catalogue) -> None:
    await ensure_topics(settings, all_topics(catalogue.departments()))


async def test_a_clean_log_has_no_violations(topics: None, log: Log, catalogue: Catalogue) -> None:
    approved = flow(log, catalogue)
    approved.decide(Approve("HR-1"))
    approved.decide(Approve("SS-1"))
    rejected = flow(log, catalogue, n=2)
    rejected.decide(Reject("already_registered", "m"))
    flow(log, catalogue, "NO-SUCH-ITEM", n=3)
    await log.flush()
    by_kind, found = await check(log.settings)
    assert by_kind == {}, found


async def test_duplicate_event_id_with_other_content(
    topics: None, log: Log, catalogue: Catalogue
) -> None:
    case = flow(log, catalogue)
    outcome = case.decide(Approve("HR-1"))
    forged = outcome.model_copy(update={"reference": "HR-FORGED"})
    log.add(f"dept.{outcome.department}.outcomes", forged)
    await log.flush()
    by_kind, found = await check(log.settings)
    assert by_kind == {"duplicate_event_conflict": 1}, found
    assert found[0].event_id == outcome.event_id


async def test_identical_redelivery_is_not_a_violation(
    topics: None, log: Log, catalogue: Catalogue
) -> None:
    case = flow(log, catalogue)
    outcome = case.decide(Reject("already_registered", "m"))
    log.add(f"dept.{outcome.department}.outcomes", outcome)
    await log.flush()
    assert (await check(log.settings))[0] == {}


async def test_event_for_a_case_never_accepted(
    topics: None, log: Log, catalogue: Catalogue
) -> None:
    case = flow(log, catalogue)
    case.decide(Approve("HR-1"))
    case.decide(Approve("SS-1"))
    ghost = uuid4()
    log.add(
        CASES_ROUTING,
        CaseClosed(case_id=ghost, correlation_id=ghost, producer="router", outcome="approved"),
    )
    await log.flush()
    by_kind, found = await check(log.settings)
    assert by_kind == {"unknown_case": 1}, found
    assert found[0].case_id == ghost


async def test_routed_with_a_catalogue_version_that_does_not_match(
    topics: None, log: Log, catalogue: Catalogue
) -> None:
    case = flow(
        log, catalogue, "HR-JOB-REGISTRATION", form={"education": "a", "desired_occupation": "b"}
    )
    routed_at = next(i for i, (_, e) in enumerate(log.sent) if isinstance(e, CaseRouted))
    topic, routed = log.sent[routed_at]
    log.sent[routed_at] = (
        topic,
        routed.model_copy(update={"catalogue_version": "2020.1.1+000000000000"}),
    )
    case.decide(Approve("HR-1"))
    await log.flush()
    by_kind, found = await check(log.settings)
    assert by_kind == {"catalogue_mismatch": 1}, found
    assert found[0].case_id == case.accepted.case_id


async def test_step_assigned_before_the_previous_step_was_approved(
    topics: None, log: Log, catalogue: Catalogue
) -> None:
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
    log.add("dept.social_security.tasks", early)
    case.decide(Reject("already_registered", "m"))
    await log.flush()
    by_kind, found = await check(log.settings)
    assert by_kind == {"step_out_of_order": 1}, found
    assert found[0].event_id == early.event_id


async def test_outcome_from_a_department_that_was_not_assigned(
    topics: None, log: Log, catalogue: Catalogue
) -> None:
    case = flow(log, catalogue)
    task = case.task()
    stray = outcome_event(
        "social_security", task.model_copy(update={"department": "social_security"}), Approve("X")
    )
    log.add("dept.social_security.outcomes", stray)
    case.decide(Reject("already_registered", "m"))
    await log.flush()
    by_kind, found = await check(log.settings)
    assert by_kind == {"unassigned_outcome": 1}, found
    assert found[0].event_id == stray.event_id


async def test_two_outcomes_for_one_step(topics: None, log: Log, catalogue: Catalogue) -> None:
    case = flow(log, catalogue)
    case.decide(Reject("already_registered", "m"))
    second = outcome_event("hr_registration", case.task(), Reject("already_registered", "again"))
    log.add("dept.hr_registration.outcomes", second)
    await log.flush()
    by_kind, found = await check(log.settings)
    assert by_kind == {"duplicate_outcome": 1}, found
    assert found[0].event_id == second.event_id


async def test_a_case_closed_twice(topics: None, log: Log, catalogue: Catalogue) -> None:
    case = flow(log, catalogue)
    case.decide(Reject("already_registered", "m"))
    closed = [e for e in case.events if isinstance(e, CaseClosed)][-1]
    again = closed.model_copy(update={"event_id": uuid4()})
    log.add(CASES_ROUTING, again)
    await log.flush()
    by_kind, found = await check(log.settings)
    assert by_kind == {"closed_twice": 1}, found
    assert found[0].case_id == case.accepted.case_id


async def test_a_close_that_does_not_follow_from_the_outcomes(
    topics: None, log: Log, catalogue: Catalogue
) -> None:
    case = flow(log, catalogue)
    outcome = case.decide(Approve("HR-1"), route_it=False)
    log.add(CASES_ROUTING, CaseClosed(**outcome.caused(), producer="router", outcome="approved"))
    await log.flush()
    by_kind, found = await check(log.settings)
    assert by_kind == {"inconsistent_close": 1}, found
    assert found[0].case_id == case.accepted.case_id


async def test_a_failed_review_is_flagged_not_an_error(
    topics: None, log: Log, catalogue: Catalogue
) -> None:
    form = {"employer_name": "X", "employment_start_date": "2026-11-01"}
    case = flow(log, catalogue, "HR-EMPLOYMENT-REGISTRATION", form=form)
    case.decide(Reject("not_employed", "the employer denies it"))
    await log.flush()
    report, _, _ = await run_verify(log.settings, check_signatures=True, quiet=True)
    assert report.errors() == []
    assert [(v.kind, v.severity, v.case_id) for v in report.violations] == [
        ("review_failed", "flag", case.accepted.case_id)
    ]


async def test_an_open_case_past_its_promised_time(
    topics: None, log: Log, catalogue: Catalogue
) -> None:
    long_ago = datetime.now(UTC) - timedelta(days=60)
    case = flow(log, catalogue, at=long_ago)
    await log.flush()
    by_kind, found = await check(log.settings)
    assert by_kind == {"overdue": 1}, found
    assert found[0].case_id == case.accepted.case_id


async def test_missing_signature(topics: None, log: Log, catalogue: Catalogue) -> None:
    case = flow(log, catalogue)
    outcome = case.decide(Reject("already_registered", "m"))
    await log.flush(signer_for={outcome.event_id: "-"})
    by_kind, found = await check(log.settings)
    assert by_kind == {"missing_signature": 1}, found
    assert found[0].event_id == outcome.event_id


async def test_bad_signature(topics: None, log: Log, catalogue: Catalogue) -> None:
    case = flow(log, catalogue)
    outcome = case.decide(Reject("already_registered", "m"))
    value = outcome.to_json()
    forged = [(k, v.encode()) for k, v in log.signers["hr_registration"].headers(value + b" ")]
    log.sent = [(t, e) for t, e in log.sent if e.event_id != outcome.event_id]
    await log.flush(raw=[("dept.hr_registration.outcomes", value, forged)])
    by_kind, found = await check(log.settings)
    assert by_kind == {"bad_signature": 1}, found
    assert found[0].event_id == outcome.event_id


async def test_outcome_signed_by_another_department(
    topics: None, log: Log, catalogue: Catalogue
) -> None:
    case = flow(log, catalogue)
    outcome = case.decide(Reject("already_registered", "m"))
    await log.flush(signer_for={outcome.event_id: "social_security"})
    by_kind, found = await check(log.settings)
    assert by_kind == {"wrong_signer": 1}, found
    assert found[0].event_id == outcome.event_id


async def test_a_record_that_is_not_an_event(topics: None, log: Log, catalogue: Catalogue) -> None:
    case = flow(log, catalogue)
    case.decide(Reject("already_registered", "m"))
    await log.flush(raw=[(CASES_ROUTING, b"\x00 not an event", [])])
    by_kind, found = await check(log.settings)
    assert by_kind == {"malformed_record": 1}, found
    assert found[0].topic == CASES_ROUTING


def test_every_kind_has_a_test() -> None:
    from services.audit.domain import VIOLATION_KINDS  # noqa: PLC0415

    here = Path(__file__).read_text() + (Path(__file__).parent / "test_audit_store.py").read_text()
    missing = [k for k in VIOLATION_KINDS if f'"{k}"' not in here]
    assert missing == []
    assert json.dumps(sorted(VIOLATION_KINDS))
