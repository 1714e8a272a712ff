"""Fault injection with real processes: each scenario runs the five services against the
real stack under HTTP load, injects one fault, and then proves that every accepted case
closed exactly once, that onedoor-audit verify finds zero violations, and that the audit
store holds every case accepted over HTTP. Each scenario prints one FAULT line."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import os
import random
import signal
import time
from collections.abc import Iterable, Iterator
from typing import Any

import httpx
import pytest

from deploy import kafka_security
from deploy import stack as local_stack
from shared.contracts.topology import (
    CASES_ACCEPTED,
    CASES_ROUTING,
    dept_outcomes,
    dept_tasks,
    dlq,
)
from shared.messaging.kafka import make_producer
from tests.conftest import Stack
from tests.e2e.harness import Pipeline, free_port, run_services
from tests.faults.load import Load, Outcome, account, read_topic
from tests.support.waiting import wait_for

pytestmark = [pytest.mark.faults, pytest.mark.slow, pytest.mark.timeout(420)]

SERVICES = ["intake", "router", "hr_registration", "social_security", "audit"]
CONSUMED = [
    CASES_ACCEPTED,
    CASES_ROUTING,
    *(dept_tasks(d) for d in ("hr_registration", "social_security")),
    *(dept_outcomes(d) for d in ("hr_registration", "social_security")),
]


@pytest.fixture
def pipeline(
    stack: Stack, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    with run_services(
        {name: ["-m", f"services.{name}"] for name in SERVICES},
        kafka=stack.kafka,
        database_url=database_url,
        logs=tmp_path_factory.mktemp("faults"),
        service_env={"audit": {"ONEDOOR_HTTP_PORT": str(free_port())}},
        # Small batches: a crash lands in the middle of the load, not after it.
        extra_env={"ONEDOOR_CONSUMER_MAX_RECORDS": "20"},
    ) as pipeline:
        yield pipeline


def report(outcome: Outcome, scenario: str, injected: str) -> None:
    print(outcome.line(scenario, injected))  # the figures the issue asks to quote
    assert outcome.closed == outcome.accepted, outcome
    assert outcome.duplicates == 0, outcome
    assert outcome.violations == 0, outcome
    assert outcome.missing_from_audit == 0, outcome


async def under_load(pipeline: Pipeline, cases: int, rate: float = 20.0) -> Load:
    """Windows submitting ``rate`` cases a second, once ``cases`` of them were accepted."""
    load = Load(pipeline, rate_per_s=rate)
    load.start()
    await load.accepted_more(cases, "accepted before the fault")
    return load


async def test_router_killed_mid_load(pipeline: Pipeline, database_url: str) -> None:
    load = await under_load(pipeline, 60)
    pipeline.kill("router")
    await load.accepted_more(40, "accepted while the router is down")
    pipeline.start("router")
    await load.accepted_more(60, "accepted after the router's restart")
    await load.stop()
    outcome = await account(pipeline, load, database_url, dlq_topics=CONSUMED)
    report(outcome, "router kill -9", "kill -9 router, restarted after 40 more cases")
    assert outcome.dlq == 0


@pytest.mark.parametrize(
    ("service", "point"),
    [
        ("hr_registration", "after_commit_before_offsets"),
        ("hr_registration", "before_relay_publish"),
        ("social_security", "after_commit_before_offsets"),
        ("social_security", "after_relay_publish"),
    ],
)
async def test_adapter_dies_inside_its_transaction(
    pipeline: Pipeline, database_url: str, service: str, point: str
) -> None:
    # Replace the adapter by one that kills itself (SIGKILL) at the crash point.
    pipeline.kill(service, signal.SIGTERM)
    pipeline.start(
        service, extra_env={"ONEDOOR_FAULT_CRASH_POINT": point, "ONEDOOR_FAULT_CRASH_AFTER": "3"}
    )
    load = await under_load(pipeline, 40)
    code = await asyncio.to_thread(pipeline.procs[service].wait, 60)
    assert code == -signal.SIGKILL, f"{service} did not reach {point}"
    pipeline.start(service)
    await load.accepted_more(60, f"accepted after {service}'s restart")
    await load.stop()
    outcome = await account(pipeline, load, database_url, dlq_topics=CONSUMED)
    report(outcome, f"{service} crash", f"kill -9 at {point}")


async def test_intake_dies_between_insert_and_publish(
    pipeline: Pipeline, database_url: str
) -> None:
    pipeline.kill("intake", signal.SIGTERM)
    pipeline.start(
        "intake",
        extra_env={
            "ONEDOOR_FAULT_CRASH_POINT": "before_relay_publish",
            "ONEDOOR_FAULT_CRASH_AFTER": "5",
        },
    )
    # It dies after a few cases: start the load without waiting for accepted ones.
    load = await under_load(pipeline, 0)
    code = await asyncio.to_thread(pipeline.procs["intake"].wait, 60)
    assert code == -signal.SIGKILL
    retries = load.retries
    # The windows keep retrying meanwhile.
    await wait_for(lambda: load.retries >= retries + 20, 30, "windows retrying a dead intake")
    pipeline.start("intake")
    await load.accepted_more(60, "accepted after intake's restart")
    await load.stop()
    outcome = await account(pipeline, load, database_url, dlq_topics=CONSUMED)
    report(outcome, "intake crash", "kill -9 after the case insert, before the relay publish")
    assert load.retries > 0  # requests really met a dead intake and were retried


async def health(client: httpx.AsyncClient, port: int) -> dict[str, Any] | None:
    """The instance's health, or None while it does not answer (yet)."""
    with contextlib.suppress(httpx.HTTPError, ValueError):
        resp = await client.get(f"http://127.0.0.1:{port}/health")
        if resp.status_code == 200:
            body: dict[str, Any] = resp.json()
            return body
    return None


async def wait_healthy(ports: Iterable[int], deadline_s: float = 60) -> None:
    async with httpx.AsyncClient(timeout=2) as client:
        for port in ports:
            answers = functools.partial(health, client, port)
            await wait_for(answers, deadline_s, f"instance on {port} healthy", interval=0.2)


async def wait_consuming(ports: Iterable[int], deadline_s: float = 60) -> None:
    """Until each instance has consumed records: it holds partitions and works on them."""
    async with httpx.AsyncClient(timeout=2) as client:
        for port in ports:

            async def consumed(port: int = port) -> bool:
                body = await health(client, port)
                return body is not None and body["consumed_records"] > 0

            await wait_for(consumed, deadline_s, f"instance on {port} consuming", interval=0.2)


def local(stack: Stack) -> local_stack.StackConfig:
    if stack.local is None:
        pytest.skip("stopping the broker or the database needs the local stack (make stack-up)")
    return stack.local


async def test_broker_down_for_ten_seconds(
    pipeline: Pipeline, database_url: str, stack: Stack
) -> None:
    cfg = local(stack)
    load = await under_load(pipeline, 40)
    # SIGTERM to the broker, 10 s with no broker at all, then a start on the same data.
    restart = asyncio.create_task(asyncio.to_thread(local_stack.restart_kafka, cfg, 10.0))
    await wait_for(lambda: local_stack.kafka_running(cfg) is None, 60, "the broker stopped")
    # Intake keeps accepting: its outbox holds the cases until the broker is back.
    await load.accepted_more(40, "accepted while the broker is down")
    assert not restart.done(), "the broker came back before intake accepted more cases"
    await restart
    await load.accepted_more(60, "accepted after the broker's restart")
    await load.stop()
    outcome = await account(pipeline, load, database_url, dlq_topics=CONSUMED, deadline_s=180)
    report(outcome, "broker down", "Kafka stopped for 10 s under load, then restarted")
    assert sorted(pipeline.alive()) == sorted(SERVICES)


async def test_database_restarted_under_load(
    pipeline: Pipeline, database_url: str, stack: Stack
) -> None:
    cfg = local(stack)
    load = await under_load(pipeline, 40)
    await asyncio.to_thread(local_stack.restart_postgres, cfg)
    await load.accepted_more(60, "accepted after the database's restart")
    await load.stop()
    outcome = await account(pipeline, load, database_url, dlq_topics=CONSUMED, deadline_s=180)
    report(outcome, "database restart", "PostgreSQL stopped (fast) and started under load")
    assert sorted(pipeline.alive()) == sorted(SERVICES)


async def test_rebalance_with_second_instances(pipeline: Pipeline, database_url: str) -> None:
    load = await under_load(pipeline, 40)
    ports = {name: free_port() for name in ("router-2", "hr_registration-2")}
    for name, port in ports.items():
        pipeline.start(name, like=name[:-2], extra_env={"ONEDOOR_HEALTH_PORT": str(port)})
    await wait_healthy(ports.values())
    await wait_consuming(ports.values())  # both joined their groups mid-load and share it
    pipeline.kill("router-2", signal.SIGTERM)
    pipeline.kill("hr_registration-2", signal.SIGTERM)
    await load.accepted_more(40, "accepted after the second instances left")
    await load.stop()
    outcome = await account(pipeline, load, database_url, dlq_topics=CONSUMED)
    report(outcome, "rebalance", "second router and hr_registration joined mid-load, then left")
    assert outcome.dlq == 0


async def test_slow_department(pipeline: Pipeline, database_url: str) -> None:
    pipeline.kill("social_security", signal.SIGTERM)
    pipeline.start("social_security", extra_env={"ONEDOOR_FAULT_SLOW_ACTION_S": "0.5"})
    load = await under_load(pipeline, 160)
    await load.stop()
    outcome = await account(pipeline, load, database_url, dlq_topics=CONSUMED, deadline_s=240)
    report(outcome, "slow department", "social_security handlers sleep 0.5 s per task")


async def test_poison_records_go_to_each_dead_letter_queue(
    pipeline: Pipeline, database_url: str
) -> None:
    load = await under_load(pipeline, 40)
    poison = [
        b"\x8f\x00 random bytes",
        b'{"shape": "wrong"}',
        b'{"event_type": "NoSuchEvent", "schema_version": 1}',
        b'{"event_type": "CaseClosed", "schema_version": 99}',
    ]
    producer = make_producer(pipeline.settings)
    await producer.start()
    try:
        for topic in CONSUMED:
            for value in poison:
                await (await producer.send(pipeline.settings.topic(topic), value, key=b"poison"))
    finally:
        await producer.stop()
    # Each consumer of a topic dead-letters its copy: dept.hr_registration.outcomes has
    # two consumers (the router, and social security learning HR's decisions).
    consumers = len(CONSUMED) + 1

    async def all_dead_lettered() -> bool:
        dead = sum([len(await read_topic(pipeline.settings, dlq(t))) for t in CONSUMED])
        return dead >= len(poison) * consumers

    await wait_for(all_dead_lettered, 60, "every consumer's copy of the poison dead-lettered")
    await load.stop()
    outcome = await account(pipeline, load, database_url, dlq_topics=CONSUMED)
    print(outcome.line("poison", f"{len(poison)} poison records on each of {len(CONSUMED)} topics"))
    assert outcome.dlq == len(poison) * consumers
    assert outcome.closed == outcome.accepted
    assert outcome.duplicates == 0
    assert outcome.missing_from_audit == 0
    # The audit reports the poison as malformed records, and nothing else.
    assert outcome.violations == len(poison) * len(CONSUMED)


@pytest.mark.timeout(600)
async def test_overlapping_faults(pipeline: Pipeline, database_url: str, stack: Stack) -> None:
    """Faults on top of each other, bounded in time: kill -9 of a random service (intake
    included) every few seconds, each restarted a moment later, while the broker is away
    for 20 s, PostgreSQL restarts inside that outage, and intake is killed and restarted
    inside it too (it must serve windows into its outbox with no broker). The windows
    retry with the same Idempotency-Key throughout."""
    cfg = local(stack)
    seed = int(os.environ.get("ONEDOOR_FAULT_SEED", time.time()))
    print(f"overlapping faults: ONEDOOR_FAULT_SEED={seed}")
    rng = random.Random(seed)
    load = await under_load(pipeline, 40, rate=30)
    acting = asyncio.Lock()  # one kill-and-restart at a time
    calm = asyncio.Event()
    killed: list[str] = []

    async def pause(seconds: float) -> None:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(calm.wait(), seconds)

    async def chaos() -> None:
        while not calm.is_set():
            await pause(rng.uniform(2.0, 5.0))
            async with acting:
                victim = rng.choice(SERVICES)
                await asyncio.to_thread(pipeline.kill, victim)
                killed.append(victim)
                await pause(rng.uniform(0.5, 2.0))  # down for a moment, as a crash loop is
                start(victim)

    since = dict.fromkeys(SERVICES, 0)  # where each service's log was at its last start

    def start(name: str) -> None:
        since[name] = (pipeline.logs / f"{name}.log").stat().st_size
        pipeline.start(name)

    def down() -> list[str]:
        """The services whose last start has not got through start-up (yet)."""
        waiting = []
        for name in SERVICES:
            with (pipeline.logs / f"{name}.log").open("rb") as log:
                log.seek(since[name])
                if b'"service started"' not in log.read():
                    waiting.append(name)
        return waiting

    monkey = asyncio.create_task(chaos())
    try:
        outage = asyncio.create_task(asyncio.to_thread(local_stack.restart_kafka, cfg, 20.0))
        await wait_for(lambda: local_stack.kafka_running(cfg) is None, 60, "the broker stopped")
        async with acting:
            await asyncio.to_thread(local_stack.restart_postgres, cfg)
            await asyncio.to_thread(pipeline.kill, "intake")
            killed.append("intake")
            start("intake")
            await load.accepted_more(10, "accepted by an intake restarted with no broker")
        assert not outage.done(), "the broker came back before the restarted intake accepted"
        await outage
        await load.accepted_more(60, "accepted after the broker's return", seconds=120)
    finally:
        calm.set()
        await monkey
    # No service left down: each start, the last restarts included, got through start-up.
    await wait_for(lambda: not down(), 120, "every service through start-up again")
    await load.stop()
    outcome = await account(pipeline, load, database_url, dlq_topics=CONSUMED, deadline_s=240)
    report(
        outcome,
        "overlapping faults",
        f"kill -9 of {len(killed)} services ({', '.join(killed)}), broker down 20 s, "
        f"PostgreSQL restarted and intake restarted during the outage; seed {seed}",
    )
    assert sorted(pipeline.alive()) == sorted(SERVICES), "a service was left down"


@pytest.fixture
def cluster(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[local_stack.StackConfig]:
    """A three-node KRaft cluster of its own (each node broker and controller), beside the
    session's single broker, sharing its jars."""
    single = local(stack)
    data = tmp_path_factory.mktemp("cluster")
    cfg = local_stack.StackConfig(
        data_dir=data,
        kafka_port=28292,
        kafka_controller_port=28293,
        pg_port=single.pg_port,
        kafka_heap="512m",
        start_timeout_s=120,
        kafka_nodes=3,
    )
    cfg.kafka_dir.mkdir(parents=True)
    cfg.jars_dir.symlink_to(single.jars_dir, target_is_directory=True)
    local_stack.start_kafka(cfg)
    try:
        yield cfg
    finally:
        local_stack.stop_kafka(cfg)


@pytest.fixture
def cluster_pipeline(
    cluster: local_stack.StackConfig, database_url: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Pipeline]:
    with run_services(
        {name: ["-m", f"services.{name}"] for name in SERVICES},
        kafka=kafka_security.KafkaAccess.of(cluster),
        database_url=database_url,
        logs=tmp_path_factory.mktemp("faults-cluster"),
        service_env={"audit": {"ONEDOOR_HTTP_PORT": str(free_port())}},
        extra_env={
            "ONEDOOR_CONSUMER_MAX_RECORDS": "20",
            "ONEDOOR_TOPIC_REPLICATION": "3",
            "ONEDOOR_TOPIC_MIN_INSYNC_REPLICAS": "2",
        },
    ) as pipeline:
        yield pipeline


async def test_three_broker_cluster_loses_a_broker(
    cluster_pipeline: Pipeline, cluster: local_stack.StackConfig, database_url: str
) -> None:
    pipeline = cluster_pipeline
    load = await under_load(pipeline, 60)
    victim = local_stack.kafka_running(cluster, 1)
    assert victim is not None
    os.kill(victim, signal.SIGKILL)
    # Two of three brokers: still min.insync.replicas=2, the pipeline keeps going.
    await load.accepted_more(80, "accepted with two brokers of three")
    await asyncio.to_thread(local_stack.start_kafka, cluster)  # brings node 2 back
    await load.accepted_more(60, "accepted after broker 2's restart")
    await load.stop()
    outcome = await account(pipeline, load, database_url, dlq_topics=CONSUMED, deadline_s=180)
    report(outcome, "three brokers", "kill -9 of broker 2 of 3, restarted after 80 more cases")
    assert sorted(pipeline.alive()) == sorted(SERVICES)
