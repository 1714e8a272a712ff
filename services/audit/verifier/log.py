"""Reading the log: its records (:class:`LogRecord`), from Kafka (:func:`read_log`), and
the replay's first pass over them (:class:`Reader`)."""

from __future__ import annotations

from collections.abc import Callable, Container, Sequence
from dataclasses import dataclass
from typing import Any
from uuid import UUID

from aiokafka import TopicPartition

from services.audit.verifier.facts import CaseLog, Fact, shape
from services.audit.verifier.report import (
    BAD_SIGNATURE,
    DUPLICATE_EVENT_CONFLICT,
    MALFORMED_RECORD,
    MISSING_SIGNATURE,
    WRONG_SIGNER,
    Violation,
    short,
)
from services.audit.verifier.signatures import SignatureCache, SignerRule, signer_problems
from shared.contracts import topology
from shared.contracts.decoding import decode_record
from shared.contracts.events import EventDecodeError
from shared.messaging.kafka import fetch_to_end, partitions_matching
from shared.messaging.signing import SIGNATURE_HEADER, SIGNER_HEADER, PublicKeys
from shared.platform.settings import Settings

Progress = Callable[[int, int], None]  # records read so far, records to read


@dataclass(frozen=True, slots=True)
class LogRecord:
    topic: str  # logical topic name, without any deployment prefix, e.g. "cases.accepted"
    partition: int
    offset: int
    value: bytes  # the record value as stored in Kafka
    signer: str | None  # header "onedoor-signer"
    signature: str | None  # header "onedoor-signature" (base64)


async def log_partitions(settings: Settings) -> list[TopicPartition]:
    """Every partition of every event-log topic of the deployment (DLQs excluded)."""
    return await partitions_matching(settings, topology.event_log_pattern(settings.topic_prefix))


async def read_log(
    settings: Settings,
    on_progress: Progress | None = None,
    partitions: Sequence[TopicPartition] | None = None,
) -> list[LogRecord]:
    """Every record of every event-log topic (or of ``partitions``), from the first offset
    to the end as it is now, each fetched batch turned into LogRecords at once
    (``shared.messaging.kafka.fetch_to_end``)."""
    if partitions is None:
        partitions = await log_partitions(settings)
    records: list[LogRecord] = []
    topics = {tp.topic: tp.topic.removeprefix(settings.topic_prefix) for tp in partitions}
    append = records.append
    async for total, batch in fetch_to_end(settings, partitions):
        for r in batch:
            signer = signature = None  # the first of each, as ingest.header reads
            for key, raw in r.headers:
                if key == SIGNER_HEADER and signer is None:
                    signer = raw.decode(errors="replace")
                elif key == SIGNATURE_HEADER and signature is None:
                    signature = raw.decode(errors="replace")
            append(
                LogRecord(topics[r.topic], r.partition, r.offset, r.value or b"", signer, signature)
            )
        if on_progress is not None:
            on_progress(len(records), total)
    return records


def _record_violation(record: LogRecord, kind: str, detail: str) -> Violation:
    return Violation(kind, None, None, record.topic, record.partition, record.offset, detail)


class Reader:
    """The first pass: per record, the header checks and the parse; per event id, one
    canonical copy (the lowest log position) and every copy that contradicts it."""

    def __init__(
        self, keys: PublicKeys, check_signatures: bool, verified: Container[bytes]
    ) -> None:
        self.found: list[Violation] = []
        self.records = 0
        self.redrives = 0
        # Keyed by UUID.int: uuid.UUID hashes and compares in Python code, an int in C,
        # and these dicts see every record.
        self.events: dict[int, Fact] = {}
        self.cases: dict[int, CaseLog] = {}
        self._again: dict[int, list[Fact]] = {}
        self.signatures = SignatureCache(keys, verified) if check_signatures else None
        self._signed_right = SignerRule().fits

    def read(self, record: LogRecord) -> None:
        self.records += 1
        event = decode_record(record.value)
        if isinstance(event, EventDecodeError):
            # Not an event at all: that is the finding; who signed the bytes is moot.
            detail = short(f"not an event: {event}")
            self.found.append(_record_violation(record, MALFORMED_RECORD, detail))
            return
        fact = Fact(event, record)
        signer, signature = record.signer, record.signature
        if not signer or not signature:
            self.found.append(fact.violation(MISSING_SIGNATURE, "record is not signed"))
        elif self.signatures is not None and not self.signatures.ok(
            signer, record.value, signature
        ):
            self.found.append(
                fact.violation(BAD_SIGNATURE, f"signature does not verify as {signer}")
            )
        if signer and not self._signed_right(record.topic, signer, event):
            problems = signer_problems(record.topic, signer, event)
            self.found.append(fact.violation(WRONG_SIGNER, "; ".join(problems)))
        if shape(type(event))[1]:
            # A DeadLetterRedriven, an operator's action, not a step of the case: counted,
            # signature-checked, and kept out of the case invariants.
            self.redrives += 1
            return
        event_id = fact.event_id.int
        if self.events.setdefault(event_id, fact) is fact:
            self._case(fact.case_id).add(fact)
        else:
            self._again.setdefault(event_id, []).append(fact)

    def _case(self, case_id: UUID) -> CaseLog:
        log = self.cases.get(case_id.int)
        if log is None:
            log = self.cases[case_id.int] = CaseLog()
        return log

    def resolve_duplicates(self) -> None:
        """An identical re-delivery is no violation; a copy with other content is."""
        for event_id, copies in self._again.items():
            candidates = [self.events[event_id], *copies]
            canonical = min(candidates, key=lambda c: c.position)
            if canonical is not candidates[0]:
                self._case(candidates[0].case_id).remove(candidates[0])
                self._case(canonical.case_id).add(canonical)
                self.events[event_id] = canonical
            content: dict[str, Any] | None = None
            where = f"{canonical.topic}[{canonical.partition}]@{canonical.offset}"
            for other in candidates:
                if other is canonical or other.value == canonical.value:
                    continue
                # Same event, other bytes: compare what they say, not how it is spelt.
                if content is None:
                    content = canonical.event().to_dict()
                if other.event().to_dict() != content:
                    self.found.append(
                        other.violation(
                            DUPLICATE_EVENT_CONFLICT,
                            f"event id also at {where}, with different content",
                        )
                    )
