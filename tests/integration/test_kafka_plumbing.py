"""The broker plumbing against the real Apache Kafka of the local stack."""

from __future__ import annotations

import asyncio

import pytest
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType

from shared.contracts.topology import CASES_ACCEPTED
from shared.messaging.kafka import make_admin, make_consumer, make_producer
from shared.messaging.topics import ensure_topics
from shared.platform.settings import Settings

pytestmark = pytest.mark.integration


async def _consume(settings: Settings, topic: str, group: str, n: int, commit: bool) -> list[bytes]:
    consumer = make_consumer(settings, topic, group_id=group)
    await consumer.start()
    got: list[bytes] = []
    try:
        async with asyncio.timeout(30):
            while len(got) < n:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    got += [r.value for r in records]
        if commit:
            await consumer.commit()
    finally:
        await consumer.stop()
    return got


async def test_idempotent_producer_and_manual_commit_in_a_group(settings: Settings) -> None:
    await ensure_topics(settings, [CASES_ACCEPTED])
    topic = settings.topic(CASES_ACCEPTED)
    producer = make_producer(settings)
    await producer.start()
    try:
        sends = [await producer.send(topic, f"m{i}".encode(), key=b"case-1") for i in range(20)]
        await asyncio.gather(*sends)
    finally:
        await producer.stop()

    # Read without committing: a restarted member of the group sees everything again.
    first = await _consume(settings, topic, "g1", 20, commit=False)
    again = await _consume(settings, topic, "g1", 20, commit=True)
    assert (
        first == again == [f"m{i}".encode() for i in range(20)]
    )  # one key: one partition, in order

    # After the manual commit, the group has nothing left to read.
    consumer = make_consumer(settings, topic, group_id="g1")
    await consumer.start()
    try:
        leftover = await consumer.getmany(timeout_ms=1500)
    finally:
        await consumer.stop()
    assert sum(len(v) for v in leftover.values()) == 0


async def test_topic_provisioning_is_idempotent(settings: Settings) -> None:
    names = ["cases.accepted", "cases.routing"]
    created = await ensure_topics(settings, names)
    assert sorted(created) == sorted(settings.topic(n) for n in names)
    assert await ensure_topics(settings, names) == []

    admin = make_admin(settings)
    await admin.start()
    try:
        described = await admin.describe_topics([settings.topic("cases.accepted")])
        configs = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, settings.topic("cases.accepted"))]
        )
    finally:
        await admin.close()
    assert len(described[0]["partitions"]) == settings.topic_partitions
    entries = {c[0]: c[1] for c in configs[0].resources[0][4]}
    assert entries["retention.ms"] == "-1"
