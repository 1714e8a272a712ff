"""The audit's consumer: every event-log topic into the append-only store."""

from __future__ import annotations

import re
from collections.abc import Sequence

import asyncpg

from services.audit import store
from services.audit.domain import LogRecord, decode
from shared.consumer import BatchResult, Record
from shared.settings import Settings
from shared.signing import SIGNATURE_HEADER, SIGNER_HEADER


def event_log_pattern(settings: Settings) -> str:
    """Every event-log topic of the deployment, departments added later included (not DLQs)."""
    prefix = re.escape(settings.topic_prefix)
    return (
        rf"^{prefix}(cases\.(accepted|routing)|ops\.redrives"
        rf"|dept\.[a-z0-9_]+\.(tasks|outcomes))$"
    )


def header(headers: Sequence[tuple[str, bytes]], name: str) -> str | None:
    for key, value in headers:
        if key == name:
            return value.decode(errors="replace")
    return None


def log_record(settings: Settings, record: Record) -> LogRecord:
    return LogRecord(
        topic=record.topic.removeprefix(settings.topic_prefix),
        partition=record.partition,
        offset=record.offset,
        value=record.value or b"",
        signer=header(record.headers, SIGNER_HEADER),
        signature=header(record.headers, SIGNATURE_HEADER),
    )


class AuditIngest:
    """Appends each batch to the store and refreshes the affected cases' projection, in
    one transaction; the consumer loop commits offsets after it."""

    def __init__(self, settings: Settings, pool: asyncpg.Pool) -> None:
        self._settings = settings
        self._pool = pool
        self.totals = store.IngestResult()

    async def process(self, records: Sequence[Record]) -> BatchResult:
        batch = []
        for record in records:
            entry = log_record(self._settings, record)
            batch.append((entry, decode(entry)))
        async with self._pool.acquire() as conn, conn.transaction():
            result, cases = await store.ingest(conn, batch)
            await store.refresh_views(conn, cases)
        for name in ("stored", "duplicates", "conflicts", "malformed"):
            setattr(self.totals, name, getattr(self.totals, name) + getattr(result, name))
        return BatchResult(processed=result.stored, duplicates=result.duplicates)
