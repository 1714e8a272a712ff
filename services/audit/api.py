"""The audit process: ingests the log, and answers read-only questions over HTTP.

GET /cases/{case_id}/history   the case's timeline (JSON)
GET /stats                     statistics from the projection (JSON)
GET /health                    liveness, ingest counters
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from uuid import UUID

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse

from services.audit import queries
from services.audit.ingest import AuditIngest, event_log_pattern
from services.catalogue import default_catalogue
from shared.contracts.topology import all_topics
from shared.messaging.consumer import ConsumerLoop
from shared.platform.runtime import ServiceContext, open_service
from shared.platform.settings import Settings

NAME = "audit"
MIGRATIONS = [Path(__file__).parent / "migrations"]


def create_app(settings: Settings) -> FastAPI:
    """The audit's one wiring factory: nothing is opened until the app starts."""
    state: dict[str, Any] = {}

    @contextlib.asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        catalogue = default_catalogue(settings.catalogue_dirs)
        ctx = await open_service(
            NAME,
            settings,
            schema=NAME,
            migrations=MIGRATIONS,
            topics=all_topics(catalogue.departments()),
        )
        ingest = AuditIngest(settings, ctx.pool)
        ctx.loops.append(
            ConsumerLoop(
                settings, [], group_id=NAME, processor=ingest, pattern=event_log_pattern(settings)
            )
        )
        state.update(ctx=ctx, ingest=ingest)
        nice = os.getpriority(os.PRIO_PROCESS, 0)
        if nice > 0:
            ctx.log.info("running at lower CPU priority: the pipeline goes first", nice=nice)
        ctx.start_tasks()
        try:
            yield
        finally:
            await ctx.shutdown()

    app = FastAPI(title="onedoor audit (read-only)", version="1", lifespan=lifespan)

    def context() -> ServiceContext:
        ctx: ServiceContext = state["ctx"]
        return ctx

    @app.get("/cases/{case_id}/history")
    async def history(case_id: UUID) -> dict[str, Any]:
        async with context().pool.acquire() as conn:
            view = await queries.history(conn, case_id)
        if view is None:
            raise HTTPException(status_code=404, detail=f"no case {case_id} in the audit store")
        return view

    @app.get("/stats")
    async def statistics() -> dict[str, Any]:
        async with context().pool.acquire() as conn:
            return await queries.statistics(conn)

    @app.get("/health")
    async def health() -> JSONResponse:
        if "ctx" not in state:
            return JSONResponse(status_code=503, content={"status": "starting"})
        body = await context().health()
        body["ingest"] = vars(state["ingest"].totals)
        body["cpu_nice"] = os.getpriority(os.PRIO_PROCESS, 0)
        return JSONResponse(status_code=200 if body["database"] else 503, content=body)

    return app
