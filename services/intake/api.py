"""Intake's HTTP API for windows and the mobile terminal.

    POST /cases           accept a case (a clerk's token; Idempotency-Key honoured)
    GET  /cases/{id}      where the case stands (a clerk of the centre, auditor, admin);
                          every answer recorded first as a PersonalDataAccessed
    POST /auth/token, /auth/refresh, /auth/revoke   sign-in (services.intake.signin)
    GET  /health          liveness and readiness (open, no personal data)

Every other endpoint decides from the caller's access token: none or a bad one answers
401, a good one of the wrong role or of another centre 403, before anything is read or
written.

The case row and its CaseAccepted outbox row are written in one transaction. The relay
publishes the outbox; when Kafka is down intake keeps accepting and the relay catches
up when it returns.
"""

from __future__ import annotations

import json
import urllib.parse
from collections.abc import Awaitable, Callable, Sequence
from typing import Annotated, Any
from uuid import UUID

import asyncpg
import structlog
from fastapi import Depends, FastAPI, Header, HTTPException, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.types import Receive, Scope, Send

from services.intake import domain, inputs, responses, store
from services.intake.acceptor import Acceptor, Clerk
from shared.contracts.access import REASON_HEADER, Accessor, needs_reason, reason_problem
from shared.contracts.catalogue import Catalogue
from shared.contracts.events import Event
from shared.messaging.access import AccessNotRecordedError, AccessRecorder
from shared.messaging.consumer import StatefulHandler, Tx
from shared.platform import metrics
from shared.platform.apidocs import api_app
from shared.platform.db import DB_AWAY, Connection
from shared.platform.limits import Limits
from shared.platform.runtime import RunningService
from shared.platform.tokens import Claims, TokenVerifier, decide

log = structlog.get_logger("intake.api")
READERS = ("clerk", "auditor", "admin")  # GET /cases/{id}; a clerk of the case's centre only


def _error_body(errors: list[domain.FieldError]) -> dict[str, Any]:
    return {"detail": [{"loc": list(loc), "msg": msg, "type": kind} for loc, msg, kind in errors]}


Answer = tuple[int, dict[str, Any], dict[str, str]]  # status, JSON body, extra headers
MAX_KEY_LENGTH = 200


def store_away(exc: BaseException) -> Answer:
    """The store went away (or timed out) during the request: answer "retry", not a 500.
    A retry with the same Idempotency-Key gets exactly one case, even when the
    transaction did commit before the connection was lost."""
    detail = f"the case store is unavailable, retry shortly ({type(exc).__name__})"
    return 503, {"detail": detail}, {"Retry-After": "1"}


def refused(status: int, detail: str, path: str) -> Answer:
    """A 401 or 403: logged with the path and why, never with the body or the token."""
    log.warning("request refused", status=status, path=path, reason=detail)
    extra = {"www-authenticate": "Bearer"} if status == 401 else {}
    return status, {"detail": detail}, extra


def authorization(authorization: Annotated[str | None, Header()] = None) -> str | None:
    """The Authorization header, as a dependency (module level: FastAPI resolves the
    routes' string annotations in this module's namespace)."""
    return authorization


def access_reason(
    onedoor_access_reason: Annotated[str | None, Header(max_length=1500)] = None,
) -> str | None:
    """Why the reader reads (``Onedoor-Access-Reason``; UTF-8 percent-encoded when it
    is not ASCII, since a header travels as Latin-1)."""
    if onedoor_access_reason is None:
        return None
    return urllib.parse.unquote(onedoor_access_reason, errors="replace")


def request_id(x_request_id: Annotated[str | None, Header(max_length=100)] = None) -> str | None:
    return x_request_id


def filing_clerk(request: Request, token: Annotated[str | None, Depends(authorization)]) -> Clerk:
    """POST /cases' dependency: the clerk, or 401/403. Solved before FastAPI reports the
    body's problems, so the refusal comes first, as from the front."""
    clerk: Clerk | Answer = request.app.state.clerk_of(token)
    if isinstance(clerk, Clerk):
        return clerk
    status, body, headers = clerk
    raise HTTPException(status_code=status, detail=body["detail"], headers=headers)


def clerk_of(
    verifier: TokenVerifier, authorization: str | bytes | None, centre: str
) -> Clerk | Answer:
    """The clerk filing a case, from the token: a clerk of this intake's centre."""
    claims = decide(verifier, authorization, ("clerk",))
    if not isinstance(claims, Claims):
        return refused(*claims, "/cases")
    if claims.centre != centre or not claims.window:
        return refused(403, "a clerk of another centre may not file here", "/cases")
    return Clerk(centre, claims.window, claims.sub)


async def submit(
    acceptor: Acceptor,
    catalogue: Catalogue,
    request: domain.CaseRequest,
    key: str | None,
    clerk: Clerk,
    *,
    limits: Limits,
) -> Answer:
    """POST /cases once the body has its shape: check it, store it, say how it went."""
    errors = domain.check(request, catalogue, limits)
    if errors:
        return 422, _error_body(errors), {}
    # Only a request with an Idempotency-Key is ever compared with another.
    fingerprint = request.fingerprint(clerk.operator_id) if key is not None else ""
    for _attempt in range(2):
        try:
            result = await acceptor.accept(request, clerk, fingerprint, key)
        except asyncpg.UniqueViolationError:
            # A concurrent request with the same key won the race: answer with its case.
            continue
        except HTTPException as exc:
            return exc.status_code, {"detail": exc.detail}, {}
        if result.pop("_replayed", False):
            return 200, result, {"Idempotent-Replayed": "true"}
        return 201, result, {}
    return 409, {"detail": "concurrent requests with one Idempotency-Key"}, {}


def create_app(  # noqa: PLR0917 - the parts main.wire built, in the order it built them
    live: RunningService,
    acceptor: Acceptor,
    catalogue: Catalogue,
    verifier: TokenVerifier,
    recorder: AccessRecorder,
    add_auth_routes: Callable[[FastAPI], None] = lambda _: None,
) -> CasesFront:
    """Intake's HTTP app around the running service (built by
    :func:`services.intake.main.build`): the front for POST /cases, FastAPI behind it.
    The API pages (/docs, /redoc, /openapi.json) only with ``ONEDOOR_API_DOCS``."""
    settings = live.service.settings
    live.metrics.register(acceptor.accepted)
    limits = Limits.of(settings)
    centre = settings.centre_id
    app = api_app("onedoor intake", settings, version="1")
    add_auth_routes(app)

    app.state.clerk_of = lambda header: clerk_of(verifier, header, centre)

    @app.exception_handler(RequestValidationError)
    async def invalid_shape(_: Request, exc: RequestValidationError) -> JSONResponse:
        errors = [(tuple(e["loc"]), str(e["msg"]), str(e["type"])) for e in exc.errors()]
        return JSONResponse(status_code=422, content=_error_body(errors))

    async def database_away(_: Request, exc: Exception) -> JSONResponse:
        status, body, headers = store_away(exc)
        return JSONResponse(status_code=status, content=body, headers=headers)

    for away in DB_AWAY:
        app.add_exception_handler(away, database_away)

    @app.post(
        "/cases",
        status_code=201,
        response_model=None,
        responses=responses.POST_CASES,
    )
    async def submit_case(
        request: domain.CaseRequest,
        response: Response,
        clerk: Annotated[Clerk, Depends(filing_clerk)],
        idempotency_key: Annotated[str | None, Header(max_length=MAX_KEY_LENGTH)] = None,
    ) -> dict[str, Any]:
        """File a case as the signed-in clerk (``Authorization: Bearer``). The centre,
        window and clerk of the case come from the token: a body that still sends
        ``window_id`` or ``operator_id`` is refused with 422 (``extra_forbidden``)."""
        # The documented contract of POST /cases. The front (CasesFront) answers such
        # requests itself with the same submit(); a test holds the two answers equal.
        status, body, headers = await submit(
            acceptor, catalogue, request, idempotency_key, clerk, limits=limits
        )
        if status >= 400:
            return JSONResponse(status_code=status, content=body, headers=headers)  # type: ignore[return-value]
        response.status_code = status
        response.headers.update(headers)
        return body

    @app.get("/cases/{case_id}", responses=responses.GET_CASE)
    async def case_status(
        case_id: UUID,
        token: Annotated[str | None, Depends(authorization)],
        reason: Annotated[str | None, Depends(access_reason)],
        request: Annotated[str | None, Depends(request_id)],
    ) -> dict[str, Any]:
        """Where a case stands: for a clerk of the centre that accepted it, an auditor or
        an admin. Anyone but a clerk of that centre says why (``Onedoor-Access-Reason``).
        Every answer is first recorded as a signed PersonalDataAccessed (who, role, the
        fields shown, the reason); when that cannot be recorded the answer is 503."""
        claims = decide(verifier, token, READERS)
        if isinstance(claims, Claims) and claims.role == "clerk" and claims.centre != centre:
            claims = (403, "a clerk of another centre may not read this centre's cases")
        if not isinstance(claims, Claims):
            status, body, headers = refused(*claims, "/cases/{case_id}")
            return JSONResponse(status_code=status, content=body, headers=headers)  # type: ignore[return-value]
        async with live.service.pool.acquire() as conn:
            row = await store.get_case(conn, case_id)
        if row is None:
            raise HTTPException(status_code=404, detail=f"no case {case_id}")
        if claims.role == "clerk" and row["centre_id"] != claims.centre:
            status, body, headers = refused(403, "another centre's case", "/cases/{case_id}")
            return JSONResponse(status_code=status, content=body, headers=headers)  # type: ignore[return-value]
        required = needs_reason(claims.role, claims.centre, row["centre_id"])
        problem = reason_problem(reason, required=required)
        if problem is not None:
            where = ("header", REASON_HEADER.lower())
            return JSONResponse(  # type: ignore[return-value]
                status_code=422, content=_error_body([(where, problem, "access_reason")])
            )
        answer = _status(row)
        try:
            await recorder.record(
                Accessor(claims.sub, claims.role, claims.centre),
                case_id,
                fields=tuple(answer),
                reason=reason,
                channel="http",
                resource="GET /cases/{case_id}",
                request_id=request,
            )
        except AccessNotRecordedError as exc:
            log.warning("read not recorded: nothing shown", error=str(exc))
            detail = f"查阅未能登记 请稍后重试 / {exc}: nothing is shown until it is, retry shortly"
            return JSONResponse(  # type: ignore[return-value]
                status_code=503, content={"detail": detail}, headers={"Retry-After": "1"}
            )
        return answer

    @app.get("/health", responses=responses.HEALTH)
    async def health() -> JSONResponse:
        body = await live.health()
        return JSONResponse(status_code=200 if body["database"] else 503, content=body)

    return CasesFront(
        app,
        lambda request, key, clerk: submit(acceptor, catalogue, request, key, clerk, limits=limits),
        lambda header: clerk_of(verifier, header, centre),
        max_body=limits.body,
    )


class CasesFront:
    """Intake's ASGI application: POST /cases goes straight to :func:`submit`, anything
    else to the FastAPI app behind it (GET /cases/{id}, /health, the OpenAPI docs).

    FastAPI's middleware, dependency solving and response encoding cost many times
    what this front costs per request, in-process and before the database, and intake
    is the busiest process under load.
    The answers are FastAPI's own, byte for byte: the same shape checks (pydantic's
    errors under ``body``), the same 422 for a too-long Idempotency-Key, the same 503
    when the store is away; the route declared on the FastAPI app documents the
    contract. One addition: a body over ``max_body`` bytes gets 413.
    """

    def __init__(
        self,
        app: FastAPI,
        submit: Callable[[domain.CaseRequest, str | None, Clerk], Awaitable[Answer]],
        clerk: Callable[[bytes | None], Clerk | Answer],
        *,
        max_body: int = 1 << 20,
    ) -> None:
        self.app = app
        self._submit = submit
        self._clerk = clerk
        self._max_body = max_body

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] != "/cases" or scope["method"] != "POST":
            await self.app(scope, receive, send)
            return
        scope[metrics.ROUTE_KEY] = "/cases"
        authorization: bytes | None = None
        for name, value in scope["headers"]:
            if name == b"authorization":
                authorization = value
                break
        clerk = self._clerk(authorization)  # decided before the body is read
        if isinstance(clerk, Clerk):
            body = await self._body(receive)
            if body is None:
                return  # the client went away
            try:
                status, content, headers = (
                    await self._answer(scope, body, clerk)
                    if len(body) <= self._max_body
                    else (
                        413,
                        {"detail": f"the body is over the limit of {self._max_body} bytes"},
                        {},
                    )
                )
            except DB_AWAY as exc:
                status, content, headers = store_away(exc)
        else:
            status, content, headers = clerk
        # Encoded as FastAPI's JSONResponse encodes.
        raw = json.dumps(
            content, ensure_ascii=False, allow_nan=False, separators=(",", ":")
        ).encode()
        await send(
            {
                "type": "http.response.start",
                "status": status,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"content-length", str(len(raw)).encode()),
                    *((k.encode(), v.encode()) for k, v in headers.items()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": raw})

    async def _body(self, receive: Receive) -> bytes | None:
        """The request body (cut one byte past the limit), or None if the client left."""
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")[: self._max_body + 1 - size]
            chunks.append(chunk)
            size += len(chunk)
            if not message.get("more_body", False):
                return b"".join(chunks)

    async def _answer(self, scope: Scope, body: bytes, clerk: Clerk) -> Answer:
        key = content_type = None
        for name, value in scope["headers"]:
            if name == b"idempotency-key" and key is None:
                key = value.decode("latin-1")
            elif name == b"content-type" and content_type is None:
                content_type = value.decode("latin-1")
        errors: list[domain.FieldError] = []
        if key is not None and len(key) > MAX_KEY_LENGTH:
            errors.append(
                (
                    ("header", "idempotency-key"),
                    f"String should have at most {MAX_KEY_LENGTH} characters",
                    "string_too_long",
                )
            )
        try:
            request, body_errors = _case_request(body, content_type)
        except inputs.BodyError as exc:
            return 400, _error_body([(("body",), str(exc), "body_undecodable")]), {}
        errors += body_errors
        if request is None or errors:
            return 422, _error_body(errors), {}
        return await self._submit(request, key, clerk)


def _case_request(
    body: bytes, content_type: str | None
) -> tuple[domain.CaseRequest | None, list[domain.FieldError]]:
    """The body as FastAPI reads a JSON body parameter: nothing is "missing", a JSON
    content type is parsed (:func:`inputs.decode`: UTF-8, bounded depth and numbers,
    else BodyError), anything else is validated as it came (and refused), and pydantic's
    errors come from its Python mode, under ``body``."""
    if not body:
        return None, [(("body",), "Field required", "missing")]
    value: Any = body
    mime = (content_type or "").split(";", 1)[0].strip().lower()
    main, _, sub = mime.partition("/")
    if main == "application" and (sub == "json" or sub.endswith("+json")):
        try:
            value = inputs.decode(body)
        except json.JSONDecodeError as exc:
            return None, [(("body", exc.pos), "JSON decode error", "json_invalid")]
    try:
        return domain.CaseRequest.model_validate(value, from_attributes=True), []
    except ValidationError as exc:
        return None, [(("body", *e["loc"]), e["msg"], e["type"]) for e in exc.errors()]


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
    elif status == "waiting_info":
        # The message names the missing fields (see store.apply_routing).
        summary = (
            f"waiting for information at step {row['current_step'] + 1} "
            f"({row['department']}): {row['message']}"
        )
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
