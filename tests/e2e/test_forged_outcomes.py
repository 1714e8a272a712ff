"""End to end: forged outcomes published to a running router's input close no case.

Intake and the router run as real processes; no department does, so the case waits at
its first step while forgeries arrive on that department's outcomes topic. Each lands in
the topic's DLQ with its reason; the department's genuine outcome then closes the case."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from uuid import UUID

import httpx
import pytest
from aiokafka import TopicPartition

from shared.contracts.events import StepApproved, StepAssigned, StepRejected
from shared.contracts.topology import DLQ_REASON, dept_outcomes, dept_tasks, dlq
from shared.messaging.kafka import make_producer, read_to_end
from shared.messaging.testing import signer_for
from tests.conftest import Stack
from tests.e2e.harness import Pipeline, records_of, republish, run_services, wait_closed
from tests.support.builders import case_body, outcome, person
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(240)]

HR = "hr_registration"
SERVICES = ["intake", "router"]


@pytest.fixture(scope="module")
def pipeline(
    stack: Stack, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    with run_services(
        {name: ["-m", f"services.{name}"] for name in SERVICES},
        kafka=stack.kafka,
        database_url=database_url,
        logs=tmp_path_factory.mktemp("logs"),
    ) as pipeline:
        yield pipeline


async def dead_letter_reasons(pipeline: Pipeline, expected: int) -> list[str]:
    settings = pipeline.settings
    name = settings.topic(dlq(dept_outcomes(HR)))
    parts = [TopicPartition(name, p) for p in range(settings.topic_partitions)]

    async def found() -> list[str] | None:
        records = await read_to_end(settings, parts)
        reasons = [dict(r.headers)[DLQ_REASON].decode() for r in records]
        return reasons if len(reasons) >= expected else None

    return await wait_for(found, 60, f"{expected} dead letters on {name}", interval=0.3)


async def test_forged_outcomes_close_no_case(pipeline: Pipeline, tmp_path: Path) -> None:
    settings = pipeline.settings
    async with httpx.AsyncClient(
        base_url=pipeline.base, timeout=30, headers=pipeline.auth
    ) as client:
        body = case_body(
            "HR-JOB-REGISTRATION", person(), {"education": "none", "desired_occupation": "cook"}
        )
        resp = await client.post("/cases", json=body)
        assert resp.status_code == 201, resp.text
        case_id = UUID(resp.json()["case_id"])
        (task_record,) = await records_of(settings, dept_tasks(HR), case_id, 1)
        task = task_record[3]
        assert isinstance(task, StepAssigned)
        key = str(case_id).encode()

        def forged() -> bytes:
            return outcome(task, StepRejected, reason_code="not_eligible", message="x").to_json()

        topic = dept_outcomes(HR)
        # Signed by another service; by an unregistered key claiming to be HR.
        router = signer_for(settings.keys_dir, "router")
        await republish(settings, topic, forged(), key, signer=router)
        await republish(settings, topic, forged(), key, signer=signer_for(tmp_path, HR))
        # Unsigned.
        producer = make_producer(settings)
        await producer.start()
        try:
            await (await producer.send(settings.topic(topic), forged(), key=key))
        finally:
            await producer.stop()

        reasons = await dead_letter_reasons(pipeline, 3)
        assert sorted(reasons) == ["bad_signature", "missing_signature", "wrong_signer"]
        status = (await client.get(f"/cases/{case_id}")).json()
        assert status["status"] != "closed", status

        # The department's genuine outcome, signed with its registered key, closes it.
        genuine = outcome(task, StepApproved, reference="HR-1").to_json()
        await republish(settings, topic, genuine, key)
        closed = await wait_closed(client, str(case_id))
        assert closed["outcome"] == "approved", closed
