"""The audit's consumer: every event-log topic into the append-only store."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import asyncpg
import structlog

from services.audit import store
from services.audit.checkpoints import CheckpointWriter
from services.audit.verifier.log import LogRecord
from shared.contracts import topology
from shared.contracts.decoding import decode_record
from shared.contracts.events import Event, EventDecodeError
from shared.messaging import kafka
from shared.messaging.consumer import BatchResult, Record
from shared.messaging.signing import (
    SIGNATURE_HEADER,
    SIGNER_HEADER,
    PublicKeys,
    Signer,
    key_fingerprint,
    record_digest,
    verdict_mac,
    verdict_mac_key,
)
from shared.platform.settings import Settings

# The service whose private key keys the MACs over stored verdicts (the audit's own).
VERDICT_SIGNER = "audit"
# PostgreSQL refusing a value for what it holds (class 22: a NUL character, an
# untranslatable character, a value out of range): retrying cannot cure it.
UNSTORABLE = (asyncpg.DataError,)

log = structlog.get_logger("audit.ingest")


def event_log_pattern(settings: Settings) -> str:
    """Every event-log topic of the deployment, departments added later included (not DLQs)."""
    return topology.event_log_pattern(settings.topic_prefix)


def header(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    """The first value of header ``name`` as text (undecodable bytes replaced)."""
    value = kafka.header(headers, name)
    return None if value is None else value.decode(errors="replace")


def log_record(settings: Settings, record: Record) -> LogRecord:
    return LogRecord(
        topic=record.topic.removeprefix(settings.topic_prefix),
        partition=record.partition,
        offset=record.offset,
        value=record.value or b"",
        signer=header(record.headers, SIGNER_HEADER),
        signature=header(record.headers, SIGNATURE_HEADER),
    )


class SignatureJudge:
    """Checks each record's Ed25519 signature once, at ingest, and says so as a
    :class:`store.Verdict` keyed by the record's digest (see ``record_digest``)."""

    def __init__(
        self,
        keys_dir: Path,
        keys: PublicKeys | None = None,
        mac_key: bytes | None = None,
        registry: Path | None = None,
    ) -> None:
        """``keys``: the key registry (default: ``registry``, else the keys folder's)."""
        self._keys = keys if keys is not None else PublicKeys.load_or_empty(registry or keys_dir)
        self._mac_key = (
            mac_key
            if mac_key is not None
            else verdict_mac_key(Signer.load(keys_dir, VERDICT_SIGNER))
        )

    def _reload(self) -> None:
        # A service started after the audit: its public key may be new since load.
        self._keys.refresh()

    def verdicts(self, batch: Sequence[tuple[LogRecord, Event | None]]) -> list[store.Verdict]:
        """A verdict for each signed event whose signer has a key; none for the rest
        (a replay checks those itself, and reports what it finds)."""
        found: list[store.Verdict] = []
        reloaded = False
        for record, event in batch:
            signer, signature = record.signer, record.signature
            if event is None or not signer or not signature:
                continue
            raw = self._keys.raw(signer)
            if raw is None and not reloaded:
                reloaded = True
                self._reload()
                raw = self._keys.raw(signer)
            if raw is None:
                continue
            digest = record_digest(raw, signer, signature, record.value)
            valid = self._keys.verify(signer, record.value, signature)
            found.append(
                store.Verdict(
                    event_id=event.event_id,
                    record_hash=digest,
                    signer=signer,
                    key_fingerprint=key_fingerprint(raw),
                    valid=valid,
                    topic=record.topic,
                    partition=record.partition,
                    offset=record.offset,
                    mac=verdict_mac(self._mac_key, event.event_id.bytes, digest, valid),
                )
            )
        return found


class AuditIngest:
    """Appends each batch to the store, with a signature verdict per record, and
    refreshes the affected cases' projection, in one transaction; the consumer loop
    commits offsets after it."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        keys: PublicKeys | None = None,
        checkpoints: CheckpointWriter | None = None,
    ) -> None:
        """``checkpoints``: told of every committed batch, writes the store's checkpoints
        to the log when one is due (none: no checkpoints)."""
        self._settings = settings
        self._pool = pool
        own = Signer.load(settings.keys_dir, VERDICT_SIGNER, key_file=settings.signing_key_file)
        self._judge = SignatureJudge(
            settings.keys_dir, keys, verdict_mac_key(own), registry=settings.registry_path()
        )
        self._own = own  # signs each stored row's chain link
        self._checkpoints = checkpoints
        self._parsed = store.ParsedEvents()
        self.totals = store.IngestResult()

    async def process(self, records: Sequence[Record]) -> BatchResult:
        batch = []
        for record in records:
            entry = log_record(self._settings, record)
            event = decode_record(entry.value)
            batch.append((entry, None if isinstance(event, EventDecodeError) else event))
        verdicts = self._judge.verdicts(batch)
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                result, cases = await store.ingest(
                    conn,
                    batch,
                    self._parsed,
                    prefix=self._settings.topic_prefix,
                    signer=self._own,
                )
                await store.record_verdicts(conn, self._settings.topic_prefix, verdicts)
                # Views replay each case's stored events: earlier batches' are parsed.
                await store.refresh_views(conn, cases, self._parsed)
        except UNSTORABLE as exc:
            self._parsed.discard()
            log.warning("batch refused by the database; storing record by record", error=str(exc))
            result = await self._careful(batch, verdicts)
        except BaseException:
            self._parsed.discard()
            raise
        self._parsed.commit()
        for name in ("stored", "duplicates", "conflicts", "malformed", "unstorable"):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(result, name))
        if self._checkpoints is not None:
            self._checkpoints.ingested(entry for entry, _ in batch)
            await self._checkpoints.after_batch()
        return BatchResult(processed=result.stored, duplicates=result.duplicates)

    async def _careful(
        self,
        batch: Sequence[tuple[LogRecord, Event | None]],
        verdicts: Sequence[store.Verdict],
    ) -> store.IngestResult:
        """The careful mode, after the database refused a batch for what it holds: each
        record in a savepoint of its own; one it refuses again is kept in ``malformed``
        with the reason, the others are stored. Any other failure rolls the whole batch
        back for the consumer loop to retry, as on the normal path."""
        by_record: dict[tuple[str, int, int], list[store.Verdict]] = {}
        for verdict in verdicts:
            by_record.setdefault((verdict.topic, verdict.partition, verdict.offset), []).append(
                verdict
            )
        total = store.IngestResult()
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                for entry, event in batch:
                    try:
                        async with conn.transaction():
                            result, cases = await store.ingest(
                                conn,
                                [(entry, event)],
                                self._parsed,
                                prefix=self._settings.topic_prefix,
                                signer=self._own,
                            )
                            await store.record_verdicts(
                                conn,
                                self._settings.topic_prefix,
                                by_record.get((entry.topic, entry.partition, entry.offset), []),
                            )
                            await store.refresh_views(conn, cases, self._parsed)
                    except UNSTORABLE as exc:
                        if event is not None:
                            self._parsed.drop(event.event_id)
                        reason = f"{type(exc).__name__}: {exc}"
                        result = store.IngestResult()
                        result.unstorable = int(
                            await store.keep_unstorable(
                                conn, entry, reason, prefix=self._settings.topic_prefix
                            )
                        )
                        log.warning(
                            "record kept as unstorable evidence",
                            topic=entry.topic,
                            partition=entry.partition,
                            offset=entry.offset,
                            error=store.printable(reason),
                        )
                    for name in ("stored", "duplicates", "conflicts", "malformed", "unstorable"):
                        setattr(total, name, getattr(total, name) + getattr(result, name))
        except BaseException:
            self._parsed.discard()
            raise
        return total
