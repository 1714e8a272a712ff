"""Intake's HTTP edge in-process, on the real broker and database."""

from __future__ import annotations

import contextlib
import json
from collections.abc import AsyncIterator
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from starlette.types import ASGIApp

from services.intake.acceptor import Acceptor
from services.intake.api import CasesFront
from services.intake.main import build
from shared.platform.limits import Limits
from shared.platform.runtime import running
from shared.platform.settings import ConfigError, Settings
from tests.e2e.harness import case_body, person
from tests.e2e.test_pipeline import BENEFIT_FORM
from tests.support.staff import CLERK, bearer, make_staff, sign_in

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def intake(settings: Settings) -> AsyncIterator[CasesFront]:
    """Intake built and running in-process: its HTTP app (the front, FastAPI behind),
    with the clerk of C01/W01 the tests sign in as."""
    async with running(await build(settings)) as live:
        front = live.http_app()
        assert isinstance(front, CasesFront)
        await make_staff(settings.dsn(), CLERK)
        yield front


def client(app: ASGIApp, headers: dict[str, str] | None = None) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://intake", headers=headers
    )


async def clerk_token(app: ASGIApp) -> dict[str, str]:
    async with client(app) as http:
        return bearer((await sign_in(http, CLERK))["access_token"])


@pytest.mark.parametrize(
    "failure",
    [
        asyncpg.exceptions.InternalClientError("the server went away mid-exchange"),
        TimeoutError(),
        ConnectionResetError("connection reset by peer"),
    ],
    ids=lambda e: type(e).__name__,
)
@pytest.mark.parametrize("through", ["front", "route"])
async def test_a_store_lost_mid_request_answers_503_with_retry_after(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, failure: Exception, through: str
) -> None:
    async def lost(*_: Any, **__: Any) -> dict[str, Any]:
        raise failure

    monkeypatch.setattr(Acceptor, "accept", lost)
    async with intake(settings) as front:
        app = front if through == "front" else front.app
        async with client(app, await clerk_token(front)) as http:
            response = await http.post(
                "/cases", json=case_body("SS-UNEMPLOYMENT-BENEFIT", person(), BENEFIT_FORM)
            )
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    assert type(failure).__name__ in response.json()["detail"]


def _variants(auth: dict[str, str]) -> list[tuple[str, bytes, dict[str, str]]]:
    """POST /cases requests of every kind: (name, body, headers)."""
    good = case_body("SS-UNEMPLOYMENT-BENEFIT", person(), BENEFIT_FORM)
    json_type = {"content-type": "application/json", **auth}
    key = {**json_type, "Idempotency-Key": f"parity-{uuid4()}"}
    bad_id = {**good, "applicant": {**good["applicant"], "id_number": "110105194912310021"}}
    wrong_type = {**good, "form": "none", "channel": "fax"}
    missing = {k: v for k, v in good.items() if k not in ("channel", "applicant")}
    return [
        ("accepted", json.dumps(good).encode(), json_type),
        ("keyed", json.dumps(good).encode(), key),
        ("replayed", json.dumps(good).encode(), key),
        ("key reused", json.dumps({**good, "channel": "mobile"}).encode(), key),
        ("window in body", json.dumps({**good, "window_id": "W09"}).encode(), json_type),
        ("clerk in body", json.dumps({**good, "operator_id": "op-9"}).encode(), json_type),
        ("no token", json.dumps(good).encode(), {"content-type": "application/json"}),
        ("bad token", json.dumps(good).encode(), {**json_type, "Authorization": "Bearer x.y.z"}),
        ("key too long", json.dumps(good).encode(), {**json_type, "Idempotency-Key": "k" * 201}),
        ("checks", json.dumps({**bad_id, "item_code": "NO-SUCH-ITEM"}).encode(), json_type),
        ("types", json.dumps(wrong_type).encode(), json_type),
        ("missing", json.dumps(missing).encode(), json_type),
        ("extra", json.dumps({**good, "colour": "red"}).encode(), json_type),
        ("not json", b'{"item_code": ', json_type),
        ("no body", b"", json_type),
        ("a list", b"[1, 2]", json_type),
        ("no content type", json.dumps(good).encode(), auth),
    ]


def _comparable(response: httpx.Response) -> tuple[int, Any, dict[str, str | None]]:
    body = response.json()
    if response.status_code in (200, 201):
        assert UUID(body.pop("case_id"))
        assert body.pop("receipt_no").startswith("C")
    headers = {
        name: response.headers.get(name)
        for name in ("content-type", "idempotent-replayed", "retry-after", "www-authenticate")
    }
    return response.status_code, body, headers


async def test_the_front_answers_post_cases_as_the_documented_route_does(
    settings: Settings,
) -> None:
    # The front answers POST /cases without FastAPI's machinery; the route declared on
    # the FastAPI app is the contract. Every kind of request gets the same answer from
    # both (ids and receipt numbers aside), each with keys of its own.
    answers: dict[str, list[tuple[int, Any, dict[str, str | None]]]] = {}
    async with intake(settings) as front:
        auth = await clerk_token(front)
        for name, app in (("front", front), ("route", front.app)):
            async with client(app) as http:
                answers[name] = [
                    _comparable(await http.post("/cases", content=body, headers=headers))
                    for _, body, headers in _variants(auth)
                ]
    kinds = [name for name, _, _ in _variants(auth)]
    assert dict(zip(kinds, answers["front"], strict=True)) == dict(
        zip(kinds, answers["route"], strict=True)
    )
    statuses = dict(zip(kinds, (status for status, _, _ in answers["front"]), strict=True))
    assert statuses == {
        "accepted": 201,
        "keyed": 201,
        "replayed": 200,
        "key reused": 422,
        "window in body": 422,  # the window and the clerk come from the token only
        "clerk in body": 422,
        "no token": 401,
        "bad token": 401,
        "key too long": 422,
        "checks": 422,
        "types": 422,
        "missing": 422,
        "extra": 422,
        "not json": 422,
        "no body": 422,
        "a list": 422,
        "no content type": 422,  # FastAPI reads a JSON body only under a JSON content type
    }


async def test_the_front_refuses_a_body_over_its_limit_and_passes_other_routes_on(
    settings: Settings,
) -> None:
    async with intake(settings) as front, client(front, await clerk_token(front)) as http:
        limit = Limits.of(settings).body  # derived from ONEDOOR_MAX_RECORD_BYTES
        big = await http.post("/cases", content=b"x" * (limit + 1))
        assert big.status_code == 413
        assert f"over the limit of {limit} bytes" in big.json()["detail"]
        assert (await http.get("/health")).status_code == 200
        assert (await http.get(f"/cases/{uuid4()}")).status_code == 404
        assert (await http.get("/docs")).status_code == 404  # off unless ONEDOOR_API_DOCS
        assert (await http.get("/openapi.json")).status_code == 404
        assert (await http.put("/cases", content=b"{}")).status_code == 405


async def test_intake_refuses_to_start_without_its_token_key(settings: Settings) -> None:
    # Made ahead of time (onedoor-admin token-key, a mounted Secret), never on the fly: a
    # key created by one replica would sign tokens no other replica accepts.
    key = settings.token_key_path()
    key.unlink()
    key.with_suffix(".pub").unlink()
    with pytest.raises(ConfigError, match="onedoor-admin token-key"):
        await build(settings)
    assert not key.exists()
