"""The deadline service's batch handler: tasks start timers, outcomes and closes stop
them. Nothing is emitted here; the clock (``clock.py``) gives the notices."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from uuid import UUID

from services.deadlines import store
from shared.contracts.events import CaseClosed, Event, StepAssigned, StepOutcome
from shared.messaging.consumer import StatefulHandler, Tx
from shared.platform.db import Connection


class DeadlinesHandler(StatefulHandler):
    def __init__(self) -> None:
        self._tasks: list[StepAssigned] = []
        self._decided: list[tuple[UUID, datetime]] = []
        self._closed: list[tuple[UUID, datetime]] = []

    async def load(self, conn: Connection, events: Sequence[Event]) -> None:
        self._tasks, self._decided, self._closed = [], [], []

    async def __call__(self, tx: Tx, event: Event) -> None:
        if isinstance(event, StepAssigned):
            self._tasks.append(event)
        elif isinstance(event, StepOutcome):
            if event.causation_id is not None:
                self._decided.append((event.causation_id, event.occurred_at))
        elif isinstance(event, CaseClosed):
            self._closed.append((event.case_id, event.occurred_at))
        # The other routing events (routed, advanced, waiting, flagged) set no clock.

    async def save(self, conn: Connection) -> None:
        await store.add_timers(conn, self._tasks)
        await store.add_decided(conn, self._decided)
        await store.add_closed(conn, self._closed)
