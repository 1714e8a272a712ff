"""The router's subscriber: one event in, the routing rules applied, events out."""

from __future__ import annotations

from services.router import domain, store
from shared.catalogue import Catalogue
from shared.consumer import Tx
from shared.events import CaseAccepted, CaseRejected, Event, StepOutcome, utcnow


class RouterHandler:
    def __init__(self, catalogue: Catalogue) -> None:
        self.catalogue = catalogue

    async def __call__(self, tx: Tx, event: Event) -> None:
        now = utcnow()
        if isinstance(event, CaseAccepted):
            if await store.exists(tx.conn, event.case_id):
                raise domain.RoutingViolationError(f"case {event.case_id} was accepted twice")
            state, emits = domain.route(event, self.catalogue, now)
            if state is not None:
                await store.insert(tx.conn, state)
            else:
                rejected = next(e for _, e in emits if isinstance(e, CaseRejected))
                await store.insert_rejected(tx.conn, event.case_id, rejected.reason_code)
        elif isinstance(event, StepOutcome):
            current = await store.load_for_update(tx.conn, event.case_id)
            state, emits = domain.on_outcome(current, event, now)
            await store.update(tx.conn, state)
        else:
            raise domain.RoutingViolationError(f"the router does not handle {event.event_type}")
        for topic, out in emits:
            tx.emit(topic, out)
