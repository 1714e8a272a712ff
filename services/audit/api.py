"""The audit's read-only HTTP API, around the running service:

GET /cases/{case_id}/history   the case's timeline (JSON)
GET /stats                     statistics from the projection (JSON)
GET /health                    liveness, ingest counters
"""

from __future__ import annotations

import os
from typing import Any
from uuid import UUID

from fastapi import FastAPI, HTTPException
from fastapi.responses import JSONResponse

from services.audit import queries
from services.audit.ingest import AuditIngest
from shared.platform.runtime import RunningService


def create_app(live: RunningService, ingest: AuditIngest) -> FastAPI:
    """The audit's HTTP app (built by :func:`services.audit.main.build`)."""
    app = FastAPI(title="onedoor audit (read-only)", version="1")
    pool = live.service.pool

    @app.get("/cases/{case_id}/history")
    async def history(case_id: UUID) -> dict[str, Any]:
        async with pool.acquire() as conn:
            view = await queries.history(conn, case_id)
        if view is None:
            raise HTTPException(status_code=404, detail=f"no case {case_id} in the audit store")
        return view

    @app.get("/stats")
    async def statistics() -> dict[str, Any]:
        async with pool.acquire() as conn:
            return await queries.statistics(conn)

    @app.get("/health")
    async def health() -> JSONResponse:
        body = await live.health()
        body["ingest"] = vars(ingest.totals)
        body["cpu_nice"] = os.getpriority(os.PRIO_PROCESS, 0)
        return JSONResponse(status_code=200 if body["database"] else 503, content=body)

    return app
