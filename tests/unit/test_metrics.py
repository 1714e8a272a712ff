"""The metrics module: what a batch, the relay and HTTP requests put into a scrape."""

from __future__ import annotations

import contextlib
import math
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import uuid4

import httpx
import pytest
from aiokafka import TopicPartition
from fastapi import FastAPI
from prometheus_client.parser import text_string_to_metric_families

from shared.platform import metrics
from shared.platform.metrics import ConsumerMetrics, Lag, OutboxState, ServiceMetrics
from shared.platform.ops import OpsFront, readiness
from shared.platform.runtime import _total

pytestmark = pytest.mark.unit


@dataclass
class Relay:
    published: int = 0
    retries: int = 0
    dead_letter_reasons: dict[str, int] = field(default_factory=dict)


@dataclass
class Rec:
    offset: int


def samples(text: bytes) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """Every sample of an exposition, by name and sorted labels (parsed by the
    library's own parser: the text is valid Prometheus exposition)."""
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text.decode())
        for s in family.samples
    }


def test_a_batch_counts_records_by_topic_dead_letters_by_reason_and_tallies() -> None:
    loop = ConsumerMetrics("p1.router", "p1.")  # the group id as deployed
    service = ServiceMetrics([loop], Relay())
    fetched = {
        TopicPartition("p1.cases.accepted", 0): [Rec(1), Rec(2), Rec(3)],
        TopicPartition("p1.cases.accepted", 1): [Rec(4)],
        TopicPartition("p1.dept.hr.outcomes", 0): [Rec(5), Rec(6)],
    }
    dead = {("p1.cases.accepted", "bad_signature"): 1}
    tallies = {(metrics.CASES_CLOSED, "approved"): 2, (metrics.CASES_CLOSED, "rejected"): 1}
    loop.batch(0.02, fetched, dead, tallies)
    # Held back from offset 8 on partition 2 (a fact not seen yet): 8 and 9 come again.
    held = TopicPartition("p1.cases.accepted", 2)
    loop.batch(0.3, {held: [Rec(7), Rec(8), Rec(9)]}, {}, {}, {held: 8})
    got = samples(service.exposition())
    group = ("group", "router")
    assert got["onedoor_consumer_records_total", (group, ("topic", "cases.accepted"))] == 5
    assert got["onedoor_consumer_records_total", (group, ("topic", "dept.hr.outcomes"))] == 2
    key = (group, ("reason", "bad_signature"), ("topic", "cases.accepted"))
    assert got["onedoor_consumer_dead_lettered_total", key] == 1
    assert got["onedoor_consumer_batch_duration_seconds_count", (group,)] == 2
    assert got["onedoor_consumer_batch_duration_seconds_bucket", (group, ("le", "0.025"))] == 1
    assert got["onedoor_cases_closed_total", (("outcome", "approved"),)] == 2
    assert got["onedoor_cases_closed_total", (("outcome", "rejected"),)] == 1
    assert got["onedoor_consumer_batches_rolled_back_total", (group,)] == 0
    loop.batch_rolled_back()
    assert (
        samples(service.exposition())["onedoor_consumer_batches_rolled_back_total", (group,)] == 1
    )
    assert not any(name.endswith("_created") for name, _ in got)


def test_lag_unknown_is_nan_with_the_partitions_it_could_not_read() -> None:
    loop = ConsumerMetrics("audit", "")
    service = ServiceMetrics([loop], Relay())
    group = (("group", "audit"),)
    assert math.isnan(samples(service.exposition())["onedoor_consumer_lag_records", group])
    loop.set_lag(Lag(None, 6, 2))
    got = samples(service.exposition())
    assert math.isnan(got["onedoor_consumer_lag_records", group])
    assert got["onedoor_consumer_partitions", group] == 6
    assert got["onedoor_consumer_partitions_lag_unknown", group] == 2
    loop.set_lag(Lag(41, 6))
    got = samples(service.exposition())
    assert got["onedoor_consumer_lag_records", group] == 41
    assert got["onedoor_consumer_partitions_lag_unknown", group] == 0


def test_two_loops_share_one_family_per_name() -> None:
    service = ServiceMetrics([ConsumerMetrics("a", ""), ConsumerMetrics("b", "")], Relay())
    text = service.exposition().decode()
    assert text.count("# TYPE onedoor_consumer_lag_records gauge") == 1
    got = samples(text.encode())
    assert ("onedoor_consumer_partitions", (("group", "a"),)) in got
    assert ("onedoor_consumer_partitions", (("group", "b"),)) in got


def test_the_relay_and_the_outbox_are_read_when_scraped() -> None:
    relay = Relay()
    service = ServiceMetrics([], relay)
    got = samples(service.exposition())
    assert math.isnan(got["onedoor_outbox_backlog_rows", ()])  # not read yet: unknown
    relay.published, relay.retries = 120, 3
    relay.dead_letter_reasons["too_large"] = 1
    service.set_outbox(OutboxState(backlog=7, oldest_age_s=2.5, dead_letters=1))
    got = samples(service.exposition())
    assert got["onedoor_relay_published_total", ()] == 120
    assert got["onedoor_relay_retries_total", ()] == 3
    assert got["onedoor_relay_dead_lettered_total", (("reason", "too_large"),)] == 1
    assert got["onedoor_outbox_backlog_rows", ()] == 7
    assert got["onedoor_outbox_oldest_age_seconds", ()] == 2.5
    assert got["onedoor_outbox_dead_letters", ()] == 1


def test_cases_accepted_is_one_counter_the_service_registers() -> None:
    service = ServiceMetrics([], Relay())
    accepted = metrics.cases_accepted()
    service.register(accepted)
    accepted.inc(3)
    assert samples(service.exposition())["onedoor_cases_accepted_total", ()] == 3


@dataclass
class Live:
    metrics: ServiceMetrics


async def test_http_requests_are_timed_by_route_template_never_by_path() -> None:
    app = FastAPI()

    @app.get("/cases/{case_id}")
    async def case(case_id: str) -> dict[str, str]:
        return {"case": case_id}

    async def lean(scope: dict[str, object], receive: object, send: object) -> None:
        if scope["path"] == "/lean":
            scope[metrics.ROUTE_KEY] = "/lean"
        await app(scope, receive, send)  # type: ignore[arg-type]

    live = Live(ServiceMetrics([], Relay()))
    front = OpsFront(lean, live)  # type: ignore[arg-type]
    case_id = str(uuid4())
    transport = httpx.ASGITransport(app=front)
    async with httpx.AsyncClient(transport=transport, base_url="http://t") as client:
        assert (await client.get(f"/cases/{case_id}")).status_code == 200
        assert (await client.get(f"/cases/{case_id}")).status_code == 200
        assert (await client.get(f"/nowhere/{case_id}")).status_code == 404
        assert (await client.get("/lean")).status_code == 404
    text = live.metrics.exposition()
    assert case_id.encode() not in text
    got = samples(text)
    count = "onedoor_http_request_duration_seconds_count"
    get = ("method", "GET")
    assert got[count, (get, ("route", "/cases/{case_id}"), ("status", "2xx"))] == 2
    assert got[count, (get, ("route", "unmatched"), ("status", "4xx"))] == 1
    assert got[count, (get, ("route", "/lean"), ("status", "4xx"))] == 1


def test_a_lag_sum_with_an_unknown_part_is_unknown() -> None:
    assert _total([3, None, 4]) is None
    assert _total([3, 4]) == 7
    assert _total([]) == 0


def test_status_classes() -> None:
    assert [metrics.status_class(s) for s in (200, 201, 404, 503)] == ["2xx", "2xx", "4xx", "5xx"]


class Conn:
    def __init__(self, up: bool) -> None:
        self.up = up

    async def fetchval(self, _: str) -> int:
        if not self.up:
            raise ConnectionRefusedError("PostgreSQL is away")
        return 1


class Pool:
    def __init__(self, up: bool) -> None:
        self.conn = Conn(up)

    @contextlib.asynccontextmanager
    async def acquire(self) -> AsyncIterator[Conn]:
        yield self.conn


@dataclass
class Loop:
    broker: bool
    last_error: str | None = None

    async def reaches_broker(self, deadline_s: float) -> bool:
        return self.broker


@dataclass
class Failing:
    last_error: str | None = None


@dataclass
class Service:
    pool: Pool
    loops: tuple[Loop, ...]
    relay: Failing = field(default_factory=Failing)
    ready_without_kafka: bool = False
    name: str = "router"


@dataclass
class Running:
    service: Service
    stopped: list[str] = field(default_factory=list)

    def stopped_tasks(self) -> list[str]:
        return self.stopped


async def ready(service: Service, stopped: Sequence[str] = ()) -> tuple[bool, dict[str, Any]]:
    return await readiness(Running(service, list(stopped)))  # type: ignore[arg-type]


async def test_ready_needs_postgresql_kafka_and_nothing_failing() -> None:
    assert (await ready(Service(Pool(up=True), (Loop(broker=True),))))[0]
    away, body = await ready(Service(Pool(up=False), (Loop(broker=True),)))
    assert not away
    assert body["database"] is False
    no_kafka, body = await ready(Service(Pool(up=True), (Loop(broker=True), Loop(broker=False))))
    assert not no_kafka
    assert body["kafka"] is False
    failing = Service(Pool(up=True), (Loop(broker=True, last_error="batch rolled back"),))
    assert not (await ready(failing))[0]
    stuck = Service(Pool(up=True), (Loop(broker=True),), relay=Failing("KafkaTimeoutError"))
    assert (await ready(stuck))[1]["errors"] == ["KafkaTimeoutError"]
    assert not (await ready(stuck))[0]
    dead, body = await ready(Service(Pool(up=True), (Loop(broker=True),)), ["relay stopped"])
    assert not dead
    assert body["errors"] == ["relay stopped"]


async def test_a_service_that_serves_without_kafka_is_ready_with_postgresql_alone() -> None:
    intake = Service(
        Pool(up=True), (Loop(broker=False),), Failing("KafkaConnectionError"), True, "intake"
    )
    ok, body = await ready(intake)
    assert ok
    assert body["kafka"] is False  # said, though it does not stop the service
    intake.pool = Pool(up=False)
    assert not (await ready(intake))[0]
    intake.pool = Pool(up=True)
    assert not (await ready(intake, ["http stopped"]))[0]
