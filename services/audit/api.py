"""The audit's read-only HTTP API, around the running service:

GET /cases/{case_id}/history   the case's timeline (JSON; auditor or admin)
GET /stats                     statistics from the projection (JSON; auditor or admin)
GET /health                    liveness, ingest counters (open, no personal data)

Tokens are intake's (``POST /auth/token`` there), checked with the public half of its
token key (``Settings.token_public_key_path()``): none or a bad one answers 401, another
role 403, before anything is read.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Any
from uuid import UUID

import structlog
from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse

from services.audit import queries
from services.audit.ingest import AuditIngest
from shared.platform.apidocs import api_app
from shared.platform.oidc import OidcVerifier
from shared.platform.runtime import RunningService
from shared.platform.tokens import Claims, TokenVerifier, decide, load_verify_key

log = structlog.get_logger("audit.api")
READERS = ("auditor", "admin")


class IntakeTokens:
    """Verifies intake's tokens (and the OpenID Connect issuer's, when one is configured);
    reads intake's public key when first needed (intake creates the key pair at its first
    start, maybe after the audit started)."""

    def __init__(self, path: Path, issuer_of_oidc: OidcVerifier | None = None) -> None:
        self._path = path
        self._oidc = issuer_of_oidc
        self._verifier: TokenVerifier | None = None
        self._without_key = TokenVerifier(None, oidc=issuer_of_oidc)

    def verifier(self) -> TokenVerifier:
        if self._verifier is None:
            try:
                key = load_verify_key(self._path)
            except (OSError, ValueError):
                return self._without_key  # intake's tokens refused until the key is there
            self._verifier = TokenVerifier(key, oidc=self._oidc)
        return self._verifier


def create_app(
    live: RunningService, ingest: AuditIngest, issuer_of_oidc: OidcVerifier | None = None
) -> FastAPI:
    """The audit's HTTP app (built by :func:`services.audit.main.build`)."""
    settings = live.service.settings
    app = api_app("onedoor audit (read-only)", settings, version="1")
    pool = live.service.pool
    tokens = IntakeTokens(settings.token_public_key_path(), issuer_of_oidc)

    def auditor(authorization: Annotated[str | None, Header()] = None) -> Claims:
        claims = decide(tokens.verifier(), authorization, READERS)
        if isinstance(claims, Claims):
            return claims
        status, detail = claims
        log.warning("request refused", status=status, reason=detail)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        raise HTTPException(status_code=status, detail=detail, headers=headers)

    @app.get("/cases/{case_id}/history", dependencies=[Depends(auditor)])
    async def history(case_id: UUID) -> dict[str, Any]:
        async with pool.acquire() as conn:
            view = await queries.history(conn, case_id)
        if view is None:
            raise HTTPException(status_code=404, detail=f"no case {case_id} in the audit store")
        return view

    @app.get("/stats", dependencies=[Depends(auditor)])
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
