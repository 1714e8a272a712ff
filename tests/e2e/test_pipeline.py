"""End to end: the four services as real processes on the real stack, driven over HTTP
(as a window clerk would) and over topics (as a department or a buggy producer would)."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any
from uuid import UUID, uuid4

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.events import (
    Applicant,
    CaseRouted,
    Event,
    StepAssigned,
    StepOutcome,
    StepRejected,
    parse_event,
)
from shared.identity import make_resident_id
from shared.kafka import make_producer
from shared.settings import Settings
from shared.topics import CASES_ACCEPTED, CASES_ROUTING, dept_outcomes, dept_tasks
from tests.conftest import Stack

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

SERVICES = ["intake", "router", "hr_registration", "social_security"]
_seq = iter(range(1, 1000))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def person() -> dict[str, str]:
    rid = make_resident_id("110105", date(1985, 3, next(_seq) % 28 + 1), int(uuid4().int % 1000))
    return {"kind": "natural", "name": "Zhang Min", "id_number": rid, "phone": "13912345678"}


def case_body(item: str, applicant: dict[str, str], form: dict[str, Any]) -> dict[str, Any]:
    return {
        "item_code": item,
        "applicant": applicant,
        "community_code": "110105001001",
        "form": form,
        "window_id": "W01",
        "operator_id": "op-1",
        "channel": "window",
    }


BENEFIT_FORM = {
    "last_employer": "Beijing Foods Co.",
    "separation_date": "2026-09-30",
    "insured_months": 40,
    "education": "high school",
    "desired_occupation": "cook",
}


@dataclass
class Pipeline:
    base: str
    settings: Settings
    procs: dict[str, subprocess.Popen[bytes]]


@pytest.fixture(scope="module")
def pipeline(
    stack: Stack, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    port = _free_port()
    logs = tmp_path_factory.mktemp("logs")
    settings = Settings(
        kafka_bootstrap_servers=stack.bootstrap_servers,
        topic_prefix=f"e2e{uuid4().hex[:8]}.",
    )
    env = dict(os.environ) | {
        "KAFKA_BOOTSTRAP_SERVERS": stack.bootstrap_servers,
        "DATABASE_URL": database_url,
        "ONEDOOR_TOPIC_PREFIX": settings.topic_prefix,
        "ONEDOOR_HTTP_PORT": str(port),
        "ONEDOOR_KEYS_DIR": str(logs / "keys"),
        "ONEDOOR_LOG_JSON": "true",
    }
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-m", f"services.{name}"],
            env=env,
            stdout=(logs / f"{name}.log").open("wb"),
            stderr=subprocess.STDOUT,
        )
        for name in SERVICES
    }
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    try:
        while True:
            dead = [n for n, p in procs.items() if p.poll() is not None]
            assert not dead, f"{dead} died at start; logs in {logs}"
            try:
                if httpx.get(f"{base}/health", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "intake not healthy in 90 s"
            time.sleep(0.2)
        yield Pipeline(base, settings, procs)
    finally:
        for proc in procs.values():
            proc.terminate()
        for name, proc in procs.items():
            code: int | None
            try:
                code = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                code = None
            # Graceful shutdown: SIGTERM ends each service cleanly, not with a traceback.
            # uvicorn re-raises the signal once its shutdown has completed.
            log = (logs / f"{name}.log").read_text()
            clean = code == 0 or (code == -signal.SIGTERM and "shutdown complete" in log)
            assert clean, f"{name} exited with {code}; log: {log[-2000:]}"


@pytest.fixture
async def client(pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=pipeline.base, timeout=30) as c:
        yield c


async def wait_closed(
    client: httpx.AsyncClient, case_id: str, deadline_s: float = 60
) -> dict[str, Any]:
    deadline = time.monotonic() + deadline_s
    while True:
        body: dict[str, Any] = (await client.get(f"/cases/{case_id}")).json()
        if body["status"] == "closed":
            return body
        assert time.monotonic() < deadline, f"case not closed in {deadline_s} s: {body}"
        await asyncio.sleep(0.1)


async def read_topic(settings: Settings, topic: str) -> list[tuple[int, int, bytes, Event]]:
    """Everything on a topic now: (partition, offset, raw value, event)."""
    # A group-less consumer starting at the earliest offset. (Assigning with the default
    # "latest" reset and then seeking to the beginning races: the initial reset can land
    # after the seek and leave every position at the end.)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.kafka_bootstrap_servers,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    out: list[tuple[int, int, bytes, Event]] = []
    try:
        name = settings.topic(topic)
        # The services created every topic with this many partitions (same settings).
        parts = [TopicPartition(name, p) for p in range(settings.topic_partitions)]
        consumer.assign(parts)
        ends = await consumer.end_offsets(parts)
        for tp in parts:
            while await consumer.position(tp) < ends[tp]:
                batch = await consumer.getmany(tp, timeout_ms=1000)
                out.extend(
                    (tp.partition, r.offset, r.value, parse_event(r.value))
                    for r in batch.get(tp, [])
                    if r.offset < ends[tp]
                )
    finally:
        await consumer.stop()
    return out


async def records_of(
    settings: Settings, topic: str, case_id: UUID, expected: int
) -> list[tuple[int, int, bytes, Event]]:
    """The case's records on a topic, polled until ``expected`` are visible (deadline 30 s)."""
    deadline = time.monotonic() + 30
    while True:
        found = [r for r in await read_topic(settings, topic) if r[3].case_id == case_id]
        if len(found) >= expected or time.monotonic() > deadline:
            assert len(found) == expected, f"{len(found)} records of the case on {topic}"
            return found
        await asyncio.sleep(0.2)


async def wait_group_past(
    settings: Settings, group: str, topic: str, partition: int, offset: int
) -> None:
    """Until the consumer group has committed past ``offset``: it has handled that record."""
    admin = AIOKafkaAdminClient(bootstrap_servers=settings.kafka_bootstrap_servers)
    await admin.start()
    tp = TopicPartition(settings.topic(topic), partition)
    try:
        deadline = time.monotonic() + 60
        while True:
            offsets = await admin.list_consumer_group_offsets(group)
            meta = offsets.get(tp)
            if meta is not None and meta.offset > offset:
                return
            assert time.monotonic() < deadline, f"{group} did not pass {tp}@{offset}"
            await asyncio.sleep(0.1)
    finally:
        await admin.close()


async def republish(settings: Settings, topic: str, value: bytes, key: bytes) -> tuple[int, int]:
    producer = make_producer(settings)
    await producer.start()
    try:
        meta = await (await producer.send(settings.topic(topic), value=value, key=key))
    finally:
        await producer.stop()
    return meta.partition, meta.offset


async def test_two_step_unemployment_benefit_is_approved(client: httpx.AsyncClient) -> None:
    resp = await client.post(
        "/cases", json=case_body("SS-UNEMPLOYMENT-BENEFIT", person(), BENEFIT_FORM)
    )
    assert resp.status_code == 201, resp.text
    accepted = resp.json()
    assert accepted["receipt_no"].startswith("C01-")
    closed = await wait_closed(client, accepted["case_id"])
    assert closed["outcome"] == "approved", closed
    assert closed["department"] == "social_security"  # the second step decided it
    assert closed["current_step"] == 1


async def test_benefit_rejected_when_hr_registration_fails(client: httpx.AsyncClient) -> None:
    applicant = person()
    job = await client.post(
        "/cases",
        json=case_body(
            "HR-JOB-REGISTRATION",
            applicant,
            {"education": "college", "desired_occupation": "driver"},
        ),
    )
    assert (await wait_closed(client, job.json()["case_id"]))["outcome"] == "approved"
    # Already registered as a job seeker: HR refuses step 1, so no benefit is claimed.
    resp = await client.post(
        "/cases", json=case_body("SS-UNEMPLOYMENT-BENEFIT", applicant, BENEFIT_FORM)
    )
    closed = await wait_closed(client, resp.json()["case_id"])
    assert closed["outcome"] == "rejected"
    assert closed["reason_code"] == "already_registered"
    assert closed["department"] == "hr_registration"


async def test_social_security_rejects_benefit_without_hr_registration(pipeline: Pipeline) -> None:
    """A department's view: a benefit-claim task for a person HR never registered."""
    settings = pipeline.settings
    case = uuid4()
    applicant = Applicant.model_validate(person())
    task = StepAssigned(
        case_id=case,
        correlation_id=case,
        producer="router",
        step_index=0,
        department="social_security",
        action="benefit_claim",
        item_code="SS-UNEMPLOYMENT-BENEFIT",
        applicant=applicant,
        community_code="110105001001",
        form=BENEFIT_FORM,
        due_by=datetime(2027, 1, 1, tzinfo=UTC),
    )
    await republish(settings, dept_tasks("social_security"), task.to_json(), str(case).encode())
    outcome = await _wait_outcome(settings, "social_security", case)
    assert isinstance(outcome, StepRejected)
    assert outcome.reason_code == "no_hr_registration"
    assert outcome.causation_id == task.event_id


async def _wait_outcome(settings: Settings, department: str, case: UUID) -> StepOutcome:
    deadline = time.monotonic() + 60
    while True:
        for _, _, _, event in await read_topic(settings, dept_outcomes(department)):
            if event.case_id == case and isinstance(event, StepOutcome):
                return event
        assert time.monotonic() < deadline, "no outcome in 60 s"
        await asyncio.sleep(0.2)


async def test_on_the_spot_item_closes_at_once_and_is_reviewed(
    client: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    form = {"employer_name": "Shanghai Tech Co.", "employment_start_date": "2026-11-01"}
    resp = await client.post("/cases", json=case_body("HR-EMPLOYMENT-REGISTRATION", person(), form))
    case_id = resp.json()["case_id"]
    closed = await wait_closed(client, case_id)
    assert closed["outcome"] == "approved"
    assert closed["on_spot"] is True
    # The department still reviews it afterwards.
    outcome = await _wait_outcome(pipeline.settings, "hr_registration", UUID(case_id))
    assert outcome.review is True


async def test_unknown_item_and_bad_id_are_refused_with_their_fields(
    client: httpx.AsyncClient,
) -> None:
    applicant = person()
    applicant["id_number"] = applicant["id_number"][:-1] + (
        "1" if applicant["id_number"][-1] != "1" else "2"
    )
    resp = await client.post("/cases", json=case_body("NO-SUCH-ITEM", applicant, {}))
    assert resp.status_code == 422
    locations = {tuple(e["loc"]) for e in resp.json()["detail"]}
    assert locations == {("body", "item_code"), ("body", "applicant", "id_number")}


async def test_retried_post_gives_one_case(client: httpx.AsyncClient) -> None:
    body = case_body(
        "HR-JOB-REGISTRATION", person(), {"education": "college", "desired_occupation": "nurse"}
    )
    key = {"Idempotency-Key": f"retry-{uuid4()}"}
    first, second = await asyncio.gather(
        client.post("/cases", json=body, headers=key), client.post("/cases", json=body, headers=key)
    )
    assert {first.status_code, second.status_code} == {200, 201}
    assert first.json()["case_id"] == second.json()["case_id"]
    third = await client.post("/cases", json=body, headers=key)
    assert third.json()["case_id"] == first.json()["case_id"]
    other = await client.post("/cases", json=body | {"window_id": "W09"}, headers=key)
    assert other.status_code == 422
    assert other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


async def test_redelivered_records_change_nothing(
    client: httpx.AsyncClient, pipeline: Pipeline
) -> None:
    settings = pipeline.settings
    resp = await client.post(
        "/cases",
        json=case_body(
            "HR-JOB-REGISTRATION", person(), {"education": "none", "desired_occupation": "cook"}
        ),
    )
    case_id = UUID(resp.json()["case_id"])
    await wait_closed(client, str(case_id))

    accepted = await records_of(settings, CASES_ACCEPTED, case_id, 1)
    part, off = await republish(settings, CASES_ACCEPTED, accepted[0][2], str(case_id).encode())
    await wait_group_past(settings, "router", CASES_ACCEPTED, part, off)

    tasks = await records_of(settings, dept_tasks("hr_registration"), case_id, 1)
    part, off = await republish(
        settings, dept_tasks("hr_registration"), tasks[0][2], str(case_id).encode()
    )
    await wait_group_past(settings, "hr_registration", dept_tasks("hr_registration"), part, off)

    # Each consumer has now handled the copy: still one routing and one decision.
    routed = [r for r in await read_topic(settings, CASES_ROUTING) if r[3].case_id == case_id]
    assert sum(isinstance(r[3], CaseRouted) for r in routed) == 1
    outcomes = [
        r
        for r in await read_topic(settings, dept_outcomes("hr_registration"))
        if r[3].case_id == case_id
    ]
    assert len(outcomes) == 1
    assert (await client.get(f"/cases/{case_id}")).json()["outcome"] == "approved"
