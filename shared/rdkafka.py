"""The engine's Kafka client: librdkafka (through confluent-kafka) driven from asyncio.

The consumer loop and the outbox relay use this client; tools, tests and the bench's
raw baseline keep aiokafka (``shared.kafka``). Why: the engine pays the client's cost
once per batch in every service, and ``make bench-engine`` measured aiokafka's fetch,
offset commit and publish at about 3 ms of Python per batch, most of a consumer's fixed
cost. librdkafka does the same work in C threads of its own.

Each client owns ONE worker thread. Every blocking librdkafka call runs there, so the
event loop never blocks, and the consumer (whose rebalance callbacks run inside
``poll``) is only ever driven from that thread. The delivery rules do not change:
the producer is idempotent with acks=all and Java's key partitioner; the consumer never
commits on its own, reads committed records only, and starts new groups at the first
offset.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog
from confluent_kafka import (
    Consumer,
    KafkaError,
    KafkaException,
    Message,
    Producer,
)
from confluent_kafka import (
    TopicPartition as RdTopicPartition,
)

from shared.settings import Settings

log = structlog.get_logger("kafka")
# librdkafka's own log lines go through the standard logger of this name (and so through
# structlog's masking processors); they are served on the client's worker thread.
_RDKAFKA_LOG = logging.getLogger("librdkafka")
T = TypeVar("T")

# A record's coordinates, as the engine keys them: (deployed topic, partition).
Partition = tuple[str, int]
# A record to send: deployed topic, key, value, headers.
OutRecord = tuple[str, bytes | None, bytes, list[tuple[str, str | bytes | None]]]


class KafkaUnavailableError(Exception):
    """The broker could not be reached, or did not acknowledge records in time."""


def _base_config(settings: Settings) -> dict[str, Any]:
    return {
        "bootstrap.servers": settings.kafka_bootstrap_servers,
        "logger": _RDKAFKA_LOG,
        # Errors and warnings only; connection refusals while a broker restarts are
        # reported once per state change, not per retry.
        "log_level": 4,
        "log.connection.close": False,
        "error_cb": _log_client_error,
    }


def _log_client_error(error: KafkaError) -> None:
    log.warning("kafka client error", code=error.name(), error=error.str())


class _Worker:
    """One thread of a client's own, running its blocking librdkafka calls in order."""

    def __init__(self, name: str) -> None:
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix=name)

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._pool, fn, *args)

    def shutdown(self) -> None:
        self._pool.shutdown(wait=False)


class EngineConsumer:
    """A group consumer with manual commits (the consumer loop's client).

    ``topics`` are deployed names; ``pattern`` (a regular expression over deployed
    names, anchored with ``^``) subscribes to every matching topic instead, including
    ones created later: the client re-reads the topic list every
    ``consumer_pattern_refresh_ms``.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        group_id: str,
        topics: Sequence[str] = (),
        pattern: str | None = None,
        on_assigned: Callable[[list[Partition]], None] | None = None,
    ) -> None:
        if pattern is not None and not pattern.startswith("^"):
            raise ValueError(f"a subscription pattern must start with '^': {pattern!r}")
        config = _base_config(settings) | {
            "group.id": group_id,
            "enable.auto.commit": False,
            "enable.auto.offset.store": False,
            "auto.offset.reset": "earliest",
            "isolation.level": "read_committed",
            "partition.assignment.strategy": "roundrobin",
            # A member that died is replaced after 10 s, not librdkafka's default 45 s.
            "session.timeout.ms": 10_000,
            "heartbeat.interval.ms": 3_000,
            "fetch.min.bytes": settings.consumer_fetch_min_bytes,
            "fetch.wait.max.ms": settings.consumer_fetch_max_wait_ms,
            # Prefetch at most this much per consumer (librdkafka's default is 64 MiB).
            "queued.max.messages.kbytes": 8 * 1024,
            "queued.min.messages": 10 * settings.consumer_max_records,
        }
        if pattern is not None:
            config["topic.metadata.refresh.interval.ms"] = settings.consumer_pattern_refresh_ms
        self._config = config
        self._subscription = [pattern] if pattern is not None else list(topics)
        self._on_assigned = on_assigned
        self._worker = _Worker(f"kafka-consumer-{group_id}")
        self._consumer: Consumer | None = None

    async def start(self, timeout_s: float = 10.0) -> None:
        """Connect (raises :class:`KafkaUnavailableError` if no broker answers) and join."""
        await self._worker.call(self._start, timeout_s)

    def _start(self, timeout_s: float) -> None:
        consumer = Consumer(self._config)
        try:
            consumer.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            consumer.close()
            raise KafkaUnavailableError(str(exc.args[0] if exc.args else exc)) from exc
        consumer.subscribe(self._subscription, on_assign=self._assigned)
        self._consumer = consumer

    def _assigned(self, _consumer: Consumer, partitions: list[RdTopicPartition]) -> None:
        if self._on_assigned is not None:
            self._on_assigned([(p.topic, p.partition) for p in partitions])

    async def take(self, limit: int, wait_s: float, linger_s: float) -> list[Message]:
        """Up to ``limit`` records: waits up to ``wait_s`` for the first, then gathers
        more for up to ``linger_s`` (or until ``limit``). Fuller batches mean fewer
        transactions, relay rounds and offset commits per record."""
        return await self._worker.call(self._take, limit, wait_s, linger_s)

    def _take(self, limit: int, wait_s: float, linger_s: float) -> list[Message]:
        consumer = self._live()
        first = consumer.poll(wait_s)
        if first is None:
            return []
        batch = [first]
        if limit > 1:
            # consume() returns once it has `limit - 1` records or the linger is over.
            batch += consumer.consume(limit - 1, linger_s) if linger_s else []
        good = [m for m in batch if m.error() is None]
        if len(good) < len(batch):
            for message in batch:
                error = message.error()
                if error is not None and error.code() != KafkaError._PARTITION_EOF:
                    log.warning("kafka fetch error", code=error.name(), error=error.str())
        return good

    def seek(self, partition: Partition, offset: int) -> None:
        """Read ``partition`` again from ``offset`` (the records fetched past it are
        dropped). A partition this member no longer holds is left alone."""
        try:
            self._live().seek(RdTopicPartition(partition[0], partition[1], offset))
        except KafkaException as exc:
            log.info("seek skipped", topic=partition[0], partition=partition[1], error=str(exc))

    async def commit(self, offsets: Mapping[Partition, int]) -> None:
        """Commit these next-offsets and wait for the group coordinator's answer.

        Raises :class:`confluent_kafka.KafkaException` when the coordinator refuses
        (for example after a rebalance moved a partition away).
        """
        partitions = [RdTopicPartition(t, p, o) for (t, p), o in offsets.items()]
        await self._worker.call(self._commit, partitions)

    def _commit(self, partitions: list[RdTopicPartition]) -> None:
        results = self._live().commit(offsets=partitions, asynchronous=False) or []
        failed = [p for p in results if p.error is not None]
        if failed:
            raise KafkaException(failed[0].error)

    async def close(self) -> None:
        """Leave the group (its partitions move to the other members at once)."""
        consumer, self._consumer = self._consumer, None
        try:
            if consumer is not None:
                await self._worker.call(consumer.close)
        finally:
            self._worker.shutdown()

    def _live(self) -> Consumer:
        if self._consumer is None:
            raise KafkaUnavailableError("the consumer is not started")
        return self._consumer


class EngineProducer:
    """An idempotent acks=all producer that sends a batch, then awaits it whole."""

    def __init__(self, settings: Settings, *, name: str) -> None:
        self._config = _base_config(settings) | {
            "enable.idempotence": True,
            "acks": "all",
            # Java's key partitioner, as aiokafka and the Java clients use: a case's
            # records land in the same partition whichever client wrote them.
            "partitioner": "murmur2_random",
            "linger.ms": settings.producer_linger_ms,
            "batch.size": 256 * 1024,
            "message.timeout.ms": 30_000,
            "delivery.report.only.error": True,
            "on_delivery": self._delivered,
        }
        self._worker = _Worker(f"kafka-producer-{name}")
        self._producer: Producer | None = None
        self._failures: list[str] = []

    async def start(self, timeout_s: float = 10.0) -> None:
        await self._worker.call(self._start, timeout_s)

    def _start(self, timeout_s: float) -> None:
        producer = Producer(self._config)
        try:
            producer.list_topics(timeout=timeout_s)
        except KafkaException as exc:
            raise KafkaUnavailableError(str(exc.args[0] if exc.args else exc)) from exc
        self._producer = producer

    def _delivered(self, error: KafkaError | None, message: Message) -> None:
        if error is not None:  # only failures are reported (delivery.report.only.error)
            self._failures.append(f"{message.topic()}: {error.name()} {error.str()}")

    async def send_all(
        self,
        records: Sequence[OutRecord],
        timeout_s: float,
    ) -> None:
        """Send (topic, key, value, headers) records in order and return once the broker
        acknowledged every one; raise :class:`KafkaUnavailableError` otherwise (some may
        have been written: a retry duplicates them, which inboxes absorb)."""
        await self._worker.call(self._send_all, records, timeout_s)

    def _send_all(
        self,
        records: Sequence[OutRecord],
        timeout_s: float,
    ) -> None:
        producer = self._producer
        if producer is None:
            raise KafkaUnavailableError("the producer is not started")
        self._failures.clear()
        for topic, key, value, headers in records:
            try:
                producer.produce(topic, value=value, key=key, headers=headers)
            except BufferError:  # the local queue is full: let it drain, then go on
                producer.flush(timeout_s)
                producer.produce(topic, value=value, key=key, headers=headers)
        left = producer.flush(timeout_s)
        if self._failures:
            raise KafkaUnavailableError(
                f"{len(self._failures)} record(s) not delivered, first: {self._failures[0]}"
            )
        if left:
            raise KafkaUnavailableError(f"{left} record(s) not acknowledged in {timeout_s:.0f} s")

    async def close(self) -> None:
        """Drop what is still queued (the caller republishes it) and release the client."""
        producer, self._producer = self._producer, None
        try:
            if producer is not None:
                await self._worker.call(_discard, producer)
        finally:
            self._worker.shutdown()


def headers_of(message: Message) -> tuple[tuple[str, bytes], ...]:
    """A fetched record's headers (a header without a value reads as empty bytes)."""
    headers = message.headers() or ()
    pairs = headers.items() if isinstance(headers, dict) else headers
    return tuple(
        (key, value.encode() if isinstance(value, str) else value or b"") for key, value in pairs
    )


def _discard(producer: Producer) -> None:
    # Without the purge, releasing a producer waits for every queued record to be sent
    # or to time out, which is minutes while the broker is away.
    producer.purge(in_queue=True, in_flight=True)
    producer.flush(0)
