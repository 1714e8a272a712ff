"""Every HTTP endpoint of intake and the audit decides, on the real PostgreSQL: outsiders
(no token, a garbage token, an expired one, one signed by another key, a revoked refresh
token) get 401, staff of the wrong role or centre 403, a citizen 403 everywhere but their
own case; none of them changes anything or sees personal data, in the answer or in a log
line. Prints the matrix (actor x endpoint x status) the issue asks for."""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from nacl.signing import SigningKey
from starlette.types import ASGIApp

from services.audit.main import build as build_audit
from services.intake.admin import provision
from services.intake.api import CasesFront
from services.intake.main import build as build_intake
from shared.platform.db import connect
from shared.platform.runtime import running
from shared.platform.settings import Settings
from shared.platform.tokens import TokenIssuer, load_signing_key
from tests.e2e.test_pipeline import BENEFIT_FORM
from tests.support.builders import case_body, person
from tests.support.staff import PASSWORD, STAFF, bearer, make_staff, sign_in

pytestmark = pytest.mark.integration


@dataclass
class Apps:
    intake: CasesFront
    audit: ASGIApp
    settings: Settings


@contextlib.asynccontextmanager
async def both(settings: Settings) -> AsyncIterator[Apps]:
    """Intake and the audit in-process on one keys folder (the audit reads intake's
    public token key there), with every kind of staff account."""
    audit_settings = settings.model_copy(update={"audit_nice": 0})
    async with (
        running(await build_intake(settings)) as intake,
        running(await build_audit(audit_settings)) as audit,
    ):
        front, app = intake.http_app(), audit.http_app()
        assert isinstance(front, CasesFront)
        assert app is not None
        await make_staff(settings.dsn())
        yield Apps(front, app, settings)


def http(app: ASGIApp, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://svc", headers=headers
    )


async def count_cases(settings: Settings) -> int:
    conn = await connect(settings.dsn(), "intake", name="test")
    try:
        return int(await conn.fetchval("SELECT count(*) FROM cases"))
    finally:
        await conn.close()


async def outsiders(apps: Apps) -> dict[str, dict[str, str]]:
    """Headers of each outsider."""
    key = load_signing_key(apps.settings.token_key_path())
    clerk = {"sub": "clerk-c01-w01", "role": "clerk", "centre": "C01", "window": "W01"}
    expired = TokenIssuer(key, 900).issue(clerk, now=time.time() - 3600)
    forged = TokenIssuer(SigningKey.generate(), 900).issue(clerk)
    async with http(apps.intake) as client:
        refresh = (await sign_in(client, "clerk-c01-w01"))["refresh_token"]
        assert (await client.post("/auth/revoke", json={"refresh_token": refresh})).is_success
        again = await client.post("/auth/refresh", json={"refresh_token": refresh})
        assert again.status_code == 401, again.text
    return {
        "anonymous": {},
        "garbage token": bearer("garbage"),
        "expired token": bearer(expired),
        "other key": bearer(forged),
        "revoked refresh": bearer(refresh),
        "basic auth": {"Authorization": f"Basic {PASSWORD}"},
    }


async def staff(apps: Apps) -> dict[str, dict[str, str]]:
    async with http(apps.intake) as client:
        return {name: bearer((await sign_in(client, name))["access_token"]) for name in STAFF}


# Who may: every other actor must be refused (401 outsiders, 403 staff).
ALLOWED = {
    "intake POST /cases (front)": {"clerk-c01-w01"},
    "intake POST /cases (route)": {"clerk-c01-w01"},
    "intake GET /cases/{id}": {"clerk-c01-w01", "auditor-1", "admin-1"},
    "audit GET /cases/{id}/history": {"auditor-1", "admin-1"},
    "audit GET /access/cases/{id}": {"auditor-1", "admin-1"},
    "audit GET /access/accounts/{name}": {"auditor-1", "admin-1"},
    "audit GET /stats": {"auditor-1", "admin-1"},
    "intake GET /citizen/case": {"citizen"},
}
# Every actor says why it reads (an auditor must): the refusals come before the reason.
REASON = {"Onedoor-Access-Reason": "security matrix"}
CITIZEN = "citizen"  # a citizen's token for the case filed (intake's /citizen/session)


async def test_every_endpoint_refuses_outsiders_and_wrong_roles(
    settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    applicant = person()
    body = case_body("SS-UNEMPLOYMENT-BENEFIT", applicant, BENEFIT_FORM)
    async with both(settings) as apps:
        actors = await outsiders(apps) | await staff(apps)
        async with http(apps.intake, actors["clerk-c01-w01"]) as client:
            made = await client.post("/cases", json=body)
        assert made.status_code == 201, made.text
        case_id = made.json()["case_id"]
        before = await count_cases(settings)
        key = load_signing_key(settings.token_key_path())
        citizen = {"sub": "citizen:C01-x", "role": "citizen", "case": case_id}
        actors[CITIZEN] = bearer(TokenIssuer(key, 600).issue(citizen))

        def calls(h: dict[str, str]) -> dict[str, Any]:
            other = case_body("SS-UNEMPLOYMENT-BENEFIT", person(), BENEFIT_FORM)
            return {
                "intake POST /cases (front)": (apps.intake, "POST", "/cases", other),
                "intake POST /cases (route)": (apps.intake.app, "POST", "/cases", other),
                "intake GET /cases/{id}": (apps.intake, "GET", f"/cases/{case_id}", None),
                "audit GET /cases/{id}/history": (
                    apps.audit,
                    "GET",
                    f"/cases/{case_id}/history",
                    None,
                ),
                "audit GET /access/cases/{id}": (
                    apps.audit,
                    "GET",
                    f"/access/cases/{case_id}",
                    None,
                ),
                "audit GET /access/accounts/{name}": (
                    apps.audit,
                    "GET",
                    "/access/accounts/clerk-c01-w01",
                    None,
                ),
                "audit GET /stats": (apps.audit, "GET", "/stats", None),
                "intake GET /citizen/case": (apps.intake, "GET", "/citizen/case", None),
            }

        matrix: dict[str, dict[str, int]] = {}
        for actor, headers in actors.items():
            matrix[actor] = {}
            for endpoint, (app, method, path, payload) in calls(headers).items():
                if actor in ALLOWED[endpoint] and method == "POST":
                    continue  # the allowed clerk filed the case above
                async with http(app, headers | REASON) as client:
                    answer = await client.request(method, path, json=payload)
                matrix[actor][endpoint] = answer.status_code
                if actor in ALLOWED[endpoint]:
                    assert answer.status_code in (200, 404), (actor, endpoint, answer.text)
                    continue
                outsider = actor not in STAFF and actor != CITIZEN
                expected = 401 if outsider else 403
                assert answer.status_code == expected, (actor, endpoint, answer.text)
                assert applicant["id_number"] not in answer.text
                assert applicant["name"] not in answer.text
                if outsider:
                    assert answer.headers.get("www-authenticate") == "Bearer"
        async with http(apps.intake) as client:
            pages = {p: (await client.get(p)).status_code for p in ("/docs", "/openapi.json")}
            health = await client.get("/health")
        async with http(apps.audit) as client:
            audit_health = await client.get("/health")
        assert await count_cases(settings) == before  # no refused request made a case
    assert pages == {"/docs": 404, "/openapi.json": 404}
    assert health.status_code == 200
    assert audit_health.status_code == 200
    for text in (health.text, audit_health.text):
        assert applicant["id_number"] not in text
        assert applicant["name"] not in text
    logged = capfd.readouterr()
    for secret in (applicant["id_number"], applicant["phone"], PASSWORD):
        assert secret not in logged.out + logged.err
    _print_matrix(matrix)


def _print_matrix(matrix: dict[str, dict[str, int]]) -> None:
    endpoints = list(ALLOWED)
    width = max(len(a) for a in matrix)
    print("\nSECURITY MATRIX (status per actor x endpoint; '-' = the allowed filing)")
    print(" " * width + " | " + " | ".join(endpoints))
    for actor, row in matrix.items():
        cells = [str(row.get(e, "-")).center(len(e)) for e in endpoints]
        print(f"{actor:<{width}} | " + " | ".join(cells))


async def test_sign_in_refuses_bad_and_disabled_accounts_and_rate_limits(
    settings: Settings, capfd: pytest.CaptureFixture[str]
) -> None:
    limit = settings.signin_max_failures
    async with running(await build_intake(settings)) as live:
        front = live.http_app()
        assert front is not None
        await make_staff(settings.dsn(), "operator-1", "auditor-1")
        await provision(settings.dsn(), "gone-1", "auditor", PASSWORD)
        conn = await connect(settings.dsn(), "intake", name="test")
        await conn.execute("UPDATE accounts SET disabled = true WHERE name = 'gone-1'")
        await conn.close()
        async with http(front) as client:
            tried = {
                "unknown": await client.post(
                    "/auth/token", json={"name": "nobody", "password": PASSWORD}
                ),
                "disabled": await client.post(
                    "/auth/token", json={"name": "gone-1", "password": PASSWORD}
                ),
            }
            wrong = [
                (
                    await client.post(
                        "/auth/token", json={"name": "operator-1", "password": f"wrong-{n}"}
                    )
                ).status_code
                for n in range(limit)
            ]
            locked = await client.post(
                "/auth/token", json={"name": "operator-1", "password": PASSWORD}
            )
            other = await client.post(
                "/auth/token", json={"name": "auditor-1", "password": PASSWORD}
            )
    assert {k: r.status_code for k, r in tried.items()} == {"unknown": 401, "disabled": 401}
    assert wrong == [401] * limit
    assert locked.status_code == 429  # even with the right password, until the window ends
    assert 0 < int(locked.headers["Retry-After"]) <= settings.signin_window_s
    assert other.status_code == 200  # another account from the same address still may
    logged = capfd.readouterr()
    assert "wrong-0" not in logged.out + logged.err
    assert PASSWORD not in logged.out + logged.err
    assert "sign-in failed" in logged.err


async def test_a_disabled_accounts_refresh_token_is_refused(settings: Settings) -> None:
    async with running(await build_intake(settings)) as live:
        front = live.http_app()
        assert front is not None
        await make_staff(settings.dsn(), "auditor-1")
        async with http(front) as client:
            first = await sign_in(client, "auditor-1")
            rotated = await client.post(
                "/auth/refresh", json={"refresh_token": first["refresh_token"]}
            )
            reused = await client.post(
                "/auth/refresh", json={"refresh_token": first["refresh_token"]}
            )
            conn = await connect(settings.dsn(), "intake", name="test")
            from services.intake import accounts  # noqa: PLC0415

            await accounts.set_disabled(conn, "auditor-1")
            await conn.close()
            after = await client.post(
                "/auth/refresh", json={"refresh_token": rotated.json()["refresh_token"]}
            )
    assert rotated.status_code == 200
    assert reused.status_code == 401  # refresh tokens rotate: a spent one is dead
    assert after.status_code == 401
