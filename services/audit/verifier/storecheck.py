"""The audit store held to the log, and the log to the store (issue 19, class 3).

A replay reads the log; this module reads what the audit store holds of the same
partitions (rows of this deployment's topic prefix) and compares them both ways, record
by record, by SHA-256 of the exact bytes:

- ``store_differs_from_log``: a store row at a log position holds other bytes than the
  record there (a row rewritten, whatever was recomputed after it);
- ``missing_from_store``: a record below the offset the audit service has committed
  (its consumer group's, which it commits only after the store's transaction) with no
  row at its position, and no stored event with the same bytes (a redelivery is stored
  once, under its first position);
- ``not_in_log``: a store row at a position where the log has no record;
- ``checkpoint_mismatch``: an ``AuditCheckpoint`` whose count or rolling digest of a
  partition's rows the store no longer adds up to (reported only for a checkpoint
  signed by the audit; a forged one is the replay's ``bad_signature``).

And, over the whole store (:func:`keyed_breaks`): ``store_tampered``, the first row of
a case whose link signature (``services.audit.keyed.link_message``, signed by the audit)
does not verify with the audit's public keys, or that has none.

A replay shared between processes compares in each process the partitions it reads
(``shard``); the store rows are read in one snapshot, after the group's committed
offsets and before the log's current end offsets, so a record being ingested while
verify runs is never taken for a fault.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from uuid import UUID

import asyncpg
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.errors import KafkaError

from services.audit import store
from services.audit.keyed import DIGEST_START, fold, link_message
from services.audit.verifier.log import LogRecord, read_log
from services.audit.verifier.placement import case_of_key
from services.audit.verifier.report import (
    CHECKPOINT_MISMATCH,
    MISSING_FROM_STORE,
    NOT_IN_LOG,
    STORE_DIFFERS_FROM_LOG,
    STORE_TAMPERED,
    VerifyReport,
    Violation,
    violation_order,
)
from shared.contracts import topology
from shared.contracts.audit_events import AuditCheckpoint
from shared.contracts.decoding import decode_record
from shared.contracts.events import EventDecodeError
from shared.messaging.kafka import client_options, make_admin
from shared.messaging.signing import PublicKeys
from shared.platform.settings import Settings

Place = tuple[str, int]  # (logical topic, partition)

# One snapshot of the store rows of one deployment in some partitions: $1 the prefix;
# partitions numbered $3 modulo $2. The digest is the SHA-256 of the stored bytes.
_STORE_ROWS = """
SELECT 'event' AS kind, topic, kafka_partition, kafka_offset, sha256(value) AS digest,
       event_id, case_id
FROM events WHERE topic_prefix = $1 AND kafka_partition % $2 = $3
UNION ALL
SELECT 'conflict', topic, kafka_partition, kafka_offset, sha256(value), event_id, NULL
FROM conflicts WHERE topic_prefix = $1 AND kafka_partition % $2 = $3
UNION ALL
SELECT 'malformed', topic, kafka_partition, kafka_offset, sha256(value), NULL, NULL
FROM malformed WHERE topic_prefix = $1 AND kafka_partition % $2 = $3
"""
_LEGACY_ROWS = "SELECT count(*) FROM events WHERE topic_prefix IS NULL"
_STORED_CONTENT = "SELECT content_hash FROM events WHERE content_hash = ANY($1::text[])"
_LINKS = """
SELECT case_id, case_seq, event_id, topic, kafka_partition, kafka_offset, chain_hash,
       link_signature
FROM events WHERE topic_prefix = $1 ORDER BY case_id, case_seq
"""


@dataclass(frozen=True, slots=True)
class StoreRow:
    kind: str  # event, conflict or malformed: the table it sits in
    place: Place
    offset: int
    digest: bytes
    event_id: UUID | None
    case_id: UUID | None

    def violation(self, kind: str, detail: str) -> Violation:
        return Violation(
            kind, self.case_id, self.event_id, self.place[0], self.place[1], self.offset, detail
        )


@dataclass
class StoreSnapshot:
    """What the store held of some partitions, with the offsets that bound the check."""

    rows: dict[Place, dict[int, list[StoreRow]]]
    committed: dict[Place, int] | None  # the audit group's; None when unknown
    # The log's end offsets, read after the rows (a partition the log lacks: none);
    # None when they could not be read.
    ends: dict[Place, int] | None
    places: frozenset[Place]  # the log partitions compared (this process's)
    notes: list[str] = field(default_factory=list)


@dataclass
class StoreComparison:
    """What a comparison found, and what an auditor should know of its reach."""

    violations: list[Violation]
    notes: list[str]


async def _connect(settings: Settings) -> asyncpg.Connection | None:
    try:
        conn: asyncpg.Connection = await asyncpg.connect(
            settings.dsn(), server_settings={"search_path": store.SCHEMA}
        )
    except (OSError, asyncpg.PostgresError):
        return None
    return conn


async def committed_offsets(settings: Settings) -> dict[Place, int] | None:
    """The offsets the audit service's consumer group has committed (logical topics);
    None when they cannot be read (no right to describe the group, say)."""
    admin = make_admin(settings)
    try:
        await admin.start()
        offsets = await admin.list_consumer_group_offsets(settings.group(topology.AUDIT))
    except (KafkaError, OSError):
        return None
    finally:
        await admin.close()
    return {
        (tp.topic.removeprefix(settings.topic_prefix), tp.partition): meta.offset
        for tp, meta in offsets.items()
        if meta.offset >= 0 and tp.topic.startswith(settings.topic_prefix)
    }


async def end_offsets(
    settings: Settings, places: Iterable[Place], consumer: AIOKafkaConsumer | None = None
) -> dict[Place, int]:
    """The log's end offsets now of these partitions (which the log has); through
    ``consumer`` when given (started, and left running)."""
    tps = {TopicPartition(settings.topic(t), p): (t, p) for t, p in set(places)}
    if not tps:
        return {}
    own = consumer is None
    if consumer is None:
        consumer = offsets_reader(settings)
        await consumer.start()
    try:
        # Assigned first: the client then fetches the partitions' metadata at once, where
        # end_offsets alone waits for its next refresh (about a second).
        consumer.assign(list(tps))
        ends = await consumer.end_offsets(list(tps))
    finally:
        if own:
            await consumer.stop()
    return {tps[tp]: offset for tp, offset in ends.items()}


def offsets_reader(settings: Settings) -> AIOKafkaConsumer:
    """A group-less consumer (not started) that only asks for end offsets."""
    return AIOKafkaConsumer(**client_options(settings), enable_auto_commit=False)


async def snapshot(
    settings: Settings, shard: tuple[int, int], log_places: Sequence[Place]
) -> StoreSnapshot | None:
    """The store rows of this deployment in the partitions of ``shard`` (see
    ``shards.replay_shards``), between the group's committed offsets (read first) and
    the log's end offsets (read last); None when the store is not reachable or not
    migrated to keyed rows."""
    # The end offsets' reader starts beside the rest: they are asked for only after the
    # store's snapshot, but starting a client takes longer than all of it.
    reader = offsets_reader(settings)
    starting = asyncio.create_task(reader.start())
    try:
        return await _snapshot(settings, shard, log_places, reader, starting)
    finally:
        if not starting.done():
            starting.cancel()
        # Bounded: a client whose start was cut short may never finish stopping.
        with contextlib.suppress(Exception):
            await asyncio.wait_for(asyncio.shield(reader.stop()), 5)


async def _snapshot(
    settings: Settings,
    shard: tuple[int, int],
    log_places: Sequence[Place],
    reader: AIOKafkaConsumer,
    starting: asyncio.Task[None],
) -> StoreSnapshot | None:
    committed = await committed_offsets(settings)
    conn = await _connect(settings)
    if conn is None:
        return None
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            if not await conn.fetchval(
                "SELECT count(*) = 1 FROM information_schema.columns WHERE table_schema = $1"
                " AND table_name = 'events' AND column_name = 'topic_prefix'",
                store.SCHEMA,
            ):
                return None
            found = await conn.fetch(_STORE_ROWS, settings.topic_prefix, *shard)
            legacy = int(await conn.fetchval(_LEGACY_ROWS)) if shard[1] == 0 else 0
    except asyncpg.PostgresError:
        return None
    finally:
        await conn.close()
    rows: dict[Place, dict[int, list[StoreRow]]] = {}
    for r in found:
        place = (r["topic"], r["kafka_partition"])
        row = StoreRow(
            r["kind"], place, r["kafka_offset"], bytes(r["digest"]), r["event_id"], r["case_id"]
        )
        rows.setdefault(place, {}).setdefault(row.offset, []).append(row)
    ends: dict[Place, int] | None
    try:
        await starting
        ends = await end_offsets(settings, log_places, reader)
    except (KafkaError, OSError):
        ends = None
    notes = []
    if committed is None:
        notes.append(
            "the audit's committed offsets could not be read: records missing from the "
            "store were not looked for"
        )
    if legacy:
        notes.append(
            f"{legacy} stored events predate keyed rows (migration 006) and name no "
            "deployment: they were not compared with the log"
        )
    return StoreSnapshot(rows, committed, ends, frozenset(log_places), notes)


def compare(
    records: Sequence[LogRecord],
    snap: StoreSnapshot,
    stored_elsewhere: set[bytes],
    keys: PublicKeys,
) -> list[Violation]:
    """Every difference between ``records`` (the log's, of some partitions) and the
    store's rows of the same partitions; ``stored_elsewhere``: the digests of records
    stored under another position (redeliveries), see :func:`unmatched`."""
    found: list[Violation] = []
    logged = log_digests(records)
    for place, offsets in logged.items():
        stored = snap.rows.get(place, {})
        committed = (snap.committed or {}).get(place, 0)
        for offset, (digest, record) in offsets.items():
            rows = stored.get(offset)
            if rows:
                found += [
                    row.violation(
                        STORE_DIFFERS_FROM_LOG,
                        f"the store's {row.kind} row here holds other bytes than the log's record",
                    )
                    for row in rows
                    if row.digest != digest
                ]
            elif offset < committed and digest not in stored_elsewhere:
                found.append(_missing(record, committed))
    for place, stored in snap.rows.items():
        offsets = logged.get(place, {})
        read_end = max(offsets) + 1 if offsets else 0
        end = math.inf if snap.ends is None else snap.ends.get(place, 0)
        for offset, rows in stored.items():
            if offset in offsets or read_end <= offset < end:
                continue  # compared above, or logged after this replay read the log
            where = "beyond the log's end" if offset >= end else "where the log has no record"
            found += [
                row.violation(NOT_IN_LOG, f"a {row.kind} row of the store {where}") for row in rows
            ]
    found += check_checkpoints(records, snap, keys)
    return found


def unmatched(records: Sequence[LogRecord], snap: StoreSnapshot) -> set[bytes]:
    """Digests of records below the committed offset with no store row at their position
    (a redelivery, or a record missing from the store): what to look up by content."""
    out: set[bytes] = set()
    committed = snap.committed or {}
    for record in records:
        place = (record.topic, record.partition)
        if record.offset < committed.get(place, 0) and record.offset not in snap.rows.get(
            place, {}
        ):
            out.add(hashlib.sha256(record.value).digest())
    return out


async def stored_by_content(settings: Settings, digests: set[bytes]) -> set[bytes]:
    """Which of these digests some stored event's bytes have (its content hash)."""
    if not digests:
        return set()
    conn = await _connect(settings)
    if conn is None:
        return set()
    try:
        rows = await conn.fetch(_STORED_CONTENT, [d.hex() for d in digests])
    finally:
        await conn.close()
    return {bytes.fromhex(r["content_hash"]) for r in rows}


def log_digests(records: Iterable[LogRecord]) -> dict[Place, dict[int, tuple[bytes, LogRecord]]]:
    """Each record's SHA-256 by partition and offset (records come a partition's run at
    a time, so the partition's dict is looked up once per run)."""
    out: dict[Place, dict[int, tuple[bytes, LogRecord]]] = {}
    sha256 = hashlib.sha256
    topic, partition = "", -1
    offsets: dict[int, tuple[bytes, LogRecord]] = {}
    for r in records:
        if r.partition != partition or r.topic != topic:
            topic, partition = r.topic, r.partition
            offsets = out.setdefault((topic, partition), {})
        offsets[r.offset] = (sha256(r.value).digest(), r)
    return out


def _missing(record: LogRecord, committed: int) -> Violation:
    event = decode_record(record.value)
    case_id, event_id = (
        (case_of_key(record.key), None)
        if isinstance(event, EventDecodeError)
        else (event.case_id, event.event_id)
    )
    return Violation(
        MISSING_FROM_STORE,
        case_id,
        event_id,
        record.topic,
        record.partition,
        record.offset,
        f"the audit committed offset {committed} of this partition, but its store has no "
        "row of this record",
    )


def check_checkpoints(
    records: Sequence[LogRecord], snap: StoreSnapshot, keys: PublicKeys
) -> list[Violation]:
    """Each partition that a checkpoint in ``records`` counted and ``snap`` holds rows
    of, or should: the store's rows below the offset it reached must add up to its count
    and digest."""
    marks: dict[Place, list[tuple[int, int, str, LogRecord, AuditCheckpoint]]] = {}
    for record in records:
        if record.topic != topology.AUDIT_CHECKPOINTS:
            continue
        event = decode_record(record.value)
        if not isinstance(event, AuditCheckpoint):
            continue
        for mark in event.partitions:
            marks.setdefault((mark.topic, mark.partition), []).append(
                (mark.reached, mark.rows, mark.digest, record, event)
            )
    found: list[Violation] = []
    for place, wanted in marks.items():
        if place not in snap.rows and place not in snap.places:
            continue  # another process's partition
        stored = sorted(
            (offset, row.digest)
            for offset, rows in snap.rows.get(place, {}).items()
            for row in rows
        )
        wanted.sort(key=lambda m: m[0])
        digest, count, i = DIGEST_START, 0, 0
        for reached, rows, expected, record, event in wanted:
            while i < len(stored) and stored[i][0] < reached:
                digest = fold(digest, *stored[i])
                count += 1
                i += 1
            if (count, digest.hex()) == (rows, expected) or not _signed_by_audit(record, keys):
                continue
            found.append(
                Violation(
                    CHECKPOINT_MISMATCH,
                    None,
                    event.event_id,
                    record.topic,
                    record.partition,
                    record.offset,
                    f"the checkpoint counted {rows} store rows of {place[0]}[{place[1]}] below "
                    f"offset {reached}; the store now holds {count} there"
                    + ("" if count != rows else ", with other bytes"),
                )
            )
    return found


def _signed_by_audit(record: LogRecord, keys: PublicKeys) -> bool:
    signer = topology.AUDIT
    return (
        record.signer == signer
        and record.signature is not None
        and keys.verify(signer, record.value, record.signature)
    )


def checkpoint_places(
    settings: Settings, counts: dict[str, int], own: Sequence[TopicPartition]
) -> list[TopicPartition]:
    """The partitions of the checkpoints' topic a process does not read already."""
    mine = set(own)
    name = settings.topic(topology.AUDIT_CHECKPOINTS)
    return [
        tp
        for p in range(counts.get(topology.AUDIT_CHECKPOINTS, 0))
        if (tp := TopicPartition(name, p)) not in mine
    ]


async def compare_with_log(
    settings: Settings,
    snap: StoreSnapshot | None,
    records: Sequence[LogRecord],
    keys: PublicKeys,
    extra_checkpoints: Sequence[TopicPartition],
) -> StoreComparison | None:
    """:func:`compare` with the look-ups it needs: the checkpoints this process did not
    read, the redeliveries' stored copies."""
    if snap is None:
        return None
    checkpoints = await read_log(settings, None, extra_checkpoints) if extra_checkpoints else []
    elsewhere = await stored_by_content(settings, unmatched(records, snap))
    found = compare(records, snap, elsewhere, keys)
    if checkpoints:
        found += check_checkpoints(checkpoints, snap, keys)
    return StoreComparison(found, snap.notes)


async def keyed_breaks(settings: Settings) -> list[Violation] | None:
    """``store_tampered``: per case of this deployment, the first stored row whose link
    signature is missing or does not verify as the audit's (any key of it in the
    registry). None when it cannot be checked (the store unreachable or not migrated)."""
    keys = PublicKeys.load_or_empty(settings.registry_path())
    conn = await _connect(settings)
    if conn is None:
        return None
    found: list[Violation] = []
    try:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            current: Any = None
            async for row in conn.cursor(_LINKS, settings.topic_prefix, prefetch=5000):
                if row["case_id"] == current:
                    continue  # this case is reported already
                message = link_message(
                    prefix=settings.topic_prefix,
                    case_id=row["case_id"],
                    case_seq=row["case_seq"],
                    event_id=row["event_id"],
                    topic=row["topic"],
                    partition=row["kafka_partition"],
                    offset=row["kafka_offset"],
                    chain_hash=row["chain_hash"],
                )
                signature = row["link_signature"]
                if signature is not None and keys.verify(topology.AUDIT, message, signature):
                    continue
                current = row["case_id"]
                found.append(
                    Violation(
                        STORE_TAMPERED,
                        row["case_id"],
                        row["event_id"],
                        row["topic"],
                        row["kafka_partition"],
                        row["kafka_offset"],
                        f"row {row['case_seq']} of the case's chain "
                        + ("is not signed" if signature is None else "fails its signature")
                        + " by the audit: written or rewritten outside the audit service "
                        "(the case's later rows are not vouched for either)",
                    )
                )
    except (asyncpg.UndefinedColumnError, asyncpg.UndefinedTableError):
        return None
    finally:
        await conn.close()
    return found


def begin(
    settings: Settings, shard: tuple[int, int], partitions: Sequence[TopicPartition]
) -> asyncio.Task[StoreSnapshot | None]:
    """The store's snapshot of a process's partitions, read beside the log."""
    places = [(tp.topic.removeprefix(settings.topic_prefix), tp.partition) for tp in partitions]
    return asyncio.create_task(snapshot(settings, shard, places))


async def finish(
    settings: Settings,
    begun: asyncio.Task[StoreSnapshot | None],
    records: Sequence[LogRecord],
    report: VerifyReport,
    *,
    counts: dict[str, int],
    partitions: Sequence[TopicPartition],
) -> None:
    """Compare the snapshot ``begun`` with the ``records`` this process read (of
    ``partitions``; ``counts``: every topic's partition count) and add the findings to
    its ``report``."""
    keys = PublicKeys.load_or_empty(settings.registry_path())
    extra = checkpoint_places(settings, counts, partitions)
    comparison = await compare_with_log(settings, await begun, records, keys, extra)
    if comparison is None:
        return
    report.violations.extend(comparison.violations)
    report.violations.sort(key=violation_order)
    report.store_compared = True
    report.store_notes = comparison.notes
