"""The pages' rules without a browser or a database: dates and language, the form a clerk
posts turned into a POST /cases body, the timeline, and (on the pages mounted beside a
stub of intake's API) CSRF, the security headers, the cookies and escaping."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, date, datetime
from typing import Any, cast
from uuid import uuid4

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from nacl.signing import SigningKey

from services.catalogue import default_catalogue
from services.intake import pages
from services.intake.pages import i18n
from services.intake.pages.web import by_field
from services.intake.pages.window import case_body, matches, promised, step_states
from shared.contracts.workdays import WorkingCalendar
from shared.platform.settings import Settings
from shared.platform.tokens import TokenIssuer, TokenVerifier

pytestmark = pytest.mark.unit

CATALOGUE = default_catalogue()
BENEFIT = CATALOGUE.items["SS-UNEMPLOYMENT-BENEFIT"]
XSS = "\"'><img src=x onerror=alert(1)>"
CASE = str(uuid4())


def test_dates_in_each_language() -> None:
    moment = datetime(2026, 12, 5, 17, 30, tzinfo=UTC)  # 01:30 on the 6th in Beijing
    assert i18n.local_date(moment, "zh") == "2026年12月6日"
    assert i18n.local_date(moment, "en") == "2026-12-06"
    assert i18n.local_time(moment.isoformat(), "zh") == "2026年12月6日 01:30"
    assert i18n.local_date(date(2027, 1, 9), "zh") == "2027年1月9日"


def test_language_is_chinese_unless_chosen() -> None:
    assert i18n.choose(None, None) == "zh"
    assert i18n.choose(None, "zh-CN,zh;q=0.9,en;q=0.8") == "zh"
    assert i18n.choose(None, "en-US,en;q=0.9") == "en"
    assert i18n.choose("zh", "en-US") == "zh"
    assert i18n.choose("fr", None) == "zh"
    assert all(len(pair) == 2 and all(pair) for pair in i18n.TEXTS.values())


def test_case_body_sends_what_was_typed_and_leaves_judgement_to_the_api() -> None:
    body = case_body(
        BENEFIT,
        {
            "applicant.name": XSS,
            "applicant.id_number": " 11010519491231002X ",
            "applicant.phone": "13800138000",
            "community_code": "110105001001",
            "form.insured_months": "40",
            "form.education": "   ",
            "form.last_employer": "Foods Co.",
            "form.separation_date": "2026-09-30",
            "form.desired_occupation": "cook",
            "form.not_on_the_item": "ignored",
        },
    )
    assert body["applicant"] == {
        "kind": "natural",
        "name": XSS,
        "id_number": "11010519491231002X",
        "phone": "13800138000",
    }
    assert body["form"] == {
        "insured_months": 40,
        "last_employer": "Foods Co.",
        "separation_date": "2026-09-30",
        "desired_occupation": "cook",
    }  # the blank one is left out: the API says it is required
    assert case_body(BENEFIT, {"form.insured_months": "forty"})["form"]["insured_months"] == "forty"


def test_timeline_of_a_two_step_case() -> None:
    def view(status: str, step: int | None, outcome: str | None = None) -> dict[str, Any]:
        return {"status": status, "current_step": step, "outcome": outcome}

    assert [s for _, s in step_states(BENEFIT, view("accepted", None))] == [
        "step_pending",
        "step_pending",
    ]
    assert [s for _, s in step_states(BENEFIT, view("in_progress", 1))] == [
        "step_done",
        "step_current",
    ]
    assert [s for _, s in step_states(BENEFIT, view("closed", 0, "rejected"))] == [
        "step_rejected",
        "step_not_reached",
    ]
    assert [s for _, s in step_states(BENEFIT, view("closed", 1, "approved"))] == [
        "step_done",
        "step_done",
    ]


def test_errors_go_beside_their_fields() -> None:
    fields, general = by_field(
        [
            {"loc": ["body", "applicant", "id_number"], "msg": "bad check digit"},
            {"loc": ["body", "form", "education"], "msg": "is required"},
            {"loc": ["header", "idempotency-key"], "msg": "too long"},
            {"loc": [], "msg": "bad name or password"},
        ]
    )
    assert fields == {"applicant.id_number": "bad check digit", "form.education": "is required"}
    assert general == ["header.idempotency-key: too long", "bad name or password"]


def test_search_finds_items_by_code_name_and_department_in_chinese() -> None:
    assert matches(BENEFIT, "ss-unemployment")
    assert matches(BENEFIT, "insurance benefit")
    assert matches(BENEFIT, "社会保险")
    assert not matches(BENEFIT, "pension")


# ------------------------------------------------------------------ pages over a stub API


class FakeConn:
    async def fetchval(self, _sql: str, receipt: str) -> Any:
        return CASE if receipt == "C01-20261206-000001" else None


class FakePool:
    @asynccontextmanager
    async def acquire(self) -> AsyncIterator[FakeConn]:
        yield FakeConn()


def stub_app() -> FastAPI:
    """The pages on an app whose API routes are stubs answering as intake's do."""
    issuer = TokenIssuer(SigningKey.generate(), 900)
    app = FastAPI()
    seen: list[dict[str, Any]] = []
    app.state.seen = seen

    @app.post("/auth/token")
    async def token(request: Request) -> JSONResponse:
        body = await request.json()
        if body["password"] != "pw":
            return JSONResponse({"detail": "bad name or password"}, status_code=401)
        claims = {"sub": body["name"], "role": "clerk", "centre": "C01", "window": "W01"}
        return JSONResponse(
            {
                "access_token": issuer.issue(claims),
                "refresh_token": "r" * 40,
                "expires_in": 900,
                "role": "clerk",
            }
        )

    @app.post("/auth/refresh")
    async def refresh(request: Request) -> JSONResponse:
        body = await request.json()
        if body["refresh_token"] != "r" * 40:
            return JSONResponse({"detail": "the refresh token is unknown"}, status_code=401)
        claims = {"sub": "renewed", "role": "clerk", "centre": "C01", "window": "W01"}
        return JSONResponse(
            {
                "access_token": issuer.issue(claims),
                "refresh_token": "s" * 40,
                "expires_in": 900,
                "role": "clerk",
            }
        )

    @app.post("/cases")
    async def cases(request: Request) -> JSONResponse:
        seen.append({"body": await request.json(), "headers": dict(request.headers)})
        loc = ["body", "applicant", "phone"]
        return JSONResponse(
            {"detail": [{"loc": loc, "msg": "mobile number must be 11 digits"}]}, 422
        )

    pages.add_routes(
        app,
        Settings(database_url="postgresql://u@localhost/db"),  # type: ignore[arg-type]
        cast(asyncpg.Pool, FakePool()),
        TokenVerifier(issuer.verify_key),
        CATALOGUE,
    )
    return app


@pytest.fixture
async def browser() -> AsyncIterator[httpx.AsyncClient]:
    app = stub_app()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client


def csrf_of(html: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', html)
    assert found is not None
    return found.group(1)


async def test_pages_send_strict_headers_and_refuse_posts_without_the_token(
    browser: httpx.AsyncClient,
) -> None:
    first = await browser.get("/window/")
    assert first.status_code == 200
    csp = first.headers["content-security-policy"]
    assert "frame-ancestors 'none'" in csp
    assert "script-src 'self'" in csp
    assert "unsafe-inline" not in csp
    assert first.headers["x-frame-options"] == "DENY"
    assert first.headers["cache-control"] == "no-store"
    cookie = first.headers["set-cookie"]
    assert "HttpOnly" in cookie
    assert "SameSite=strict" in cookie
    token = csrf_of(first.text)
    form = {"name": "clerk", "password": "pw"}
    assert (await browser.post("/window/signin", data=form)).status_code == 403
    wrong = await browser.post("/window/signin", data=form | {"csrf": "x" * 43})
    assert wrong.status_code == 403
    foreign = await browser.post(
        "/window/signin", data=form | {"csrf": token}, headers={"Origin": "https://evil.example"}
    )
    assert foreign.status_code == 403
    signed = await browser.post("/window/signin", data=form | {"csrf": token})
    assert signed.status_code == 303
    assert signed.headers["location"] == "/window/"
    assert "od_access" in browser.cookies
    assert "od_access" not in signed.headers["location"]


async def test_what_was_typed_comes_back_as_text(browser: httpx.AsyncClient) -> None:
    token = csrf_of((await browser.get("/window/")).text)
    refused = await browser.post(
        "/window/signin", data={"name": XSS, "password": "no", "csrf": token}
    )
    assert XSS not in refused.text
    assert "&lt;img src=x" in refused.text
    assert "bad name or password" in refused.text  # the API's words
    await browser.post("/window/signin", data={"name": "c", "password": "pw", "csrf": token})
    page = await browser.post(
        f"/window/items/{BENEFIT.code}",
        data={"csrf": token, "applicant.name": XSS, "applicant.phone": "1", "idempotency_key": "k"},
    )
    assert page.status_code == 200  # the form again, with the API's answer
    assert XSS not in page.text
    assert 'id="e-applicant.phone">mobile number must be 11 digits<' in page.text
    search = await browser.post("/window/search", data={"q": XSS, "csrf": token})
    assert XSS not in search.text
    assert "&lt;img src=x onerror=alert(1)&gt;" in search.text


async def test_lookup_by_receipt_is_posted_and_lands_on_the_case_id(
    browser: httpx.AsyncClient,
) -> None:
    token = csrf_of((await browser.get("/window/")).text)
    await browser.post("/window/signin", data={"name": "c", "password": "pw", "csrf": token})
    found = await browser.post("/window/lookup", data={"q": "C01-20261206-000001", "csrf": token})
    assert found.status_code == 303
    assert found.headers["location"] == f"/window/cases/{CASE}"
    missing = await browser.post("/window/lookup", data={"q": "C01-20261206-000009", "csrf": token})
    assert "C01-20261206-000009" in missing.text


async def test_language_switch_returns_only_to_a_page(browser: httpx.AsyncClient) -> None:
    token = csrf_of((await browser.get("/my/")).text)
    back = await browser.post("/lang", data={"lang": "en", "back": "/my/case", "csrf": token})
    assert back.headers["location"] == "/my/case"
    assert browser.cookies["od_lang"] == "en"
    assert 'lang="en"' in (await browser.get("/my/")).text
    away = await browser.post(
        "/lang", data={"lang": "zh", "back": "//evil.example/", "csrf": token}
    )
    assert away.headers["location"] == "/window/"


async def test_an_expired_access_token_is_renewed_with_the_refresh_token(
    browser: httpx.AsyncClient,
) -> None:
    browser.cookies.set("od_access", "expired.or.forged", path="/window")
    browser.cookies.set("od_refresh", "r" * 40, path="/window")
    page = await browser.get("/window/")
    assert "renewed" in page.text  # signed in again, as the refresh token's account
    cookies = page.headers.get_list("set-cookie")
    assert any(c.startswith("od_refresh=" + "s" * 40) and "HttpOnly" in c for c in cookies)
    browser.cookies.clear()
    browser.cookies.set("od_refresh", "spent", path="/window")
    again = await browser.get("/window/")
    assert 'action="/window/signin"' in again.text
    assert any(
        c.startswith("od_refresh=") and "Max-Age=0" in c
        for c in again.headers.get_list("set-cookie")
    )


def test_the_promised_date_is_counted_in_working_days_as_the_router_counts() -> None:
    """Accepted on a Friday, 10 working days: two weekends are skipped (December 2026
    has no public holiday), so the promise ends with Friday the 18th, not Monday the
    14th as 10 calendar days would have it."""
    item = default_catalogue().get("SS-UNEMPLOYMENT-BENEFIT")
    assert item is not None
    assert item.promised_days == 10
    accepted = datetime(2026, 12, 4, 9, 30, tzinfo=i18n.LOCAL).isoformat()
    last = promised(item, accepted, WorkingCalendar.load())
    assert last is not None
    assert last.astimezone(i18n.LOCAL).date() == date(2026, 12, 18)
    assert promised(None, accepted, WorkingCalendar.load()) is None
