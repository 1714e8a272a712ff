"""Kafka plumbing: producers and consumers configured for onedoor's delivery rules.

Producers are idempotent with acks=all, so a retried send never duplicates or reorders
a record within a partition. Consumers never auto-commit: offsets are committed only
after the database transaction holding the record's effects has committed.
"""

from __future__ import annotations

from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream.message import StreamMessage

from shared.events import parse_event
from shared.settings import Settings


def make_producer(settings: Settings, **overrides: Any) -> AIOKafkaProducer:
    """An idempotent, acks=all producer (not started)."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "enable_idempotence": True,
        "acks": "all",
        # A few milliseconds of lingering lets a relay batch fill without hurting latency.
        "linger_ms": 2,
        "max_batch_size": 256 * 1024,
        "request_timeout_ms": 30_000,
    }
    options.update(overrides)
    return AIOKafkaProducer(**options)


def make_consumer(
    settings: Settings, *topics: str, group_id: str, **overrides: Any
) -> AIOKafkaConsumer:
    """A group consumer with manual commits, reading from the first offset of new groups."""
    options: dict[str, Any] = {
        "bootstrap_servers": settings.kafka_bootstrap_servers,
        "group_id": group_id,
        "enable_auto_commit": False,
        "auto_offset_reset": "earliest",
        "isolation_level": "read_committed",
    }
    options.update(overrides)
    return AIOKafkaConsumer(*topics, **options)


async def event_decoder(message: StreamMessage[Any]) -> Any:
    """FastStream decoder: parse record bodies with the event registry, so a subscriber
    typed ``event: CaseClosed`` receives the contract class, and a malformed or unknown
    record raises :class:`shared.events.EventDecodeError` instead of reaching the handler.
    """
    return parse_event(message.body)
