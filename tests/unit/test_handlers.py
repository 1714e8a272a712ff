"""The services' handlers through the real consumer engine, on the in-memory store: the
router's slip, a department's decisions and what it learns, intake's status views."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from uuid import uuid4

import pytest

from services.hr_registration.department import department as hr_registration
from services.intake.api import StatusViews
from services.router import domain
from services.router.handlers import RouterHandler
from services.social_security.department import department as social_security
from shared.contracts.catalogue import Catalogue
from shared.contracts.events import (
    CaseAccepted,
    CaseClosed,
    Event,
    StepApproved,
    StepAssigned,
    StepRejected,
    parse_event,
)
from shared.contracts.topology import CASES_ACCEPTED, CASES_ROUTING, dept_outcomes, dept_tasks
from shared.department.adapter import Department
from shared.department.keys import DataKeys
from shared.messaging.consumer import BatchProcessor, Record
from shared.messaging.outbox import OutboxWriter
from shared.messaging.signing import SIGNATURE_HEADER, SIGNER_HEADER
from shared.messaging.testing import MemoryStore
from shared.platform.settings import Settings
from tests.support.builders import (
    BENEFIT_FORM,
    JOB_FORM,
    NOW,
    TEST_KEY,
    TEST_SECRET,
    accepted,
    applicant,
    fixed_key_id,
    outcome,
)
from tests.support.fakes import IntakeTables, RouterTables, SubjectTables
from tests.support.signed import registry, signed, signer

pytestmark = pytest.mark.unit

SETTINGS = Settings(topic_prefix="unit.")
HR = "hr_registration"
SS = "social_security"


def sent(store: MemoryStore, since: int = 0) -> list[tuple[str, Event]]:
    """(topic, event) of each outbox row from ``since`` on."""
    return [(row.topic, parse_event(row.value)) for row in store.outbox[since:]]


def kinds(rows: list[tuple[str, Event]]) -> list[tuple[str, str]]:
    return [(topic, event.event_type) for topic, event in rows]


def on(topic: str, event: Event, offset: int = 0) -> Record:
    return signed(SETTINGS.topic(topic), event, prefix=SETTINGS.topic_prefix, offset=offset)


def writer(tmp_path: Path, service: str) -> OutboxWriter:
    return OutboxWriter(signer(service))


def held_keys(store: MemoryStore) -> DataKeys:
    """The data keys of every person builders seal (all share TEST_KEY), held by hand."""
    keys = DataKeys(TEST_SECRET, float("inf"))
    for n in range(64):
        ref = TEST_SECRET.subject_ref(applicant(n).id_number)
        keys.remember(ref, fixed_key_id(ref), TEST_KEY)
    return keys


def department_processor(
    department: Department, store: MemoryStore, tmp_path: Path
) -> BatchProcessor:
    """Wired as the SDK wires it (shared.department.adapter.create_service)."""
    return BatchProcessor(
        SETTINGS,
        store,
        writer(tmp_path, department.name),
        department.handler(held_keys(store)),
        consumer_name=department.name,
        keys=registry(),
        first_topics=[dept_outcomes(d) for d in department.learners],
    )


def router_processor(catalogue: Catalogue, store: MemoryStore, tmp_path: Path) -> BatchProcessor:
    """Wired as services.router.main wires it."""
    return BatchProcessor(
        SETTINGS,
        store,
        writer(tmp_path, "router"),
        RouterHandler(catalogue),
        consumer_name="r",
        keys=registry(),
    )


async def test_router_drives_a_two_step_slip_to_the_close(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    store = MemoryStore(RouterTables())
    router = router_processor(catalogue, store, tmp_path)
    case = accepted("SS-UNEMPLOYMENT-BENEFIT", applicant(1), BENEFIT_FORM)

    result = await router.process([on(CASES_ACCEPTED, case)])
    assert (result.processed, result.emitted) == (1, 2)
    assert kinds(sent(store)) == [(CASES_ROUTING, "CaseRouted"), (dept_tasks(HR), "StepAssigned")]
    keys = registry()
    for row in store.outbox:  # signed as the relay will publish them, keyed by case
        headers = dict(row.headers)
        assert headers[SIGNER_HEADER] == "router"
        assert keys.verify("router", row.value, headers[SIGNATURE_HEADER])
        assert row.key == str(case.case_id).encode()
    first = sent(store)[1][1]
    assert isinstance(first, StepAssigned)

    mark = len(store.outbox)
    await router.process([on(dept_outcomes(HR), outcome(first, StepApproved, reference="H1"))])
    assert kinds(sent(store, mark)) == [
        (dept_tasks(SS), "StepAssigned"),
        (CASES_ROUTING, "CaseAdvanced"),
    ]
    second = sent(store, mark)[0][1]
    assert isinstance(second, StepAssigned)
    assert (second.step_index, second.follows_department) == (1, HR)

    mark = len(store.outbox)
    await router.process([on(dept_outcomes(SS), outcome(second, StepApproved), offset=1)])
    closed = sent(store, mark)
    assert kinds(closed) == [(CASES_ROUTING, "CaseClosed")]
    assert isinstance(closed[0][1], CaseClosed)
    assert closed[0][1].outcome == "approved"
    row = store.tables("router").cases[case.case_id]
    assert (row["status"], row["outcome"]) == ("closed", "approved")
    assert store.commits == 3


async def test_router_rejects_an_unknown_item_once_and_remembers_it(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    store = MemoryStore(RouterTables())
    router = router_processor(catalogue, store, tmp_path)
    case = accepted("NO-SUCH-ITEM", applicant(2), {})
    await router.process([on(CASES_ACCEPTED, case)])
    assert kinds(sent(store)) == [(CASES_ROUTING, "CaseRejected"), (CASES_ROUTING, "CaseClosed")]
    assert store.tables("router").rejected_cases == {case.case_id: "unknown_item"}
    # The same event again (a redelivery): the inbox makes it a no-op.
    again = await router.process([on(CASES_ACCEPTED, case)])
    assert (again.processed, again.duplicates, len(store.outbox)) == (0, 1, 2)


def _routed(catalogue: Catalogue, case: CaseAccepted) -> tuple[domain.CaseState, StepAssigned]:
    state, emits = domain.route(case, catalogue, NOW)
    assert state is not None
    (task,) = [e for _, e in emits if isinstance(e, StepAssigned)]
    return state, task


async def test_hr_registration_registers_a_job_seeker_once(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    store = MemoryStore(SubjectTables())
    hr = department_processor(hr_registration, store, tmp_path)
    who = applicant(3)
    _, first = _routed(catalogue, accepted("HR-JOB-REGISTRATION", who, JOB_FORM))
    _, second = _routed(catalogue, accepted("HR-JOB-REGISTRATION", who, JOB_FORM))

    result = await hr.process([on(dept_tasks(HR), first), on(dept_tasks(HR), second, offset=1)])
    assert (result.processed, result.dead_lettered) == (2, 0)
    decisions = sent(store)
    assert kinds(decisions) == [
        (dept_outcomes(HR), "StepApproved"),
        (dept_outcomes(HR), "StepRejected"),
    ]
    rejected = decisions[1][1]
    assert isinstance(rejected, StepRejected)
    assert rejected.reason_code == "already_registered"
    assert rejected.causation_id == second.event_id
    subjects = store.tables("subjects")
    # The department's record is keyed by the pseudonym, never the ID number.
    ref = TEST_SECRET.subject_ref(who.id_number)
    assert list(subjects) == [("person", ref)]
    assert who.id_number not in json.dumps(subjects[("person", ref)])
    # A replay of the first task (a new event id, as after a router restart) is approved
    # again with the same reference, and the record is left as it is.
    stored = subjects["person", ref]
    replay = first.model_copy(update={"event_id": uuid4()})
    await hr.process([on(dept_tasks(HR), replay, offset=2)])
    again = sent(store, 2)
    assert kinds(again) == [(dept_outcomes(HR), "StepApproved")]
    first_ref = decisions[0][1]
    assert isinstance(first_ref, StepApproved)
    assert isinstance(again[0][1], StepApproved)
    assert again[0][1].reference == first_ref.reference
    assert store.tables("subjects")["person", ref] == stored


async def test_social_security_waits_for_the_hr_approval_it_learns_from(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    store = MemoryStore(SubjectTables())
    ss = department_processor(social_security, store, tmp_path)
    state, hr_task = _routed(
        catalogue, accepted("SS-UNEMPLOYMENT-BENEFIT", applicant(4), BENEFIT_FORM)
    )
    approval = outcome(hr_task, StepApproved, reference="HR-4")
    _, emits = domain.on_outcome(state, approval, NOW)
    (claim,) = [e for _, e in emits if isinstance(e, StepAssigned)]
    task_record = on(dept_tasks(SS), claim, offset=7)

    # The task alone: the approval that released it has not reached this department.
    blocked = await ss.process([task_record])
    assert blocked.blocked == {task_record.tp: 7}
    assert (blocked.processed, blocked.dead_lettered, store.outbox) == (0, 0, [])
    assert claim.event_id not in store.inbox  # read again later, not lost

    # Both in one batch, the task first: the approval is applied before it anyway.
    result = await ss.process([task_record, on(dept_outcomes(HR), approval)])
    assert (result.processed, result.blocked) == (2, {})
    assert kinds(sent(store)) == [(dept_outcomes(SS), "StepApproved")]
    assert sent(store)[0][1].causation_id == claim.event_id
    ref = TEST_SECRET.subject_ref(applicant(4).id_number)
    learned: Any = store.tables("subjects")["person", ref]
    assert learned["subject_id"] == ref


async def test_intake_status_views_follow_the_routing_topic(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    store = MemoryStore(IntakeTables())
    views = BatchProcessor(
        SETTINGS,
        store,
        writer(tmp_path, "intake"),
        StatusViews(),
        consumer_name="intake",
        keys=registry(),
    )
    case = accepted("HR-JOB-REGISTRATION", applicant(5), JOB_FORM)
    other = accepted("HR-JOB-REGISTRATION", applicant(6), JOB_FORM)  # another centre's
    IntakeTables.add(store.tables("intake"), case.case_id)
    routing = [e for _, e in domain.route(case, catalogue, NOW)[1] if e.event_type == "CaseRouted"]
    closed = CaseClosed(**case.caused(), producer="router", outcome="approved", department=HR)
    records = [
        on(CASES_ROUTING, routing[0], offset=0),
        on(CASES_ROUTING, domain.route(other, catalogue, NOW)[1][0][1], offset=1),
        on(CASES_ROUTING, closed, offset=2),
    ]
    result = await views.process(records)
    assert (result.processed, result.emitted) == (3, 0)
    view = store.tables("intake")[case.case_id]
    assert (view["status"], view["outcome"], view["department"]) == ("closed", "approved", HR)
    assert view["routed_at"] == routing[0].occurred_at
    assert other.case_id not in store.tables("intake")
    before = dict(view)
    again = await views.process(records)
    assert again.duplicates == 3
    assert store.tables("intake")[case.case_id] == before
