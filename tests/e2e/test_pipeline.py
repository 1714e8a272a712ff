"""End to end: the four services as real processes on the real stack, driven over HTTP
(as a window clerk would) and over topics (as a department or a buggy producer would)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest

from shared.contracts.events import (
    Applicant,
    StepApproved,
    StepAssigned,
    StepOutcome,
    StepRejected,
)
from shared.contracts.topology import CASES_ACCEPTED, CASES_ROUTING, dept_outcomes, dept_tasks
from shared.platform.limits import Limits, form_size
from shared.platform.settings import Settings
from tests.conftest import Stack
from tests.e2e.harness import (
    Pipeline,
    free_port,
    read_topic,
    records_of,
    republish,
    run_services,
    wait_closed,
    wait_group_past,
    wait_settled,
)
from tests.support import builders
from tests.support.builders import case_body, in_clear, person
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

SERVICES = ["intake", "router", "hr_registration", "social_security"]

BENEFIT_FORM = dict(builders.BENEFIT_FORM)  # tests/integration/test_intake_api imports it here


@pytest.fixture(scope="module")
def pipeline(
    stack: Stack, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    with run_services(
        {name: ["-m", f"services.{name}"] for name in SERVICES},
        kafka=stack.kafka,
        database_url=database_url,
        logs=tmp_path_factory.mktemp("logs"),
        # Health endpoints: a test counts what is on the topics only once every
        # service's outbox is drained (wait_settled).
        service_env={name: {"ONEDOOR_HEALTH_PORT": str(free_port())} for name in SERVICES[1:]},
    ) as pipeline:
        yield pipeline


@pytest.fixture
async def client(pipeline: Pipeline) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=pipeline.base, timeout=30, headers=pipeline.auth) as c:
        yield c


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
        applicant=in_clear(applicant),
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
    async def found() -> StepOutcome | None:
        for _, _, _, event in await read_topic(settings, dept_outcomes(department)):
            if event.case_id == case and isinstance(event, StepOutcome):
                return event
        return None

    return await wait_for(found, 60, f"an outcome of case {case} from {department}", interval=0.2)


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
    other = await client.post("/cases", json=body | {"channel": "mobile"}, headers=key)
    assert other.status_code == 422
    assert other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]


async def test_concurrent_posts_share_commits_without_losing_order(
    client: httpx.AsyncClient,
) -> None:
    """Many requests at once are group-committed: each still gets its own case and a
    gapless receipt number, and a key reused inside one batch is answered as a replay
    (same body) or refused (other body), exactly as across batches."""
    form = {"education": "college", "desired_occupation": "nurse"}
    bodies = [case_body("HR-JOB-REGISTRATION", person(), form) for _ in range(60)]
    key = f"batch-{uuid4()}"
    twin = bodies[0]
    answers = await asyncio.gather(
        *(client.post("/cases", json=b) for b in bodies[1:]),
        client.post("/cases", json=twin, headers={"Idempotency-Key": key}),
        client.post("/cases", json=twin, headers={"Idempotency-Key": key}),
        client.post("/cases", json=twin | {"channel": "mobile"}, headers={"Idempotency-Key": key}),
    )
    *plain, keyed_a, keyed_b, keyed_other = answers
    assert all(r.status_code == 201 for r in plain), [r.text for r in plain]
    assert {keyed_a.status_code, keyed_b.status_code} == {200, 201}
    assert keyed_a.json()["case_id"] == keyed_b.json()["case_id"]
    assert keyed_other.status_code == 422
    assert keyed_other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]
    created = [*plain, keyed_a if keyed_a.status_code == 201 else keyed_b]
    assert len({r.json()["case_id"] for r in created}) == 60
    numbers = sorted(int(r.json()["receipt_no"].rsplit("-", 1)[1]) for r in created)
    # Gapless: the 60 numbers are consecutive (other tests may hold numbers before them).
    assert numbers == list(range(numbers[0], numbers[0] + 60))


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

    # Each consumer has now handled the copy. Whatever it emitted for it is published
    # once every outbox is drained: only then are the topics read to their end and
    # counted, so a duplicate a relay publishes late cannot pass unseen.
    await wait_settled(pipeline)
    routed = [r[3] for r in await read_topic(settings, CASES_ROUTING) if r[3].case_id == case_id]
    assert sorted(e.event_type for e in routed) == ["CaseClosed", "CaseRouted"]
    tasks_now = [
        r[3]
        for r in await read_topic(settings, dept_tasks("hr_registration"))
        if r[3].case_id == case_id
    ]
    assert [e.event_id for e in tasks_now] == [tasks[0][3].event_id] * 2  # ours and our copy
    outcomes = [
        r[3]
        for r in await read_topic(settings, dept_outcomes("hr_registration"))
        if r[3].case_id == case_id
    ]
    assert [type(e) for e in outcomes] == [StepApproved]
    assert (await client.get(f"/cases/{case_id}")).json()["outcome"] == "approved"


def _body_at_the_limits(extra: int = 0) -> tuple[bytes, Limits]:
    """A request whose form is exactly as large as the budget allows (plus ``extra``
    bytes), its JSON padded with spaces to exactly intake's body limit."""
    limits = Limits.of(Settings())
    form: dict[str, Any] = {**BENEFIT_FORM, "notes_a": "", "notes_b": ""}
    room = limits.form - form_size(form) + extra
    form["notes_a"], form["notes_b"] = "a" * (room // 2), "b" * (room - room // 2)
    assert form_size(form) == limits.form + extra
    body = json.dumps(case_body("SS-UNEMPLOYMENT-BENEFIT", person(), form)).encode()
    return body + b" " * (limits.body - len(body)), limits


async def test_the_largest_accepted_request_closes_and_one_over_it_is_refused(
    client: httpx.AsyncClient,
) -> None:
    """Issue 17: intake's limits and every hop's agree (one setting): a request at the
    limit travels the whole pipeline (a StepAssigned carries its form again), and one just
    over it is refused by intake, naming the limit, instead of wedging a relay."""
    json_type = {"content-type": "application/json"}
    body, limits = _body_at_the_limits()
    assert len(body) == limits.body
    resp = await client.post("/cases", content=body, headers=json_type)
    assert resp.status_code == 201, resp.text[:500]
    closed = await wait_closed(client, resp.json()["case_id"], deadline_s=90)
    assert closed["outcome"] == "approved", closed

    over = await client.post("/cases", content=body + b" ", headers=json_type)
    assert over.status_code == 413
    assert f"over the limit of {limits.body} bytes" in over.json()["detail"]

    big_form, _ = _body_at_the_limits(extra=1)
    refused = await client.post("/cases", content=big_form.rstrip(), headers=json_type)
    assert refused.status_code == 422, refused.text[:500]
    problems = {tuple(d["loc"]): d["msg"] for d in refused.json()["detail"]}
    assert f"over the limit of {limits.form} bytes" in problems[("body", "form")]


async def test_each_service_is_connected_as_its_own_role(
    pipeline: Pipeline, database_url: str
) -> None:
    """Not one session of the services is the superuser's: each pool (named after its
    schema) logged in as that service's role, with its password."""
    conn = await asyncpg.connect(database_url)
    try:
        rows = await conn.fetch(
            """SELECT DISTINCT application_name, usename::text FROM pg_stat_activity
               WHERE datname = current_database() AND pid <> pg_backend_pid()
                 AND backend_type = 'client backend'"""
        )
    finally:
        await conn.close()
    sessions = {r["application_name"]: r["usename"] for r in rows if r["application_name"]}
    assert {name: sessions.get(name) for name in SERVICES} == {
        name: f"onedoor_{name}" for name in SERVICES
    }
    assert "postgres" not in {r["usename"] for r in rows}
