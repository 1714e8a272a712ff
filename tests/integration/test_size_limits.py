"""The one size budget against the real broker: topics that take less refuse a
service's start, and the relay moves a row no broker will take aside and goes on."""

from __future__ import annotations

import asyncio
import json
from uuid import uuid4

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import NewTopic
from aiokafka.errors import KafkaTimeoutError

from shared.contracts.topology import CASES_ROUTING, dlq
from shared.messaging import MESSAGING_MIGRATIONS
from shared.messaging.kafka import make_admin, read_to_end
from shared.messaging.outbox import OutboxRelay, OutboxRow, insert_rows
from shared.messaging.topics import ensure_topics
from shared.platform.db import create_pool, migrate_dsn
from shared.platform.limits import LimitsError
from shared.platform.settings import Settings
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

SMALL = 4096


async def _create_small_topic(settings: Settings, name: str) -> None:
    admin = make_admin(settings)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    settings.topic(name),
                    num_partitions=1,
                    replication_factor=1,
                    topic_configs={"max.message.bytes": str(SMALL)},
                )
            ],
            timeout_ms=30_000,
        )
    finally:
        await admin.close()


async def test_a_topic_created_earlier_with_smaller_records_refuses_the_start(
    settings: Settings,
) -> None:
    await _create_small_topic(settings, CASES_ROUTING)
    with pytest.raises(LimitsError, match=r"max\.message\.bytes") as refused:
        await ensure_topics(settings, [CASES_ROUTING])
    assert str(SMALL) in str(refused.value)
    assert str(settings.max_record_bytes) in str(refused.value)


def _row(n: int, size: int = 0) -> OutboxRow:
    value = json.dumps({"n": n, "pad": "x" * size}).encode()
    return OutboxRow(uuid4(), CASES_ROUTING, b"case-1", value, (("event_type", "Test"),))


async def test_the_relay_moves_unpublishable_rows_aside_and_publishes_the_rest_in_order(
    settings: Settings, database_url: str
) -> None:
    """One row the broker refuses (over the topic's max.message.bytes), one the client
    refuses (over max_request_size): both kept with their bytes and the reason, and the
    rows before, between and after them published in order."""
    settings = settings.model_copy(update={"max_record_bytes": 256 * 1024})
    schema = f"relay_dead_{uuid4().hex[:8]}"
    await migrate_dsn(database_url, schema, [MESSAGING_MIGRATIONS])
    await _create_small_topic(settings, CASES_ROUTING)
    await ensure_topics(settings, [dlq(CASES_ROUTING)])
    pool = await create_pool(database_url, schema)
    relay = OutboxRelay(settings, pool, name=schema)
    rows = [_row(0), _row(1, 2 * SMALL), _row(2), _row(3, 300 * 1024), _row(4)]
    try:
        async with pool.acquire() as conn, conn.transaction():
            await insert_rows(conn, rows)
        assert await relay.publish_pending() == 5
        assert await relay.backlog() == 0
        assert await relay.dead_letters() == 2
        kept = await pool.fetch(
            "SELECT event_id, topic, value, value_size, reason, error, dlq_topic"
            " FROM outbox_dead_letters ORDER BY id"
        )
        assert [r["event_id"] for r in kept] == [rows[1].event_id, rows[3].event_id]
        assert [bytes(r["value"]) for r in kept] == [rows[1].value, rows[3].value]
        assert [r["value_size"] for r in kept] == [len(rows[1].value), len(rows[3].value)]
        assert {r["reason"] for r in kept} == {"too_large"}
        assert all("MessageSizeTooLarge" in r["error"] for r in kept)
        assert relay.dead_lettered == 2
        # The relay goes on: a row written afterwards is published as usual.
        async with pool.acquire() as conn, conn.transaction():
            await insert_rows(conn, [_row(5)])
        assert await relay.publish_pending() == 1
    finally:
        await relay._drop_producer()
        await relay._drop_connection()
        await pool.close()
    published = await read_to_end(settings, [TopicPartition(settings.topic(CASES_ROUTING), 0)])
    assert [json.loads(r.value)["n"] for r in published] == [0, 2, 4, 5]


async def test_a_row_the_broker_refuses_for_its_content_goes_to_the_topics_dlq(
    settings: Settings, database_url: str
) -> None:
    """A keyless record on a compacted topic is refused (INVALID_RECORD) whatever its
    size: it fits its DLQ, so it goes there with the reason; the table says where."""
    schema = f"relay_dlq_{uuid4().hex[:8]}"
    await migrate_dsn(database_url, schema, [MESSAGING_MIGRATIONS])
    admin = make_admin(settings)
    await admin.start()
    try:
        await admin.create_topics(
            [
                NewTopic(
                    settings.topic(CASES_ROUTING),
                    num_partitions=1,
                    replication_factor=1,
                    topic_configs={"cleanup.policy": "compact"},
                )
            ],
            timeout_ms=30_000,
        )
    finally:
        await admin.close()
    await ensure_topics(settings, [dlq(CASES_ROUTING)])
    pool = await create_pool(database_url, schema)
    relay = OutboxRelay(settings, pool, name=schema)
    keyless = OutboxRow(uuid4(), CASES_ROUTING, None, b'{"n": 1}', (("event_type", "Test"),))
    try:
        async with pool.acquire() as conn, conn.transaction():
            await insert_rows(conn, [_row(0), keyless, _row(2)])
        assert await relay.publish_pending() == 3
        kept = await pool.fetchrow("SELECT * FROM outbox_dead_letters")
        assert kept is not None
        assert kept["event_id"] == keyless.event_id
        assert kept["reason"] == "refused_by_broker"
        assert kept["value"] is None  # on the DLQ, not kept twice
        assert kept["dlq_topic"] == dlq(CASES_ROUTING)
    finally:
        await relay._drop_producer()
        await relay._drop_connection()
        await pool.close()
    name = settings.topic(dlq(CASES_ROUTING))
    parked = await read_to_end(
        settings, [TopicPartition(name, p) for p in range(settings.topic_partitions)]
    )
    assert [r.value for r in parked] == [keyless.value]
    headers = {k: v.decode() for k, v in parked[0].headers}
    assert headers["dlq.reason"] == "relay_refused_by_broker"
    assert headers["dlq.original.topic"] == CASES_ROUTING
    published = await read_to_end(settings, [TopicPartition(settings.topic(CASES_ROUTING), 0)])
    assert [json.loads(r.value)["n"] for r in published] == [0, 2]


class _FlakyProducer:
    """Fails the row ``n == 1`` with a transient error ``failures`` times."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.sent: list[int] = []

    async def send(self, topic: str, value: bytes, **_: object) -> asyncio.Future[None]:
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        n = json.loads(value)["n"]
        if n == 1 and self.failures:
            self.failures -= 1
            future.set_exception(KafkaTimeoutError())
        else:
            self.sent.append(n)
            future.set_result(None)
        return future

    async def stop(self) -> None:
        return None


async def test_a_row_failing_for_a_transient_reason_is_retried_with_back_off_never_dropped(
    settings: Settings, database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    schema = f"relay_retry_{uuid4().hex[:8]}"
    await migrate_dsn(database_url, schema, [MESSAGING_MIGRATIONS])
    pool = await create_pool(database_url, schema)
    relay = OutboxRelay(settings, pool, name=schema)
    producer = _FlakyProducer(failures=2)

    async def flaky() -> _FlakyProducer:
        return producer

    monkeypatch.setattr(relay, "_ensure_producer", flaky)
    stop = asyncio.Event()
    try:
        async with pool.acquire() as conn, conn.transaction():
            await insert_rows(conn, [_row(0), _row(1), _row(2)])
        running = asyncio.create_task(relay.run(stop))

        async def drained() -> bool:
            return await relay.backlog() == 0

        await wait_for(drained, 30, "the outbox drained")
        stop.set()
        await running
    finally:
        await pool.close()
    assert relay.retries == 2  # visible in /health as outbox_retries
    assert sorted(producer.sent) == [0, 1, 2]
    assert relay.dead_lettered == 0
