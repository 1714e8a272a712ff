"""Kafka plumbing: producers and consumers configured for onedoor's delivery rules.

Producers are idempotent with acks=all, so a retried send never duplicates or reorders
a record within a partition. Consumers never auto-commit: offsets are committed only
after the database transaction holding the record's effects has committed.

Every client is built here, from :func:`client_options`: each process connects as one
principal (SASL SCRAM-SHA-512, over TLS in production) and the brokers' ACLs decide what
it may read and write (``shared.messaging.acls``).
"""

from __future__ import annotations

import random
import re
import ssl
import struct
from collections.abc import AsyncIterator, Callable, Sequence
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from shared.platform.secret_files import read_secret
from shared.platform.settings import Settings

_M = 0x5BD1E995
_MASK = 0xFFFFFFFF


def murmur2(data: bytes) -> int:
    """The Java client's murmur2 hash of a key, as an unsigned 32-bit int.

    The same function as aiokafka's, reading four bytes at a time with ``struct`` instead
    of byte by byte, which costs less CPU (docs/performance.md), and every relay hashes
    each record it sends.
    """
    length = len(data)
    h = 0x9747B28C ^ length
    for word in struct.unpack_from(f"<{length >> 2}I", data):
        k = (word * _M) & _MASK
        k ^= k >> 24
        h = ((h * _M) & _MASK) ^ ((k * _M) & _MASK)
    extra = length & 3
    if extra:
        tail = length & ~3
        if extra == 3:
            h ^= data[tail + 2] << 16
        if extra >= 2:
            h ^= data[tail + 1] << 8
        h ^= data[tail]
        h = (h * _M) & _MASK
    h ^= h >> 13
    h = (h * _M) & _MASK
    return h ^ (h >> 15)


def key_partitioner(key: bytes | None, partitions: list[int], available: list[int]) -> int:
    """The Java client's default choice: a keyed record goes to murmur2(key) modulo the
    partition count, so every client puts a case's records in the same partition."""
    if key is None:
        return random.choice(available or partitions)
    return partitions[(murmur2(key) & 0x7FFFFFFF) % len(partitions)]


def header(headers: Sequence[tuple[str, bytes]], name: str) -> bytes | None:
    """The first value of record header ``name``, or None when the record has none."""
    for key, value in headers:
        if key == name:
            return value
    return None


class KafkaPrincipalError(RuntimeError):
    """No principal to connect as; the message says which setting names it."""


def client_options(settings: Settings) -> dict[str, Any]:
    """Where the brokers are and who this process is to them: the options every client
    (producer, consumer, admin) is built with. The password is read from its file once
    per process and goes nowhere but into the client."""
    protocol = settings.kafka_security_protocol
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "security_protocol": protocol,
    }
    if protocol.startswith("SASL_"):
        principal = settings.kafka_principal()
        if not principal:
            raise KafkaPrincipalError(
                "no Kafka principal to connect as: a service connects as its own name; a "
                "tool needs ONEDOOR_KAFKA_USERNAME (and its password file)"
            )
        password = read_secret(settings.kafka_password_path(principal))
        options |= {
            "sasl_mechanism": settings.kafka_sasl_mechanism,
            "sasl_plain_username": principal,
            "sasl_plain_password": password.get_secret_value(),
        }
    if protocol == "SASL_SSL":
        options["ssl_context"] = _tls(settings)
    return options


def _tls(settings: Settings) -> ssl.SSLContext:
    """Verify the brokers' certificates (and host names) against the configured CA, or
    the system's; present a client certificate when one is configured."""
    cafile = settings.kafka_ssl_cafile
    context = ssl.create_default_context(cafile=None if cafile is None else str(cafile))
    if settings.kafka_ssl_certfile is not None:
        keyfile = settings.kafka_ssl_keyfile
        context.load_cert_chain(
            str(settings.kafka_ssl_certfile), None if keyfile is None else str(keyfile)
        )
    return context


def make_admin(settings: Settings, **overrides: Any) -> AIOKafkaAdminClient:
    """An admin client (not started) of this process's principal."""
    return AIOKafkaAdminClient(**(client_options(settings) | overrides))


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent, acks=all producer (not started)."""
    options: dict[str, Any] = {
        **client_options(settings),
        "partitioner": key_partitioner,
        "enable_idempotence": True,
        "acks": "all",
        # A relay sends its whole round before awaiting it: no lingering needed to batch.
        "linger_ms": settings.producer_linger_ms,
        "max_batch_size": min(256 * 1024, settings.max_record_bytes),
        # The one size budget (shared.platform.limits): a larger record is refused here,
        # before it reaches the broker; every topic takes records of this size.
        "max_request_size": settings.max_record_bytes,
        "request_timeout_ms": 30_000,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_consumer(
    settings: Settings, *topics: str, group_id: str, **overrides: Any
) -> AIOKafkaConsumer:
    """A group consumer with manual commits, reading from the first offset of new groups."""
    options: dict[str, Any] = {
        **client_options(settings),
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


async def partitions_matching(settings: Settings, pattern: str) -> list[TopicPartition]:
    """Every partition of every topic whose deployed name matches ``pattern``."""
    regex = re.compile(pattern)
    admin = make_admin(settings)
    await admin.start()
    try:
        topics = sorted(t for t in await admin.list_topics() if regex.match(t))
        described = await admin.describe_topics(topics) if topics else []
    finally:
        await admin.close()
    return [TopicPartition(d["topic"], p["partition"]) for d in described for p in d["partitions"]]


async def fetch_to_end(
    settings: Settings, partitions: Sequence[TopicPartition]
) -> AsyncIterator[tuple[int, list[ConsumerRecord[bytes, bytes]]]]:
    """The records of these partitions, from the first offset to the end as it is now, a
    fetched batch at a time, each with the total number of records to read.

    A group-less consumer with an ``earliest`` reset: assigning under the default
    ``latest`` reset and then seeking to the beginning races (the initial reset can land
    after the seek and leave every position at the end). Large fetches, up to 100,000
    records each; a caller that turns each batch into its own records at once never
    holds the client's records for the whole log.
    """
    if not partitions:
        return
    consumer = AIOKafkaConsumer(
        **client_options(settings),
        enable_auto_commit=False,
        auto_offset_reset="earliest",
        max_partition_fetch_bytes=16 * 1024 * 1024,
        fetch_max_bytes=128 * 1024 * 1024,
    )
    await consumer.start()
    try:
        consumer.assign(list(partitions))
        ends = await consumer.end_offsets(list(partitions))
        starts = await consumer.beginning_offsets(list(partitions))
        total = sum(ends[tp] - starts[tp] for tp in partitions)
        remaining = {tp for tp in partitions if ends[tp] > starts[tp]}
        while remaining:
            fetched = await consumer.getmany(*remaining, timeout_ms=1000, max_records=100_000)
            batch: list[ConsumerRecord[bytes, bytes]] = []
            for tp, got in fetched.items():
                end = ends[tp]
                batch.extend(r for r in got if r.offset < end)
                if got and got[-1].offset >= end - 1:
                    remaining.discard(tp)
            yield total, batch
    finally:
        await consumer.stop()


async def read_to_end(
    settings: Settings,
    partitions: Sequence[TopicPartition],
    on_progress: Callable[[int, int], None] | None = None,
) -> list[ConsumerRecord[bytes, bytes]]:
    """Every record of these partitions, from the first offset to the end as it is now."""
    records: list[ConsumerRecord[bytes, bytes]] = []
    async for total, batch in fetch_to_end(settings, partitions):
        records.extend(batch)
        if on_progress is not None:
            on_progress(len(records), total)
    return records
