"""The audit's SQL (schema ``audit``): the append-only event store, the signature
verdicts, and the case-history projection built from it (the hash chains' walk is in
``services.audit.chains``)."""

from __future__ import annotations

import hashlib
import hmac
import json
from collections import OrderedDict
from collections.abc import AsyncIterator, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from uuid import UUID

from services.audit.access import keep_reads
from services.audit.chains import GENESIS, chain_hash, content_hash
from services.audit.keyed import link_message
from services.audit.projection import project
from services.audit.statistics import CaseFigures
from services.audit.verifier.log import LogRecord
from shared.contracts.audit_events import AuditCheckpoint
from shared.contracts.events import Event, PersonalDataAccessed, parse_event
from shared.messaging import MESSAGING_MIGRATIONS
from shared.messaging.signing import Signer, verdict_mac
from shared.platform.db import Connection, collect_migrations

SCHEMA = "audit"
# The migrations of the audit's schema, in the order the service applies them at start-up
# (the messaging tables first, as for every service).
MIGRATIONS_DIR = Path(__file__).parent / "migrations"


class StoreNotReadyError(RuntimeError):
    """The audit schema is missing or not migrated to this code's version."""


async def check_migrated(conn: Connection) -> None:
    """Raise :class:`StoreNotReadyError` unless every migration of this code is applied
    to the session's schema. Reads only: only the audit service migrates its schema.
    """
    if not await conn.fetchval("SELECT to_regclass('schema_migrations') IS NOT NULL"):
        raise StoreNotReadyError(f"the {SCHEMA} schema does not exist or was never migrated")
    applied = {r["version"] for r in await conn.fetch("SELECT version FROM schema_migrations")}
    missing = [
        m.name
        for m in collect_migrations([MESSAGING_MIGRATIONS, MIGRATIONS_DIR])
        if m.version not in applied
    ]
    if missing:
        raise StoreNotReadyError(
            f"the {SCHEMA} schema lacks migration(s) {', '.join(missing)} (an older audit "
            "service migrated it)"
        )


def views_digest(views: Iterable[dict[str, Any]]) -> str:
    """sha256 over the canonical JSON of case views sorted by case id."""
    ordered = sorted(views, key=lambda v: str(v["case_id"]))
    body = json.dumps(ordered, sort_keys=True, separators=(",", ":"), default=str)
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass
class IngestResult:
    stored: int = 0
    duplicates: int = 0
    conflicts: int = 0
    malformed: int = 0
    unstorable: int = 0


async def ingest(
    conn: Connection,
    batch: Sequence[tuple[LogRecord, Event | None]],
    parsed: ParsedEvents | None = None,
    *,
    prefix: str = "",
    signer: Signer | None = None,
) -> tuple[IngestResult, set[UUID]]:
    """Append a batch to the store inside the caller's transaction.

    Returns the counts and the ids of the cases that gained events (reads of personal
    data and the audit's own checkpoints aside: they change no view; reads go to
    ``access_reads``). An event already stored with the same bytes is a redelivery
    (skipped); with other bytes it is kept in ``conflicts`` as evidence. The events
    stored now go into ``parsed`` (pending until the caller commits it), so refreshing
    the views does not parse them a second time. Every row names the deployment
    (``prefix``, its topic prefix); each event's chain link is signed by ``signer`` (the
    audit's key; ``services.audit.keyed.link_message``; unsigned without one).
    """
    result = IngestResult()
    events = [(r, e) for r, e in batch if e is not None]
    for record, _ in ((r, e) for r, e in batch if e is None):
        inserted = await conn.fetchval(
            "INSERT INTO malformed (topic, kafka_partition, kafka_offset, value, topic_prefix) "
            "VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING RETURNING id",
            record.topic,
            record.partition,
            record.offset,
            record.value,
            prefix,
        )
        result.malformed += inserted is not None
    if not events:
        return result, set()
    stored = {
        r["event_id"]: r["content_hash"]
        for r in await conn.fetch(
            "SELECT e.event_id, e.content_hash FROM unnest($1::uuid[]) AS u(id) "
            "JOIN events e ON e.event_id = u.id",
            [e.event_id for _, e in events],
        )
    }
    fresh: list[tuple[LogRecord, Event, str]] = []
    for record, event in events:
        digest = content_hash(record.value)
        known = stored.get(event.event_id)
        if known is None:
            stored[event.event_id] = digest
            fresh.append((record, event, digest))
        elif known == digest:
            result.duplicates += 1
        else:
            inserted = await conn.fetchval(
                "INSERT INTO conflicts (event_id, topic, kafka_partition, kafka_offset, value,"
                " content_hash, stored_hash, topic_prefix) VALUES ($1, $2, $3, $4, $5, $6, $7,"
                " $8) ON CONFLICT DO NOTHING RETURNING id",
                event.event_id,
                record.topic,
                record.partition,
                record.offset,
                record.value,
                digest,
                known,
                prefix,
            )
            result.conflicts += inserted is not None
    if not fresh:
        return result, set()
    if parsed is not None:
        for _, event, _ in fresh:
            parsed.hold(event)
    cases = sorted({e.case_id for _, e, _ in fresh})
    # FOR UPDATE: two audit replicas appending to one case's chain serialise here.
    heads = {
        r["case_id"]: (r["seq"], r["chain_hash"])
        for r in await conn.fetch(
            "SELECT h.case_id, h.seq, h.chain_hash FROM unnest($1::uuid[]) AS u(id) "
            "JOIN case_heads h ON h.case_id = u.id "
            "ORDER BY h.case_id FOR UPDATE OF h",
            cases,
        )
    }
    rows = []
    links: list[bytes] = []
    for record, event, digest in fresh:
        seq, prev = heads.get(event.case_id, (0, GENESIS))
        link = chain_hash(prev, digest, event.event_id)
        heads[event.case_id] = (seq + 1, link)
        links.append(
            link_message(
                prefix=prefix,
                case_id=event.case_id,
                case_seq=seq + 1,
                event_id=event.event_id,
                topic=record.topic,
                partition=record.partition,
                offset=record.offset,
                chain_hash=link,
            )
        )
        rows.append(
            (
                event.event_id,
                event.case_id,
                seq + 1,
                event.event_type,
                event.producer,
                event.occurred_at,
                record.topic,
                record.partition,
                record.offset,
                record.signer,
                record.signature,
                record.value,
                digest,
                prev,
                link,
                prefix,
            )
        )
    # One Ed25519 signature per tree of up to BATCH_LEAVES links, each verifiable alone.
    signatures = signer.sign_batch(links) if signer is not None else [None] * len(rows)
    await conn.copy_records_to_table(
        "events",
        records=[(*row, sig) for row, sig in zip(rows, signatures, strict=True)],
        columns=[
            "event_id",
            "case_id",
            "case_seq",
            "event_type",
            "producer",
            "occurred_at",
            "topic",
            "kafka_partition",
            "kafka_offset",
            "signer",
            "signature",
            "value",
            "content_hash",
            "prev_hash",
            "chain_hash",
            "topic_prefix",
            "link_signature",
        ],
    )
    await conn.execute(
        "INSERT INTO case_heads (case_id, seq, chain_hash) "
        "SELECT * FROM unnest($1::uuid[], $2::int[], $3::text[]) "
        "ON CONFLICT (case_id) DO UPDATE SET seq = EXCLUDED.seq, chain_hash = EXCLUDED.chain_hash",
        cases,
        [heads[case][0] for case in cases],
        [heads[case][1] for case in cases],
    )
    await keep_reads(
        conn, [(e, r.signer) for r, e, _ in fresh if isinstance(e, PersonalDataAccessed)]
    )
    result.stored = len(rows)
    # A read changes no case's view (the projection leaves reads out), nor a checkpoint.
    return result, {
        e.case_id for _, e, _ in fresh if not isinstance(e, PersonalDataAccessed | AuditCheckpoint)
    }


def printable(text: str) -> str:
    """``text`` as PostgreSQL's text type takes it: NUL characters spelt out."""
    return text.replace("\x00", "\\u0000")


async def keep_unstorable(
    conn: Connection, record: LogRecord, reason: str, *, prefix: str = ""
) -> bool:
    """Keep a record the database refused to store as an event (see migration 004) in
    ``malformed``, with its exact bytes, origin, signature headers and the reason (inside
    the caller's transaction); whether it is new there."""
    inserted = await conn.fetchval(
        "INSERT INTO malformed (topic, kafka_partition, kafka_offset, value, reason, signer,"
        " signature, topic_prefix) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)"
        " ON CONFLICT DO NOTHING RETURNING id",
        record.topic,
        record.partition,
        record.offset,
        record.value,
        printable(reason)[:2000],
        None if record.signer is None else record.signer.encode(),
        None if record.signature is None else record.signature.encode(),
        prefix,
    )
    return inserted is not None


@dataclass(frozen=True, slots=True)
class Verdict:
    """One Ed25519 check made at ingest (migration 002, ``signing.record_digest``)."""

    event_id: UUID
    record_hash: bytes  # record_digest(public key, signer, signature, value)
    signer: str
    key_fingerprint: bytes
    valid: bool
    topic: str
    partition: int
    offset: int
    mac: bytes | None  # verdict_mac(audit's MAC key, event id, record_hash, valid)


async def record_verdicts(conn: Connection, topic_prefix: str, verdicts: Sequence[Verdict]) -> int:
    """Append the verdicts not stored yet (inside the caller's transaction); return how many."""
    if not verdicts:
        return 0
    added = await conn.fetchval(
        "WITH added AS ("
        " INSERT INTO signature_verdicts (event_id, record_hash, signer, key_fingerprint, valid,"
        " topic_prefix, topic, kafka_partition, kafka_offset, mac)"
        " SELECT * FROM unnest($1::uuid[], $2::bytea[], $3::text[], $4::bytea[], $5::bool[],"
        " $6::text[], $7::text[], $8::int[], $9::bigint[], $10::bytea[])"
        " ON CONFLICT DO NOTHING RETURNING 1) SELECT count(*) FROM added",
        [v.event_id for v in verdicts],
        [v.record_hash for v in verdicts],
        [v.signer for v in verdicts],
        [v.key_fingerprint for v in verdicts],
        [v.valid for v in verdicts],
        [topic_prefix] * len(verdicts),
        [v.topic for v in verdicts],
        [v.partition for v in verdicts],
        [v.offset for v in verdicts],
        [v.mac for v in verdicts],
    )
    return int(added)


_VERDICT_ROW = 16 + 32 + 32  # event id, record digest, MAC


async def verified_digests(
    conn: Connection, topic_prefix: str, mac_key: bytes, shard: tuple[int, int] = (1, 0)
) -> set[bytes]:
    """The record digests whose signature verified at ingest, for one deployment: only
    verdicts whose MAC checks under ``mac_key`` (see ``shared.messaging.signing.verdict_mac``), so
    a row written into the table by anyone else vouches for nothing.

    ``shard`` is ``(shards, index)``: only verdicts on records of partitions numbered
    ``index`` modulo ``shards``, the part of the log one replay process reads.

    One bytea (80 bytes per verdict, lengths fixed by the table's CHECKs) instead of a
    row each: a replay loads hundreds of thousands of them.
    """
    shards, index = shard
    blob = await conn.fetchval(
        "SELECT string_agg(uuid_send(event_id) || record_hash || mac, ''::bytea)"
        " FROM signature_verdicts WHERE valid AND mac IS NOT NULL AND topic_prefix = $1"
        " AND kafka_partition % $2 = $3",
        topic_prefix,
        shards,
        index,
    )
    verified: set[bytes] = set()
    if not blob:
        return verified
    data = bytes(blob)
    for i in range(0, len(data), _VERDICT_ROW):
        event_id, record_hash, mac = data[i : i + 16], data[i + 16 : i + 48], data[i + 48 : i + 80]
        if hmac.compare_digest(verdict_mac(mac_key, event_id, record_hash, True), mac):
            verified.add(record_hash)
    return verified


class ParsedEvents:
    """Recently stored events, parsed, by event id (at most ``limit``, oldest dropped).

    Refreshing a case's view replays all its events; a case gains them over several
    batches, so without this each batch parsed the case's earlier events again. Only
    committed rows are kept (``commit`` after the transaction, ``discard`` on rollback),
    and committed rows never change (append-only, one row per event id).
    """

    def __init__(self, limit: int = 10_000) -> None:
        self.limit = limit
        self._events: OrderedDict[UUID, Event] = OrderedDict()
        self._pending: dict[UUID, Event] = {}

    def __len__(self) -> int:
        return len(self._events)

    def get(self, event_id: UUID, value: bytes) -> Event:
        event = self._events.get(event_id) or self._pending.get(event_id)
        if event is None:
            event = self._pending[event_id] = parse_event(value)
        return event

    def hold(self, event: Event) -> None:
        """An event parsed from exactly the bytes being stored under its id now."""
        self._pending[event.event_id] = event

    def commit(self) -> None:
        self._events.update(self._pending)
        self._pending = {}
        while len(self._events) > self.limit:
            self._events.popitem(last=False)

    def discard(self) -> None:
        self._pending = {}

    def drop(self, event_id: UUID) -> None:
        """Forget a pending event whose storing was rolled back (to a savepoint)."""
        self._pending.pop(event_id, None)


async def case_events(
    conn: Connection, case_ids: Iterable[UUID], parsed: ParsedEvents | None = None
) -> list[Event]:
    rows = await conn.fetch(
        "SELECT e.event_id, e.value FROM unnest($1::uuid[]) AS u(id) "
        "JOIN events e ON e.case_id = u.id "
        "ORDER BY e.case_id, e.case_seq",
        list(set(case_ids)),
    )
    if parsed is None:
        return [parse_event(r["value"]) for r in rows]
    return [parsed.get(r["event_id"], r["value"]) for r in rows]


async def refresh_views(
    conn: Connection, case_ids: Iterable[UUID], parsed: ParsedEvents | None = None
) -> None:
    """Recompute the projection of these cases from the store."""
    ids = list(case_ids)
    if not ids:
        return
    views = project(await case_events(conn, ids, parsed))
    await conn.execute(
        "INSERT INTO case_views (case_id, view) "
        "SELECT c, v::jsonb FROM unnest($1::uuid[], $2::text[]) AS u(c, v) "
        "ON CONFLICT (case_id) DO UPDATE SET view = EXCLUDED.view, updated_at = now()",
        list(views),
        [json.dumps(v.to_json(), separators=(",", ":"), default=str) for v in views.values()],
    )


async def live_views(conn: Connection) -> list[dict[str, Any]]:
    return [r["view"] for r in await conn.fetch("SELECT view FROM case_views")]


# One narrow row per case: what the statistics read of each live view.
_VIEW_FIGURES = """
SELECT view->>'case_id' AS case_id,
       view->>'item_code' AS item_code,
       view->>'community_code' AS community_code,
       (view->>'accepted_at')::timestamptz AS accepted_at,
       (view->>'closed_at')::timestamptz AS closed_at,
       view->>'outcome' AS outcome,
       (view->>'on_spot')::boolean AS on_spot,
       view->>'reason_code' AS reason_code,
       (view->>'promised_by')::timestamptz AS promised_by,
       view ? 'waiting_info' AS waiting
FROM case_views
"""
_VIEW_OUTCOMES = """
SELECT entry->>'department' AS department, entry->>'event_type' AS event_type,
       count(*) AS n
FROM case_views, jsonb_array_elements(view->'timeline') AS entry
WHERE entry->>'event_type' = ANY($1::text[]) AND entry->>'department' IS NOT NULL
GROUP BY 1, 2
"""


async def view_figures(
    conn: Connection, outcome_types: Sequence[str]
) -> tuple[list[CaseFigures], dict[tuple[str, str], int]]:
    """What the statistics need of the live projection, read from ``case_views`` alone
    (never from ``events``): each case's figures, and per department and outcome event
    type (of ``outcome_types``) how many the views' timelines hold, from one snapshot
    (the caller's transaction, or a read-only one of its own)."""
    if conn.is_in_transaction():
        rows = await conn.fetch(_VIEW_FIGURES)
        counts = await conn.fetch(_VIEW_OUTCOMES, list(outcome_types))
    else:
        async with conn.transaction(isolation="repeatable_read", readonly=True):
            rows = await conn.fetch(_VIEW_FIGURES)
            counts = await conn.fetch(_VIEW_OUTCOMES, list(outcome_types))
    figures = [CaseFigures(**dict(r)) for r in rows]
    return figures, {(r["department"], r["event_type"]): r["n"] for r in counts}


async def stream_events(conn: Connection, batch: int = 5000) -> AsyncIterator[Any]:
    """Every stored row in case chain order (call inside a transaction)."""
    async for row in conn.cursor("SELECT * FROM events ORDER BY case_id, case_seq", prefetch=batch):
        yield row


@dataclass(frozen=True)
class ViewDifference:
    """One case whose live view is not what its stored events give."""

    case_id: UUID
    fields: tuple[str, ...]  # the view's top-level fields that differ ("*": a view is missing)
    live: dict[str, Any] | None
    rebuilt: dict[str, Any] | None


def _canonical(view: Any) -> Any:
    return json.loads(json.dumps(view, sort_keys=True, default=str))


def view_differences(
    live: Iterable[dict[str, Any]], rebuilt: Iterable[dict[str, Any]]
) -> list[ViewDifference]:
    """Every case whose live view differs from the rebuilt one, by case id."""
    old = {str(v["case_id"]): _canonical(v) for v in live}
    new = {str(v["case_id"]): _canonical(v) for v in rebuilt}
    found = []
    for case in sorted(old.keys() | new.keys()):
        a, b = old.get(case), new.get(case)
        if a == b:
            continue
        fields = (
            ("*",)
            if a is None or b is None
            else tuple(sorted(k for k in a.keys() | b.keys() if a.get(k) != b.get(k)))
        )
        found.append(ViewDifference(UUID(case), fields, a, b))
    return found


async def rebuild(conn: Connection, *, replace: bool = True) -> tuple[str, list[ViewDifference]]:
    """Rebuild the projection (and the list of reads) from the store; return the new
    digest (of the case views) and every case whose live view differed.

    The live projection is rewritten only when it matches, or with ``replace``: then each
    replaced view is kept first in ``replaced_views`` (append-only), never lost. Without
    ``replace`` a differing projection is left as it is, so every rebuild names the same
    cases until someone decides."""
    live = await live_views(conn)
    events: list[Event] = []
    reads: list[tuple[PersonalDataAccessed, str | None]] = []
    async for row in stream_events(conn):
        event = parse_event(row["value"])
        events.append(event)
        if isinstance(event, PersonalDataAccessed):
            reads.append((event, row["signer"]))
    views = project(events)
    rebuilt = [view.to_json() for view in views.values()]
    differences = view_differences(live, rebuilt)
    if differences and not replace:
        return views_digest(rebuilt), differences
    if differences:
        await conn.executemany(
            "INSERT INTO replaced_views (case_id, live, rebuilt) VALUES ($1, $2, $3)",
            [(d.case_id, d.live, d.rebuilt) for d in differences],
        )
    await conn.execute("DELETE FROM case_views")
    await conn.execute("DELETE FROM access_reads")
    await keep_reads(conn, reads)
    await conn.executemany(
        "INSERT INTO case_views (case_id, view) VALUES ($1, $2)",
        [(case_id, view.to_json()) for case_id, view in views.items()],
    )
    return views_digest(rebuilt), differences
