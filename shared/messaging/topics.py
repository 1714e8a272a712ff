"""Idempotent topic provisioning (the names are declared in ``shared.contracts.topology``).

Topics are created by the services at start-up with explicit partitions, replication
and retention, never by broker auto-create. Event-log topics keep records forever
(retention.ms=-1): the log is the truth the auditors replay.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterable
from typing import Any

from aiokafka.admin import AIOKafkaAdminClient, NewTopic
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from aiokafka.errors import TopicAlreadyExistsError, for_code

from shared.contracts import topology
from shared.messaging.kafka import make_admin
from shared.platform.limits import Limits
from shared.platform.settings import Settings

MAX_MESSAGE_BYTES = "max.message.bytes"


class TopicProvisioningError(RuntimeError):
    """The broker refused to create a topic (bad replication factor, bad config...)."""


async def ensure_topics(settings: Settings, names: Iterable[str]) -> list[str]:
    """Create the missing topics (logical names); return the deployed names created now.

    Safe to run from every service at every start: an existing topic is left as it is,
    but one that takes smaller records than ``ONEDOOR_MAX_RECORD_BYTES`` (created earlier
    with a smaller ``max.message.bytes``) raises :class:`shared.platform.limits.LimitsError`.
    """
    names = list(names)
    undeclared = sorted(n for n in names if not topology.is_declared(n))
    if undeclared:
        raise topology.UndeclaredTopicError(
            f"not topics of the topology: {', '.join(undeclared)}; declare them in"
            " shared/contracts/topology.py first"
        )
    wanted = sorted({settings.topic(n) for n in names})
    admin = make_admin(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
        missing = [n for n in wanted if n not in existing]
        if not missing:
            await _check_sizes(admin, settings, wanted)
            return []
        config = {
            "retention.ms": "-1",
            "retention.bytes": "-1",
            "min.insync.replicas": str(settings.topic_min_insync_replicas),
            MAX_MESSAGE_BYTES: str(settings.max_record_bytes),
        }
        response = await admin.create_topics(
            [
                NewTopic(
                    name=name,
                    num_partitions=settings.topic_partitions,
                    replication_factor=settings.topic_replication,
                    topic_configs=config,
                )
                for name in missing
            ],
            timeout_ms=30_000,
        )
        created: list[str] = []
        for entry in response.topic_errors:
            name, code = entry[0], entry[1]
            error = for_code(code)
            if code == 0:
                created.append(name)
            elif error is TopicAlreadyExistsError:
                # Another service provisioned it between our list and create: fine.
                continue
            else:
                message = entry[2] if len(entry) > 2 else ""
                raise TopicProvisioningError(f"creating topic {name}: {error.__name__} {message}")
        # The controller has committed the new topics, but the broker that answers a
        # consumer's metadata request applies them a moment later. A pattern subscriber
        # (the audit) that looked in that moment would not see them until its next
        # metadata refresh, so return only once every partition is served by a leader.
        await _wait_until_served(admin, missing)
        await _check_sizes(admin, settings, wanted)
        return created
    finally:
        await admin.close()


async def missing_topics(settings: Settings, names: Iterable[str]) -> list[str]:
    """The deployed names of ``names`` (logical) that the broker does not have yet: what
    a service started with ``ONEDOOR_MIGRATE_AT_START=false`` waits for ``onedoor-migrate``
    to create. Needs only the right to describe the topics (every service has it)."""
    wanted = sorted({settings.topic(n) for n in names})
    admin = make_admin(settings)
    await admin.start()
    try:
        existing = set(await admin.list_topics())
    finally:
        await admin.close()
    return [n for n in wanted if n not in existing]


async def max_message_bytes(admin: AIOKafkaAdminClient, names: list[str]) -> dict[str, int]:
    """Each topic's effective ``max.message.bytes`` (its own, or the broker's default)."""
    found: dict[str, int] = {}
    responses = await admin.describe_configs(
        [ConfigResource(ConfigResourceType.TOPIC, n, {MAX_MESSAGE_BYTES: None}) for n in names]
    )
    for response in responses:
        for resource in response.resources:
            for entry in resource[4]:
                if entry[0] == MAX_MESSAGE_BYTES and entry[1] is not None:
                    found[resource[3]] = int(entry[1])
    return found


async def _check_sizes(admin: AIOKafkaAdminClient, settings: Settings, names: list[str]) -> None:
    limits = Limits.of(settings)
    for name, size in sorted((await max_message_bytes(admin, names)).items()):
        limits.check_topic(name, size)


async def _wait_until_served(
    admin: AIOKafkaAdminClient, names: list[str], timeout_s: float = 30.0
) -> None:
    deadline = time.monotonic() + timeout_s
    while True:
        pending = [t["topic"] for t in await admin.describe_topics(names) if not _served(t)]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise TopicProvisioningError(
                f"topics created but not served by a partition leader after {timeout_s:.0f} s:"
                f" {', '.join(sorted(pending))}. Check the broker log and that every broker"
                " of the cluster is up."
            )
        await asyncio.sleep(0.1)


def _served(topic: dict[str, Any]) -> bool:
    partitions = topic.get("partitions") or []
    return (
        topic.get("error_code") == 0
        and bool(partitions)
        and all(p.get("error_code") == 0 and p.get("leader", -1) >= 0 for p in partitions)
    )


async def delete_topics_with_prefix(settings: Settings, prefix: str) -> int:
    """Delete every topic whose name starts with ``prefix`` (a test's or a drill's own
    namespace); return how many. Refuses an empty prefix: the event log is kept forever."""
    if not prefix:
        raise ValueError("refusing to delete topics without a namespace prefix")
    admin = make_admin(settings)
    await admin.start()
    try:
        doomed = [t for t in await admin.list_topics() if t.startswith(prefix)]
        if doomed:
            await admin.delete_topics(doomed, timeout_ms=30_000)
        return len(doomed)
    finally:
        await admin.close()
