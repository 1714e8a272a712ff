"""The batch consumer engine on the real broker and database: inbox, outbox, DLQ."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import uuid4

import asyncpg
import pytest
from aiokafka import AIOKafkaConsumer

from services.audit import dlq
from shared.contracts.events import CaseClosed, CaseReviewFlagged, Event
from shared.contracts.topology import (
    CASES_ROUTING,
    OPS_REDRIVES,
    dept_outcomes,
    dept_tasks,
    event_log_pattern,
)
from shared.contracts.topology import dlq as dlq_of
from shared.messaging import MESSAGING_MIGRATIONS
from shared.messaging.consumer import BatchProcessor, BatchResult, ConsumerLoop, Record, Tx
from shared.messaging.kafka import client_options, make_admin, make_producer
from shared.messaging.outbox import OutboxRelay, OutboxWriter
from shared.messaging.signing import SIGNATURE_HEADER, SIGNER_HEADER, PublicKeys, Signer
from shared.messaging.testing import signer_for
from shared.messaging.topics import ensure_topics
from shared.platform.db import create_pool, migrate_dsn
from shared.platform.settings import Settings
from tests.support.waiting import wait_for

pytestmark = pytest.mark.integration

SCHEMA = "engine"
# The engine reads any declared topic (dead letters go to the DLQ of a declared topic
# only); cases.routing carries the CaseClosed events the handler below applies.
IN = CASES_ROUTING
IN_DLQ = dlq_of(IN)
OUT = dept_tasks("engine")  # a declared topic the engine under test does not read


@dataclass
class Engine:
    settings: Settings
    pool: asyncpg.Pool

    async def effects(self) -> list[str]:
        rows = await self.pool.fetch("SELECT message FROM effects ORDER BY id")
        return [r["message"] for r in rows]


BUG = {"present": True}  # 'boom' fails while the bug is present; the test fixes it


async def handler(tx: Tx, event: Event) -> None:
    """Applies a CaseClosed: one row, one follow-up event; 'boom' is a handler bug."""
    assert isinstance(event, CaseClosed)
    if event.message == "boom" and BUG["present"]:
        raise ValueError("the handler cannot take this one")
    await tx.conn.execute("INSERT INTO effects (message) VALUES ($1)", event.message)
    tx.emit(
        OUT,
        CaseReviewFlagged(
            **event.caused(),
            producer="engine",
            step_index=0,
            department="d",
            reason_code="seen",
            message=event.message or "",
        ),
    )


@pytest.fixture
async def engine(settings: Settings, database_url: str, tmp_path: Path) -> AsyncIterator[Engine]:
    own = tmp_path / "migrations"
    own.mkdir()
    (own / "001_effects.sql").write_text(
        "CREATE TABLE effects (id bigserial PRIMARY KEY, message text NOT NULL);"
    )
    await migrate_dsn(database_url, SCHEMA, [MESSAGING_MIGRATIONS, own])
    pool = await create_pool(database_url, SCHEMA)
    await pool.execute("TRUNCATE effects, inbox, outbox")
    await ensure_topics(settings, [IN, IN_DLQ, OUT, OPS_REDRIVES])
    BUG["present"] = True
    writer = OutboxWriter(signer_for(settings.keys_dir, "engine"))
    relay = OutboxRelay(settings, pool, name="engine")
    processor = BatchProcessor(
        settings,
        pool,
        writer,
        handler,
        consumer_name="engine",
        keys=PublicKeys.load(settings.registry_path()),
    )
    loop = ConsumerLoop(settings, [IN], group_id="engine", processor=processor, relay=relay)
    stop = asyncio.Event()
    tasks = [asyncio.create_task(relay.run(stop)), asyncio.create_task(loop.run(stop))]
    try:
        yield Engine(settings, pool)
    finally:
        stop.set()
        await asyncio.gather(*tasks)
        await pool.close()


def closed(message: str) -> CaseClosed:
    case = uuid4()
    return CaseClosed(
        case_id=case, correlation_id=case, producer="test", outcome="approved", message=message
    )


async def produce(settings: Settings, values: list[bytes]) -> None:
    producer = make_producer(settings)
    await producer.start()
    try:
        # One key: one partition, so the order below is the order consumed.
        # Signed by the topic's writer, as the router signs it (poison included).
        router = Signer.load(settings.keys_dir, "router")
        futures = [
            await producer.send(
                settings.topic(IN),
                v,
                key=b"k",
                headers=[(k, h.encode()) for k, h in router.headers(v)],
            )
            for v in values
        ]
        await asyncio.gather(*futures)
    finally:
        await producer.stop()


async def read_all(settings: Settings, topic: str, n: int) -> list[Any]:
    consumer = AIOKafkaConsumer(
        settings.topic(topic),
        **client_options(settings),
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    got: list[Any] = []
    try:
        async with asyncio.timeout(30):
            while len(got) < n:
                batch = await consumer.getmany(timeout_ms=300)
                for records in batch.values():
                    got += records
    finally:
        await consumer.stop()
    return got


async def eventually(check: Callable[[], Awaitable[bool]], seconds: float = 30) -> None:
    await wait_for(check, seconds, getattr(check, "__name__", "the condition"))


async def test_poison_records_go_to_the_dlq_and_the_consumer_keeps_going(engine: Engine) -> None:
    good = closed("after the poison")
    unknown_type = {"event_type": "NoSuchThing", "schema_version": 1}
    newer = good.to_dict() | {"schema_version": 99, "event_id": str(uuid4())}
    await produce(
        engine.settings,
        [
            b"\x00\xff random bytes",
            json.dumps({"event_type": "CaseClosed", "schema_version": 1, "x": 1}).encode(),
            json.dumps(unknown_type).encode(),
            json.dumps(newer).encode(),
            good.to_json(),
        ],
    )
    dead = await read_all(engine.settings, IN_DLQ, 4)
    headers = [{k: v.decode() for k, v in r.headers} for r in dead]
    assert [h["dlq.reason"] for h in headers] == [
        "malformed",
        "malformed",
        "unknown_event_type",
        "unsupported_schema_version",
    ]
    assert [int(h["dlq.original.offset"]) for h in headers] == [0, 1, 2, 3]
    assert {h["dlq.original.topic"] for h in headers} == {IN}
    assert dead[0].value == b"\x00\xff random bytes"  # the original bytes, untouched
    await eventually(lambda: _equals(engine.effects(), ["after the poison"]))


async def _equals(coro: Awaitable[list[str]], expected: list[str]) -> bool:
    return await coro == expected


async def test_a_redelivered_event_changes_nothing(engine: Engine) -> None:
    event = closed("once")
    await produce(engine.settings, [event.to_json(), event.to_json(), closed("marker").to_json()])
    await eventually(lambda: _equals(engine.effects(), ["once", "marker"]))
    out = await read_all(engine.settings, OUT, 2)
    # Keyed by case: the two follow-ups may sit in different partitions, in any order.
    assert sorted(json.loads(r.value)["message"] for r in out) == ["marker", "once"]


async def test_a_failing_handler_dead_letters_only_its_record(engine: Engine) -> None:
    await produce(
        engine.settings,
        [closed("before").to_json(), closed("boom").to_json(), closed("after").to_json()],
    )
    await eventually(lambda: _equals(engine.effects(), ["before", "after"]))
    dead = await read_all(engine.settings, IN_DLQ, 1)
    headers = {k: v.decode() for k, v in dead[0].headers}
    assert headers["dlq.reason"] == "handler_error"
    assert "cannot take this one" in headers["dlq.error"]
    assert json.loads(dead[0].value)["message"] == "boom"


async def test_emitted_events_are_signed_by_the_service(engine: Engine) -> None:
    await produce(engine.settings, [closed("signed").to_json()])
    out = await read_all(engine.settings, OUT, 1)
    headers = {k: v.decode() for k, v in out[0].headers}
    assert headers[SIGNER_HEADER] == "engine"
    keys = PublicKeys.load(engine.settings.keys_dir)
    assert keys.verify("engine", out[0].value, headers[SIGNATURE_HEADER])
    assert not keys.verify("engine", out[0].value + b" ", headers[SIGNATURE_HEADER])


async def test_a_dead_letter_is_redriven_once_after_the_fix(engine: Engine) -> None:
    boom = closed("boom")
    await produce(engine.settings, [boom.to_json(), closed("next").to_json()])
    await eventually(lambda: _equals(engine.effects(), ["next"]))
    (dead,) = await read_all(engine.settings, IN_DLQ, 1)

    BUG["present"] = False  # the fix is deployed
    # A plain redelivery of the dead-lettered record is still a no-op ...
    await produce(engine.settings, [boom.to_json(), closed("marker").to_json()])
    await eventually(lambda: _equals(engine.effects(), ["next", "marker"]))
    # ... an operator's re-drive processes it, once, and is on the log.
    recorded = await dlq.redrive(
        engine.settings, IN_DLQ, dead.partition, dead.offset, reason="bug fixed", operator="ops-1"
    )
    await eventually(lambda: _equals(engine.effects(), ["next", "marker", "boom"]))
    (logged,) = await read_all(engine.settings, OPS_REDRIVES, 1)
    assert json.loads(logged.value)["event_id"] == str(recorded.event_id)
    assert recorded.redriven_event_id == boom.event_id
    with pytest.raises(dlq.RedriveError, match="re-driven already"):
        await dlq.redrive(
            engine.settings, IN_DLQ, dead.partition, dead.offset, reason="again", operator="x"
        )
    listed = [
        d.summary(await dlq.redrives(engine.settings))
        for d in await dlq.dead_letters(engine.settings)
    ]
    assert [row["redriven_by"] is not None for row in listed] == [True]


class Collector:
    """A processor that only remembers what it was given."""

    def __init__(self) -> None:
        self.values: list[bytes | None] = []

    async def process(self, records: Sequence[Record]) -> BatchResult:
        self.values += [r.value for r in records]
        return BatchResult(processed=len(records))


async def test_a_pattern_consumer_reads_a_topic_created_after_it_started(
    settings: Settings,
) -> None:
    # The audit subscribes by pattern. A department added while it runs must be read
    # within the refresh interval, not after the client's default five minutes.
    settings = settings.model_copy(update={"consumer_pattern_refresh_ms": 500})
    early, late = dept_outcomes("early"), dept_outcomes("late")
    await ensure_topics(settings, [early])
    collector = Collector()
    pattern = event_log_pattern(settings.topic_prefix)
    loop = ConsumerLoop(settings, [], group_id="watcher", processor=collector, pattern=pattern)
    stop = asyncio.Event()
    started = asyncio.Event()
    task = asyncio.create_task(loop.run(stop, on_ready=started.set))
    try:
        await asyncio.wait_for(started.wait(), 30)
        await ensure_topics(settings, [late])
        producer = make_producer(settings)
        await producer.start()
        try:
            await (await producer.send(settings.topic(late), b"from the late topic"))
        finally:
            await producer.stop()

        async def arrived() -> bool:
            return b"from the late topic" in collector.values

        await eventually(arrived, seconds=30)
    finally:
        stop.set()
        await task


async def test_consumer_groups_carry_the_deployment_prefix(engine: Engine) -> None:
    # Two deployments (or test runs) on one cluster must not share a group's members.
    await produce(engine.settings, [closed("grouped").to_json()])

    async def handled() -> bool:
        return "grouped" in await engine.effects()

    await eventually(handled)
    admin = make_admin(engine.settings)
    await admin.start()
    try:
        groups = {g[0] for g in await admin.list_consumer_groups()}
    finally:
        await admin.close()
    assert f"{engine.settings.topic_prefix}engine" in groups


class Gate:
    """A processor that holds its first batch until released, then only counts."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.holding = asyncio.Event()
        self.taken = 0

    async def process(self, records: Sequence[Record]) -> BatchResult:
        self.holding.set()
        await self.release.wait()
        self.taken += len(records)
        return BatchResult(processed=len(records))


async def test_a_loop_reports_the_records_it_has_not_taken_yet(settings: Settings) -> None:
    # Operators read a consumer's lag in /health; the audit, running at a lower CPU
    # priority, shows there how far a burst has put it behind.
    settings = settings.model_copy(update={"consumer_max_records": 1})
    await ensure_topics(settings, [IN])
    await produce(settings, [closed(f"r{i}").to_json() for i in range(20)])
    gate = Gate()
    loop = ConsumerLoop(settings, [IN], group_id="lagging", processor=gate)
    assert await loop.lag() is None  # not consuming yet
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:
        await asyncio.wait_for(gate.holding.wait(), 30)
        lag = await loop.lag()
        assert lag == 19, lag  # one record in hand, nineteen still on the broker
        gate.release.set()

        async def caught_up() -> bool:
            return gate.taken == 20 and await loop.lag() == 0

        await eventually(caught_up)
    finally:
        gate.release.set()
        stop.set()
        await task


async def test_the_last_batch_offsets_are_committed_before_the_loop_stops(
    settings: Settings,
) -> None:
    # A loop that stops finishes the batch in hand and commits its offsets: without
    # that commit, a restart would read the last batch again.
    settings = settings.model_copy(update={"consumer_max_records": 3})
    await ensure_topics(settings, [IN])
    await produce(settings, [closed(f"r{i}").to_json() for i in range(20)])
    collector = Collector()
    loop = ConsumerLoop(settings, [IN], group_id="committing", processor=collector)
    stop = asyncio.Event()
    task = asyncio.create_task(loop.run(stop))
    try:

        async def all_taken() -> bool:
            return len(collector.values) == 20

        await eventually(all_taken)
    finally:
        stop.set()
        await task
    assert loop.batches >= 7  # 20 records, at most 3 a batch
    admin = make_admin(settings)
    await admin.start()
    try:
        committed = await admin.list_consumer_group_offsets(settings.group("committing"))
    finally:
        await admin.close()
    assert [meta.offset for meta in committed.values()] == [20]  # one key: one partition
