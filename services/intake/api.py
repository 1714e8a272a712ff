"""Intake's HTTP API for windows and the mobile terminal.

    POST /cases           accept a case (Idempotency-Key header honoured)
    GET  /cases/{id}      where the case stands, from intake's own view
    GET  /health          liveness and readiness

The case row and its CaseAccepted outbox row are written in one transaction. The relay
publishes the outbox; when Kafka is down intake keeps accepting and the relay catches
up when it returns.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import asyncpg
from fastapi import FastAPI, Header, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from services.intake import domain, store
from services.intake.acceptor import Acceptor
from shared.catalogue import Catalogue, default_catalogue
from shared.consumer import BatchProcessor, ConsumerLoop, StatefulHandler, Tx
from shared.db import DB_AWAY, Connection
from shared.events import Event
from shared.runtime import ServiceContext, open_service
from shared.settings import Settings
from shared.topics import CASES_ROUTING, all_topics

NAME = "intake"
MIGRATIONS = [Path(__file__).parent / "migrations"]


def _error_body(errors: list[domain.FieldError]) -> dict[str, Any]:
    return {"detail": [{"loc": list(loc), "msg": msg, "type": kind} for loc, msg, kind in errors]}


def create_app(settings: Settings, catalogue: Catalogue | None = None) -> FastAPI:
    """Intake's one wiring factory: nothing is opened until the app starts."""
    catalogue = catalogue or default_catalogue(settings.catalogue_dirs)
    state: dict[str, ServiceContext] = {}
    acceptor: dict[str, Acceptor] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        ctx = await open_service(
            NAME,
            settings,
            schema=NAME,
            migrations=MIGRATIONS,
            topics=all_topics(catalogue.departments()),
        )
        processor = BatchProcessor(
            settings, ctx.pool, ctx.writer, StatusViews(), consumer_name=NAME
        )
        loop = ConsumerLoop(settings, [CASES_ROUTING], group_id=NAME, processor=processor)
        ctx.loops.append(loop)
        state["ctx"] = ctx
        acceptor["it"] = Acceptor(settings, ctx.pool, ctx.writer, committed=ctx.relay.wake)
        ctx.start_tasks()
        ctx.log.info("intake started", catalogue=catalogue.version)
        try:
            yield
        finally:
            await acceptor["it"].close()
            await ctx.shutdown()

    app = FastAPI(title="onedoor intake", version="1", lifespan=lifespan)

    @app.exception_handler(RequestValidationError)
    async def invalid_shape(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [(tuple(e["loc"]), str(e["msg"]), str(e["type"])) for e in exc.errors()]
        return JSONResponse(status_code=422, content=_error_body(errors))

    async def database_away(_: Request, exc: Exception) -> JSONResponse:
        # The store went away (or timed out) during the request: answer "retry", not a
        # 500. A retry with the same Idempotency-Key gets exactly one case, even when
        # the transaction did commit before the connection was lost.
        return JSONResponse(
            status_code=503,
            headers={"Retry-After": "1"},
            content={
                "detail": f"the case store is unavailable, retry shortly ({type(exc).__name__})"
            },
        )

    for away in DB_AWAY:
        app.add_exception_handler(away, database_away)

    @app.post("/cases", status_code=201)
    async def submit_case(
        request: domain.CaseRequest,
        response: Response,
        idempotency_key: Annotated[str | None, Header(max_length=200)] = None,
    ) -> dict[str, Any]:
        errors = domain.check(request, catalogue)
        if errors:
            return JSONResponse(status_code=422, content=_error_body(errors))  # type: ignore[return-value]
        fingerprint = request.fingerprint()
        for _attempt in range(2):
            try:
                result = await acceptor["it"].accept(request, fingerprint, idempotency_key)
            except asyncpg.UniqueViolationError:
                # A concurrent request with the same key won the race: answer with its case.
                continue
            if result.pop("_replayed", False):
                response.status_code = 200
                response.headers["Idempotent-Replayed"] = "true"
            return result
        raise HTTPException(status_code=409, detail="concurrent requests with one Idempotency-Key")

    @app.get("/cases/{case_id}")
    async def case_status(case_id: UUID) -> dict[str, Any]:
        async with state["ctx"].pool.acquire() as conn:
            row = await store.get_case(conn, case_id)
        if row is None:
            raise HTTPException(status_code=404, detail=f"no case {case_id}")
        return _status(row)

    @app.get("/health")
    async def health() -> JSONResponse:
        ctx = state.get("ctx")
        if ctx is None:
            return JSONResponse(status_code=503, content={"status": "starting"})
        body = await ctx.health()
        return JSONResponse(status_code=200 if body["database"] else 503, content=body)

    return app


class StatusViews(StatefulHandler):
    """Keeps intake's status view current from cases.routing, a batch at a time."""

    def __init__(self) -> None:
        self._views: dict[UUID, dict[str, Any]] = {}
        self._changed: dict[UUID, None] = {}

    async def load(self, conn: Connection, events: Sequence[Event]) -> None:
        self._views = await store.load_views(conn, [e.case_id for e in events])
        self._changed = {}

    async def __call__(self, tx: Tx, event: Event) -> None:
        view = self._views.get(event.case_id)
        if view is None:
            return  # accepted by another centre's intake: not in this view
        store.apply_routing(view, event)
        self._changed[event.case_id] = None

    async def save(self, conn: Connection) -> None:
        await store.save_views(conn, [self._views[c] for c in self._changed])


def _status(row: dict[str, Any]) -> dict[str, Any]:
    status = row["status"]
    if status == "closed":
        summary = f"closed {row['outcome']}"
        if row["outcome"] == "rejected" and row["reason_code"]:
            summary += f": {row['reason_code']}"
    elif status == "in_progress":
        summary = f"in progress at step {row['current_step'] + 1} ({row['department']})"
    else:
        summary = status
    return {
        "case_id": str(row["case_id"]),
        "receipt_no": row["receipt_no"],
        "item_code": row["item_code"],
        "status": status,
        "summary": summary,
        "current_step": row["current_step"],
        "department": row["department"],
        "outcome": row["outcome"],
        "on_spot": row["on_spot"],
        "reason_code": row["reason_code"],
        "message": row["message"],
        "review_flag": row["review_flag"],
        "accepted_at": row["accepted_at"].isoformat(),
        "closed_at": row["closed_at"].isoformat() if row["closed_at"] else None,
    }
