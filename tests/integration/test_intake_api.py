"""Intake's HTTP edge in-process, on the real broker and database."""

from __future__ import annotations

import json
from typing import Any
from uuid import UUID, uuid4

import asyncpg
import httpx
import pytest
from fastapi.testclient import TestClient

from services.intake.acceptor import Acceptor
from services.intake.api import create_app
from shared.platform.settings import Settings
from tests.e2e.harness import case_body, person
from tests.e2e.test_pipeline import BENEFIT_FORM

pytestmark = pytest.mark.integration


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
def test_a_store_lost_mid_request_answers_503_with_retry_after(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, failure: Exception, through: str
) -> None:
    async def lost(*_: Any, **__: Any) -> dict[str, Any]:
        raise failure

    monkeypatch.setattr(Acceptor, "accept", lost)
    front = create_app(settings)
    with TestClient(front if through == "front" else front.app) as client:
        response = client.post(
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


def test_the_front_answers_post_cases_as_the_documented_route_does(settings: Settings) -> None:
    # The front answers POST /cases without FastAPI's machinery; the route declared on
    # the FastAPI app is the contract. Every kind of request gets the same answer from
    # both (ids and receipt numbers aside), each with keys of its own.
    front = create_app(settings)
    answers: dict[str, list[tuple[int, Any, dict[str, str | None]]]] = {}
    for name, app in (("front", front), ("route", front.app)):
        with TestClient(app) as client:
            answers[name] = [
                _comparable(client.post("/cases", content=body, headers=headers))
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


def test_the_front_refuses_a_body_over_its_limit_and_passes_other_routes_on(
    settings: Settings,
) -> None:
    with TestClient(create_app(settings)) as client:
        big = client.post("/cases", content=b"x" * (1 << 20 | 1))
        assert big.status_code == 413
        assert "1048576" in big.json()["detail"]
        assert client.get("/health").status_code == 200
        assert client.get(f"/cases/{uuid4()}").status_code == 404
        assert client.put("/cases", content=b"{}").status_code == 405
