"""The audit's read-only HTTP API, around the running service:

GET /cases/{case_id}/history   the case's timeline (JSON; auditor or admin, with a reason
                               in Onedoor-Access-Reason; recorded first as a signed
                               PersonalDataAccessed on access.audit, else 503)
GET /access/cases/{case_id}    who read this case's data (JSON; auditor or admin)
GET /access/accounts/{name}    what this account read (JSON; auditor or admin)
GET /stats                     statistics from the projection (JSON; auditor or admin)
GET /dashboard                 the dashboard's charts and the last verify run (auditor,
                               admin; a centre head: its own centre's cases)
GET /communities[/{code}]      cases per community (and one community's detail); a clerk
                               or a centre head sees its own centre's cases only
GET /health                    liveness, ingest counters (open, no personal data)

Tokens are intake's (``POST /auth/token`` there), checked with the public half of its
token key (``Settings.token_public_key_path()``): none or a bad one answers 401, another
role 403, before anything is read.
"""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path as FilePath
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import structlog
from fastapi import Depends, FastAPI, Header, HTTPException, Path, Request
from fastapi.responses import JSONResponse

from services.audit import access, dashboard, queries, verifications
from services.audit.ingest import AuditIngest
from shared.contracts.access import REASON_HEADER, Accessor, needs_reason, reason_problem
from shared.contracts.events import utcnow
from shared.messaging.access import AccessNotRecordedError, AccessRecorder
from shared.platform.apidocs import api_app
from shared.platform.oidc import OidcVerifier
from shared.platform.runtime import RunningService
from shared.platform.tokens import Claims, TokenVerifier, decide, load_verify_key

log = structlog.get_logger("audit.api")
READERS = ("auditor", "admin")
# Counts and case numbers, never a person's data: a centre's head and clerks see their
# own centre's, auditors and admins every centre's.
DASHBOARD_READERS = ("auditor", "admin", "head")
COMMUNITY_READERS = ("clerk", "head", "auditor", "admin")
CENTRE_BOUND = ("clerk", "head")


class IntakeTokens:
    """Verifies intake's tokens (and the OpenID Connect issuer's, when one is configured);
    reads intake's public key when first needed (intake creates the key pair at its first
    start, maybe after the audit started)."""

    def __init__(self, path: FilePath, issuer_of_oidc: OidcVerifier | None = None) -> None:
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


def reader(request: Request, authorization: Annotated[str | None, Header()] = None) -> Claims:
    """The auditor or admin asking, or 401/403 before anything else is looked at; a
    dependency at module level (FastAPI resolves the routes' string annotations in this
    module's namespace), deciding with the app's token verifier."""
    claims: Claims = request.app.state.reader(authorization)
    return claims


def dashboard_reader(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Claims:
    """An auditor, an admin or a centre head (see :func:`reader`)."""
    claims: Claims = request.app.state.decide(authorization, DASHBOARD_READERS)
    return claims


def community_reader(
    request: Request, authorization: Annotated[str | None, Header()] = None
) -> Claims:
    """A clerk, a centre head, an auditor or an admin (see :func:`reader`)."""
    claims: Claims = request.app.state.decide(authorization, COMMUNITY_READERS)
    return claims


def centre_of(who: Claims) -> str | None:
    """The one centre whose cases ``who`` may count (None: every centre). A clerk or a
    head whose token names no centre is refused."""
    if who.role not in CENTRE_BOUND:
        return None
    if not who.centre:
        raise HTTPException(status_code=403, detail=f"this {who.role}'s token names no centre")
    return who.centre


def create_app(
    live: RunningService,
    ingest: AuditIngest,
    recorder: AccessRecorder,
    issuer_of_oidc: OidcVerifier | None = None,
) -> FastAPI:
    """The audit's HTTP app (built by :func:`services.audit.main.build`)."""
    settings = live.service.settings
    app = api_app("onedoor audit (read-only)", settings, version="1")
    pool = live.service.pool
    reader_role = settings.audit_reader_role  # its queries run as the auditor's role
    tokens = IntakeTokens(settings.token_public_key_path(), issuer_of_oidc)

    def allowed(authorization: str | None, roles: tuple[str, ...]) -> Claims:
        claims = decide(tokens.verifier(), authorization, roles)
        if isinstance(claims, Claims):
            return claims
        status, detail = claims
        log.warning("request refused", status=status, reason=detail)
        headers = {"WWW-Authenticate": "Bearer"} if status == 401 else None
        raise HTTPException(status_code=status, detail=detail, headers=headers)

    def auditor(authorization: Annotated[str | None, Header()] = None) -> Claims:
        return allowed(authorization, READERS)

    app.state.reader = auditor
    app.state.decide = allowed

    @app.get("/cases/{case_id}/history")
    async def history(
        case_id: UUID,
        who: Annotated[Claims, Depends(reader)],
        onedoor_access_reason: Annotated[str | None, Header(max_length=1500)] = None,
        x_request_id: Annotated[str | None, Header(max_length=100)] = None,
    ) -> dict[str, Any]:
        reason = (
            None
            if onedoor_access_reason is None
            else urllib.parse.unquote(onedoor_access_reason, errors="replace")
        )
        problem = reason_problem(reason, required=needs_reason(who.role, who.centre, None))
        if problem is not None:
            where = ["header", REASON_HEADER.lower()]
            detail = [{"loc": where, "msg": problem, "type": "access_reason"}]
            raise HTTPException(status_code=422, detail=detail)
        async with pool.acquire() as conn, queries.read_only(conn, reader_role):
            view = await queries.history(conn, case_id)
        if view is None:
            raise HTTPException(status_code=404, detail=f"no case {case_id} in the audit store")
        try:
            await recorder.record(
                Accessor(who.sub, who.role, who.centre),
                case_id,
                fields=tuple(view),
                reason=reason,
                channel="http",
                resource="GET /cases/{case_id}/history",
                request_id=x_request_id,
            )
        except AccessNotRecordedError as exc:
            log.warning("read not recorded: nothing shown", error=str(exc))
            raise HTTPException(
                status_code=503,
                detail=f"{exc}: nothing is shown until it is, retry shortly",
                headers={"Retry-After": "1"},
            ) from None
        return view

    @app.get("/access/cases/{case_id}", dependencies=[Depends(auditor)])
    async def reads_of_case(case_id: UUID) -> dict[str, Any]:
        async with pool.acquire() as conn, queries.read_only(conn, reader_role):
            reads = await access.reads_of_case(conn, case_id)
        return {"case_id": str(case_id), "reads": reads}

    @app.get("/access/accounts/{name}", dependencies=[Depends(auditor)])
    async def reads_by_account(name: str) -> dict[str, Any]:
        async with pool.acquire() as conn, queries.read_only(conn, reader_role):
            reads = await access.reads_by_account(conn, name)
        return {"account": name, "reads": reads}

    @app.get("/stats", dependencies=[Depends(auditor)])
    async def statistics() -> dict[str, Any]:
        async with pool.acquire() as conn, queries.read_only(conn, reader_role):
            return await queries.statistics(conn)

    add_figures(app, pool, reader_role)

    @app.get("/health")
    async def health() -> JSONResponse:
        body = await live.health()
        body["ingest"] = vars(ingest.totals)
        body["cpu_nice"] = os.getpriority(os.PRIO_PROCESS, 0)
        return JSONResponse(status_code=200 if body["database"] else 503, content=body)

    return app


def add_figures(app: FastAPI, pool: asyncpg.Pool, reader_role: str | None) -> None:
    """The dashboard's and the community page's figures (counts, case numbers, the last
    verify run), read as the auditor's role in a read-only transaction."""

    @app.get("/dashboard")
    async def dashboard_figures(
        who: Annotated[Claims, Depends(dashboard_reader)],
    ) -> dict[str, Any]:
        """Every chart's exact counts (a centre head: its centre's cases only) and the
        last verify run the service made."""
        centre = centre_of(who)
        async with pool.acquire() as conn, queries.read_only(conn, reader_role):
            rows = await dashboard.case_rows(conn, centre=centre)
            last = await verifications.last_run(conn)
        body = dashboard.dashboard(rows, utcnow())
        body |= {"centre": centre, "verification": last}
        return body

    @app.get("/communities")
    async def community_list(who: Annotated[Claims, Depends(community_reader)]) -> dict[str, Any]:
        centre = centre_of(who)
        async with pool.acquire() as conn, queries.read_only(conn, reader_role):
            rows = await dashboard.case_rows(conn, centre=centre)
        return {"centre": centre, "communities": dashboard.communities(rows)}

    @app.get("/communities/{code}")
    async def community_detail(
        code: Annotated[str, Path(pattern=dashboard.COMMUNITY_CODE)],
        who: Annotated[Claims, Depends(community_reader)],
    ) -> dict[str, Any]:
        centre = centre_of(who)
        async with pool.acquire() as conn, queries.read_only(conn, reader_role):
            rows = await dashboard.case_rows(conn, centre=centre, community=code)
        return dashboard.community(rows, code, utcnow()) | {"centre": centre}
