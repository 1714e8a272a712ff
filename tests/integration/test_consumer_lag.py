"""Lag that tells the truth, on the real broker: every assigned partition counts, fetched
since the assignment or not, and an unknown figure is None, never 0."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable, Sequence
from uuid import uuid4

import pytest
from aiokafka import ConsumerRebalanceListener, TopicPartition

from shared.contracts.topology import CASES_ROUTING
from shared.messaging.consumer import BatchResult, ConsumerLoop, Record, consumer_lag
from shared.messaging.kafka import make_consumer, make_producer
from shared.messaging.topics import ensure_topics
from shared.platform.settings import Settings
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

TOPIC = CASES_ROUTING
PARTITIONS = 3
N = 30


async def produce(settings: Settings, n: int) -> None:
    """``n`` records spread over every partition of the topic."""
    await ensure_topics(settings.model_copy(update={"topic_partitions": PARTITIONS}), [TOPIC])
    producer = make_producer(settings)
    await producer.start()
    try:
        sent = [
            await producer.send(settings.topic(TOPIC), b"{}", partition=i % PARTITIONS)
            for i in range(n)
        ]
        await asyncio.gather(*sent)
    finally:
        await producer.stop()


class PauseOnAssignment(ConsumerRebalanceListener):  # type: ignore[misc]
    """Pauses what it is given before anything is fetched: a member that has not fetched
    those partitions yet, as just after a restart."""

    def __init__(self) -> None:
        self.consumer: object = None
        self.assigned: set[TopicPartition] = set()

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        return None

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.assigned = set(assigned)
        self.consumer.pause(*self.assigned)  # type: ignore[attr-defined]


async def test_partitions_not_fetched_since_the_assignment_count(settings: Settings) -> None:
    await produce(settings, N)
    consumer = make_consumer(settings, group_id=f"lag-{uuid4().hex[:6]}")
    listener = PauseOnAssignment()
    listener.consumer = consumer
    consumer.subscribe(topics=[settings.topic(TOPIC)], listener=listener)
    await consumer.start()
    try:
        # getmany drives the group join; the paused partitions give nothing.
        async def joined() -> bool:
            await consumer.getmany(timeout_ms=100)
            return len(listener.assigned) == PARTITIONS

        await wait_for(joined, 30, "the member got its partitions")
        # Nothing fetched: the last-fetch highwater the old figure summed is unknown.
        assert all(consumer.highwater(tp) is None for tp in listener.assigned)
        lag = await consumer_lag(consumer, deadline_s=10)
        assert lag.records == N
        assert (lag.partitions, lag.unknown) == (PARTITIONS, 0)
        # One partition fetched, two not: still every record counts.
        first = TopicPartition(settings.topic(TOPIC), 0)
        consumer.resume(first)

        async def fetched() -> bool:
            return consumer.highwater(first) is not None

        await wait_for(fetched, 30, "partition 0 fetched")
        assert (await consumer_lag(consumer, deadline_s=10)).records == N
        # An end offset the broker cannot give by the deadline: unknown, not a part.
        assert (await consumer_lag(consumer, deadline_s=0)).records is None
    finally:
        await consumer.stop()


class Blocking:
    """A processor that holds its first batch until released."""

    def __init__(self) -> None:
        self.holding = asyncio.Event()
        self.release = asyncio.Event()

    async def process(self, records: Sequence[Record]) -> BatchResult:
        self.holding.set()
        await self.release.wait()
        return BatchResult(processed=len(records))


async def test_a_loop_reports_unknown_until_assigned_then_every_waiting_record(
    settings: Settings,
) -> None:
    await produce(settings, N)
    settings = settings.model_copy(update={"consumer_max_records": 1})
    processor = Blocking()
    loop = ConsumerLoop(settings, [TOPIC], group_id=f"lag-{uuid4().hex[:6]}", processor=processor)
    assert (await loop.lag_report()).records is None  # not consuming: unknown, not 0
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        await asyncio.wait_for(processor.holding.wait(), 30)
        # One record in hand (its position moved past it), the rest wait.
        lag = await loop.lag_report(deadline_s=10)
        assert lag.records == N - 1
        assert lag.partitions == PARTITIONS
        assert await loop.lag() == N - 1
        assert await loop.reaches_broker()
    finally:
        stop.set()
        processor.release.set()
        await asyncio.wait_for(task, 30)
