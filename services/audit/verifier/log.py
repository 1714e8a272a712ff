"""Reading the log: its records (:class:`LogRecord`), from Kafka (:func:`read_log`), and
the replay's first pass over them (:class:`Reader`)."""

from __future__ import annotations

from collections.abc import Callable, Container, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta, tzinfo
from typing import Any
from uuid import UUID

from aiokafka import TopicPartition

from services.audit.projection import iso
from services.audit.verifier.facts import SHAPES, CaseLog, Fact, home_topic, shape
from services.audit.verifier.placement import Placement, case_of_key
from services.audit.verifier.report import (
    BAD_SIGNATURE,
    CLOCK_SKEW,
    DUPLICATE_EVENT_CONFLICT,
    EVENT_ON_TWO_TOPICS,
    FORGED_COPY,
    KEY_NOT_VALID,
    MALFORMED_RECORD,
    MISSING_SIGNATURE,
    WRONG_SIGNER,
    Violation,
    short,
)
from services.audit.verifier.signatures import SignatureCache, SignerRule, signer_problems
from shared.contracts import topology
from shared.contracts.decoding import decode_record
from shared.contracts.events import Event, EventDecodeError
from shared.messaging.kafka import fetch_to_end, partitions_matching
from shared.messaging.signing import SIGNATURE_HEADER, SIGNER_HEADER, PublicKeys
from shared.platform.settings import Settings

Progress = Callable[[int, int], None]  # records read so far, records to read
# How many seconds' clock bounds a replay keeps: the records of a partition come in
# time order, so the seconds the partitions are reading now are the ones that recur.
_BOUNDS_KEPT = 65_536


@dataclass(frozen=True, slots=True)
class LogRecord:
    topic: str  # logical topic name, without any deployment prefix, e.g. "cases.accepted"
    partition: int
    offset: int
    value: bytes  # the record value as stored in Kafka
    signer: str | None  # header "onedoor-signer"
    signature: str | None  # header "onedoor-signature" (base64)
    key: bytes | None = None  # the record's Kafka key (the services key it by case id)
    timestamp: int | None = None  # the record's Kafka timestamp, ms since the epoch


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
                LogRecord(
                    topics[r.topic],
                    r.partition,
                    r.offset,
                    r.value or b"",
                    signer,
                    signature,
                    r.key,
                    r.timestamp,
                )
            )
        if on_progress is not None:
            on_progress(len(records), total)
    return records


def partition_counts(partitions: Iterable[TopicPartition], prefix: str) -> dict[str, int]:
    """How many partitions each topic has (logical names): what the placement checks
    need, from every partition of the log (not one shard's)."""
    counts: dict[str, int] = {}
    for tp in partitions:
        topic = tp.topic.removeprefix(prefix)
        counts[topic] = max(counts.get(topic, 0), tp.partition + 1)
    return counts


def _record_violation(
    record: LogRecord, kind: str, detail: str, case_id: UUID | None = None
) -> Violation:
    return Violation(kind, case_id, None, record.topic, record.partition, record.offset, detail)


class Reader:
    """The first pass: per record, the header checks, the parse and (given the topics'
    partition counts) its key and partition; per event id, one canonical copy and every
    copy that contradicts it.

    A record that fails a signature or signer check never counts toward its case's
    story: it is reported, and kept aside (``CaseLog.tainted``) only so that what
    follows from it is not reported again as if it were a new fault."""

    def __init__(
        self,
        keys: PublicKeys,
        check_signatures: bool,
        verified: Container[bytes],
        partitions: Mapping[str, int] | None = None,
        skew: timedelta = timedelta(minutes=5),
    ) -> None:
        self.found: list[Violation] = []
        self.records = 0
        self.redrives = 0
        # Keyed by UUID.int: uuid.UUID hashes and compares in Python code, an int in C,
        # and these dicts see every record.
        self.events: dict[int, Fact] = {}
        self.cases: dict[int, CaseLog] = {}
        self._again: dict[int, list[Fact]] = {}
        self._untrusted: list[Fact] = []
        self.signatures = SignatureCache(keys, verified) if check_signatures else None
        self._signed_right = SignerRule().fits
        # (topic, signer, event type, producer) -> whether the signer may sign that there
        self._fits: dict[tuple[str, str, str, str], bool] = {}
        self.placement = Placement(partitions, self.found) if partitions is not None else None
        self._skew_ms = skew.total_seconds() * 1000
        self._tz: tzinfo | None = None
        self._epoch = datetime(1970, 1, 1, tzinfo=UTC)
        # second of Kafka's timestamp -> the latest event time allowed then, in _tz
        self._bounds: dict[int, datetime] = {}
        # signer -> (since, until, tzinfo): when all its keys are valid, in that tzinfo
        self._windows: dict[str, tuple[datetime, datetime, tzinfo | None]] = {}

    def read(self, record: LogRecord) -> None:
        # Every record of the log passes here: the usual record's checks are written out
        # (a lookup or two and a comparison each), and only a record that fails or misses
        # one of those shortcuts calls out to the full rule.
        self.records += 1
        event = decode_record(record.value)
        if isinstance(event, EventDecodeError):
            self._malformed(record, event)
            return
        kind, redrive = SHAPES.get(type(event)) or shape(type(event))
        fact = Fact(event, record, kind)
        trusted = self._trusted(record, fact, event)
        if self.placement is not None:
            self.placement.check(record, fact)
        logged = record.timestamp
        if logged and logged > 0:
            at = fact.at
            bound = self._bounds.get(logged // 1000) if at.tzinfo is self._tz else None
            if (bound is None or at > bound) and self._after_logged(at, logged):
                when = datetime.fromtimestamp(logged / 1000, UTC).isoformat(timespec="seconds")
                self.found.append(
                    fact.violation(CLOCK_SKEW, f"dated {iso(at)}, after Kafka logged it at {when}")
                )
        if redrive:
            # A DeadLetterRedriven, an operator's action, not a step of the case: counted,
            # signature-checked, and kept out of the case invariants.
            self.redrives += 1
            return
        if not trusted:
            self._case(fact.case_id).tainted[fact.event_id.int] = fact
            self._untrusted.append(fact)
            return
        event_id = fact.event_id.int
        if self.events.setdefault(event_id, fact) is fact:
            case = fact.case_id.int
            log = self.cases.get(case)
            if log is None:
                log = self.cases[case] = CaseLog()
            log.add(fact)
        else:
            self._again.setdefault(event_id, []).append(fact)

    def _trusted(self, record: LogRecord, fact: Fact, event: Event) -> bool:
        """The header checks: signed, the signature good, by a key valid at the event's
        time, by the service that may sign it there. Each failure is reported."""
        signer, signature = record.signer, record.signature
        trusted = True
        if not signer or not signature:
            self.found.append(fact.violation(MISSING_SIGNATURE, "record is not signed"))
            trusted = False
        elif self.signatures is not None:
            if not self.signatures.ok(signer, record.value, signature):
                self.found.append(
                    fact.violation(BAD_SIGNATURE, f"signature does not verify as {signer}")
                )
                trusted = False
            else:
                at = fact.at
                window = self._windows.get(signer)
                if (
                    window is None or at.tzinfo is not window[2] or not window[0] <= at < window[1]
                ) and not self._key_valid(signer, record, at):
                    self.found.append(
                        fact.violation(
                            KEY_NOT_VALID,
                            f"signed by {signer} with a key that was not valid at {iso(at)}",
                        )
                    )
                    trusted = False
        if signer:
            rule = (record.topic, signer, fact.event_type, event.producer)
            fits = self._fits.get(rule)
            if fits is None:
                fits = self._fits[rule] = self._signed_right(record.topic, signer, event)
            if not fits:
                problems = signer_problems(record.topic, signer, event)
                self.found.append(fact.violation(WRONG_SIGNER, "; ".join(problems)))
                trusted = False
        return trusted

    def _malformed(self, record: LogRecord, error: EventDecodeError) -> None:
        # Not an event at all: that is the finding; who signed the bytes is moot. Its
        # key still names the case when it is one.
        detail = short(f"not an event: {error}")
        case_id = case_of_key(record.key)
        self.found.append(_record_violation(record, MALFORMED_RECORD, detail, case_id))
        if self.placement is not None:
            self.placement.check_partition(record, case_id, None)

    def _key_valid(self, signer: str, record: LogRecord, at: datetime) -> bool:
        """``SignatureCache.valid_then``, with its usual answer (the signer's keys were
        all valid then) found here at the cost of a lookup and two comparisons."""
        window = self._windows.get(signer)
        if window is not None and at.tzinfo is window[2] and window[0] <= at < window[1]:
            return True
        assert self.signatures is not None
        valid = self.signatures.valid_then(signer, record.value, record.signature or "", at)
        window = self.signatures.window(signer, at.tzinfo)
        if window is not None:
            self._windows[signer] = window
        return valid

    def _after_logged(self, at: datetime, logged_ms: int) -> bool:
        """Whether ``at`` is later than Kafka's ``logged_ms`` plus the allowed skew.

        Cheap for the usual record: the bound for the start of its logged second, in
        ``at``'s own tzinfo when that is UTC (datetimes sharing a tzinfo compare without
        calling it; pydantic's costs a microsecond a call), is kept per second (``read``
        compares with it at once); only a record past it is measured to the millisecond.
        """
        second = logged_ms // 1000
        tz = at.tzinfo
        if tz is not self._tz:
            utc = tz is not None and tz.utcoffset(None) == timedelta(0)
            self._tz, self._epoch = tz, datetime(1970, 1, 1, tzinfo=tz if utc else UTC)
            self._bounds.clear()
        bound = self._bounds.get(second)
        if bound is None:
            if len(self._bounds) >= _BOUNDS_KEPT:
                self._bounds.clear()  # a long log: keep the seconds of recent records
            bound = self._bounds[second] = self._epoch + timedelta(
                seconds=second, milliseconds=self._skew_ms
            )
        if at <= bound:
            return False
        since = at - self._epoch
        ms = (since.days * 86400 + since.seconds) * 1000 + since.microseconds / 1000
        return ms > logged_ms + self._skew_ms

    def _case(self, case_id: UUID) -> CaseLog:
        log = self.cases.get(case_id.int)
        if log is None:
            log = self.cases[case_id.int] = CaseLog()
        return log

    def resolve_duplicates(self) -> None:
        """Copies of one event id, once every record is read.

        The canonical copy is one on the topic its event belongs to (``home_topic``),
        the lowest log position among those; only when no copy is at home, the lowest
        position. A copy on another topic is an ``event_on_two_topics`` whatever the
        topics' names and whatever its bytes; a copy on the same topic with other
        content is a ``duplicate_event_conflict``; an identical re-delivery is nothing.
        A copy that failed its signature checks was never a candidate: it is a
        ``forged_copy`` of the genuine one."""
        for event_id, copies in self._again.items():
            candidates = [self.events[event_id], *copies]
            canonical = min(candidates, key=_canonical_order)
            if canonical is not candidates[0]:
                self._case(candidates[0].case_id).remove(candidates[0])
                self._case(canonical.case_id).add(canonical)
                self.events[event_id] = canonical
            content: dict[str, Any] | None = None
            where = f"{canonical.topic}[{canonical.partition}]@{canonical.offset}"
            for other in candidates:
                if other is canonical:
                    continue
                if other.topic != canonical.topic:
                    same = "the same bytes" if other.value == canonical.value else "other bytes"
                    self.found.append(
                        other.violation(
                            EVENT_ON_TWO_TOPICS,
                            f"{other.event_type} belongs on {canonical.topic} and is there "
                            f"at {where}; this copy on {other.topic} has {same}",
                        )
                    )
                    continue
                if other.value == canonical.value:
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
        for fact in self._untrusted:
            genuine = self.events.get(fact.event_id.int)
            if genuine is not None:
                self.found.append(
                    fact.violation(
                        FORGED_COPY,
                        f"fails its signature checks and copies event id {fact.event_id} of "
                        f"the genuine record at {genuine.topic}[{genuine.partition}]"
                        f"@{genuine.offset}, which counts instead",
                    )
                )


def _canonical_order(fact: Fact) -> tuple[bool, str, int, int]:
    return (fact.topic != home_topic(fact), fact.topic, fact.partition, fact.offset)
