"""End to end: the services as real processes; a Prometheus scraper's view of them.

Scrapes ``/metrics`` of intake, the router, a department and the audit before and after
a few cases go through over HTTP: the figures move by what happened, and no resident ID,
phone number or case id ever appears in a scrape. ``/health/ready`` and
``/health/live`` answer beside the unchanged ``/health``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Iterator

import httpx
import pytest
from prometheus_client.parser import text_string_to_metric_families

from tests.conftest import Stack
from tests.e2e.harness import Pipeline, free_port, run_services, wait_closed
from tests.support.builders import case_body, person
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.e2e, pytest.mark.slow, pytest.mark.timeout(300)]

SERVICES = ["intake", "router", "hr_registration", "social_security", "audit"]
JOB_FORM = {"education": "college", "desired_occupation": "driver"}
CASES = 4

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]


@pytest.fixture(scope="module")
def pipeline(
    stack: Stack, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    service_env = {name: {"ONEDOOR_HEALTH_PORT": str(free_port())} for name in SERVICES[1:4]}
    service_env["audit"] = {"ONEDOOR_HTTP_PORT": str(free_port())}
    with run_services(
        {name: ["-m", f"services.{name}"] for name in SERVICES},
        kafka=stack.kafka,
        database_url=database_url,
        logs=tmp_path_factory.mktemp("logs"),
        service_env=service_env,
    ) as pipeline:
        yield pipeline


def base_urls(pipeline: Pipeline) -> dict[str, str]:
    urls = {"intake": pipeline.base}
    for name in pipeline.commands:  # the services started (not the auditor's role)
        if name == "intake":
            continue
        env = pipeline.env_of(name)
        port = env.get("ONEDOOR_HEALTH_PORT") or env["ONEDOOR_HTTP_PORT"]
        urls[name] = f"http://127.0.0.1:{port}"
    return urls


async def all_live(probe: httpx.AsyncClient, urls: dict[str, str]) -> None:
    """Until every service answers (intake was waited for; the others start alongside)."""

    async def live() -> bool:
        try:
            answers = [await probe.get(f"{base}/health/live") for base in urls.values()]
        except httpx.TransportError:
            return False
        return all(a.status_code == 200 for a in answers)

    await wait_for(live, 90, "every service live")


async def scrape(client: httpx.AsyncClient, base: str) -> tuple[str, Samples]:
    resp = await client.get(f"{base}/metrics")
    assert resp.status_code == 200, resp.text
    assert resp.headers["content-type"].startswith("text/plain")
    samples = {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(resp.text)
        for s in family.samples
    }
    return resp.text, samples


def value(samples: Samples, name: str, **labels: str) -> float:
    """The sum of the samples called ``name`` whose labels include ``labels``."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and want <= ls)


async def test_the_figures_move_with_the_cases_and_carry_no_personal_data(
    pipeline: Pipeline,
) -> None:
    urls = base_urls(pipeline)
    async with httpx.AsyncClient(timeout=30) as probe:
        await all_live(probe, urls)
        before = {name: (await scrape(probe, base))[1] for name, base in urls.items()}
        people = [person() for _ in range(CASES)]
        ids: list[str] = []
        async with httpx.AsyncClient(
            base_url=pipeline.base, timeout=30, headers=pipeline.auth
        ) as client:
            for applicant in people:
                resp = await client.post(
                    "/cases", json=case_body("HR-JOB-REGISTRATION", applicant, JOB_FORM)
                )
                assert resp.status_code == 201, resp.text
                ids.append(resp.json()["case_id"])
            outcomes = [(await wait_closed(client, case_id))["outcome"] for case_id in ids]
        assert outcomes == ["approved"] * CASES

        def moved(
            name: str, metric: str, by: float, **labels: str
        ) -> Callable[[], Awaitable[bool]]:
            async def check() -> bool:
                _, now = await scrape(probe, urls[name])
                grown = value(now, metric, **labels) - value(before[name], metric, **labels)
                return grown >= by

            return check

        # The audit yields the CPU to the pipeline: it may take a moment to catch up.
        for name, metric, by, labels in [
            ("audit", "onedoor_consumer_records_total", CASES, {"topic": "cases.accepted"}),
            ("hr_registration", "onedoor_relay_published_total", CASES, {}),
        ]:
            await wait_for(moved(name, metric, by, **labels), 60, f"{name}: {metric} moved")

        after = {name: await scrape(probe, base) for name, base in urls.items()}

        def grown(name: str, metric: str, **labels: str) -> float:
            return value(after[name][1], metric, **labels) - value(before[name], metric, **labels)

        assert grown("intake", "onedoor_cases_accepted_total") == CASES
        timing = {"method": "POST", "route": "/cases", "status": "2xx"}
        assert grown("intake", "onedoor_http_request_duration_seconds_count", **timing) == CASES
        # Intake's status view read every case's routing and close.
        assert grown("intake", "onedoor_consumer_records_total", topic="cases.routing") >= CASES
        assert grown("router", "onedoor_consumer_records_total", topic="cases.accepted") == CASES
        assert grown("router", "onedoor_cases_closed_total", outcome="approved") == CASES
        assert grown("router", "onedoor_cases_closed_total", outcome="rejected") == 0
        assert grown("router", "onedoor_consumer_batch_duration_seconds_count") >= 1
        assert grown("router", "onedoor_relay_published_total") >= 2 * CASES  # task, close...
        hr_tasks = "dept.hr_registration.tasks"
        assert grown("hr_registration", "onedoor_consumer_records_total", topic=hr_tasks) == CASES
        assert grown("audit", "onedoor_consumer_batch_duration_seconds_count") >= 1
        for name, (_, now) in after.items():
            assert value(now, "onedoor_consumer_dead_lettered_total") == 0, name
            assert value(now, "onedoor_outbox_dead_letters") == 0, name
        # No personal data, no case id: a scrape could be read by anyone on the network.
        secrets = [*ids, *(p["id_number"] for p in people), *(p["phone"] for p in people)]
        for name, (text, _) in after.items():
            found = [s for s in secrets if s in text]
            assert not found, f"{name}'s /metrics shows {found}"


async def test_ready_and_live_answer_beside_the_unchanged_health(pipeline: Pipeline) -> None:
    async with httpx.AsyncClient(timeout=30) as probe:
        await all_live(probe, base_urls(pipeline))
        for name, base in base_urls(pipeline).items():
            live = await probe.get(f"{base}/health/live")
            assert live.status_code == 200, (name, live.text)
            assert live.json()["live"] is True

            async def ready(base: str = base) -> bool:
                return (await probe.get(f"{base}/health/ready")).status_code == 200

            await wait_for(ready, 60, f"{name} ready")
            body = (await probe.get(f"{base}/health/ready")).json()
            assert body["database"] is True, (name, body)
            assert body["kafka"] is True, (name, body)
            health = await probe.get(f"{base}/health")
            assert health.status_code == 200
            assert {"status", "consumer_lag_records", "outbox_backlog"} <= health.json().keys()
            assert (await probe.get(f"{base}/nothing-here")).status_code == 404
