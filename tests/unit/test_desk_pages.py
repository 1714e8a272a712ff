"""The dashboard page over a stub of intake's sign-in and a fake of the audit's answer:
the last verify run's violations (case, event, place in the log) shown as text, the
tables alone when Chart.js is missing, a chart's CSV, who may sign in, an audit that
is not configured."""

from __future__ import annotations

import csv
import io
import re
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import asyncpg
import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from nacl.signing import SigningKey

from services.audit import dashboard
from services.audit.dashboard import CaseRow
from services.catalogue import default_catalogue
from services.intake import pages
from services.intake.pages import figures
from shared.platform.settings import Settings
from shared.platform.tokens import TokenIssuer, TokenVerifier

pytestmark = pytest.mark.unit

XSS = "<img src=x onerror=alert(1)>"
NOW = datetime(2026, 12, 6, 4, 0, tzinfo=UTC)
ROLES = {"auditor-1": ("auditor", None), "head-c01": ("head", "C01"), "clerk-1": ("clerk", "C01")}


def figures_body() -> dict[str, Any]:
    rows = [
        CaseRow(
            case_id="00000000-0000-0000-0000-000000000001",
            receipt_no="C01-20261206-000001",
            item_code="HR-JOB-REGISTRATION",
            community_code="110105001001",
            centre_id="C01",
            accepted_at=NOW,
            closed_at=NOW,
            outcome="approved",
            on_spot=True,
            promised_by=None,
            waiting=False,
            departments=("hr_registration",),
        )
    ]
    body = dashboard.dashboard(rows, NOW)
    body["centre"] = None
    body["verification"] = {
        "started_at": "2026-12-06T03:59:00+00:00",
        "finished_at": "2026-12-06T04:00:00+00:00",
        "exit_code": 1,
        "problem": None,
        "report": {
            "records": 40,
            "cases": 1,
            "violations": 1,
            "flags": 0,
            "details": [
                {
                    "kind": "closed_twice",
                    "severity": "error",
                    "case_id": "00000000-0000-0000-0000-000000000001",
                    "event_id": "00000000-0000-0000-0000-0000000000ee",
                    "topic": "cases.routing",
                    "partition": 3,
                    "offset": 17,
                    "detail": f"closed again {XSS}",
                }
            ],
        },
    }
    return body


def stub_app(settings: Settings) -> FastAPI:
    issuer = TokenIssuer(SigningKey.generate(), 900)
    app = FastAPI()

    @app.post("/auth/token")
    async def token(request: Request) -> JSONResponse:
        body = await request.json()
        role, centre = ROLES[body["name"]]
        claims = {"sub": body["name"], "role": role, "centre": centre}
        return JSONResponse(
            {
                "access_token": issuer.issue(claims),
                "refresh_token": "r" * 40,
                "expires_in": 900,
                "role": role,
            }
        )

    @app.post("/auth/revoke")
    async def revoke() -> JSONResponse:
        return JSONResponse({})

    pages.add_routes(
        app,
        settings,
        cast(asyncpg.Pool, None),
        TokenVerifier(issuer.verify_key),
        default_catalogue(),
    )
    return app


@pytest.fixture
async def desk(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> AsyncIterator[tuple[httpx.AsyncClient, list[str]]]:
    asked: list[str] = []

    async def audit_get(settings: Settings, path: str, token: str) -> figures.Answer:
        asked.append(path)
        if not settings.audit_url:
            return figures.Answer(None, "audit_off")
        return figures.Answer(figures_body(), None)

    monkeypatch.setattr(figures, "audit_get", audit_get)
    settings = Settings(
        database_url="postgresql://u@localhost/db",  # type: ignore[arg-type]
        audit_url="http://audit:8080",
        chartjs_file=tmp_path / "no-chart.js",  # missing: tables only
    )
    transport = httpx.ASGITransport(app=stub_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        yield client, asked


async def sign_in(client: httpx.AsyncClient, name: str) -> httpx.Response:
    first = await client.get("/desk/")
    found = re.search(r'name="csrf" value="([^"]+)"', first.text)
    assert found is not None
    return await client.post(
        "/desk/signin",
        data={"csrf": found.group(1), "name": name, "password": "a long password"},
        follow_redirects=True,
    )


async def test_the_last_run_and_the_figures_without_chart_js(
    desk: tuple[httpx.AsyncClient, list[str]],
) -> None:
    client, asked = desk
    page = await sign_in(client, "auditor-1")
    assert page.status_code == 200
    assert asked == ["/dashboard"]
    html = page.text
    assert 'data-violations="1"' in html
    assert "closed_twice" in html
    assert "cases.routing/3@17" in html
    assert "00000000-0000-0000-0000-0000000000ee" in html
    assert XSS not in html  # shown as text
    assert "&lt;img src=x onerror=alert(1)&gt;" in html
    assert "2026年12月6日 12:00" in html  # the run's time, local
    assert 'id="no-charts"' in html
    assert "<canvas" not in html
    assert "/static/pages/chart.js" not in html
    assert 'id="t-on_spot"' in html  # the tables stay
    assert (await client.get("/static/pages/chart.js")).status_code == 404
    assert (await client.get("/static/pages/charts.js")).status_code == 200


async def test_a_charts_csv(desk: tuple[httpx.AsyncClient, list[str]]) -> None:
    client, _ = desk
    await sign_in(client, "head-c01")
    answer = await client.get("/desk/csv/on_spot.csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"] == "text/csv; charset=utf-8"
    assert answer.headers["content-disposition"] == 'attachment; filename="on_spot.csv"'
    assert answer.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.reader(io.StringIO(answer.content.decode("utf-8-sig"))))
    assert rows == [["closure", "cases"], ["on_spot", "1"], ["closed_later", "0"], ["open", "0"]]
    assert (await client.get("/desk/csv/nothing.csv")).status_code == 404
    assert (await client.get("/desk/csv/..%2Fetc.csv")).status_code == 404


async def test_only_auditors_admins_and_heads_sign_in(
    desk: tuple[httpx.AsyncClient, list[str]],
) -> None:
    client, asked = desk
    page = await sign_in(client, "clerk-1")
    assert "不是审计人员" in page.text
    assert asked == []
    assert (await client.get("/desk/csv/on_spot.csv")).status_code == 404


async def test_no_audit_configured(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    settings = Settings(
        database_url="postgresql://u@localhost/db",  # type: ignore[arg-type]
        chartjs_file=tmp_path / "absent.js",
    )
    transport = httpx.ASGITransport(app=stub_app(settings))
    async with httpx.AsyncClient(transport=transport, base_url="http://testserver") as client:
        page = await sign_in(client, "auditor-1")
    assert "ONEDOOR_AUDIT_URL" in page.text
    assert 'id="problem"' in page.text
