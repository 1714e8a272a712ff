"""Sign-in: ``POST /auth/token``, ``/auth/refresh``, ``/auth/revoke``, and the rate limit on
failed sign-ins (per account and per client address; 429 with ``Retry-After``).

A failed sign-in is logged with the account name and the client address, never the
password. Argon2id runs in a worker thread, off the event loop that serves the windows.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from typing import Any

import asyncpg
import structlog
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field

from services.intake import accounts, responses
from shared.platform.settings import Settings
from shared.platform.tokens import TokenIssuer

log = structlog.get_logger("intake.signin")


class RateLimiter:
    """At most ``limit`` failures per key within ``window_s`` seconds (a sliding window)."""

    def __init__(self, limit: int, window_s: float, *, max_keys: int = 100_000) -> None:
        self.limit = limit
        self.window_s = window_s
        self._failures: dict[str, deque[float]] = {}
        self._max_keys = max_keys

    def retry_after(self, key: str, now: float | None = None) -> int:
        """Seconds until ``key`` may try again; 0 when it may now."""
        moment = time.monotonic() if now is None else now
        seen = self._failures.get(key)
        if seen is None:
            return 0
        while seen and seen[0] <= moment - self.window_s:
            seen.popleft()
        if not seen:
            del self._failures[key]
            return 0
        if len(seen) < self.limit:
            return 0
        return max(1, math.ceil(seen[0] + self.window_s - moment))

    def failed(self, key: str, now: float | None = None) -> None:
        moment = time.monotonic() if now is None else now
        if len(self._failures) >= self._max_keys:
            # Bounded memory under a spray of names: drop keys with no recent failure.
            horizon = moment - self.window_s
            for stale in [k for k, seen in self._failures.items() if seen[-1] <= horizon]:
                del self._failures[stale]
        self._failures.setdefault(key, deque()).append(moment)

    def forget(self, key: str) -> None:
        self._failures.pop(key, None)


class SignIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=64)
    password: str = Field(min_length=1, max_length=1024)


class Refresh(BaseModel):
    model_config = ConfigDict(extra="forbid")
    refresh_token: str = Field(min_length=1, max_length=200)


def _refused(status: int, detail: str, headers: dict[str, str] | None = None) -> JSONResponse:
    extra = {"WWW-Authenticate": "Bearer"} if status == 401 else {}
    return JSONResponse(
        status_code=status, content={"detail": detail}, headers=extra | (headers or {})
    )


def add_routes(app: FastAPI, settings: Settings, pool: asyncpg.Pool, issuer: TokenIssuer) -> None:
    per_account = RateLimiter(settings.signin_max_failures, settings.signin_window_s)
    per_address = RateLimiter(settings.signin_max_failures_per_address, settings.signin_window_s)

    async def tokens(conn: Any, account: accounts.Account) -> dict[str, Any]:
        refresh = await accounts.issue_refresh(conn, account.name, settings.refresh_token_ttl_s)
        return {
            "access_token": issuer.issue(account.claims()),
            "token_type": "bearer",
            "expires_in": issuer.ttl_s,
            "refresh_token": refresh,
            "role": account.role,
        }

    @app.post("/auth/token", tags=["auth"], responses=responses.SIGN_IN)
    async def sign_in(body: SignIn, request: Request) -> JSONResponse:
        """Sign in with name and password: a 15-minute access token and a refresh token.
        Failed attempts are limited per account and per client address (429)."""
        address = request.client.host if request.client else "?"
        wait = max(per_account.retry_after(body.name), per_address.retry_after(address))
        if wait:
            log.warning("sign-in refused: too many failures", account=body.name, client=address)
            return _refused(429, "too many failed sign-ins", {"Retry-After": str(wait)})
        async with pool.acquire() as conn:
            account, stored = await accounts.stored_hash(conn, body.name)
        good = await asyncio.to_thread(accounts.password_matches, stored, body.password)
        if not good or account is None or account.disabled:
            per_account.failed(body.name)
            per_address.failed(address)
            reason = "disabled" if good and account is not None else "bad name or password"
            log.warning("sign-in failed", account=body.name, client=address, reason=reason)
            return _refused(401, "bad name or password, or the account is disabled")
        per_account.forget(body.name)
        async with pool.acquire() as conn:
            answer = await tokens(conn, account)
        log.info("signed in", account=account.name, role=account.role, client=address)
        return JSONResponse(answer)

    @app.post("/auth/refresh", tags=["auth"], responses=responses.REFRESH)
    async def refresh(body: Refresh) -> JSONResponse:
        """A fresh access token (and a new refresh token) for a live refresh token; the old
        refresh token is spent."""
        async with pool.acquire() as conn, conn.transaction():
            account = await accounts.use_refresh(conn, body.refresh_token)
            if account is None:
                return _refused(401, "the refresh token is unknown, expired or revoked")
            answer = await tokens(conn, account)
        return JSONResponse(answer)

    @app.post("/auth/revoke", tags=["auth"])
    async def revoke(body: Refresh) -> JSONResponse:
        """Revoke a refresh token (sign out). Answers 200 whether or not it was live."""
        async with pool.acquire() as conn:
            await accounts.revoke(conn, body.refresh_token)
        return JSONResponse({"revoked": True})
