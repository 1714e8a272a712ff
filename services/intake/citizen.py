"""Citizens read their own case (issue 16 item 2), with no staff account:

    POST /citizen/code     {receipt_no, id_last4}        a one-time code to the case's phone
    POST /citizen/session  {receipt_no, id_last4, code}  a short-lived citizen token
    GET  /citizen/case     (the citizen token)           where that one case stands

Nothing personal travels in a URL: the receipt number and the ID digits go in the body.
``/citizen/code`` answers the same 202, after the same least time, whether or not the
receipt and the ID digits match, so it is no oracle for guessing receipts; it sends a
6-digit code (valid ``citizen_code_ttl_s``) through the notifier only when they match,
and at most one per ``citizen_resend_s`` per receipt. A code is stored as a salted
SHA-256 and is spent by its first use. Wrong codes are counted per receipt number (in
PostgreSQL, for any well-formed receipt number, known or not) and per client address (in
this process): ``citizen_max_wrong_codes`` wrong codes lock the receipt for
``citizen_lock_s`` and void its live code; an address is locked after four times as many.

The citizen token is intake's own (same key), role ``citizen``, naming the one case it
may read: every staff endpoint of intake and the audit answers it 403.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import secrets
import time
from datetime import datetime, timedelta
from typing import Any
from uuid import UUID

import asyncpg
import structlog
from fastapi import FastAPI, Header, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.intake import responses
from services.intake.notifier import Notifier, NotifierError
from services.intake.signin import RateLimiter
from shared.contracts.access import Accessor, citizen_name
from shared.contracts.catalogue import Catalogue
from shared.contracts.events import utcnow
from shared.contracts.identity import mask_phone
from shared.messaging.access import AccessNotRecordedError, AccessRecorder
from shared.platform.db import Connection
from shared.platform.settings import Settings
from shared.platform.tokens import CITIZEN, Claims, TokenIssuer, TokenVerifier, decide

log = structlog.get_logger("intake.citizen")

RECEIPT = r"^[A-Za-z0-9]{1,16}-\d{8}-\d{6}$"
SENT = (
    "如受理编号与证件号码后四位相符，验证码已发送至办件预留的手机，{minutes}分钟内有效。 / "
    "If the receipt number and the last four characters of the ID number match, a code "
    "has been sent to the phone on the case; it is valid for {minutes} minutes."
)
WRONG = "验证码错误或已失效。 / The code is wrong, used or expired."
LOCKED = "尝试次数过多，请稍后再试。 / Too many attempts: try again later."
SMS = "【一门受理】您的查询验证码为 {code}，{minutes}分钟内有效。"


class CodeRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")
    receipt_no: str = Field(pattern=RECEIPT, max_length=40, examples=["C01-20261127-000042"])
    id_last4: str = Field(pattern=r"^[0-9A-Za-z]{4}$", examples=["002X"])


class SessionRequest(CodeRequest):
    code: str = Field(pattern=r"^\d{6}$", examples=["123456"])


def code_hash(salt: bytes, code: str) -> bytes:
    return hashlib.sha256(salt + code.encode()).digest()


def same_last4(id_masked: str, last4: str) -> bool:
    return hmac.compare_digest(id_masked[-4:].upper().encode(), last4.upper().encode())


# --------------------------------------------------------------------------------- SQL


async def contact(conn: Connection, receipt_no: str) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        """SELECT c.case_id, k.id_masked, k.phone FROM cases c
           JOIN citizen_contacts k ON k.case_id = c.case_id WHERE c.receipt_no = $1""",
        receipt_no,
    )
    return row


async def locked_until(conn: Connection, receipt_no: str, now: datetime) -> datetime | None:
    until: datetime | None = await conn.fetchval(
        "SELECT locked_until FROM citizen_attempts WHERE receipt_no = $1 AND locked_until > $2",
        receipt_no,
        now,
    )
    return until


async def store_code(
    conn: Connection,
    receipt_no: str,
    case_id: UUID,
    *,
    salt: bytes,
    digest: bytes,
    now: datetime,
    settings: Settings,
) -> bool:
    """Replace the receipt's code, unless one was sent less than citizen_resend_s ago
    (False then: nothing is sent). One statement, so two requests at once send one code."""
    stored = await conn.fetchval(
        """INSERT INTO citizen_codes (receipt_no, case_id, salt, code_hash, sent_at, expires_at)
           VALUES ($1, $2, $3, $4, $5, $6)
           ON CONFLICT (receipt_no) DO UPDATE
              SET salt = EXCLUDED.salt, code_hash = EXCLUDED.code_hash,
                  sent_at = EXCLUDED.sent_at, expires_at = EXCLUDED.expires_at, used_at = NULL
              WHERE citizen_codes.sent_at <= $7
           RETURNING true""",
        receipt_no,
        case_id,
        salt,
        digest,
        now,
        now + timedelta(seconds=settings.citizen_code_ttl_s),
        now - timedelta(seconds=settings.citizen_resend_s),
    )
    return bool(stored)


async def wrong_code(conn: Connection, receipt_no: str, now: datetime, settings: Settings) -> bool:
    """Count a wrong code for the receipt; True when that locks it (its code is voided)."""
    window = now - timedelta(seconds=settings.citizen_lock_s)
    wrong = await conn.fetchval(
        """INSERT INTO citizen_attempts AS a (receipt_no, wrong, first_at, touched_at)
           VALUES ($1, 1, $2, $2)
           ON CONFLICT (receipt_no) DO UPDATE
              SET wrong = CASE WHEN a.first_at <= $3 THEN 1 ELSE a.wrong + 1 END,
                  first_at = CASE WHEN a.first_at <= $3 THEN $2 ELSE a.first_at END,
                  touched_at = $2
           RETURNING wrong""",
        receipt_no,
        now,
        window,
    )
    if wrong < settings.citizen_max_wrong_codes:
        return False
    await conn.execute(
        """UPDATE citizen_attempts SET locked_until = $2, wrong = 0, first_at = $3
           WHERE receipt_no = $1""",
        receipt_no,
        now + timedelta(seconds=settings.citizen_lock_s),
        now,
    )
    await conn.execute(
        "UPDATE citizen_codes SET used_at = $2 WHERE receipt_no = $1 AND used_at IS NULL",
        receipt_no,
        now,
    )
    return True


async def spend_code(conn: Connection, body: SessionRequest, now: datetime) -> UUID | None:
    """The case of a live code that matches the receipt, the ID digits and the code,
    spent now (once: the row is locked until commit); None otherwise."""
    row = await conn.fetchrow(
        """SELECT cc.case_id, cc.salt, cc.code_hash, k.id_masked FROM citizen_codes cc
           JOIN citizen_contacts k ON k.case_id = cc.case_id
           WHERE cc.receipt_no = $1 AND cc.used_at IS NULL AND cc.expires_at > $2
           FOR UPDATE OF cc""",
        body.receipt_no,
        now,
    )
    if row is None:
        return None
    good_code = hmac.compare_digest(code_hash(row["salt"], body.code), row["code_hash"])
    if not (good_code and same_last4(row["id_masked"], body.id_last4)):
        return None
    await conn.execute(
        "UPDATE citizen_codes SET used_at = $2 WHERE receipt_no = $1", body.receipt_no, now
    )
    await conn.execute("DELETE FROM citizen_attempts WHERE receipt_no = $1", body.receipt_no)
    case_id: UUID = row["case_id"]
    return case_id


async def case_view(conn: Connection, case_id: UUID) -> asyncpg.Record | None:
    row: asyncpg.Record | None = await conn.fetchrow(
        """SELECT c.*, k.id_masked, k.phone FROM cases c
           LEFT JOIN citizen_contacts k ON k.case_id = c.case_id WHERE c.case_id = $1""",
        case_id,
    )
    return row


# ---------------------------------------------------------------------------- the view

STATUS_LABELS = {
    "accepted": "已受理 / accepted",
    "in_progress": "办理中 / in progress",
    "waiting_info": "待补充材料 / waiting for information",
    "closed": "已办结 / closed",
}
OUTCOME_LABELS = {"approved": "准予办理 / approved", "rejected": "不予办理 / rejected"}
DEPARTMENT_LABELS = {
    "hr_registration": "人力资源登记 / HR registration",
    "social_security": "社会保险 / social security",
}


def citizen_view(row: Any, catalogue: Catalogue) -> dict[str, Any]:
    """What the citizen sees of their case: where it stands, labelled in Simplified Chinese
    with English second; the ID number and the phone masked."""
    item = catalogue.get(row["item_code"])
    department = row["department"]
    step = row["current_step"]
    progress = STATUS_LABELS.get(row["status"], row["status"])
    if row["status"] in ("in_progress", "waiting_info") and step is not None:
        where = DEPARTMENT_LABELS.get(department, department)
        progress += f"：第{step + 1}步 {where} / step {step + 1}"
    if row["status"] == "closed" and row["outcome"]:
        progress += f"：{OUTCOME_LABELS.get(row['outcome'], row['outcome'])}"
    return {
        "receipt_no": row["receipt_no"],
        "item_code": row["item_code"],
        "item_name": item.name if item is not None else None,
        "status": row["status"],
        "status_label": STATUS_LABELS.get(row["status"], row["status"]),
        "progress": progress,
        "current_step": step,
        "department": department,
        "outcome": row["outcome"],
        "outcome_label": OUTCOME_LABELS.get(row["outcome"]) if row["outcome"] else None,
        "reason_code": row["reason_code"],
        "message": row["message"],
        "accepted_at": row["accepted_at"].isoformat(),
        "closed_at": row["closed_at"].isoformat() if row["closed_at"] else None,
        "applicant": {
            "id_number": row["id_masked"],  # stored masked: intake never keeps the full one
            "phone": mask_phone(row["phone"]) if row["phone"] else None,
        },
    }


# ------------------------------------------------------------------------------ routes


def _answer(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    extra = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return JSONResponse(
        status_code=status, content={"detail": detail}, headers=extra | (headers or {})
    )


class CitizenDesk:
    """The citizen's three routes, on intake's FastAPI app (:meth:`add_routes`)."""

    def __init__(
        self,
        settings: Settings,
        pool: asyncpg.Pool,
        *,
        issuer: TokenIssuer,
        verifier: TokenVerifier,
        notifier: Notifier,
        catalogue: Catalogue,
        recorder: AccessRecorder,
    ) -> None:
        """``recorder``: where a citizen's read of their case is recorded before it is
        shown (issue 16 item 6)."""
        self.recorder = recorder
        self.settings = settings
        self.pool = pool
        self.issuer = issuer
        self.verifier = verifier
        self.notifier = notifier
        self.catalogue = catalogue
        lock_s = settings.citizen_lock_s
        self.codes_per_address = RateLimiter(4 * settings.citizen_max_wrong_codes, lock_s)
        self.wrong_per_address = RateLimiter(4 * settings.citizen_max_wrong_codes, lock_s)

    def add_routes(self, app: FastAPI) -> None:
        app.post(
            "/citizen/code", status_code=202, tags=["citizen"], responses=responses.CITIZEN_CODE
        )(self.send_code)
        app.post("/citizen/session", tags=["citizen"], responses=responses.CITIZEN_SESSION)(
            self.session
        )
        app.get("/citizen/case", tags=["citizen"], responses=responses.CITIZEN_CASE)(self.own_case)

    async def send_code(self, body: CodeRequest, request: Request) -> JSONResponse:
        """Ask for a one-time code. The same 202 whether or not the receipt matched."""
        started = time.monotonic()
        address = request.client.host if request.client else "?"
        wait = self.codes_per_address.retry_after(address)
        if wait:
            log.warning("citizen code refused: too many requests", client=address)
            return _answer(429, LOCKED, {"Retry-After": str(wait)})
        self.codes_per_address.failed(address)  # every request counts: sending is the cost
        try:
            await self._send_code(body)
        except NotifierError as exc:
            log.warning("citizen code not delivered", receipt=body.receipt_no, error=str(exc))
            return _answer(
                503,
                f"验证码暂时无法发送，请稍后再试。 / The code cannot be sent now ({exc}); "
                "try again later.",
                {"Retry-After": "30"},
            )
        least = self.settings.citizen_code_answer_s
        await asyncio.sleep(max(0.0, least - (time.monotonic() - started)))
        minutes = max(1, self.settings.citizen_code_ttl_s // 60)
        return JSONResponse(status_code=202, content={"detail": SENT.format(minutes=minutes)})

    async def _send_code(self, body: CodeRequest) -> None:
        now = utcnow()
        code = f"{secrets.randbelow(1_000_000):06d}"
        salt = secrets.token_bytes(16)
        async with self.pool.acquire() as conn, conn.transaction():
            found = await contact(conn, body.receipt_no)
            if found is None or not same_last4(found["id_masked"], body.id_last4):
                log.info("citizen code not sent: no match", receipt=body.receipt_no)
                return
            if await locked_until(conn, body.receipt_no, now) is not None:
                log.info("citizen code not sent: receipt locked", receipt=body.receipt_no)
                return
            stored = await store_code(
                conn,
                body.receipt_no,
                found["case_id"],
                salt=salt,
                digest=code_hash(salt, code),
                now=now,
                settings=self.settings,
            )
            # Counts nobody touched for a day, and whose lock (if any) has passed, go.
            await conn.execute(
                """DELETE FROM citizen_attempts
                   WHERE touched_at < $1 AND coalesce(locked_until, '-infinity') < $1""",
                now - timedelta(days=1),
            )
        if not stored:
            log.info("citizen code not sent: sent recently", receipt=body.receipt_no)
            return
        minutes = max(1, self.settings.citizen_code_ttl_s // 60)
        try:
            await self.notifier.send(found["phone"], SMS.format(code=code, minutes=minutes))
        except NotifierError:
            async with self.pool.acquire() as conn:  # not sent: a retry may send at once
                await conn.execute(
                    "DELETE FROM citizen_codes WHERE receipt_no = $1 AND salt = $2",
                    body.receipt_no,
                    salt,
                )
            raise
        log.info("citizen code sent", receipt=body.receipt_no)

    async def session(self, body: SessionRequest, request: Request) -> JSONResponse:
        """Trade a one-time code for a citizen token that reads that one case."""
        address = request.client.host if request.client else "?"
        now = utcnow()
        wait = self.wrong_per_address.retry_after(address)
        async with self.pool.acquire() as conn, conn.transaction():
            until = await locked_until(conn, body.receipt_no, now)
            if until is not None:
                wait = max(wait, int((until - now).total_seconds()) + 1)
            if wait:
                log.warning("citizen session refused: locked", receipt=body.receipt_no)
                return _answer(429, LOCKED, {"Retry-After": str(wait)})
            case_id = await spend_code(conn, body, now)
            locked = (
                False if case_id else await wrong_code(conn, body.receipt_no, now, self.settings)
            )
        if case_id is None:
            self.wrong_per_address.failed(address)
            log.warning(
                "citizen session refused: wrong code",
                receipt=body.receipt_no,
                client=address,
                locked=locked,
            )
            return _answer(401, WRONG)
        ttl = self.settings.citizen_token_ttl_s
        token = self.issuer.issue(
            {"sub": citizen_name(body.receipt_no), "role": CITIZEN, "case": str(case_id)},
            ttl_s=ttl,
        )
        log.info("citizen signed in", receipt=body.receipt_no, client=address)
        return JSONResponse(
            {"access_token": token, "token_type": "bearer", "expires_in": ttl, "role": CITIZEN}
        )

    async def own_case(self, authorization: str | None = Header(default=None)) -> JSONResponse:
        """The case the citizen token names, and no other."""
        claims = decide(self.verifier, authorization, (CITIZEN,))
        if not isinstance(claims, Claims):
            status, detail = claims
            log.warning("request refused", status=status, path="/citizen/case", reason=detail)
            return _answer(status, detail)
        assert claims.case is not None  # a citizen token always names its case
        case_id = UUID(claims.case)
        async with self.pool.acquire() as conn:
            row = await case_view(conn, case_id)
        if row is None:
            return _answer(404, "没有该办件。 / No such case.")
        view = citizen_view(row, self.catalogue)
        fields = [k for k in view if k != "applicant"]
        fields += [f"applicant.{k}" for k in view["applicant"]]
        try:
            # A citizen's read of their own case is a read of personal data too: on the
            # log (who = citizen:<receipt_no>) before it is shown.
            await self.recorder.record(
                Accessor(claims.sub, CITIZEN),
                case_id,
                fields=fields,
                reason=None,
                channel="http",
                resource="GET /citizen/case",
            )
        except AccessNotRecordedError as exc:
            log.warning("read not recorded: nothing shown", error=str(exc))
            return _answer(
                503, "查阅未能登记 请稍后重试 / Please retry shortly.", {"Retry-After": "1"}
            )
        return JSONResponse(view)
