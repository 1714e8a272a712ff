"""The broker itself refuses: each service's principal reads and writes only what the
topology gives it (ACLs from shared.messaging.acls, applied with the stack's admin).

Every attempt is a real client of the principal against the real broker: a producer
sending one record, or a consumer fetching the record the admin put there. The matrix
is printed (run with -s) as principal x topic x action -> result.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.client import AIOKafkaClient
from aiokafka.errors import KafkaError, TopicAuthorizationFailedError

from services.catalogue import default_catalogue
from shared.contracts.topology import (
    AUDIT,
    CASES_ACCEPTED,
    CASES_ROUTING,
    INTAKE,
    OPERATOR,
    OPS_REDRIVES,
    ROUTER,
    all_topics,
    dept_outcomes,
    dept_tasks,
    dlq,
    event_log_topics,
)
from shared.messaging import principals
from shared.messaging.acls import Binding, Operation, Resource
from shared.messaging.kafka import client_options, make_producer
from shared.messaging.topics import ensure_topics
from shared.platform.settings import Settings
from tests.conftest import Stack

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

HR, SS = "hr_registration", "social_security"
OK, DENIED = "allowed", "TopicAuthorizationFailedError"
WRITE, READ = "write", "read"

# (principal, logical topic, action) -> what the broker answers.
EXPECTED: list[tuple[str, str, str, str]] = [
    # A department: its own tasks in, its own outcomes out, nothing else.
    (HR, dept_tasks(HR), READ, OK),
    (HR, dept_outcomes(HR), WRITE, OK),
    (HR, dept_outcomes(SS), WRITE, DENIED),
    (HR, CASES_ACCEPTED, READ, DENIED),
    (HR, CASES_ROUTING, WRITE, DENIED),
    (HR, dept_tasks(SS), READ, DENIED),
    (HR, dept_tasks(HR), WRITE, DENIED),
    (SS, dept_tasks(SS), READ, OK),
    (SS, dept_outcomes(HR), READ, OK),  # it learns from HR's outcomes
    (SS, dept_outcomes(SS), WRITE, OK),
    (SS, dept_outcomes(HR), WRITE, DENIED),
    (SS, CASES_ACCEPTED, READ, DENIED),
    # Intake: cases.accepted out, the routing slip in.
    (INTAKE, CASES_ACCEPTED, WRITE, OK),
    (INTAKE, CASES_ROUTING, READ, OK),
    (INTAKE, CASES_ROUTING, WRITE, DENIED),
    (INTAKE, dept_tasks(HR), WRITE, DENIED),
    (INTAKE, dept_outcomes(HR), WRITE, DENIED),
    (INTAKE, CASES_ACCEPTED, READ, DENIED),
    # The router: what it routes in, what it emits out.
    (ROUTER, CASES_ACCEPTED, READ, OK),
    (ROUTER, dept_outcomes(SS), READ, OK),
    (ROUTER, dept_tasks(HR), WRITE, OK),
    (ROUTER, CASES_ROUTING, WRITE, OK),
    (ROUTER, dept_outcomes(HR), WRITE, DENIED),
    (ROUTER, CASES_ACCEPTED, WRITE, DENIED),
    # The audit reads every event topic and writes only its dead letters.
    *((AUDIT, t, READ, OK) for t in event_log_topics((HR, SS))),
    (AUDIT, dept_outcomes(HR), WRITE, DENIED),
    (AUDIT, CASES_ACCEPTED, WRITE, DENIED),
    (AUDIT, dlq(CASES_ACCEPTED), WRITE, OK),
    # The operator's DLQ tool: dead letters in, a signed redrive out.
    (OPERATOR, dlq(dept_tasks(HR)), READ, OK),
    (OPERATOR, OPS_REDRIVES, WRITE, OK),
    (OPERATOR, CASES_ACCEPTED, READ, DENIED),
]


@pytest.fixture
async def acl_settings(stack: Stack, topic_prefix: str) -> AsyncIterator[Settings]:
    """This test's topics (every one of the deployment, made by the admin, one record
    each) and the ACLs of its prefix, revoked afterwards."""
    admin = stack.admin.model_copy(update={"topic_prefix": topic_prefix, "topic_partitions": 1})
    departments = sorted(default_catalogue().departments())
    await stack.kafka.provision(topic_prefix, departments)
    try:
        await ensure_topics(admin, all_topics(departments))
        producer = make_producer(admin)
        await producer.start()
        try:
            for name in all_topics(departments):
                await producer.send_and_wait(admin.topic(name), b"admin", key=b"k")
        finally:
            await producer.stop()
        yield admin
    finally:
        await stack.kafka.unprovision(topic_prefix)


async def attempt(settings: Settings, topic: str, action: str) -> str:
    """``allowed``, or the name of the error the broker's answer raised."""
    try:
        if action == WRITE:
            await _write(settings, topic)
        else:
            await _read(settings, topic)
    except KafkaError as exc:
        return type(exc).__name__
    return OK


async def _write(settings: Settings, topic: str) -> None:
    producer = make_producer(settings, request_timeout_ms=10_000)
    await producer.start()
    try:
        await producer.send_and_wait(settings.topic(topic), b"attempt", key=b"k")
    finally:
        await producer.stop()


async def _read(settings: Settings, topic: str) -> None:
    """Fetch the admin's record. A principal that may not even DESCRIBE the topic gets
    TOPIC_AUTHORIZATION_FAILED in the metadata answer (the consumer would wait for a
    leader it is never told); one that may describe it but not read it gets it in the
    fetch answer."""
    client = AIOKafkaClient(**client_options(settings))
    await client.bootstrap()
    try:
        await client.add_topic(settings.topic(topic))
        if settings.topic(topic) in client.cluster.unauthorized_topics:
            raise TopicAuthorizationFailedError(settings.topic(topic))
    finally:
        await client.close()
    consumer = AIOKafkaConsumer(
        **client_options(settings), enable_auto_commit=False, auto_offset_reset="earliest"
    )
    await consumer.start()
    try:
        tp = TopicPartition(settings.topic(topic), 0)
        consumer.assign([tp])
        got: list[object] = []
        async with asyncio.timeout(20):
            while not got:
                got = (await consumer.getmany(tp, timeout_ms=1000)).get(tp, [])
    finally:
        await consumer.stop()


def _print_matrix(rows: list[tuple[str, str, str, str, str]]) -> None:
    print("\nKafka ACL matrix (principal x topic x action -> result)")
    print(f"{'principal':<17}{'topic':<34}{'action':<8}{'result':<32}expected")
    for principal, topic, action, got, want in rows:
        mark = "" if got == want else "   <-- MISMATCH"
        print(f"{principal:<17}{topic:<34}{action:<8}{got:<32}{want}{mark}")


async def test_each_principal_reads_and_writes_only_what_the_topology_gives_it(
    acl_settings: Settings,
) -> None:
    rows = []
    for principal, topic, action, want in EXPECTED:
        got = await attempt(acl_settings.as_principal(principal), topic, action)
        rows.append((principal, topic, action, got, want))
    _print_matrix(rows)
    wrong = [r for r in rows if r[3] != r[4]]
    assert not wrong, wrong


async def test_the_brokers_acls_are_the_computed_ones(stack: Stack, acl_settings: Settings) -> None:
    from deploy.kafka_security import deployment_bindings  # noqa: PLC0415

    prefix = acl_settings.topic_prefix
    computed = deployment_bindings(prefix, default_catalogue().departments())
    held = await principals.acls(stack.admin, prefix)
    assert held == computed
    assert Binding(HR, Resource.TOPIC, f"{prefix}{dept_tasks(HR)}", Operation.READ) in held
    assert Binding(HR, Resource.TOPIC, f"{prefix}{dept_outcomes(SS)}", Operation.WRITE) not in held


async def test_a_client_without_credentials_or_with_a_wrong_password_is_refused(
    acl_settings: Settings, tmp_path: Path
) -> None:
    anonymous = acl_settings.model_copy(update={"kafka_security_protocol": "PLAINTEXT"})
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    impostor = acl_settings.as_principal(HR).model_copy(update={"kafka_password_file": wrong})
    unknown = acl_settings.as_principal("mallory").model_copy(update={"kafka_password_file": wrong})
    results = {
        "no credentials": await attempt(anonymous, dept_outcomes(HR), WRITE),
        "hr_registration, wrong password": await attempt(impostor, dept_outcomes(HR), WRITE),
        "unknown principal": await attempt(unknown, dept_outcomes(HR), WRITE),
    }
    print("\nunauthenticated clients (actor -> result):")
    for actor, result in results.items():
        print(f"  {actor:<34}{result}")
    assert all(r != OK for r in results.values()), results
