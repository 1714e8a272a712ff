"""The deadline service's clock: every ``deadlines_poll_s``, the timers due (less the
grace) give their notices, each in one transaction with its outbox row and the record
that it was given. A crash before the commit gives nothing (the next poll, or the next
process, gives it); after it, the notice is recorded and never given again. Timers live
in PostgreSQL, never in memory: a restarted service finds them where they were."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from uuid import uuid4

import asyncpg
import structlog

from services.deadlines import store
from shared.contracts.events import utcnow
from shared.contracts.topology import CASES_DEADLINES
from shared.messaging.outbox import OutboxRelay, OutboxWriter
from shared.platform.aio import sleep_or_stop
from shared.platform.db import DB_AWAY
from shared.platform.faults import FaultInjector
from shared.platform.settings import Settings

log = structlog.get_logger("deadlines")
BATCH = 500


class DeadlineClock:
    """Fires due timers until the stop (see the module's docstring)."""

    name = "deadline-clock"

    def __init__(
        self, settings: Settings, pool: asyncpg.Pool, writer: OutboxWriter, relay: OutboxRelay
    ) -> None:
        self.poll_s = settings.deadlines_poll_s
        self.grace = timedelta(seconds=settings.deadlines_grace_s)
        self.pool = pool
        self.writer = writer
        self.relay = relay
        self.announced = 0
        self._faults = FaultInjector.from_settings(settings)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            try:
                while await self.fire() == BATCH and not stop.is_set():
                    pass
            except DB_AWAY as exc:  # PostgreSQL away: the timers wait there for us
                log.warning("deadline clock waiting for the database", error=repr(exc))
            await sleep_or_stop(stop, self.poll_s)

    async def fire(self) -> int:
        """Give the notices owed now; return how many timers were looked at."""
        async with self.pool.acquire() as conn, conn.transaction():
            now = utcnow()
            cutoff = now - self.grace
            timers = await store.due_timers(conn, cutoff, BATCH)
            owed = {t.task_id: t.owed(cutoff) for t in timers}
            wanted = [(t, kind, uuid4(), now) for t in timers for kind in owed[t.task_id]]
            # A kind another task of the step was given already is not given again.
            given = await store.claim(conn, wanted)
            notices = [
                t.notice(kind, now, event_id)
                for t, kind, event_id, _ in wanted
                if (t.case_id, t.step_index, kind) in given
            ]
            await self.writer.add(conn, CASES_DEADLINES, *notices)
            done = [t.task_id for t in timers if t.settled(frozenset(owed[t.task_id]))]
            await store.settle(conn, done)
            if notices and self._faults is not None:
                self._faults.reach("deadlines_before_commit")
        if notices:
            self.announced += len(notices)
            log.info("deadline notices given", notices=len(notices))
            self.relay.wake()
        return len(timers)
