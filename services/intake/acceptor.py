"""Group commit for accepted cases.

Every POST that arrives while a transaction is in flight waits for the next one, and
that transaction stores all of them: the case rows, their idempotency keys and their
CaseAccepted outbox rows, with one receipt-number update for the lot. At low load a
batch holds one request and nothing waits; under load the database round trips per
case fall from about seven to one or two. Profiling showed those round trips (each a
socket write and a wake-up of PostgreSQL) were most of intake's time.

Nothing about the guarantees changes: a request is answered only after the transaction
holding its case has committed, receipt numbers stay gapless per centre and day (the
counter row is updated inside the same transaction), and a key reused within one batch
is answered like a key reused across batches.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from uuid import UUID, uuid4

import asyncpg
from fastapi import HTTPException

from services.intake import store, subject_keys
from services.intake.domain import CaseRequest
from shared.contracts.calendar import centre_day
from shared.contracts.events import CaseAccepted, utcnow
from shared.contracts.identity import mask_resident_id
from shared.contracts.sealing import CentreSecret
from shared.contracts.topology import CASES_ACCEPTED
from shared.messaging.consumer import TRANSIENT_ERRORS
from shared.messaging.outbox import OutboxWriter
from shared.platform import metrics, tracing
from shared.platform.db import Connection
from shared.platform.settings import Settings

PRODUCER = "intake"


def key_reused() -> HTTPException:
    return HTTPException(
        status_code=422,
        detail=[
            {
                "loc": ["header", "Idempotency-Key"],
                "msg": "this key was already used for a different request",
                "type": "value_error.idempotency_key_reused",
            }
        ],
    )


def receipt(row: dict[str, Any]) -> dict[str, Any]:
    return {
        "case_id": str(row["case_id"]),
        "receipt_no": row["receipt_no"],
        "status": row["status"],
    }


@dataclass(frozen=True, slots=True)
class Clerk:
    """Who files the case, from the clerk's access token: never from the body."""

    centre_id: str
    window_id: str
    operator_id: str


@dataclass(slots=True)
class _Pending:
    request: CaseRequest
    clerk: Clerk
    fingerprint: str
    key: str | None
    answer: asyncio.Future[dict[str, Any]] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )
    # The posting request's trace context, taken in the request's own task (the group
    # commit writes the row from another): empty when tracing is off.
    trace: tracing.TraceHeaders = field(default_factory=tracing.carry)

    def settle(self, result: dict[str, Any] | BaseException) -> None:
        if self.answer.done():
            return
        if isinstance(result, BaseException):
            self.answer.set_exception(result)
        else:
            self.answer.set_result(result)


@dataclass(slots=True)
class _New:
    pending: _Pending
    case_id: UUID
    receipt_no: str = ""

    def answer(self) -> dict[str, Any]:
        return {"case_id": str(self.case_id), "receipt_no": self.receipt_no, "status": "accepted"}


@dataclass(slots=True)
class _Replay:
    of: _New  # the request earlier in the batch that created the case

    def answer(self) -> dict[str, Any]:
        return self.of.answer() | {"_replayed": True}


class Acceptor:
    """Accepts cases in group-committed batches; one writer task per process."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        writer: OutboxWriter,
        *,
        committed: Callable[[], None],
        secret: CentreSecret,
        max_batch: int = 256,
    ) -> None:
        self._settings = settings
        self._secret = secret
        self._pool = pool
        self._writer = writer
        self._committed = committed  # called after a commit that wrote outbox rows
        self._max_batch = max_batch
        self._queue: list[_Pending] = []
        self._inflight: list[_Pending] = []
        self._more = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.accepted = metrics.cases_accepted()  # counted per group commit

    async def accept(
        self, request: CaseRequest, clerk: Clerk, fingerprint: str, key: str | None
    ) -> dict[str, Any]:
        """Store the case (or find the one its key already holds); answer after commit.

        The answer carries ``_replayed: True`` when the key was already used for this
        request. Raises HTTPException(422) when the key was used for another request.
        """
        if self._task is None or self._task.done():
            self._task = asyncio.create_task(self._run(), name="intake-acceptor")
        pending = _Pending(request, clerk, fingerprint, key)
        self._queue.append(pending)
        self._more.set()
        return await pending.answer

    async def close(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for pending in [*self._inflight, *self._queue]:
            pending.settle(RuntimeError("intake is stopping"))

    async def _run(self) -> None:
        while True:
            await self._more.wait()
            batch = self._queue[: self._max_batch]
            del self._queue[: self._max_batch]
            if not self._queue:
                self._more.clear()
            if batch:
                await self._flush(batch)

    async def _flush(self, batch: list[_Pending]) -> None:
        self._inflight = batch
        try:
            async with self._pool.acquire() as conn, conn.transaction():
                results, wrote = await self._write(conn, batch)
        except Exception as exc:  # noqa: BLE001 - each waiting request gets its answer
            if isinstance(exc, TRANSIENT_ERRORS) or len(batch) == 1:
                # The store is away (every request's answer is "retry"), or this one
                # request is the one that failed.
                for pending in batch:
                    pending.settle(exc)
                return
            # One request's problem (another intake replica claimed one of these keys a
            # moment ago; a value the database or the outbox refuses) must not fail the
            # others: store each on its own, and only the culprit gets the error.
            for pending in batch:
                await self._flush([pending])
            return
        finally:
            self._inflight = []
        for pending, result in zip(batch, results, strict=True):
            pending.settle(result)
        if wrote:
            self.accepted.inc(wrote)
            self._committed()

    async def _write(
        self, conn: Connection, batch: list[_Pending]
    ) -> tuple[list[dict[str, Any] | BaseException], int]:
        """The answers, and how many cases were created."""
        keys = [p.key for p in batch if p.key is not None]
        held: dict[str, tuple[str, UUID]] = {}
        rows: dict[UUID, dict[str, Any]] = {}
        if keys:
            held = await store.find_keys(conn, keys)
            if held:
                rows = await store.get_cases(conn, [case_id for _, case_id in held.values()])
        results: list[dict[str, Any] | BaseException | _New | _Replay] = []
        claimed: dict[str, tuple[str, _New]] = {}  # keys first used in this batch
        fresh: list[_New] = []
        for pending in batch:
            key = pending.key
            if key is not None and key in held:
                request_hash, case_id = held[key]
                if request_hash != pending.fingerprint:
                    results.append(key_reused())
                else:
                    results.append(receipt(rows[case_id]) | {"_replayed": True})
            elif key is not None and key in claimed:
                request_hash, first = claimed[key]
                # The first request of this key in the batch created the case; this one,
                # with the same body, is a replay of it (200 with Idempotent-Replayed).
                results.append(
                    key_reused() if request_hash != pending.fingerprint else _Replay(first)
                )
            else:
                new = _New(pending, uuid4())
                fresh.append(new)
                results.append(new)
                if key is not None:
                    claimed[key] = (pending.fingerprint, new)
        if fresh:
            await self._store(conn, fresh, utcnow())
        answers = [r.answer() if isinstance(r, _New | _Replay) else r for r in results]
        return answers, len(fresh)

    async def _store(self, conn: Connection, fresh: list[_New], now: datetime) -> None:
        # The API lets only clerks of this intake's centre file (403 for another's).
        centre = self._settings.centre_id
        day = centre_day(now)  # receipt days follow the centre's calendar
        last = await store.take_receipts(conn, centre, day, len(fresh))
        first = last - len(fresh) + 1
        events = []
        refs = [self._secret.subject_ref(new.pending.request.applicant.id_number) for new in fresh]
        keys = await subject_keys.data_keys(conn, self._secret, refs)
        for number, (new, ref) in enumerate(zip(fresh, refs, strict=True), start=first):
            new.receipt_no = f"{centre}-{day:%Y%m%d}-{number:06d}"
            request = new.pending.request
            event_id = uuid4()
            events.append(
                CaseAccepted(
                    event_id=event_id,
                    case_id=new.case_id,
                    correlation_id=event_id,
                    occurred_at=now,
                    producer=PRODUCER,
                    item_code=request.item_code,
                    applicant=subject_keys.sealed_applicant(
                        request.applicant, ref, keys[ref], new.case_id
                    ),
                    community_code=request.community_code,
                    form=request.form,
                    centre_id=centre,
                    window_id=new.pending.clerk.window_id,
                    operator_id=new.pending.clerk.operator_id,
                    channel=request.channel,
                    receipt_no=new.receipt_no,
                )
            )
        await store.insert_cases(
            conn,
            [
                (
                    new.case_id,
                    new.receipt_no,
                    new.pending.request.item_code,
                    new.pending.request.applicant.kind,
                    centre,
                    new.pending.clerk.window_id,
                    new.pending.request.channel,
                    now,
                    mask_resident_id(new.pending.request.applicant.id_number),
                    new.pending.request.applicant.phone,
                    ref,
                )
                for new, ref in zip(fresh, refs, strict=True)
            ],
        )
        claims = [
            (key, new.pending.fingerprint, new.case_id)
            for new in fresh
            if (key := new.pending.key) is not None
        ]
        if claims:
            await store.claim_keys(conn, claims)
        # Each case carries the trace of the request that posted it (none when off).
        trace = [new.pending.trace for new in fresh]
        await self._writer.write(
            conn,
            [self._writer.row(CASES_ACCEPTED, e, t) for e, t in zip(events, trace, strict=True)],
        )
