"""Kafka's own facts about a record: its key must be its case id, and it must sit in the
partition the project's partitioner (``shared.messaging.kafka.key_partitioner``, the Java
client's murmur2) gives that key. A record elsewhere breaks "one case, one partition, in
order" and makes a sharded replay fall back to one process."""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from services.audit.verifier.report import WRONG_KEY, WRONG_PARTITION, Violation
from shared.messaging.kafka import murmur2

if TYPE_CHECKING:
    from collections.abc import Mapping

    from services.audit.verifier.facts import Fact
    from services.audit.verifier.log import LogRecord


def case_of_key(key: bytes | None) -> UUID | None:
    """The case a record's key names, when it is a case id in the services' spelling."""
    if key is None or len(key) != 36:
        return None
    try:
        case_id = UUID(key.decode("ascii"))
    except (UnicodeDecodeError, ValueError):
        return None
    return case_id if str(case_id).encode() == key else None


def _key_words(key: bytes | None) -> str:
    if key is None:
        return "the record has no key"
    named = case_of_key(key)
    return f"keyed {named}" if named is not None else f"keyed with {len(key)} bytes"


class Placement:
    """Checks each record's key and partition; findings go to ``found``."""

    def __init__(self, partitions: Mapping[str, int], found: list[Violation]) -> None:
        self._partitions = partitions
        self._found = found
        # A key found to be its case's id -> (UUID.int of that case, the partition count
        # of the topic it was first seen on, the partition the key maps to there): the
        # topics of a log have one count as a rule, so one entry answers every record.
        self._keys: dict[bytes, tuple[int, int | None, int]] = {}
        self._homes: dict[tuple[bytes, int], int] = {}  # any key's, per count

    def check(self, record: LogRecord, fact: Fact) -> None:
        key, topic = record.key, record.topic
        # The usual record: a key seen before, on its own case, in its home partition.
        entry = self._keys.get(key) if key is not None else None
        if key is not None and entry is not None and entry[0] == fact.case_id.int:
            count = self._partitions.get(topic)
            home = entry[2] if count == entry[1] else self._home(key, count)
            if home != record.partition and home >= 0:
                self._report(record, fact.case_id, fact, home, self._partitions[topic])
            return
        case = fact.case_id
        want = str(case).encode()
        if key != want:
            self._found.append(
                fact.violation(WRONG_KEY, f"{_key_words(key)}, not by its case id {case}")
            )
            self.check_partition(record, case, fact)
            return
        count = self._partitions.get(topic)
        home = self._home(want, count)
        self._keys[want] = (case.int, count, home)
        if home != record.partition and home >= 0:
            self._report(record, case, fact, home, self._partitions[topic])

    def _home(self, key: bytes, count: int | None) -> int:
        """The partition ``key`` maps to among ``count``; -1 when the count is unknown."""
        if not count:
            return -1
        home = self._homes.get((key, count))
        if home is None:
            home = self._homes[(key, count)] = (murmur2(key) & 0x7FFFFFFF) % count
        return home

    def check_partition(self, record: LogRecord, case_id: UUID | None, fact: Fact | None) -> None:
        key, count = record.key, self._partitions.get(record.topic)
        if key is None or not count:
            return
        home = self._homes.get((key, count))
        if home is None:
            home = self._homes[(key, count)] = (murmur2(key) & 0x7FFFFFFF) % count
        if home != record.partition:
            self._report(record, case_id, fact, home, count)

    def _report(
        self, record: LogRecord, case_id: UUID | None, fact: Fact | None, home: int, count: int
    ) -> None:
        detail = (
            f"in partition {record.partition} of {record.topic}, but its key maps to "
            f"partition {home} of {count}"
        )
        if fact is not None:
            self._found.append(fact.violation(WRONG_PARTITION, detail))
            return
        self._found.append(
            Violation(
                WRONG_PARTITION,
                case_id,
                None,
                record.topic,
                record.partition,
                record.offset,
                detail,
            )
        )
