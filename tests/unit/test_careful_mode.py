"""The consumer engine's careful mode, in the unit tier: when a handler raises, the batch
is rolled back and applied again one savepoint per record; the bad record goes to its
topic's DLQ with the reason in the headers, the others are applied exactly once, and a
redelivery of the batch changes nothing."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from services.router.handlers import RouterHandler
from shared.contracts.catalogue import Catalogue
from shared.contracts.events import CaseAccepted, Event, parse_event
from shared.contracts.topology import (
    CASES_ACCEPTED,
    CASES_ROUTING,
    DLQ_CONSUMER,
    DLQ_ERROR,
    DLQ_FAILED_AT,
    DLQ_ORIGINAL_HEADERS,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TOPIC,
    DLQ_REASON,
    OPERATOR,
    dept_tasks,
    dlq,
)
from shared.messaging.consumer import BatchProcessor, Record, Tx
from shared.messaging.outbox import OutboxWriter
from shared.messaging.testing import MemoryStore
from shared.messaging.trust import redrive_headers
from shared.platform.metrics import CASES_CLOSED
from shared.platform.settings import Settings
from tests.support import builders
from tests.support.builders import JOB_FORM, accepted, applicant
from tests.support.fakes import RouterTables
from tests.support.signed import registry, signed, signer

pytestmark = pytest.mark.unit

SETTINGS = Settings(topic_prefix="unit.")
TOPIC = SETTINGS.topic(CASES_ACCEPTED)


@pytest.fixture
def store() -> MemoryStore:
    return MemoryStore(RouterTables())


@pytest.fixture
def router(store: MemoryStore, catalogue: Catalogue, tmp_path: Path) -> BatchProcessor:
    writer = OutboxWriter(signer("router"))
    return BatchProcessor(
        SETTINGS, store, writer, RouterHandler(catalogue), consumer_name="router", keys=registry()
    )


def record_of(topic: str, event: Event | bytes, **kwargs: Any) -> Record:
    """A record on ``topic`` signed by its writer."""
    return signed(topic, event, prefix=SETTINGS.topic_prefix, **kwargs)


def batch() -> tuple[list[Record], CaseAccepted, CaseAccepted, CaseAccepted]:
    """Three CaseAccepted on one partition; the second repeats the first one's case under
    another event id, which the router refuses ("accepted twice")."""
    good = accepted("HR-JOB-REGISTRATION", applicant(1), JOB_FORM)
    twin = accepted("HR-JOB-REGISTRATION", applicant(1), JOB_FORM, case_id=good.case_id)
    other = accepted("HR-JOB-REGISTRATION", applicant(2), JOB_FORM)
    records = [
        record_of(TOPIC, good, offset=10, headers=(("trace", b"t-1"),)),
        record_of(TOPIC, twin, offset=11, headers=(("trace", b"t-2"),)),
        record_of(TOPIC, other, offset=12),
    ]
    return records, good, twin, other


async def test_a_failing_record_is_dead_lettered_and_the_rest_applied_once(
    router: BatchProcessor, store: MemoryStore
) -> None:
    records, good, twin, other = batch()

    result = await router.process(records)

    # The fast attempt was rolled back whole; careful mode committed once.
    assert (store.rollbacks, store.commits) == (1, 1)
    assert (result.processed, result.dead_lettered, result.duplicates) == (2, 1, 0)
    topics = [row.topic for row in store.outbox]
    assert topics == [
        CASES_ROUTING,
        dept_tasks("hr_registration"),
        dlq(CASES_ACCEPTED),
        CASES_ROUTING,
        dept_tasks("hr_registration"),
    ]
    routed = [parse_event(r.value) for r in store.outbox if r.topic == CASES_ROUTING]
    assert [e.causation_id for e in routed] == [good.event_id, other.event_id]
    assert set(store.tables("router").cases) == {good.case_id, other.case_id}

    dead = store.outbox[2]
    assert (dead.value, dead.key) == (records[1].value, records[1].key)  # the original bytes
    assert not dead.sign  # a copy of someone else's record: never signed anew
    headers = dict(dead.headers)
    assert headers[DLQ_REASON] == "handler_error"
    assert "RoutingViolationError" in headers[DLQ_ERROR]
    assert "accepted twice" in headers[DLQ_ERROR]
    assert headers[DLQ_ORIGINAL_TOPIC] == CASES_ACCEPTED  # logical: without the prefix
    assert (headers[DLQ_ORIGINAL_PARTITION], headers[DLQ_ORIGINAL_OFFSET]) == ("0", "11")
    assert json.loads(headers[DLQ_ORIGINAL_HEADERS])["trace"] == "t-2"
    assert json.loads(headers[DLQ_ORIGINAL_HEADERS])["onedoor-signer"] == "intake"
    assert headers[DLQ_CONSUMER] == "router"
    assert headers[DLQ_FAILED_AT]
    assert store.inbox[twin.event_id].dead_letter
    assert not store.inbox[good.event_id].dead_letter

    # The same batch again (offsets not committed before a crash): nothing changes.
    outbox, cases = list(store.outbox), dict(store.tables("router").cases)
    again = await router.process(records)
    assert (again.processed, again.dead_lettered, again.duplicates) == (0, 0, 3)
    assert store.outbox == outbox
    assert store.tables("router").cases == cases


async def test_a_redriven_dead_letter_is_handled_once_more(
    router: BatchProcessor, store: MemoryStore
) -> None:
    records, _, twin, _ = batch()
    await router.process(records)
    dead_letters = len(store.outbox)
    act = builders.redriven(twin, CASES_ACCEPTED, original_offset=11)
    redriven = record_of(
        TOPIC, twin, offset=40, headers=tuple(redrive_headers(signer(OPERATOR), act))
    )

    # Still a bug: it fails again and goes back to the DLQ, once.
    result = await router.process([redriven])
    assert (result.processed, result.dead_lettered) == (0, 1)
    assert [r.topic for r in store.outbox[dead_letters:]] == [dlq(CASES_ACCEPTED)]
    assert store.inbox[twin.event_id].dead_letter
    # A plain redelivery of the original record stays a no-op.
    assert (await router.process([records[1]])).duplicates == 1


async def test_a_record_that_cannot_be_parsed_goes_to_the_dlq_beside_good_ones(
    router: BatchProcessor, store: MemoryStore
) -> None:
    good = accepted("HR-JOB-REGISTRATION", applicant(3), JOB_FORM)
    poison = record_of(TOPIC, b'{"event_type": "NoSuchEvent", "schema_version": 1}', offset=3)
    result = await router.process([poison, record_of(TOPIC, good, offset=4)])
    assert (result.processed, result.dead_lettered) == (1, 1)
    assert (store.commits, store.rollbacks) == (1, 0)  # no handler failed: the fast path
    dead = store.outbox[0]
    assert dead.topic == dlq(CASES_ACCEPTED)
    assert dict(dead.headers)[DLQ_REASON] == "unknown_event_type"
    assert [r.topic for r in store.outbox[1:]] == [CASES_ROUTING, dept_tasks("hr_registration")]
    # Redelivered, the poison is recognised by its place in the log: one dead letter.
    again = await router.process([poison])
    assert (again.dead_lettered, len(store.outbox)) == (0, 3)


async def test_a_database_failure_rolls_the_whole_batch_back_for_a_retry(
    store: MemoryStore, tmp_path: Path
) -> None:
    """Not the record's fault: nothing is dead-lettered, the batch is retried as it was."""
    failing = {"on": True}

    async def handler(tx: Tx, _: object) -> None:
        tx.emit(CASES_ROUTING, parse_event(tx.record.value or b""))
        if failing["on"]:
            raise asyncpg.DeadlockDetectedError("deadlock detected")

    processor = BatchProcessor(
        SETTINGS, store, OutboxWriter(signer("router")), handler, consumer_name="t", keys=registry()
    )
    records = [
        record_of(TOPIC, accepted("HR-JOB-REGISTRATION", applicant(n), JOB_FORM)) for n in (1, 2)
    ]
    with pytest.raises(asyncpg.DeadlockDetectedError):
        await processor.process(records)
    assert (store.outbox, store.inbox, store.rollbacks) == ([], {}, 1)
    failing["on"] = False
    result = await processor.process(records)
    assert (result.processed, result.dead_lettered, len(store.outbox)) == (2, 0, 2)
    assert len(store.inbox) == 2


async def test_closes_are_tallied_only_for_records_whose_effects_commit(
    router: BatchProcessor, store: MemoryStore
) -> None:
    """The router tallies each close for its metrics; a record rolled back to its
    savepoint (dead-lettered) leaves no tally, and a redelivery counts nothing twice."""
    card = {"residence_address": "Chaoyang 1", "employment_status": "unemployed"}
    first = accepted("HR-EMPLOYMENT-SERVICE-CARD", applicant(1), card)
    twin = accepted("HR-EMPLOYMENT-SERVICE-CARD", applicant(1), card, case_id=first.case_id)
    second = accepted("HR-EMPLOYMENT-SERVICE-CARD", applicant(2), card)
    records = [record_of(TOPIC, e, offset=n) for n, e in enumerate([first, twin, second])]

    result = await router.process(records)

    assert (store.rollbacks, store.commits) == (1, 1)  # careful mode isolated the twin
    assert result.tallies == {(CASES_CLOSED, "approved"): 2}  # on the spot: closed at once
    assert result.dead == {(TOPIC, "handler_error"): 1}
    again = await router.process(records)
    assert (again.tallies, again.dead) == ({}, {})
