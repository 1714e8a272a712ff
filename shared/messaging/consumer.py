"""Batch consumers with effectively-once processing.

The loop takes records in batches, and for each batch runs ONE PostgreSQL transaction
that records every event_id in the ``inbox`` table, applies the handler's effects and
writes the events it emits into the ``outbox``. Only after that transaction commits
are the Kafka offsets committed. So:

- a crash before the commit loses nothing: the records are read again;
- a crash after the commit but before the offset commit re-reads records whose
  event_ids are already in the inbox: they are skipped, nothing is applied twice;
- a record that cannot be parsed, or whose handler raises, goes to ``<topic>.dlq``
  (through the same outbox, with the reason and its topic/partition/offset in the
  headers) and the consumer moves on; it is never silently skipped;
- a database or network failure rolls the whole batch back and retries it after a
  back-off: those are not the record's fault.

The fast path handles a batch without savepoints. Only when a handler raises does the
batch run again in careful mode, one savepoint per record, to isolate the bad one.

The engine reaches the database through a narrow seam (``shared.messaging.store``): a
transaction that claims ids in the inbox, marks dead letters, writes outbox rows and
opens savepoints, plus the connection handed to handlers. ``PgStore`` is the PostgreSQL
one every service runs; ``shared.messaging.testing`` has one in memory for unit tests of
handlers and of careful mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Protocol
from uuid import NAMESPACE_URL, UUID, uuid5

import asyncpg
import structlog
from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from shared.contracts.events import Event, EventDecodeError, parse_event
from shared.contracts.topology import (
    DLQ_CONSUMER,
    DLQ_ERROR,
    DLQ_FAILED_AT,
    DLQ_ORIGINAL_HEADERS,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TOPIC,
    DLQ_REASON,
    dlq,
)
from shared.messaging.kafka import make_consumer
from shared.messaging.outbox import OutboxRelay, OutboxRow, OutboxWriter, headers_json
from shared.messaging.signing import PublicKeys
from shared.messaging.store import PgStore, Store, UnitOfWork
from shared.messaging.trust import Gate
from shared.platform import tracing
from shared.platform.aio import sleep_or_stop
from shared.platform.db import DB_AWAY, Connection
from shared.platform.faults import FaultInjector
from shared.platform.metrics import ConsumerMetrics, Lag
from shared.platform.settings import Settings

log = structlog.get_logger("consumer")

# Failures of the environment, not of the record: retry the batch, never dead-letter it.
TRANSIENT_ERRORS: tuple[type[BaseException], ...] = (
    *DB_AWAY,
    asyncpg.SerializationError,
    asyncpg.DeadlockDetectedError,
)


class NotReadyError(Exception):
    """Raised by a handler whose record depends on one this consumer has not seen yet.

    The record and every later record of its partition are left for a later batch.
    """


@dataclass(frozen=True, slots=True)
class Record:
    topic: str  # deployed name (with prefix)
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes], ...] = ()

    @property
    def tp(self) -> TopicPartition:
        return TopicPartition(self.topic, self.partition)

    def dead_letter_id(self) -> UUID:
        """A stable id for a record without a usable event_id (redelivery gives the same)."""
        return uuid5(NAMESPACE_URL, f"kafka:{self.topic}/{self.partition}/{self.offset}")


@dataclass
class Tx:
    """What a handler gets: the open connection and a way to emit events."""

    conn: Connection
    record: Record
    writer: OutboxWriter
    rows: list[OutboxRow] = field(default_factory=list)
    tallies: dict[tuple[str, str], int] | None = None

    def emit(self, topic: str, event: Event) -> None:
        """Queue an event for ``topic`` (logical name); written in this transaction."""
        self.rows.append(self.writer.row(topic, event, tracing.carry(self.record.headers)))

    def tally(self, name: str, label: str) -> None:
        """Count a fact for the service's metrics (``shared.platform.metrics.TALLIES``);
        counted only once the batch's transaction has committed."""
        tallies = self.tallies = self.tallies or {}
        tallies[name, label] = tallies.get((name, label), 0) + 1


Handler = Callable[[Tx, Event], Awaitable[None]]


class StatefulHandler:
    """A handler that reads the state a batch needs in one query and writes it back in
    one, instead of a database round trip per event.

    The processor calls ``load`` with the batch's fresh events (after the inbox claim,
    inside the batch transaction), then the handler for each event in order, then
    ``save``. Handlers keep the loaded state in memory between the two. In careful mode
    (one savepoint per record) the three run once per record, so a record rolled back
    to its savepoint leaves nothing behind in memory either.
    """

    async def load(self, conn: Connection, events: Sequence[Event]) -> None:
        """Read (and lock) what handling ``events`` needs; forget any earlier batch."""

    async def __call__(self, tx: Tx, event: Event) -> None:
        raise NotImplementedError

    async def save(self, conn: Connection) -> None:
        """Write back what the handlers changed since ``load``."""


@dataclass
class BatchResult:
    processed: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    blocked: dict[TopicPartition, int] = field(default_factory=dict)  # partition -> offset
    emitted: int = 0
    dead: dict[tuple[str, str], int] = field(default_factory=dict)  # (topic, reason) -> n
    tallies: dict[tuple[str, str], int] = field(default_factory=dict)  # see Tx.tally

    def dead_letter(self, record: Record, reason: str) -> None:
        self.dead_lettered += 1
        self.dead[record.topic, reason] = self.dead.get((record.topic, reason), 0) + 1

    def add_tallies(self, tallies: dict[tuple[str, str], int] | None) -> None:
        for key, n in (tallies or {}).items():
            self.tallies[key] = self.tallies.get(key, 0) + n


class _RetryCarefullyError(Exception):
    pass


class BatchProcessor:
    """Applies one batch of records in one transaction (see the module docstring)."""

    def __init__(
        self,
        settings: Settings,
        store: asyncpg.Pool | Store,
        writer: OutboxWriter,
        handler: Handler,
        *,
        consumer_name: str,
        keys: PublicKeys,
        first_topics: Iterable[str] = (),
    ) -> None:
        """``keys``: the key registry; a record is acted on only when its topic's writer
        signed it (``shared.messaging.trust``), else it is dead-lettered."""
        self._settings = settings
        self._gate = Gate(keys, settings.topic_prefix)
        # Services hand in their pool; unit tests a store of their own.
        self._store: Store = PgStore(store) if isinstance(store, asyncpg.Pool) else store
        self._writer = writer
        self._handler = handler
        self._name = consumer_name
        # Topics a consumer learns from are applied before its task topics in a batch,
        # so a task that depends on a fact in the same batch finds it.
        self._first = {settings.topic(t) for t in first_topics}

    def _ordered(self, records: Sequence[Record]) -> list[Record]:
        return sorted(records, key=lambda r: (r.topic not in self._first,))  # stable sort

    async def process(self, records: Sequence[Record]) -> BatchResult:
        ordered = self._ordered(records)
        parsed: list[tuple[Record, Event | EventDecodeError]] = []
        for record in ordered:
            try:
                parsed.append((record, parse_event(record.value or b"")))
            except EventDecodeError as exc:
                parsed.append((record, exc))
        parsed = self._gate.check(parsed)
        try:
            return await self._fast(parsed)
        except _RetryCarefullyError:
            return await self._careful(parsed)

    async def _fast(self, parsed: list[tuple[Record, Event | EventDecodeError]]) -> BatchResult:
        result = BatchResult()
        async with self._store.transaction() as uow:
            conn = uow.conn
            fresh = await self._claim(uow, parsed)
            if isinstance(self._handler, StatefulHandler):
                await self._handler.load(conn, _fresh_events(parsed, fresh))
            rows: list[OutboxRow] = []
            seen: set[UUID] = set()
            for record, item in parsed:
                if isinstance(item, EventDecodeError):
                    if record.dead_letter_id() in fresh:
                        rows.append(self._dead_letter(record, item.reason, str(item)))
                        result.dead_letter(record, item.reason)
                    continue
                if item.event_id not in fresh or item.event_id in seen:
                    result.duplicates += 1
                    continue
                seen.add(item.event_id)
                tx = Tx(conn, record, self._writer)
                try:
                    await self._handler(tx, item)
                except TRANSIENT_ERRORS:
                    raise
                except Exception as exc:
                    raise _RetryCarefullyError from exc
                rows += tx.rows
                result.add_tallies(tx.tallies)
                result.processed += 1
            if isinstance(self._handler, StatefulHandler):
                await self._handler.save(conn)
            if rows:
                await uow.write_outbox(self._writer.signed(rows))
            result.emitted = len(rows)
        return result

    async def _claim(
        self, uow: UnitOfWork, parsed: list[tuple[Record, Event | EventDecodeError]]
    ) -> set[UUID]:
        """Record every id in the inbox; return the ids not seen before.

        A re-driven record whose id was dead-lettered is claimed once more, when its
        redrive header proves an operator's signed DeadLetterRedriven naming it; every
        other id already in the inbox is a redelivery and stays a no-op.
        """
        entries: list[tuple[UUID, Record]] = []
        redriven: list[UUID] = []
        for record, item in parsed:
            event_id = (
                record.dead_letter_id() if isinstance(item, EventDecodeError) else item.event_id
            )
            entries.append((event_id, record))
            if isinstance(item, Event) and self._gate.redrive_proven(
                record.topic, record.headers, item
            ):
                redriven.append(event_id)
        reclaimed = await uow.reclaim(redriven) if redriven else set()
        return await uow.claim(entries) | reclaimed

    async def _careful(self, parsed: list[tuple[Record, Event | EventDecodeError]]) -> BatchResult:
        result = BatchResult()
        async with self._store.transaction() as uow:
            conn = uow.conn
            for record, item in parsed:
                if record.tp in result.blocked:
                    continue  # keep per-partition order behind a blocked record
                if isinstance(item, EventDecodeError):
                    if await self._claim(uow, [(record, item)]):
                        await uow.write_outbox([self._dead_letter(record, item.reason, str(item))])
                        result.dead_letter(record, item.reason)
                    continue
                try:
                    async with uow.savepoint():
                        if not await self._claim(uow, [(record, item)]):
                            result.duplicates += 1
                            continue
                        tx = Tx(conn, record, self._writer)
                        if isinstance(self._handler, StatefulHandler):
                            await self._handler.load(conn, [item])
                            await self._handler(tx, item)
                            await self._handler.save(conn)
                        else:
                            await self._handler(tx, item)
                        if tx.rows:
                            await uow.write_outbox(self._writer.signed(tx.rows))
                        result.emitted += len(tx.rows)
                        result.add_tallies(tx.tallies)
                        result.processed += 1
                except TRANSIENT_ERRORS:
                    raise
                except NotReadyError:
                    result.blocked[record.tp] = record.offset
                except Exception as exc:  # noqa: BLE001 - any handler failure goes to the DLQ
                    log.warning(
                        "handler failed; record dead-lettered",
                        consumer=self._name,
                        case_id=str(item.case_id),
                        event_type=item.event_type,
                        error=f"{type(exc).__name__}: {exc}",
                    )
                    await uow.mark_dead(item.event_id, record)
                    await uow.write_outbox(
                        [self._dead_letter(record, "handler_error", f"{type(exc).__name__}: {exc}")]
                    )
                    result.dead_letter(record, "handler_error")
        return result

    def _dead_letter(self, record: Record, reason: str, error: str) -> OutboxRow:
        logical = record.topic.removeprefix(self._settings.topic_prefix)
        headers = (
            (DLQ_REASON, reason),
            (DLQ_ERROR, error[:2000]),
            (DLQ_ORIGINAL_TOPIC, logical),
            (DLQ_ORIGINAL_PARTITION, str(record.partition)),
            (DLQ_ORIGINAL_OFFSET, str(record.offset)),
            (DLQ_ORIGINAL_HEADERS, headers_json(record.headers)),
            (DLQ_CONSUMER, self._name),
            (DLQ_FAILED_AT, datetime.now(UTC).isoformat()),
        )
        return OutboxRow(
            record.dead_letter_id(), dlq(logical), record.key, record.value or b"", headers
        )


def _fresh_events(
    parsed: list[tuple[Record, Event | EventDecodeError]], fresh: set[UUID]
) -> list[Event]:
    return [item for _, item in parsed if isinstance(item, Event) and item.event_id in fresh]


class RecordProcessor(Protocol):
    """Applies one batch of records; the loop commits offsets only after it returns."""

    async def process(self, records: Sequence[Record]) -> BatchResult: ...


class _AssignmentLog(ConsumerRebalanceListener):  # type: ignore[misc]
    """Logs what a consumer reads after each rebalance: the operator's evidence of a
    rebalance, and that a topic created later (a new department's) is being read."""

    def __init__(self, group: str) -> None:
        self._group = group
        self.assigned = False  # whether the member holds an assignment (maybe empty)

    async def on_partitions_revoked(self, revoked: Iterable[TopicPartition]) -> None:
        self.assigned = False

    async def on_partitions_assigned(self, assigned: Iterable[TopicPartition]) -> None:
        self.assigned = True
        partitions = list(assigned)
        log.info(
            "partitions assigned",
            group=self._group,
            partitions=len(partitions),
            topics=sorted({tp.topic for tp in partitions}),
        )


async def consumer_lag(consumer: AIOKafkaConsumer, deadline_s: float = 1.0) -> Lag:
    """Records on the broker that ``consumer`` has not taken yet, over every partition
    assigned to it: as of its last fetch from each, and for one not fetched since the
    assignment (just after a restart, or paused) from its end offset asked of the broker.
    Unknown (None), never a partial sum, when a position or an end offset cannot be read
    by ``deadline_s``."""
    assigned = list(consumer.assignment())
    ends = {tp: consumer.highwater(tp) for tp in assigned}  # None until fetched
    total = done = 0
    try:
        # A position being reset (just after a rebalance) is waited for; a health check
        # must not be: past the deadline the lag is unknown for now.
        async with asyncio.timeout(deadline_s):
            if unknown := [tp for tp, end in ends.items() if end is None]:
                ends.update(await consumer.end_offsets(unknown))
            for tp in assigned:
                total += max(0, (ends[tp] or 0) - await consumer.position(tp))
                done += 1
    except (IllegalStateError, AssertionError, KafkaError, TimeoutError, KeyError):
        # A rebalance moved partitions meanwhile, or the deadline passed.
        return Lag(None, len(assigned), len(assigned) - done)
    return Lag(total, len(assigned))


class ConsumerLoop:
    """Polls a consumer group, feeds batches to a processor, commits after each batch.

    ``topics`` are logical names; ``pattern`` (a regular expression over deployed names)
    subscribes to every matching topic instead, including ones created later.
    """

    def __init__(
        self,
        settings: Settings,
        topics: Sequence[str],
        *,
        group_id: str,
        processor: RecordProcessor,
        relay: OutboxRelay | None = None,
        pattern: str | None = None,
    ) -> None:
        self._settings = settings
        self._topics = [settings.topic(t) for t in topics]
        self._pattern = pattern
        self._group = settings.group(group_id)
        self.name = f"consumer:{group_id}"
        self._processor = processor
        self._relay = relay
        self._faults = FaultInjector.from_settings(settings)
        self.batches = 0
        self.records = 0
        self.last_batch_at: float | None = None
        self.last_error: str | None = None
        self.metrics = ConsumerMetrics(self._group, settings.topic_prefix)
        self._consumer: AIOKafkaConsumer | None = None
        self._listener = _AssignmentLog(self._group)

    async def lag(self) -> int | None:
        """Records on the broker that this loop has not taken yet, over every partition
        it holds; None (unknown) rather than a partial figure. See :meth:`lag_report`."""
        return (await self.lag_report()).records

    async def lag_report(self, deadline_s: float = 1.0) -> Lag:
        """The lag over every assigned partition (:func:`consumer_lag`); unknown while
        the member joins its group. A service that keeps up shows a few; the audit,
        which yields the CPU to the pipeline, shows how far a burst has put it behind."""
        consumer = self._consumer
        if consumer is None or not self._listener.assigned:
            return Lag(None)
        return await consumer_lag(consumer, deadline_s)

    async def reaches_broker(self, deadline_s: float = 2.0) -> bool:
        """Whether the broker answers this loop's consumer a metadata request in time."""
        consumer = self._consumer
        if consumer is None:
            return False
        try:
            async with asyncio.timeout(deadline_s):
                await consumer.topics()
        except (KafkaError, OSError, TimeoutError):
            return False
        return True

    async def _start_consumer(self, stop: asyncio.Event) -> AIOKafkaConsumer | None:
        backoff = 0.2
        while not stop.is_set():
            consumer = make_consumer(
                self._settings,
                group_id=self._group,
                max_poll_records=self._settings.consumer_max_records,
                # Let the broker gather a few records per fetch: fewer, fuller batches
                # (one transaction each) for at most fetch_max_wait_ms more latency.
                fetch_min_bytes=self._settings.consumer_fetch_min_bytes,
                fetch_max_wait_ms=self._settings.consumer_fetch_max_wait_ms,
                **(
                    # A pattern is matched against the broker's metadata, which the
                    # client refreshes only this often: it bounds how long a topic
                    # created later (a new department's) goes unread.
                    {"metadata_max_age_ms": self._settings.consumer_pattern_refresh_ms}
                    if self._pattern is not None
                    else {}
                ),
            )
            listener = self._listener
            listener.assigned = False
            if self._pattern is not None:
                consumer.subscribe(pattern=self._pattern, listener=listener)
            else:
                consumer.subscribe(topics=self._topics, listener=listener)
            try:
                await consumer.start()
            except (KafkaError, OSError) as exc:
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("consumer cannot start yet", group=self._group, error=self.last_error)
                with contextlib.suppress(Exception):
                    await consumer.stop()
                await sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            return consumer
        return None

    async def run(self, stop: asyncio.Event, on_ready: Callable[[], None] | None = None) -> None:
        """Consume until ``stop`` is set; the batch in hand is finished and committed first."""
        consumer = await self._start_consumer(stop)
        if consumer is None:
            return
        if on_ready is not None:
            on_ready()
        self._consumer = consumer
        backoff = 0.1
        try:
            while not stop.is_set():
                fetched = await self._fetch(consumer)
                records = [
                    Record(r.topic, r.partition, r.offset, r.key, r.value, tuple(r.headers))
                    for batch in fetched.values()
                    for r in batch
                ]
                if not records:
                    continue
                began = time.perf_counter()
                try:
                    result = await self._processor.process(records)
                except Exception as exc:  # noqa: BLE001 - a lost batch is never an option
                    # Record failures were already isolated (dead-lettered) inside process();
                    # what escapes is the environment or a bug of ours. Either way the batch
                    # is rolled back, so re-read it after a back-off rather than die.
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    known = isinstance(exc, TRANSIENT_ERRORS)
                    (log.warning if known else log.error)(
                        "batch rolled back; retrying", group=self._group, error=self.last_error
                    )
                    self._rewind(consumer, fetched)
                    self.metrics.batch_rolled_back()
                    await sleep_or_stop(stop, backoff)
                    backoff = min(backoff * 2, 5.0)
                    continue
                backoff = 0.1
                self.last_error = None
                if self._relay is not None and result.emitted:
                    self._relay.wake()
                if self._faults is not None:
                    self._faults.reach("after_commit_before_offsets")
                await self._commit(consumer, fetched, result.blocked)
                self.batches += 1
                self.records += len(records)
                self.last_batch_at = time.monotonic()
                seconds = time.perf_counter() - began
                self.metrics.batch(seconds, fetched, result.dead, result.tallies, result.blocked)
                tracing.consumed(self._group, records, began, (tp.topic for tp in fetched))
                if result.blocked:
                    # Give the topics we learn from a moment to catch up before re-reading.
                    await sleep_or_stop(stop, 0.05)
        finally:
            self._consumer = None
            with contextlib.suppress(Exception):
                await consumer.stop()

    async def _fetch(self, consumer: AIOKafkaConsumer) -> dict[TopicPartition, list[Any]]:
        """One batch: what is there now, plus what arrives within the linger time when
        the batch is not full. Fuller batches mean fewer transactions, relay rounds and
        offset commits per record, which is what saturates the cores under load."""
        limit = self._settings.consumer_max_records
        fetched: dict[TopicPartition, list[Any]] = await consumer.getmany(
            timeout_ms=200, max_records=limit
        )
        linger = self._settings.consumer_batch_timeout_ms
        count = sum(len(b) for b in fetched.values())
        if not fetched or not linger or count >= limit:
            return fetched
        await asyncio.sleep(linger / 1000)
        more = await consumer.getmany(timeout_ms=0, max_records=limit - count)
        for tp, batch in more.items():
            fetched.setdefault(tp, []).extend(batch)
        return fetched

    @staticmethod
    def _rewind(consumer: AIOKafkaConsumer, fetched: dict[TopicPartition, list[Any]]) -> None:
        for tp, batch in fetched.items():
            with contextlib.suppress(IllegalStateError, AssertionError):
                consumer.seek(tp, batch[0].offset)

    async def _commit(
        self,
        consumer: AIOKafkaConsumer,
        fetched: dict[TopicPartition, list[Any]],
        blocked: dict[TopicPartition, int],
    ) -> None:
        offsets: dict[TopicPartition, int] = {}
        for tp, batch in fetched.items():
            if tp in blocked:
                offsets[tp] = blocked[tp]
                with contextlib.suppress(IllegalStateError, AssertionError):
                    consumer.seek(tp, blocked[tp])
            else:
                offsets[tp] = batch[-1].offset + 1
        try:
            await consumer.commit(offsets)
        except (CommitFailedError, IllegalStateError, KafkaError) as exc:
            # Partitions moved to another member: it re-reads from the last committed
            # offset and its inbox absorbs what we already applied.
            log.warning("offset commit failed after a rebalance", group=self._group, error=str(exc))
