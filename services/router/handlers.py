"""The router's batch handler: load the batch's cases, apply the routing rules to each
event in order, save the changed cases."""

from __future__ import annotations

from collections.abc import Sequence
from uuid import UUID

from services.router import domain, store
from services.router.domain import CaseState
from shared.contracts.catalogue import Catalogue
from shared.contracts.events import (
    CaseAccepted,
    CaseClosed,
    CaseRejected,
    Event,
    StepOutcome,
    utcnow,
)
from shared.contracts.workdays import Workdays, workdays_for
from shared.messaging.consumer import StatefulHandler, Tx
from shared.platform.db import Connection
from shared.platform.metrics import CASES_CLOSED


class RouterHandler(StatefulHandler):
    def __init__(self, catalogue: Catalogue, workdays: Workdays | None = None) -> None:
        """``workdays``: the calendar promises are counted on (default: the shipped one)."""
        self.catalogue = catalogue
        self.workdays = workdays or workdays_for(None, None)
        self._cases: dict[UUID, CaseState] = {}
        self._rejected: set[UUID] = set()
        self._new: dict[UUID, None] = {}  # insertion-ordered set
        self._changed: dict[UUID, None] = {}
        self._new_rejected: list[tuple[UUID, str]] = []

    async def load(self, conn: Connection, events: Sequence[Event]) -> None:
        self._cases, self._rejected = await store.load_for_update(conn, [e.case_id for e in events])
        self._new, self._changed, self._new_rejected = {}, {}, []

    async def __call__(self, tx: Tx, event: Event) -> None:
        now = utcnow()
        if isinstance(event, CaseAccepted):
            if event.case_id in self._cases or event.case_id in self._rejected:
                raise domain.RoutingViolationError(f"case {event.case_id} was accepted twice")
            state, emits = domain.route(event, self.catalogue, now, self.workdays)
            if state is not None:
                self._cases[event.case_id] = state
                self._new[event.case_id] = None
            else:
                rejected = next(e for _, e in emits if isinstance(e, CaseRejected))
                self._rejected.add(event.case_id)
                self._new_rejected.append((event.case_id, rejected.reason_code))
        elif isinstance(event, StepOutcome):
            state, emits = domain.on_outcome(
                self._cases.get(event.case_id), event, now, self.workdays
            )
            self._cases[event.case_id] = state
            if event.case_id not in self._new:
                self._changed[event.case_id] = None
        else:
            raise domain.RoutingViolationError(f"the router does not handle {event.event_type}")
        for topic, out in emits:
            tx.emit(topic, out)
            if isinstance(out, CaseClosed):
                tx.tally(CASES_CLOSED, out.outcome)

    async def save(self, conn: Connection) -> None:
        await store.insert(conn, [self._cases[c] for c in self._new])
        await store.insert_rejected(conn, self._new_rejected)
        await store.update(conn, [self._cases[c] for c in self._changed])
