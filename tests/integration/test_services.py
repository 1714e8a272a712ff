"""Router and a department adapter in-process, on the real broker and database, driven
through their topics: the test plays the other services."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import pytest
from aiokafka import AIOKafkaConsumer

from services.hr_registration.main import build as build_hr_adapter
from services.router.main import build as build_router
from shared.contracts.events import (
    CaseClosed,
    Event,
    StepApproved,
    StepAssigned,
    StepOutcome,
    StepRejected,
    parse_event,
)
from shared.contracts.topology import (
    CASES_ACCEPTED,
    CASES_ROUTING,
    dept_outcomes,
    dept_tasks,
    dlq,
    writer,
)
from shared.messaging.kafka import client_options, make_producer
from shared.messaging.signing import Signer
from shared.platform.runtime import RunningService, running
from shared.platform.settings import Settings
from tests.support.builders import BENEFIT_FORM, accepted, applicant, in_clear, outcome

pytestmark = pytest.mark.integration

FORM = BENEFIT_FORM


class Topics:
    """Follows topics from their beginning, as another service would."""

    def __init__(self, settings: Settings, *topics: str) -> None:
        self.settings = settings
        self.consumer = AIOKafkaConsumer(
            *(settings.topic(t) for t in topics),
            **client_options(settings),
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            group_id=f"observer-{uuid4().hex[:6]}",
        )
        self.seen: list[tuple[str, Any]] = []

    async def __aenter__(self) -> Topics:
        await self.consumer.start()
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.consumer.stop()

    async def wait_for(self, topic: str, match: Any, seconds: float = 30) -> Any:
        """The first record on ``topic`` for which match(record) is true."""
        name = self.settings.topic(topic)
        async with asyncio.timeout(seconds):
            while True:
                for t, record in self.seen:
                    if t == name and match(record):
                        return record
                batch = await self.consumer.getmany(timeout_ms=200)
                for records in batch.values():
                    self.seen += [(r.topic, r) for r in records]


def event_of(record: Any) -> Event:
    return parse_event(record.value)


async def publish(settings: Settings, topic: str, event: Event) -> None:
    """``event`` on ``topic``, signed by the topic's writer as the services sign it."""
    value = event.to_json()
    signer = Signer.load(settings.keys_dir, writer(topic) or "nobody")
    producer = make_producer(settings)
    await producer.start()
    try:
        await (
            await producer.send(
                settings.topic(topic),
                value,
                key=str(event.case_id).encode(),
                headers=[(k, v.encode()) for k, v in signer.headers(value)],
            )
        )
    finally:
        await producer.stop()


@pytest.fixture
async def router(settings: Settings) -> AsyncIterator[RunningService]:
    async with running(await build_router(settings)) as live:
        yield live


@pytest.fixture
async def hr_adapter(settings: Settings) -> AsyncIterator[RunningService]:
    async with running(await build_hr_adapter(settings)) as live:
        yield live


def for_case(case: UUID, cls: type[Event]) -> Any:
    return lambda r: (e := event_of(r)).case_id == case and isinstance(e, cls)


async def next_event(topics: Topics, topic: str, case: UUID, cls: type[Event]) -> Any:
    """The case's first event of class ``cls`` on ``topic``."""
    return event_of(await topics.wait_for(topic, for_case(case, cls)))


async def test_router_drives_a_two_step_slip_to_the_close(
    settings: Settings, router: RunningService
) -> None:
    case = accepted("SS-UNEMPLOYMENT-BENEFIT", applicant(1), FORM)
    async with Topics(
        settings, CASES_ROUTING, dept_tasks("hr_registration"), dept_tasks("social_security")
    ) as topics:
        await publish(settings, CASES_ACCEPTED, case)
        first = await next_event(topics, dept_tasks("hr_registration"), case.case_id, StepAssigned)
        assert isinstance(first, StepAssigned)
        assert first.causation_id == case.event_id
        await publish(settings, dept_outcomes("hr_registration"), outcome(first, StepApproved))
        second = await next_event(topics, dept_tasks("social_security"), case.case_id, StepAssigned)
        assert isinstance(second, StepAssigned)
        assert (second.step_index, second.follows_department) == (1, "hr_registration")
        await publish(
            settings,
            dept_outcomes("social_security"),
            outcome(second, StepRejected, reason_code="insufficient_insured_months", message="m"),
        )
        closed = await next_event(topics, CASES_ROUTING, case.case_id, CaseClosed)
    assert isinstance(closed, CaseClosed)
    assert (closed.outcome, closed.reason_code) == ("rejected", "insufficient_insured_months")


async def test_router_dead_letters_an_outcome_from_the_wrong_department(
    settings: Settings, router: RunningService
) -> None:
    form = {"education": "a", "desired_occupation": "b"}
    case = accepted("HR-JOB-REGISTRATION", applicant(2), form)
    dead_letters = dlq(dept_outcomes("social_security"))
    async with Topics(settings, dept_tasks("hr_registration"), dead_letters) as topics:
        await publish(settings, CASES_ACCEPTED, case)
        task = await next_event(topics, dept_tasks("hr_registration"), case.case_id, StepAssigned)
        assert isinstance(task, StepAssigned)
        forged = outcome(task, StepApproved).model_copy(update={"department": "social_security"})
        await publish(settings, dept_outcomes("social_security"), forged)
        dead = await topics.wait_for(
            dead_letters,
            lambda r: json.loads(r.value)["event_id"] == str(forged.event_id),
        )
    headers = {k: v.decode() for k, v in dead.headers}
    assert headers["dlq.reason"] == "handler_error"
    assert "belongs to hr_registration" in headers["dlq.error"]


async def test_hr_adapter_registers_a_person_once(
    settings: Settings, hr_adapter: RunningService
) -> None:
    who = applicant(3)
    tasks = []
    for _ in range(2):
        case = uuid4()
        tasks.append(
            StepAssigned(
                case_id=case,
                correlation_id=case,
                producer="router",
                step_index=0,
                department="hr_registration",
                action="job_registration",
                item_code="HR-JOB-REGISTRATION",
                applicant=in_clear(who),
                community_code="110105001001",
                form={"education": "college", "desired_occupation": "cook"},
                due_by=datetime(2027, 1, 1, tzinfo=UTC),
            )
        )
    async with Topics(settings, dept_outcomes("hr_registration")) as topics:
        for task in tasks:
            await publish(settings, dept_tasks("hr_registration"), task)
        outcomes = [
            await next_event(topics, dept_outcomes("hr_registration"), t.case_id, StepOutcome)
            for t in tasks
        ]
    # The two cases sit in different partitions: either may be decided first. Exactly one
    # registers the person; the other is refused, naming the registration that stands.
    approved = [o for o in outcomes if isinstance(o, StepApproved)]
    rejected = [o for o in outcomes if isinstance(o, StepRejected)]
    assert len(approved) == len(rejected) == 1
    assert approved[0].reference is not None
    assert rejected[0].reason_code == "already_registered"
    assert approved[0].reference in rejected[0].message
