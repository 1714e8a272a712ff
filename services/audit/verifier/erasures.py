"""``sealed_under_erased_key``: after a person's erasure, intake never seals a new case's
fields under the data key it deleted.

``onedoor-admin erase`` deletes the person's data keys and records which in a
``PersonErased`` (topic ``privacy.erasures``). A CaseAccepted dated after that erasure
whose applicant is sealed under one of those key ids means the key was not deleted (a
copy survived somewhere and sealed again): the person's data is readable after all. A
person who comes back after an erasure gets a new key, with a new id, and is no
violation.

Erasures are few, and a case and its person's erasure need not share a partition, so
this check does not ride the sharded replay: ``verify`` runs it beside the replay (as it
walks the store's hash chains), reading ``privacy.erasures`` first and
``cases.accepted`` only when some erasure exists.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime
from uuid import UUID

from aiokafka import TopicPartition

from services.audit.verifier.log import LogRecord, log_partitions, read_log
from services.audit.verifier.report import SEALED_UNDER_ERASED_KEY, Violation
from shared.contracts.decoding import decode_record
from shared.contracts.events import CaseAccepted, PersonErased
from shared.contracts.topology import CASES_ACCEPTED, PRIVACY_ERASURES
from shared.platform.settings import Settings


def erased_keys(records: Iterable[LogRecord]) -> dict[UUID, tuple[datetime, UUID]]:
    """Each erased key id: when it was first erased, and by which PersonErased."""
    erased: dict[UUID, tuple[datetime, UUID]] = {}
    for record in records:
        event = decode_record(record.value)
        if isinstance(event, PersonErased):
            for key_id in event.key_ids:
                seen = erased.get(key_id)
                if seen is None or event.occurred_at < seen[0]:
                    erased[key_id] = (event.occurred_at, event.event_id)
    return erased


def sealed_after_erasure(
    records: Iterable[LogRecord], erased: dict[UUID, tuple[datetime, UUID]]
) -> list[Violation]:
    """Every CaseAccepted sealed under a key id erased before it was accepted."""
    found = []
    for record in records:
        event = decode_record(record.value)
        if not isinstance(event, CaseAccepted):
            continue
        hit = erased.get(event.applicant.key_id)
        if hit is not None and event.occurred_at > hit[0]:
            found.append(
                Violation(
                    SEALED_UNDER_ERASED_KEY,
                    event.case_id,
                    event.event_id,
                    record.topic,
                    record.partition,
                    record.offset,
                    f"applicant {event.applicant.ref} sealed under key {event.applicant.key_id}, "
                    f"erased at {hit[0].isoformat(timespec='seconds')} by PersonErased {hit[1]}",
                )
            )
    return found


async def erasure_breaks(settings: Settings) -> list[Violation]:
    """The check over the deployment's log (see the module's docstring)."""
    partitions = await log_partitions(settings)

    def of(topic: str) -> list[TopicPartition]:
        return [tp for tp in partitions if tp.topic == settings.topic(topic)]

    erasures = of(PRIVACY_ERASURES)
    if not erasures:
        return []
    erased = erased_keys(await read_log(settings, None, erasures))
    if not erased:
        return []
    accepted = await read_log(settings, None, of(CASES_ACCEPTED))
    return sealed_after_erasure(accepted, erased)
