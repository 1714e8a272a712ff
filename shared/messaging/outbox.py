"""Transactional outbox and its relay.

A service never publishes to Kafka from a handler. It writes the outgoing record into
its ``outbox`` table in the same transaction as the state change that caused it; the
relay publishes rows in id order with an idempotent producer (acks=all), awaits the
whole batch, then deletes the published rows: every row in the table is unsent (there is
no "sent" mark; Kafka holds what was sent). A crash between publish and delete
publishes the same event_id again on restart, which every consumer's inbox absorbs:
effectively once, never lost. One relay per schema publishes at a time (a session-level
advisory lock on the relay's own connection), so rows go out in id order.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import Any
from uuid import UUID

import asyncpg
import structlog
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from shared.contracts.events import Event
from shared.contracts.topology import (
    DLQ_CONSUMER,
    DLQ_ERROR,
    DLQ_FAILED_AT,
    DLQ_ORIGINAL_HEADERS,
    DLQ_ORIGINAL_OFFSET,
    DLQ_ORIGINAL_PARTITION,
    DLQ_ORIGINAL_TOPIC,
    DLQ_REASON,
    DLQ_SUFFIX,
    dlq,
)
from shared.messaging.kafka import make_producer
from shared.messaging.signing import Signer
from shared.platform import tracing
from shared.platform.aio import sleep_or_stop, wait_any
from shared.platform.db import DB_AWAY, Connection, connect
from shared.platform.faults import FaultInjector
from shared.platform.metrics import OutboxState
from shared.platform.settings import Settings

log = structlog.get_logger("outbox")
# A statement of the relay that takes longer is taken for a connection gone bad: the
# relay reconnects (the rows stay unsent until then, nothing is lost).
STATEMENT_TIMEOUT_S = 30.0
# Broker and client errors that sending the same record again will never cure: the
# record is too large (MESSAGE_TOO_LARGE, RECORD_LIST_TOO_LARGE), corrupt or invalid
# (CORRUPT_MESSAGE, INVALID_RECORD), or its topic name is invalid (INVALID_TOPIC_EXCEPTION).
# aiokafka does not know INVALID_RECORD (87: a keyless record on a compacted topic, for
# one) and reports it as UnknownError (-1); the careful mode sends such a row once more,
# alone, on a new producer before it gives up on it.
UNPUBLISHABLE_ERRNOS = frozenset({-1, 2, 10, 17, 18, 87})
TOO_LARGE_ERRNOS = frozenset({10, 18})


def unpublishable(exc: BaseException) -> bool:
    """Whether the broker (or the client, for a record over max_request_size) refused a
    record for a reason that will not change."""
    return isinstance(exc, KafkaError) and getattr(exc, "errno", None) in UNPUBLISHABLE_ERRNOS


@dataclass(frozen=True, slots=True)
class OutboxRow:
    """One record to publish: a logical topic (without prefix), key, value, headers.

    ``sign``: the writer adds this service's signature headers when it writes the row,
    one batch signature over every such row of the transaction (see shared.messaging.signing).
    """

    event_id: UUID
    topic: str
    key: bytes | None
    value: bytes
    headers: tuple[tuple[str, str], ...]
    sign: bool = False


class OutboxWriter:
    """Turns events into outbox rows and writes them, signed, inside the caller's
    transaction."""

    def __init__(self, signer: Signer) -> None:
        self.signer = signer

    def row(self, topic: str, event: Event, trace: Sequence[tuple[str, str]] = ()) -> OutboxRow:
        """``trace``: the W3C trace headers it carries (``shared.platform.tracing.carry``),
        outside what its signature covers."""
        headers = (("event_type", event.event_type), ("content-type", "application/json"), *trace)
        return OutboxRow(
            event.event_id, topic, str(event.case_id).encode(), event.to_json(), headers, True
        )

    def signed(self, rows: Sequence[OutboxRow]) -> list[OutboxRow]:
        """``rows`` with the signature headers added to those that ask for them: the
        events of one transaction share one Ed25519 signature per tree of up to
        ``shared.messaging.signing.BATCH_LEAVES``, and each can still be verified alone."""
        out = list(rows)
        todo = [i for i, r in enumerate(out) if r.sign]
        if todo:
            signed = self.signer.batch_headers([out[i].value for i in todo])
            for i, extra in zip(todo, signed, strict=True):
                out[i] = replace(out[i], headers=(*out[i].headers, *extra), sign=False)
        return out

    async def write(self, conn: Connection, rows: Sequence[OutboxRow]) -> None:
        """Sign ``rows`` (see :meth:`signed`) and insert them, in this order."""
        if rows:
            await insert_rows(conn, self.signed(rows))

    async def add(self, conn: Connection, topic: str, *events: Event) -> None:
        await self.write(conn, [self.row(topic, e) for e in events])


async def insert_rows(conn: Connection, rows: Sequence[OutboxRow]) -> None:
    """Insert ``rows`` as given (signed already, or never to be signed), in this order."""
    if not rows:
        return
    # One statement for the whole batch (executemany runs one per row on the server);
    # WITH ORDINALITY keeps the ids, and so the publishing order, as given.
    await conn.execute(
        "INSERT INTO outbox (event_id, topic, key, value, headers) "
        "SELECT e, t, k, v, h::jsonb FROM unnest($1::uuid[], $2::text[], $3::bytea[], "
        "$4::bytea[], $5::text[]) WITH ORDINALITY AS u(e, t, k, v, h, n) ORDER BY n",
        [r.event_id for r in rows],
        [r.topic for r in rows],
        [r.key for r in rows],
        [r.value for r in rows],
        [json.dumps([list(h) for h in r.headers]) for r in rows],
    )


class OutboxRelay:
    """Publishes the outbox of one schema. Run one per process; replicas take turns.

    An advisory lock per schema lets only one relay publish at a time, so rows go out in
    id order even when two replicas of a service run side by side.
    """

    def __init__(self, settings: Settings, pool: asyncpg.Pool, *, name: str) -> None:
        self._settings = settings
        self._pool = pool
        self._name = name
        self._wake = asyncio.Event()
        self._producer: AIOKafkaProducer | None = None
        self._conn: asyncpg.Connection | None = None
        self._schema: str | None = None
        self._locked = False
        self._faults = FaultInjector.from_settings(settings)
        self.published = 0
        self.dead_lettered = 0
        self.dead_letter_reasons: dict[str, int] = {}  # reason -> rows (the metrics)
        self.retries = 0
        self.last_error: str | None = None

    def wake(self) -> None:
        """Ask for a publish now (called after a transaction wrote outbox rows)."""
        self._wake.set()

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = make_producer(self._settings)
            try:
                await producer.start()
            except BaseException:
                with contextlib.suppress(Exception):
                    await producer.stop()
                raise
            self._producer = producer
        return self._producer

    async def _drop_producer(self) -> None:
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(Exception):
                await producer.stop()

    async def _lock_holder(self) -> asyncpg.Connection | None:
        """The relay's own connection, holding the schema's relay lock; None while
        another replica holds it.

        A session-level advisory lock on a connection of its own: taken once, kept while
        the connection lives, released by PostgreSQL when it closes (a dead relay hands
        over to a replica). Cheaper than a transaction with a lock per publish.
        """
        conn = self._conn
        if conn is None or conn.is_closed():
            if self._schema is None:
                self._schema = str(await self._pool.fetchval("SELECT current_schema()"))
            conn = self._conn = await connect(
                self._settings.dsn(),
                self._schema,
                name=f"{self._name}-relay",
                # The relay only deletes rows it has published. Losing such a delete in
                # a server crash republishes those rows, which inboxes absorb, so its
                # commits need not wait for the WAL flush.
                settings={"synchronous_commit": "off"},
            )
            self._locked = False
        if not self._locked:
            self._locked = bool(
                await conn.fetchval(
                    "SELECT pg_try_advisory_lock(hashtext('outbox-relay:' || current_schema()))",
                    timeout=STATEMENT_TIMEOUT_S,
                )
            )
        return conn if self._locked else None

    async def _drop_connection(self) -> None:
        conn, self._conn = self._conn, None
        self._locked = False
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)

    async def publish_pending(self) -> int:
        """Publish the oldest rows, delete them once the broker has them all; return how
        many were published."""
        producer = await self._ensure_producer()
        conn = await self._lock_holder()
        if conn is None:
            return 0
        rows = await conn.fetch(
            "SELECT id, topic, key, value, headers FROM outbox ORDER BY id LIMIT $1",
            self._settings.outbox_batch_size,
            timeout=STATEMENT_TIMEOUT_S,
        )
        if not rows:
            return 0
        began = time.perf_counter()
        if self._faults is not None:
            self._faults.reach("before_relay_publish")
        # Send the whole batch, then await it: one round of broker acknowledgements
        # instead of one per record. The idempotent producer keeps per-partition order.
        sent: list[asyncio.Future[Any] | BaseException] = []
        for r in rows:
            try:
                sent.append(await self._send(producer, r))
            except KafkaError as exc:  # over max_request_size: refused before sending
                if not unpublishable(exc):
                    raise
                sent.append(exc)
        futures = [f for f in sent if not isinstance(f, BaseException)]
        if futures:
            await asyncio.wait(futures)
        failures = [f if isinstance(f, BaseException) else f.exception() for f in sent]
        if any(failures):
            return await self._settle(conn, rows, failures)
        if self._faults is not None:
            self._faults.reach("after_relay_publish")
        await self._delete(conn, [r["id"] for r in rows])
        tracing.published(self._name, rows, began)
        return len(rows)

    async def _settle(
        self,
        conn: asyncpg.Connection,
        rows: Sequence[asyncpg.Record],
        failures: Sequence[BaseException | None],
    ) -> int:
        """The careful mode, after a round where some sends failed: delete what the broker
        has; send each refused row again alone, in id order (the broker refuses a whole
        batch for one record too large), and move the rows it refuses again aside as dead
        letters (:meth:`_dead_letter`). The first transient failure stops the round and is
        raised: that row and the later ones are sent again after a back-off."""
        done = [r["id"] for r, failure in zip(rows, failures, strict=True) if failure is None]
        await self._delete(conn, done)
        transient: BaseException | None = None
        producer: AIOKafkaProducer | None = None
        for row, failure in zip(rows, failures, strict=True):
            if failure is None:
                continue
            if not unpublishable(failure):
                transient = failure
                break
            if producer is None:
                # A refused batch used sequence numbers the broker never saw: a new
                # producer (a new producer id) starts its partitions' sequences afresh.
                await self._drop_producer()
                producer = await self._ensure_producer()
            try:
                await (await self._send(producer, row))
            except KafkaError as exc:
                if not unpublishable(exc):
                    transient = exc
                    break
                await self._dead_letter(conn, producer, row, exc)
                producer = None
            else:
                await self._delete(conn, [row["id"]])
        await self._drop_producer()
        if transient is not None:
            raise transient
        return len(rows)

    async def _send(self, producer: AIOKafkaProducer, row: asyncpg.Record) -> asyncio.Future[Any]:
        future: asyncio.Future[Any] = await producer.send(
            self._settings.topic(row["topic"]),
            value=row["value"],
            key=row["key"],
            headers=[(k, v.encode()) for k, v in row["headers"]],
        )
        return future

    async def _delete(self, conn: asyncpg.Connection, ids: list[int]) -> None:
        # Delete rather than mark: an UPDATE writes a new version of every row, value and
        # all; a DELETE only flags the old one. Kafka holds what was sent.
        await conn.execute(
            "DELETE FROM outbox WHERE id = ANY($1::bigint[])", ids, timeout=STATEMENT_TIMEOUT_S
        )
        self.published += len(ids)

    async def _dead_letter(
        self,
        conn: asyncpg.Connection,
        producer: AIOKafkaProducer,
        row: asyncpg.Record,
        exc: BaseException,
    ) -> None:
        """Move one unpublishable row aside: onto its topic's DLQ when it may fit there (it
        was not refused for its size, and it is not a dead letter already), else into
        ``outbox_dead_letters`` with its exact bytes; both with the reason."""
        errno = getattr(exc, "errno", None)
        reason = "too_large" if errno in TOO_LARGE_ERRNOS else "refused_by_broker"
        error = f"{type(exc).__name__}: {exc}"[:2000]
        topic: str = row["topic"]
        where: tuple[str, int, int] | None = None
        if reason != "too_large" and not topic.endswith(DLQ_SUFFIX):
            headers = [
                *((k, v.encode()) for k, v in row["headers"]),
                *(
                    (k, v.encode())
                    for k, v in (
                        (DLQ_REASON, f"relay_{reason}"),
                        (DLQ_ERROR, error),
                        (DLQ_ORIGINAL_TOPIC, topic),
                        (DLQ_ORIGINAL_PARTITION, "-1"),  # it never reached its topic
                        (DLQ_ORIGINAL_OFFSET, "-1"),
                        (DLQ_ORIGINAL_HEADERS, json.dumps(dict(row["headers"]), sort_keys=True)),
                        (DLQ_CONSUMER, f"{self._name}-relay"),
                        (DLQ_FAILED_AT, datetime.now(UTC).isoformat()),
                    )
                ),
            ]
            try:
                meta = await (
                    await producer.send(
                        self._settings.topic(dlq(topic)),
                        row["value"],
                        key=row["key"],
                        headers=headers,
                    )
                )
                where = (dlq(topic), meta.partition, meta.offset)
            except KafkaError as dlq_exc:
                if not unpublishable(dlq_exc):
                    raise
        async with conn.transaction():
            await conn.execute(
                "INSERT INTO outbox_dead_letters (outbox_id, event_id, topic, key, value,"
                " value_size, headers, reason, error, dlq_topic, dlq_partition, dlq_offset,"
                " created_at) SELECT id, event_id, topic, key, CASE WHEN $2::text IS NULL"
                " THEN value END, length(value), headers, $3, $4, $2, $5, $6, created_at"
                " FROM outbox WHERE id = $1",
                row["id"],
                where and where[0],
                reason,
                error,
                where and where[1],
                where and where[2],
                timeout=STATEMENT_TIMEOUT_S,
            )
            await conn.execute("DELETE FROM outbox WHERE id = $1", row["id"])
        self.dead_lettered += 1
        self.dead_letter_reasons[reason] = self.dead_letter_reasons.get(reason, 0) + 1
        log.error(
            "outbox row dead-lettered",
            relay=self._name,
            topic=topic,
            size=len(row["value"]),
            reason=reason,
            error=error,
            moved_to="/".join(map(str, where)) if where else "outbox_dead_letters",
        )

    async def dead_letters(self) -> int:
        """Rows moved aside because no broker will ever take them (an alert figure)."""
        value = await self._pool.fetchval("SELECT count(*) FROM outbox_dead_letters")
        return int(value or 0)

    async def state(self, deadline_s: float = 2.0) -> OutboxState:
        """The backlog, the age of the oldest unsent row (0 when none) and the dead
        letters, in one query (the oldest row is the lowest id: an index lookup)."""
        row = await self._pool.fetchrow(
            "SELECT (SELECT count(*) FROM outbox) AS backlog,"
            " (SELECT extract(epoch FROM now() - created_at)::float8 FROM outbox"
            "  ORDER BY id LIMIT 1) AS age,"
            " (SELECT count(*) FROM outbox_dead_letters) AS dead",
            timeout=deadline_s,
        )
        backlog, age, dead = row if row is not None else (0, None, 0)
        return OutboxState(int(backlog), max(0.0, age or 0.0), int(dead))

    async def backlog(self) -> int:
        """Rows not published yet: every row, since published rows are deleted."""
        value = await self._pool.fetchval("SELECT count(*) FROM outbox")
        return int(value or 0)

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set; survive Kafka and PostgreSQL outages with back-off."""
        backoff = 0.2
        while not stop.is_set():
            try:
                # Clear before publishing: a wake-up from a commit made meanwhile is kept,
                # so the loop goes round at once instead of running an empty query now.
                self._wake.clear()
                while await self.publish_pending() >= self._settings.outbox_batch_size:
                    pass
                backoff = 0.2
                self.last_error = None
            except Exception as exc:  # noqa: BLE001 - a relay that dies strands its outbox
                # Kafka or PostgreSQL is away (or went away mid-exchange, which asyncpg
                # reports as InternalClientError): the rows stay unsent and are retried.
                self.last_error = f"{type(exc).__name__}: {exc}"
                self.retries += 1
                known = isinstance(exc, (KafkaError, *DB_AWAY))
                (log.warning if known else log.error)(
                    "outbox relay waiting", relay=self._name, error=self.last_error
                )
                await self._drop_producer()
                await self._drop_connection()
                await sleep_or_stop(stop, backoff)
                backoff = min(backoff * 2, 5.0)
                continue
            await wait_any(self._wake, stop, seconds=self._settings.outbox_poll_interval_s)
        # Last drain on shutdown, so a graceful stop leaves nothing behind that it could send.
        with contextlib.suppress(Exception):
            while await self.publish_pending():
                pass
        await self._drop_producer()
        await self._drop_connection()


def headers_json(headers: Sequence[tuple[str, bytes]]) -> str:
    """Original record headers as JSON text (values as UTF-8 where possible, else hex)."""
    out = {}
    for k, v in headers:
        try:
            out[k] = v.decode()
        except UnicodeDecodeError:
            out[k] = "hex:" + v.hex()
    return json.dumps(out, sort_keys=True)
