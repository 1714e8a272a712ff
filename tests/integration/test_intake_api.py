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
from shared.platform.settings import Settings
from tests.e2e.harness import case_body, person
from tests.e2e.test_pipeline import BENEFIT_FORM

pytestmark = pytest.mark.integration


@contextlib.asynccontextmanager
async def intake(settings: Settings) -> AsyncIterator[CasesFront]:
    """Intake built and running in-process: its HTTP app (the front, FastAPI behind)."""
    async with running(await build(settings)) as live:
        front = live.http_app()
        assert isinstance(front, CasesFront)
        yield front


def client(app: ASGIApp) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://intake")


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
    async with (
        intake(settings) as front,
        client(front if through == "front" else front.app) as http,
    ):
        response = await http.post(
            "/cases", json=case_body("SS-UNEMPLOYMENT-BENEFIT", person(), BENEFIT_FORM)
        )
    assert response.status_code == 503, response.text
    assert response.headers["Retry-After"] == "1"
    assert type(failure).__name__ in response.json()["detail"]


def _variants() -> list[tuple[str, bytes, dict[str, str]]]:
    """POST /cases requests of every kind: (name, body, headers)."""
    good = case_body("SS-UNEMPLOYMENT-BENEFIT", person(), BENEFIT_FORM)
    json_type = {"content-type": "application/json"}
    key = {**json_type, "Idempotency-Key": f"parity-{uuid4()}"}
    bad_id = {**good, "applicant": {**good["applicant"], "id_number": "110105194912310021"}}
    wrong_type = {**good, "form": "none", "channel": "fax"}
    missing = {k: v for k, v in good.items() if k not in ("window_id", "applicant")}
    return [
        ("accepted", json.dumps(good).encode(), json_type),
        ("keyed", json.dumps(good).encode(), key),
        ("replayed", json.dumps(good).encode(), key),
        ("key reused", json.dumps({**good, "window_id": "W09"}).encode(), key),
        ("key too long", json.dumps(good).encode(), {**json_type, "Idempotency-Key": "k" * 201}),
        ("checks", json.dumps({**bad_id, "item_code": "NO-SUCH-ITEM"}).encode(), json_type),
        ("types", json.dumps(wrong_type).encode(), json_type),
        ("missing", json.dumps(missing).encode(), json_type),
        ("extra", json.dumps({**good, "colour": "red"}).encode(), json_type),
        ("not json", b'{"item_code": ', json_type),
        ("no body", b"", json_type),
        ("a list", b"[1, 2]", json_type),
        ("no content type", json.dumps(good).encode(), {}),
    ]


def _comparable(response: httpx.Response) -> tuple[int, Any, dict[str, str | None]]:
    body = response.json()
    if response.status_code in (200, 201):
        assert UUID(body.pop("case_id"))
        assert body.pop("receipt_no").startswith("C")
    headers = {
        name: response.headers.get(name)
        for name in ("content-type", "idempotent-replayed", "retry-after")
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
        for name, app in (("front", front), ("route", front.app)):
            async with client(app) as http:
                answers[name] = [
                    _comparable(await http.post("/cases", content=body, headers=headers))
                    for _, body, headers in _variants()
                ]
    kinds = [name for name, _, _ in _variants()]
    assert dict(zip(kinds, answers["front"], strict=True)) == dict(
        zip(kinds, answers["route"], strict=True)
    )
    statuses = dict(zip(kinds, (status for status, _, _ in answers["front"]), strict=True))
    assert statuses == {
        "accepted": 201,
        "keyed": 201,
        "replayed": 200,
        "key reused": 422,
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
    async with intake(settings) as front, client(front) as http:
        limit = Limits.of(settings).body  # derived from ONEDOOR_MAX_RECORD_BYTES
        big = await http.post("/cases", content=b"x" * (limit + 1))
        assert big.status_code == 413
        assert f"over the limit of {limit} bytes" in big.json()["detail"]
        assert (await http.get("/health")).status_code == 200
        assert (await http.get(f"/cases/{uuid4()}")).status_code == 404
        assert (await http.put("/cases", content=b"{}")).status_code == 405
